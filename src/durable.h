/*-------------------------------------------------------------------------
 *
 * durable.h
 *		The durable table behind durable caches (sessioncache.durable_entries):
 *		every statement that reads or writes it, and the one decoder of its
 *		rows.
 *
 * Every function runs SQL as the table's owner (internal_sql.h): it needs
 * a transaction, must not be called with an LWLock held, and may throw
 * whatever a statement may (40001 under REPEATABLE READ, 25006 on a
 * standby, 57014 on cancel, ...).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_DURABLE_H
#define SC_DURABLE_H

#include "storage/itemptr.h"
#include "utils/tuplestore.h"

#include "caches.h"
#include "store.h"

/* idle-timer slots per row of sessioncache.access (schema 1.1) */
#define SC_ACCESS_SLOTS		64

/* one decoded row */
typedef struct SCDurableRow
{
	int32		cache_id;
	char	   *key;
	int			keylen;
	SCEntryState st;			/* expires_at: not set by the decoder */
} SCDurableRow;

/*
 * Read the row of a key with the latest snapshot (whatever the isolation
 * level: memory always holds the latest committed state, and a read must
 * not depend on whether it hit memory or the table).  False when there is
 * none or it expired.
 */
extern bool SCDurableRead(const SCCacheDef *def, const char *key, int keylen,
						  bool want_value, SCEntryState *st);

/*
 * Insert or replace the row of a put; returns the stored version (never
 * below the row's) and sets *access_slot (0 at schema 1.0).  With keep_live_created (the caller did not read the
 * row), a live row's created_at is kept and returned in *created_at.
 */
extern int64 SCDurableWritePut(const SCCacheDef *def, const char *key,
							   int keylen, const struct varlena *value,
							   const char *user, int userlen,
							   const SCEntryTimeouts *timeouts, int64 version,
							   TimestampTz *created_at, int64 *access_slot,
							   TimestampTz now, bool keep_live_created);

/* Delete the row of a key (in the caller's transaction). */
extern void SCDurableWriteDelete(const SCCacheDef *def, const char *key,
								 int keylen);

/*
 * Touch a row now (its entry is not in memory): last_access and an expiry
 * time computed from the row itself once it is locked.  False when no row
 * was changed.
 */
extern bool SCDurableTouch(const SCCacheDef *def, const char *key, int keylen,
						   TimestampTz now);

/* Keys of a user's rows (live or not: callers re-read each key). */
extern SCKeyRef *SCDurableUserKeys(const SCCacheDef *def, const char *user,
								   int userlen, int *nkeys);

/* Remove every row of a dropped cache. */
extern void SCDurableDropCache(int32 cache_id);

/* Recompute the stored expiry times after define_cache changed timeouts. */
extern void SCDurableRecomputeExpiry(const SCCacheDef *def);

/* an expired row, found or deleted */
typedef struct SCDurableExpired
{
	ItemPointerData tid;
	int32		cache_id;
	char	   *key;
	int			keylen;
	int64		version;
} SCDurableExpired;

/* Up to 'limit' expired rows by the expires_at index, oldest first. */
extern SCDurableExpired *SCDurableExpiredRows(int limit, int *n);

/*
 * Delete the given rows if still expired, skipping rows a writer holds;
 * returns those deleted (allocated in out_cxt).
 */
extern SCDurableExpired *SCDurableDeleteRows(SCDurableExpired *rows, int n,
											 MemoryContext out_cxt,
											 int *ndeleted);

/* Is the schema 1.1, with idle timers in sessioncache.access? */
extern bool SCDurableHasAccessSlots(void);

/*
 * Write back idle timers into their slots: for each block, its
 * SC_ACCESS_SLOTS timestamps (-infinity where nothing changed); a slot only
 * moves forward.  Schema 1.1.  Returns the blocks written.
 */
extern int64 SCDurableWriteAccess(int nblocks, const int64 *blocks,
								  const TimestampTz *last_access);

/*
 * Delete the rows of these keys if they have expired (their copy in memory
 * expired), skipping rows a writer holds; returns those deleted (in
 * out_cxt).
 */
extern SCDurableExpired *SCDurableDeleteKeys(int n, const int32 *cache_ids,
											 char *const *keys,
											 const int *keylens,
											 MemoryContext out_cxt,
											 int *ndeleted);

/*
 * Schema 1.1: look at up to 'limit' rows in primary-key order after
 * (*after_id, after_key) and return the expired ones; the cursor moves to
 * the last row seen (after_key has room for SC_KEY_MAX + 1 bytes).  *nseen
 * < limit means the end of the table was reached.
 */
extern SCDurableExpired *SCDurableSweep(int32 *after_id, char *after_key,
										int limit, int *nseen, int *nexpired);

/* Write back touched idle timers (schema 1.0, or rows without a slot). */
extern int64 SCDurableWriteBack(int n, const int32 *cache_ids,
								char *const *keys, const int *keylens,
								const TimestampTz *last_access,
								const TimestampTz *expires_at);

/*
 * The keys (cache_id int4, key text) of every live row, most recently used
 * first, in a tuplestore that outlives the transaction (kept in cxt, spilled
 * to a temporary file past work_mem).  One statement: the snapshot is held
 * only while the keys are read and sorted, not while they are installed.
 */
extern Tuplestorestate *SCDurableKeysByRecency(MemoryContext cxt,
											   TupleDesc *desc);

/* Read and decode the rows of the given keys with a fresh snapshot. */
extern SCDurableRow *SCDurableReadRows(const int32 *ids, char *const *keys,
									   int n, int *nrows);

#endif							/* SC_DURABLE_H */

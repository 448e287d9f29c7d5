/*-------------------------------------------------------------------------
 *
 * store.h
 *		The shared-memory store: partitions of a hash table of entries, each
 *		with its own lock, arena, per-user index, timing wheel and CLOCK
 *		eviction.
 *
 * The store is the bottom layer.  It knows nothing of cache definitions,
 * transactions, SQL, notifications or statistics: what it needs to know of
 * a cache (its timeouts, whether its entries may be evicted or expire
 * loudly, whether it still exists) it asks through an SCStorePolicy its
 * caller passes in, and what it removes on its own (expired, evicted) it
 * hands back in an SCRemovedBuf, for the caller to count and announce after
 * the lock is released.
 *
 * Locking rules (the only place they are written down):
 *
 * - A partition's lock protects everything in its region: key buckets,
 *   user buckets, arena, wheel, entry count, CLOCK hand, write generation.
 *   Nothing in one partition points into another.
 * - Lookups take it shared; they may set an entry's CLOCK bit while holding
 *   it shared (a one-byte store that races only with other stores of 1 and
 *   with the sweep's clear, which holds the lock exclusively).
 * - Linking, unlinking, allocating and freeing take it exclusive.
 * - Every function here takes and releases the locks it needs itself; no
 *   lock is held on return.  At most one partition lock is held at a time.
 * - Under a partition lock nothing allocates backend memory, throws, waits
 *   for another lock or calls up (policy callbacks must obey the same).
 *   Work that visits many entries does so in batches of at most
 *   SC_STORE_SCAN_BUCKETS buckets per lock hold.
 * - A block returned by SCStoreAllocEntry belongs to its caller until it is
 *   linked or freed, and is filled without any lock.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_STORE_H
#define SC_STORE_H

#include "storage/lwlock.h"

#include "entry.h"

#define SC_NUM_PARTITIONS		32	/* power of two */
#define SC_STORE_SCAN_BUCKETS	256 /* buckets visited per lock hold */
#define SC_STORE_EVICT_ENTRIES	256 /* entries an allocation may look at */

/* where a key or a user's index chain lives */
typedef struct SCHash
{
	uint64		h;				/* 64-bit hash; the low 32 bits are stored */
	int			partno;
} SCHash;

/* what the store must know of a cache */
typedef struct SCStoreRules
{
	int64		idle_us;		/* 0 = none */
	int64		max_us;			/* 0 = none */
	bool		durable;		/* a row stands behind each entry: it may be
								 * evicted under memory pressure */
	bool		notify;			/* the caller announces its changes */
} SCStoreRules;

/*
 * The caller's view of the caches.  Both callbacks run under a partition
 * lock: they must not allocate, throw, wait or take another lock.
 */
typedef struct SCStorePolicy
{
	/* a cache's rules; false when the id is unknown: its entries are kept */
	bool		(*rules) (int32 cache_id, SCStoreRules *out);
	/* is the cache defined now?  Entries of one that is not are not linked */
	bool		(*live) (int32 cache_id);
} SCStorePolicy;

typedef enum SCRemovedReason
{
	SC_REMOVED_EXPIRED,
	SC_REMOVED_EVICTED
} SCRemovedReason;

/* an entry the store removed on its own */
typedef struct SCRemoved
{
	int32		cache_id;
	uint8		reason;			/* SCRemovedReason */
	bool		durable;		/* its cache's rules said durable */
	bool		notify;			/* its cache's rules said notify */
	uint8		keylen;
	int64		version;
	char		key[255];
} SCRemoved;

/* a caller-owned buffer the store fills; never grown under a lock */
typedef struct SCRemovedBuf
{
	int			n;
	int			cap;
	SCRemoved  *items;
} SCRemovedBuf;

/* the state of one entry, copied out */
typedef struct SCEntryState
{
	int64		version;
	TimestampTz created_at;
	TimestampTz last_access;
	TimestampTz expires_at;
	SCEntryTimeouts timeouts;	/* per-entry overrides, 0 = none */
	int64		access_slot;	/* durable rows' idle-timer slot, 0 = none */
	char	   *user;			/* palloc'd, NULL when none */
	int			userlen;
	struct varlena *value;		/* palloc'd when asked for */
} SCEntryState;

/* a key copied out (user index) */
typedef struct SCKeyRef
{
	char	   *key;
	int			keylen;
} SCKeyRef;

/* ---- set-up (postmaster) ---- */

/* Shared memory the store needs for sessioncache.memory = memory_bytes. */
extern Size SCStoreShmemSize(Size memory_bytes);

/* Attach (and at first start, initialise) the store; locks[0..31]. */
extern void SCStoreShmemInit(Size memory_bytes, LWLockPadded *locks);

/* ---- hashing and limits (no lock) ---- */

extern SCHash SCStoreHashKey(int32 cache_id, const char *key, int keylen);
extern SCHash SCStoreHashUser(int32 cache_id, const char *user, int userlen);

/* The largest entry block: a quarter of a partition's heap. */
extern Size SCStoreMaxEntrySize(void);

/* Bytes an entry with these parts takes (before the arena's rounding). */
extern Size SCStoreEntrySize(bool has_timeouts, Size value_len, int keylen,
							 int userlen);

/* An entry's expiry time under a cache's rules. */
extern TimestampTz SCStoreExpiry(const SCStoreRules *rules, SCEntry *e);

/* ---- reads (lock shared, inside) ---- */

/*
 * Copy the live entry for (cache, key) into *st (value too when want_value),
 * set its CLOCK bit, and return true; false when absent or expired at 'now'.
 * *write_gen receives the partition's write generation either way (for
 * SCStoreInstallState).  Allocates in CurrentMemoryContext under the shared lock
 * (backends only; an error releases the lock through transaction abort).
 */
extern bool SCStoreRead(SCHash hash, int32 cache_id, const char *key,
						int keylen, const SCStoreRules *rules, TimestampTz now,
						bool want_value, SCEntryState *st, uint64 *write_gen);

/* A partition's write generation (lock shared, inside), for installs. */
extern uint64 SCStoreWriteGen(int partno);

/* The keys of a user's entries in every partition (palloc'd copies). */
extern SCKeyRef *SCStoreUserKeys(int32 cache_id, const char *user,
								 int userlen, int *nkeys);

/* ---- writes ---- */

/*
 * Allocate a block of nbytes in the key's partition (lock exclusive,
 * inside).  With may_evict, expired and evictable entries are reclaimed by
 * the CLOCK sweep, looking at most at SC_STORE_EVICT_ENTRIES entries (and
 * two turns of empty buckets) and removing at most removed->cap: the call
 * fails fast (returns 0) rather than sweep the whole partition; the next
 * call goes on where it stopped.
 */
extern uint32 SCStoreAllocEntry(SCHash hash, Size nbytes, bool may_evict,
								const SCStorePolicy *policy,
								SCRemovedBuf *removed);

/* Fill an unlinked block the caller owns (no lock: nobody else sees it). */
extern void SCStoreFillEntry(SCHash hash, uint32 off, int32 cache_id,
							 const char *key, int keylen,
							 const struct varlena *value,
							 const char *user, int userlen,
							 const SCEntryTimeouts *timeouts, int64 version,
							 int64 access_slot, TimestampTz created_at,
							 TimestampTz last_access);

/* Read back a block the caller owns (its staged write). */
extern void SCStoreReadOwn(int partno, uint32 off, const SCStoreRules *rules,
						   bool want_value, SCEntryState *st);

/* Free a block the caller owns (lock exclusive, inside). */
extern void SCStoreFreeEntry(int partno, uint32 off);

/* what SCStoreInstallState did */
typedef enum SCInstallResult
{
	SC_INSTALL_DONE,			/* linked */
	SC_INSTALL_PRESENT,			/* the key is in memory already */
	SC_INSTALL_RACED,			/* a write was applied to the partition since
								 * write_gen: read the row again to install */
	SC_INSTALL_GONE,			/* the cache is not live */
	SC_INSTALL_NO_ROOM			/* no block for it */
} SCInstallResult;

/*
 * The whole install of an entry read from the table: allocate its block
 * (evicting as SCStoreAllocEntry does when may_evict; NO_ROOM when there is
 * none or the entry is over SCStoreMaxEntrySize), fill it from st (value
 * included) and link it, unless a put or delete was applied to the
 * partition since write_gen was read (SCStoreRead, SCStoreWriteGen), the
 * cache is not live, or the key is already there.
 */
extern SCInstallResult SCStoreInstallState(SCHash hash, int32 cache_id,
										   const char *key, int keylen,
										   const SCEntryState *st,
										   uint64 write_gen, bool may_evict,
										   const SCStorePolicy *policy,
										   SCRemovedBuf *removed);

/*
 * Apply a committed put: replace the key's entry by the staged block (or
 * just remove it when staged is 0), or free the block when the cache is no
 * longer live.  Returns true when the cache was live.  Cannot fail.
 */
extern bool SCStoreApplyPut(SCHash hash, int32 cache_id, const char *key,
							int keylen, uint32 staged,
							const SCStorePolicy *policy);

/* Apply a committed delete.  Cannot fail.  Returns true when live. */
extern bool SCStoreApplyDelete(SCHash hash, int32 cache_id, const char *key,
							   int keylen, const SCStorePolicy *policy);

/*
 * Apply a committed touch at 'now' to a live entry: move its idle timer,
 * mark it dirty (when mark_dirty) for the writeback.  Returns true when the
 * entry was there and live.  Cannot fail.
 */
extern bool SCStoreApplyTouch(SCHash hash, int32 cache_id, const char *key,
							  int keylen, const SCStoreRules *rules,
							  TimestampTz now, bool mark_dirty);

/*
 * For the expiry of a durable row: is the key's copy live?  A live copy is
 * marked dirty (its row only looks expired because a touch has not been
 * written back yet); an expired copy is removed.
 */
extern bool SCStoreKeepIfLive(SCHash hash, int32 cache_id, const char *key,
							  int keylen, const SCStoreRules *rules,
							  TimestampTz now);

/* ---- work over many entries, in batches ---- */

/* a visitor's verdict on one entry */
typedef enum SCVisit
{
	SC_VISIT_KEEP,
	SC_VISIT_REMOVE				/* exclusive scans only */
} SCVisit;

/* called under the lock for each entry: no allocation, no error */
typedef SCVisit (*SCStoreVisitor) (SCEntry *e, void *arg);

typedef struct SCStoreCursor
{
	int			partno;
	uint32		bucket;
	uint32		need;			/* room a single bucket needs (SC_SCAN_ROOM) */
} SCStoreCursor;

typedef enum SCScanResult
{
	SC_SCAN_MORE,				/* call again */
	SC_SCAN_DONE,				/* every partition visited */
	SC_SCAN_ROOM				/* one bucket has more than 'room' entries */
} SCScanResult;

#define SC_STORE_CURSOR_INIT	{0, 0, 0}

/*
 * The one iterator: visit up to SC_STORE_SCAN_BUCKETS buckets of the
 * cursor's partition under one hold of its lock in 'mode', calling visit for
 * each entry, and stop early before a bucket that would make more than
 * 'room' visits in this batch (room < 0: no limit).  SC_SCAN_ROOM asks the
 * caller for at least cursor->need of room before the next call.
 */
extern SCScanResult SCStoreScan(SCStoreCursor *cur, LWLockMode mode,
								SCStoreVisitor visit, void *arg, int room);

/*
 * Advance one partition's wheel toward 'now', one tick per lock hold, until
 * caught up, max_ticks ticks were done or 'removed' is full.  Expired
 * entries are removed and reported; entries of caches the policy does not
 * know are kept and looked at again later.  Returns true when caught up.
 */
extern bool SCStoreAdvanceWheel(int partno, TimestampTz now,
								const SCStorePolicy *policy,
								SCRemovedBuf *removed, int max_ticks);

/* Re-slot every entry once (a cache's timeouts changed). */
extern void SCStoreReslotAll(const SCStorePolicy *policy);

/* Remove every entry of a dropped cache, batch by batch.  Cannot fail. */
extern void SCStoreRemoveCache(int32 cache_id);

/* Remove every entry (a new installation of the extension).  Cannot fail. */
extern void SCStoreRemoveAll(void);

/* ---- monitoring ---- */

typedef struct SCPartitionStats
{
	uint64		heap_bytes;		/* bytes the arena manages */
	uint64		used_bytes;		/* in allocated blocks, headers included */
	uint64		largest_free;	/* payload bytes of the largest free block */
	uint32		nentries;
	uint64		region_bytes;	/* the whole region, buckets included */
} SCPartitionStats;

extern void SCStorePartitionStats(int partno, SCPartitionStats *out);

/* Check one partition's heap, chains and counts (lock exclusive). */
extern bool SCStoreCheckPartition(int partno);

/*
 * The longest exclusive lock hold of a batch (scan, wheel tick) since the
 * last call, in microseconds; resets it.  Per process.
 */
extern uint64 SCStoreTakeMaxHoldUs(void);

#endif							/* SC_STORE_H */

/*-------------------------------------------------------------------------
 *
 * engine.h
 *		The entry operations: put, get, touch, patch, incr, delete,
 *		delete_user, user_entries, entry_info.
 *
 * Arguments arrive checked and converted (sql_api.c); nothing here knows
 * fcinfo.  Every function needs a transaction and no LWLock held; writes
 * take heavyweight locks (may wait, 40P01) and stage their result for
 * commit (xact.c).  Errors: 42704 (cache dropped meanwhile), 54000 (entry
 * too large), 53200 (memory full, memory-only cache), SC002 (per-user
 * limit), 22023/22003 (incr on a non-number or overflow), and whatever the
 * durable table's statements raise.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_ENGINE_H
#define SC_ENGINE_H

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#include "caches.h"

/* an entry copied out for user_entries and entry_info */
typedef struct SCEntryCopy
{
	char	   *key;
	char	   *user;			/* NULL when none */
	Jsonb	   *value;			/* NULL unless asked for */
	TimestampTz created_at;
	TimestampTz last_access;
	TimestampTz expires_at;		/* DT_NOEND when it never expires */
	int64		version;
	bool		durable;
} SCEntryCopy;

/* Create or replace; replace keeps created_at.  Returns the new version. */
extern int64 SCPut(const SCCacheDef *def, const char *key, int keylen,
				   Jsonb *value, const char *user, int userlen,
				   int64 idle_us, int64 max_us);
/* The value, or NULL when absent or expired; touch refreshes the timer. */
extern Jsonb *SCGet(const SCCacheDef *def, const char *key, int keylen,
					bool touch);
/* Refresh the idle timer; false when absent. */
extern bool SCTouch(const SCCacheDef *def, const char *key, int keylen);
/* value || patch, atomically; the merged value, or NULL when absent. */
extern Jsonb *SCPatch(const SCCacheDef *def, const char *key, int keylen,
					  Jsonb *patch);
/* value->field += delta, creating the entry; returns the new count. */
extern int64 SCIncr(const SCCacheDef *def, const char *key, int keylen,
					const char *field, int fieldlen, int64 delta,
					const char *user, int userlen);
/* Delete; false when absent. */
extern bool SCDelete(const SCCacheDef *def, const char *key, int keylen);
/* Delete a user's entries; returns how many. */
extern int	SCDeleteUser(const SCCacheDef *def, const char *user, int userlen);
/* A user's live entries, as SCEntryCopy (values included). */
extern List *SCUserEntries(const SCCacheDef *def, const char *user,
						   int userlen);
/* An entry's metadata (no value); false when absent. */
extern bool SCEntryInfo(const SCCacheDef *def, const char *key, int keylen,
						SCEntryCopy *out);

/*
 * Count and announce what the store removed on its own (expired memory-only
 * entries are announced, evictions counted), then empty the buffer.  With
 * wait_until (a worker), wait until then at most for room in the notify
 * ring rather than drop.  Call with no lock held.
 */
extern void SCReportRemoved(SCRemovedBuf *removed, TimestampTz wait_until);

#endif							/* SC_ENGINE_H */

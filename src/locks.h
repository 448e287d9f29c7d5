/*-------------------------------------------------------------------------
 *
 * locks.h
 *		Transaction-scoped heavyweight locks that serialize writers of a
 *		key, of a user's new keys, of a cache, and of the definitions.
 *
 * All may wait (and so may end in a detected deadlock, 40P01); none may be
 * taken while an LWLock is held.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_LOCKS_H
#define SC_LOCKS_H

#include "store.h"

/*
 * Serialize writers of one key until the end of the transaction.  Returns
 * true when this is the transaction's first lock in the cache: the caller
 * must then check that the cache was not dropped while it waited.
 */
extern bool SCLockKey(int32 cache_id, SCHash hash);

/* The same for the creators of one user's new keys (per-user limits). */
extern bool SCLockUser(int32 cache_id, SCHash user_hash);

/* Keep every writer of a cache out until the end of the transaction. */
extern void SCLockCacheExclusive(int32 cache_id);

/* Serialize define_cache and drop_cache. */
extern void SCLockCacheDefs(void);

/* Transaction and savepoint ends (xact.c). */
extern void SCLocksSubXactCommit(SubTransactionId mySubid,
								 SubTransactionId parentSubid);
extern void SCLocksSubXactAbort(void);
extern void SCLocksXactEnd(void);

#endif							/* SC_LOCKS_H */

/*-------------------------------------------------------------------------
 *
 * locks.c
 *		Heavyweight locks for writers (see locks.h).
 *
 * The tags are advisory lock tags in a field-4 space that the SQL advisory
 * functions do not use (they use 1 and 2), so PostgreSQL detects deadlocks
 * and a rolled-back savepoint releases what it took.
 *
 * Every writer of a cache holds the cache's lock in RowExclusiveLock (taking
 * it again is a local increment).  A transaction that holds many distinct
 * key locks in one cache tries to take the cache in ExclusiveLock instead,
 * without ever waiting for it: waiting while holding key locks would
 * deadlock with any writer waiting on one of them.  Past
 * SC_KEY_LOCKS_SOFT distinct keys it tries every SC_KEY_LOCKS_SOFT keys; if
 * it never gets the cache, it goes on with key locks (a transaction that
 * writes more keys than max_locks_per_transaction allows then fails with
 * PostgreSQL's own "out of shared memory", 53200).  Locking a key again
 * (65 incr of one counter) does not count.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/memutils.h"

#include "locks.h"

/* field 4 of our lock tags; pg_advisory_* use 1 and 2 */
#define SC_LOCK_KEY			0x5c01
#define SC_LOCK_USER		0x5c02
#define SC_LOCK_CACHE_DEFS	0x5c03
#define SC_LOCK_CACHE		0x5c04

#define SC_KEY_LOCKS_SOFT	64

/* per cache, this transaction's distinct key locks */
typedef struct CacheLocks
{
	int32		cache_id;
	int			nkeys;
	bool		escalated;
	SubTransactionId escalated_subid;
} CacheLocks;

static List *cache_locks = NIL;

static LockAcquireResult
locks_take(uint32 f1, uint32 f2, uint32 f3, uint16 kind, LOCKMODE mode,
		   bool dontwait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, f1, f2, f3, kind);
	return LockAcquire(&tag, mode, false, dontwait);
}

static bool
locks_in_cache(int32 cache_id, SCHash hash, uint16 kind)
{
	ListCell   *lc;
	CacheLocks *cl = NULL;
	bool		first = false;

	(void) locks_take(MyDatabaseId, 0, (uint32) cache_id, SC_LOCK_CACHE,
					  RowExclusiveLock, false);
	foreach(lc, cache_locks)
	{
		if (((CacheLocks *) lfirst(lc))->cache_id == cache_id)
		{
			cl = lfirst(lc);
			break;
		}
	}
	if (cl == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		cl = palloc0(sizeof(CacheLocks));
		cl->cache_id = cache_id;
		cache_locks = lappend(cache_locks, cl);
		MemoryContextSwitchTo(old);
		first = true;
	}
	if (cl->escalated)
		return first;
	if (locks_take((uint32) (hash.h >> 32), (uint32) hash.h, (uint32) cache_id,
				   kind, ExclusiveLock, false) == LOCKACQUIRE_ALREADY_HELD)
		return first;
	if (++cl->nkeys > SC_KEY_LOCKS_SOFT && cl->nkeys % SC_KEY_LOCKS_SOFT == 1 &&
		locks_take(MyDatabaseId, 0, (uint32) cache_id, SC_LOCK_CACHE,
				   ExclusiveLock, true) != LOCKACQUIRE_NOT_AVAIL)
	{
		cl->escalated = true;
		cl->escalated_subid = GetCurrentSubTransactionId();
	}
	return first;
}

bool
SCLockKey(int32 cache_id, SCHash hash)
{
	return locks_in_cache(cache_id, hash, SC_LOCK_KEY);
}

bool
SCLockUser(int32 cache_id, SCHash user_hash)
{
	return locks_in_cache(cache_id, user_hash, SC_LOCK_USER);
}

void
SCLockCacheExclusive(int32 cache_id)
{
	(void) locks_take(MyDatabaseId, 0, (uint32) cache_id, SC_LOCK_CACHE,
					  AccessExclusiveLock, false);
}

void
SCLockCacheDefs(void)
{
	(void) locks_take(MyDatabaseId, 0, 0, SC_LOCK_CACHE_DEFS, ExclusiveLock,
					  false);
}

void
SCLocksSubXactCommit(SubTransactionId mySubid, SubTransactionId parentSubid)
{
	ListCell   *lc;

	foreach(lc, cache_locks)
	{
		CacheLocks *cl = lfirst(lc);

		if (cl->escalated && cl->escalated_subid == mySubid)
			cl->escalated_subid = parentSubid;
	}
}

/*
 * The savepoint's locks are released, perhaps a cache lock taken in it:
 * forget what we know, so that the next write takes the cache lock and
 * checks the cache again (a drop_cache may commit in between).
 */
void
SCLocksSubXactAbort(void)
{
	cache_locks = NIL;
}

void
SCLocksXactEnd(void)
{
	/* the memory goes with TopTransactionContext */
	cache_locks = NIL;
}

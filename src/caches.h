/*-------------------------------------------------------------------------
 *
 * caches.h
 *		Named cache definitions, their shared copy and their counters.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_CACHES_H
#define SC_CACHES_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "storage/lwlock.h"

#include "settings.h"
#include "store.h"

typedef struct SCCacheDef
{
	int32		id;				/* never reused; entries refer to it */
	char		name[SC_CACHE_NAME_MAX + 1];
	bool		durable;
	bool		notify;
	bool		evict_oldest;	/* per-user policy: evict_oldest, else deny */
	int32		max_per_user;	/* 0 = no limit */
	int64		idle_us;		/* 0 = none */
	int64		max_us;			/* 0 = none */
} SCCacheDef;

/* counters of a cache, kept in shared memory */
typedef enum SCStat
{
	SC_STAT_HITS,
	SC_STAT_MISSES,
	SC_STAT_FILLS,
	SC_STAT_PUTS,
	SC_STAT_DELETES,
	SC_STAT_TOUCHES,
	SC_STAT_EXPIRED,
	SC_STAT_EVICTED,			/* memory pressure (durable caches) */
	SC_STAT_EVICTED_USER_LIMIT, /* per_user_policy evict_oldest */
	SC_STAT_NOTIFICATIONS,
	SC_NUM_STATS
} SCStat;

/* Shared memory to request, and attaching it (shmem_startup, under
 * AddinShmemInitLock). */
extern Size SCCachesShmemSize(void);
extern void SCCachesShmemInit(LWLock *lock);

/*
 * A timeout interval as microseconds, counted as extract(epoch) does (a
 * month is 30 days, a year 365.25).  Throws 22023 (not positive) or 22008
 * (over 100 years).
 */
extern int64 SCIntervalToUs(Interval *iv, const char *what);

/*
 * Make the shared copy reflect sessioncache.cache_defs (after a start or a
 * new installation).  Runs SQL: needs a transaction and no LWLock held.
 */
extern void SCCachesEnsureLoaded(void);

/*
 * Refresh this backend's copy of the definitions when the shared one
 * changed (loading it first when inside a transaction).  Callers refresh
 * before taking partition locks whose policy callbacks read the copy.
 */
extern void SCCachesRefresh(void);

/*
 * A cache by name as the current transaction sees it (its own staged
 * defines and drops first).  Checks SCCheckUsable; throws 42704.
 */
extern void SCResolveCache(const char *name, SCCacheDef *def);

/* Throws 42704 unless the cache is defined for the current transaction. */
extern void SCCheckCacheStillDefined(int32 cache_id);

/* A definition from this backend's copy, without refreshing it. */
extern bool SCCacheDefById(int32 cache_id, SCCacheDef *def);

/* The store's rules for a cache. */
extern void SCCacheRules(const SCCacheDef *def, SCStoreRules *rules);

/*
 * The policy the store uses to learn about caches: rules from this
 * backend's copy (refresh it first), liveness from the shared slots.
 */
extern const SCStorePolicy *SCCachesPolicy(void);

/* Did some cache's timeouts change since the expiry worker last asked? */
extern bool SCCachesTakeReslot(void);

/* Add to a counter (an atomic; no lock; unknown ids are ignored). */
extern void SCStatAdd(int32 cache_id, SCStat stat, int64 delta);

/*
 * define_cache and drop_cache: write the table now (SQL, heavyweight
 * locks), change the shared copy at commit.  Throw 0A000 (durability
 * change), 53400 (too many caches), 42704.
 */
extern void SCDefineCache(SCCacheDef *def, Interval *idle, Interval *max,
						  bool *created);
/* drop_cache: see SCDefineCache. */
extern void SCDropCache(const char *name);

/* CREATE EXTENSION: at commit, forget every cache and entry in memory. */
extern void SCCachesInstall(void);

/* Has this transaction staged a define or drop? */
extern bool SCCachesHavePending(void);

/*
 * Transaction end: at commit, apply the staged defines and drops to the
 * shared slots (cannot fail) and return the names of the caches whose
 * near-cache copies must be flushed (redefined or dropped); at abort,
 * forget them.
 */
extern List *SCCachesXactEnd(bool commit);
/* Savepoint released (commit) or rolled back. */
extern void SCCachesSubXactEnd(SubTransactionId mySubid,
							   SubTransactionId parentSubid, bool commit);

/* Copy out every definition with its counters; returns how many. */
extern int	SCCachesSnapshot(SCCacheDef *defs, uint64 (*stats)[SC_NUM_STATS],
							 TimestampTz *stats_reset);

/* Zero the counters of every cache. */
extern void SCResetStats(void);

#endif							/* SC_CACHES_H */

/*-------------------------------------------------------------------------
 *
 * caches.c
 *		Named cache definitions and their counters.
 *
 * The definitions are rows of sessioncache.cache_defs, so they survive
 * restarts and dumps.  Shared memory holds a copy (one slot per cache, with
 * the cache's counters) that is loaded from the table by the first caller
 * after a start, and changed by define_cache and drop_cache when their
 * transaction commits.  Each backend keeps a private copy of the slots and
 * refreshes it only when the shared generation number moves, so the read
 * path resolves a cache name without touching any shared lock.
 *
 * Cache ids come from a sequence and are never reused: an entry of a dropped
 * cache can never be mistaken for one of a cache created later.
 *
 * The store asks about caches through SCCachesPolicy: rules come from this
 * backend's copy (which callers refresh before taking partition locks) and
 * an id the copy does not know means "keep"; liveness comes from the shared
 * slots, read without a lock under a partition lock (a drop frees the slot
 * before it sweeps the partitions, so an apply or a fill either runs before
 * the sweep, which removes its entry, or sees the cache gone).
 *
 * Locking: the slot array is protected by its own LWLock (shared to read,
 * exclusive to change).  Counters are atomics.  define_cache and drop_cache
 * also take a transaction-scoped heavyweight lock (SCLockCacheDefs) so that
 * concurrent definers serialize and a slot is sure to be free at commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "caches.h"
#include "durable.h"
#include "internal_sql.h"
#include "locks.h"
#include "settings.h"
#include "store.h"

typedef struct CacheSlot
{
	SCCacheDef	def;			/* def.id == 0: free slot */
	pg_atomic_uint64 stats[SC_NUM_STATS];
} CacheSlot;

typedef struct CachesShared
{
	LWLock	   *lock;
	bool		loaded;			/* slots reflect the table */
	pg_atomic_uint32 reslot;	/* timeouts changed: re-slot the wheels */
	pg_atomic_uint64 generation;	/* bumped on every change of the slots */
	TimestampTz stats_reset;
	CacheSlot	slots[SC_MAX_CACHES];
} CachesShared;

static CachesShared *caches = NULL;

/* a free slot for a new cache, preferring id % SC_MAX_CACHES; -1 if none */
static int
caches_free_slot(int32 id, const bool *taken)
{
	int			s = id % SC_MAX_CACHES;
	int			i;

	for (i = 0; i < SC_MAX_CACHES; i++, s = (s + 1) % SC_MAX_CACHES)
		if (caches->slots[s].def.id == 0 && !(taken && taken[s]))
			return s;
	return -1;
}

/* this backend's copy of the definitions */
static SCCacheDef local_defs[SC_MAX_CACHES];
static int	local_ndefs = 0;
static uint64 local_generation = 0;

/* a define or drop staged by the current transaction */
typedef struct PendingDef
{
	SCCacheDef	def;
	bool		drop;
	bool		reset;			/* CREATE EXTENSION: forget every cache */
	SubTransactionId subid;
} PendingDef;

static List *pending_defs = NIL;

static CacheSlot *caches_slot_by_id(int32 cache_id);

Size
SCCachesShmemSize(void)
{
	return MAXALIGN(sizeof(CachesShared));
}

void
SCCachesShmemInit(LWLock *lock)
{
	bool		found;

	caches = ShmemInitStruct("sessioncache caches", SCCachesShmemSize(), &found);
	if (!found)
	{
		int			i,
					s;

		memset(caches, 0, sizeof(CachesShared));
		for (i = 0; i < SC_MAX_CACHES; i++)
			for (s = 0; s < SC_NUM_STATS; s++)
				pg_atomic_init_u64(&caches->slots[i].stats[s], 0);
		pg_atomic_init_u64(&caches->generation, 1);
		pg_atomic_init_u32(&caches->reslot, 0);
		caches->stats_reset = GetCurrentTimestamp();
	}
	caches->lock = lock;
}

/*
 * A timeout interval as a duration in microseconds, counted as
 * extract(epoch from interval) does: a day is 24 hours, a month 30 days, a
 * year 365.25 days.  Errors for non-positive or absurdly long intervals.
 */
int64
SCIntervalToUs(Interval *iv, const char *what)
{
	int128		us;

	us = (int128) (iv->month / MONTHS_PER_YEAR) *
		(int128) (DAYS_PER_YEAR * USECS_PER_DAY) +
		(int128) (iv->month % MONTHS_PER_YEAR) * DAYS_PER_MONTH * USECS_PER_DAY +
		(int128) iv->day * USECS_PER_DAY + iv->time;
	if (us <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", what)));
	if (us > (int128) SC_MAX_TIMEOUT_US)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("%s is too long", what),
				 errdetail("The longest timeout is 100 years.")));
	return (int64) us;
}

/*
 * Read sessioncache.cache_defs into defs[]; returns how many.  No lock is
 * held: SQL may wait for heavyweight locks, which must never happen under
 * an LWLock.
 */
static int
caches_read_table(SCCacheDef *defs)
{
	int			ret;
	uint64		i;
	SCSpiState	spi;
	MemoryContext old;

	SCSpiBegin(&spi);
	ret = SPI_execute("SELECT id, name, durable, notify, per_user_policy,"
					  " coalesce(max_per_user, 0), idle_timeout, max_lifespan"
					  " FROM sessioncache.cache_defs ORDER BY id",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read sessioncache.cache_defs: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed > SC_MAX_CACHES)
		elog(ERROR, "sessioncache.cache_defs has more than %d rows",
			 SC_MAX_CACHES);
	old = MemoryContextSwitchTo(spi.caller_cxt);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		SCCacheDef *def = &defs[i];
		bool		isnull;
		Datum		d;

		memset(def, 0, sizeof(SCCacheDef));
		def->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		strlcpy(def->name, SPI_getvalue(tup, desc, 2), sizeof(def->name));
		def->durable = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		def->notify = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		def->evict_oldest = (strcmp(SPI_getvalue(tup, desc, 5), "evict_oldest") == 0);
		def->max_per_user = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		d = SPI_getbinval(tup, desc, 7, &isnull);
		def->idle_us = isnull ? 0 : SCIntervalToUs(DatumGetIntervalP(d), "idle_timeout");
		d = SPI_getbinval(tup, desc, 8, &isnull);
		def->max_us = isnull ? 0 : SCIntervalToUs(DatumGetIntervalP(d), "max_lifespan");
	}
	MemoryContextSwitchTo(old);
	ret = (int) SPI_processed;
	SCSpiEnd(&spi);
	return ret;
}

/*
 * Make sure the shared slots reflect the table (after a start or a new
 * installation).  The table is read without any lock; the result is
 * installed only if no define or drop committed meanwhile (the generation
 * did not move), else read again.
 */
void
SCCachesEnsureLoaded(void)
{
	SCCacheDef	defs[SC_MAX_CACHES];

	while (!caches->loaded)
	{
		uint64		gen = pg_atomic_read_u64(&caches->generation);
		int			n = caches_read_table(defs);
		bool		used[SC_MAX_CACHES] = {0};
		int			i,
					s,
					k;

		LWLockAcquire(caches->lock, LW_EXCLUSIVE);
		if (caches->loaded || pg_atomic_read_u64(&caches->generation) != gen)
		{
			LWLockRelease(caches->lock);
			continue;
		}
		/* keep the slots (and counters) of caches still in the table */
		for (s = 0; s < SC_MAX_CACHES; s++)
		{
			for (i = 0; i < n; i++)
				if (caches->slots[s].def.id == defs[i].id)
					break;
			if (i < n)
			{
				caches->slots[s].def = defs[i];
				used[s] = true;
			}
			else
				caches->slots[s].def.id = 0;
		}
		/* and give the others a free slot */
		for (i = 0; i < n; i++)
		{
			for (s = 0; s < SC_MAX_CACHES; s++)
				if (used[s] && caches->slots[s].def.id == defs[i].id)
					break;
			if (s < SC_MAX_CACHES)
				continue;
			s = caches_free_slot(defs[i].id, used);
			Assert(s >= 0);		/* n <= SC_MAX_CACHES */
			for (k = 0; k < SC_NUM_STATS; k++)
				pg_atomic_write_u64(&caches->slots[s].stats[k], 0);
			caches->slots[s].def = defs[i];
			used[s] = true;
		}
		caches->loaded = true;
		pg_atomic_fetch_add_u64(&caches->generation, 1);
		LWLockRelease(caches->lock);
	}
}

/* Refresh this backend's copy when the shared one changed. */
static void
caches_refresh_local(void)
{
	uint64		gen;
	int			i;

	/* loading runs SQL: only inside a transaction (workers refresh outside) */
	if (IsTransactionState())
		SCCachesEnsureLoaded();
	gen = pg_atomic_read_u64(&caches->generation);
	if (gen == local_generation)
		return;
	LWLockAcquire(caches->lock, LW_SHARED);
	local_ndefs = 0;
	for (i = 0; i < SC_MAX_CACHES; i++)
		if (caches->slots[i].def.id != 0)
			local_defs[local_ndefs++] = caches->slots[i].def;
	local_generation = pg_atomic_read_u64(&caches->generation);
	LWLockRelease(caches->lock);
}

static PendingDef *
pending_def_find(const char *name)
{
	int			i;

	for (i = list_length(pending_defs) - 1; i >= 0; i--)
	{
		PendingDef *pd = list_nth(pending_defs, i);

		if (strcmp(pd->def.name, name) == 0)
			return pd;
	}
	return NULL;
}

/*
 * Find a cache by name as the current transaction sees it: its own staged
 * defines and drops first, then the shared definitions.  Error 42704 when
 * there is none.
 */
void
SCResolveCache(const char *name, SCCacheDef *def)
{
	PendingDef *pd;
	int			i;

	SCCheckUsable();
	pd = pending_def_find(name);
	if (pd != NULL && !pd->drop)
	{
		*def = pd->def;
		return;
	}
	if (pd == NULL)
	{
		caches_refresh_local();
		for (i = 0; i < local_ndefs; i++)
		{
			if (strcmp(local_defs[i].name, name) == 0)
			{
				*def = local_defs[i];
				return;
			}
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("cache \"%s\" does not exist", name),
			 errhint("Caches are created with sessioncache.define_cache().")));
}

/*
 * Error 42704 unless the cache with this id is defined for the current
 * transaction (staged by it, or committed and not dropped by it).
 */
void
SCCheckCacheStillDefined(int32 cache_id)
{
	int			i;
	bool		defined;

	for (i = list_length(pending_defs) - 1; i >= 0; i--)
	{
		PendingDef *pd = list_nth(pending_defs, i);

		if (pd->reset)
			break;
		if (pd->def.id == cache_id)
		{
			if (pd->drop)
				break;
			return;
		}
	}
	LWLockAcquire(caches->lock, LW_SHARED);
	defined = caches_slot_by_id(cache_id) != NULL;
	LWLockRelease(caches->lock);
	if (!defined || i >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("cache was dropped"),
				 errdetail("A concurrent drop_cache() committed first.")));
}

/*
 * The definition of a cache by id from this backend's copy, without
 * refreshing it (callers may hold a partition lock).  False when unknown.
 */
bool
SCCacheDefById(int32 cache_id, SCCacheDef *def)
{
	int			i;

	for (i = 0; i < local_ndefs; i++)
	{
		if (local_defs[i].id == cache_id)
		{
			*def = local_defs[i];
			return true;
		}
	}
	return false;
}

/* Refresh the local copy before taking partition locks that need it. */
void
SCCachesRefresh(void)
{
	caches_refresh_local();
}

void
SCCacheRules(const SCCacheDef *def, SCStoreRules *rules)
{
	rules->idle_us = def->idle_us;
	rules->max_us = def->max_us;
	rules->durable = def->durable;
	rules->notify = def->notify;
}

/* policy callback: runs under a partition lock, reads the local copy */
static bool
caches_policy_rules(int32 cache_id, SCStoreRules *rules)
{
	int			i;

	for (i = 0; i < local_ndefs; i++)
	{
		if (local_defs[i].id == cache_id)
		{
			SCCacheRules(&local_defs[i], rules);
			return true;
		}
	}
	return false;
}

static bool caches_policy_live(int32 cache_id);

static const SCStorePolicy caches_policy = {
	caches_policy_rules,
	caches_policy_live
};

const SCStorePolicy *
SCCachesPolicy(void)
{
	return &caches_policy;
}

static CacheSlot *
caches_slot_by_id(int32 cache_id)
{
	int			s = cache_id % SC_MAX_CACHES;
	int			i;

	if (cache_id <= 0)
		return NULL;
	for (i = 0; i < SC_MAX_CACHES; i++, s = (s + 1) % SC_MAX_CACHES)
		if (caches->slots[s].def.id == cache_id)
			return &caches->slots[s];
	return NULL;
}

/*
 * Policy callback: is the cache still defined?  Reads the shared slot
 * without a lock (see the file header).
 */
static bool
caches_policy_live(int32 cache_id)
{
	return caches_slot_by_id(cache_id) != NULL;
}

/* Did some cache's timeouts change since the expiry worker last asked? */
bool
SCCachesTakeReslot(void)
{
	return pg_atomic_exchange_u32(&caches->reslot, 0) != 0;
}

void
SCStatAdd(int32 cache_id, SCStat stat, int64 delta)
{
	CacheSlot  *slot = caches_slot_by_id(cache_id);

	if (slot != NULL)
		pg_atomic_fetch_add_u64(&slot->stats[stat], (uint64) delta);
}

/*
 * Caches there will be if the current transaction commits.  Exact, because
 * definers hold the heavyweight lock until their commit has been applied to
 * the slots.
 */
static int
caches_count_committed_and_staged(void)
{
	int			n = 0;
	int			i;
	ListCell   *lc;

	LWLockAcquire(caches->lock, LW_SHARED);
	for (i = 0; i < SC_MAX_CACHES; i++)
		if (caches->slots[i].def.id != 0)
			n++;
	LWLockRelease(caches->lock);
	foreach(lc, pending_defs)
	{
		PendingDef *pd = lfirst(lc);
		bool		committed = false;

		LWLockAcquire(caches->lock, LW_SHARED);
		committed = caches_slot_by_id(pd->def.id) != NULL;
		LWLockRelease(caches->lock);
		if (pd->drop && committed)
			n--;
		else if (!pd->drop && !committed)
			n++;
	}
	return n;
}

/*
 * define_cache: insert or update the row (idle and max are the intervals as
 * given, NULL for none), then stage the shared change for
 * commit.  The durability of an existing cache cannot change: its entries
 * would have to move between memory and the table.
 */
void
SCDefineCache(SCCacheDef *def, Interval *idle, Interval *max, bool *created)
{
	Datum		values[8];
	char		nulls[8] = "        ";
	Oid			types[8] = {TEXTOID, BOOLOID, BOOLOID, TEXTOID, INT4OID,
	INTERVALOID, INTERVALOID, INT4OID};
	int			ret;
	bool		isnull;
	int			ncaches;
	PendingDef *pd;
	MemoryContext old;
	SCSpiState	spi;

	SCCheckUsable();
	SCLockCacheDefs();
	SCCachesEnsureLoaded();

	SCSpiBegin(&spi);

	values[0] = CStringGetTextDatum(def->name);
	ret = SPI_execute_with_args("SELECT id, durable FROM sessioncache.cache_defs WHERE name = $1",
								1, types, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read sessioncache.cache_defs");
	*created = (SPI_processed == 0);
	if (!*created)
	{
		bool		was_durable;

		def->id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
		was_durable = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 2, &isnull));
		if (was_durable != def->durable)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot change the durability of cache \"%s\"", def->name),
					 errhint("Drop the cache and define it again.")));

		/*
		 * Writers in flight computed their rows' expiry from the old
		 * timeouts: wait for them, and keep new ones out until commit.
		 */
		SCLockCacheExclusive(def->id);
	}
	else
	{
		ncaches = caches_count_committed_and_staged();
		if (ncaches >= SC_MAX_CACHES)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many caches"),
					 errdetail("sessioncache supports at most %d caches.", SC_MAX_CACHES)));
		ret = SPI_execute("SELECT nextval('sessioncache.cache_id_seq')::int4", false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not draw a cache id");
		def->id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	}

	values[0] = CStringGetTextDatum(def->name);
	values[1] = BoolGetDatum(def->durable);
	values[2] = BoolGetDatum(def->notify);
	values[3] = CStringGetTextDatum(def->evict_oldest ? "evict_oldest" : "deny");
	values[4] = Int32GetDatum(def->max_per_user);
	if (def->max_per_user == 0)
		nulls[4] = 'n';
	/* the table keeps the intervals as given */
	values[5] = idle ? IntervalPGetDatum(idle) : (Datum) 0;
	if (idle == NULL)
		nulls[5] = 'n';
	values[6] = max ? IntervalPGetDatum(max) : (Datum) 0;
	if (max == NULL)
		nulls[6] = 'n';
	values[7] = Int32GetDatum(def->id);
	ret = SPI_execute_with_args("INSERT INTO sessioncache.cache_defs AS d"
								" (id, name, durable, notify, per_user_policy,"
								"  max_per_user, idle_timeout, max_lifespan)"
								" VALUES ($8, $1, $2, $3, $4, $5, $6, $7)"
								" ON CONFLICT (name) DO UPDATE SET"
								"  notify = excluded.notify,"
								"  per_user_policy = excluded.per_user_policy,"
								"  max_per_user = excluded.max_per_user,"
								"  idle_timeout = excluded.idle_timeout,"
								"  max_lifespan = excluded.max_lifespan",
								8, types, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not write sessioncache.cache_defs");
	if (!*created && def->durable)
		SCDurableRecomputeExpiry(def);
	SCSpiEnd(&spi);

	old = MemoryContextSwitchTo(TopTransactionContext);
	pd = palloc0(sizeof(PendingDef));
	pd->def = *def;
	pd->drop = false;
	pd->subid = GetCurrentSubTransactionId();
	pending_defs = lappend(pending_defs, pd);
	MemoryContextSwitchTo(old);
}

/* drop_cache: delete the definition and the durable rows, stage the rest. */
void
SCDropCache(const char *name)
{
	SCCacheDef	def;
	PendingDef *pd;
	MemoryContext old;
	int			ret;
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	SCSpiState	spi;

	SCLockCacheDefs();
	SCResolveCache(name, &def);
	/* wait for the cache's writers; keep new ones out */
	SCLockCacheExclusive(def.id);

	SCSpiBegin(&spi);
	values[0] = Int32GetDatum(def.id);
	ret = SPI_execute_with_args("DELETE FROM sessioncache.cache_defs WHERE id = $1",
								1, types, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not delete from sessioncache.cache_defs");
	SCDurableDropCache(def.id);
	SCSpiEnd(&spi);

	old = MemoryContextSwitchTo(TopTransactionContext);
	pd = palloc0(sizeof(PendingDef));
	pd->def = def;
	pd->drop = true;
	pd->subid = GetCurrentSubTransactionId();
	pending_defs = lappend(pending_defs, pd);
	MemoryContextSwitchTo(old);
}

bool
SCCachesHavePending(void)
{
	return pending_defs != NIL;
}

/*
 * A new installation of the extension committed: whatever shared memory
 * holds belongs to a dropped one (whose cache ids the new sequence may
 * reuse).  Forget every cache and every entry; the definitions are loaded
 * from the new table on next use.
 */
static void
caches_reset(void)
{
	int			i;

	LWLockAcquire(caches->lock, LW_EXCLUSIVE);
	for (i = 0; i < SC_MAX_CACHES; i++)
		caches->slots[i].def.id = 0;
	caches->loaded = false;
	pg_atomic_fetch_add_u64(&caches->generation, 1);
	LWLockRelease(caches->lock);
	SCStoreRemoveAll();
	SCInternalForgetOwner();
}

/* _install(): called by the install script */
void
SCCachesInstall(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PendingDef *pd = palloc0(sizeof(PendingDef));

	pd->reset = true;
	pd->subid = GetCurrentSubTransactionId();
	pending_defs = lappend(pending_defs, pd);
	MemoryContextSwitchTo(old);
}

/*
 * At commit, apply the staged defines and drops to the shared slots; at
 * abort, forget them.  Runs inside the commit: must not fail.  A slot is
 * always free for a new cache, since definers serialize on the heavyweight
 * lock and the table (which they checked) never holds more rows than slots.
 */
List *
SCCachesXactEnd(bool commit)
{
	ListCell   *lc;
	List	   *flush = NIL;

	if (pending_defs == NIL)
		return NIL;
	if (commit)
	{
		foreach(lc, pending_defs)
		{
			PendingDef *pd = lfirst(lc);
			CacheSlot  *slot;
			bool		had_slot;
			int			s;

			if (pd->reset)
			{
				caches_reset();
				continue;
			}
			LWLockAcquire(caches->lock, LW_EXCLUSIVE);
			slot = caches_slot_by_id(pd->def.id);
			had_slot = (slot != NULL);
			if (pd->drop)
			{
				if (slot != NULL)
					slot->def.id = 0;
			}
			else if (slot != NULL)
			{
				if (slot->def.idle_us != pd->def.idle_us ||
					slot->def.max_us != pd->def.max_us)
					pg_atomic_write_u32(&caches->reslot, 1);
				slot->def = pd->def;
			}
			else if ((s = caches_free_slot(pd->def.id, NULL)) >= 0)
			{
				slot = &caches->slots[s];
				for (s = 0; s < SC_NUM_STATS; s++)
					pg_atomic_write_u64(&slot->stats[s], 0);
				slot->def = pd->def;
			}
			else
			{
				/* only reachable when definers raced in REPEATABLE READ */
				caches->loaded = false;
				elog(WARNING, "sessioncache: no free slot for cache \"%s\"; reloading the definitions",
					 pd->def.name);
			}
			pg_atomic_fetch_add_u64(&caches->generation, 1);
			LWLockRelease(caches->lock);

			/* the slot is gone: now remove what the cache had in memory */
			if (pd->drop)
				SCStoreRemoveCache(pd->def.id);
			/* near caches hold copies made under the old definition */
			if (had_slot)
				flush = lappend(flush, pd->def.name);
		}
	}
	pending_defs = NIL;			/* the memory goes with the transaction */
	return flush;
}

void
SCCachesSubXactEnd(SubTransactionId mySubid, SubTransactionId parentSubid,
				   bool commit)
{
	ListCell   *lc;

	foreach(lc, pending_defs)
	{
		PendingDef *pd = lfirst(lc);

		if (pd->subid != mySubid)
			continue;
		if (commit)
			pd->subid = parentSubid;
		else
			pending_defs = foreach_delete_current(pending_defs, lc);
	}
}

/*
 * Copy out every definition with its counters, for the views.  Returns the
 * number of caches.
 */
int
SCCachesSnapshot(SCCacheDef *defs, uint64 (*stats)[SC_NUM_STATS],
				 TimestampTz *stats_reset)
{
	int			n = 0;
	int			i,
				s;

	SCCachesEnsureLoaded();
	LWLockAcquire(caches->lock, LW_SHARED);
	for (i = 0; i < SC_MAX_CACHES; i++)
	{
		if (caches->slots[i].def.id == 0)
			continue;
		defs[n] = caches->slots[i].def;
		for (s = 0; s < SC_NUM_STATS; s++)
			stats[n][s] = pg_atomic_read_u64(&caches->slots[i].stats[s]);
		n++;
	}
	*stats_reset = caches->stats_reset;
	LWLockRelease(caches->lock);
	return n;
}

/* Zero the counters (not the gauges) of every cache. */
void
SCResetStats(void)
{
	int			i,
				s;

	SCCachesEnsureLoaded();
	LWLockAcquire(caches->lock, LW_EXCLUSIVE);
	for (i = 0; i < SC_MAX_CACHES; i++)
		for (s = 0; s < SC_NUM_STATS; s++)
			pg_atomic_write_u64(&caches->slots[i].stats[s], 0);
	caches->stats_reset = GetCurrentTimestamp();
	LWLockRelease(caches->lock);
}

/*-------------------------------------------------------------------------
 *
 * views.c
 *		Functions behind the monitoring views: cache_stats, memory,
 *		memory_partitions, entries, and reset_stats() and check_memory().
 *
 * 1.0's SQL declares the OUT columns of its functions, so a view whose
 * columns changed in 1.1 has a C function of its own (sc_<name>_1_1) and
 * the 1.0 symbol keeps returning 1.0's shape, as pg_stat_statements does.
 *
 * Each copies what it reports out of shared memory one partition at a
 * time, under that partition's lock shared, and builds the rows after
 * releasing it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "caches.h"
#include "notify.h"
#include "settings.h"
#include "store.h"
#include "workers.h"

PG_FUNCTION_INFO_V1(sc_cache_stats);
PG_FUNCTION_INFO_V1(sc_cache_stats_1_1);
PG_FUNCTION_INFO_V1(sc_memory);
PG_FUNCTION_INFO_V1(sc_memory_1_1);
PG_FUNCTION_INFO_V1(sc_memory_partitions);
PG_FUNCTION_INFO_V1(sc_entries);
PG_FUNCTION_INFO_V1(sc_entries_1_1);
PG_FUNCTION_INFO_V1(sc_reset_stats);
PG_FUNCTION_INFO_V1(sc_check_memory);
PG_FUNCTION_INFO_V1(sc_workers);
PG_FUNCTION_INFO_V1(sc_notify_stats);

/* per-cache gauges summed by a shared scan of the store */
typedef struct CacheGauges
{
	int			n;
	int32		ids[SC_MAX_CACHES];
	uint64		entries[SC_MAX_CACHES];
	uint64		bytes[SC_MAX_CACHES];
} CacheGauges;

static SCVisit
gauges_visit(SCEntry *e, void *arg)
{
	CacheGauges *g = arg;
	int			i;

	for (i = 0; i < g->n; i++)
	{
		if (g->ids[i] == e->cache_id)
		{
			g->entries[i]++;
			g->bytes[i] += SCStoreEntrySize((e->flags & SC_ENTRY_HAS_TIMEOUTS) != 0,
											e->value_len, e->key_len,
											e->user_len);
			break;
		}
	}
	return SC_VISIT_KEEP;
}

/*
 * cache_stats.  In 1.0's shape (v1_1 false) evicted is the sum of both kinds
 * of eviction; in 1.1's, evicted counts memory pressure only and
 * evicted_user_limit (the column after it) the per-user limit.
 */
static void
views_cache_stats(FunctionCallInfo fcinfo, bool v1_1)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SCCacheDef *defs = palloc(sizeof(SCCacheDef) * SC_MAX_CACHES);
	uint64		(*stats)[SC_NUM_STATS] = palloc(sizeof(uint64[SC_NUM_STATS]) * SC_MAX_CACHES);
	TimestampTz reset;
	int			n;
	int			i;

	CacheGauges *g = palloc0(sizeof(CacheGauges));
	SCStoreCursor cur = SC_STORE_CURSOR_INIT;

	SCCheckUsable();
	n = SCCachesSnapshot(defs, stats, &reset);
	g->n = n;
	for (i = 0; i < n; i++)
		g->ids[i] = defs[i].id;
	while (SCStoreScan(&cur, LW_SHARED, gauges_visit, g, -1) == SC_SCAN_MORE)
		;
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < n; i++)
	{
		Datum		values[14];
		bool		nulls[14] = {0};
		int			c = 0;

		values[c++] = CStringGetTextDatum(defs[i].name);
		values[c++] = Int64GetDatum((int64) g->entries[i]);
		values[c++] = Int64GetDatum((int64) g->bytes[i]);
		values[c++] = Int64GetDatum((int64) stats[i][SC_STAT_HITS]);
		values[c++] = Int64GetDatum((int64) stats[i][SC_STAT_MISSES]);
		values[c++] = Int64GetDatum((int64) stats[i][SC_STAT_FILLS]);
		values[c++] = Int64GetDatum((int64) stats[i][SC_STAT_PUTS]);
		values[c++] = Int64GetDatum((int64) stats[i][SC_STAT_DELETES]);
		values[c++] = Int64GetDatum((int64) stats[i][SC_STAT_TOUCHES]);
		values[c++] = Int64GetDatum((int64) stats[i][SC_STAT_EXPIRED]);
		if (v1_1)
		{
			values[c++] = Int64GetDatum((int64) stats[i][SC_STAT_EVICTED]);
			values[c++] = Int64GetDatum((int64) stats[i][SC_STAT_EVICTED_USER_LIMIT]);
		}
		else
			values[c++] = Int64GetDatum((int64) (stats[i][SC_STAT_EVICTED] +
												 stats[i][SC_STAT_EVICTED_USER_LIMIT]));
		values[c++] = Int64GetDatum((int64) stats[i][SC_STAT_NOTIFICATIONS]);
		values[c++] = TimestampTzGetDatum(reset);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

Datum
sc_cache_stats(PG_FUNCTION_ARGS)
{
	views_cache_stats(fcinfo, false);
	return (Datum) 0;
}

Datum
sc_cache_stats_1_1(PG_FUNCTION_ARGS)
{
	views_cache_stats(fcinfo, true);
	return (Datum) 0;
}

/*
 * memory: total and used bytes of the partitions' regions, entries, and
 * how many entries fit at the current mean entry size (at the planned
 * 512 bytes per entry while the table is empty).  1.1 adds what predicts
 * 53200: a key goes to one partition of 32 and an entry must fit in one
 * free block there, so a memory-only put can fail while the total still
 * has room.  headroom_bytes is the smallest over the partitions of the
 * largest free block: the largest entry sure to fit wherever its key
 * falls (without evicting durable entries); fullest_* describe the
 * partition with the highest used fraction (used_bytes / total_bytes as
 * memory_partitions shows them).
 */
static void
views_memory(FunctionCallInfo fcinfo, bool v1_1)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[8];
	bool		nulls[8] = {0};
	uint64		used = 0;
	uint64		entries = 0;
	uint64		heap = 0;
	uint64		total;
	uint64		entry_bytes;
	uint64		headroom = PG_UINT64_MAX;
	int			fullest = 0;
	double		fullest_frac = -1.0;
	uint64		fullest_free = 0;
	int			i;

	SCCheckUsable();
	total = 0;
	for (i = 0; i < SC_NUM_PARTITIONS; i++)
	{
		SCPartitionStats ps;
		double		frac;

		SCStorePartitionStats(i, &ps);
		used += ps.used_bytes;
		entries += ps.nentries;
		heap += ps.heap_bytes;
		total += ps.region_bytes;
		headroom = Min(headroom, ps.largest_free);
		frac = ps.region_bytes > 0 ?
			(double) (ps.used_bytes + (ps.region_bytes - ps.heap_bytes)) /
			(double) ps.region_bytes : 0.0;
		if (frac > fullest_frac)
		{
			fullest_frac = frac;
			fullest = i;
			fullest_free = ps.largest_free;
		}
	}
	entry_bytes = entries > 0 ? Max(used / entries, 16) : 512;

	InitMaterializedSRF(fcinfo, 0);
	values[0] = Int64GetDatum((int64) total);
	values[1] = Int64GetDatum((int64) (used + (total - heap)));
	values[2] = Int64GetDatum((int64) entries);
	values[3] = Int64GetDatum((int64) (heap / entry_bytes));
	if (v1_1)
	{
		values[4] = Int64GetDatum((int64) headroom);
		values[5] = Int32GetDatum(fullest);
		values[6] = Float8GetDatum(fullest_frac);
		values[7] = Int64GetDatum((int64) fullest_free);
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

Datum
sc_memory(PG_FUNCTION_ARGS)
{
	views_memory(fcinfo, false);
	return (Datum) 0;
}

Datum
sc_memory_1_1(PG_FUNCTION_ARGS)
{
	views_memory(fcinfo, true);
	return (Datum) 0;
}

/*
 * memory_partitions: partition, total_bytes (its region), used_bytes
 * (allocated blocks plus the region's fixed part: buckets, wheel), largest
 * free block, entries.  Summed, total and used are memory's.
 */
Datum
sc_memory_partitions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	SCCheckUsable();
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < SC_NUM_PARTITIONS; i++)
	{
		SCPartitionStats ps;
		Datum		values[5];
		bool		nulls[5] = {0};

		SCStorePartitionStats(i, &ps);
		values[0] = Int32GetDatum(i);
		values[1] = Int64GetDatum((int64) ps.region_bytes);
		values[2] = Int64GetDatum((int64) (ps.used_bytes +
										   (ps.region_bytes - ps.heap_bytes)));
		values[3] = Int64GetDatum((int64) ps.largest_free);
		values[4] = Int64GetDatum((int64) ps.nentries);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* a batch of entries copied out under a partition lock, for the view */
#define ENTRIES_BATCH	512

typedef struct EntryRow
{
	int32		cache_id;
	uint8		keylen;
	uint8		userlen;
	bool		has_user;
	char		key[SC_KEY_MAX];
	char		user[SC_USER_MAX];
	TimestampTz created_at;
	TimestampTz last_access;
	TimestampTz expires_at;
	int64		version;
} EntryRow;

typedef struct EntryBatch
{
	int			n;
	TimestampTz now;
	EntryRow	rows[ENTRIES_BATCH];
} EntryBatch;

static SCVisit
entries_visit(SCEntry *e, void *arg)
{
	EntryBatch *b = arg;
	SCStoreRules rules;
	EntryRow   *r;

	if (!SCCachesPolicy()->rules(e->cache_id, &rules) ||
		SCStoreExpiry(&rules, e) <= b->now)
		return SC_VISIT_KEEP;
	r = &b->rows[b->n++];
	r->cache_id = e->cache_id;
	r->keylen = e->key_len;
	memcpy(r->key, SCEntryKey(e), e->key_len);
	r->has_user = (e->flags & SC_ENTRY_HAS_USER) != 0;
	r->userlen = e->user_len;
	if (r->has_user)
		memcpy(r->user, SCEntryUser(e), e->user_len);
	r->created_at = e->created_at;
	r->last_access = e->last_access;
	r->expires_at = SCStoreExpiry(&rules, e);
	r->version = e->version;
	return SC_VISIT_KEEP;
}

/*
 * May the caller read keys and user ids in clear?  The extension's owner,
 * superusers and members of sessioncache_app may (they can read the
 * entries through the API anyway); a monitor that is none of these sees
 * NULL instead.
 */
static bool
views_may_see_keys(Oid owner)
{
	Oid			app = get_role_oid("sessioncache_app", true);

	if (OidIsValid(owner) && has_privs_of_role(GetUserId(), owner))
		return true;
	return OidIsValid(app) && has_privs_of_role(GetUserId(), app);
}

/*
 * entries: every live entry in shared memory, without its value.  Keys and
 * user ids are NULL for a caller views_may_see_keys refuses; 1.1's shape
 * adds key_hash (the key's hash as on the invalidation channel) for all.
 */
static void
views_entries(FunctionCallInfo fcinfo, bool v1_1)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EntryBatch *b = palloc(sizeof(EntryBatch));
	SCStoreCursor cur = SC_STORE_CURSOR_INIT;
	SCScanResult res;
	uint8		secret[SC_CHANNEL_SECRET_LEN];
	bool		have_secret;
	Oid			owner = InvalidOid;
	bool		clear;

	SCCheckUsable();
	SCCachesRefresh();
	have_secret = SCNotifyReadSecret(secret, &owner);
	clear = views_may_see_keys(owner);
	InitMaterializedSRF(fcinfo, 0);
	b->now = GetCurrentTimestamp();
	do
	{
		int			i;

		b->n = 0;
		res = SCStoreScan(&cur, LW_SHARED, entries_visit, b, ENTRIES_BATCH);
		if (res == SC_SCAN_ROOM)
			elog(ERROR, "sessioncache: a bucket holds %u entries", cur.need);
		for (i = 0; i < b->n; i++)
		{
			EntryRow   *r = &b->rows[i];
			SCCacheDef	def;
			Datum		values[9];
			bool		nulls[9] = {0};

			if (!SCCacheDefById(r->cache_id, &def))
				continue;
			values[0] = CStringGetTextDatum(def.name);
			if (clear)
				values[1] = PointerGetDatum(cstring_to_text_with_len(r->key, r->keylen));
			else
				nulls[1] = true;
			if (r->has_user && clear)
				values[2] = PointerGetDatum(cstring_to_text_with_len(r->user, r->userlen));
			else
				nulls[2] = true;
			values[3] = TimestampTzGetDatum(r->created_at);
			values[4] = TimestampTzGetDatum(r->last_access);
			values[5] = TimestampTzGetDatum(r->expires_at);
			values[6] = BoolGetDatum(def.durable);
			values[7] = Int64GetDatum(r->version);
			if (v1_1)
			{
				char		hash[SC_NOTIFY_HASH_HEX + 1];

				if (have_secret)
				{
					SCNotifyKeyHash(secret, def.name, r->key, r->keylen, hash);
					values[8] = CStringGetTextDatum(hash);
				}
				else
					nulls[8] = true;
			}
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	} while (res != SC_SCAN_DONE);
}

Datum
sc_entries(PG_FUNCTION_ARGS)
{
	views_entries(fcinfo, false);
	return (Datum) 0;
}

Datum
sc_entries_1_1(PG_FUNCTION_ARGS)
{
	views_entries(fcinfo, true);
	return (Datum) 0;
}

Datum
sc_reset_stats(PG_FUNCTION_ARGS)
{
	SCCheckUsable();
	SCResetStats();
	PG_RETURN_VOID();
}

/*
 * check_memory(): walk every partition's heap and chains and check their
 * invariants.  A diagnostic for tests and for operators who suspect
 * corruption; takes each partition lock exclusive in turn.
 */
Datum
sc_check_memory(PG_FUNCTION_ARGS)
{
	int			partno;

	SCCheckUsable();
	for (partno = 0; partno < SC_NUM_PARTITIONS; partno++)
	{
		if (!SCStoreCheckPartition(partno))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("sessioncache shared memory is inconsistent in partition %d", partno)));
	}
	PG_RETURN_BOOL(true);
}

/*
 * workers: name, pid, last_run, runs, items, errors, and for the last run
 * its duration and its longest exclusive partition lock hold
 */
Datum
sc_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SCWorkerInfo info[SC_NUM_WORKERS];
	int			n;
	int			i;

	SCCheckUsable();
	n = SCWorkersSnapshot(info);
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < n; i++)
	{
		Datum		values[8];
		bool		nulls[8] = {0};

		values[0] = CStringGetTextDatum(info[i].name);
		values[1] = Int32GetDatum(info[i].pid);
		nulls[1] = (info[i].pid == 0);
		values[2] = TimestampTzGetDatum(info[i].last_run);
		nulls[2] = (info[i].last_run == 0);
		values[3] = Int64GetDatum((int64) info[i].runs);
		values[4] = Int64GetDatum((int64) info[i].items);
		values[5] = Int64GetDatum((int64) info[i].errors);
		values[6] = Float8GetDatum(info[i].last_duration_ms);
		values[7] = Int64GetDatum((int64) info[i].last_max_hold_us);
		nulls[6] = nulls[7] = (info[i].runs == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* notify_stats: queued (not yet sent), dropped, flushes */
Datum
sc_notify_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[3];
	bool		nulls[3] = {0};
	uint64		pending,
				dropped,
				flushes;

	SCCheckUsable();
	SCNotifyCounters(&pending, &dropped, &flushes);
	InitMaterializedSRF(fcinfo, 0);
	values[0] = Int64GetDatum((int64) pending);
	values[1] = Int64GetDatum((int64) dropped);
	values[2] = Int64GetDatum((int64) flushes);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

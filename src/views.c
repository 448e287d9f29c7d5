/*-------------------------------------------------------------------------
 *
 * views.c
 *		Functions behind the monitoring views: cache_stats, memory, entries,
 *		and reset_stats() and check_memory().
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
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "caches.h"
#include "notify.h"
#include "settings.h"
#include "store.h"
#include "workers.h"

PG_FUNCTION_INFO_V1(sc_cache_stats);
PG_FUNCTION_INFO_V1(sc_memory);
PG_FUNCTION_INFO_V1(sc_entries);
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

Datum
sc_cache_stats(PG_FUNCTION_ARGS)
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
		Datum		values[13];
		bool		nulls[13] = {0};

		values[0] = CStringGetTextDatum(defs[i].name);
		values[1] = Int64GetDatum((int64) g->entries[i]);
		values[2] = Int64GetDatum((int64) g->bytes[i]);
		values[3] = Int64GetDatum((int64) stats[i][SC_STAT_HITS]);
		values[4] = Int64GetDatum((int64) stats[i][SC_STAT_MISSES]);
		values[5] = Int64GetDatum((int64) stats[i][SC_STAT_FILLS]);
		values[6] = Int64GetDatum((int64) stats[i][SC_STAT_PUTS]);
		values[7] = Int64GetDatum((int64) stats[i][SC_STAT_DELETES]);
		values[8] = Int64GetDatum((int64) stats[i][SC_STAT_TOUCHES]);
		values[9] = Int64GetDatum((int64) stats[i][SC_STAT_EXPIRED]);
		values[10] = Int64GetDatum((int64) (stats[i][SC_STAT_EVICTED] +
											stats[i][SC_STAT_EVICTED_USER_LIMIT]));
		values[11] = Int64GetDatum((int64) stats[i][SC_STAT_NOTIFICATIONS]);
		values[12] = TimestampTzGetDatum(reset);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * memory: total and used bytes of the partitions' regions, entries, and
 * how many entries fit at the current mean entry size (at the planned
 * 512 bytes per entry while the table is empty).
 */
Datum
sc_memory(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[4];
	bool		nulls[4] = {0};
	uint64		used = 0;
	uint64		entries = 0;
	uint64		heap = 0;
	uint64		total;
	uint64		entry_bytes;
	int			i;

	SCCheckUsable();
	total = 0;
	for (i = 0; i < SC_NUM_PARTITIONS; i++)
	{
		SCPartitionStats ps;

		SCStorePartitionStats(i, &ps);
		used += ps.used_bytes;
		entries += ps.nentries;
		heap += ps.heap_bytes;
		total += ps.region_bytes;
	}
	entry_bytes = entries > 0 ? Max(used / entries, 16) : 512;

	InitMaterializedSRF(fcinfo, 0);
	values[0] = Int64GetDatum((int64) total);
	values[1] = Int64GetDatum((int64) (used + (total - heap)));
	values[2] = Int64GetDatum((int64) entries);
	values[3] = Int64GetDatum((int64) (heap / entry_bytes));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
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

/* entries: every live entry in shared memory, without its value */
Datum
sc_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EntryBatch *b = palloc(sizeof(EntryBatch));
	SCStoreCursor cur = SC_STORE_CURSOR_INIT;
	SCScanResult res;

	SCCheckUsable();
	SCCachesRefresh();
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
			Datum		values[8];
			bool		nulls[8] = {0};

			if (!SCCacheDefById(r->cache_id, &def))
				continue;
			values[0] = CStringGetTextDatum(def.name);
			values[1] = PointerGetDatum(cstring_to_text_with_len(r->key, r->keylen));
			if (r->has_user)
				values[2] = PointerGetDatum(cstring_to_text_with_len(r->user, r->userlen));
			else
				nulls[2] = true;
			values[3] = TimestampTzGetDatum(r->created_at);
			values[4] = TimestampTzGetDatum(r->last_access);
			values[5] = TimestampTzGetDatum(r->expires_at);
			values[6] = BoolGetDatum(def.durable);
			values[7] = Int64GetDatum(r->version);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	} while (res != SC_SCAN_DONE);
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

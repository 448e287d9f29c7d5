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

#include "sessioncache.h"

PG_FUNCTION_INFO_V1(sc_cache_stats);
PG_FUNCTION_INFO_V1(sc_memory);
PG_FUNCTION_INFO_V1(sc_entries);
PG_FUNCTION_INFO_V1(sc_reset_stats);
PG_FUNCTION_INFO_V1(sc_check_memory);
PG_FUNCTION_INFO_V1(sc_workers);
PG_FUNCTION_INFO_V1(sc_notify_stats);

Datum
sc_cache_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SCCacheDef *defs = palloc(sizeof(SCCacheDef) * SC_MAX_CACHES);
	uint64		(*stats)[SC_NUM_STATS] = palloc(sizeof(uint64[SC_NUM_STATS]) * SC_MAX_CACHES);
	TimestampTz reset;
	int			n;
	int			i;

	SCCheckUsable();
	n = SCCachesSnapshot(defs, stats, &reset);
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < n; i++)
	{
		Datum		values[13];
		bool		nulls[13] = {0};

		values[0] = CStringGetTextDatum(defs[i].name);
		values[1] = Int64GetDatum((int64) stats[i][SC_STAT_ENTRIES]);
		values[2] = Int64GetDatum((int64) stats[i][SC_STAT_BYTES]);
		values[3] = Int64GetDatum((int64) stats[i][SC_STAT_HITS]);
		values[4] = Int64GetDatum((int64) stats[i][SC_STAT_MISSES]);
		values[5] = Int64GetDatum((int64) stats[i][SC_STAT_FILLS]);
		values[6] = Int64GetDatum((int64) stats[i][SC_STAT_PUTS]);
		values[7] = Int64GetDatum((int64) stats[i][SC_STAT_DELETES]);
		values[8] = Int64GetDatum((int64) stats[i][SC_STAT_TOUCHES]);
		values[9] = Int64GetDatum((int64) stats[i][SC_STAT_EXPIRED]);
		values[10] = Int64GetDatum((int64) stats[i][SC_STAT_EVICTED]);
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
	for (i = 0; i < SC_NUM_PARTITIONS; i++)
	{
		SCPartition *part = &sc_shared->partitions[i];

		LWLockAcquire(part->lock, LW_SHARED);
		used += part->arena.used_bytes;
		entries += part->nentries;
		heap += part->arena.heap_end - part->arena.heap_start;
		LWLockRelease(part->lock);
	}
	total = (uint64) sc_shared->region_size * SC_NUM_PARTITIONS;
	entry_bytes = entries > 0 ? Max(used / entries, 16) : 512;

	InitMaterializedSRF(fcinfo, 0);
	values[0] = Int64GetDatum((int64) total);
	values[1] = Int64GetDatum((int64) (used + (total - heap)));
	values[2] = Int64GetDatum((int64) entries);
	values[3] = Int64GetDatum((int64) (heap / entry_bytes));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* entries: every live entry in shared memory, without its value */
Datum
sc_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();
	int			partno;

	SCCheckUsable();
	SCCachesRefresh();
	InitMaterializedSRF(fcinfo, 0);
	for (partno = 0; partno < SC_NUM_PARTITIONS; partno++)
	{
		List	   *rows = SCTableCopyPartition(partno, now);
		ListCell   *lc;

		foreach(lc, rows)
		{
			SCEntryCopy *c = lfirst(lc);
			Datum		values[8];
			bool		nulls[8] = {0};

			values[0] = CStringGetTextDatum(c->cache);
			values[1] = CStringGetTextDatum(c->key);
			if (c->user)
				values[2] = CStringGetTextDatum(c->user);
			else
				nulls[2] = true;
			values[3] = TimestampTzGetDatum(c->created_at);
			values[4] = TimestampTzGetDatum(c->last_access);
			values[5] = TimestampTzGetDatum(c->expires_at);
			values[6] = BoolGetDatum(c->durable);
			values[7] = Int64GetDatum(c->version);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		list_free_deep(rows);
	}
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
		if (!SCTableCheckPartition(partno))
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

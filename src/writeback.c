/*-------------------------------------------------------------------------
 *
 * writeback.c
 *		Write-behind of touched idle timers, and the pre-warm after a start.
 *
 * touch() changes only shared memory and marks the entry dirty.  Every
 * sessioncache.flush_interval the writeback worker collects the dirty
 * entries of durable caches and writes their last_access (and expiry time)
 * to the table in one statement per batch: many touches of one entry become
 * one row update.  A crash loses at most the touches of the last interval,
 * so an idle timer can look older than it is by at most that much, never
 * younger.  Rows locked by a writer are skipped: that writer stores a newer
 * last_access itself.
 *
 * The pre-warm worker walks the table's live rows, most recently used
 * first, and installs them in shared memory without evicting anything,
 * until memory runs out.  Reads are served (by lazy fills) from the first
 * moment; pre-warm only saves them the trip to the table.  Each batch of
 * rows is re-read with a fresh snapshot and installed under the same
 * write-generation guard as a fill, so pre-warm never installs a value
 * older than one already committed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/datum.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "sessioncache.h"

#define WRITEBACK_BATCH		10000	/* entries collected per round */
#define WRITEBACK_CHUNK		500		/* rows updated per transaction */
#define PREWARM_BATCH		1000
#define SCAN_BUCKETS		1024	/* buckets visited per lock hold */

typedef struct DirtyEntry
{
	int32		cache_id;
	char	   *key;
	TimestampTz last_access;
	TimestampTz expires_at;
} DirtyEntry;

/*
 * Collect up to max dirty entries of durable caches and clear their dirty
 * bit.  Visits the partitions SCAN_BUCKETS buckets per lock hold.
 */
static int
writeback_collect(DirtyEntry *out, int max)
{
	int			n = 0;
	int			partno;

	SCCachesRefresh();
	for (partno = 0; partno < SC_NUM_PARTITIONS && n < max; partno++)
	{
		SCPartition *part = &sc_shared->partitions[partno];
		char	   *base = SCRegion(partno);
		uint32		b = 0;

		while (b < sc_shared->nbuckets && n < max)
		{
			uint32		end = Min(b + SCAN_BUCKETS, sc_shared->nbuckets);
			instr_time	held;

			LWLockAcquire(part->lock, LW_EXCLUSIVE);
			INSTR_TIME_SET_CURRENT(held);
			for (; b < end && n < max; b++)
			{
				uint32		off;

				for (off = SCTableBucket(partno, b); off != 0 && n < max;
					 off = SCEntryAt(base, off)->next)
				{
					SCEntry    *e = SCEntryAt(base, off);
					SCCacheDef	def;

					if (!(e->flags & SC_ENTRY_DIRTY))
						continue;
					e->flags &= ~SC_ENTRY_DIRTY;
					if (!SCCacheDefById(e->cache_id, &def))
						continue;
					out[n].cache_id = e->cache_id;
					out[n].key = pnstrdup(SCEntryKey(e), e->key_len);
					out[n].last_access = e->last_access;
					out[n].expires_at = SCExpiresAt(&def, e);
					n++;
				}
			}
			SCWorkerHoldDone(held);
			LWLockRelease(part->lock);
		}
	}
	return n;
}

/*
 * Write one chunk of collected touches in a transaction of its own.  Small
 * chunks keep short the time a writer of one of these keys waits for the
 * row lock.  Returns the rows written.
 */
static int64
writeback_write(DirtyEntry *dirty, int n)
{
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *keys = palloc(sizeof(Datum) * n);
	Datum	   *las = palloc(sizeof(Datum) * n);
	Datum	   *exps = palloc(sizeof(Datum) * n);
	Oid			types[4] = {INT4ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
	TIMESTAMPTZARRAYOID};
	Datum		values[4];
	SCSpiState	spi;
	int			ret;
	int			i;
	int64		written;

	SCWorkerBeginTransaction();
	for (i = 0; i < n; i++)
	{
		ids[i] = Int32GetDatum(dirty[i].cache_id);
		keys[i] = CStringGetTextDatum(dirty[i].key);
		las[i] = TimestampTzGetDatum(dirty[i].last_access);
		exps[i] = TimestampTzGetDatum(dirty[i].expires_at);
	}
	values[0] = PointerGetDatum(construct_array(ids, n, INT4OID, 4, true, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(las, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[3] = PointerGetDatum(construct_array(exps, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	SCSpiBegin(&spi);
	ret = SPI_execute_with_args("WITH v AS (SELECT * FROM unnest($1, $2, $3, $4) AS v(cid, key, la, exp)),"
								" l AS (SELECT d.ctid AS tid, v.la, v.exp"
								"       FROM sessioncache.durable_entries d"
								"       JOIN v ON d.cache_id = v.cid AND d.key = v.key"
								"       WHERE d.last_access < v.la"
								"       FOR UPDATE OF d SKIP LOCKED)"
								" UPDATE sessioncache.durable_entries d"
								" SET last_access = l.la, expires_at = l.exp"
								" FROM l WHERE d.ctid = l.tid",
								4, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not write back touches: %s", SPI_result_code_string(ret));
	written = (int64) SPI_processed;
	SCSpiEnd(&spi);
	SCWorkerCommit();
	return written;
}

/* One round of the writeback worker.  Returns the rows written. */
int64
SCWritebackRun(void)
{
	DirtyEntry *dirty = palloc(sizeof(DirtyEntry) * WRITEBACK_BATCH);
	int			n;
	int			done;
	int64		written = 0;

	/* the definitions, loaded in a transaction; the copy outlives it */
	SCWorkerBeginTransaction();
	SCCachesEnsureLoaded();
	SCCachesRefresh();
	SCWorkerCommit();

	n = writeback_collect(dirty, WRITEBACK_BATCH);
	for (done = 0; done < n; done += WRITEBACK_CHUNK)
		written += writeback_write(dirty + done, Min(WRITEBACK_CHUNK, n - done));
	return written;
}

/* Remember every partition's write generation before reading a batch. */
static void
prewarm_write_gens(uint64 *gens)
{
	int			i;

	for (i = 0; i < SC_NUM_PARTITIONS; i++)
	{
		SCPartition *part = &sc_shared->partitions[i];

		LWLockAcquire(part->lock, LW_SHARED);
		gens[i] = part->write_gen;
		LWLockRelease(part->lock);
	}
}

/*
 * Install one batch of keys: re-read their rows with a fresh snapshot and
 * install each that nothing overtook.  Returns entries installed; sets
 * *full when memory ran out.
 */
static int
prewarm_batch(Datum *ids, Datum *keys, int n, bool *full)
{
	uint64		gens[SC_NUM_PARTITIONS];
	Oid			types[2] = {INT4ARRAYOID, TEXTARRAYOID};
	Datum		values[2];
	int			ret;
	uint64		i;
	int			installed = 0;
	int			no_room = 0;

	values[0] = PointerGetDatum(construct_array(ids, n, INT4OID, 4, true, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	prewarm_write_gens(gens);
	ret = SPI_execute_with_args("SELECT d.cache_id, d.key, d.user_id, d.value, d.created_at,"
								" d.last_access, coalesce(d.idle_us, 0), coalesce(d.max_us, 0), d.version"
								" FROM unnest($1, $2) AS v(cid, key)"
								" JOIN sessioncache.durable_entries d ON d.cache_id = v.cid AND d.key = v.key",
								2, types, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	SCCachesRefresh();
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		SCCacheDef	def;
		SCKeyState	st;
		char	   *key;
		Datum		d;
		SCHash		hash;
		int			r;

		if (!SCCacheDefById(DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull)), &def))
			continue;
		key = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		st.user = isnull ? NULL : TextDatumGetCString(d);
		st.userlen = isnull ? 0 : strlen(st.user);
		st.value = DatumGetJsonbP(SPI_getbinval(tup, desc, 4, &isnull));
		st.created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
		st.last_access = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
		st.timeouts.idle_us = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		st.timeouts.max_us = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
		st.version = DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
		SCAdvanceVersion(st.version);
		hash = SCHashKey(def.id, key, strlen(key));
		r = SCInstallEntry(&def, hash, key, strlen(key), &st, gens[hash.partno], false);
		if (r > 0)
			installed++;
		else if (r < 0 && ++no_room >= 64)
		{
			*full = true;
			break;
		}
	}
	return installed;
}

/* The pre-warm worker's single round.  Returns entries installed. */
int64
SCPrewarmRun(void)
{
	SCSpiState	spi;
	Portal		portal;
	int64		installed = 0;
	bool		full = false;
	TimestampTz start = GetCurrentTimestamp();

	SCWorkerBeginTransaction();
	SCCachesEnsureLoaded();
	SCSpiBegin(&spi);
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT cache_id, key FROM sessioncache.durable_entries"
									   " WHERE expires_at > now() ORDER BY last_access DESC",
									   0, NULL, NULL, NULL, true, 0);
	while (!full)
	{
		Datum	   *ids;
		Datum	   *keys;
		uint64		i;
		uint64		n;

		SPI_cursor_fetch(portal, true, PREWARM_BATCH);
		n = SPI_processed;
		if (n == 0)
			break;
		ids = palloc(sizeof(Datum) * n);
		keys = palloc(sizeof(Datum) * n);
		for (i = 0; i < n; i++)
		{
			bool		isnull;

			ids[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
			keys[i] = datumCopy(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull),
								false, -1);
		}
		SPI_freetuptable(SPI_tuptable);
		installed += prewarm_batch(ids, keys, (int) n, &full);
		pfree(ids);
		pfree(keys);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	SCSpiEnd(&spi);
	SCWorkerCommit();
	ereport(LOG,
			(errmsg("sessioncache prewarm loaded " INT64_FORMAT " entries in %ld ms%s",
					installed,
					(long) ((GetCurrentTimestamp() - start) / 1000),
					full ? " (memory full)" : "")));
	return installed;
}

/*-------------------------------------------------------------------------
 *
 * durable.c
 *		The durable table behind durable caches: write-through, row reads
 *		for fills, the guard against changes made behind the API's back.
 *
 * A durable cache's entries are rows of sessioncache.durable_entries, an
 * ordinary WAL-logged table: the row is the truth, shared memory a copy that
 * can always be rebuilt.  Writes change the row in the caller's transaction
 * (so a commit makes them as durable as any row, and a rollback takes them
 * back) while the shared copy changes only when that transaction commits
 * (xact.c).  Touches are written back in batches by the flush worker
 * (writeback.c).
 *
 * The app role may not write the table: the statements here run as the
 * table's owner, and a statement trigger refuses any change that does not
 * come from here, so the shared copy can never silently disagree with the
 * table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "sessioncache.h"

PG_FUNCTION_INFO_V1(durable_guard);

/* prepared once per backend */
static SPIPlanPtr plan_read = NULL;
static SPIPlanPtr plan_upsert = NULL;
static SPIPlanPtr plan_delete = NULL;
static SPIPlanPtr plan_user_keys = NULL;
static SPIPlanPtr plan_touch = NULL;

static SPIPlanPtr
durable_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*slot = p;
	}
	return *slot;
}

/*
 * Read the row of a key.  False when there is none or it has expired.  The
 * row is read with the latest snapshot, whatever the caller's isolation
 * level: shared memory always holds the latest committed state, and a read
 * must not depend on whether it hit memory or the table (a transaction
 * snapshot in REPEATABLE READ could otherwise return, and fill, a value
 * older than one already committed).
 */
bool
SCDurableRead(const SCCacheDef *def, const char *key, int keylen,
			  bool want_value, SCKeyState *st)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	SCSpiState	spi;
	bool		found = false;
	int			ret;

	values[0] = Int32GetDatum(def->id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(key, keylen));
	SCSpiBegin(&spi);
	ret = SPI_execute_snapshot(durable_plan(&plan_read,
											"SELECT user_id, value, created_at, last_access,"
											" coalesce(idle_us, 0), coalesce(max_us, 0), version"
											" FROM sessioncache.durable_entries"
											" WHERE cache_id = $1 AND key = $2",
											2, types),
							   values, NULL, GetLatestSnapshot(),
							   InvalidSnapshot, false, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		st->created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
		st->last_access = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
		st->timeouts.idle_us = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		st->timeouts.max_us = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		st->version = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		st->resident = false;
		st->filled = false;
		st->expires_at = SCComputeExpiry(def, &st->timeouts, st->created_at,
										 st->last_access);
		if (st->expires_at > GetCurrentTimestamp())
		{
			MemoryContext old = MemoryContextSwitchTo(spi.caller_cxt);

			found = true;
			d = SPI_getbinval(tup, desc, 1, &isnull);
			st->user = isnull ? NULL : TextDatumGetCString(d);
			st->userlen = isnull ? 0 : strlen(st->user);
			st->value = NULL;
			if (want_value)
			{
				d = SPI_getbinval(tup, desc, 2, &isnull);
				st->value = DatumGetJsonbPCopy(d);
			}
			MemoryContextSwitchTo(old);
		}
	}
	SCSpiEnd(&spi);
	return found;
}

/*
 * Insert or replace the row of a put.  The stored version never goes
 * backwards, even against a row written before a restart; returns it.
 * With keep_live_created (the caller did not read the row), a live row's
 * created_at is kept and returned in *created_at.
 */
int64
SCDurableWritePut(const SCCacheDef *def, const char *key, int keylen,
				  Jsonb *value, const char *user, int userlen,
				  const SCEntryTimeouts *timeouts, int64 version,
				  TimestampTz *created_at, TimestampTz now,
				  bool keep_live_created)
{
	Oid			types[12] = {INT4OID, TEXTOID, TEXTOID, JSONBOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID, BOOLOID,
	INT8OID};
	Datum		values[12];
	char		nulls[12] = "            ";
	SCSpiState	spi;
	bool		isnull;
	int			ret;
	int64		max_us = timeouts->max_us ? timeouts->max_us : def->max_us;

	values[0] = Int32GetDatum(def->id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(key, keylen));
	if (user != NULL)
		values[2] = PointerGetDatum(cstring_to_text_with_len(user, userlen));
	else
		nulls[2] = 'n';
	values[3] = JsonbPGetDatum(value);
	values[4] = TimestampTzGetDatum(*created_at);
	values[5] = TimestampTzGetDatum(now);
	values[6] = Int64GetDatum(timeouts->idle_us);
	if (timeouts->idle_us == 0)
		nulls[6] = 'n';
	values[7] = Int64GetDatum(timeouts->max_us);
	if (timeouts->max_us == 0)
		nulls[7] = 'n';
	values[8] = Int64GetDatum(version);
	values[9] = TimestampTzGetDatum(SCComputeExpiry(def, timeouts, *created_at, now));
	values[10] = BoolGetDatum(keep_live_created);
	values[11] = Int64GetDatum(max_us);

	SCSpiBegin(&spi);
	ret = SPI_execute_plan(durable_plan(&plan_upsert,
										"INSERT INTO sessioncache.durable_entries AS d"
										" (cache_id, key, user_id, value, created_at, last_access,"
										"  idle_us, max_us, version, expires_at)"
										" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
										" ON CONFLICT (cache_id, key) DO UPDATE SET"
										"  user_id = excluded.user_id, value = excluded.value,"
										"  created_at = CASE WHEN $11 AND d.expires_at > $6"
										"               THEN d.created_at ELSE excluded.created_at END,"
										"  last_access = excluded.last_access,"
										"  idle_us = excluded.idle_us, max_us = excluded.max_us,"
										"  version = greatest(excluded.version, d.version + 1),"
										"  expires_at = CASE WHEN $11 AND d.expires_at > $6 AND $12 > 0"
										"               THEN least(excluded.expires_at,"
										"                          d.created_at + $12 * interval '1 microsecond')"
										"               ELSE excluded.expires_at END"
										" RETURNING version, created_at",
										12, types),
						   values, nulls, false, 1);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not write sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	*created_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 2, &isnull));
	SCSpiEnd(&spi);
	SCAdvanceVersion(version);
	return version;
}

void
SCDurableWriteDelete(const SCCacheDef *def, const char *key, int keylen)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	SCSpiState	spi;
	int			ret;

	values[0] = Int32GetDatum(def->id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(key, keylen));
	SCSpiBegin(&spi);
	ret = SPI_execute_plan(durable_plan(&plan_delete,
										"DELETE FROM sessioncache.durable_entries"
										" WHERE cache_id = $1 AND key = $2",
										2, types),
						   values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not delete from sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	SCSpiEnd(&spi);
}

/*
 * A touch of an entry that is not in shared memory: update the row's idle
 * timer now, in the caller's transaction.
 */
void
SCDurableTouch(const SCCacheDef *def, const char *key, int keylen,
			   const SCKeyState *cur)
{
	Oid			types[4] = {INT4OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[4];
	SCSpiState	spi;
	TimestampTz now = GetCurrentTimestamp();
	int			ret;

	values[0] = Int32GetDatum(def->id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(key, keylen));
	values[2] = TimestampTzGetDatum(now);
	values[3] = TimestampTzGetDatum(SCComputeExpiry(def, &cur->timeouts,
													cur->created_at, now));
	SCSpiBegin(&spi);
	ret = SPI_execute_plan(durable_plan(&plan_touch,
										"UPDATE sessioncache.durable_entries"
										" SET last_access = $3, expires_at = $4"
										" WHERE cache_id = $1 AND key = $2 AND last_access < $3",
										4, types),
						   values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not update sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	SCSpiEnd(&spi);
	SCStatAdd(def->id, SC_STAT_TOUCHES, 1);
}

/* Keys of a user's rows (live or not: callers re-read each key). */
List *
SCDurableUserKeys(const SCCacheDef *def, const char *user, int userlen)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	SCSpiState	spi;
	List	   *keys = NIL;
	uint64		i;
	int			ret;

	values[0] = Int32GetDatum(def->id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(user, userlen));
	SCSpiBegin(&spi);
	ret = SPI_execute_snapshot(durable_plan(&plan_user_keys,
											"SELECT key FROM sessioncache.durable_entries"
											" WHERE cache_id = $1 AND user_id = $2",
											2, types),
							   values, NULL, GetLatestSnapshot(),
							   InvalidSnapshot, false, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i],
									  SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(spi.caller_cxt);

		keys = lappend(keys, DatumGetTextPCopy(d));
		MemoryContextSwitchTo(old);
	}
	SCSpiEnd(&spi);
	return keys;
}

/* Remove every row of a dropped cache. */
void
SCDurableDropCache(int32 cache_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	SCSpiState	spi;
	int			ret;

	values[0] = Int32GetDatum(cache_id);
	SCSpiBegin(&spi);
	ret = SPI_execute_with_args("DELETE FROM sessioncache.durable_entries WHERE cache_id = $1",
								1, types, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not delete from sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	SCSpiEnd(&spi);
}

/*
 * After define_cache changed a durable cache's timeouts, recompute the
 * stored expiry times (the expiry worker scans by them).
 */
void
SCDurableRecomputeExpiry(const SCCacheDef *def)
{
	Oid			types[3] = {INT4OID, INT8OID, INT8OID};
	Datum		values[3];
	SCSpiState	spi;
	int			ret;

	values[0] = Int32GetDatum(def->id);
	values[1] = Int64GetDatum(def->idle_us);
	values[2] = Int64GetDatum(def->max_us);
	SCSpiBegin(&spi);
	ret = SPI_execute_with_args("UPDATE sessioncache.durable_entries SET expires_at ="
								" least(CASE WHEN coalesce(idle_us, $2) = 0 THEN 'infinity'"
								"            ELSE last_access + coalesce(idle_us, $2) * interval '1 microsecond' END,"
								"       CASE WHEN coalesce(max_us, $3) = 0 THEN 'infinity'"
								"            ELSE created_at + coalesce(max_us, $3) * interval '1 microsecond' END)"
								" WHERE cache_id = $1",
								3, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not update sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	SCSpiEnd(&spi);
}

/*
 * Statement trigger on the durable table: only sessioncache itself may
 * change it (SCSpiBegin raises the flag).  An operator's UPDATE would
 * otherwise leave shared memory serving the old value.
 */
Datum
durable_guard(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "durable_guard: not called as a trigger");
	if (!SCInternalWrite())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("sessioncache.durable_entries can only be changed through the sessioncache functions"),
				 errdetail("Shared memory holds a copy of these rows that a direct change would leave stale."),
				 errhint("Use sessioncache.put(), sessioncache.delete() or sessioncache.drop_cache().")));
	return PointerGetDatum(NULL);
}

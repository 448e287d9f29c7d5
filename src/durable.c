/*-------------------------------------------------------------------------
 *
 * durable.c
 *		The durable table behind durable caches: write-through, row reads
 *		for fills and pre-warm, write-back, expiry, and the guard against
 *		changes made behind the API's back.
 *
 * A durable cache's entries are rows of sessioncache.durable_entries, an
 * ordinary WAL-logged table: the row is the truth, shared memory a copy that
 * can always be rebuilt.  Writes change the row in the caller's transaction
 * (so a commit makes them as durable as any row, and a rollback takes them
 * back) while the shared copy changes only when that transaction commits
 * (xact.c).  Touches are written back in batches by the writeback worker.
 *
 * Idle timers (schema 1.1): a touch written back does not rewrite the wide
 * row.  Each row owns a slot (access_slot, from a sequence, never reused)
 * in sessioncache.access, a narrow table of 64 timestamps per row, updated
 * HOT by the writeback: many touches share a page and a WAL record's
 * unchanged bytes are not logged, so a touch costs a small fraction of a
 * row rewrite.  The row's last access is the later of its own last_access
 * and its slot; its expires_at is only the expiry as of its last write (a
 * lower bound): the expiry worker deletes rows whose copy in memory expired
 * (by key) and finds the others by a sweep, checking sessioncache._expires_at.
 * A database still at schema 1.0 (before ALTER EXTENSION UPDATE) is served
 * with the 1.0 statements.
 *
 * Every statement on the table is in this file, and durable_decode_row is
 * the only place that turns a row into an entry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "clock.h"
#include "durable.h"
#include "internal_sql.h"

PG_FUNCTION_INFO_V1(durable_guard);

/* the columns durable_decode_row reads, in its order, and where from */
#define ROW_COLUMNS_11 \
	"d.cache_id, d.key, d.user_id, d.value, d.created_at," \
	" greatest(d.last_access, a.la[(d.access_slot % 64)::int4 + 1])," \
	" coalesce(d.idle_us, 0), coalesce(d.max_us, 0), d.version, d.access_slot"
#define ROW_FROM_11 \
	" sessioncache.durable_entries d LEFT JOIN sessioncache.access a" \
	" ON a.block = d.access_slot / 64"
#define ROW_COLUMNS_10 \
	"d.cache_id, d.key, d.user_id, d.value, d.created_at, d.last_access," \
	" coalesce(d.idle_us, 0), coalesce(d.max_us, 0), d.version, 0::int8"
#define ROW_FROM_10 " sessioncache.durable_entries d"

/* is an expired row's expiry (checked again under its row lock) past? */
#define ROW_EXPIRED_11	"sessioncache._expires_at(d) <= now()"
#define ROW_EXPIRED_10	"d.expires_at <= now()"

/*
 * The expiry time of a row from its own columns, with the cache's timeouts
 * as $N and $M (0 = none) where the row has none of its own.
 */
#define ROW_EXPIRY(last_access, idle, max) \
	"least(CASE WHEN coalesce(idle_us, " idle ") = 0 THEN 'infinity'" \
	"           ELSE " last_access " + coalesce(idle_us, " idle ") * interval '1 microsecond' END," \
	"      CASE WHEN coalesce(max_us, " max ") = 0 THEN 'infinity'" \
	"           ELSE created_at + coalesce(max_us, " max ") * interval '1 microsecond' END)"

/* prepared once per backend, per schema version where they differ */
static SPIPlanPtr plan_read[2];
static SPIPlanPtr plan_upsert[2];
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
 * Is the database's schema 1.1 (idle timers in sessioncache.access)?  Until
 * ALTER EXTENSION UPDATE it may still be 1.0.  Two syscache lookups.
 */
static bool
durable_schema_11(void)
{
	Oid			nsp = get_namespace_oid("sessioncache", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("access", nsp));
}

/*
 * The int4[] of cache ids and the text[] of keys that the batch statements
 * take as $1 and $2 (keylens NULL: the keys are terminated strings).
 */
static void
durable_key_arrays(int n, const int32 *cache_ids, char *const *keys,
				   const int *keylens, Datum *values)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *tkeys = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
	{
		ids[i] = Int32GetDatum(cache_ids[i]);
		tkeys[i] = PointerGetDatum(cstring_to_text_with_len(keys[i],
															keylens ? keylens[i] : (int) strlen(keys[i])));
	}
	values[0] = PointerGetDatum(construct_array(ids, n, INT4OID, 4, true, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(tkeys, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Decode a row of ROW_COLUMNS_1x into 'row', copying into the current memory
 * context (the value only when want_value).  The one decoder.
 */
static void
durable_decode_row(HeapTuple tup, TupleDesc desc, bool want_value,
				   SCDurableRow *row)
{
	bool		isnull;
	Datum		d;
	text	   *key = DatumGetTextPP(SPI_getbinval(tup, desc, 2, &isnull));

	row->cache_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	row->keylen = VARSIZE_ANY_EXHDR(key);
	row->key = pnstrdup(VARDATA_ANY(key), row->keylen);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	row->st.user = isnull ? NULL : TextDatumGetCString(d);
	row->st.userlen = isnull ? 0 : strlen(row->st.user);
	row->st.value = NULL;
	if (want_value)
		row->st.value = (struct varlena *) DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
	row->st.created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
	row->st.last_access = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
	row->st.timeouts.idle_us = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
	row->st.timeouts.max_us = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
	row->st.version = DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
	row->st.access_slot = DatumGetInt64(SPI_getbinval(tup, desc, 10, &isnull));
	row->st.expires_at = 0;
}

bool
SCDurableRead(const SCCacheDef *def, const char *key, int keylen,
			  bool want_value, SCEntryState *st)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	SCSpiState	spi;
	bool		found = false;
	int			ret;

	bool		v11;

	values[0] = Int32GetDatum(def->id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(key, keylen));
	SCSpiBegin(&spi);
	v11 = durable_schema_11();
	ret = SPI_execute_snapshot(v11 ?
							   durable_plan(&plan_read[1],
											"SELECT " ROW_COLUMNS_11 " FROM" ROW_FROM_11
											" WHERE d.cache_id = $1 AND d.key = $2",
											2, types) :
							   durable_plan(&plan_read[0],
											"SELECT " ROW_COLUMNS_10 " FROM" ROW_FROM_10
											" WHERE d.cache_id = $1 AND d.key = $2",
											2, types),
							   values, NULL, GetLatestSnapshot(),
							   InvalidSnapshot, false, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		MemoryContext old = MemoryContextSwitchTo(spi.caller_cxt);
		SCDurableRow row;

		durable_decode_row(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
						   want_value, &row);
		MemoryContextSwitchTo(old);
		row.st.expires_at = SCExpiryOf(def->idle_us, def->max_us,
									   &row.st.timeouts, row.st.created_at,
									   row.st.last_access);
		if (row.st.expires_at > GetCurrentTimestamp())
		{
			*st = row.st;
			found = true;
		}
	}
	SCSpiEnd(&spi);
	return found;
}

int64
SCDurableWritePut(const SCCacheDef *def, const char *key, int keylen,
				  const struct varlena *value, const char *user, int userlen,
				  const SCEntryTimeouts *timeouts, int64 version,
				  TimestampTz *created_at, int64 *access_slot,
				  TimestampTz now, bool keep_live_created)
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
	bool		v11;

	values[0] = Int32GetDatum(def->id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(key, keylen));
	if (user != NULL)
		values[2] = PointerGetDatum(cstring_to_text_with_len(user, userlen));
	else
		nulls[2] = 'n';
	values[3] = PointerGetDatum(value);
	values[4] = TimestampTzGetDatum(*created_at);
	values[5] = TimestampTzGetDatum(now);
	values[6] = Int64GetDatum(timeouts->idle_us);
	if (timeouts->idle_us == 0)
		nulls[6] = 'n';
	values[7] = Int64GetDatum(timeouts->max_us);
	if (timeouts->max_us == 0)
		nulls[7] = 'n';
	values[8] = Int64GetDatum(version);
	values[9] = TimestampTzGetDatum(SCExpiryOf(def->idle_us, def->max_us,
											   timeouts, *created_at, now));
	values[10] = BoolGetDatum(keep_live_created);
	values[11] = Int64GetDatum(max_us);

#define UPSERT \
	"INSERT INTO sessioncache.durable_entries AS d" \
	" (cache_id, key, user_id, value, created_at, last_access," \
	"  idle_us, max_us, version, expires_at)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)" \
	" ON CONFLICT (cache_id, key) DO UPDATE SET" \
	"  user_id = excluded.user_id, value = excluded.value," \
	"  created_at = CASE WHEN $11 AND d.expires_at > $6" \
	"               THEN d.created_at ELSE excluded.created_at END," \
	"  last_access = excluded.last_access," \
	"  idle_us = excluded.idle_us, max_us = excluded.max_us," \
	"  version = greatest(excluded.version, d.version + 1)," \
	"  expires_at = CASE WHEN $11 AND d.expires_at > $6 AND $12 > 0" \
	"               THEN least(excluded.expires_at," \
	"                          d.created_at + $12 * interval '1 microsecond')" \
	"               ELSE excluded.expires_at END" \
	" RETURNING version, created_at"
	SCSpiBegin(&spi);
	v11 = durable_schema_11();
	ret = SPI_execute_plan(v11 ?
						   durable_plan(&plan_upsert[1], UPSERT ", access_slot", 12, types) :
						   durable_plan(&plan_upsert[0], UPSERT, 12, types),
						   values, nulls, false, 1);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not write sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	*created_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 2, &isnull));
	*access_slot = v11 ? DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 3, &isnull)) : 0;
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

bool
SCDurableTouch(const SCCacheDef *def, const char *key, int keylen,
			   TimestampTz now)
{
	Oid			types[5] = {INT4OID, TEXTOID, TIMESTAMPTZOID, INT8OID, INT8OID};
	Datum		values[5];
	SCSpiState	spi;
	int			ret;
	bool		changed;

	values[0] = Int32GetDatum(def->id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(key, keylen));
	values[2] = TimestampTzGetDatum(now);
	values[3] = Int64GetDatum(def->idle_us);
	values[4] = Int64GetDatum(def->max_us);
	SCSpiBegin(&spi);
	/* the expiry comes from the row as it is once locked, never from a
	 * copy read before waiting for the lock */
	ret = SPI_execute_plan(durable_plan(&plan_touch,
										"UPDATE sessioncache.durable_entries"
										" SET last_access = $3, expires_at = "
										ROW_EXPIRY("$3", "$4", "$5")
										" WHERE cache_id = $1 AND key = $2"
										" AND last_access < $3",
										5, types),
						   values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not update sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	changed = SPI_processed > 0;
	SCSpiEnd(&spi);
	return changed;
}

SCKeyRef *
SCDurableUserKeys(const SCCacheDef *def, const char *user, int userlen,
				  int *nkeys)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	SCSpiState	spi;
	SCKeyRef   *keys;
	uint64		i;
	int			ret;
	MemoryContext old;

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
	old = MemoryContextSwitchTo(spi.caller_cxt);
	keys = palloc(sizeof(SCKeyRef) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		text	   *t = DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));

		keys[i].keylen = VARSIZE_ANY_EXHDR(t);
		keys[i].key = pnstrdup(VARDATA_ANY(t), keys[i].keylen);
	}
	MemoryContextSwitchTo(old);
	*nkeys = (int) SPI_processed;
	SCSpiEnd(&spi);
	return keys;
}

void
SCDurableDropCache(int32 cache_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	SCSpiState	spi;
	int			ret;

	values[0] = Int32GetDatum(cache_id);
	SCSpiBegin(&spi);

	/*
	 * The latest snapshot, whatever the isolation level: a REPEATABLE READ
	 * drop took its snapshot before it waited for the cache's writers, and
	 * would leave the rows they committed meanwhile behind.
	 */
	ret = SPI_execute_snapshot(SPI_prepare("DELETE FROM sessioncache.durable_entries"
										   " WHERE cache_id = $1", 1, types),
							   values, NULL, GetLatestSnapshot(),
							   InvalidSnapshot, false, true, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not delete from sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	SCSpiEnd(&spi);
}

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
	ret = SPI_execute_with_args("UPDATE sessioncache.durable_entries SET expires_at = "
								ROW_EXPIRY("last_access", "$2", "$3")
								" WHERE cache_id = $1",
								3, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not update sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	SCSpiEnd(&spi);
}

/* copy (cache_id, key, version?) columns 1..3 and an optional ctid */
static void
durable_decode_expired(HeapTuple tup, TupleDesc desc, bool with_tid,
					   SCDurableExpired *x)
{
	bool		isnull;
	int			col = 1;
	text	   *key;

	if (with_tid)
		ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, col++, &isnull)),
						&x->tid);
	x->cache_id = DatumGetInt32(SPI_getbinval(tup, desc, col++, &isnull));
	key = DatumGetTextPP(SPI_getbinval(tup, desc, col++, &isnull));
	x->keylen = VARSIZE_ANY_EXHDR(key);
	x->key = pnstrdup(VARDATA_ANY(key), x->keylen);
	x->version = DatumGetInt64(SPI_getbinval(tup, desc, col, &isnull));
}

/*
 * The rows a DELETE ... RETURNING cache_id, key, version just removed,
 * copied into out_cxt (they outlive SPI and the transaction: the caller
 * counts and announces them after commit).
 */
static SCDurableExpired *
durable_deleted_rows(MemoryContext out_cxt, int *ndeleted)
{
	MemoryContext old = MemoryContextSwitchTo(out_cxt);
	SCDurableExpired *gone = palloc(sizeof(SCDurableExpired) * Max(SPI_processed, 1));
	uint64		i;

	for (i = 0; i < SPI_processed; i++)
		durable_decode_expired(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
							   false, &gone[i]);
	MemoryContextSwitchTo(old);
	*ndeleted = (int) SPI_processed;
	return gone;
}

/*
 * Delete the rows a subquery over "d" selects, if their expiry (by the
 * schema's rule) has passed, skipping rows a writer holds.
 */
#define DELETE_EXPIRED(from_where, expired) \
	"DELETE FROM sessioncache.durable_entries" \
	" WHERE ctid IN (SELECT d.ctid FROM " from_where " AND " expired \
	"                FOR UPDATE OF d SKIP LOCKED)" \
	" RETURNING cache_id, key, version"
#define BY_CTID		"sessioncache.durable_entries d WHERE d.ctid = ANY($1)"
#define BY_KEY \
	"unnest($1, $2) AS v(cid, key) JOIN sessioncache.durable_entries d" \
	" ON d.cache_id = v.cid AND d.key = v.key WHERE true"

SCDurableExpired *
SCDurableExpiredRows(int limit, int *n)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	SCSpiState	spi;
	int			ret;
	uint64		i;
	SCDurableExpired *rows;
	MemoryContext old;

	values[0] = Int32GetDatum(limit);
	SCSpiBegin(&spi);
	ret = SPI_execute_with_args("SELECT ctid, cache_id, key, version"
								" FROM sessioncache.durable_entries"
								" WHERE expires_at <= now() ORDER BY expires_at LIMIT $1",
								1, types, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not scan sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	old = MemoryContextSwitchTo(spi.caller_cxt);
	rows = palloc(sizeof(SCDurableExpired) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
		durable_decode_expired(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
							   true, &rows[i]);
	MemoryContextSwitchTo(old);
	*n = (int) SPI_processed;
	SCSpiEnd(&spi);
	return rows;
}

SCDurableExpired *
SCDurableDeleteRows(SCDurableExpired *rows, int n, MemoryContext out_cxt,
					int *ndeleted)
{
	Oid			types[1] = {TIDARRAYOID};
	Datum		values[1];
	Datum	   *tids = palloc(sizeof(Datum) * Max(n, 1));
	SCSpiState	spi;
	SCDurableExpired *gone;
	int			ret;
	uint64		i;

	for (i = 0; i < (uint64) n; i++)
		tids[i] = PointerGetDatum(&rows[i].tid);
	values[0] = PointerGetDatum(construct_array(tids, n, TIDOID, sizeof(ItemPointerData),
												false, TYPALIGN_SHORT));
	SCSpiBegin(&spi);
	ret = SPI_execute_with_args(durable_schema_11() ?
								DELETE_EXPIRED(BY_CTID, ROW_EXPIRED_11) :
								DELETE_EXPIRED(BY_CTID, ROW_EXPIRED_10),
								1, types, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not delete expired rows: %s", SPI_result_code_string(ret));
	gone = durable_deleted_rows(out_cxt, ndeleted);
	SCSpiEnd(&spi);
	return gone;
}

int64
SCDurableWriteBack(int n, const int32 *cache_ids, char *const *keys,
				   const int *keylens, const TimestampTz *last_access,
				   const TimestampTz *expires_at)
{
	Datum	   *las = palloc(sizeof(Datum) * n);
	Datum	   *exps = palloc(sizeof(Datum) * n);
	Oid			types[4] = {INT4ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
	TIMESTAMPTZARRAYOID};
	Datum		values[4];
	SCSpiState	spi;
	int			ret;
	int			i;
	int64		written;

	for (i = 0; i < n; i++)
	{
		las[i] = TimestampTzGetDatum(last_access[i]);
		exps[i] = TimestampTzGetDatum(expires_at[i]);
	}
	durable_key_arrays(n, cache_ids, keys, keylens, values);
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
	return written;
}

bool
SCDurableHasAccessSlots(void)
{
	return durable_schema_11();
}

int64
SCDurableWriteAccess(int nblocks, const int64 *blocks,
					 const TimestampTz *last_access)
{
	Datum	   *dblocks = palloc(sizeof(Datum) * nblocks);
	Datum	   *dlas = palloc(sizeof(Datum) * nblocks * SC_ACCESS_SLOTS);
	Oid			types[2] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		values[2];
	SCSpiState	spi;
	int			ret;
	int			i;
	int64		written;

	for (i = 0; i < nblocks; i++)
		dblocks[i] = Int64GetDatum(blocks[i]);
	for (i = 0; i < nblocks * SC_ACCESS_SLOTS; i++)
		dlas[i] = TimestampTzGetDatum(last_access[i]);
	values[0] = PointerGetDatum(construct_array(dblocks, nblocks, INT8OID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(dlas, nblocks * SC_ACCESS_SLOTS,
												TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	SCSpiBegin(&spi);
	/* a block's row only ever moves forward, slot by slot */
	ret = SPI_execute_with_args("INSERT INTO sessioncache.access AS a (block, la)"
								" SELECT u.b, $2[(u.n - 1) * " CppAsString2(SC_ACCESS_SLOTS) " + 1"
								"                : u.n * " CppAsString2(SC_ACCESS_SLOTS) "]"
								" FROM unnest($1) WITH ORDINALITY AS u(b, n)"
								" ON CONFLICT (block) DO UPDATE"
								" SET la = sessioncache._la_merge(a.la, excluded.la)",
								2, types, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not write back idle timers: %s", SPI_result_code_string(ret));
	written = (int64) SPI_processed;
	SCSpiEnd(&spi);
	return written;
}

SCDurableExpired *
SCDurableDeleteKeys(int n, const int32 *cache_ids, char *const *keys,
					const int *keylens, MemoryContext out_cxt, int *ndeleted)
{
	Oid			types[2] = {INT4ARRAYOID, TEXTARRAYOID};
	Datum		values[2];
	SCSpiState	spi;
	SCDurableExpired *gone;
	int			ret;

	durable_key_arrays(n, cache_ids, keys, keylens, values);
	SCSpiBegin(&spi);
	ret = SPI_execute_with_args(durable_schema_11() ?
								DELETE_EXPIRED(BY_KEY, ROW_EXPIRED_11) :
								DELETE_EXPIRED(BY_KEY, ROW_EXPIRED_10),
								2, types, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not delete expired rows: %s", SPI_result_code_string(ret));
	gone = durable_deleted_rows(out_cxt, ndeleted);
	SCSpiEnd(&spi);
	return gone;
}

SCDurableExpired *
SCDurableSweep(int32 *after_id, char *after_key, int limit, int *nseen,
			   int *nexpired)
{
	Oid			types[3] = {INT4OID, TEXTOID, INT4OID};
	Datum		values[3];
	SCSpiState	spi;
	SCDurableExpired *rows;
	MemoryContext old;
	int			ret;
	uint64		i;
	int			n = 0;

	values[0] = Int32GetDatum(*after_id);
	values[1] = CStringGetTextDatum(after_key);
	values[2] = Int32GetDatum(limit);
	SCSpiBegin(&spi);
	ret = SPI_execute_with_args("SELECT d.ctid, d.cache_id, d.key, d.version, "
								ROW_EXPIRED_11 " AS expired"
								" FROM sessioncache.durable_entries d"
								" WHERE (d.cache_id, d.key) > ($1, $2)"
								" ORDER BY d.cache_id, d.key LIMIT $3",
								3, types, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not scan sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	old = MemoryContextSwitchTo(spi.caller_cxt);
	rows = palloc(sizeof(SCDurableExpired) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		bool		expired = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 5, &isnull));

		if (i == SPI_processed - 1)
		{
			/* the cursor moves to the last row seen */
			SCDurableExpired last;

			durable_decode_expired(tup, SPI_tuptable->tupdesc, true, &last);
			*after_id = last.cache_id;
			memcpy(after_key, last.key, last.keylen);
			after_key[last.keylen] = '\0';
		}
		if (!isnull && expired)
			durable_decode_expired(tup, SPI_tuptable->tupdesc, true, &rows[n++]);
	}
	MemoryContextSwitchTo(old);
	*nseen = (int) SPI_processed;
	*nexpired = n;
	SCSpiEnd(&spi);
	return rows;
}

Tuplestorestate *
SCDurableKeysByRecency(MemoryContext cxt, TupleDesc *desc)
{
	SCSpiState	spi;
	Portal		portal;
	Tuplestorestate *keys;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	*desc = CreateTemplateTupleDesc(2);
	TupleDescInitEntry(*desc, (AttrNumber) 1, "cache_id", INT4OID, -1, 0);
	TupleDescInitEntry(*desc, (AttrNumber) 2, "key", TEXTOID, -1, 0);
	keys = tuplestore_begin_heap(false, true, work_mem);
	MemoryContextSwitchTo(old);

	SCSpiBegin(&spi);
	/* 1.1: expired rows are skipped when installed (expires_at is a bound) */
	portal = SPI_cursor_open_with_args(NULL, durable_schema_11() ?
									   "SELECT d.cache_id, d.key FROM" ROW_FROM_11
									   " ORDER BY greatest(d.last_access,"
									   "  a.la[(d.access_slot % 64)::int4 + 1]) DESC" :
									   "SELECT d.cache_id, d.key FROM" ROW_FROM_10
									   " WHERE d.expires_at > now() ORDER BY d.last_access DESC",
									   0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		uint64		i;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(cxt);
		for (i = 0; i < SPI_processed; i++)
		{
			Datum		values[2];
			bool		nulls[2] = {false, false};
			bool		isnull;

			values[0] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
			values[1] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
			tuplestore_putvalues(keys, *desc, values, nulls);
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SCSpiEnd(&spi);
	return keys;
}

SCDurableRow *
SCDurableReadRows(const int32 *ids, char *const *keys, int n, int *nrows)
{
	Oid			types[2] = {INT4ARRAYOID, TEXTARRAYOID};
	Datum		values[2];
	SCSpiState	spi;
	SCDurableRow *rows;
	MemoryContext old;
	int			ret;
	int			i;

	durable_key_arrays(n, ids, keys, NULL, values);
	SCSpiBegin(&spi);
	ret = SPI_execute_snapshot(SPI_prepare(durable_schema_11() ?
										   "SELECT " ROW_COLUMNS_11
										   " FROM unnest($1, $2) AS v(cid, key) JOIN" ROW_FROM_11
										   " ON d.cache_id = v.cid AND d.key = v.key" :
										   "SELECT " ROW_COLUMNS_10
										   " FROM unnest($1, $2) AS v(cid, key) JOIN" ROW_FROM_10
										   " ON d.cache_id = v.cid AND d.key = v.key",
										   2, types),
							   values, NULL, GetLatestSnapshot(),
							   InvalidSnapshot, true, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	old = MemoryContextSwitchTo(spi.caller_cxt);
	rows = palloc(sizeof(SCDurableRow) * Max(SPI_processed, 1));
	for (i = 0; i < (int) SPI_processed; i++)
		durable_decode_row(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, true,
						   &rows[i]);
	MemoryContextSwitchTo(old);
	*nrows = (int) SPI_processed;
	SCSpiEnd(&spi);
	return rows;
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

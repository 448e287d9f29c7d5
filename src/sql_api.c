/*-------------------------------------------------------------------------
 *
 * sql_api.c
 *		The SQL-callable functions of sessioncache.
 *
 * Each function checks its arguments (NULLs, lengths, names, intervals),
 * converts them to C types and calls the engine.  No function here is
 * STRICT: a NULL argument gets its own error instead of a silent NULL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "caches.h"
#include "engine.h"
#include "settings.h"

PG_FUNCTION_INFO_V1(sc_define_cache);
PG_FUNCTION_INFO_V1(sc_drop_cache);
PG_FUNCTION_INFO_V1(sc_put);
PG_FUNCTION_INFO_V1(sc_get);
PG_FUNCTION_INFO_V1(sc_touch);
PG_FUNCTION_INFO_V1(sc_patch);
PG_FUNCTION_INFO_V1(sc_incr);
PG_FUNCTION_INFO_V1(sc_delete);
PG_FUNCTION_INFO_V1(sc_delete_user);
PG_FUNCTION_INFO_V1(sc_user_entries);
PG_FUNCTION_INFO_V1(sc_entry_info);
PG_FUNCTION_INFO_V1(sc_install);

static void
api_null_arg(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not be null", what)));
}

/* a cache name: 1-63 bytes of [a-z0-9_.:-] */
static void
api_check_cache_name(const char *name)
{
	size_t		len = strlen(name);
	const char *p;

	if (len == 0 || len > SC_CACHE_NAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid cache name \"%s\"", name),
				 errdetail("A cache name has 1 to %d bytes.", SC_CACHE_NAME_MAX)));
	for (p = name; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			  *p == '_' || *p == '.' || *p == ':' || *p == '-'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid cache name \"%s\"", name),
					 errdetail("A cache name may contain only lower-case letters, digits, \"_\", \".\", \":\" and \"-\".")));
	}
}

/* resolve argument argno as a cache name */
static void
api_cache(FunctionCallInfo fcinfo, int argno, SCCacheDef *def)
{
	char	   *name;

	if (PG_ARGISNULL(argno))
		api_null_arg("cache");
	name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	api_check_cache_name(name);
	SCResolveCache(name, def);
}

/* argument argno as a key: non-empty, at most 255 bytes */
static char *
api_key(FunctionCallInfo fcinfo, int argno, int *len)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		api_null_arg("key");
	t = PG_GETARG_TEXT_PP(argno);
	*len = VARSIZE_ANY_EXHDR(t);
	if (*len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key must not be empty")));
	if (*len > SC_KEY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("key of %d bytes is too long", *len),
				 errdetail("Keys may be at most %d bytes.", SC_KEY_MAX)));
	return VARDATA_ANY(t);
}

/* argument argno as a user id: NULL allowed, at most 255 bytes */
static char *
api_user(FunctionCallInfo fcinfo, int argno, int *len, bool null_ok)
{
	text	   *t;

	*len = 0;
	if (PG_ARGISNULL(argno))
	{
		if (!null_ok)
			api_null_arg("user_id");
		return NULL;
	}
	t = PG_GETARG_TEXT_PP(argno);
	*len = VARSIZE_ANY_EXHDR(t);
	if (*len > SC_USER_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("user_id of %d bytes is too long", *len),
				 errdetail("User ids may be at most %d bytes.", SC_USER_MAX)));
	return pnstrdup(VARDATA_ANY(t), *len);
}

/* argument argno as a timeout in microseconds; NULL gives 0 */
static int64
api_timeout(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		return 0;
	return SCIntervalToUs(PG_GETARG_INTERVAL_P(argno), what);
}

/* writes are refused on a standby, for memory-only caches too */
static void
api_check_writable(void)
{
	if (XactReadOnly && !RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot write to sessioncache in a read-only transaction")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot write to sessioncache during recovery"),
				 errhint("Write to the primary server.")));
}

static void
api_check_value(Jsonb *value)
{
	if (VARSIZE(value) > (Size) sc_max_value_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value of %zu bytes is too large", (Size) VARSIZE(value)),
				 errdetail("Values may be at most sessioncache.max_value_size (%d bytes).",
						   sc_max_value_size)));
}

/*
 * define_cache(name, durable, idle_timeout, max_lifespan, max_per_user,
 *				per_user_policy, notify)
 */
Datum
sc_define_cache(PG_FUNCTION_ARGS)
{
	SCCacheDef	def;
	char	   *name;
	char	   *policy;
	bool		created;

	SCCheckUsable();
	api_check_writable();
	memset(&def, 0, sizeof(def));
	if (PG_ARGISNULL(0))
		api_null_arg("name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	api_check_cache_name(name);
	strlcpy(def.name, name, sizeof(def.name));
	if (PG_ARGISNULL(1))
		api_null_arg("durable");
	def.durable = PG_GETARG_BOOL(1);
	def.idle_us = api_timeout(fcinfo, 2, "idle_timeout");
	def.max_us = api_timeout(fcinfo, 3, "max_lifespan");
	if (!PG_ARGISNULL(4))
	{
		def.max_per_user = PG_GETARG_INT32(4);
		if (def.max_per_user <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_per_user must be positive")));
	}
	if (PG_ARGISNULL(5))
		api_null_arg("per_user_policy");
	policy = text_to_cstring(PG_GETARG_TEXT_PP(5));
	if (strcmp(policy, "evict_oldest") == 0)
		def.evict_oldest = true;
	else if (strcmp(policy, "deny") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid per_user_policy \"%s\"", policy),
				 errhint("Use \"deny\" or \"evict_oldest\".")));
	if (PG_ARGISNULL(6))
		api_null_arg("notify");
	def.notify = PG_GETARG_BOOL(6);

	SCDefineCache(&def, PG_ARGISNULL(2) ? NULL : PG_GETARG_INTERVAL_P(2),
				  PG_ARGISNULL(3) ? NULL : PG_GETARG_INTERVAL_P(3), &created);
	PG_RETURN_VOID();
}

Datum
sc_drop_cache(PG_FUNCTION_ARGS)
{
	char	   *name;

	SCCheckUsable();
	api_check_writable();
	if (PG_ARGISNULL(0))
		api_null_arg("name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	api_check_cache_name(name);
	SCDropCache(name);
	PG_RETURN_VOID();
}

/* put(cache, key, value, user_id, idle_timeout, max_lifespan) */
Datum
sc_put(PG_FUNCTION_ARGS)
{
	SCCacheDef	def;
	char	   *key;
	int			keylen;
	char	   *user;
	int			userlen;
	Jsonb	   *value;
	int64		idle_us,
				max_us;

	api_cache(fcinfo, 0, &def);
	api_check_writable();
	key = api_key(fcinfo, 1, &keylen);
	if (PG_ARGISNULL(2))
		api_null_arg("value");
	value = PG_GETARG_JSONB_P(2);
	api_check_value(value);
	user = api_user(fcinfo, 3, &userlen, true);
	idle_us = api_timeout(fcinfo, 4, "idle_timeout");
	max_us = api_timeout(fcinfo, 5, "max_lifespan");

	PG_RETURN_INT64(SCPut(&def, key, keylen, value, user, userlen,
						  idle_us, max_us));
}

/* get(cache, key, touch) */
Datum
sc_get(PG_FUNCTION_ARGS)
{
	SCCacheDef	def;
	char	   *key;
	int			keylen;
	bool		touch = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);
	Jsonb	   *value;

	api_cache(fcinfo, 0, &def);
	key = api_key(fcinfo, 1, &keylen);
	/* on a standby the engine reads without the touch (with a notice) */
	if (touch && !RecoveryInProgress())
		api_check_writable();
	value = SCGet(&def, key, keylen, touch);
	if (value == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(value);
}

Datum
sc_touch(PG_FUNCTION_ARGS)
{
	SCCacheDef	def;
	char	   *key;
	int			keylen;

	api_cache(fcinfo, 0, &def);
	api_check_writable();
	key = api_key(fcinfo, 1, &keylen);
	PG_RETURN_BOOL(SCTouch(&def, key, keylen));
}

/* patch(cache, key, patch) */
Datum
sc_patch(PG_FUNCTION_ARGS)
{
	SCCacheDef	def;
	char	   *key;
	int			keylen;
	Jsonb	   *merged;

	api_cache(fcinfo, 0, &def);
	api_check_writable();
	key = api_key(fcinfo, 1, &keylen);
	if (PG_ARGISNULL(2))
		api_null_arg("patch");
	merged = SCPatch(&def, key, keylen, PG_GETARG_JSONB_P(2));
	if (merged == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(merged);
}

/* incr(cache, key, field, delta, user_id) */
Datum
sc_incr(PG_FUNCTION_ARGS)
{
	SCCacheDef	def;
	char	   *key;
	int			keylen;
	char	   *field;
	char	   *user;
	int			userlen;

	api_cache(fcinfo, 0, &def);
	api_check_writable();
	key = api_key(fcinfo, 1, &keylen);
	if (PG_ARGISNULL(2))
		api_null_arg("field");
	field = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (field[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field must not be empty")));
	if (PG_ARGISNULL(3))
		api_null_arg("delta");
	user = api_user(fcinfo, 4, &userlen, true);
	PG_RETURN_INT64(SCIncr(&def, key, keylen, field, strlen(field),
						   PG_GETARG_INT64(3), user, userlen));
}

Datum
sc_delete(PG_FUNCTION_ARGS)
{
	SCCacheDef	def;
	char	   *key;
	int			keylen;

	api_cache(fcinfo, 0, &def);
	api_check_writable();
	key = api_key(fcinfo, 1, &keylen);
	PG_RETURN_BOOL(SCDelete(&def, key, keylen));
}

Datum
sc_delete_user(PG_FUNCTION_ARGS)
{
	SCCacheDef	def;
	char	   *user;
	int			userlen;

	api_cache(fcinfo, 0, &def);
	api_check_writable();
	user = api_user(fcinfo, 1, &userlen, false);
	PG_RETURN_INT32(SCDeleteUser(&def, user, userlen));
}

/* user_entries(cache, user_id) -> (key, value, created_at, last_access, expires_at) */
Datum
sc_user_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SCCacheDef	def;
	char	   *user;
	int			userlen;
	List	   *entries;
	ListCell   *lc;

	api_cache(fcinfo, 0, &def);
	user = api_user(fcinfo, 1, &userlen, false);
	entries = SCUserEntries(&def, user, userlen);

	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, entries)
	{
		SCEntryCopy *c = lfirst(lc);
		Datum		values[5];
		bool		nulls[5] = {0};

		values[0] = CStringGetTextDatum(c->key);
		values[1] = JsonbPGetDatum(c->value);
		values[2] = TimestampTzGetDatum(c->created_at);
		values[3] = TimestampTzGetDatum(c->last_access);
		values[4] = TimestampTzGetDatum(c->expires_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* entry_info(cache, key) -> (user_id, created_at, last_access, expires_at, version, durable) */
Datum
sc_entry_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SCCacheDef	def;
	char	   *key;
	int			keylen;
	SCEntryCopy c;

	api_cache(fcinfo, 0, &def);
	key = api_key(fcinfo, 1, &keylen);

	InitMaterializedSRF(fcinfo, 0);
	if (SCEntryInfo(&def, key, keylen, &c))
	{
		Datum		values[6];
		bool		nulls[6] = {0};

		if (c.user != NULL)
			values[0] = CStringGetTextDatum(c.user);
		else
			nulls[0] = true;
		values[1] = TimestampTzGetDatum(c.created_at);
		values[2] = TimestampTzGetDatum(c.last_access);
		values[3] = TimestampTzGetDatum(c.expires_at);
		values[4] = Int64GetDatum(c.version);
		values[5] = BoolGetDatum(c.durable);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* _install(): run by CREATE EXTENSION */
Datum
sc_install(PG_FUNCTION_ARGS)
{
	SCCheckUsable();
	SCCachesInstall();
	PG_RETURN_VOID();
}

/*-------------------------------------------------------------------------
 *
 * engine.c
 *		The entry operations: put, get, touch, patch, incr, delete,
 *		delete_user, user_entries, entry_info.
 *
 * Every operation sees the cache as its transaction does: its own staged
 * writes (xact.c) over the committed entries in shared memory (table.c),
 * over the durable table for durable caches (durable.c).  Writes take the
 * key's heavyweight lock first, so what they read stays true until they
 * commit, and stage their result; nothing here changes the shared table
 * except SCApplyOp (at commit) and SCDiscardOp (at abort).
 *
 * Arguments arrive checked and converted by sql_api.c; this file knows
 * nothing of fcinfo.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "common/int.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "sessioncache.h"

static uint32 engine_stage_entry(const SCCacheDef *def, SCHash hash,
								 const char *key, int keylen, Jsonb *value,
								 const char *user, int userlen,
								 const SCEntryTimeouts *timeouts, int64 version,
								 TimestampTz created_at, TimestampTz last_access,
								 bool may_evict);
static bool engine_fill(const SCCacheDef *def, SCHash hash, const char *key,
						int keylen, bool want_value, SCKeyState *st,
						uint64 write_gen);

/*
 * The next version: a hybrid logical clock, never below the current time in
 * microseconds, so versions keep rising across restarts and failovers even
 * for keys whose rows are gone (a promoted standby's counter started at its
 * own start).
 */
int64
SCNextVersion(void)
{
	uint64		now = (uint64) GetCurrentTimestamp();
	uint64		cur = pg_atomic_read_u64(&sc_shared->next_version);

	for (;;)
	{
		uint64		next = Max(cur, now);

		if (pg_atomic_compare_exchange_u64(&sc_shared->next_version, &cur,
										   next + 1))
			return (int64) next;
	}
}

/* Make sure versions handed out from now on exceed one seen in the table. */
void
SCAdvanceVersion(int64 seen)
{
	uint64		cur = pg_atomic_read_u64(&sc_shared->next_version);

	while (cur <= (uint64) seen &&
		   !pg_atomic_compare_exchange_u64(&sc_shared->next_version, &cur,
										   (uint64) seen + 1))
		;
}

/*
 * least(last_access + idle, created_at + max_lifespan) with the effective
 * timeouts (the entry's own, else the cache's); DT_NOEND if none.
 */
TimestampTz
SCComputeExpiry(const SCCacheDef *def, const SCEntryTimeouts *t,
				TimestampTz created_at, TimestampTz last_access)
{
	int64		idle = (t && t->idle_us) ? t->idle_us : def->idle_us;
	int64		max = (t && t->max_us) ? t->max_us : def->max_us;
	TimestampTz exp = DT_NOEND;

	if (idle != 0)
		exp = last_access + idle;
	if (max != 0)
		exp = Min(exp, created_at + max);
	return exp;
}

TimestampTz
SCExpiresAt(const SCCacheDef *def, SCEntry *e)
{
	return SCComputeExpiry(def, SCEntryGetTimeouts(e), e->created_at,
						   e->last_access);
}

/* copy what a caller may want out of an entry; caller holds a lock or owns it */
static void
keystate_from_entry(const SCCacheDef *def, SCEntry *e, bool want_value,
					SCKeyState *st)
{
	SCEntryTimeouts *t = SCEntryGetTimeouts(e);

	st->version = e->version;
	st->created_at = e->created_at;
	st->last_access = e->last_access;
	st->expires_at = SCExpiresAt(def, e);
	if (t != NULL)
		st->timeouts = *t;
	else
		memset(&st->timeouts, 0, sizeof(SCEntryTimeouts));
	st->userlen = e->user_len;
	st->user = (e->flags & SC_ENTRY_HAS_USER) ?
		pnstrdup(SCEntryUser(e), e->user_len) : NULL;
	st->value = NULL;
	if (want_value)
	{
		st->value = palloc(e->value_len);
		memcpy(st->value, SCEntryValue(e), e->value_len);
	}
	st->resident = true;
	st->filled = false;
}

/*
 * Read the committed entry from shared memory.  False when absent or
 * expired.  Takes the partition lock shared; sets the CLOCK bit on a hit.
 */
static bool
engine_read_committed(const SCCacheDef *def, SCHash hash, const char *key,
					  int keylen, bool want_value, SCKeyState *st,
					  uint64 *write_gen)
{
	SCPartition *part = &sc_shared->partitions[hash.partno];
	uint32		off;
	bool		found = false;

	LWLockAcquire(part->lock, LW_SHARED);
	off = SCTableLookup(hash.partno, (uint32) hash.h, def->id, key, keylen);
	if (off != 0)
	{
		SCEntry    *e = SCEntryAt(SCRegion(hash.partno), off);

		if (SCExpiresAt(def, e) > GetCurrentTimestamp())
		{
			keystate_from_entry(def, e, want_value, st);
			e->referenced = 1;
			found = true;
		}
	}
	*write_gen = part->write_gen;
	LWLockRelease(part->lock);
	return found;
}

/*
 * The key's state for this transaction: its own latest staged write, else
 * the committed entry, else (durable caches) the row, filling shared memory.
 */
static bool
engine_read_ex(const SCCacheDef *def, SCHash hash, const char *key,
			   int keylen, bool want_value, SCKeyState *st, bool fill)
{
	SCPendingOp *op = SCPendingFind(def->id, hash, key, keylen);
	uint64		write_gen;

	if (op != NULL)
	{
		SCEntry    *e;

		if (op->kind == SC_OP_DELETE)
			return false;
		if (op->staged != 0)
		{
			/* our own unlinked block: nobody else touches it */
			e = SCEntryAt(SCRegion(hash.partno), op->staged);
			keystate_from_entry(def, e, want_value, st);
			return true;
		}
		/* a durable put that found no room in memory: read the row */
		return SCDurableRead(def, key, keylen, want_value, st);
	}
	/* on a standby, replay does not reach shared memory: read the table */
	if (def->durable && RecoveryInProgress())
		return SCDurableRead(def, key, keylen, want_value, st);
	if (engine_read_committed(def, hash, key, keylen, want_value, st,
							  &write_gen))
		return true;
	if (def->durable && fill)
		return engine_fill(def, hash, key, keylen, want_value, st,
						   write_gen);
	return false;
}

static bool
engine_read(const SCCacheDef *def, SCHash hash, const char *key, int keylen,
			bool want_value, SCKeyState *st)
{
	return engine_read_ex(def, hash, key, keylen, want_value, st, true);
}

static void
engine_report_full(const SCCacheDef *def, Size nbytes)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("sessioncache shared memory is full"),
			 errdetail("No room for an entry of %zu bytes in cache \"%s\", which is not durable and cannot be evicted.",
					   nbytes, def->name),
			 errhint("Increase sessioncache.memory (currently %d kB), shorten the cache's timeouts or delete entries.",
					 sc_memory_kb)));
}

/*
 * Build the entry block for a put in its partition, unlinked.  Returns the
 * block's offset, or 0 for a durable cache when no room can be made (the
 * row is then the only copy until a later fill).
 */
static uint32
engine_stage_entry(const SCCacheDef *def, SCHash hash,
				   const char *key, int keylen, Jsonb *value,
				   const char *user, int userlen,
				   const SCEntryTimeouts *timeouts, int64 version,
				   TimestampTz created_at, TimestampTz last_access,
				   bool may_evict)
{
	SCPartition *part = &sc_shared->partitions[hash.partno];
	bool		has_timeouts = (timeouts->idle_us != 0 || timeouts->max_us != 0);
	Size		nbytes;
	uint32		off;
	SCEntry    *e;

	nbytes = sizeof(SCEntry) + (has_timeouts ? sizeof(SCEntryTimeouts) : 0) +
		VARSIZE(value) + keylen + (user ? userlen : 0);
	if (nbytes > SCTableMaxEntrySize())
		return 0;				/* only a fill gets here: see engine_stage_put */

	SCCachesRefresh();			/* the sweep needs the definitions */
	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	if (may_evict)
		off = SCTableAllocEntry(hash.partno, nbytes);
	else
		off = SCArenaAlloc(&part->arena, SCRegion(hash.partno), nbytes);
	LWLockRelease(part->lock);
	if (off == 0)
	{
		if (def->durable)
			return 0;
		engine_report_full(def, nbytes);
	}

	/* the block is ours alone until it is linked: fill it without the lock */
	e = SCEntryAt(SCRegion(hash.partno), off);
	memset(e, 0, sizeof(SCEntry));
	e->hash = (uint32) hash.h;
	e->cache_id = def->id;
	e->value_len = VARSIZE(value);
	e->key_len = (uint8) keylen;
	e->version = version;
	e->created_at = created_at;
	e->last_access = last_access;
	if (has_timeouts)
	{
		e->flags |= SC_ENTRY_HAS_TIMEOUTS;
		*SCEntryGetTimeouts(e) = *timeouts;
	}
	if (user != NULL)
	{
		e->flags |= SC_ENTRY_HAS_USER;
		e->user_len = (uint8) userlen;
		e->user_hash = (uint32) SCHashUser(def->id, user, userlen).h;
	}
	memcpy(SCEntryValue(e), value, VARSIZE(value));
	memcpy(SCEntryKey(e), key, keylen);
	if (user != NULL)
		memcpy(SCEntryUser(e), user, userlen);
	return off;
}

/*
 * Install an entry read from the table, unless a put or delete was applied
 * to its partition since write_gen was read (the row may predate it; the
 * "lease" of "Scaling Memcache at Facebook") or the key is already there.
 * Returns 1 when installed, 0 when skipped, -1 when there was no room.
 */
int
SCInstallEntry(const SCCacheDef *def, SCHash hash, const char *key,
			   int keylen, SCKeyState *st, uint64 write_gen, bool may_evict)
{
	SCPartition *part = &sc_shared->partitions[hash.partno];
	uint32		off;
	bool		installed = false;

	off = engine_stage_entry(def, hash, key, keylen, st->value, st->user,
							 st->userlen, &st->timeouts, st->version,
							 st->created_at, st->last_access, may_evict);
	if (off == 0)
		return -1;
	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	if (part->write_gen == write_gen && SCCacheIsLive(def->id) &&
		SCTableLookup(hash.partno, (uint32) hash.h, def->id, key,
					  keylen) == 0)
	{
		SCTableLink(hash.partno, off, st->expires_at);
		installed = true;
	}
	else
		SCArenaFree(&part->arena, SCRegion(hash.partno), off);
	LWLockRelease(part->lock);
	if (installed)
		SCStatAdd(def->id, SC_STAT_FILLS, 1);
	return installed ? 1 : 0;
}

/*
 * A miss in a durable cache: read the row and fill shared memory with it.
 * The caller gets the row either way.
 */
static bool
engine_fill(const SCCacheDef *def, SCHash hash, const char *key, int keylen,
			bool want_value, SCKeyState *st, uint64 write_gen)
{
	if (!SCDurableRead(def, key, keylen, true, st))
		return false;
	SCAdvanceVersion(st->version);
	st->resident = (SCInstallEntry(def, hash, key, keylen, st, write_gen,
								   true) > 0);
	st->filled = true;
	if (!want_value)
		st->value = NULL;
	return true;
}

/*
 * Stage a put of the key's new state: the pending op first (so an error
 * cannot leak the block), then the durable row (which may raise the
 * version past a row written before a restart, and, when row_may_exist,
 * keep the created_at of a live row nobody read), then the block.  Returns
 * the version.
 */
static int64
engine_stage_put(const SCCacheDef *def, SCHash hash, const char *key,
				 int keylen, Jsonb *value, const char *user, int userlen,
				 const SCEntryTimeouts *timeouts, int64 version,
				 TimestampTz created_at, TimestampTz now,
				 bool row_may_exist)
{
	SCPendingOp *op;
	Size		nbytes;

	if (VARSIZE(value) > (Size) sc_max_value_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value of %zu bytes is too large for cache \"%s\"",
						(Size) VARSIZE(value), def->name),
				 errdetail("Values may be at most sessioncache.max_value_size (%d bytes).",
						   sc_max_value_size)));

	nbytes = sizeof(SCEntry) + sizeof(SCEntryTimeouts) + VARSIZE(value) +
		keylen + (user ? userlen : 0);
	if (nbytes > SCTableMaxEntrySize())
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("entry of %zu bytes is too large for sessioncache.memory", nbytes),
				 errdetail("An entry may take at most a quarter of one of the %d partitions of sessioncache.memory: %zu bytes.",
						   SC_NUM_PARTITIONS, SCTableMaxEntrySize()),
				 errhint("Increase sessioncache.memory (currently %d kB) or store smaller values.",
						 sc_memory_kb)));

	op = SCPendingAdd(SC_OP_PUT, def, hash, key, keylen);
	SCPendingSetUser(op, user, userlen);
	if (def->durable)
		version = SCDurableWritePut(def, key, keylen, value, user, userlen,
									timeouts, version, &created_at, now,
									row_may_exist);
	op->version = version;
	op->staged = engine_stage_entry(def, hash, key, keylen, value, user,
									userlen, timeouts, version, created_at,
									now, true);
	return version;
}

int64
SCPut(const SCCacheDef *def, const char *key, int keylen, Jsonb *value,
	  const char *user, int userlen, int64 idle_us, int64 max_us)
{
	SCHash		hash = SCHashKey(def->id, key, keylen);
	SCKeyState	cur;
	bool		have;
	TimestampTz now;
	int64		version;
	SCEntryTimeouts timeouts;
	bool		skip_row;

	SCLockKey(def->id, hash);

	/*
	 * A durable key not in memory need not be read first: the upsert keeps
	 * the row's created_at and raises its version by itself.  A per-user
	 * limit needs to know the key's current user, so it does read.
	 */
	skip_row = def->durable && def->max_per_user == 0;
	have = engine_read_ex(def, hash, key, keylen, false, &cur, !skip_row);
	now = GetCurrentTimestamp();

	if (def->max_per_user > 0 && user != NULL &&
		!(have && cur.user != NULL && cur.userlen == userlen &&
		  memcmp(cur.user, user, userlen) == 0))
		SCEnforceUserLimit(def, user, userlen, key, keylen);

	timeouts.idle_us = idle_us;
	timeouts.max_us = max_us;
	version = SCNextVersion();
	if (have)
		version = Max(version, cur.version + 1);
	return engine_stage_put(def, hash, key, keylen, value, user, userlen,
							&timeouts, version, have ? cur.created_at : now,
							now, !have && skip_row);
}

/*
 * Stage a touch of a live entry.  A touch is applied to the shared copy at
 * commit and written back later; a durable entry that is not in shared
 * memory (no room to fill it) has its row updated at once instead, in the
 * caller's transaction, so that the touch is not lost.
 */
static void
engine_touch(const SCCacheDef *def, SCHash hash, const char *key, int keylen,
			 SCKeyState *cur)
{
	if (def->durable && !cur->resident)
		SCDurableTouch(def, key, keylen, cur);
	else
		(void) SCPendingAdd(SC_OP_TOUCH, def, hash, key, keylen);
}

Jsonb *
SCGet(const SCCacheDef *def, const char *key, int keylen, bool touch)
{
	SCHash		hash = SCHashKey(def->id, key, keylen);
	SCKeyState	cur;

	bool		found = engine_read(def, hash, key, keylen, true, &cur);

	/* a hit is a get served from shared memory */
	SCStatAdd(def->id, found && cur.resident && !cur.filled ?
			  SC_STAT_HITS : SC_STAT_MISSES, 1);
	if (!found)
		return NULL;
	if (touch)
		engine_touch(def, hash, key, keylen, &cur);
	return cur.value;
}

bool
SCTouch(const SCCacheDef *def, const char *key, int keylen)
{
	SCHash		hash = SCHashKey(def->id, key, keylen);
	SCKeyState	cur;

	if (!engine_read(def, hash, key, keylen, false, &cur))
		return false;
	engine_touch(def, hash, key, keylen, &cur);
	return true;
}

Jsonb *
SCPatch(const SCCacheDef *def, const char *key, int keylen, Jsonb *patch)
{
	SCHash		hash = SCHashKey(def->id, key, keylen);
	SCKeyState	cur;
	Jsonb	   *merged;

	SCLockKey(def->id, hash);
	if (!engine_read(def, hash, key, keylen, true, &cur))
		return NULL;
	merged = DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
												JsonbPGetDatum(cur.value),
												JsonbPGetDatum(patch)));
	engine_stage_put(def, hash, key, keylen, merged, cur.user, cur.userlen,
					 &cur.timeouts, Max(SCNextVersion(), cur.version + 1),
					 cur.created_at, GetCurrentTimestamp(), false);
	return merged;
}

/* value->field as an int64; 0 when absent; error when not an integer */
static int64
engine_counter_of(Jsonb *value, const char *field, int fieldlen)
{
	JsonbValue	k;
	JsonbValue *v;
	Datum		d;
	int64		n;

	if (!JB_ROOT_IS_OBJECT(value) || JB_ROOT_IS_SCALAR(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot increment a field of a value that is not a JSON object")));
	k.type = jbvString;
	k.val.string.val = (char *) field;
	k.val.string.len = fieldlen;
	v = findJsonbValueFromContainer(&value->root, JB_FOBJECT, &k);
	if (v == NULL)
		return 0;
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"%s\" is not a number", field)));
	/* numeric_int8 raises 22003 out of range, and rounds: check that too */
	n = DatumGetInt64(DirectFunctionCall1(numeric_int8,
										  NumericGetDatum(v->val.numeric)));
	d = DirectFunctionCall2(numeric_eq, NumericGetDatum(v->val.numeric),
							NumericGetDatum(int64_to_numeric(n)));
	if (!DatumGetBool(d))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"%s\" is not an integer in the range of bigint", field)));
	return n;
}

/* value || {field: n} */
static Jsonb *
engine_with_counter(Jsonb *value, const char *field, int64 n)
{
	Jsonb	   *one;
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	escape_json(&buf, field);
	appendStringInfo(&buf, ": " INT64_FORMAT "}", n);
	one = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	if (value == NULL)
		return one;
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
											  JsonbPGetDatum(value),
											  JsonbPGetDatum(one)));
}

int64
SCIncr(const SCCacheDef *def, const char *key, int keylen,
	   const char *field, int fieldlen, int64 delta,
	   const char *user, int userlen)
{
	SCHash		hash = SCHashKey(def->id, key, keylen);
	SCKeyState	cur;
	bool		have;
	int64		n = 0;
	TimestampTz now;
	SCEntryTimeouts none = {0, 0};

	SCLockKey(def->id, hash);
	have = engine_read(def, hash, key, keylen, true, &cur);
	now = GetCurrentTimestamp();
	if (have)
		n = engine_counter_of(cur.value, field, fieldlen);
	if (pg_add_s64_overflow(n, delta, &n))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("counter \"%s\" would overflow bigint", field)));

	if (have)
		engine_stage_put(def, hash, key, keylen,
						 engine_with_counter(cur.value, field, n),
						 cur.user, cur.userlen, &cur.timeouts,
						 Max(SCNextVersion(), cur.version + 1),
						 cur.created_at, now, false);
	else
	{
		if (def->max_per_user > 0 && user != NULL)
			SCEnforceUserLimit(def, user, userlen, key, keylen);
		engine_stage_put(def, hash, key, keylen,
						 engine_with_counter(NULL, field, n),
						 user, userlen, &none, SCNextVersion(), now, now,
						 false);
	}
	return n;
}

static bool
engine_delete(const SCCacheDef *def, const char *key, int keylen, bool evict)
{
	SCHash		hash = SCHashKey(def->id, key, keylen);
	SCKeyState	cur;
	SCPendingOp *op;

	SCLockKey(def->id, hash);
	if (!engine_read(def, hash, key, keylen, false, &cur))
		return false;
	op = SCPendingAdd(SC_OP_DELETE, def, hash, key, keylen);
	op->version = Max(SCNextVersion(), cur.version + 1);
	op->evict = evict;
	if (def->durable)
		SCDurableWriteDelete(def, key, keylen);
	return true;
}

bool
SCDelete(const SCCacheDef *def, const char *key, int keylen)
{
	return engine_delete(def, key, keylen, false);
}

/* a key of a user, collected for delete_user and user_entries */
typedef struct UserKey
{
	char	   *key;
	int			keylen;
} UserKey;

static int
userkey_cmp(const void *a, const void *b)
{
	const UserKey *x = a;
	const UserKey *y = b;
	int			r = memcmp(x->key, y->key, Min(x->keylen, y->keylen));

	return r != 0 ? r : x->keylen - y->keylen;
}

/*
 * Keys that may belong to the user as this transaction sees it: committed
 * entries found through the user index of every partition, its own staged
 * puts, and (durable caches) the rows; sorted and without duplicates.
 * Callers re-read each key's state, which is what decides.
 */
static UserKey *
engine_user_keys(const SCCacheDef *def, const char *user, int userlen,
				 int *nkeys)
{
	SCHash		uh = SCHashUser(def->id, user, userlen);
	int			cap = 16;
	int			n = 0;
	int			partno;
	UserKey    *keys = palloc(cap * sizeof(UserKey));
	ListCell   *lc;
	List	   *rows;
	int			i,
				j;

	for (partno = 0; partno < SC_NUM_PARTITIONS; partno++)
	{
		SCPartition *part = &sc_shared->partitions[partno];
		char	   *base = SCRegion(partno);
		uint32		off;

		LWLockAcquire(part->lock, LW_SHARED);
		for (off = SCTableUserChain(partno, (uint32) uh.h); off != 0;
			 off = SCEntryAt(base, off)->user_next)
		{
			SCEntry    *e = SCEntryAt(base, off);

			if (!SCEntryIsUsers(e, def->id, (uint32) uh.h, user, userlen))
				continue;
			if (n == cap)
			{
				cap *= 2;
				keys = repalloc(keys, cap * sizeof(UserKey));
			}
			keys[n].key = pnstrdup(SCEntryKey(e), e->key_len);
			keys[n].keylen = e->key_len;
			n++;
		}
		LWLockRelease(part->lock);
	}

	foreach(lc, SCPendingOps())
	{
		SCPendingOp *op = lfirst(lc);

		if (op->kind != SC_OP_PUT || op->cache_id != def->id ||
			op->user == NULL || op->userlen != userlen ||
			memcmp(op->user, user, userlen) != 0)
			continue;
		if (n == cap)
		{
			cap *= 2;
			keys = repalloc(keys, cap * sizeof(UserKey));
		}
		keys[n].key = op->key;
		keys[n].keylen = op->keylen;
		n++;
	}

	if (def->durable)
	{
		rows = SCDurableUserKeys(def, user, userlen);
		foreach(lc, rows)
		{
			text	   *t = lfirst(lc);

			if (n == cap)
			{
				cap *= 2;
				keys = repalloc(keys, cap * sizeof(UserKey));
			}
			keys[n].key = VARDATA_ANY(t);
			keys[n].keylen = VARSIZE_ANY_EXHDR(t);
			n++;
		}
	}

	if (n > 1)
	{
		qsort(keys, n, sizeof(UserKey), userkey_cmp);
		for (i = 1, j = 0; i < n; i++)
			if (userkey_cmp(&keys[i], &keys[j]) != 0)
				keys[++j] = keys[i];
		n = j + 1;
	}
	*nkeys = n;
	return keys;
}

static bool
keystate_is_users(SCKeyState *st, const char *user, int userlen)
{
	return st->user != NULL && st->userlen == userlen &&
		memcmp(st->user, user, userlen) == 0;
}

int
SCDeleteUser(const SCCacheDef *def, const char *user, int userlen)
{
	int			nkeys;
	UserKey    *keys = engine_user_keys(def, user, userlen, &nkeys);
	int			deleted = 0;
	int			i;

	for (i = 0; i < nkeys; i++)
	{
		SCHash		hash = SCHashKey(def->id, keys[i].key, keys[i].keylen);
		SCKeyState	cur;
		SCPendingOp *op;

		SCLockKey(def->id, hash);
		/* it may have changed hands before we got the lock */
		if (!engine_read(def, hash, keys[i].key, keys[i].keylen, false, &cur) ||
			!keystate_is_users(&cur, user, userlen))
			continue;
		op = SCPendingAdd(SC_OP_DELETE, def, hash, keys[i].key,
						  keys[i].keylen);
		op->version = Max(SCNextVersion(), cur.version + 1);
		if (def->durable)
			SCDurableWriteDelete(def, keys[i].key, keys[i].keylen);
		deleted++;
	}
	return deleted;
}

static int
usercopy_oldest_first(const ListCell *a, const ListCell *b)
{
	const SCEntryCopy *x = lfirst(a);
	const SCEntryCopy *y = lfirst(b);

	if (x->last_access != y->last_access)
		return x->last_access < y->last_access ? -1 : 1;
	return x->created_at < y->created_at ? -1 : (x->created_at > y->created_at);
}

/*
 * A new key is about to be created for a user of a cache with a per-user
 * limit.  The user's heavyweight lock serializes concurrent creators until
 * commit, so the count below cannot be overtaken: the limit holds under
 * concurrent logins.  'deny' refuses; 'evict_oldest' stages deletes of the
 * least recently accessed entries in this same transaction.
 */
void
SCEnforceUserLimit(const SCCacheDef *def, const char *user, int userlen,
				   const char *key, int keylen)
{
	List	   *live;
	ListCell   *lc;
	int			excess;

	SCLockUser(def->id, SCHashUser(def->id, user, userlen));
	live = SCUserEntries(def, user, userlen);
	foreach(lc, live)
	{
		SCEntryCopy *c = lfirst(lc);

		/* the key being written is replaced, not added */
		if ((int) strlen(c->key) == keylen && memcmp(c->key, key, keylen) == 0)
			live = foreach_delete_current(live, lc);
	}
	excess = list_length(live) - def->max_per_user + 1;
	if (excess <= 0)
		return;
	if (!def->evict_oldest)
		ereport(ERROR,
				(errcode(ERRCODE_SC_USER_LIMIT),
				 errmsg("user \"%.*s\" already has %d entries in cache \"%s\"",
						userlen, user, list_length(live), def->name),
				 errdetail("The cache allows at most %d entries per user.",
						   def->max_per_user),
				 errhint("Delete one of the user's entries, or define the cache with per_user_policy => 'evict_oldest'.")));

	list_sort(live, usercopy_oldest_first);
	foreach(lc, live)
	{
		SCEntryCopy *c = lfirst(lc);

		if (excess-- <= 0)
			break;
		(void) engine_delete(def, c->key, strlen(c->key), true);
	}
}

List *
SCUserEntries(const SCCacheDef *def, const char *user, int userlen)
{
	int			nkeys;
	UserKey    *keys = engine_user_keys(def, user, userlen, &nkeys);
	List	   *result = NIL;
	int			i;

	for (i = 0; i < nkeys; i++)
	{
		SCHash		hash = SCHashKey(def->id, keys[i].key, keys[i].keylen);
		SCKeyState	cur;
		SCEntryCopy *c;

		if (!engine_read(def, hash, keys[i].key, keys[i].keylen, true, &cur) ||
			!keystate_is_users(&cur, user, userlen))
			continue;
		c = palloc0(sizeof(SCEntryCopy));
		c->key = pnstrdup(keys[i].key, keys[i].keylen);
		c->user = cur.user;
		c->value = cur.value;
		c->created_at = cur.created_at;
		c->last_access = cur.last_access;
		c->expires_at = cur.expires_at;
		c->version = cur.version;
		c->durable = def->durable;
		result = lappend(result, c);
	}
	return result;
}

bool
SCEntryInfo(const SCCacheDef *def, const char *key, int keylen,
			SCEntryCopy *out)
{
	SCHash		hash = SCHashKey(def->id, key, keylen);
	SCKeyState	cur;

	if (!engine_read(def, hash, key, keylen, false, &cur))
		return false;
	out->key = pnstrdup(key, keylen);
	out->user = cur.user;
	out->value = NULL;
	out->created_at = cur.created_at;
	out->last_access = cur.last_access;
	out->expires_at = cur.expires_at;
	out->version = cur.version;
	out->durable = def->durable;
	return true;
}

/*
 * Apply one staged write at commit.  Must not fail: the transaction has
 * already committed.
 */
void
SCApplyOp(SCPendingOp *op, TimestampTz now)
{
	SCPartition *part = &sc_shared->partitions[op->hash.partno];
	char	   *base = SCRegion(op->hash.partno);
	uint32		old;
	bool		live;

	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	live = SCCacheIsLive(op->cache_id);
	if (op->kind != SC_OP_TOUCH)
		part->write_gen++;		/* fills that raced this write are dropped */
	old = SCTableLookup(op->hash.partno, (uint32) op->hash.h, op->cache_id,
						op->key, op->keylen);
	switch (op->kind)
	{
		case SC_OP_PUT:
			if (old != 0)
				SCTableRemove(op->hash.partno, old);
			if (op->staged != 0)
			{
				if (live)
					SCTableLink(op->hash.partno, op->staged,
								SCExpiresAt(&op->def, SCEntryAt(base, op->staged)));
				else
					SCArenaFree(&part->arena, base, op->staged);
				op->staged = 0;
			}
			SCStatAdd(op->cache_id, SC_STAT_PUTS, 1);
			break;
		case SC_OP_DELETE:
			if (old != 0)
				SCTableRemove(op->hash.partno, old);
			SCStatAdd(op->cache_id,
					  op->evict ? SC_STAT_EVICTED : SC_STAT_DELETES, 1);
			break;
		case SC_OP_TOUCH:
			/* an entry that expired meanwhile stays expired */
			if (old != 0 && SCExpiresAt(&op->def, SCEntryAt(base, old)) > now)
			{
				SCEntry    *e = SCEntryAt(base, old);

				e->last_access = Max(e->last_access, now);
				if (op->def.durable)
					e->flags |= SC_ENTRY_DIRTY;
				SCWheelMove(op->hash.partno, old, SCExpiresAt(&op->def, e));
				SCStatAdd(op->cache_id, SC_STAT_TOUCHES, 1);
			}
			break;
	}
	LWLockRelease(part->lock);
	if (live && op->kind != SC_OP_TOUCH)
		SCNotifyQueue(op->cache_id, op->key, op->keylen,
					  op->kind == SC_OP_PUT ? SC_NOTIFY_PUT :
					  op->evict ? SC_NOTIFY_EVICT : SC_NOTIFY_DELETE,
					  op->version);
}

/* Forget a staged write at abort: free its block. */
void
SCDiscardOp(SCPendingOp *op)
{
	SCPartition *part;

	if (op->staged == 0)
		return;
	part = &sc_shared->partitions[op->hash.partno];
	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	SCArenaFree(&part->arena, SCRegion(op->hash.partno), op->staged);
	LWLockRelease(part->lock);
	op->staged = 0;
}

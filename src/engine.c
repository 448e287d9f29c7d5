/*-------------------------------------------------------------------------
 *
 * engine.c
 *		The entry operations (see engine.h).
 *
 * Every operation sees the cache as its transaction does: its own staged
 * writes (pending.c) over the committed entries in shared memory
 * (store.c), over the durable table for durable caches (durable.c).
 * Writes take the key's heavyweight lock first (locks.c), so what they read
 * stays true until they commit, and stage their result; nothing here
 * changes what other sessions see: xact.c applies the staged writes at
 * commit.
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

#include "caches.h"
#include "clock.h"
#include "durable.h"
#include "engine.h"
#include "locks.h"
#include "notify.h"
#include "pending.h"
#include "settings.h"
#include "store.h"

/* what the store may report from one allocation's eviction sweep */
#define ENGINE_REMOVED_MAX	64

/* the state of one key as the current transaction sees it */
typedef struct KeyState
{
	SCEntryState st;
	bool		resident;		/* in shared memory now */
	bool		filled;			/* read from the table by this call */
} KeyState;

static SCRemoved removed_items[ENGINE_REMOVED_MAX];

static void engine_enforce_user_limit(const SCCacheDef *def, const char *user,
									  int userlen, const char *key, int keylen);

void
SCReportRemoved(SCRemovedBuf *removed, TimestampTz wait_until)
{
	int			i;

	for (i = 0; i < removed->n; i++)
	{
		SCRemoved  *r = &removed->items[i];

		if (r->reason == SC_REMOVED_EVICTED)
			SCStatAdd(r->cache_id, SC_STAT_EVICTED, 1);
		else if (r->durable)
			continue;			/* counted and announced with its row */
		else
		{
			SCStatAdd(r->cache_id, SC_STAT_EXPIRED, 1);
			if (r->notify && wait_until != 0)
				SCNotifyQueueWait(r->cache_id, r->key, r->keylen,
								  SC_NOTIFY_EXPIRE, r->version, wait_until);
			else if (r->notify)
				SCNotifyQueue(r->cache_id, r->key, r->keylen,
							  SC_NOTIFY_EXPIRE, r->version);
		}
	}
	removed->n = 0;
	SCNotifyWakeWorker();
}

/* Take the key's lock; the first lock in a cache checks it still exists. */
static void
engine_lock_key(const SCCacheDef *def, SCHash hash)
{
	if (SCLockKey(def->id, hash))
		SCCheckCacheStillDefined(def->id);
}

/*
 * The key's state for this transaction: its own latest staged write, else
 * the committed entry, else (durable caches, when fill) the row, filling
 * shared memory.  An entry whose own timeout has passed is absent, even a
 * staged one.
 */
static bool
engine_read_ex(const SCCacheDef *def, SCHash hash, const char *key,
			   int keylen, bool want_value, KeyState *ks, bool fill)
{
	SCPendingOp *op = SCPendingFind(def->id, hash, key, keylen);
	SCStoreRules rules;
	TimestampTz now = GetCurrentTimestamp();
	uint64		write_gen;
	SCRemovedBuf removed = {0, ENGINE_REMOVED_MAX, removed_items};

	ks->resident = false;
	ks->filled = false;
	SCCacheRules(def, &rules);
	if (op != NULL)
	{
		if (op->kind == SC_OP_DELETE)
			return false;
		if (op->staged != 0)
		{
			/* our own unlinked block: nobody else touches it */
			SCStoreReadOwn(hash.partno, op->staged, &rules, want_value, &ks->st);
			ks->resident = true;
			return ks->st.expires_at > now;
		}
		/* a durable put that found no room in memory: read the row */
		return SCDurableRead(def, key, keylen, want_value, &ks->st);
	}
	/* on a standby, replay does not reach shared memory: read the table */
	if (def->durable && RecoveryInProgress())
		return SCDurableRead(def, key, keylen, want_value, &ks->st);
	if (SCStoreRead(hash, def->id, key, keylen, &rules, now, want_value,
					&ks->st, &write_gen))
	{
		ks->resident = true;
		return true;
	}
	if (!def->durable || !fill)
		return false;

	/* a miss in a durable cache: read the row, and fill memory with it */
	if (!SCDurableRead(def, key, keylen, true, &ks->st))
		return false;
	ks->filled = true;
	SCAdvanceVersion(ks->st.version);
	SCCachesRefresh();			/* the policy reads this backend's copy */
	ks->resident = (SCStoreInstallState(hash, def->id, key, keylen, &ks->st,
										write_gen, true, SCCachesPolicy(),
										&removed) == SC_INSTALL_DONE);
	SCReportRemoved(&removed, 0);
	if (ks->resident)
		SCStatAdd(def->id, SC_STAT_FILLS, 1);
	if (!want_value)
		ks->st.value = NULL;
	return true;
}

static bool
engine_read(const SCCacheDef *def, SCHash hash, const char *key, int keylen,
			bool want_value, KeyState *ks)
{
	return engine_read_ex(def, hash, key, keylen, want_value, ks, true);
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
 * Stage a put of the key's new state: the pending op first (so an error
 * cannot leak the block), then the durable row (which may raise the
 * version past a row written before a restart, and, when row_may_exist,
 * keep the created_at of a live row nobody read), then the block.  A
 * durable cache without room keeps only the row until a later fill.
 * Returns the version.
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
	bool		has_timeouts = (timeouts->idle_us != 0 || timeouts->max_us != 0);
	int64		access_slot = 0;
	SCRemovedBuf removed = {0, ENGINE_REMOVED_MAX, removed_items};

	if (VARSIZE(value) > (Size) sc_max_value_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value of %zu bytes is too large for cache \"%s\"",
						(Size) VARSIZE(value), def->name),
				 errdetail("Values may be at most sessioncache.max_value_size (%d bytes).",
						   sc_max_value_size)));

	nbytes = SCStoreEntrySize(true, VARSIZE(value), keylen, user ? userlen : 0);
	if (nbytes > SCStoreMaxEntrySize())
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("entry of %zu bytes is too large for sessioncache.memory", nbytes),
				 errdetail("An entry may take at most a quarter of one of the %d partitions of sessioncache.memory: %zu bytes.",
						   SC_NUM_PARTITIONS, SCStoreMaxEntrySize()),
				 errhint("Increase sessioncache.memory (currently %d kB) or store smaller values.",
						 sc_memory_kb)));

	op = SCPendingAdd(SC_OP_PUT, def, hash, key, keylen);
	SCPendingSetUser(op, user, userlen);
	if (def->durable)
		version = SCDurableWritePut(def, key, keylen, (struct varlena *) value,
									user, userlen, timeouts, version,
									&created_at, &access_slot, now,
									row_may_exist);
	op->version = version;

	nbytes = SCStoreEntrySize(has_timeouts, VARSIZE(value), keylen,
							  user ? userlen : 0);
	SCCachesRefresh();			/* the sweep's policy reads the local copy */
	op->staged = SCStoreAllocEntry(hash, nbytes, true, SCCachesPolicy(),
								   &removed);
	SCReportRemoved(&removed, 0);
	if (op->staged == 0)
	{
		if (!def->durable)
			engine_report_full(def, nbytes);
		return version;
	}
	/* the block is ours alone until it is linked: fill it without the lock */
	SCStoreFillEntry(hash, op->staged, def->id, key, keylen,
					 (struct varlena *) value, user, user ? userlen : 0,
					 timeouts, version, access_slot, created_at, now);
	return version;
}

int64
SCPut(const SCCacheDef *def, const char *key, int keylen, Jsonb *value,
	  const char *user, int userlen, int64 idle_us, int64 max_us)
{
	SCHash		hash = SCStoreHashKey(def->id, key, keylen);
	KeyState	cur;
	bool		have;
	TimestampTz now;
	int64		version;
	SCEntryTimeouts timeouts;
	bool		skip_row;

	engine_lock_key(def, hash);

	/*
	 * A durable key not in memory need not be read first: the upsert keeps
	 * the row's created_at and raises its version by itself.  A per-user
	 * limit needs to know the key's current user, so it does read.
	 */
	skip_row = def->durable && def->max_per_user == 0;
	have = engine_read_ex(def, hash, key, keylen, false, &cur, !skip_row);
	now = GetCurrentTimestamp();

	if (def->max_per_user > 0 && user != NULL &&
		!(have && cur.st.user != NULL && cur.st.userlen == userlen &&
		  memcmp(cur.st.user, user, userlen) == 0))
		engine_enforce_user_limit(def, user, userlen, key, keylen);

	timeouts.idle_us = idle_us;
	timeouts.max_us = max_us;
	version = SCNextVersion();
	if (have)
		version = Max(version, cur.st.version + 1);
	return engine_stage_put(def, hash, key, keylen, value, user, userlen,
							&timeouts, version, have ? cur.st.created_at : now,
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
			 KeyState *cur)
{
	if (def->durable && !cur->resident)
	{
		if (SCDurableTouch(def, key, keylen, GetCurrentTimestamp()))
			SCStatAdd(def->id, SC_STAT_TOUCHES, 1);
	}
	else
		(void) SCPendingAdd(SC_OP_TOUCH, def, hash, key, keylen);
}

Jsonb *
SCGet(const SCCacheDef *def, const char *key, int keylen, bool touch)
{
	SCHash		hash = SCStoreHashKey(def->id, key, keylen);
	KeyState	cur;
	bool		found = engine_read(def, hash, key, keylen, true, &cur);

	/* a hit is a get served from shared memory */
	SCStatAdd(def->id, found && cur.resident && !cur.filled ?
			  SC_STAT_HITS : SC_STAT_MISSES, 1);
	if (!found)
		return NULL;
	if (touch && RecoveryInProgress())
	{
		static bool told = false;

		/* a standby cannot write: the read is still worth having */
		if (!told)
			ereport(NOTICE,
					(errcode(ERRCODE_WARNING),
					 errmsg("sessioncache.get ignores touch on a standby"),
					 errdetail("The idle timer of key \"%.*s\" in cache \"%s\" was not refreshed.",
							   keylen, key, def->name),
					 errhint("Touch entries on the primary; this notice is given once per session.")));
		told = true;
	}
	else if (touch)
		engine_touch(def, hash, key, keylen, &cur);
	return (Jsonb *) cur.st.value;
}

bool
SCTouch(const SCCacheDef *def, const char *key, int keylen)
{
	SCHash		hash = SCStoreHashKey(def->id, key, keylen);
	KeyState	cur;

	if (!engine_read(def, hash, key, keylen, false, &cur))
		return false;
	engine_touch(def, hash, key, keylen, &cur);
	return true;
}

Jsonb *
SCPatch(const SCCacheDef *def, const char *key, int keylen, Jsonb *patch)
{
	SCHash		hash = SCStoreHashKey(def->id, key, keylen);
	KeyState	cur;
	Jsonb	   *merged;

	engine_lock_key(def, hash);
	if (!engine_read(def, hash, key, keylen, true, &cur))
		return NULL;
	merged = DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
												PointerGetDatum(cur.st.value),
												JsonbPGetDatum(patch)));
	engine_stage_put(def, hash, key, keylen, merged, cur.st.user,
					 cur.st.userlen, &cur.st.timeouts,
					 Max(SCNextVersion(), cur.st.version + 1),
					 cur.st.created_at, GetCurrentTimestamp(), false);
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
	SCHash		hash = SCStoreHashKey(def->id, key, keylen);
	KeyState	cur;
	bool		have;
	int64		n = 0;
	TimestampTz now;
	SCEntryTimeouts none = {0, 0};

	engine_lock_key(def, hash);
	have = engine_read(def, hash, key, keylen, true, &cur);
	now = GetCurrentTimestamp();
	if (have)
		n = engine_counter_of((Jsonb *) cur.st.value, field, fieldlen);
	if (pg_add_s64_overflow(n, delta, &n))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("counter \"%s\" would overflow bigint", field)));

	if (have)
		engine_stage_put(def, hash, key, keylen,
						 engine_with_counter((Jsonb *) cur.st.value, field, n),
						 cur.st.user, cur.st.userlen, &cur.st.timeouts,
						 Max(SCNextVersion(), cur.st.version + 1),
						 cur.st.created_at, now, false);
	else
	{
		if (def->max_per_user > 0 && user != NULL)
			engine_enforce_user_limit(def, user, userlen, key, keylen);
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
	SCHash		hash = SCStoreHashKey(def->id, key, keylen);
	KeyState	cur;
	SCPendingOp *op;

	engine_lock_key(def, hash);
	if (!engine_read(def, hash, key, keylen, false, &cur))
		return false;
	op = SCPendingAdd(SC_OP_DELETE, def, hash, key, keylen);
	op->version = Max(SCNextVersion(), cur.st.version + 1);
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

static int
keyref_cmp(const void *a, const void *b)
{
	const SCKeyRef *x = a;
	const SCKeyRef *y = b;
	int			r = memcmp(x->key, y->key, Min(x->keylen, y->keylen));

	return r != 0 ? r : x->keylen - y->keylen;
}

/*
 * Keys that may belong to the user as this transaction sees it: committed
 * entries found through the store's user index, its own staged puts, and
 * (durable caches) the rows; sorted and without duplicates.  Callers
 * re-read each key's state, which is what decides.
 */
static SCKeyRef *
engine_user_keys(const SCCacheDef *def, const char *user, int userlen,
				 int *nkeys)
{
	int			nmem;
	SCKeyRef   *mem = SCStoreUserKeys(def->id, user, userlen, &nmem);
	int			nrows = 0;
	SCKeyRef   *rows = def->durable ?
		SCDurableUserKeys(def, user, userlen, &nrows) : NULL;
	int			cap = nmem + nrows + list_length(SCPendingOps()) + 1;
	SCKeyRef   *keys = palloc(cap * sizeof(SCKeyRef));
	int			n = 0;
	ListCell   *lc;
	int			i,
				j;

	for (i = 0; i < nmem; i++)
		keys[n++] = mem[i];
	for (i = 0; i < nrows; i++)
		keys[n++] = rows[i];
	foreach(lc, SCPendingOps())
	{
		SCPendingOp *op = lfirst(lc);

		if (op->kind != SC_OP_PUT || op->cache_id != def->id ||
			op->user == NULL || op->userlen != userlen ||
			memcmp(op->user, user, userlen) != 0)
			continue;
		keys[n].key = op->key;
		keys[n].keylen = op->keylen;
		n++;
	}
	if (n > 1)
	{
		qsort(keys, n, sizeof(SCKeyRef), keyref_cmp);
		for (i = 1, j = 0; i < n; i++)
			if (keyref_cmp(&keys[i], &keys[j]) != 0)
				keys[++j] = keys[i];
		n = j + 1;
	}
	*nkeys = n;
	return keys;
}

static bool
keystate_is_users(KeyState *ks, const char *user, int userlen)
{
	return ks->st.user != NULL && ks->st.userlen == userlen &&
		memcmp(ks->st.user, user, userlen) == 0;
}

int
SCDeleteUser(const SCCacheDef *def, const char *user, int userlen)
{
	int			nkeys;
	SCKeyRef   *keys = engine_user_keys(def, user, userlen, &nkeys);
	int			deleted = 0;
	int			i;

	for (i = 0; i < nkeys; i++)
	{
		SCHash		hash = SCStoreHashKey(def->id, keys[i].key, keys[i].keylen);
		KeyState	cur;
		SCPendingOp *op;

		engine_lock_key(def, hash);
		/* it may have changed hands before we got the lock */
		if (!engine_read(def, hash, keys[i].key, keys[i].keylen, false, &cur) ||
			!keystate_is_users(&cur, user, userlen))
			continue;
		op = SCPendingAdd(SC_OP_DELETE, def, hash, keys[i].key,
						  keys[i].keylen);
		op->version = Max(SCNextVersion(), cur.st.version + 1);
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
static void
engine_enforce_user_limit(const SCCacheDef *def, const char *user, int userlen,
				   const char *key, int keylen)
{
	List	   *live;
	ListCell   *lc;
	int			excess;

	if (SCLockUser(def->id, SCStoreHashUser(def->id, user, userlen)))
		SCCheckCacheStillDefined(def->id);
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
	SCKeyRef   *keys = engine_user_keys(def, user, userlen, &nkeys);
	List	   *result = NIL;
	int			i;

	for (i = 0; i < nkeys; i++)
	{
		SCHash		hash = SCStoreHashKey(def->id, keys[i].key, keys[i].keylen);
		KeyState	cur;
		SCEntryCopy *c;

		if (!engine_read(def, hash, keys[i].key, keys[i].keylen, true, &cur) ||
			!keystate_is_users(&cur, user, userlen))
			continue;
		c = palloc0(sizeof(SCEntryCopy));
		c->key = pnstrdup(keys[i].key, keys[i].keylen);
		c->user = cur.st.user;
		c->value = (Jsonb *) cur.st.value;
		c->created_at = cur.st.created_at;
		c->last_access = cur.st.last_access;
		c->expires_at = cur.st.expires_at;
		c->version = cur.st.version;
		c->durable = def->durable;
		result = lappend(result, c);
	}
	return result;
}

bool
SCEntryInfo(const SCCacheDef *def, const char *key, int keylen,
			SCEntryCopy *out)
{
	SCHash		hash = SCStoreHashKey(def->id, key, keylen);
	KeyState	cur;

	if (!engine_read(def, hash, key, keylen, false, &cur))
		return false;
	out->key = pnstrdup(key, keylen);
	out->user = cur.st.user;
	out->value = NULL;
	out->created_at = cur.st.created_at;
	out->last_access = cur.st.last_access;
	out->expires_at = cur.st.expires_at;
	out->version = cur.st.version;
	out->durable = def->durable;
	return true;
}

/*-------------------------------------------------------------------------
 *
 * notify.c
 *		Invalidation messages: a shared queue filled at commit, drained by
 *		the notify worker into LISTEN/NOTIFY.
 *
 * PostgreSQL's NOTIFY takes a database-wide lock while a notifying
 * transaction commits, so notifying from the application's own transaction
 * would serialize every committing session.  Instead a committed change is
 * appended to a ring in shared memory (after the commit, so rolled-back work
 * never gets there) and the notify worker sends the queued changes, several
 * to a payload as a JSON array, in transactions of its own.  Writers wake
 * the worker through its latch; it sleeps until one does.
 *
 * When the ring is full, messages are dropped and the worker sends one
 * {"op": "flush"} instead, telling listeners to drop everything: a lost
 * message is never silent.  A dropped or redefined cache gets
 * {"cache": name, "op": "flush"}: drop everything of that cache.
 *
 * Keys are bearer secrets and LISTEN needs no privilege, so (in 1.1) no key
 * goes out in clear and every object is signed: with the installation's
 * secret (sessioncache.channel_key, 32 random bytes, readable by the owner
 * only; sessioncache.channel_secret() hands it to sessioncache_app), an
 * invalidation carries "key_hash", hex of the first 16 bytes of
 * HMAC-SHA256(secret, cache NUL key), instead of the key, and every object
 * carries "mac", hex of the first 16 bytes of HMAC-SHA256(secret, its
 * canonical string): the channel name and the object's fields in a fixed
 * order, joined by NUL bytes, an absent field as the empty string:
 *
 *	sessioncache_invalidate NUL cache NUL key_hash NUL op NUL version
 *	sessioncache_membership NUL cluster NUL view_id
 *
 * (numbers in decimal, text as the database's UTF-8 bytes; text cannot
 * hold a NUL, so the string is unambiguous).  The worker reads the secret
 * once per round.  An installation without the table (1.0's SQL) still gets
 * the 1.0 format, key in clear and no mac.
 *
 * Locking: the ring is protected by its own LWLock (the tranche's last),
 * which is taken after a partition lock and never before one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/async.h"
#include "common/hmac.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/json.h"
#include "utils/lsyscache.h"

#include "caches.h"
#include "internal_sql.h"
#include "notify.h"
#include "settings.h"

#define NOTIFY_QUEUE_SIZE	8192	/* messages */
#define NOTIFY_PAYLOAD_MAX	7900	/* NOTIFY allows 8000 bytes */
#define NOTIFY_DRAIN_MAX	4096	/* messages per NOTIFY transaction */

typedef struct NotifyMessage
{
	int32		cache_id;		/* 0 for membership messages */
	uint8		op;				/* SCNotifyOp */
	uint8		keylen;
	int64		version;		/* or the view id */
	char		key[SC_KEY_MAX];	/* or the cluster name */
} NotifyMessage;

typedef struct NotifyQueue
{
	LWLock	   *lock;
	uint64		head;			/* next message to send */
	uint64		tail;			/* next free slot */
	bool		overflowed;		/* messages were dropped since last send */
	uint64		dropped;
	uint64		flushes;
	Latch	   *worker_latch;
	NotifyMessage ring[NOTIFY_QUEUE_SIZE];
} NotifyQueue;

static NotifyQueue *queue = NULL;

/* did this backend queue something since it last woke the worker? */
static bool queued_since_wake = false;

static void notify_wake_worker(void);

static const char *const op_names[] = {"put", "delete", "expire", "evict"};

/*
 * Hex of the first 16 bytes of HMAC-SHA256(secret, parts joined by NUL)
 * into out (SC_NOTIFY_HASH_HEX + 1 bytes).  Needs a resource owner (a
 * transaction).
 */
void
SCNotifyHmacHex(const uint8 *secret, const char *const *parts,
				const int *lens, int nparts, char *out)
{
	static const char hexdigits[] = "0123456789abcdef";
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	uint8		digest[32];
	int			i;
	bool		ok;

	if (ctx == NULL)
		elog(ERROR, "sessioncache: out of memory creating an HMAC context");
	ok = pg_hmac_init(ctx, secret, SC_CHANNEL_SECRET_LEN) == 0;
	for (i = 0; ok && i < nparts; i++)
	{
		if (i > 0)
			ok = pg_hmac_update(ctx, (const uint8 *) "", 1) == 0;
		if (ok)
			ok = pg_hmac_update(ctx, (const uint8 *) parts[i],
								lens[i] >= 0 ? (size_t) lens[i] : strlen(parts[i])) == 0;
	}
	if (ok)
		ok = pg_hmac_final(ctx, digest, sizeof(digest)) == 0;
	if (!ok)
	{
		const char *err = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		elog(ERROR, "sessioncache: HMAC failed: %s", err);
	}
	pg_hmac_free(ctx);
	for (i = 0; i < SC_NOTIFY_HASH_HEX / 2; i++)
	{
		out[2 * i] = hexdigits[digest[i] >> 4];
		out[2 * i + 1] = hexdigits[digest[i] & 15];
	}
	out[SC_NOTIFY_HASH_HEX] = '\0';
}

void
SCNotifyKeyHash(const uint8 *secret, const char *cache, const char *key,
				int keylen, char *out)
{
	const char *parts[2] = {cache, key};
	int			lens[2] = {-1, keylen};

	SCNotifyHmacHex(secret, parts, lens, 2, out);
}

/*
 * Read the installation's channel secret, as the extension's owner, whose
 * role id goes to *owner.  False when the installation has no channel_key
 * table (its SQL is 1.0's); throws 55000 when the table has no secret (the
 * worker then sends nothing rather than keys in clear) or the extension is
 * not installed.  Needs a transaction.
 */
bool
SCNotifyReadSecret(uint8 *secret, Oid *owner)
{
	SCSpiState st;
	Oid			nsp;
	bool		found = false;

	SCSpiBegin(&st);
	if (owner != NULL)
		*owner = GetUserId();
	nsp = get_namespace_oid("sessioncache", true);
	if (OidIsValid(nsp) && OidIsValid(get_relname_relid("channel_key", nsp)))
	{
		if (SPI_execute("SELECT secret FROM sessioncache.channel_key", true, 1) != SPI_OK_SELECT)
			elog(ERROR, "sessioncache: reading the channel secret failed");
		if (SPI_processed == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
			{
				bytea	   *b = DatumGetByteaPP(d);

				if (VARSIZE_ANY_EXHDR(b) != SC_CHANNEL_SECRET_LEN)
					elog(ERROR, "sessioncache: the channel secret is not %d bytes",
						 SC_CHANNEL_SECRET_LEN);
				memcpy(secret, VARDATA_ANY(b), SC_CHANNEL_SECRET_LEN);
				found = true;
			}
		}
		/* a 1.1 installation without its secret must not send keys in clear */
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("sessioncache.channel_key holds no channel secret"),
					 errhint("Insert 32 random bytes into sessioncache.channel_key, or re-create the extension.")));
	}
	SCSpiEnd(&st);
	return found;
}

/* append ", \"mac\": \"...\"}" for an object whose canonical parts are given */
static void
notify_close_signed(StringInfo buf, const uint8 *secret, const char *channel,
					const char *const *fields, int nfields)
{
	const char *parts[5];
	int			lens[5];
	char		mac[SC_NOTIFY_HASH_HEX + 1];
	int			i;

	Assert(nfields < 5);
	parts[0] = channel;
	lens[0] = -1;
	for (i = 0; i < nfields; i++)
	{
		parts[i + 1] = fields[i];
		lens[i + 1] = -1;
	}
	SCNotifyHmacHex(secret, parts, lens, nfields + 1, mac);
	appendStringInfo(buf, ", \"mac\": \"%s\"}", mac);
}

Size
SCNotifyShmemSize(void)
{
	return MAXALIGN(sizeof(NotifyQueue));
}

void
SCNotifyShmemInit(LWLock *lock)
{
	bool		found;

	queue = ShmemInitStruct("sessioncache notify", SCNotifyShmemSize(), &found);
	if (!found)
		memset(queue, 0, sizeof(NotifyQueue));
	queue->lock = lock;
}

/*
 * Append a message.  When the ring is full the message is dropped (and a
 * flush will be sent), unless the caller may wait until 'deadline' (0: not
 * at all): the expiry worker waits for room, for a bounded time per round,
 * rather than make every listener drop everything after a mass expiry.
 */
static void
notify_append(int32 cache_id, SCNotifyOp op, const char *key, int keylen,
			  int64 version, TimestampTz deadline)
{
	NotifyMessage *m;

	for (;;)
	{
		LWLockAcquire(queue->lock, LW_EXCLUSIVE);
		if (queue->tail - queue->head < NOTIFY_QUEUE_SIZE)
			break;
		if (deadline == 0 || GetCurrentTimestamp() >= deadline)
		{
			queue->overflowed = true;
			queue->dropped++;
			LWLockRelease(queue->lock);
			queued_since_wake = true;
			return;
		}
		LWLockRelease(queue->lock);
		notify_wake_worker();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	m = &queue->ring[queue->tail % NOTIFY_QUEUE_SIZE];
	m->cache_id = cache_id;
	m->op = (uint8) op;
	m->keylen = (uint8) Min(keylen, SC_KEY_MAX);
	m->version = version;
	memcpy(m->key, key, m->keylen);
	queue->tail++;
	LWLockRelease(queue->lock);
	queued_since_wake = true;
}

void
SCNotifyQueue(int32 cache_id, const char *key, int keylen, SCNotifyOp op,
			  int64 version)
{
	if (queue == NULL)
		return;
	notify_append(cache_id, op, key, keylen, version, 0);
}

void
SCNotifyQueueWait(int32 cache_id, const char *key, int keylen, SCNotifyOp op,
				  int64 version, TimestampTz deadline)
{
	if (queue == NULL)
		return;
	notify_append(cache_id, op, key, keylen, version, Max(deadline, 1));
}

/*
 * A cache was dropped or redefined (its timeouts or notify setting may have
 * changed): listeners must drop all they hold of it.
 */
void
SCNotifyFlushCache(const char *name)
{
	if (queue == NULL)
		return;
	notify_append(0, SC_NOTIFY_FLUSH_CACHE, name, strlen(name), 0, 0);
}

/* Queue a membership view change (sent on sessioncache_membership). */
void
SCNotifyMembership(const char *cluster, int64 view_id)
{
	if (queue == NULL)
		return;
	notify_append(0, SC_NOTIFY_VIEW, cluster, strlen(cluster), view_id, 0);
}

void
SCNotifyWakeWorker(void)
{
	if (!queued_since_wake || queue == NULL)
		return;
	notify_wake_worker();
}

static void
notify_wake_worker(void)
{
	Latch	   *latch = queue->worker_latch;

	queued_since_wake = false;
	if (latch != NULL)
		SetLatch(latch);
}

void
SCNotifySetWorkerLatch(Latch *latch)
{
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->worker_latch = latch;
	LWLockRelease(queue->lock);
}

/* one object as itself, several as an array */
static void
notify_send(StringInfo objects, int count)
{
	StringInfoData arr;

	if (count == 0)
		return;
	if (count == 1)
	{
		Async_Notify("sessioncache_invalidate", objects->data);
		return;
	}
	initStringInfo(&arr);
	appendStringInfo(&arr, "[%s]", objects->data);
	Async_Notify("sessioncache_invalidate", arr.data);
	pfree(arr.data);
}

/*
 * Send what is queued, in the worker's own transaction: invalidations as
 * JSON objects (grouped into arrays under the payload limit), view changes
 * one by one.  Returns the number of messages sent.
 */
int
SCNotifyDrain(void)
{
	NotifyMessage *batch;
	uint64		head,
				tail;
	bool		overflowed;
	uint64		dropped;
	int			n,
				i;
	StringInfoData inv;
	int			inv_count = 0;
	SCCacheDef	def;
	uint8		secret[SC_CHANNEL_SECRET_LEN];
	bool		signed_msgs;

	LWLockAcquire(queue->lock, LW_SHARED);
	head = queue->head;
	tail = queue->tail;
	overflowed = queue->overflowed;
	dropped = queue->dropped;
	LWLockRelease(queue->lock);
	if (head == tail && !overflowed)
		return 0;

	n = (int) Min(tail - head, (uint64) NOTIFY_DRAIN_MAX);
	batch = palloc(sizeof(NotifyMessage) * Max(n, 1));
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < n; i++)
		batch[i] = queue->ring[(head + i) % NOTIFY_QUEUE_SIZE];
	LWLockRelease(queue->lock);

	initStringInfo(&inv);
	SCWorkerBeginTransaction();
	SCCachesRefresh();
	signed_msgs = SCNotifyReadSecret(secret, NULL);
	if (overflowed)
	{
		if (signed_msgs)
		{
			const char *f[4] = {"", "", "flush", ""};
			StringInfoData one;

			initStringInfo(&one);
			appendStringInfoString(&one, "{\"op\": \"flush\"");
			notify_close_signed(&one, secret, "sessioncache_invalidate", f, 4);
			Async_Notify("sessioncache_invalidate", one.data);
			pfree(one.data);
		}
		else
			Async_Notify("sessioncache_invalidate", "{\"op\": \"flush\"}");
	}
	for (i = 0; i < n; i++)
	{
		NotifyMessage *m = &batch[i];
		StringInfoData one;
		char	   *key = pnstrdup(m->key, m->keylen);
		char		num[32];

		initStringInfo(&one);
		if (m->op == SC_NOTIFY_VIEW)
		{
			appendStringInfoString(&one, "{\"cluster\": ");
			escape_json(&one, key);
			snprintf(num, sizeof(num), INT64_FORMAT, m->version);
			appendStringInfo(&one, ", \"view_id\": %s", num);
			if (signed_msgs)
			{
				const char *f[2] = {key, num};

				notify_close_signed(&one, secret, "sessioncache_membership", f, 2);
			}
			else
				appendStringInfoChar(&one, '}');
			Async_Notify("sessioncache_membership", one.data);
			continue;
		}
		if (m->op == SC_NOTIFY_FLUSH_CACHE)
		{
			/* the cache was dropped or redefined: drop all of it */
			appendStringInfoString(&one, "{\"cache\": ");
			escape_json(&one, key);
			appendStringInfoString(&one, ", \"op\": \"flush\"");
			if (signed_msgs)
			{
				const char *f[4] = {key, "", "flush", ""};

				notify_close_signed(&one, secret, "sessioncache_invalidate", f, 4);
			}
			else
				appendStringInfoChar(&one, '}');
			Async_Notify("sessioncache_invalidate", one.data);
			continue;
		}
		if (!SCCacheDefById(m->cache_id, &def))
			continue;			/* dropped meanwhile */
		appendStringInfoString(&one, "{\"cache\": ");
		escape_json(&one, def.name);
		snprintf(num, sizeof(num), INT64_FORMAT, m->version);
		if (signed_msgs)
		{
			char		key_hash[SC_NOTIFY_HASH_HEX + 1];
			const char *f[4];

			SCNotifyKeyHash(secret, def.name, m->key, m->keylen, key_hash);
			appendStringInfo(&one, ", \"key_hash\": \"%s\", \"op\": \"%s\", \"version\": %s",
							 key_hash, op_names[m->op], num);
			f[0] = def.name;
			f[1] = key_hash;
			f[2] = op_names[m->op];
			f[3] = num;
			notify_close_signed(&one, secret, "sessioncache_invalidate", f, 4);
		}
		else
		{
			appendStringInfoString(&one, ", \"key\": ");
			escape_json(&one, key);
			appendStringInfo(&one, ", \"op\": \"%s\", \"version\": %s}",
							 op_names[m->op], num);
		}
		if (inv.len + one.len + 3 > NOTIFY_PAYLOAD_MAX)
		{
			notify_send(&inv, inv_count);
			resetStringInfo(&inv);
			inv_count = 0;
		}
		if (inv_count > 0)
			appendStringInfoChar(&inv, ',');
		appendStringInfoString(&inv, one.data);
		inv_count++;
		SCStatAdd(m->cache_id, SC_STAT_NOTIFICATIONS, 1);
	}
	notify_send(&inv, inv_count);
	SCWorkerCommit();

	/*
	 * Only now are they delivered: release their slots.  A message dropped
	 * since this round began still needs a flush of its own.
	 */
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->head = head + n;
	if (overflowed)
	{
		if (queue->dropped == dropped)
			queue->overflowed = false;
		queue->flushes++;
	}
	LWLockRelease(queue->lock);
	return n + (overflowed ? 1 : 0);
}

/* counters for the notify_stats view: queued, dropped, flushes */
void
SCNotifyCounters(uint64 *pending, uint64 *dropped, uint64 *flushes)
{
	LWLockAcquire(queue->lock, LW_SHARED);
	*pending = queue->tail - queue->head;
	*dropped = queue->dropped;
	*flushes = queue->flushes;
	LWLockRelease(queue->lock);
}

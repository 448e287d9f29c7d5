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
 * Locking: the ring is protected by its own LWLock (the tranche's last),
 * which is taken after a partition lock and never before one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/json.h"

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

/* Messages were lost before reaching the queue: make listeners flush. */
void
SCNotifyOverflow(void)
{
	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->overflowed = true;
	queue->dropped++;
	LWLockRelease(queue->lock);
	queued_since_wake = true;
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
	if (overflowed)
		Async_Notify("sessioncache_invalidate", "{\"op\": \"flush\"}");
	for (i = 0; i < n; i++)
	{
		NotifyMessage *m = &batch[i];
		StringInfoData one;
		char	   *key = pnstrdup(m->key, m->keylen);

		initStringInfo(&one);
		if (m->op == SC_NOTIFY_VIEW)
		{
			appendStringInfoString(&one, "{\"cluster\": ");
			escape_json(&one, key);
			appendStringInfo(&one, ", \"view_id\": " INT64_FORMAT "}", m->version);
			Async_Notify("sessioncache_membership", one.data);
			continue;
		}
		if (m->op == SC_NOTIFY_FLUSH_CACHE)
		{
			/* the cache was dropped or redefined: drop all of it */
			appendStringInfoString(&one, "{\"cache\": ");
			escape_json(&one, key);
			appendStringInfoString(&one, ", \"op\": \"flush\"}");
			Async_Notify("sessioncache_invalidate", one.data);
			continue;
		}
		if (!SCCacheDefById(m->cache_id, &def))
			continue;			/* dropped meanwhile */
		appendStringInfoString(&one, "{\"cache\": ");
		escape_json(&one, def.name);
		appendStringInfoString(&one, ", \"key\": ");
		escape_json(&one, key);
		appendStringInfo(&one, ", \"op\": \"%s\", \"version\": " INT64_FORMAT "}",
						 op_names[m->op], m->version);
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

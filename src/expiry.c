/*-------------------------------------------------------------------------
 *
 * expiry.c
 *		The expiry worker's round.
 *
 * Memory: each partition's timing wheel (store.c, wheel.c) is advanced to
 * the current second, one tick per lock hold, so no lock is held long.
 * Reads never depend on the wheel: an expired entry is invisible the moment
 * it expires; the wheel only reclaims its memory and announces it.
 *
 * Rows of durable caches are deleted by the same round, through the
 * table's expires_at index, in small transactions: only rows whose copy in
 * memory is absent or expired too (a touch not yet written back keeps the
 * row), and never rows of a cache this worker's copy does not know.
 *
 * Announcing waits for room in the notify ring, but for at most
 * EXPIRY_NOTIFY_WAIT_MS per round: past that, messages are dropped and
 * listeners told to flush, so a stalled notify worker never stops expiry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/timestamp.h"

#include "caches.h"
#include "durable.h"
#include "engine.h"
#include "expiry.h"
#include "internal_sql.h"
#include "membership.h"
#include "notify.h"
#include "store.h"

#define DURABLE_BATCH			1000
#define WHEEL_REMOVED_MAX		8192	/* expiries reported per lock hold */
#define TICKS_PER_CALL			64
#define MAX_TICKS_PER_ROUND		(3600 * 24)
#define EXPIRY_NOTIFY_WAIT_MS	1000

/* Advance one partition's wheel; false when stopped by a shutdown. */
static bool
expiry_advance_partition(int partno, TimestampTz now, SCRemovedBuf *removed,
						 TimestampTz wait_until, int64 *count)
{
	int			ticks = 0;

	for (;;)
	{
		bool		done;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			return false;
		done = SCStoreAdvanceWheel(partno, now, SCCachesPolicy(), removed,
								   TICKS_PER_CALL);
		*count += removed->n;
		SCReportRemoved(removed, wait_until);
		ticks += TICKS_PER_CALL;
		if (done || ticks >= MAX_TICKS_PER_ROUND)
			return true;
	}
}

/*
 * Delete one batch of expired durable rows in its own transaction; count
 * and announce those deleted.  Returns the candidates looked at (0: none
 * left), or -1 when every candidate was kept.
 */
static int
expiry_durable_batch(MemoryContext round_cxt, TimestampTz wait_until,
					 int64 *count)
{
	SCDurableExpired *rows;
	SCDurableExpired *gone = NULL;
	int			n;
	int			keep = 0;
	int			ngone = 0;
	int			i;
	TimestampTz now;

	SCWorkerBeginTransaction();
	now = GetCurrentTimestamp();
	rows = SCDurableExpiredRows(DURABLE_BATCH, &n);
	for (i = 0; i < n; i++)
	{
		SCCacheDef	def;
		SCStoreRules rules;
		SCHash		hash;

		/* unknown here (created since the copy was made): keep it */
		if (!SCCacheDefById(rows[i].cache_id, &def))
			continue;
		SCCacheRules(&def, &rules);
		hash = SCStoreHashKey(def.id, rows[i].key, rows[i].keylen);
		if (SCStoreKeepIfLive(hash, def.id, rows[i].key, rows[i].keylen,
							  &rules, now))
			continue;
		rows[keep++] = rows[i];
	}
	if (keep > 0)
		gone = SCDurableDeleteRows(rows, keep, round_cxt, &ngone);
	SCWorkerCommit();

	/* committed: count and announce them */
	for (i = 0; i < ngone; i++)
	{
		SCCacheDef	def;

		SCStatAdd(gone[i].cache_id, SC_STAT_EXPIRED, 1);
		if (SCCacheDefById(gone[i].cache_id, &def) && def.notify)
			SCNotifyQueueWait(gone[i].cache_id, gone[i].key, gone[i].keylen,
							  SC_NOTIFY_EXPIRE, gone[i].version, wait_until);
	}
	SCNotifyWakeWorker();
	*count += ngone;
	if (n > 0 && ngone == 0)
		return -1;
	return n;
}

int64
SCExpiryRun(void)
{
	MemoryContext round_cxt = CurrentMemoryContext;
	SCRemovedBuf removed;
	TimestampTz now;
	TimestampTz wait_until;
	int64		count = 0;
	int			partno;
	int			batch;

	removed.n = 0;
	removed.cap = WHEEL_REMOVED_MAX;
	removed.items = palloc(sizeof(SCRemoved) * WHEEL_REMOVED_MAX);

	SCWorkerBeginTransaction();
	SCCachesEnsureLoaded();
	SCCachesRefresh();
	SCWorkerCommit();

	now = GetCurrentTimestamp();
	wait_until = TimestampTzPlusMilliseconds(now, EXPIRY_NOTIFY_WAIT_MS);
	if (SCCachesTakeReslot())
		SCStoreReslotAll(SCCachesPolicy());
	for (partno = 0; partno < SC_NUM_PARTITIONS; partno++)
		if (!expiry_advance_partition(partno, now, &removed, wait_until, &count))
			return count;

	do
	{
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			return count;
		batch = expiry_durable_batch(round_cxt, wait_until, &count);
		MemoryContextSwitchTo(round_cxt);
	} while (batch >= DURABLE_BATCH);

	count += SCMembershipReap();
	return count;
}

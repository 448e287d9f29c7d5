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
 * Rows of durable caches are deleted by the same round, in small
 * transactions, never rows of a cache this worker's copy does not know:
 * - the rows of the durable entries the wheels just expired, by key;
 * - schema 1.1: rows found expired by a sweep over the table in key order,
 *   SWEEP_ROWS per round, for rows with no copy in memory (evicted, or not
 *   yet pre-warmed); a row whose copy in memory is live stays (its touch is
 *   not written back yet);
 * - schema 1.0: candidates by the expires_at index, checked the same way.
 * Every delete checks the row's expiry again under its row lock and skips
 * rows a writer holds.
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
#include "settings.h"
#include "store.h"

#define DURABLE_BATCH			1000
#define WHEEL_REMOVED_MAX		8192	/* expiries reported per lock hold */
#define TICKS_PER_CALL			64
#define MAX_TICKS_PER_ROUND		(3600 * 24)
#define EXPIRY_NOTIFY_WAIT_MS	1000
#define SWEEP_ROWS				2000	/* rows the 1.1 sweep looks at per round */

/* durable entries the wheels expired: their rows go next */
typedef struct ExpiredKeys
{
	int			n;
	int			cap;
	int32	   *ids;
	char	  **keys;
	int		   *keylens;
} ExpiredKeys;

/* where the sweep goes on from (process memory: survives rounds) */
static int32 sweep_after_id = 0;
static char sweep_after_key[SC_KEY_MAX + 1] = "";

/* Keep the durable entries among what the wheel removed, for their rows. */
static void
expiry_keep_durable(SCRemovedBuf *removed, ExpiredKeys *ek)
{
	int			i;

	for (i = 0; i < removed->n; i++)
	{
		SCRemoved  *r = &removed->items[i];

		if (r->reason != SC_REMOVED_EXPIRED || !r->durable)
			continue;
		if (ek->n == ek->cap)
		{
			ek->cap *= 2;
			ek->ids = repalloc(ek->ids, sizeof(int32) * ek->cap);
			ek->keys = repalloc(ek->keys, sizeof(char *) * ek->cap);
			ek->keylens = repalloc(ek->keylens, sizeof(int) * ek->cap);
		}
		ek->ids[ek->n] = r->cache_id;
		ek->keys[ek->n] = pnstrdup(r->key, r->keylen);
		ek->keylens[ek->n] = r->keylen;
		ek->n++;
	}
}

/* Count and announce committed deletions of durable rows. */
static void
expiry_report_rows(SCDurableExpired *gone, int ngone, TimestampTz wait_until)
{
	int			i;

	for (i = 0; i < ngone; i++)
	{
		SCCacheDef	def;

		SCStatAdd(gone[i].cache_id, SC_STAT_EXPIRED, 1);
		if (SCCacheDefById(gone[i].cache_id, &def) && def.notify)
			SCNotifyQueueWait(gone[i].cache_id, gone[i].key, gone[i].keylen,
							  SC_NOTIFY_EXPIRE, gone[i].version, wait_until);
	}
	SCNotifyWakeWorker();
}

/* Delete the rows of the expired durable entries, DURABLE_BATCH a time. */
static bool
expiry_delete_keys(ExpiredKeys *ek, MemoryContext round_cxt,
				   TimestampTz wait_until, int64 *count)
{
	int			done;

	for (done = 0; done < ek->n; done += DURABLE_BATCH)
	{
		int			n = Min(DURABLE_BATCH, ek->n - done);
		SCDurableExpired *gone;
		int			ngone;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			return false;
		SCWorkerBeginTransaction();
		gone = SCDurableDeleteKeys(n, ek->ids + done, ek->keys + done,
								   ek->keylens + done, round_cxt, &ngone);
		SCWorkerCommit();
		expiry_report_rows(gone, ngone, wait_until);
		*count += ngone;
	}
	ek->n = 0;
	return true;
}

/*
 * Keep, of the expired rows, those to delete: of caches this worker knows,
 * whose copy in memory is not live (a live copy is marked for the
 * writeback instead).  Returns how many.
 */
static int
expiry_filter_rows(SCDurableExpired *rows, int n, TimestampTz now)
{
	int			keep = 0;
	int			i;

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
	return keep;
}

/*
 * Schema 1.1: one step of the sweep, in its own transaction.  Returns the
 * rows looked at (fewer than asked: the table's end, the sweep starts over).
 */
static int
expiry_sweep_step(int limit, MemoryContext round_cxt, TimestampTz wait_until,
				  int64 *count)
{
	SCDurableExpired *rows;
	SCDurableExpired *gone = NULL;
	int			nseen;
	int			nexpired;
	int			keep;
	int			ngone = 0;

	SCWorkerBeginTransaction();
	rows = SCDurableSweep(&sweep_after_id, sweep_after_key, limit, &nseen,
						  &nexpired);
	keep = expiry_filter_rows(rows, nexpired, GetCurrentTimestamp());
	if (keep > 0)
		gone = SCDurableDeleteRows(rows, keep, round_cxt, &ngone);
	SCWorkerCommit();
	expiry_report_rows(gone, ngone, wait_until);
	*count += ngone;
	if (nseen < limit)
	{
		sweep_after_id = 0;
		sweep_after_key[0] = '\0';
	}
	return nseen;
}

/* Advance one partition's wheel; false when stopped by a shutdown. */
static bool
expiry_advance_partition(int partno, TimestampTz now, SCRemovedBuf *removed,
						 ExpiredKeys *ek, TimestampTz wait_until, int64 *count)
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
		expiry_keep_durable(removed, ek);
		*count += removed->n;
		SCReportRemoved(removed, wait_until);
		ticks += TICKS_PER_CALL;
		if (done || ticks >= MAX_TICKS_PER_ROUND)
			return true;
	}
}

/*
 * Schema 1.0: delete one batch of expired rows found by the expires_at
 * index, in its own transaction.  Returns the candidates looked at (0: none
 * left), or -1 when every candidate was kept.
 */
static int
expiry_index_batch(MemoryContext round_cxt, TimestampTz wait_until,
				   int64 *count)
{
	SCDurableExpired *rows;
	SCDurableExpired *gone = NULL;
	int			n;
	int			keep;
	int			ngone = 0;

	SCWorkerBeginTransaction();
	rows = SCDurableExpiredRows(DURABLE_BATCH, &n);
	keep = expiry_filter_rows(rows, n, GetCurrentTimestamp());
	if (keep > 0)
		gone = SCDurableDeleteRows(rows, keep, round_cxt, &ngone);
	SCWorkerCommit();
	expiry_report_rows(gone, ngone, wait_until);
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
	ExpiredKeys ek;
	TimestampTz now;
	TimestampTz wait_until;
	int64		count = 0;
	int			partno;
	bool		v11;

	removed.n = 0;
	removed.cap = WHEEL_REMOVED_MAX;
	removed.items = palloc(sizeof(SCRemoved) * WHEEL_REMOVED_MAX);
	ek.n = 0;
	ek.cap = 1024;
	ek.ids = palloc(sizeof(int32) * ek.cap);
	ek.keys = palloc(sizeof(char *) * ek.cap);
	ek.keylens = palloc(sizeof(int) * ek.cap);

	SCWorkerBeginTransaction();
	SCCachesEnsureLoaded();
	SCCachesRefresh();
	v11 = SCDurableHasAccessSlots();
	SCWorkerCommit();

	now = GetCurrentTimestamp();
	wait_until = TimestampTzPlusMilliseconds(now, EXPIRY_NOTIFY_WAIT_MS);
	if (SCCachesTakeReslot())
		SCStoreReslotAll(SCCachesPolicy());
	for (partno = 0; partno < SC_NUM_PARTITIONS; partno++)
		if (!expiry_advance_partition(partno, now, &removed, &ek, wait_until,
									  &count))
			return count;
	if (!expiry_delete_keys(&ek, round_cxt, wait_until, &count))
		return count;

	if (v11)
	{
		int			seen = 0;
		int			step;

		do
		{
			CHECK_FOR_INTERRUPTS();
			if (ShutdownRequestPending)
				return count;
			step = expiry_sweep_step(DURABLE_BATCH, round_cxt, wait_until,
									 &count);
			MemoryContextSwitchTo(round_cxt);
			seen += step;
		} while (step == DURABLE_BATCH && seen < SWEEP_ROWS);
	}
	else
	{
		int			batch;

		do
		{
			CHECK_FOR_INTERRUPTS();
			if (ShutdownRequestPending)
				return count;
			batch = expiry_index_batch(round_cxt, wait_until, &count);
			MemoryContextSwitchTo(round_cxt);
		} while (batch >= DURABLE_BATCH);
	}

	count += SCMembershipReap();
	return count;
}

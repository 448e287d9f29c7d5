/*-------------------------------------------------------------------------
 *
 * writeback.c
 *		Write-behind of touched idle timers.
 *
 * touch() changes only shared memory and marks the entry dirty.  Every
 * sessioncache.flush_interval the writeback worker collects the dirty
 * entries of durable caches and writes their last_access (and expiry time)
 * to the table, one statement and one transaction per chunk: many touches
 * of one entry become one row update.  A crash loses at most the touches of
 * the last interval, so an idle timer can look older than it is by at most
 * that much, never younger.  Rows locked by a writer are skipped: that
 * writer stores a newer last_access itself.
 *
 * Schema 1.1 keeps idle timers out of the wide row: each durable entry
 * knows its row's slot in sessioncache.access (durable.c), and a chunk of
 * touches becomes one HOT update per block of 64 slots.
 *
 * Entries are collected by the store's batched iterator into a buffer
 * allocated before any lock is taken; nothing is allocated under a lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/timestamp.h"

#include "caches.h"
#include "durable.h"
#include "internal_sql.h"
#include "settings.h"
#include "store.h"
#include "writeback.h"

#define WRITEBACK_CHUNK		500		/* rows updated per transaction */

typedef struct DirtyBuf
{
	int			n;
	int32		ids[WRITEBACK_CHUNK];
	char		keybuf[WRITEBACK_CHUNK][SC_KEY_MAX];
	char	   *keys[WRITEBACK_CHUNK];
	int			keylens[WRITEBACK_CHUNK];
	TimestampTz las[WRITEBACK_CHUNK];
	TimestampTz exps[WRITEBACK_CHUNK];
	int64		slots[WRITEBACK_CHUNK];
} DirtyBuf;

/*
 * Visitor, under the partition lock: take a dirty entry of a known durable
 * cache into the buffer and clear its dirty bit.  Entries of a cache this
 * worker does not know stay dirty for a later round.
 */
static SCVisit
writeback_visit(SCEntry *e, void *arg)
{
	DirtyBuf   *buf = arg;
	SCStoreRules rules;
	int			i;

	if (!(e->flags & SC_ENTRY_DIRTY) ||
		!SCCachesPolicy()->rules(e->cache_id, &rules) || !rules.durable)
		return SC_VISIT_KEEP;
	i = buf->n++;
	e->flags &= ~SC_ENTRY_DIRTY;
	buf->ids[i] = e->cache_id;
	buf->keylens[i] = e->key_len;
	memcpy(buf->keybuf[i], SCEntryKey(e), e->key_len);
	buf->keys[i] = buf->keybuf[i];
	buf->las[i] = e->last_access;
	buf->exps[i] = SCStoreExpiry(&rules, e);
	buf->slots[i] = e->access_slot;
	return SC_VISIT_KEEP;
}

/* a touched slot, for grouping by block */
typedef struct SlotTouch
{
	int64		slot;
	TimestampTz la;
} SlotTouch;

static int
slot_touch_cmp(const void *a, const void *b)
{
	int64		x = ((const SlotTouch *) a)->slot;
	int64		y = ((const SlotTouch *) b)->slot;

	return x < y ? -1 : (x > y);
}

/*
 * Write the touched slots (schema 1.1): one row of sessioncache.access per
 * block of SC_ACCESS_SLOTS slots, -infinity where no slot of the block was
 * touched.  Returns the slots written.
 */
static int64
writeback_write_slots(SlotTouch *touches, int n)
{
	int64	   *blocks = palloc(sizeof(int64) * n);
	TimestampTz *las = palloc(sizeof(TimestampTz) * n * SC_ACCESS_SLOTS);
	int			nblocks = 0;
	int			i,
				j;

	qsort(touches, n, sizeof(SlotTouch), slot_touch_cmp);
	for (i = 0; i < n; i++)
	{
		int64		block = touches[i].slot / SC_ACCESS_SLOTS;
		TimestampTz *row;

		if (nblocks == 0 || blocks[nblocks - 1] != block)
		{
			blocks[nblocks] = block;
			row = las + (Size) nblocks * SC_ACCESS_SLOTS;
			for (j = 0; j < SC_ACCESS_SLOTS; j++)
				row[j] = DT_NOBEGIN;
			nblocks++;
		}
		row = las + (Size) (nblocks - 1) * SC_ACCESS_SLOTS;
		j = (int) (touches[i].slot % SC_ACCESS_SLOTS);
		row[j] = Max(row[j], touches[i].la);
	}
	(void) SCDurableWriteAccess(nblocks, blocks, las);
	return n;
}

/*
 * Write one chunk in a transaction of its own: idle timers of rows with a
 * slot go to sessioncache.access; rows without one (schema 1.0, or filled
 * before the update to 1.1) get their last_access and expires_at updated.
 */
static int64
writeback_flush(DirtyBuf *buf)
{
	SlotTouch  *touches = palloc(sizeof(SlotTouch) * Max(buf->n, 1));
	int			ntouches = 0;
	int			nrows = 0;
	int64		written = 0;
	int			i;

	if (buf->n == 0)
		return 0;
	SCWorkerBeginTransaction();
	if (SCDurableHasAccessSlots())
	{
		/* compact the rows without a slot to the front, the slots aside */
		for (i = 0; i < buf->n; i++)
		{
			if (buf->slots[i] > 0)
			{
				touches[ntouches].slot = buf->slots[i];
				touches[ntouches].la = buf->las[i];
				ntouches++;
				continue;
			}
			buf->ids[nrows] = buf->ids[i];
			buf->keys[nrows] = buf->keys[i];
			buf->keylens[nrows] = buf->keylens[i];
			buf->las[nrows] = buf->las[i];
			buf->exps[nrows] = buf->exps[i];
			nrows++;
		}
	}
	else
		nrows = buf->n;
	if (ntouches > 0)
		written += writeback_write_slots(touches, ntouches);
	if (nrows > 0)
		written += SCDurableWriteBack(nrows, buf->ids, buf->keys, buf->keylens,
									  buf->las, buf->exps);
	SCWorkerCommit();
	buf->n = 0;
	return written;
}

int64
SCWritebackRun(bool to_the_end)
{
	DirtyBuf   *buf = palloc0(sizeof(DirtyBuf));
	SCStoreCursor cur = SC_STORE_CURSOR_INIT;
	SCScanResult r;
	int64		written = 0;

	/* the definitions, loaded in a transaction; the copy outlives it */
	SCWorkerBeginTransaction();
	SCCachesEnsureLoaded();
	SCCachesRefresh();
	SCWorkerCommit();

	do
	{
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending && !to_the_end)
			break;
		r = SCStoreScan(&cur, LW_EXCLUSIVE, writeback_visit, buf,
						WRITEBACK_CHUNK - buf->n);
		if (r == SC_SCAN_ROOM || buf->n == WRITEBACK_CHUNK)
		{
			if (buf->n == 0)
			{
				/* a bucket longer than a chunk: cannot happen, do not loop */
				elog(LOG, "sessioncache writeback: a bucket holds %u entries",
					 cur.need);
				break;
			}
			written += writeback_flush(buf);
		}
	} while (r != SC_SCAN_DONE);
	written += writeback_flush(buf);
	return written;
}

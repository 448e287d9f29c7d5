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
		!SCCachesPolicy()->rules(e->cache_id, &rules) || !rules.evictable)
		return SC_VISIT_KEEP;
	i = buf->n++;
	e->flags &= ~SC_ENTRY_DIRTY;
	buf->ids[i] = e->cache_id;
	buf->keylens[i] = e->key_len;
	memcpy(buf->keybuf[i], SCEntryKey(e), e->key_len);
	buf->keys[i] = buf->keybuf[i];
	buf->las[i] = e->last_access;
	buf->exps[i] = SCStoreExpiry(&rules, e);
	return SC_VISIT_KEEP;
}

static int64
writeback_flush(DirtyBuf *buf)
{
	int64		written;

	if (buf->n == 0)
		return 0;
	SCWorkerBeginTransaction();
	written = SCDurableWriteBack(buf->n, buf->ids, buf->keys, buf->keylens,
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

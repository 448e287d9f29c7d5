/*-------------------------------------------------------------------------
 *
 * prewarm.c
 *		Loading durable entries into shared memory after a start.
 *
 * The prewarm worker installs the table's live rows in shared memory,
 * most recently used first, without evicting anything, until memory runs
 * out.  Reads are served (by lazy fills) from the first moment; pre-warm
 * only saves them the trip to the table.
 *
 * One statement reads the keys of the live rows in recency order into a
 * tuplestore that outlives its transaction (spilling to a temporary file
 * past work_mem): a snapshot is held only while the keys are read and
 * sorted.  Then each batch of keys is its own short transaction: its rows
 * are read with a fresh snapshot and installed under the same
 * write-generation guard as a fill, so pre-warm never installs a value
 * older than one already committed, holds back no vacuum while it
 * installs, and keeps no memory from one batch to the next.  An install
 * that lost the race with a write to its partition is tried once more at
 * the end, with the row read again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/tuptable.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "caches.h"
#include "clock.h"
#include "durable.h"
#include "internal_sql.h"
#include "prewarm.h"
#include "settings.h"
#include "store.h"

#define PREWARM_BATCH		1000
#define PREWARM_NO_ROOM_MAX	64	/* failed installs before "memory full" */

typedef struct PrewarmState
{
	int64		installed;
	int			no_room;
	/* keys whose install lost a race with a write: tried again at the end */
	MemoryContext cxt;			/* the round's: holds the retry list */
	int			nretry;
	int			retry_cap;
	int32	   *retry_ids;
	char	  **retry_keys;
} PrewarmState;

/* Remember a key to install again (memory of the round, outside the batch). */
static void
prewarm_retry_later(PrewarmState *ps, int32 id, const char *key, int keylen)
{
	if (ps->nretry == ps->retry_cap)
	{
		ps->retry_cap = Max(64, ps->retry_cap * 2);
		if (ps->retry_ids == NULL)
		{
			ps->retry_ids = MemoryContextAlloc(ps->cxt, sizeof(int32) * ps->retry_cap);
			ps->retry_keys = MemoryContextAlloc(ps->cxt, sizeof(char *) * ps->retry_cap);
		}
		else
		{
			ps->retry_ids = repalloc(ps->retry_ids, sizeof(int32) * ps->retry_cap);
			ps->retry_keys = repalloc(ps->retry_keys, sizeof(char *) * ps->retry_cap);
		}
	}
	ps->retry_ids[ps->nretry] = id;
	ps->retry_keys[ps->nretry] = MemoryContextAlloc(ps->cxt, keylen + 1);
	memcpy(ps->retry_keys[ps->nretry], key, keylen);
	ps->retry_keys[ps->nretry][keylen] = '\0';
	ps->nretry++;
}

/* Install the rows of one batch of keys, in a transaction of its own. */
static void
prewarm_batch(int32 *ids, char **keys, int nkeys, PrewarmState *ps,
			  bool retry)
{
	uint64		gens[SC_NUM_PARTITIONS];
	SCDurableRow *rows;
	int			nrows;
	int			i;
	TimestampTz now;
	SCRemovedBuf none = {0, 0, NULL};

	SCWorkerBeginTransaction();
	for (i = 0; i < SC_NUM_PARTITIONS; i++)
		gens[i] = SCStoreWriteGen(i);
	rows = SCDurableReadRows(ids, keys, nkeys, &nrows);
	SCCachesRefresh();
	now = GetCurrentTimestamp();
	for (i = 0; i < nrows && ps->no_room < PREWARM_NO_ROOM_MAX; i++)
	{
		SCDurableRow *row = &rows[i];
		SCCacheDef	def;
		SCHash		hash;

		if (!SCCacheDefById(row->cache_id, &def) ||
			SCExpiryOf(def.idle_us, def.max_us, &row->st.timeouts,
					   row->st.created_at, row->st.last_access) <= now)
			continue;
		SCAdvanceVersion(row->st.version);
		hash = SCStoreHashKey(def.id, row->key, row->keylen);
		switch (SCStoreInstallState(hash, def.id, row->key, row->keylen,
									&row->st, gens[hash.partno], false,
									SCCachesPolicy(), &none))
		{
			case SC_INSTALL_DONE:
				ps->installed++;
				SCStatAdd(def.id, SC_STAT_FILLS, 1);
				break;
			case SC_INSTALL_RACED:
				if (retry)
					prewarm_retry_later(ps, def.id, row->key, row->keylen);
				break;
			case SC_INSTALL_NO_ROOM:
				ps->no_room++;
				break;
			default:
				break;
		}
	}
	SCWorkerCommit();
}

int64
SCPrewarmRun(void)
{
	MemoryContext round_cxt = CurrentMemoryContext;
	MemoryContext batch_cxt;
	TimestampTz start = GetCurrentTimestamp();
	PrewarmState ps;
	Tuplestorestate *keys;
	TupleDesc	desc;
	TupleTableSlot *slot;
	bool		stopped = false;
	bool		more = true;

	memset(&ps, 0, sizeof(ps));
	ps.cxt = round_cxt;
	SCWorkerBeginTransaction();
	SCCachesEnsureLoaded();
	keys = SCDurableKeysByRecency(round_cxt, &desc);
	SCWorkerCommit();

	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	batch_cxt = AllocSetContextCreate(round_cxt, "sessioncache prewarm batch",
									  ALLOCSET_DEFAULT_SIZES);
	while (more && ps.no_room < PREWARM_NO_ROOM_MAX)
	{
		int32		ids[PREWARM_BATCH];
		char	   *bkeys[PREWARM_BATCH];
		int			n = 0;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
		{
			stopped = true;
			break;
		}
		/* the slot may own a tuple read into batch_cxt: free it first */
		ExecClearTuple(slot);
		MemoryContextReset(batch_cxt);
		old = MemoryContextSwitchTo(batch_cxt);
		while (n < PREWARM_BATCH &&
			   (more = tuplestore_gettupleslot(keys, true, false, slot)))
		{
			bool		isnull;

			ids[n] = DatumGetInt32(slot_getattr(slot, 1, &isnull));
			bkeys[n] = TextDatumGetCString(slot_getattr(slot, 2, &isnull));
			n++;
		}
		MemoryContextSwitchTo(old);
		if (n > 0)
			prewarm_batch(ids, bkeys, n, &ps, true);
	}

	/*
	 * Keys whose install lost a race with a write to their partition: read
	 * again with a fresh snapshot, once (a key written meanwhile is in
	 * memory already, or will be filled by its next read).
	 */
	if (!stopped && ps.no_room < PREWARM_NO_ROOM_MAX)
	{
		int			done;

		for (done = 0; done < ps.nretry && !ShutdownRequestPending; done += PREWARM_BATCH)
		{
			CHECK_FOR_INTERRUPTS();
			prewarm_batch(ps.retry_ids + done, ps.retry_keys + done,
						  Min(PREWARM_BATCH, ps.nretry - done), &ps, false);
		}
	}
	ExecClearTuple(slot);
	ExecDropSingleTupleTableSlot(slot);
	tuplestore_end(keys);
	ereport(LOG,
			(errmsg("sessioncache prewarm loaded " INT64_FORMAT " entries in %ld ms%s",
					ps.installed,
					(long) ((GetCurrentTimestamp() - start) / 1000),
					ps.no_room >= PREWARM_NO_ROOM_MAX ? " (memory full)" :
					stopped ? " (stopped)" : "")));
	return ps.installed;
}

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
 * installs, and keeps no memory from one batch to the next.
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
} PrewarmState;

/* Install the rows of one batch of keys, in a transaction of its own. */
static void
prewarm_batch(int32 *ids, char **keys, int nkeys, PrewarmState *ps)
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
		uint32		off;

		if (!SCCacheDefById(row->cache_id, &def) ||
			SCExpiryOf(def.idle_us, def.max_us, &row->st.timeouts,
					   row->st.created_at, row->st.last_access) <= now)
			continue;
		SCAdvanceVersion(row->st.version);
		hash = SCStoreHashKey(def.id, row->key, row->keylen);
		off = SCStoreAllocEntry(hash,
								SCStoreEntrySize(row->st.timeouts.idle_us ||
												 row->st.timeouts.max_us,
												 VARSIZE(row->st.value),
												 row->keylen, row->st.userlen),
								false, SCCachesPolicy(), &none);
		if (off == 0)
		{
			ps->no_room++;
			continue;
		}
		SCStoreFillEntry(hash, off, def.id, row->key, row->keylen,
						 row->st.value, row->st.user, row->st.userlen,
						 &row->st.timeouts, row->st.version,
						 row->st.access_slot, row->st.created_at,
						 row->st.last_access);
		if (SCStoreInstall(hash, off, gens[hash.partno], SCCachesPolicy()))
		{
			ps->installed++;
			SCStatAdd(def.id, SC_STAT_FILLS, 1);
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
	PrewarmState ps = {0, 0};
	Tuplestorestate *keys;
	TupleDesc	desc;
	TupleTableSlot *slot;
	bool		stopped = false;
	bool		more = true;

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
			prewarm_batch(ids, bkeys, n, &ps);
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

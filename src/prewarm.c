/*-------------------------------------------------------------------------
 *
 * prewarm.c
 *		Loading durable entries into shared memory after a start.
 *
 * The prewarm worker installs the table's live rows in shared memory
 * without evicting anything, until memory runs out.  Reads are served (by
 * lazy fills) from the first moment; pre-warm only saves them the trip to
 * the table.
 *
 * Recently used entries come first: the table is walked in three windows
 * of last_access (the last 5 minutes, the last hour, the rest), each in
 * primary-key order by keyset pagination.  Every batch is its own short
 * transaction: no snapshot stays open over the whole walk (it would hold
 * back vacuum on the busiest table) and no memory piles up.  Each batch's
 * rows are read with a fresh snapshot and installed under the same
 * write-generation guard as a fill, so pre-warm never installs a value
 * older than one already committed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/interrupt.h"
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
	int32		after_id;		/* keyset position: (0, '') is the start */
	char		after_key[SC_KEY_MAX + 1];
} PrewarmState;

/*
 * Install one batch of keys of a window.  Returns the keys read (0 when
 * the window is done).
 */
static int
prewarm_batch(TimestampTz from, TimestampTz to, PrewarmState *ps)
{
	int32		ids[PREWARM_BATCH];
	char	   *keys[PREWARM_BATCH];
	uint64		gens[SC_NUM_PARTITIONS];
	SCDurableRow *rows;
	int			nkeys;
	int			nrows;
	int			i;
	TimestampTz now;
	SCRemovedBuf none = {0, 0, NULL};

	SCWorkerBeginTransaction();
	nkeys = SCDurableKeysByAccess(from, to, ps->after_id, ps->after_key,
								  PREWARM_BATCH, ids, keys);
	if (nkeys > 0)
	{
		/* the keyset position outlives the transaction */
		ps->after_id = ids[nkeys - 1];
		strlcpy(ps->after_key, keys[nkeys - 1], sizeof(ps->after_key));
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
							 row->st.created_at, row->st.last_access);
			if (SCStoreInstall(hash, off, gens[hash.partno], SCCachesPolicy()))
				ps->installed++;
		}
	}
	SCWorkerCommit();
	return nkeys;
}

int64
SCPrewarmRun(void)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz bounds[4];
	PrewarmState ps;
	int			w;
	bool		stopped = false;

	memset(&ps, 0, sizeof(ps));
	bounds[0] = DT_NOEND;
	bounds[1] = start - 5 * USECS_PER_MINUTE;
	bounds[2] = start - USECS_PER_HOUR;
	bounds[3] = DT_NOBEGIN;

	SCWorkerBeginTransaction();
	SCCachesEnsureLoaded();
	SCWorkerCommit();

	for (w = 0; w < 3 && ps.no_room < PREWARM_NO_ROOM_MAX && !stopped; w++)
	{
		ps.after_id = 0;
		ps.after_key[0] = '\0';
		for (;;)
		{
			CHECK_FOR_INTERRUPTS();
			if (ShutdownRequestPending)
			{
				stopped = true;
				break;
			}
			if (prewarm_batch(bounds[w + 1], bounds[w], &ps) < PREWARM_BATCH ||
				ps.no_room >= PREWARM_NO_ROOM_MAX)
				break;
		}
	}
	ereport(LOG,
			(errmsg("sessioncache prewarm loaded " INT64_FORMAT " entries in %ld ms%s",
					ps.installed,
					(long) ((GetCurrentTimestamp() - start) / 1000),
					ps.no_room >= PREWARM_NO_ROOM_MAX ? " (memory full)" :
					stopped ? " (stopped)" : "")));
	return ps.installed;
}

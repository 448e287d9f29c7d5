/*-------------------------------------------------------------------------
 *
 * expiry.c
 *		The expiry wheel of each partition and the expiry worker's round.
 *
 * Each partition keeps its entries on a hierarchical timing wheel (Varghese
 * and Lauck): three levels of 256 slots, of 1 s, 256 s and 65536 s, so an
 * entry due within 4 minutes sits in its exact second, one due within 18
 * hours in its 256-second span, one due within 194 days in its 18-hour
 * span (later ones wait in the farthest slot and are re-slotted).  Inserting
 * and removing are O(1) (a doubly linked list per slot), a touch moves the
 * entry, and each tick of the worker visits one slot per level boundary: the
 * cost of a round is that of what expires plus the few entries cascading
 * down a level, never a scan of the table.  Redis samples, memcached crawls;
 * this visits only what is due.
 *
 * A round processes the seconds since the previous one, one slot per
 * partition lock hold, so no lock is held for long.  Reads never depend on
 * the wheel: an expired entry is invisible the moment it expires; the wheel
 * only reclaims its memory and announces it.
 *
 * Rows of durable caches are deleted by the same round, through the table's
 * expires_at index, in small transactions of its own: only rows whose copy
 * in shared memory is absent or expired too (a touch not yet written back
 * keeps the row).
 *
 * Locking: wheel lists belong to their partition and change under its lock
 * held exclusively, like the hash chains (see table.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/datum.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "sessioncache.h"

#define WHEEL_MASK			(SC_WHEEL_SLOTS - 1)
#define DURABLE_BATCH		1000
#define MAX_TICKS_PER_ROUND	(3600 * 24)

/* the second an expiry time falls due in, rounded up */
static int64
expiry_second(TimestampTz t)
{
	if (t == DT_NOEND || t > PG_INT64_MAX - USECS_PER_SEC)
		return PG_INT64_MAX / 2;
	if (t < 0)
		return 0;
	return (t + USECS_PER_SEC - 1) / USECS_PER_SEC;
}

/* the slot for an entry due at second 'due', seen from tick 'base' */
static uint16
wheel_slot_for(int64 base, int64 due)
{
	if (due - base < SC_WHEEL_SLOTS)
		return (uint16) ((Max(due, base)) & WHEEL_MASK);
	if ((due >> SC_WHEEL_BITS) - (base >> SC_WHEEL_BITS) < SC_WHEEL_SLOTS)
		return (uint16) (SC_WHEEL_SLOTS + ((due >> SC_WHEEL_BITS) & WHEEL_MASK));
	if ((due >> (2 * SC_WHEEL_BITS)) - (base >> (2 * SC_WHEEL_BITS)) < SC_WHEEL_SLOTS)
		return (uint16) (2 * SC_WHEEL_SLOTS + ((due >> (2 * SC_WHEEL_BITS)) & WHEEL_MASK));
	/* beyond the horizon: the farthest slot, re-slotted when reached */
	return (uint16) (2 * SC_WHEEL_SLOTS +
					 (((base >> (2 * SC_WHEEL_BITS)) + WHEEL_MASK) & WHEEL_MASK));
}

static void
wheel_push(SCPartition *part, char *base, uint32 off, uint16 slot)
{
	SCEntry    *e = SCEntryAt(base, off);
	uint32		head = part->wheel[slot];

	e->wheel_slot = slot;
	e->wheel_prev = 0;
	e->wheel_next = head;
	if (head != 0)
		SCEntryAt(base, head)->wheel_prev = off;
	part->wheel[slot] = off;
}

/*
 * Put a newly linked entry on the wheel at its expiry time.  Lock held
 * exclusive.
 */
void
SCWheelInsert(int partno, uint32 off, TimestampTz expires_at)
{
	SCPartition *part = &sc_shared->partitions[partno];

	wheel_push(part, SCRegion(partno), off,
			   wheel_slot_for(part->wheel_now + 1, expiry_second(expires_at)));
}

/* Take an entry off the wheel.  Lock held exclusive. */
void
SCWheelRemove(int partno, uint32 off)
{
	SCPartition *part = &sc_shared->partitions[partno];
	char	   *base = SCRegion(partno);
	SCEntry    *e = SCEntryAt(base, off);

	if (e->wheel_slot == SC_WHEEL_DETACHED)
		return;
	if (e->wheel_prev != 0)
		SCEntryAt(base, e->wheel_prev)->wheel_next = e->wheel_next;
	else
		part->wheel[e->wheel_slot] = e->wheel_next;
	if (e->wheel_next != 0)
		SCEntryAt(base, e->wheel_next)->wheel_prev = e->wheel_prev;
	e->wheel_next = e->wheel_prev = 0;
}

/* Move an entry whose expiry changed (a touch).  Lock held exclusive. */
void
SCWheelMove(int partno, uint32 off, TimestampTz expires_at)
{
	SCWheelRemove(partno, off);
	SCWheelInsert(partno, off, expires_at);
}

void
SCWheelInit(int partno, TimestampTz now)
{
	SCPartition *part = &sc_shared->partitions[partno];

	memset(part->wheel, 0, sizeof(part->wheel));
	part->wheel_now = expiry_second(now) - 1;
}

/* an expired memory-only entry to announce once the lock is released */
typedef struct Expired
{
	int32		cache_id;
	char		key[SC_KEY_MAX];
	uint8		keylen;
	int64		version;
} Expired;

/*
 * Process one slot: detach its list, remove what has expired, re-slot the
 * rest from tick 'base'.  Returns entries removed; appends memory-only ones
 * to 'gone' for notification.
 */
static int
wheel_process_slot(int partno, uint16 slot, int64 base_tick, TimestampTz now,
				   Expired *gone, int *ngone, int gone_max)
{
	SCPartition *part = &sc_shared->partitions[partno];
	char	   *base = SCRegion(partno);
	uint32		off = part->wheel[slot];
	int			removed = 0;

	part->wheel[slot] = 0;
	while (off != 0)
	{
		SCEntry    *e = SCEntryAt(base, off);
		uint32		next = e->wheel_next;
		SCCacheDef	def;
		bool		known = SCCacheDefById(e->cache_id, &def);
		TimestampTz exp = known ? SCExpiresAt(&def, e) : 0;

		e->wheel_next = e->wheel_prev = 0;
		if (exp <= now)
		{
			/* already off the wheel: SCTableRemove must not unlink it */
			e->wheel_slot = SC_WHEEL_DETACHED;
			/* durable entries are counted and announced with their rows */
			if (known && !def.durable)
			{
				SCStatAdd(e->cache_id, SC_STAT_EXPIRED, 1);
				if (!def.notify)
					;
				else if (*ngone < gone_max)
				{
					Expired    *x = &gone[(*ngone)++];

					x->cache_id = e->cache_id;
					x->keylen = e->key_len;
					memcpy(x->key, SCEntryKey(e), e->key_len);
					x->version = e->version;
				}
				else
					SCNotifyOverflow();
			}
			SCTableRemove(partno, off);
			removed++;
		}
		else
			wheel_push(part, base, off, wheel_slot_for(base_tick, expiry_second(exp)));
		off = next;
	}
	return removed;
}

/*
 * Advance one partition's wheel to the current second.  Each tick takes the
 * lock once: cascades from the upper levels at their boundaries, then the
 * second's own slot.
 */
static int64
wheel_advance(int partno, TimestampTz now, Expired *gone)
{
	SCPartition *part = &sc_shared->partitions[partno];
	int64		target = now / USECS_PER_SEC;
	int64		removed = 0;
	int			ticks = 0;

	for (;;)
	{
		int64		sec;
		int			ngone = 0;
		int			i;
		instr_time	held;

		LWLockAcquire(part->lock, LW_EXCLUSIVE);
		INSTR_TIME_SET_CURRENT(held);
		sec = part->wheel_now + 1;
		if (sec > target || ticks++ >= MAX_TICKS_PER_ROUND)
		{
			LWLockRelease(part->lock);
			break;
		}
		if ((sec & ((INT64CONST(1) << (2 * SC_WHEEL_BITS)) - 1)) == 0)
			removed += wheel_process_slot(partno,
										  2 * SC_WHEEL_SLOTS + ((sec >> (2 * SC_WHEEL_BITS)) & WHEEL_MASK),
										  sec, now, gone, &ngone, SC_WHEEL_GONE_MAX);
		if ((sec & WHEEL_MASK) == 0)
			removed += wheel_process_slot(partno,
										  SC_WHEEL_SLOTS + ((sec >> SC_WHEEL_BITS) & WHEEL_MASK),
										  sec, now, gone, &ngone, SC_WHEEL_GONE_MAX);
		removed += wheel_process_slot(partno, sec & WHEEL_MASK, sec + 1, now,
									  gone, &ngone, SC_WHEEL_GONE_MAX);
		part->wheel_now = sec;
		SCWorkerHoldDone(held);
		LWLockRelease(part->lock);

		for (i = 0; i < ngone; i++)
			SCNotifyQueueWait(gone[i].cache_id, gone[i].key, gone[i].keylen,
							  SC_NOTIFY_EXPIRE, gone[i].version);
		SCAfterApply();
	}
	return removed;
}

/*
 * After define_cache changed a cache's timeouts, entries may sit in slots
 * that are now too late: re-slot every entry once.
 */
static void
wheel_reslot_all(TimestampTz now)
{
	int			partno;

	for (partno = 0; partno < SC_NUM_PARTITIONS; partno++)
	{
		SCPartition *part = &sc_shared->partitions[partno];
		char	   *base = SCRegion(partno);
		uint32		b = 0;

		while (b < sc_shared->nbuckets)
		{
			uint32		end = Min(b + 256, sc_shared->nbuckets);
			instr_time	held;

			LWLockAcquire(part->lock, LW_EXCLUSIVE);
			INSTR_TIME_SET_CURRENT(held);
			for (; b < end; b++)
			{
				uint32		off;

				for (off = SCTableBucket(partno, b); off != 0;
					 off = SCEntryAt(base, off)->next)
				{
					SCEntry    *e = SCEntryAt(base, off);
					SCCacheDef	def;

					if (SCCacheDefById(e->cache_id, &def))
						SCWheelMove(partno, off, SCExpiresAt(&def, e));
				}
			}
			SCWorkerHoldDone(held);
			LWLockRelease(part->lock);
		}
	}
}

/*
 * Is the shared copy of this key live (present and not expired)?  When it
 * is, its row only looks expired because a touch has not been written back
 * yet: mark it for the writeback worker so the row catches up.  An expired
 * copy is removed.
 */
static bool
expiry_copy_is_live(int32 cache_id, const char *key, int keylen,
					TimestampTz now)
{
	SCHash		hash = SCHashKey(cache_id, key, keylen);
	SCPartition *part = &sc_shared->partitions[hash.partno];
	SCCacheDef	def;
	uint32		off;
	bool		live = false;

	if (!SCCacheDefById(cache_id, &def))
		return false;
	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	off = SCTableLookup(hash.partno, (uint32) hash.h, cache_id, key, keylen);
	if (off != 0)
	{
		SCEntry    *e = SCEntryAt(SCRegion(hash.partno), off);

		live = SCExpiresAt(&def, e) > now;
		if (live)
			e->flags |= SC_ENTRY_DIRTY;
		else
		{
			/*
			 * Its row is about to go: take the expired copy away now, so
			 * that a later define_cache with longer timeouts cannot bring
			 * it back without its row.
			 */
			SCTableRemove(hash.partno, off);
		}
	}
	LWLockRelease(part->lock);
	return live;
}

/*
 * Delete one batch of expired rows of durable caches: read candidates by
 * the expires_at index, keep those whose shared copy is not live, delete
 * them while re-checking expiry (a row touched meanwhile stays), skipping
 * rows a writer holds.  Only the rows deleted are returned for counting and
 * announcing.  Returns the number of candidates looked at.
 */
static int64
expiry_durable_batch(TimestampTz now, MemoryContext out_cxt,
					 Expired **gone_out, int *ngone)
{
	SCSpiState	spi;
	int			ret;
	uint64		i;
	uint64		n;
	Datum	   *tids;
	int			ntids = 0;
	Expired    *gone;
	Oid			types[1] = {TIDARRAYOID};
	Datum		values[1];

	*ngone = 0;
	SCSpiBegin(&spi);
	ret = SPI_execute("SELECT ctid, cache_id, key FROM sessioncache.durable_entries"
					  " WHERE expires_at <= now() ORDER BY expires_at"
					  " LIMIT " CppAsString2(DURABLE_BATCH),
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not scan sessioncache.durable_entries: %s",
			 SPI_result_code_string(ret));
	n = SPI_processed;
	if (n == 0)
	{
		SCSpiEnd(&spi);
		return 0;
	}
	tids = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int32		cache_id = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		text	   *key = DatumGetTextPP(SPI_getbinval(tup, desc, 3, &isnull));

		if (expiry_copy_is_live(cache_id, VARDATA_ANY(key),
								VARSIZE_ANY_EXHDR(key), now))
			continue;
		tids[ntids++] = datumCopy(SPI_getbinval(tup, desc, 1, &isnull), false, 6);
	}
	if (ntids > 0)
	{
		values[0] = PointerGetDatum(construct_array(tids, ntids, TIDOID, 6, false, TYPALIGN_SHORT));
		ret = SPI_execute_with_args("DELETE FROM sessioncache.durable_entries"
									" WHERE ctid IN (SELECT ctid FROM sessioncache.durable_entries"
									"                WHERE ctid = ANY($1) AND expires_at <= now()"
									"                FOR UPDATE SKIP LOCKED)"
									" RETURNING cache_id, key, version",
									1, types, values, NULL, false, 0);
		if (ret != SPI_OK_DELETE_RETURNING)
			elog(ERROR, "could not delete expired rows: %s", SPI_result_code_string(ret));
		/* outlives SPI and the transaction: the caller reads it after */
		gone = MemoryContextAlloc(out_cxt, sizeof(Expired) * Max(SPI_processed, 1));
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			text	   *key = DatumGetTextPP(SPI_getbinval(tup, desc, 2, &isnull));

			gone[i].cache_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
			gone[i].keylen = (uint8) VARSIZE_ANY_EXHDR(key);
			memcpy(gone[i].key, VARDATA_ANY(key), gone[i].keylen);
			gone[i].version = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		}
		*gone_out = gone;
		*ngone = (int) SPI_processed;
	}
	SCSpiEnd(&spi);
	return (int64) n;
}

/*
 * One round of the expiry worker: advance every wheel to now, then delete
 * expired rows of durable caches in batches, each in its own transaction.
 * Returns the entries and rows removed.
 */
int64
SCExpiryRun(void)
{
	MemoryContext round_cxt = CurrentMemoryContext;
	Expired    *gone = palloc(sizeof(Expired) * SC_WHEEL_GONE_MAX);
	TimestampTz now;
	int64		removed = 0;
	int			partno;
	int64		batch;

	SCWorkerBeginTransaction();
	SCCachesEnsureLoaded();
	SCCachesRefresh();
	SCWorkerCommit();

	now = GetCurrentTimestamp();
	if (SCCachesTakeReslot())
		wheel_reslot_all(now);
	for (partno = 0; partno < SC_NUM_PARTITIONS; partno++)
		removed += wheel_advance(partno, now, gone);

	do
	{
		Expired    *rows = NULL;
		int			nrows = 0;
		int			i;

		SCWorkerBeginTransaction();
		batch = expiry_durable_batch(now, round_cxt, &rows, &nrows);
		SCWorkerCommit();
		/* a full batch of live copies: wait for their rows to catch up */
		if (nrows == 0)
			break;
		/* committed: count and announce them */
		for (i = 0; i < nrows; i++)
		{
			SCStatAdd(rows[i].cache_id, SC_STAT_EXPIRED, 1);
			SCNotifyQueueWait(rows[i].cache_id, rows[i].key, rows[i].keylen,
							  SC_NOTIFY_EXPIRE, rows[i].version);
		}
		SCAfterApply();
		removed += nrows;
	} while (batch >= DURABLE_BATCH);

	removed += SCMembershipReap();
	return removed;
}

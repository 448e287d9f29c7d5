/*-------------------------------------------------------------------------
 *
 * table.c
 *		The partitioned hash table of entries and its per-user index.
 *
 * Locking rules (the only place they are written down):
 *
 * - The table is split into SC_NUM_PARTITIONS partitions by the hash of
 *   (cache id, key).  Each partition has its own LWLock, its own region of
 *   shared memory (key buckets, user buckets, an arena heap) and its own
 *   entry count.  Nothing in one partition points into another.
 * - A lookup takes its partition's lock shared; it may set the entry's
 *   CLOCK bit ("referenced") while holding it shared, a one-byte store that
 *   races only with other stores of 1 and with the sweep's clear, which holds
 *   the lock exclusively.
 * - Linking, unlinking, allocating and freeing need the lock exclusive.
 * - At most one partition lock is held at a time, and none is held while
 *   acquiring the cache-definition lock or a heavyweight lock.
 * - Entries are copied out under the lock; Datums are built and errors
 *   raised after it is released.
 *
 * Each partition also chains its entries by hash of (cache id, user id), so
 * that one user's entries are found by visiting one bucket per partition:
 * the cost of user_entries and delete_user is that of the user's entries,
 * not of the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "port/pg_bitutils.h"
#include "utils/timestamp.h"

#include "sessioncache.h"

/* expected mean size of an entry, used to size the bucket arrays */
#define SC_EXPECTED_ENTRY_BYTES		512

static inline uint32 *
table_buckets(char *base)
{
	return (uint32 *) base;
}

static inline uint32 *
table_user_buckets(char *base)
{
	return (uint32 *) base + sc_shared->nbuckets;
}

static inline uint32
table_bucket_of(uint32 hash)
{
	/* the low bits choose the partition; use the others */
	return (hash >> 5) & (sc_shared->nbuckets - 1);
}

static inline uint32
table_user_bucket_of(uint32 hash)
{
	return (hash >> 5) & (sc_shared->nuser_buckets - 1);
}

SCHash
SCHashKey(int32 cache_id, const char *key, int keylen)
{
	SCHash		r;

	r.h = hash_bytes_extended((const unsigned char *) key, keylen,
							  (uint64) (uint32) cache_id);
	r.partno = (uint32) r.h & (SC_NUM_PARTITIONS - 1);
	return r;
}

SCHash
SCHashUser(int32 cache_id, const char *user, int userlen)
{
	SCHash		r;

	r.h = hash_bytes_extended((const unsigned char *) user, userlen,
							  UINT64CONST(0x5c0000000) + (uint32) cache_id);
	r.partno = (uint32) r.h & (SC_NUM_PARTITIONS - 1);
	return r;
}

/*
 * Bucket counts and the size of one partition's region follow from
 * sessioncache.memory; computed before shared memory exists.
 */
Size
SCTableRegionSize(void)
{
	return TYPEALIGN_DOWN(64, SCMemoryBytes() / SC_NUM_PARTITIONS);
}

/*
 * The largest entry: a quarter of a partition's heap, so that one entry
 * never has to evict a whole partition and size classes always leave room.
 */
Size
SCTableMaxEntrySize(void)
{
	SCArena    *arena = &sc_shared->partitions[0].arena;

	return (arena->heap_end - arena->heap_start) / 4;
}

static uint32
table_bucket_count(Size region)
{
	Size		expected = region / SC_EXPECTED_ENTRY_BYTES;

	return (uint32) pg_nextpower2_32((uint32) Max(expected, 64));
}

void
SCTableInitPartition(int partno)
{
	SCPartition *part = &sc_shared->partitions[partno];
	char	   *base = SCRegion(partno);
	Size		buckets_bytes;

	if (partno == 0)
	{
		sc_shared->nbuckets = table_bucket_count(sc_shared->region_size);
		sc_shared->nuser_buckets = Max(sc_shared->nbuckets / 4, 64);
	}
	buckets_bytes = (Size) (sc_shared->nbuckets + sc_shared->nuser_buckets) *
		sizeof(uint32);
	memset(base, 0, buckets_bytes);
	part->nentries = 0;
	part->clock_hand = 0;
	part->write_gen = 0;
	SCWheelInit(partno, GetCurrentTimestamp());
	SCArenaInit(&part->arena, base, (uint32) buckets_bytes,
				(uint32) sc_shared->region_size);
}

/*
 * Find the linked entry for (cache id, key).  Caller holds the partition
 * lock, shared or exclusive.  Returns its offset or 0.
 */
uint32
SCTableLookup(int partno, uint32 hash, int32 cache_id,
			  const char *key, int keylen)
{
	char	   *base = SCRegion(partno);
	uint32		off = table_buckets(base)[table_bucket_of(hash)];

	while (off != 0)
	{
		SCEntry    *e = SCEntryAt(base, off);

		if (e->hash == hash && e->cache_id == cache_id &&
			e->key_len == keylen && memcmp(SCEntryKey(e), key, keylen) == 0)
			return off;
		off = e->next;
	}
	return 0;
}

/*
 * Link a filled-in entry block into the table and onto the expiry wheel.
 * Lock held exclusive.
 */
void
SCTableLink(int partno, uint32 off, TimestampTz expires_at)
{
	char	   *base = SCRegion(partno);
	SCEntry    *e = SCEntryAt(base, off);
	uint32	   *bucket = &table_buckets(base)[table_bucket_of(e->hash)];

	Assert(!(e->flags & SC_ENTRY_LINKED));
	e->next = *bucket;
	*bucket = off;
	if (e->flags & SC_ENTRY_HAS_USER)
	{
		uint32	   *ubucket =
		&table_user_buckets(base)[table_user_bucket_of(e->user_hash)];

		e->user_next = *ubucket;
		*ubucket = off;
	}
	e->flags |= SC_ENTRY_LINKED;
	e->referenced = 1;
	SCWheelInsert(partno, off, expires_at);
	sc_shared->partitions[partno].nentries++;
	SCStatAdd(e->cache_id, SC_STAT_ENTRIES, 1);
	SCStatAdd(e->cache_id, SC_STAT_BYTES, SCArenaBlockSize(base, off));
}

static void
table_chain_remove(uint32 *head, char *base, uint32 off, bool user_chain)
{
	uint32	   *link = head;

	while (*link != 0)
	{
		SCEntry    *cur = SCEntryAt(base, *link);

		if (*link == off)
		{
			*link = user_chain ? cur->user_next : cur->next;
			return;
		}
		link = user_chain ? &cur->user_next : &cur->next;
	}
	elog(PANIC, "sessioncache: entry %u missing from its chain", off);
}

/* Unlink an entry from the table without freeing it.  Lock exclusive. */
void
SCTableUnlink(int partno, uint32 off)
{
	char	   *base = SCRegion(partno);
	SCEntry    *e = SCEntryAt(base, off);

	Assert(e->flags & SC_ENTRY_LINKED);
	table_chain_remove(&table_buckets(base)[table_bucket_of(e->hash)],
					   base, off, false);
	if (e->flags & SC_ENTRY_HAS_USER)
		table_chain_remove(&table_user_buckets(base)[table_user_bucket_of(e->user_hash)],
						   base, off, true);
	SCWheelRemove(partno, off);
	e->flags &= ~(SC_ENTRY_LINKED | SC_ENTRY_DIRTY);
	sc_shared->partitions[partno].nentries--;
	SCStatAdd(e->cache_id, SC_STAT_ENTRIES, -1);
	SCStatAdd(e->cache_id, SC_STAT_BYTES, -(int64) SCArenaBlockSize(base, off));
}

/* Unlink (if linked) and free an entry.  Lock exclusive. */
void
SCTableRemove(int partno, uint32 off)
{
	char	   *base = SCRegion(partno);

	if (SCEntryAt(base, off)->flags & SC_ENTRY_LINKED)
		SCTableUnlink(partno, off);
	SCArenaFree(&sc_shared->partitions[partno].arena, base, off);
}

/* First entry of key bucket b, for full scans.  Lock held. */
uint32
SCTableBucket(int partno, uint32 b)
{
	return table_buckets(SCRegion(partno))[b];
}

/*
 * First entry of the user bucket that (cache id, user) falls in; callers
 * follow user_next and compare.  Lock held.
 */
uint32
SCTableUserChain(int partno, uint32 user_hash)
{
	return table_user_buckets(SCRegion(partno))[table_user_bucket_of(user_hash)];
}

/* does this linked entry belong to (cache id, user)? */
bool
SCEntryIsUsers(SCEntry *e, int32 cache_id, uint32 user_hash,
			   const char *user, int userlen)
{
	return (e->flags & SC_ENTRY_HAS_USER) && e->user_hash == user_hash &&
		e->cache_id == cache_id && e->user_len == userlen &&
		memcmp(SCEntryUser(e), user, userlen) == 0;
}

/*
 * One step of the CLOCK sweep over a partition: visit the next bucket and
 * reclaim what can go.  Expired entries of any cache go; live entries of
 * durable caches go when their CLOCK bit is clear and they have no unwritten
 * touch, since they can be filled again from the table.  Entries of
 * memory-only caches are never evicted.  Returns the number of entries
 * removed.  Lock exclusive.
 */
static int
table_sweep_bucket(int partno, TimestampTz now)
{
	SCPartition *part = &sc_shared->partitions[partno];
	char	   *base = SCRegion(partno);
	uint32		bucket = part->clock_hand;
	uint32		off = table_buckets(base)[bucket];
	int			removed = 0;

	part->clock_hand = (bucket + 1) & (sc_shared->nbuckets - 1);
	while (off != 0)
	{
		SCEntry    *e = SCEntryAt(base, off);
		uint32		next = e->next;
		SCCacheDef	def;
		bool		known = SCCacheDefById(e->cache_id, &def);

		if (!known || SCExpiresAt(&def, e) <= now)
		{
			/* durable ones are counted and announced with their rows */
			if (known && !def.durable)
			{
				SCStatAdd(e->cache_id, SC_STAT_EXPIRED, 1);
				SCNotifyQueue(e->cache_id, SCEntryKey(e), e->key_len,
							  SC_NOTIFY_EXPIRE, e->version);
			}
			SCTableRemove(partno, off);
			removed++;
		}
		else if (def.durable && !(e->flags & SC_ENTRY_DIRTY))
		{
			/* the row stays: what the API returns does not change */
			if (e->referenced)
				e->referenced = 0;
			else
			{
				SCStatAdd(e->cache_id, SC_STAT_EVICTED, 1);
				SCTableRemove(partno, off);
				removed++;
			}
		}
		off = next;
	}
	return removed;
}

/*
 * Allocate an entry block of nbytes in a partition, reclaiming expired and
 * evictable entries when the arena is full.  The sweep gives up after two
 * full turns of the clock (every CLOCK bit has been cleared once by then).
 * Returns 0 when nothing more can be reclaimed.  Lock exclusive.
 */
uint32
SCTableAllocEntry(int partno, Size nbytes)
{
	SCPartition *part = &sc_shared->partitions[partno];
	char	   *base = SCRegion(partno);
	uint32		off;
	uint64		steps;
	TimestampTz now = 0;

	off = SCArenaAlloc(&part->arena, base, nbytes);
	if (off != 0)
		return off;

	for (steps = 0; steps < 2 * (uint64) sc_shared->nbuckets; steps++)
	{
		if (now == 0)
			now = GetCurrentTimestamp();
		if (table_sweep_bucket(partno, now) > 0)
		{
			off = SCArenaAlloc(&part->arena, base, nbytes);
			if (off != 0)
				return off;
		}
	}
	return 0;
}

/*
 * Remove every entry of a dropped cache, a batch of buckets at a time so
 * that readers of other caches are not held up.  Runs at commit; cannot
 * fail.
 */
void
SCTableRemoveCache(int32 cache_id)
{
	int			partno;

	for (partno = 0; partno < SC_NUM_PARTITIONS; partno++)
	{
		SCPartition *part = &sc_shared->partitions[partno];
		char	   *base = SCRegion(partno);
		uint32		b = 0;

		while (b < sc_shared->nbuckets)
		{
			uint32		end = Min(b + 1024, sc_shared->nbuckets);

			LWLockAcquire(part->lock, LW_EXCLUSIVE);
			for (; b < end; b++)
			{
				uint32		off = table_buckets(base)[b];

				while (off != 0)
				{
					uint32		next = SCEntryAt(base, off)->next;

					if (SCEntryAt(base, off)->cache_id == cache_id)
						SCTableRemove(partno, off);
					off = next;
				}
			}
			LWLockRelease(part->lock);
		}
	}
}

/* Copy out the live entries of a partition (no values), for the view. */
List *
SCTableCopyPartition(int partno, TimestampTz now)
{
	SCPartition *part = &sc_shared->partitions[partno];
	char	   *base = SCRegion(partno);
	List	   *rows = NIL;
	uint32		b;

	LWLockAcquire(part->lock, LW_SHARED);
	for (b = 0; b < sc_shared->nbuckets; b++)
	{
		uint32		off;

		for (off = table_buckets(base)[b]; off != 0; off = SCEntryAt(base, off)->next)
		{
			SCEntry    *e = SCEntryAt(base, off);
			SCCacheDef	def;
			SCEntryCopy *c;

			if (!SCCacheDefById(e->cache_id, &def) || SCExpiresAt(&def, e) <= now)
				continue;
			c = palloc0(sizeof(SCEntryCopy));
			c->cache = pstrdup(def.name);
			c->key = pnstrdup(SCEntryKey(e), e->key_len);
			c->user = (e->flags & SC_ENTRY_HAS_USER) ?
				pnstrdup(SCEntryUser(e), e->user_len) : NULL;
			c->created_at = e->created_at;
			c->last_access = e->last_access;
			c->expires_at = SCExpiresAt(&def, e);
			c->version = e->version;
			c->durable = def.durable;
			rows = lappend(rows, c);
		}
	}
	LWLockRelease(part->lock);
	return rows;
}

/*
 * Check a partition: its heap, that every chained entry is linked, in the
 * right bucket and partition, and that the counts add up.
 */
bool
SCTableCheckPartition(int partno)
{
	SCPartition *part = &sc_shared->partitions[partno];
	char	   *base = SCRegion(partno);
	uint32		nentries = 0;
	uint32		nusers = 0;
	uint32		nuser_chained = 0;
	uint32		b;
	bool		ok;

	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	ok = SCArenaCheck(&part->arena, base);
	for (b = 0; ok && b < sc_shared->nbuckets; b++)
	{
		uint32		off;

		for (off = table_buckets(base)[b]; off != 0; off = SCEntryAt(base, off)->next)
		{
			SCEntry    *e = SCEntryAt(base, off);

			if (!(e->flags & SC_ENTRY_LINKED) || table_bucket_of(e->hash) != b ||
				(e->hash & (SC_NUM_PARTITIONS - 1)) != (uint32) partno ||
				++nentries > part->nentries)
			{
				ok = false;
				break;
			}
			if (e->flags & SC_ENTRY_HAS_USER)
				nusers++;
		}
	}
	for (b = 0; ok && b < sc_shared->nuser_buckets; b++)
	{
		uint32		off;

		for (off = table_user_buckets(base)[b]; off != 0; off = SCEntryAt(base, off)->user_next)
		{
			SCEntry    *e = SCEntryAt(base, off);

			if (!(e->flags & SC_ENTRY_HAS_USER) || !(e->flags & SC_ENTRY_LINKED) ||
				table_user_bucket_of(e->user_hash) != b || ++nuser_chained > nusers)
			{
				ok = false;
				break;
			}
		}
	}
	ok = ok && nentries == part->nentries && nusers == nuser_chained;
	LWLockRelease(part->lock);
	return ok;
}

/*-------------------------------------------------------------------------
 *
 * store.c
 *		The shared-memory store (see store.h for its contract and its
 *		locking rules).
 *
 * Each partition owns a region: key buckets, user buckets, then the arena's
 * heap.  An entry is chained in its key bucket and, when it has a user, in
 * that user's bucket, so that one user's entries are found by visiting one
 * bucket per partition: the cost of user_entries and delete_user is that of
 * the user's entries, not of the table.  Every linked entry is also on its
 * partition's timing wheel (wheel.c) at its expiry time.
 *
 * Eviction is a CLOCK sweep over the key buckets: readers set an entry's
 * bit, the sweep clears it and evicts entries whose bit is already clear.
 * Only evictable entries (durable caches: their row stays) go, and never
 * one with an unwritten touch.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "port/pg_bitutils.h"
#include "portability/instr_time.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "arena.h"
#include "settings.h"
#include "store.h"
#include "wheel.h"

/* offsets in a region are uint32 */
StaticAssertDecl((uint64) SC_MEMORY_MAX_KB * 1024 / SC_NUM_PARTITIONS <= PG_UINT32_MAX,
				 "a partition's region must be addressable by uint32 offsets");
StaticAssertDecl(SC_KEY_MAX <= 255 && SC_USER_MAX <= 255,
				 "key and user lengths are stored in one byte");

/* expected mean size of an entry, used to size the bucket arrays */
#define EXPECTED_ENTRY_BYTES	512

typedef struct StorePartition
{
	SCWheel		wheel;
	uint32		nentries;
	uint32		clock_hand;		/* next bucket the eviction sweep visits */
	uint64		write_gen;		/* bumped by every applied put and delete */
	SCArena		arena;
} StorePartition;

typedef struct StoreShared
{
	uint32		nbuckets;		/* key buckets per partition, power of two */
	uint32		nuser_buckets;	/* user buckets per partition, power of two */
	Size		region_size;	/* bytes of each partition's region */
	Size		regions_offset; /* offset of the first region from this struct */
	StorePartition partitions[SC_NUM_PARTITIONS];
} StoreShared;

static StoreShared *store = NULL;
static LWLock *part_lock[SC_NUM_PARTITIONS];

/* longest exclusive batch hold since SCStoreTakeMaxHoldUs */
static uint64 max_hold_us = 0;

static inline char *
region(int partno)
{
	return (char *) store + store->regions_offset +
		(Size) partno * store->region_size;
}

static inline uint32 *
key_buckets(char *base)
{
	return (uint32 *) base;
}

static inline uint32 *
user_buckets(char *base)
{
	return (uint32 *) base + store->nbuckets;
}

static inline uint32
key_bucket_of(uint32 hash)
{
	/* the low bits choose the partition; use the others */
	return (hash >> 5) & (store->nbuckets - 1);
}

static inline uint32
user_bucket_of(uint32 hash)
{
	return (hash >> 5) & (store->nuser_buckets - 1);
}

static void
hold_begin(instr_time *start)
{
	INSTR_TIME_SET_CURRENT(*start);
}

static void
hold_end(instr_time start)
{
	instr_time	now;
	uint64		us;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	us = INSTR_TIME_GET_MICROSEC(now);
	if (us > max_hold_us)
		max_hold_us = us;
}

uint64
SCStoreTakeMaxHoldUs(void)
{
	uint64		r = max_hold_us;

	max_hold_us = 0;
	return r;
}

/* ---------------------------------------------------------------- set-up */

static Size
store_region_size(Size memory_bytes)
{
	return TYPEALIGN_DOWN(64, memory_bytes / SC_NUM_PARTITIONS);
}

static Size
store_header_size(void)
{
	return TYPEALIGN(PG_CACHE_LINE_SIZE, sizeof(StoreShared));
}

Size
SCStoreShmemSize(Size memory_bytes)
{
	return add_size(store_header_size() + PG_CACHE_LINE_SIZE,
					mul_size(store_region_size(memory_bytes), SC_NUM_PARTITIONS));
}

static void
store_init_partition(int partno)
{
	StorePartition *part = &store->partitions[partno];
	char	   *base = region(partno);
	Size		buckets_bytes;

	buckets_bytes = (Size) (store->nbuckets + store->nuser_buckets) * sizeof(uint32);
	memset(base, 0, buckets_bytes);
	part->nentries = 0;
	part->clock_hand = 0;
	part->write_gen = 0;
	SCWheelInit(&part->wheel, GetCurrentTimestamp());
	SCArenaInit(&part->arena, base, (uint32) buckets_bytes,
				(uint32) store->region_size);
}

void
SCStoreShmemInit(Size memory_bytes, LWLockPadded *locks)
{
	bool		found;
	int			i;

	store = ShmemInitStruct("sessioncache store", SCStoreShmemSize(memory_bytes),
							&found);
	if (!found)
	{
		Size		expected;

		store->region_size = store_region_size(memory_bytes);
		store->regions_offset = store_header_size();
		expected = store->region_size / EXPECTED_ENTRY_BYTES;
		store->nbuckets = pg_nextpower2_32((uint32) Max(expected, 64));
		store->nuser_buckets = Max(store->nbuckets / 4, 64);
		for (i = 0; i < SC_NUM_PARTITIONS; i++)
			store_init_partition(i);
	}
	for (i = 0; i < SC_NUM_PARTITIONS; i++)
		part_lock[i] = &locks[i].lock;
}

/* ---------------------------------------------------------------- helpers */

SCHash
SCStoreHashKey(int32 cache_id, const char *key, int keylen)
{
	SCHash		r;

	r.h = hash_bytes_extended((const unsigned char *) key, keylen,
							  (uint64) (uint32) cache_id);
	r.partno = (uint32) r.h & (SC_NUM_PARTITIONS - 1);
	return r;
}

SCHash
SCStoreHashUser(int32 cache_id, const char *user, int userlen)
{
	SCHash		r;

	r.h = hash_bytes_extended((const unsigned char *) user, userlen,
							  UINT64CONST(0x5c0000000) + (uint32) cache_id);
	r.partno = (uint32) r.h & (SC_NUM_PARTITIONS - 1);
	return r;
}

Size
SCStoreMaxEntrySize(void)
{
	SCArena    *arena = &store->partitions[0].arena;

	return (arena->heap_end - arena->heap_start) / 4;
}

Size
SCStoreEntrySize(bool has_timeouts, Size value_len, int keylen, int userlen)
{
	return sizeof(SCEntry) + (has_timeouts ? sizeof(SCEntryTimeouts) : 0) +
		value_len + keylen + userlen;
}

TimestampTz
SCStoreExpiry(const SCStoreRules *rules, SCEntry *e)
{
	return SCExpiryOf(rules->idle_us, rules->max_us, SCEntryGetTimeouts(e),
					  e->created_at, e->last_access);
}

/* the linked entry for (cache id, key), or 0.  Lock held. */
static uint32
store_lookup(int partno, uint32 hash, int32 cache_id, const char *key,
			 int keylen)
{
	char	   *base = region(partno);
	uint32		off = key_buckets(base)[key_bucket_of(hash)];

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
 * Link a filled block into the table and onto the wheel.  Entries of a
 * cache the policy does not know are put on the wheel a level-1 span ahead
 * and looked at again then.  Lock exclusive.
 */
static void
store_link(int partno, uint32 off, const SCStorePolicy *policy)
{
	StorePartition *part = &store->partitions[partno];
	char	   *base = region(partno);
	SCEntry    *e = SCEntryAt(base, off);
	uint32	   *bucket = &key_buckets(base)[key_bucket_of(e->hash)];
	SCStoreRules rules;

	Assert(!(e->flags & SC_ENTRY_LINKED));
	e->next = *bucket;
	*bucket = off;
	if (e->flags & SC_ENTRY_HAS_USER)
	{
		uint32	   *ubucket = &user_buckets(base)[user_bucket_of(e->user_hash)];

		e->user_next = *ubucket;
		*ubucket = off;
	}
	e->flags |= SC_ENTRY_LINKED;
	e->referenced = 1;
	e->wheel_slot = SC_WHEEL_DETACHED;
	if (policy->rules(e->cache_id, &rules))
		SCWheelInsert(&part->wheel, base, off, SCStoreExpiry(&rules, e));
	else
		SCWheelInsert(&part->wheel, base, off,
					  (part->wheel.now + SC_WHEEL_SLOTS - 1) * USECS_PER_SEC);
	part->nentries++;
}

static void
store_chain_remove(uint32 *head, char *base, uint32 off, bool user_chain)
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

/* Unlink (if linked) and free an entry.  Lock exclusive. */
static void
store_remove(int partno, uint32 off)
{
	StorePartition *part = &store->partitions[partno];
	char	   *base = region(partno);
	SCEntry    *e = SCEntryAt(base, off);

	if (e->flags & SC_ENTRY_LINKED)
	{
		store_chain_remove(&key_buckets(base)[key_bucket_of(e->hash)],
						   base, off, false);
		if (e->flags & SC_ENTRY_HAS_USER)
			store_chain_remove(&user_buckets(base)[user_bucket_of(e->user_hash)],
							   base, off, true);
		SCWheelRemove(&part->wheel, base, off);
		e->flags &= ~(SC_ENTRY_LINKED | SC_ENTRY_DIRTY);
		part->nentries--;
	}
	SCArenaFree(&part->arena, base, off);
}

/* record a removal in the caller's buffer (room checked by the caller) */
static void
store_report(SCRemovedBuf *removed, SCEntry *e, SCRemovedReason reason,
			 const SCStoreRules *rules)
{
	SCRemoved  *r = &removed->items[removed->n++];

	r->cache_id = e->cache_id;
	r->reason = (uint8) reason;
	r->durable = rules->durable;
	r->notify = rules->notify;
	r->version = e->version;
	r->keylen = e->key_len;
	memcpy(r->key, SCEntryKey(e), e->key_len);
}

/* ---------------------------------------------------------------- reads */

static void
store_copy_state(SCEntry *e, const SCStoreRules *rules, bool want_value,
				 SCEntryState *st)
{
	SCEntryTimeouts *t = SCEntryGetTimeouts(e);

	st->version = e->version;
	st->access_slot = e->access_slot;
	st->created_at = e->created_at;
	st->last_access = e->last_access;
	st->expires_at = SCStoreExpiry(rules, e);
	if (t != NULL)
		st->timeouts = *t;
	else
		memset(&st->timeouts, 0, sizeof(SCEntryTimeouts));
	st->userlen = e->user_len;
	st->user = (e->flags & SC_ENTRY_HAS_USER) ?
		pnstrdup(SCEntryUser(e), e->user_len) : NULL;
	st->value = NULL;
	if (want_value)
	{
		st->value = palloc(e->value_len);
		memcpy(st->value, SCEntryValue(e), e->value_len);
	}
}

bool
SCStoreRead(SCHash hash, int32 cache_id, const char *key, int keylen,
			const SCStoreRules *rules, TimestampTz now, bool want_value,
			SCEntryState *st, uint64 *write_gen)
{
	LWLock	   *lock = part_lock[hash.partno];
	uint32		off;
	bool		found = false;

	LWLockAcquire(lock, LW_SHARED);
	off = store_lookup(hash.partno, (uint32) hash.h, cache_id, key, keylen);
	if (off != 0)
	{
		SCEntry    *e = SCEntryAt(region(hash.partno), off);

		if (SCStoreExpiry(rules, e) > now)
		{
			store_copy_state(e, rules, want_value, st);
			e->referenced = 1;
			found = true;
		}
	}
	*write_gen = store->partitions[hash.partno].write_gen;
	LWLockRelease(lock);
	return found;
}

void
SCStoreReadOwn(int partno, uint32 off, const SCStoreRules *rules,
			   bool want_value, SCEntryState *st)
{
	store_copy_state(SCEntryAt(region(partno), off), rules, want_value, st);
}

uint64
SCStoreWriteGen(int partno)
{
	uint64		gen;

	LWLockAcquire(part_lock[partno], LW_SHARED);
	gen = store->partitions[partno].write_gen;
	LWLockRelease(part_lock[partno]);
	return gen;
}

SCKeyRef *
SCStoreUserKeys(int32 cache_id, const char *user, int userlen, int *nkeys)
{
	SCHash		uh = SCStoreHashUser(cache_id, user, userlen);
	uint32		user_hash = (uint32) uh.h;
	int			cap = 16;
	int			n = 0;
	int			partno;
	SCKeyRef   *keys = palloc(cap * sizeof(SCKeyRef));

	for (partno = 0; partno < SC_NUM_PARTITIONS; partno++)
	{
		char	   *base = region(partno);
		uint32		off;

		LWLockAcquire(part_lock[partno], LW_SHARED);
		for (off = user_buckets(base)[user_bucket_of(user_hash)]; off != 0;
			 off = SCEntryAt(base, off)->user_next)
		{
			SCEntry    *e = SCEntryAt(base, off);

			if (!(e->flags & SC_ENTRY_HAS_USER) || e->user_hash != user_hash ||
				e->cache_id != cache_id || e->user_len != userlen ||
				memcmp(SCEntryUser(e), user, userlen) != 0)
				continue;
			if (n == cap)
			{
				cap *= 2;
				keys = repalloc(keys, cap * sizeof(SCKeyRef));
			}
			keys[n].key = pnstrdup(SCEntryKey(e), e->key_len);
			keys[n].keylen = e->key_len;
			n++;
		}
		LWLockRelease(part_lock[partno]);
	}
	*nkeys = n;
	return keys;
}

/* ---------------------------------------------------------------- eviction */

typedef struct EvictState
{
	const SCStorePolicy *policy;
	TimestampTz now;
	SCRemovedBuf *removed;
} EvictState;

/*
 * One CLOCK step on an entry: expired entries of known caches go; live
 * entries of durable caches go when their bit is clear and they have no
 * unwritten touch; everything else stays.  What goes is reported.
 */
static SCVisit
evict_visit(SCEntry *e, void *arg)
{
	EvictState *es = arg;
	SCStoreRules rules;

	if (!es->policy->rules(e->cache_id, &rules))
		return SC_VISIT_KEEP;
	if (SCStoreExpiry(&rules, e) <= es->now)
	{
		store_report(es->removed, e, SC_REMOVED_EXPIRED, &rules);
		return SC_VISIT_REMOVE;
	}
	if (!rules.durable || (e->flags & SC_ENTRY_DIRTY))
		return SC_VISIT_KEEP;
	if (e->referenced)
	{
		e->referenced = 0;
		return SC_VISIT_KEEP;
	}
	store_report(es->removed, e, SC_REMOVED_EVICTED, &rules);
	return SC_VISIT_REMOVE;
}

/*
 * Visit the entries of one bucket.  Returns how many were removed.  Lock
 * held in the mode the visitor needs.
 */
static int
store_visit_bucket(int partno, uint32 b, SCStoreVisitor visit, void *arg)
{
	char	   *base = region(partno);
	uint32		off = key_buckets(base)[b];
	int			removed = 0;

	while (off != 0)
	{
		uint32		next = SCEntryAt(base, off)->next;

		if (visit(SCEntryAt(base, off), arg) == SC_VISIT_REMOVE)
		{
			store_remove(partno, off);
			removed++;
		}
		off = next;
	}
	return removed;
}

/* entries in one bucket */
static uint32
store_bucket_length(int partno, uint32 b)
{
	char	   *base = region(partno);
	uint32		n = 0;
	uint32		off;

	for (off = key_buckets(base)[b]; off != 0; off = SCEntryAt(base, off)->next)
		n++;
	return n;
}

uint32
SCStoreAllocEntry(SCHash hash, Size nbytes, bool may_evict,
				  const SCStorePolicy *policy, SCRemovedBuf *removed)
{
	StorePartition *part = &store->partitions[hash.partno];
	char	   *base = region(hash.partno);
	uint32		off;
	EvictState	es;

	LWLockAcquire(part_lock[hash.partno], LW_EXCLUSIVE);
	off = SCArenaAlloc(&part->arena, base, nbytes);
	if (off == 0 && may_evict)
	{
		uint32		looked = 0;
		uint64		buckets = 0;

		es.policy = policy;
		es.now = GetCurrentTimestamp();
		es.removed = removed;
		while (looked < SC_STORE_EVICT_ENTRIES &&
			   buckets++ < 2 * (uint64) store->nbuckets)
		{
			uint32		b = part->clock_hand;
			uint32		len = store_bucket_length(hash.partno, b);

			if (removed->n + (int) len > removed->cap)
				break;			/* no room to report more: fail fast */
			part->clock_hand = (b + 1) & (store->nbuckets - 1);
			looked += len;
			if (len > 0 && store_visit_bucket(hash.partno, b, evict_visit, &es) > 0)
			{
				off = SCArenaAlloc(&part->arena, base, nbytes);
				if (off != 0)
					break;
			}
		}
	}
	LWLockRelease(part_lock[hash.partno]);
	return off;
}

/* ---------------------------------------------------------------- writes */

void
SCStoreFillEntry(SCHash hash, uint32 off, int32 cache_id,
				 const char *key, int keylen, const struct varlena *value,
				 const char *user, int userlen,
				 const SCEntryTimeouts *timeouts, int64 version,
				 int64 access_slot, TimestampTz created_at,
				 TimestampTz last_access)
{
	SCEntry    *e = SCEntryAt(region(hash.partno), off);
	bool		has_timeouts = timeouts != NULL &&
		(timeouts->idle_us != 0 || timeouts->max_us != 0);

	memset(e, 0, sizeof(SCEntry));
	e->hash = (uint32) hash.h;
	e->cache_id = cache_id;
	e->value_len = VARSIZE(value);
	e->key_len = (uint8) keylen;
	e->version = version;
	e->access_slot = access_slot;
	e->created_at = created_at;
	e->last_access = last_access;
	e->wheel_slot = SC_WHEEL_DETACHED;
	if (has_timeouts)
	{
		e->flags |= SC_ENTRY_HAS_TIMEOUTS;
		*SCEntryGetTimeouts(e) = *timeouts;
	}
	if (user != NULL)
	{
		e->flags |= SC_ENTRY_HAS_USER;
		e->user_len = (uint8) userlen;
		e->user_hash = (uint32) SCStoreHashUser(cache_id, user, userlen).h;
	}
	memcpy(SCEntryValue(e), value, VARSIZE(value));
	memcpy(SCEntryKey(e), key, keylen);
	if (user != NULL)
		memcpy(SCEntryUser(e), user, userlen);
}

void
SCStoreFreeEntry(int partno, uint32 off)
{
	LWLockAcquire(part_lock[partno], LW_EXCLUSIVE);
	SCArenaFree(&store->partitions[partno].arena, region(partno), off);
	LWLockRelease(part_lock[partno]);
}

/* Link a filled block unless the install is no longer right; else free it. */
static SCInstallResult
store_install(SCHash hash, uint32 off, uint64 write_gen,
			  const SCStorePolicy *policy)
{
	StorePartition *part = &store->partitions[hash.partno];
	SCEntry    *e = SCEntryAt(region(hash.partno), off);
	SCInstallResult result;

	LWLockAcquire(part_lock[hash.partno], LW_EXCLUSIVE);
	if (!policy->live(e->cache_id))
		result = SC_INSTALL_GONE;
	else if (store_lookup(hash.partno, (uint32) hash.h, e->cache_id,
						  SCEntryKey(e), e->key_len) != 0)
		result = SC_INSTALL_PRESENT;
	else if (part->write_gen != write_gen)
		result = SC_INSTALL_RACED;
	else
	{
		store_link(hash.partno, off, policy);
		result = SC_INSTALL_DONE;
	}
	if (result != SC_INSTALL_DONE)
		SCArenaFree(&part->arena, region(hash.partno), off);
	LWLockRelease(part_lock[hash.partno]);
	return result;
}

SCInstallResult
SCStoreInstallState(SCHash hash, int32 cache_id, const char *key, int keylen,
					const SCEntryState *st, uint64 write_gen, bool may_evict,
					const SCStorePolicy *policy, SCRemovedBuf *removed)
{
	bool		has_timeouts = st->timeouts.idle_us != 0 || st->timeouts.max_us != 0;
	Size		nbytes = SCStoreEntrySize(has_timeouts, VARSIZE(st->value), keylen,
										  st->userlen);
	uint32		off;

	if (nbytes > SCStoreMaxEntrySize())
		return SC_INSTALL_NO_ROOM;
	off = SCStoreAllocEntry(hash, nbytes, may_evict, policy, removed);
	if (off == 0)
		return SC_INSTALL_NO_ROOM;
	SCStoreFillEntry(hash, off, cache_id, key, keylen, st->value, st->user,
					 st->userlen, &st->timeouts, st->version, st->access_slot,
					 st->created_at, st->last_access);
	return store_install(hash, off, write_gen, policy);
}

bool
SCStoreApplyPut(SCHash hash, int32 cache_id, const char *key, int keylen,
				uint32 staged, const SCStorePolicy *policy)
{
	StorePartition *part = &store->partitions[hash.partno];
	uint32		old;
	bool		live;

	LWLockAcquire(part_lock[hash.partno], LW_EXCLUSIVE);
	live = policy->live(cache_id);
	part->write_gen++;			/* fills that raced this write are dropped */
	old = store_lookup(hash.partno, (uint32) hash.h, cache_id, key, keylen);
	if (old != 0)
		store_remove(hash.partno, old);
	if (staged != 0)
	{
		if (live)
			store_link(hash.partno, staged, policy);
		else
			SCArenaFree(&part->arena, region(hash.partno), staged);
	}
	LWLockRelease(part_lock[hash.partno]);
	return live;
}

bool
SCStoreApplyDelete(SCHash hash, int32 cache_id, const char *key, int keylen,
				   const SCStorePolicy *policy)
{
	StorePartition *part = &store->partitions[hash.partno];
	uint32		old;
	bool		live;

	LWLockAcquire(part_lock[hash.partno], LW_EXCLUSIVE);
	live = policy->live(cache_id);
	part->write_gen++;
	old = store_lookup(hash.partno, (uint32) hash.h, cache_id, key, keylen);
	if (old != 0)
		store_remove(hash.partno, old);
	LWLockRelease(part_lock[hash.partno]);
	return live;
}

bool
SCStoreApplyTouch(SCHash hash, int32 cache_id, const char *key, int keylen,
				  const SCStoreRules *rules, TimestampTz now, bool mark_dirty)
{
	StorePartition *part = &store->partitions[hash.partno];
	char	   *base = region(hash.partno);
	uint32		off;
	bool		touched = false;

	LWLockAcquire(part_lock[hash.partno], LW_EXCLUSIVE);
	off = store_lookup(hash.partno, (uint32) hash.h, cache_id, key, keylen);
	/* an entry that expired meanwhile stays expired */
	if (off != 0 && SCStoreExpiry(rules, SCEntryAt(base, off)) > now)
	{
		SCEntry    *e = SCEntryAt(base, off);

		e->last_access = Max(e->last_access, now);
		if (mark_dirty)
			e->flags |= SC_ENTRY_DIRTY;
		SCWheelMove(&part->wheel, base, off, SCStoreExpiry(rules, e));
		touched = true;
	}
	LWLockRelease(part_lock[hash.partno]);
	return touched;
}

bool
SCStoreKeepIfLive(SCHash hash, int32 cache_id, const char *key, int keylen,
				  const SCStoreRules *rules, TimestampTz now)
{
	uint32		off;
	bool		live = false;

	LWLockAcquire(part_lock[hash.partno], LW_EXCLUSIVE);
	off = store_lookup(hash.partno, (uint32) hash.h, cache_id, key, keylen);
	if (off != 0)
	{
		SCEntry    *e = SCEntryAt(region(hash.partno), off);

		live = SCStoreExpiry(rules, e) > now;
		if (live)
			e->flags |= SC_ENTRY_DIRTY;
		else
		{
			/*
			 * Its row is about to go: take the expired copy away now, so
			 * that a later define_cache with longer timeouts cannot bring it
			 * back without its row.
			 */
			store_remove(hash.partno, off);
		}
	}
	LWLockRelease(part_lock[hash.partno]);
	return live;
}

/* ---------------------------------------------------------------- batches */

SCScanResult
SCStoreScan(SCStoreCursor *cur, LWLockMode mode, SCStoreVisitor visit,
			void *arg, int room)
{
	uint32		end;
	uint32		visited = 0;
	instr_time	held;

	if (cur->partno >= SC_NUM_PARTITIONS)
		return SC_SCAN_DONE;
	end = Min(cur->bucket + SC_STORE_SCAN_BUCKETS, store->nbuckets);
	LWLockAcquire(part_lock[cur->partno], mode);
	hold_begin(&held);
	while (cur->bucket < end)
	{
		if (room >= 0)
		{
			uint32		len = store_bucket_length(cur->partno, cur->bucket);

			if (visited + len > (uint32) room)
			{
				if (visited == 0)
				{
					/* this bucket alone needs more room than there is */
					cur->need = len;
					if (mode == LW_EXCLUSIVE)
						hold_end(held);
					LWLockRelease(part_lock[cur->partno]);
					return SC_SCAN_ROOM;
				}
				break;
			}
			visited += len;
		}
		(void) store_visit_bucket(cur->partno, cur->bucket, visit, arg);
		cur->bucket++;
	}
	if (mode == LW_EXCLUSIVE)
		hold_end(held);
	LWLockRelease(part_lock[cur->partno]);
	if (cur->bucket >= store->nbuckets)
	{
		cur->partno++;
		cur->bucket = 0;
	}
	return cur->partno >= SC_NUM_PARTITIONS ? SC_SCAN_DONE : SC_SCAN_MORE;
}

typedef struct WheelTick
{
	const SCStorePolicy *policy;
	TimestampTz now;
	SCRemovedBuf *removed;
} WheelTick;

/*
 * Process the slots of tick 'sec' until they are empty or 'removed' is
 * full.  Returns true when the tick is complete.  Lock exclusive.
 */
static bool
wheel_tick(int partno, int64 sec, WheelTick *wt)
{
	StorePartition *part = &store->partitions[partno];
	char	   *base = region(partno);
	uint16		slots[SC_WHEEL_LEVELS];
	int			nslots = SCWheelSlotsOfTick(sec, slots);
	int			i;

	for (i = 0; i < nslots; i++)
	{
		/* the second's own slot re-slots from the next tick on */
		int64		base_tick = (i == nslots - 1) ? sec + 1 : sec;
		uint32		off;

		while (part->wheel.slots[slots[i]] != 0)
		{
			SCEntry    *e;
			SCStoreRules rules;

			if (wt->removed->n >= wt->removed->cap)
				return false;
			off = SCWheelPop(&part->wheel, base, slots[i]);
			e = SCEntryAt(base, off);
			if (!wt->policy->rules(e->cache_id, &rules))
			{
				/* unknown here: keep, and look again a level-1 span later */
				SCWheelInsertFrom(&part->wheel, base, off, base_tick,
								  (base_tick + SC_WHEEL_SLOTS - 1) * USECS_PER_SEC);
				continue;
			}
			if (SCStoreExpiry(&rules, e) <= wt->now)
			{
				store_report(wt->removed, e, SC_REMOVED_EXPIRED, &rules);
				store_remove(partno, off);
			}
			else
				SCWheelInsertFrom(&part->wheel, base, off, base_tick,
								  SCStoreExpiry(&rules, e));
		}
	}
	return true;
}

bool
SCStoreAdvanceWheel(int partno, TimestampTz now, const SCStorePolicy *policy,
					SCRemovedBuf *removed, int max_ticks)
{
	StorePartition *part = &store->partitions[partno];
	int64		target = now / USECS_PER_SEC;
	WheelTick	wt;
	int			ticks;

	wt.policy = policy;
	wt.now = now;
	wt.removed = removed;
	for (ticks = 0; ticks < max_ticks; ticks++)
	{
		instr_time	held;
		bool		complete;
		int64		sec;

		LWLockAcquire(part_lock[partno], LW_EXCLUSIVE);
		hold_begin(&held);
		sec = part->wheel.now + 1;
		if (sec > target)
		{
			hold_end(held);
			LWLockRelease(part_lock[partno]);
			return true;
		}
		complete = wheel_tick(partno, sec, &wt);
		if (complete)
			part->wheel.now = sec;
		hold_end(held);
		LWLockRelease(part_lock[partno]);
		if (!complete)
			return false;		/* the caller empties 'removed' first */
	}
	return part->wheel.now >= target;
}

typedef struct ReslotState
{
	const SCStorePolicy *policy;
	int			partno;
} ReslotState;

static SCVisit
reslot_visit(SCEntry *e, void *arg)
{
	ReslotState *rs = arg;
	SCStoreRules rules;
	StorePartition *part = &store->partitions[rs->partno];
	char	   *base = region(rs->partno);

	if (rs->policy->rules(e->cache_id, &rules))
		SCWheelMove(&part->wheel, base, (uint32) ((char *) e - base),
					SCStoreExpiry(&rules, e));
	return SC_VISIT_KEEP;
}

void
SCStoreReslotAll(const SCStorePolicy *policy)
{
	SCStoreCursor cur = SC_STORE_CURSOR_INIT;
	ReslotState rs;

	rs.policy = policy;
	do
		rs.partno = cur.partno;
	while (SCStoreScan(&cur, LW_EXCLUSIVE, reslot_visit, &rs, -1) == SC_SCAN_MORE);
}

static SCVisit
remove_cache_visit(SCEntry *e, void *arg)
{
	int32		cache_id = *(int32 *) arg;

	return (cache_id == 0 || e->cache_id == cache_id) ?
		SC_VISIT_REMOVE : SC_VISIT_KEEP;
}

void
SCStoreRemoveCache(int32 cache_id)
{
	SCStoreCursor cur = SC_STORE_CURSOR_INIT;

	Assert(cache_id != 0);
	while (SCStoreScan(&cur, LW_EXCLUSIVE, remove_cache_visit, &cache_id, -1) == SC_SCAN_MORE)
		;
}

void
SCStoreRemoveAll(void)
{
	SCStoreCursor cur = SC_STORE_CURSOR_INIT;
	int32		all = 0;

	while (SCStoreScan(&cur, LW_EXCLUSIVE, remove_cache_visit, &all, -1) == SC_SCAN_MORE)
		;
}

/* ---------------------------------------------------------------- monitoring */

void
SCStorePartitionStats(int partno, SCPartitionStats *out)
{
	StorePartition *part = &store->partitions[partno];

	LWLockAcquire(part_lock[partno], LW_SHARED);
	out->heap_bytes = part->arena.heap_end - part->arena.heap_start;
	out->used_bytes = part->arena.used_bytes;
	out->largest_free = SCArenaLargestFree(&part->arena, region(partno));
	out->nentries = part->nentries;
	out->region_bytes = store->region_size;
	LWLockRelease(part_lock[partno]);
}

bool
SCStoreCheckPartition(int partno)
{
	StorePartition *part = &store->partitions[partno];
	char	   *base = region(partno);
	uint32		nentries = 0;
	uint32		nusers = 0;
	uint32		nuser_chained = 0;
	uint32		b;
	bool		ok;

	LWLockAcquire(part_lock[partno], LW_EXCLUSIVE);
	ok = SCArenaCheck(&part->arena, base);
	for (b = 0; ok && b < store->nbuckets; b++)
	{
		uint32		off;

		for (off = key_buckets(base)[b]; off != 0; off = SCEntryAt(base, off)->next)
		{
			SCEntry    *e = SCEntryAt(base, off);

			if (!(e->flags & SC_ENTRY_LINKED) || key_bucket_of(e->hash) != b ||
				(e->hash & (SC_NUM_PARTITIONS - 1)) != (uint32) partno ||
				e->wheel_slot == SC_WHEEL_DETACHED ||
				++nentries > part->nentries)
			{
				ok = false;
				break;
			}
			if (e->flags & SC_ENTRY_HAS_USER)
				nusers++;
		}
	}
	for (b = 0; ok && b < store->nuser_buckets; b++)
	{
		uint32		off;

		for (off = user_buckets(base)[b]; off != 0; off = SCEntryAt(base, off)->user_next)
		{
			SCEntry    *e = SCEntryAt(base, off);

			if (!(e->flags & SC_ENTRY_HAS_USER) || !(e->flags & SC_ENTRY_LINKED) ||
				user_bucket_of(e->user_hash) != b || ++nuser_chained > nusers)
			{
				ok = false;
				break;
			}
		}
	}
	ok = ok && nentries == part->nentries && nusers == nuser_chained;
	LWLockRelease(part_lock[partno]);
	return ok;
}

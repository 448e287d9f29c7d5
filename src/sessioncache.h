/*-------------------------------------------------------------------------
 *
 * sessioncache.h
 *		Declarations shared by the files of the sessioncache extension.
 *
 * The extension keeps named caches of jsonb entries in shared memory.  The
 * files split the work by concern:
 *
 *	sessioncache.c	_PG_init, settings, shared memory set-up
 *	arena.c			the bounded-time allocator inside each partition
 *	table.c			the partitioned hash table of entries and its user index
 *	caches.c		named cache definitions (shared copy of the catalog table)
 *	xact.c			writes staged per transaction, applied at commit
 *	engine.c		the entry operations (put, get, touch, ...)
 *	durable.c		write-through to the durable table, fills and write-behind
 *	expiry.c		expiry worker and the expiry-ordered index
 *	notify.c		invalidation queue and its sender worker
 *	membership.c	cluster membership with leases
 *	workers.c		background worker registration and bookkeeping
 *	sql_api.c		SQL-callable functions: argument checks and conversions
 *	views.c			monitoring functions behind the views
 *
 *-------------------------------------------------------------------------
 */
#ifndef SESSIONCACHE_H
#define SESSIONCACHE_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "portability/instr_time.h"
#include "storage/lwlock.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "utils/jsonb.h"
#include "datatype/timestamp.h"
#include "utils/timestamp.h"

/* ---------- limits ---------- */

#define SC_NUM_PARTITIONS		32	/* power of two */
#define SC_MAX_CACHES			64
#define SC_CACHE_NAME_MAX		63	/* bytes, without the terminator */
#define SC_KEY_MAX				255
#define SC_USER_MAX				255

/* ---------- settings (sessioncache.c) ---------- */

extern int	sc_memory_kb;
extern char *sc_database;
extern int	sc_max_value_size;
extern int	sc_expiry_interval_ms;
extern int	sc_flush_interval_ms;
extern bool sc_prewarm;

/* ---------- the allocator (arena.c) ---------- */

/*
 * Free blocks are kept in segregated lists: exact 16-byte classes below
 * 1 kB, then eight classes per power of two.  A bitmap of non-empty lists
 * makes both allocation and free O(1).
 */
#define SC_ARENA_NBINS			240
#define SC_ARENA_BITMAP_WORDS	((SC_ARENA_NBINS + 63) / 64)

typedef struct SCArena
{
	uint32		heap_start;		/* offset of the first block in the region */
	uint32		heap_end;		/* offset of the end sentinel */
	uint64		used_bytes;		/* bytes in allocated blocks, headers included */
	uint64		bitmap[SC_ARENA_BITMAP_WORDS];
	uint32		bins[SC_ARENA_NBINS];	/* first free block of each class */
} SCArena;

extern void SCArenaInit(SCArena *arena, char *base, uint32 heap_start,
						uint32 heap_end);
extern uint32 SCArenaAlloc(SCArena *arena, char *base, Size nbytes);
extern void SCArenaFree(SCArena *arena, char *base, uint32 off);
extern Size SCArenaBlockSize(char *base, uint32 off);
extern bool SCArenaCheck(SCArena *arena, char *base);

/* ---------- the entry table (table.c) ---------- */

/* SCEntry.flags */
#define SC_ENTRY_HAS_USER		0x01
#define SC_ENTRY_HAS_TIMEOUTS	0x02	/* per-entry timeouts follow the
										 * header */
#define SC_ENTRY_LINKED			0x04	/* in the table (not a staged copy) */
#define SC_ENTRY_DIRTY			0x08	/* last_access not yet written back */

/*
 * An entry lives in one block of its partition's arena: this header, the
 * optional per-entry timeouts, the jsonb value (4-byte aligned), the key and
 * the user id.  All links are offsets within the partition's region; 0 means
 * none.
 */
typedef struct SCEntry
{
	uint32		hash;			/* hash of (cache id, key) */
	uint32		next;			/* next entry in the same key bucket */
	uint32		user_hash;		/* hash of (cache id, user id) */
	uint32		user_next;		/* next entry in the same user bucket */
	uint32		wheel_next;		/* expiry wheel slot list */
	uint32		wheel_prev;
	int32		cache_id;
	uint32		value_len;		/* VARSIZE of the jsonb value */
	uint16		wheel_slot;		/* which expiry wheel slot holds it */
	uint8		key_len;
	uint8		user_len;
	uint8		flags;
	uint8		referenced;		/* CLOCK bit, set by readers */
	int64		version;
	TimestampTz created_at;
	TimestampTz last_access;
} SCEntry;

/* optional per-entry timeouts, 0 = use the cache's */
typedef struct SCEntryTimeouts
{
	int64		idle_us;
	int64		max_us;
} SCEntryTimeouts;

/* the expiry wheel: three levels of 256 slots (1 s, 256 s, 65536 s) */
#define SC_WHEEL_BITS			8
#define SC_WHEEL_SLOTS			(1 << SC_WHEEL_BITS)
#define SC_WHEEL_LEVELS			3

typedef struct SCPartition
{
	LWLock	   *lock;
	int64		wheel_now;		/* last second the expiry worker processed */
	uint32		wheel[SC_WHEEL_LEVELS * SC_WHEEL_SLOTS];
	uint32		nentries;
	uint32		clock_hand;		/* next bucket the eviction sweep visits */
	uint64		write_gen;		/* bumped by every applied put and delete */
	SCArena		arena;
} SCPartition;

/* the shared state of the whole extension (sessioncache.c) */
typedef struct SessionCacheShared
{
	uint32		nbuckets;		/* key buckets per partition, power of two */
	uint32		nuser_buckets;	/* user buckets per partition, power of two */
	Size		region_size;	/* bytes of each partition's region */
	Size		regions_offset; /* offset of the first region from this struct */
	pg_atomic_uint64 next_version;
	pg_atomic_uint64 lease_epoch;	/* see membership.c */
	SCPartition partitions[SC_NUM_PARTITIONS];
} SessionCacheShared;

extern SessionCacheShared *sc_shared;

static inline char *
SCRegion(int partno)
{
	return (char *) sc_shared + sc_shared->regions_offset +
		(Size) partno * sc_shared->region_size;
}

#define SCEntryAt(base, off)	((SCEntry *) ((base) + (off)))

static inline SCEntryTimeouts *
SCEntryGetTimeouts(SCEntry *e)
{
	return (e->flags & SC_ENTRY_HAS_TIMEOUTS) ?
		(SCEntryTimeouts *) ((char *) e + sizeof(SCEntry)) : NULL;
}

static inline char *
SCEntryValue(SCEntry *e)
{
	return (char *) e + sizeof(SCEntry) +
		((e->flags & SC_ENTRY_HAS_TIMEOUTS) ? sizeof(SCEntryTimeouts) : 0);
}

static inline char *
SCEntryKey(SCEntry *e)
{
	return SCEntryValue(e) + e->value_len;
}

static inline char *
SCEntryUser(SCEntry *e)
{
	return SCEntryKey(e) + e->key_len;
}

/* where a key or user lives */
typedef struct SCHash
{
	uint64		h;				/* 64-bit hash; the low 32 bits are stored */
	int			partno;
} SCHash;

#define SC_WHEEL_DETACHED		0xFFFF	/* taken off the wheel for removal */
#define SC_WHEEL_GONE_MAX		8192	/* expiries announced per tick */

/* SQLSTATEs of our own */
#define ERRCODE_SC_LEASE_LAPSED	MAKE_SQLSTATE('S','C','0','0','1')
#define ERRCODE_SC_USER_LIMIT	MAKE_SQLSTATE('S','C','0','0','2')

/* longest timeout accepted: 100 years of 365.25 days */
#define SC_MAX_TIMEOUT_US		(INT64CONST(36525) * USECS_PER_DAY)

/* table.c */
extern SCHash SCHashKey(int32 cache_id, const char *key, int keylen);
extern SCHash SCHashUser(int32 cache_id, const char *user, int userlen);
extern Size SCTableRegionSize(void);
extern void SCTableInitPartition(int partno);
extern uint32 SCTableLookup(int partno, uint32 hash, int32 cache_id,
							const char *key, int keylen);
extern void SCTableLink(int partno, uint32 off, TimestampTz expires_at);
extern void SCTableUnlink(int partno, uint32 off);
extern void SCTableRemove(int partno, uint32 off);
extern uint32 SCTableAllocEntry(int partno, Size nbytes);
extern Size SCTableMaxEntrySize(void);
extern uint32 SCTableBucket(int partno, uint32 b);
extern uint32 SCTableUserChain(int partno, uint32 user_hash);
extern bool SCEntryIsUsers(SCEntry *e, int32 cache_id, uint32 user_hash,
						   const char *user, int userlen);
extern void SCTableRemoveCache(int32 cache_id);
extern List *SCTableCopyPartition(int partno, TimestampTz now);
extern bool SCTableCheckPartition(int partno);

/* ---------- cache definitions (caches.c) ---------- */

typedef struct SCCacheDef
{
	int32		id;				/* never reused; entries refer to it */
	char		name[SC_CACHE_NAME_MAX + 1];
	bool		durable;
	bool		notify;
	bool		evict_oldest;	/* per-user policy: evict_oldest, else deny */
	int32		max_per_user;	/* 0 = no limit */
	int64		idle_us;		/* 0 = none */
	int64		max_us;			/* 0 = none */
} SCCacheDef;

/* counters of a cache, kept in shared memory */
typedef enum SCStat
{
	SC_STAT_HITS,
	SC_STAT_MISSES,
	SC_STAT_FILLS,
	SC_STAT_PUTS,
	SC_STAT_DELETES,
	SC_STAT_TOUCHES,
	SC_STAT_EXPIRED,
	SC_STAT_EVICTED,
	SC_STAT_NOTIFICATIONS,
	SC_STAT_ENTRIES,			/* gauges from here on: not reset */
	SC_STAT_BYTES,
	SC_NUM_STATS
} SCStat;

#define SC_NUM_COUNTERS		SC_STAT_ENTRIES

extern Size SCCachesShmemSize(void);
extern void SCCachesShmemInit(void *ptr, bool found);
extern void SCResolveCache(const char *name, SCCacheDef *def);
extern bool SCCacheDefById(int32 cache_id, SCCacheDef *def);
extern bool SCCacheIsLive(int32 cache_id);
extern void SCCheckCacheStillDefined(int32 cache_id);
extern bool SCCacheWantsNotify(int32 cache_id);
extern void SCStatAdd(int32 cache_id, SCStat stat, int64 delta);
extern void SCCachesEnsureLoaded(void);
extern void SCCachesRefresh(void);
extern bool SCCachesTakeReslot(void);
extern void SCDefineCache(SCCacheDef *def, Interval *idle, Interval *max,
						  bool *created);
extern void SCDropCache(const char *name);
extern void SCCachesInstall(void);
extern bool SCCachesHavePending(void);
extern void SCCachesXactEnd(bool commit);
extern void SCCachesSubXactEnd(SubTransactionId mySubid,
							   SubTransactionId parentSubid, bool commit);
extern int	SCCachesSnapshot(SCCacheDef *defs, uint64 (*stats)[SC_NUM_STATS],
							 TimestampTz *stats_reset);
extern void SCResetStats(void);
extern int64 SCIntervalToUs(Interval *iv, const char *what);

/* ---------- transactions (xact.c) ---------- */

typedef enum SCOpKind
{
	SC_OP_PUT,
	SC_OP_DELETE,
	SC_OP_TOUCH
} SCOpKind;

/* one staged write of the current transaction */
typedef struct SCPendingOp
{
	SCOpKind	kind;
	int32		cache_id;
	SCCacheDef	def;			/* the cache as the write saw it */
	SCHash		hash;
	SubTransactionId subid;
	char	   *key;
	int			keylen;
	uint32		staged;			/* staged entry block, 0 = none */
	int64		version;
	char	   *user;			/* user of a put, for the overlay */
	int			userlen;
	bool		evict;			/* a delete made by a per-user limit */
} SCPendingOp;

extern void SCXactInit(void);
extern void SCLockKey(int32 cache_id, SCHash hash);
extern void SCLockUser(int32 cache_id, SCHash hash);
extern void SCLockCacheDefs(void);
extern void SCLockCacheExclusive(int32 cache_id);
extern SCPendingOp *SCPendingAdd(SCOpKind kind, const SCCacheDef *def,
								 SCHash hash, const char *key, int keylen);
extern void SCPendingSetUser(SCPendingOp *op, const char *user, int userlen);
extern SCPendingOp *SCPendingFind(int32 cache_id, SCHash hash,
								  const char *key, int keylen);
extern List *SCPendingOps(void);
extern void SCPendingViewChange(const char *cluster, int64 view_id);

/* ---------- membership (membership.c) ---------- */

extern TimestampTz SCLeaseEpoch(void);
extern int64 SCMembershipReap(void);

/* ---------- the entry operations (engine.c) ---------- */

/* the state of one key as the current transaction sees it */
typedef struct SCKeyState
{
	int64		version;
	TimestampTz created_at;
	TimestampTz last_access;
	TimestampTz expires_at;
	SCEntryTimeouts timeouts;	/* per-entry overrides, 0 = none */
	char	   *user;			/* palloc'd, NULL when none */
	int			userlen;
	Jsonb	   *value;			/* palloc'd when asked for */
	bool		resident;		/* in shared memory now */
	bool		filled;			/* read from the table by this call */
} SCKeyState;

/* an entry copied out of shared memory */
typedef struct SCEntryCopy
{
	char	   *cache;			/* for the entries view */
	char	   *key;
	char	   *user;			/* NULL when none */
	Jsonb	   *value;			/* NULL unless asked for */
	TimestampTz created_at;
	TimestampTz last_access;
	TimestampTz expires_at;		/* DT_NOEND when it never expires */
	int64		version;
	bool		durable;
} SCEntryCopy;

extern int64 SCPut(const SCCacheDef *def, const char *key, int keylen,
				   Jsonb *value, const char *user, int userlen,
				   int64 idle_us, int64 max_us);
extern Jsonb *SCGet(const SCCacheDef *def, const char *key, int keylen,
					bool touch);
extern bool SCTouch(const SCCacheDef *def, const char *key, int keylen);
extern Jsonb *SCPatch(const SCCacheDef *def, const char *key, int keylen,
					  Jsonb *patch);
extern int64 SCIncr(const SCCacheDef *def, const char *key, int keylen,
					const char *field, int fieldlen, int64 delta,
					const char *user, int userlen);
extern bool SCDelete(const SCCacheDef *def, const char *key, int keylen);
extern int	SCDeleteUser(const SCCacheDef *def, const char *user, int userlen);
extern List *SCUserEntries(const SCCacheDef *def, const char *user,
						   int userlen);
extern bool SCEntryInfo(const SCCacheDef *def, const char *key, int keylen,
						SCEntryCopy *out);
extern void SCEnforceUserLimit(const SCCacheDef *def, const char *user,
							   int userlen, const char *key, int keylen);
extern TimestampTz SCComputeExpiry(const SCCacheDef *def,
								   const SCEntryTimeouts *t,
								   TimestampTz created_at,
								   TimestampTz last_access);
extern TimestampTz SCExpiresAt(const SCCacheDef *def, SCEntry *e);
extern int	SCInstallEntry(const SCCacheDef *def, SCHash hash, const char *key,
						   int keylen, SCKeyState *st, uint64 write_gen,
						   bool may_evict);
extern void SCApplyOp(SCPendingOp *op, TimestampTz now);
extern void SCDiscardOp(SCPendingOp *op);
extern int64 SCNextVersion(void);
extern void SCAdvanceVersion(int64 seen);

/* ---------- the durable table (durable.c) and write-behind (writeback.c) ---------- */

extern bool SCDurableRead(const SCCacheDef *def, const char *key, int keylen,
						  bool want_value, SCKeyState *st);
extern int64 SCDurableWritePut(const SCCacheDef *def, const char *key,
							   int keylen, Jsonb *value, const char *user,
							   int userlen, const SCEntryTimeouts *timeouts,
							   int64 version, TimestampTz *created_at,
							   TimestampTz now, bool keep_live_created);
extern void SCDurableWriteDelete(const SCCacheDef *def, const char *key,
								 int keylen);
extern void SCDurableTouch(const SCCacheDef *def, const char *key, int keylen,
						   const SCKeyState *cur);
extern List *SCDurableUserKeys(const SCCacheDef *def, const char *user,
							   int userlen);
extern void SCDurableDropCache(int32 cache_id);
extern void SCDurableRecomputeExpiry(const SCCacheDef *def);
extern int64 SCWritebackRun(void);
extern int64 SCPrewarmRun(void);

/* ---------- expiry (expiry.c) ---------- */

extern void SCWheelInit(int partno, TimestampTz now);
extern void SCWheelInsert(int partno, uint32 off, TimestampTz expires_at);
extern void SCWheelRemove(int partno, uint32 off);
extern void SCWheelMove(int partno, uint32 off, TimestampTz expires_at);
extern int64 SCExpiryRun(void);

/* ---------- notifications (notify.c) ---------- */

typedef enum SCNotifyOp
{
	SC_NOTIFY_PUT,
	SC_NOTIFY_DELETE,
	SC_NOTIFY_EXPIRE,
	SC_NOTIFY_EVICT,
	SC_NOTIFY_VIEW,				/* a membership view change */
	SC_NOTIFY_FLUSH_CACHE		/* a cache was dropped or redefined */
} SCNotifyOp;

extern Size SCNotifyShmemSize(void);
extern void SCNotifyShmemInit(void *ptr, bool found);
extern void SCNotifyQueue(int32 cache_id, const char *key, int keylen,
						  SCNotifyOp op, int64 version);
extern void SCNotifyQueueWait(int32 cache_id, const char *key, int keylen,
							  SCNotifyOp op, int64 version);
extern void SCNotifyOverflow(void);
extern void SCNotifyFlushCache(const char *name);
extern void SCNotifyMembership(const char *cluster, int64 view_id);
extern void SCAfterApply(void);
extern void SCNotifySetWorkerLatch(Latch *latch);
extern int	SCNotifyDrain(void);
extern void SCNotifyCounters(uint64 *pending, uint64 *dropped,
							 uint64 *flushes);

/* ---------- workers (workers.c) ---------- */

typedef enum SCWorkerKind
{
	SC_WORKER_EXPIRY,
	SC_WORKER_WRITEBACK,
	SC_WORKER_PREWARM,
	SC_WORKER_NOTIFY,
	SC_NUM_WORKERS
} SCWorkerKind;

#define SC_WORKER_BATCH		1000	/* a round this big runs again at once */
#define SC_NOTIFY_GATHER_MS	5	/* pause of the notify worker after a round */

typedef struct SCWorkerInfo
{
	const char *name;
	pid_t		pid;
	TimestampTz last_run;
	uint64		runs;
	uint64		items;
	uint64		errors;
	double		last_duration_ms;
	uint64		last_max_hold_us;
} SCWorkerInfo;

extern Size SCWorkersShmemSize(void);
extern void SCWorkersShmemInit(void *ptr, bool found);
extern void SCWorkersRegister(void);
extern int	SCWorkersSnapshot(SCWorkerInfo *out);
extern void SCWorkerHoldDone(instr_time start);
extern void SCWorkerBeginTransaction(void);
extern void SCWorkerCommit(void);

/* ---------- loading and helpers (sessioncache.c) ---------- */

/* state saved around internal SQL run as the tables' owner */
typedef struct SCSpiState
{
	MemoryContext caller_cxt;	/* where results for the caller go */
	Oid			save_user;
	int			save_sec;
	bool		save_internal;
	int			save_nestlevel; /* of the pinned search_path */
} SCSpiState;

extern void SCCheckUsable(void);
extern Size SCMemoryBytes(void);
extern void SCSpiBegin(SCSpiState *state);
extern void SCSpiEnd(SCSpiState *state);
extern bool SCInternalWrite(void);
extern void SCInternalWriteReset(void);

#endif							/* SESSIONCACHE_H */

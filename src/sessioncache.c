/*-------------------------------------------------------------------------
 *
 * sessioncache.c
 *		Loading: _PG_init, the shared-memory hooks, nothing else.
 *
 * sessioncache keeps named caches of jsonb entries in shared memory, backed
 * by WAL-logged tables for durable caches.  Its files, bottom layer first;
 * each calls only files above it in this list, never one below:
 *
 *	settings.c		the sessioncache.* settings, API limits, usability check
 *	arena.c			bounded-time allocator inside one partition's region
 *	wheel.c			timing wheel of one partition
 *	store.c			the shared-memory store: partitions, hash, user index,
 *					eviction, batched iteration (a leaf: see store.h)
 *	clock.c			entry versions (hybrid logical clock)
 *	internal_sql.c	running SQL as the extension's owner; worker transactions
 *	locks.c			heavyweight locks of writers
 *	durable.c		every statement on the durable table, its row decoder,
 *					and the guard trigger
 *	caches.c		named cache definitions, their counters, the store policy
 *	pending.c		the transaction's staged writes
 *	notify.c		invalidation ring and its drain into NOTIFY
 *	engine.c		the entry operations (put, get, touch, ...)
 *	xact.c			applying staged writes at commit, dropping them at abort
 *	membership.c	lease epoch and the reaper of lapsed members
 *	expiry.c		the expiry worker's round
 *	writeback.c		the writeback worker's round (write-behind of touches)
 *	prewarm.c		the prewarm worker's round
 *	workers.c		registration and life of the background workers
 *	sql_api.c		SQL-callable entry and cache functions
 *	views.c			functions behind the monitoring views
 *	sessioncache.c	this loader
 *
 * Each .c file has a header of the same name declaring what it offers
 * (entry.h holds the entry layout shared by store.c and wheel.c).
 *
 * Names: functions and types used by another file are "SC" + the module +
 * what they do (SCStoreRead, SCDurableWritePut, SCCachesRefresh, SCEntry);
 * file-local helpers are static and start with the file's name
 * (store_lookup, engine_read); settings are sc_<setting>; SQL-callable C
 * functions are sc_<sql name>.  STYLE.md's SessionCache* prefix would make
 * every call in the engine wrap; "SC" plus the module keeps names short
 * while saying which file defines them.
 *
 * Locking rules are written once, in store.h; the other locks (caches.c's
 * definitions lock, notify.c's ring lock) are never held with a partition
 * lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "caches.h"
#include "clock.h"
#include "membership.h"
#include "notify.h"
#include "settings.h"
#include "store.h"
#include "workers.h"
#include "xact.h"

PG_MODULE_MAGIC;

/* the named tranche: the partitions, then the definitions, then the ring */
#define LOCK_CACHES		SC_NUM_PARTITIONS
#define LOCK_NOTIFY		(SC_NUM_PARTITIONS + 1)
#define NUM_LOCKS		(SC_NUM_PARTITIONS + 2)

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

void		_PG_init(void);

static Size
loader_shmem_size(void)
{
	Size		size = SCStoreShmemSize(SCSettingsMemoryBytes());

	size = add_size(size, SCClockShmemSize());
	size = add_size(size, SCCachesShmemSize());
	size = add_size(size, SCNotifyShmemSize());
	size = add_size(size, SCMembershipShmemSize());
	size = add_size(size, SCWorkersShmemSize());
	return size;
}

static void
loader_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(loader_shmem_size());
	RequestNamedLWLockTranche("sessioncache", NUM_LOCKS);
}

static void
loader_shmem_startup(void)
{
	LWLockPadded *locks;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	locks = GetNamedLWLockTranche("sessioncache");
	SCStoreShmemInit(SCSettingsMemoryBytes(), locks);
	SCClockShmemInit();
	SCCachesShmemInit(&locks[LOCK_CACHES].lock);
	SCNotifyShmemInit(&locks[LOCK_NOTIFY].lock);
	SCMembershipShmemInit();
	SCWorkersShmemInit();
	LWLockRelease(AddinShmemInitLock);
	SCSettingsMarkAttached();
}

/*
 * Loaded by the postmaster (shared_preload_libraries): settings, shared
 * memory, workers, transaction callbacks.  Loaded any other way (CREATE
 * EXTENSION or a function call without the preload), only the settings a
 * backend may define: every function then refuses with 55000 and a hint,
 * instead of the session ending on a postmaster-only setting.
 */
void
_PG_init(void)
{
	SCSettingsDefine(process_shared_preload_libraries_in_progress);
	if (!process_shared_preload_libraries_in_progress)
		return;

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = loader_shmem_request;
#else
	loader_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = loader_shmem_startup;

	SCXactInit();
	/* pg_upgrade's servers must not run workers (they hold databases open) */
	if (!IsBinaryUpgrade)
		SCWorkersRegister();
}

/*-------------------------------------------------------------------------
 *
 * sessioncache.c
 *		Loading: settings, shared memory, background workers.
 *
 * sessioncache must be in shared_preload_libraries: its table lives in
 * shared memory sized at start and its workers are registered by the
 * postmaster.  Loaded any other way, _PG_init only defines the settings and
 * every function refuses with SQLSTATE 55000.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "catalog/pg_class.h"
#include "access/htup_details.h"

#include "sessioncache.h"

PG_MODULE_MAGIC;

/* settings */
int			sc_memory_kb = 64 * 1024;
char	   *sc_database = NULL;
int			sc_max_value_size = 16 * 1024;
int			sc_expiry_interval_ms = 1000;
int			sc_flush_interval_ms = 5000;
bool		sc_prewarm = true;

SessionCacheShared *sc_shared = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

/* is this backend writing the durable table on sessioncache's behalf? */
static bool internal_write = false;

void		_PG_init(void);

Size
SCMemoryBytes(void)
{
	return (Size) sc_memory_kb * 1024;
}

static Size
sc_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(SessionCacheShared));

	size = add_size(size, SCCachesShmemSize());
	size = add_size(size, SCNotifyShmemSize());
	size = add_size(size, SCWorkersShmemSize());
	size = add_size(size, PG_CACHE_LINE_SIZE);
	size = add_size(size, mul_size(SCTableRegionSize(), SC_NUM_PARTITIONS));
	return size;
}

static void
sc_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(sc_shmem_size());
	/* one lock per partition, then the cache definitions, then the queue */
	RequestNamedLWLockTranche("sessioncache", SC_NUM_PARTITIONS + 2);
}

static void
sc_shmem_startup(void)
{
	bool		found;
	Size		header;
	LWLockPadded *locks;
	int			i;
	char	   *p;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	header = MAXALIGN(sizeof(SessionCacheShared)) + SCCachesShmemSize() +
		SCNotifyShmemSize() + SCWorkersShmemSize();
	sc_shared = ShmemInitStruct("sessioncache", sc_shmem_size(), &found);
	p = (char *) sc_shared + MAXALIGN(sizeof(SessionCacheShared));
	SCCachesShmemInit(p, found);
	p += SCCachesShmemSize();
	SCNotifyShmemInit(p, found);
	p += SCNotifyShmemSize();
	SCWorkersShmemInit(p, found);

	locks = GetNamedLWLockTranche("sessioncache");
	if (!found)
	{
		sc_shared->region_size = SCTableRegionSize();
		sc_shared->regions_offset = TYPEALIGN(PG_CACHE_LINE_SIZE, header);
		/* versions start at the clock, so they keep rising across restarts */
		pg_atomic_init_u64(&sc_shared->next_version,
						   (uint64) GetCurrentTimestamp());
		pg_atomic_init_u64(&sc_shared->lease_epoch, 0);
		for (i = 0; i < SC_NUM_PARTITIONS; i++)
			SCTableInitPartition(i);
	}
	for (i = 0; i < SC_NUM_PARTITIONS; i++)
		sc_shared->partitions[i].lock = &locks[i].lock;
	LWLockRelease(AddinShmemInitLock);
}

static void
sc_define_settings(void)
{
	DefineCustomIntVariable("sessioncache.memory",
							"Shared memory for cache entries.",
							"Divided evenly among the partitions of the table.",
							&sc_memory_kb,
							64 * 1024, 8 * 1024, 64 * 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomStringVariable("sessioncache.database",
							   "The database that holds the sessioncache extension.",
							   "Background workers connect to it; the functions refuse to run elsewhere.",
							   &sc_database,
							   "postgres",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("sessioncache.max_value_size",
							"Largest value, in bytes of its jsonb form.",
							NULL,
							&sc_max_value_size,
							16 * 1024, 64, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sessioncache.expiry_interval",
							"Period of the expiry worker.",
							NULL,
							&sc_expiry_interval_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sessioncache.flush_interval",
							"Period of the write-behind of touched idle timers.",
							"A crash can make an idle timer look older by at most this much.",
							&sc_flush_interval_ms,
							5000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("sessioncache.prewarm",
							 "Load durable caches into shared memory after a start.",
							 NULL,
							 &sc_prewarm,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("sessioncache");
}

void
_PG_init(void)
{
	sc_define_settings();

	/* without preloading there is no shared memory: functions say so */
	if (!process_shared_preload_libraries_in_progress)
		return;

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sc_shmem_request;
#else
	sc_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sc_shmem_startup;

	SCXactInit();
	SCWorkersRegister();
}

/*
 * Every SQL entry point calls this first: the library must have been
 * preloaded and the caller must be in sessioncache.database.
 */
void
SCCheckUsable(void)
{
	static bool database_checked = false;

	if (sc_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("sessioncache must be loaded via shared_preload_libraries"),
				 errhint("Add sessioncache to shared_preload_libraries in postgresql.conf and restart the server.")));
	if (!database_checked)
	{
		char	   *here = get_database_name(MyDatabaseId);

		if (here == NULL || strcmp(here, sc_database) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("sessioncache is in database \"%s\", not in \"%s\"",
							sc_database, here ? here : "?"),
					 errhint("Connect to database \"%s\", or set sessioncache.database and restart the server.",
							 sc_database)));
		database_checked = true;
	}
}

/* the owner of the extension's tables, as whom its internal SQL runs */
static Oid
sc_owner(void)
{
	static Oid	owner = InvalidOid;

	if (!OidIsValid(owner))
	{
		Oid			nsp = get_namespace_oid("sessioncache", false);
		Oid			rel = get_relname_relid("cache_defs", nsp);
		HeapTuple	tup;

		if (!OidIsValid(rel))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("extension sessioncache is not installed in this database"),
					 errhint("Run CREATE EXTENSION sessioncache.")));
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for relation %u", rel);
		owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
		ReleaseSysCache(tup);
	}
	return owner;
}

/*
 * Connect to SPI and run as the tables' owner, with the durable table's
 * guard lifted and search_path pinned to pg_catalog: the internal SQL must
 * never resolve an operator or function through the caller's search_path
 * (it would run the caller's code with the owner's rights).  The app role
 * may call the functions without any right on the tables.  An error
 * restores the user and the setting (transaction abort does) and the guard
 * (SCInternalWriteReset at abort).
 */
void
SCSpiBegin(SCSpiState *state)
{
	Oid			owner = sc_owner();

	state->caller_cxt = CurrentMemoryContext;
	GetUserIdAndSecContext(&state->save_user, &state->save_sec);
	SetUserIdAndSecContext(owner, state->save_sec |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	state->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	state->save_internal = internal_write;
	internal_write = true;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
SCSpiEnd(SCSpiState *state)
{
	SPI_finish();
	AtEOXact_GUC(true, state->save_nestlevel);
	internal_write = state->save_internal;
	SetUserIdAndSecContext(state->save_user, state->save_sec);
}

bool
SCInternalWrite(void)
{
	return internal_write;
}

void
SCInternalWriteReset(void)
{
	internal_write = false;
}

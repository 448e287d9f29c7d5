/*-------------------------------------------------------------------------
 *
 * workers.c
 *		The background workers: registration, their common life, and the
 *		bookkeeping behind the sessioncache.workers view.
 *
 * Workers, by bgw_type:
 *	sessioncache expiry		removes expired entries and rows (expiry.c)
 *	sessioncache writeback	writes touched idle timers to the table
 *	sessioncache prewarm	loads durable entries after a start (one-shot)
 *	sessioncache notify		sends invalidations over NOTIFY (notify.c)
 *
 * They live like PostgreSQL's own: SIGTERM (fast shutdown,
 * pg_terminate_backend) sets ShutdownRequestPending, which every loop of a
 * round checks along with CHECK_FOR_INTERRUPTS(), so a worker stops within
 * one small batch; SIGHUP reloads the configuration.  An error in a round
 * is logged and counted, every LWLock is released, the transaction is
 * aborted and the worker goes on.  Statistics are reported after every
 * round that did work, so autovacuum hears of the dead rows expiry and
 * writeback leave.
 *
 * The static workers restart after a crash (bgw_restart_time).  The
 * prewarm worker is started by the writeback worker once per start of
 * shared memory.  When sessioncache.database does not exist, a worker that
 * failed to connect comes back connected to no database and waits for it,
 * checking with a growing pause and logging once, rather than die and
 * restart every second.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "expiry.h"
#include "notify.h"
#include "prewarm.h"
#include "settings.h"
#include "store.h"
#include "workers.h"
#include "writeback.h"

PGDLLEXPORT void sc_worker_main(Datum arg);

#define SC_WORKER_BATCH			1000	/* a round this big runs again at once */
#define SC_NOTIFY_GATHER_MS		5	/* pause of the notify worker after a round */
#define SC_NOTIFY_IDLE_MS		60000	/* committers wake it; this is a backstop */
#define SC_DB_WAIT_MAX_MS		60000	/* longest pause between database checks */

typedef struct WorkerStat
{
	slock_t		mutex;
	pid_t		pid;
	TimestampTz last_run;
	uint64		runs;
	uint64		items;
	uint64		errors;
	double		last_duration_ms;	/* of the last round */
	uint64		last_max_hold_us;	/* longest partition lock hold in it */
	int			connect_attempts;	/* started and not finished */
} WorkerStat;

typedef struct WorkersShared
{
	bool		prewarm_launched;	/* once per start of shared memory */
	bool		db_missing;		/* a worker found sessioncache.database gone */
	bool		db_missing_logged;
	WorkerStat	stats[SC_NUM_WORKERS];
} WorkersShared;

static WorkersShared *workers = NULL;

static const char *const worker_names[SC_NUM_WORKERS] = {
	"expiry", "writeback", "prewarm", "notify"
};

Size
SCWorkersShmemSize(void)
{
	return MAXALIGN(sizeof(WorkersShared));
}

void
SCWorkersShmemInit(void)
{
	bool		found;

	workers = ShmemInitStruct("sessioncache workers", SCWorkersShmemSize(),
							  &found);
	if (!found)
	{
		int			i;

		memset(workers, 0, sizeof(WorkersShared));
		for (i = 0; i < SC_NUM_WORKERS; i++)
			SpinLockInit(&workers->stats[i].mutex);
	}
}

static void
worker_fill(BackgroundWorker *w, SCWorkerKind kind)
{
	memset(w, 0, sizeof(BackgroundWorker));
	w->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w->bgw_start_time = BgWorkerStart_RecoveryFinished;
	w->bgw_restart_time = 1;
	snprintf(w->bgw_library_name, BGW_MAXLEN, "sessioncache");
	snprintf(w->bgw_function_name, BGW_MAXLEN, "sc_worker_main");
	snprintf(w->bgw_name, BGW_MAXLEN, "sessioncache %s", worker_names[kind]);
	snprintf(w->bgw_type, BGW_MAXLEN, "sessioncache %s", worker_names[kind]);
	w->bgw_main_arg = Int32GetDatum(kind);
}

void
SCWorkersRegister(void)
{
	BackgroundWorker w;

	worker_fill(&w, SC_WORKER_EXPIRY);
	RegisterBackgroundWorker(&w);
	worker_fill(&w, SC_WORKER_WRITEBACK);
	RegisterBackgroundWorker(&w);
	worker_fill(&w, SC_WORKER_NOTIFY);
	RegisterBackgroundWorker(&w);
}

static void
worker_launch_prewarm(void)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;

	if (workers->prewarm_launched || !sc_prewarm)
		return;
	workers->prewarm_launched = true;
	worker_fill(&w, SC_WORKER_PREWARM);
	w.bgw_restart_time = BGW_NEVER_RESTART;
	if (!RegisterDynamicBackgroundWorker(&w, &handle))
		ereport(LOG,
				(errmsg("sessioncache could not start its prewarm worker"),
				 errhint("Raise max_worker_processes; reads fill the cache lazily meanwhile.")));
}

static void
worker_record(SCWorkerKind kind, int64 items, bool error, double duration_ms)
{
	WorkerStat *st = &workers->stats[kind];
	TimestampTz now = GetCurrentTimestamp();
	uint64		hold = SCStoreTakeMaxHoldUs();

	SpinLockAcquire(&st->mutex);
	st->last_run = now;
	st->last_duration_ms = duration_ms;
	st->last_max_hold_us = hold;
	st->runs++;
	if (items > 0)
		st->items += items;
	if (error)
		st->errors++;
	SpinLockRelease(&st->mutex);
}

/* is the extension installed (the workers idle until it is)? */
static bool
worker_extension_ready(void)
{
	bool		ready;
	Oid			nsp;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	nsp = get_namespace_oid("sessioncache", true);
	ready = OidIsValid(nsp) &&
		OidIsValid(get_relname_relid("durable_entries", nsp));
	CommitTransactionCommand();
	return ready;
}

/* the rounds of the workers; each returns the items it handled */
static int64
worker_notify_round(void)
{
	return SCNotifyDrain();
}

static int64
worker_writeback_round(void)
{
	worker_launch_prewarm();
	return SCWritebackRun(false);
}

/* the writeback at a clean shutdown: every last touch */
static int64
worker_final_flush(void)
{
	return SCWritebackRun(true);
}

static int64 (*const worker_rounds[SC_NUM_WORKERS]) (void) = {
	SCExpiryRun, worker_writeback_round, SCPrewarmRun, worker_notify_round
};

static long
worker_period_ms(SCWorkerKind kind)
{
	switch (kind)
	{
		case SC_WORKER_EXPIRY:
			return sc_expiry_interval_ms;
		case SC_WORKER_WRITEBACK:
			return sc_flush_interval_ms;
		case SC_WORKER_NOTIFY:
			return SC_NOTIFY_IDLE_MS;
		default:
			return 1000;
	}
}

/* Log an error of a round and clean up after it, as PostgreSQL's own do. */
static void
worker_recover(MemoryContext cxt)
{
	MemoryContextSwitchTo(cxt);
	EmitErrorReport();
	FlushErrorState();
	LWLockReleaseAll();
	AbortOutOfAnyTransaction();
}

/*
 * Run one round in a PG_TRY; returns whether it failed, *items what it
 * handled.
 */
static bool
worker_try_round(int64 (*round) (void), MemoryContext round_cxt, int64 *items)
{
	volatile bool failed = false;
	volatile int64 done = 0;

	PG_TRY();
	{
		done = round();
	}
	PG_CATCH();
	{
		worker_recover(round_cxt);
		failed = true;
	}
	PG_END_TRY();
	*items = done;
	return failed;
}

/*
 * Does the database exist?  Connected to no database, only the shared
 * catalogs can be read, and only by a heap scan (as autovacuum's launcher
 * lists databases).
 */
static bool
worker_database_exists(const char *name)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found && HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
		found = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname), name) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * sessioncache.database does not exist (the previous attempt to connect
 * died): connected to no database, check for it with a growing pause, log
 * once, and exit (to be restarted, connecting) when it appears.
 */
static void
worker_wait_for_database(SCWorkerKind kind)
{
	long		pause_ms = 1000;

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	workers->db_missing = true;
	if (!workers->db_missing_logged)
	{
		workers->db_missing_logged = true;
		ereport(LOG,
				(errmsg("sessioncache workers wait for database \"%s\", which does not exist",
						sc_database),
				 errhint("Create the database, or set sessioncache.database and restart the server.")));
	}
	while (!ShutdownRequestPending)
	{
		if (worker_database_exists(sc_database))
		{
			workers->db_missing = false;
			workers->db_missing_logged = false;
			SpinLockAcquire(&workers->stats[kind].mutex);
			workers->stats[kind].connect_attempts = 0;
			SpinLockRelease(&workers->stats[kind].mutex);
			ereport(LOG,
					(errmsg("sessioncache %s worker found database \"%s\"; restarting to connect",
							worker_names[kind], sc_database)));
			proc_exit(1);
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 pause_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		pause_ms = Min(pause_ms * 2, SC_DB_WAIT_MAX_MS);
	}
	proc_exit(0);
}

/* Connect to sessioncache.database, or wait for it to exist. */
static void
worker_connect(SCWorkerKind kind)
{
	WorkerStat *st = &workers->stats[kind];
	int			attempts;

	SpinLockAcquire(&st->mutex);
	attempts = st->connect_attempts++;
	SpinLockRelease(&st->mutex);
	if (attempts > 0 || workers->db_missing)
		worker_wait_for_database(kind);
	BackgroundWorkerInitializeConnection(sc_database, NULL, 0);
	SpinLockAcquire(&st->mutex);
	st->connect_attempts = 0;
	st->pid = MyProcPid;
	SpinLockRelease(&st->mutex);
}

void
sc_worker_main(Datum arg)
{
	SCWorkerKind kind = (SCWorkerKind) DatumGetInt32(arg);
	MemoryContext round_cxt;
	bool		ready = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	worker_connect(kind);

	/*
	 * The workers' commits (written-back touches, deleted expired rows,
	 * reaped members, notifications) need not wait for a synchronous
	 * standby: losing one in a failover makes an idle timer look older or
	 * an expired row linger, both allowed.  Waiting would hang a worker
	 * (and a fast shutdown, in its final flush) when the standby is the
	 * server being promoted.
	 */
	SetConfigOption("synchronous_commit", "local", PGC_SUSET, PGC_S_OVERRIDE);
	if (kind == SC_WORKER_NOTIFY)
		SCNotifySetWorkerLatch(MyLatch);

	ereport(LOG, (errmsg("sessioncache %s worker started", worker_names[kind])));
	round_cxt = AllocSetContextCreate(TopMemoryContext, "sessioncache worker",
									  ALLOCSET_DEFAULT_SIZES);

	while (!ShutdownRequestPending)
	{
		int64		items = 0;
		bool		failed = false;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!ready)
			ready = worker_extension_ready();
		if (ready)
		{
			MemoryContext old = MemoryContextSwitchTo(round_cxt);
			instr_time	started;
			instr_time	elapsed;

			pgstat_report_activity(STATE_RUNNING, worker_names[kind]);
			(void) SCStoreTakeMaxHoldUs();
			INSTR_TIME_SET_CURRENT(started);
			failed = worker_try_round(worker_rounds[kind], round_cxt, &items);
			MemoryContextSwitchTo(old);
			MemoryContextReset(round_cxt);
			pgstat_report_activity(STATE_IDLE, NULL);
			/* tell the statistics (and so autovacuum) what the round did */
			if (items > 0)
				pgstat_report_stat(true);
			INSTR_TIME_SET_CURRENT(elapsed);
			INSTR_TIME_SUBTRACT(elapsed, started);
			worker_record(kind, items, failed, INSTR_TIME_GET_MILLISEC(elapsed));
			/* the extension may have been dropped: check again */
			if (failed)
				ready = false;
			ereport(DEBUG1,
					(errmsg_internal("sessioncache %s worker: " INT64_FORMAT " items",
									 worker_names[kind], items)));
			if (kind == SC_WORKER_PREWARM && !failed)
				break;
		}
		/* a full batch means more is waiting: go on at once */
		if (items >= SC_WORKER_BATCH && !failed)
		{
			CHECK_FOR_INTERRUPTS();
			continue;
		}

		/*
		 * Every committing writer sets the notify worker's latch: a short
		 * pause after a round lets messages gather, so that one NOTIFY
		 * transaction carries many (well within the 100 ms budget).
		 */
		if (kind == SC_WORKER_NOTIFY && items > 0)
			(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 SC_NOTIFY_GATHER_MS, PG_WAIT_EXTENSION);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 worker_period_ms(kind), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	/* a clean shutdown writes back the last touches */
	if (kind == SC_WORKER_WRITEBACK && ready)
	{
		int64		items;

		(void) worker_try_round(worker_final_flush, round_cxt, &items);
	}
	if (kind == SC_WORKER_NOTIFY)
		SCNotifySetWorkerLatch(NULL);
	SpinLockAcquire(&workers->stats[kind].mutex);
	workers->stats[kind].pid = 0;
	SpinLockRelease(&workers->stats[kind].mutex);
	ereport(LOG, (errmsg("sessioncache %s worker stopped", worker_names[kind])));
	/* exit 1 so that a worker stopped by hand is started again */
	proc_exit(kind == SC_WORKER_PREWARM ? 0 : 1);
}

int
SCWorkersSnapshot(SCWorkerInfo *out)
{
	int			i;

	for (i = 0; i < SC_NUM_WORKERS; i++)
	{
		WorkerStat *st = &workers->stats[i];

		out[i].name = worker_names[i];
		SpinLockAcquire(&st->mutex);
		out[i].pid = st->pid;
		out[i].last_run = st->last_run;
		out[i].runs = st->runs;
		out[i].items = st->items;
		out[i].errors = st->errors;
		out[i].last_duration_ms = st->last_duration_ms;
		out[i].last_max_hold_us = st->last_max_hold_us;
		SpinLockRelease(&st->mutex);
	}
	return SC_NUM_WORKERS;
}

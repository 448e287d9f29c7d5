/*-------------------------------------------------------------------------
 *
 * workers.c
 *		The background workers: registration, their common loop, and the
 *		bookkeeping behind the sessioncache.workers view.
 *
 * Workers, by bgw_type:
 *	sessioncache expiry		removes expired entries and rows (expiry.c)
 *	sessioncache writeback	writes touched idle timers to the table
 *	sessioncache prewarm	loads durable entries after a start (one-shot)
 *	sessioncache notify		sends invalidations over NOTIFY (notify.c)
 *
 * The static workers restart after a crash (bgw_restart_time).  The
 * prewarm worker is started by the writeback worker once per start of
 * shared memory, so it runs again after a crash-restart too.  Each round of
 * a worker runs in a PG_TRY: an error is logged and counted and the worker
 * goes on.  Workers log at LOG when they start and stop, at DEBUG1 per run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "sessioncache.h"

PGDLLEXPORT void sc_worker_main(Datum arg);

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
} WorkerStat;

typedef struct WorkersShared
{
	bool		prewarm_launched;	/* once per start of shared memory */
	bool		prewarm_done;
	WorkerStat	stats[SC_NUM_WORKERS];
} WorkersShared;

static WorkersShared *workers = NULL;

static const char *const worker_names[SC_NUM_WORKERS] = {
	"expiry", "writeback", "prewarm", "notify"
};

static volatile sig_atomic_t got_sigterm = false;

/* the longest exclusive partition lock hold of the current round */
static uint64 round_max_hold_us = 0;

/*
 * Note the end of an exclusive lock hold that began at 'start'.  Workers
 * call this around every partition lock they hold exclusively, so that the
 * workers view shows how long they keep readers out.
 */
void
SCWorkerHoldDone(instr_time start)
{
	instr_time	now;
	uint64		us;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	us = INSTR_TIME_GET_MICROSEC(now);
	if (us > round_max_hold_us)
		round_max_hold_us = us;
}

Size
SCWorkersShmemSize(void)
{
	return MAXALIGN(sizeof(WorkersShared));
}

void
SCWorkersShmemInit(void *ptr, bool found)
{
	workers = (WorkersShared *) ptr;
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

/* Called from _PG_init in the postmaster. */
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
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

static void
worker_record(SCWorkerKind kind, int64 items, bool error, double duration_ms)
{
	WorkerStat *st = &workers->stats[kind];
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&st->mutex);
	st->last_run = now;
	st->last_duration_ms = duration_ms;
	st->last_max_hold_us = round_max_hold_us;
	st->runs++;
	if (items > 0)
		st->items += items;
	if (error)
		st->errors++;
	SpinLockRelease(&st->mutex);
}

/*
 * Start a transaction in a worker, with a snapshot.  The statement start
 * time is set first: a worker runs no client statements, and without it
 * now() would stay at the moment the worker started.
 */
static MemoryContext worker_outer_cxt = NULL;

void
SCWorkerBeginTransaction(void)
{
	worker_outer_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/*
 * Commit, and return to the memory context the transaction began in (the
 * worker's round context), which CommitTransactionCommand does not do.
 */
void
SCWorkerCommit(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(worker_outer_cxt);
}

/* is the extension installed (the workers idle until it is)? */
static bool
worker_extension_ready(void)
{
	bool		ready;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	ready = OidIsValid(get_namespace_oid("sessioncache", true)) &&
		OidIsValid(get_relname_relid("durable_entries",
									 get_namespace_oid("sessioncache", true)));
	CommitTransactionCommand();
	return ready;
}

/* one round of a worker's work; returns the items it handled */
static int64
worker_round(SCWorkerKind kind)
{
	switch (kind)
	{
		case SC_WORKER_EXPIRY:
			return SCExpiryRun();
		case SC_WORKER_WRITEBACK:
			worker_launch_prewarm();
			return SCWritebackRun();
		case SC_WORKER_PREWARM:
			return SCPrewarmRun();
		case SC_WORKER_NOTIFY:
			return SCNotifyDrain();
		default:
			elog(ERROR, "unknown sessioncache worker %d", kind);
	}
	return 0;
}

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
			return 50;
		default:
			return 1000;
	}
}

void
sc_worker_main(Datum arg)
{
	SCWorkerKind kind = (SCWorkerKind) DatumGetInt32(arg);
	MemoryContext round_cxt;
	bool		ready = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(sc_database, NULL, 0);

	SpinLockAcquire(&workers->stats[kind].mutex);
	workers->stats[kind].pid = MyProcPid;
	SpinLockRelease(&workers->stats[kind].mutex);
	if (kind == SC_WORKER_NOTIFY)
		SCNotifySetWorkerLatch(MyLatch);

	ereport(LOG, (errmsg("sessioncache %s worker started", worker_names[kind])));
	round_cxt = AllocSetContextCreate(TopMemoryContext, "sessioncache worker",
									  ALLOCSET_DEFAULT_SIZES);

	while (!got_sigterm)
	{
		int64		items = 0;
		bool		failed = false;
		instr_time	started;

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

			pgstat_report_activity(STATE_RUNNING, worker_names[kind]);
			round_max_hold_us = 0;
			INSTR_TIME_SET_CURRENT(started);
			PG_TRY();
			{
				items = worker_round(kind);
			}
			PG_CATCH();
			{
				/* log, clean up and carry on: the next round retries */
				MemoryContextSwitchTo(round_cxt);
				EmitErrorReport();
				FlushErrorState();
				AbortOutOfAnyTransaction();
				failed = true;
			}
			PG_END_TRY();
			MemoryContextSwitchTo(old);
			MemoryContextReset(round_cxt);
			pgstat_report_activity(STATE_IDLE, NULL);
			{
				instr_time	elapsed;

				INSTR_TIME_SET_CURRENT(elapsed);
				INSTR_TIME_SUBTRACT(elapsed, started);
				worker_record(kind, items, failed,
							  INSTR_TIME_GET_MILLISEC(elapsed));
			}
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
			continue;

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
		PG_TRY();
		{
			int			rounds = 0;

			while (SCWritebackRun() > 0 && ++rounds < 1000)
				;
		}
		PG_CATCH();
		{
			EmitErrorReport();
			FlushErrorState();
			AbortOutOfAnyTransaction();
		}
		PG_END_TRY();
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

/* Copy out the workers' counters for the view. */
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

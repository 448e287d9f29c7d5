/*-------------------------------------------------------------------------
 *
 * workers.h
 *		The background workers: registration, their common life, and the
 *		bookkeeping behind the sessioncache.workers view.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_WORKERS_H
#define SC_WORKERS_H

typedef enum SCWorkerKind
{
	SC_WORKER_EXPIRY,
	SC_WORKER_WRITEBACK,
	SC_WORKER_PREWARM,
	SC_WORKER_NOTIFY,
	SC_NUM_WORKERS
} SCWorkerKind;

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
extern void SCWorkersShmemInit(void);

/* Register the static workers (from _PG_init, in the postmaster). */
extern void SCWorkersRegister(void);

/* Copy out every worker's counters (spinlock inside); returns how many. */
extern int	SCWorkersSnapshot(SCWorkerInfo *out);

#endif							/* SC_WORKERS_H */

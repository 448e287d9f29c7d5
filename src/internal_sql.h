/*-------------------------------------------------------------------------
 *
 * internal_sql.h
 *		The durable layer's way of running SQL: as the extension's owner,
 *		with search_path pinned, and (in workers) in transactions of its own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_INTERNAL_SQL_H
#define SC_INTERNAL_SQL_H

/* state saved around internal SQL run as the tables' owner */
typedef struct SCSpiState
{
	MemoryContext caller_cxt;	/* where results for the caller go */
	Oid			save_user;
	int			save_sec;
	bool		save_internal;
	int			save_nestlevel; /* of the pinned search_path */
} SCSpiState;

/*
 * Connect to SPI and run as the owner of the extension's tables, with
 * search_path pinned to pg_catalog, pg_temp.  Throws 55000 when the
 * extension is not installed.  Needs a transaction.
 */
extern void SCSpiBegin(SCSpiState *state);

/* Undo SCSpiBegin (an error does it through transaction abort). */
extern void SCSpiEnd(SCSpiState *state);

/* Is this backend inside SCSpiBegin (writing on sessioncache's behalf)? */
extern bool SCInternalWrite(void);

/* Forget SCSpiBegin's flag (transaction or subtransaction abort). */
extern void SCInternalWriteReset(void);

/* Forget the cached owner (the extension was dropped or re-created). */
extern void SCInternalForgetOwner(void);

/*
 * A worker's transaction, with a snapshot and the statement time set (a
 * worker runs no client statements; without it now() would stay at the
 * worker's start).  SCWorkerCommit returns to the memory context that was
 * current at SCWorkerBeginTransaction.
 */
extern void SCWorkerBeginTransaction(void);
extern void SCWorkerCommit(void);

#endif							/* SC_INTERNAL_SQL_H */

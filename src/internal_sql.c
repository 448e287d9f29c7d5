/*-------------------------------------------------------------------------
 *
 * internal_sql.c
 *		Running sessioncache's own SQL: as the tables' owner, with
 *		search_path pinned, and transactions for the workers.
 *
 * The app role may call the functions without any right on the tables:
 * the statements run as the owner.  The internal SQL must never resolve an
 * operator or function through the caller's search_path (it would run the
 * caller's code with the owner's rights), so search_path is pinned to
 * pg_catalog for its duration.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "internal_sql.h"

/* is this backend writing the durable table on sessioncache's behalf? */
static bool internal_write = false;

static Oid	owner = InvalidOid;
static Oid	owner_rel = InvalidOid;

/* the owner of the extension's tables, as whom its internal SQL runs */
static Oid
internal_owner(void)
{
	Oid			nsp = get_namespace_oid("sessioncache", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("cache_defs", nsp) : InvalidOid;
	HeapTuple	tup;

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension sessioncache is not installed in this database"),
				 errhint("Run CREATE EXTENSION sessioncache.")));
	/* re-created extensions have new tables, perhaps a new owner */
	if (rel == owner_rel && OidIsValid(owner))
		return owner;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	owner_rel = rel;
	ReleaseSysCache(tup);
	return owner;
}

void
SCInternalForgetOwner(void)
{
	owner = InvalidOid;
	owner_rel = InvalidOid;
}

void
SCSpiBegin(SCSpiState *state)
{
	Oid			run_as = internal_owner();

	state->caller_cxt = CurrentMemoryContext;
	GetUserIdAndSecContext(&state->save_user, &state->save_sec);
	SetUserIdAndSecContext(run_as, state->save_sec |
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

static MemoryContext worker_outer_cxt = NULL;

void
SCWorkerBeginTransaction(void)
{
	worker_outer_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

void
SCWorkerCommit(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(worker_outer_cxt);
}

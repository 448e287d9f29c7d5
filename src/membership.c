/*-------------------------------------------------------------------------
 *
 * membership.c
 *		Cluster membership with leases: the C side.
 *
 * join, heartbeat, leave and view are SQL functions in the install script:
 * each change of a cluster's member set locks the cluster's row, bumps its
 * view_id and queues a message for sessioncache_membership that is sent
 * only if the change commits.  This file holds what SQL cannot do alone:
 *
 * - the lease epoch: the moment this server started serving as a primary.
 *   A lease counts as lapsed only when both its own expiry and epoch +
 *   lease have passed, so after a restart or a failover every member keeps
 *   its lease for one more lease period (as etcd and Consul do on a leader
 *   change) and a database restart evicts no one;
 * - the reaper, run by the expiry worker: it removes the members whose
 *   lease lapsed, taking each cluster's row lock first (the order join
 *   uses), so a heartbeat and the reaper never both win.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "postmaster/interrupt.h"
#include "storage/shmem.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "internal_sql.h"
#include "membership.h"
#include "pending.h"
#include "settings.h"

PG_FUNCTION_INFO_V1(sc_lease_epoch);
PG_FUNCTION_INFO_V1(sc_notify_view);

static pg_atomic_uint64 *lease_epoch = NULL;

Size
SCMembershipShmemSize(void)
{
	return MAXALIGN(sizeof(pg_atomic_uint64));
}

void
SCMembershipShmemInit(void)
{
	bool		found;

	lease_epoch = ShmemInitStruct("sessioncache membership",
								  SCMembershipShmemSize(), &found);
	if (!found)
		pg_atomic_init_u64(lease_epoch, 0);
}

/*
 * The moment this server started serving as a primary (set by the first
 * caller once it accepts writes; "now" before that).  Lock-free.
 */
static TimestampTz
membership_lease_epoch(void)
{
	TimestampTz epoch;

	/*
	 * Not yet a primary that accepts writes: during recovery, and while a
	 * failover manager keeps a promoted server read-only (pg_auto_failover
	 * does until the old primary is demoted), no heartbeat can commit, so
	 * the grace period must not start.
	 */
	if (RecoveryInProgress() || DefaultXactReadOnly)
		return GetCurrentTimestamp();
	epoch = (TimestampTz) pg_atomic_read_u64(lease_epoch);
	if (epoch == 0)
	{
		uint64		expected = 0;
		TimestampTz now = GetCurrentTimestamp();

		if (pg_atomic_compare_exchange_u64(lease_epoch, &expected,
										   (uint64) now))
			epoch = now;
		else
			epoch = (TimestampTz) expected;
	}
	return epoch;
}

Datum
sc_lease_epoch(PG_FUNCTION_ARGS)
{
	SCCheckUsable();
	PG_RETURN_TIMESTAMPTZ(membership_lease_epoch());
}

/* _notify_view(cluster, view_id): queue a view change for commit */
Datum
sc_notify_view(PG_FUNCTION_ARGS)
{
	SCCheckUsable();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cluster and view_id must not be null")));
	SCPendingViewChange(text_to_cstring(PG_GETARG_TEXT_PP(0)),
						PG_GETARG_INT64(1));
	PG_RETURN_VOID();
}

/*
 * Remove the members of one cluster whose lease lapsed, in the worker's
 * transaction.  Returns the new view id, or 0 when nobody was removed.
 */
static int64
membership_reap_cluster(const char *cluster, TimestampTz epoch, int64 *removed)
{
	Oid			types[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		isnull;
	int64		view_id;
	int			ret;

	values[0] = CStringGetTextDatum(cluster);
	values[1] = TimestampTzGetDatum(epoch);
	ret = SPI_execute_with_args("SELECT view_id + 1 FROM sessioncache.clusters"
								" WHERE cluster = $1 FOR UPDATE",
								1, types, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		return 0;
	view_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	ret = SPI_execute_with_args("DELETE FROM sessioncache.cluster_members"
								" WHERE cluster = $1"
								" AND greatest(lease_expires_at, $2 + lease) <= clock_timestamp()",
								2, types, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not reap members: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return 0;
	*removed += (int64) SPI_processed;
	ret = SPI_execute_with_args("UPDATE sessioncache.clusters SET view_id = view_id + 1"
								" WHERE cluster = $1",
								1, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not advance the view: %s", SPI_result_code_string(ret));
	SCPendingViewChange(cluster, view_id);
	return view_id;
}

/*
 * The reaper: one short transaction per cluster with lapsed members.
 * Returns the members removed.
 */
int64
SCMembershipReap(void)
{
	TimestampTz epoch;
	SCSpiState	spi;
	List	   *clusters = NIL;
	ListCell   *lc;
	int64		removed = 0;
	uint64		i;
	int			ret;
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[2];
	MemoryContext round_cxt = CurrentMemoryContext;	/* outlives the
														 * transactions */

	SCWorkerBeginTransaction();
	epoch = membership_lease_epoch();
	values[0] = TimestampTzGetDatum(epoch);
	values[1] = TimestampTzGetDatum(GetCurrentTimestamp());
	SCSpiBegin(&spi);
	/* a parameter, not clock_timestamp(), so that the lease index is used */
	ret = SPI_execute_with_args("SELECT DISTINCT cluster FROM sessioncache.cluster_members"
								" WHERE lease_expires_at <= $2"
								" AND $1 + lease <= $2 ORDER BY 1",
								2, types, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not scan members: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(round_cxt);

		clusters = lappend(clusters, SPI_getvalue(SPI_tuptable->vals[i],
												  SPI_tuptable->tupdesc, 1));
		MemoryContextSwitchTo(old);
	}
	SCSpiEnd(&spi);
	SCWorkerCommit();

	foreach(lc, clusters)
	{
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			break;
		SCWorkerBeginTransaction();
		SCSpiBegin(&spi);
		(void) membership_reap_cluster((const char *) lfirst(lc), epoch, &removed);
		SCSpiEnd(&spi);
		SCWorkerCommit();
	}
	return removed;
}

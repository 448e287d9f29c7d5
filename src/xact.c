/*-------------------------------------------------------------------------
 *
 * xact.c
 *		Cache writes staged per transaction and applied when it commits.
 *
 * A write (put, patch, incr, delete, touch) does its checks and any memory
 * allocation at once, so that every error reaches the caller, but changes
 * nothing that other sessions can see: a put copies the new entry into a
 * block of its partition that is not linked into the table, and the staged
 * operation is remembered (pending.c), tagged with the subtransaction that
 * made it.
 *
 * - At commit the operations are applied in order (XACT_EVENT_COMMIT: the
 *   transaction is already durable and visible, and the key locks are still
 *   held, so nobody can slip in between the commit and the apply).  Applying
 *   cannot fail.  Changes are counted and announced after each one's
 *   partition lock is released.
 * - At abort, and for a rolled-back savepoint, the staged blocks are freed
 *   and the operations forgotten: a rollback leaves no trace.
 * - A savepoint that is released hands its operations to its parent.
 * - PREPARE TRANSACTION is refused after a cache write: the staged state
 *   lives in this backend and could not outlive it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/timestamp.h"

#include "caches.h"
#include "internal_sql.h"
#include "locks.h"
#include "notify.h"
#include "pending.h"
#include "store.h"
#include "xact.h"

/* Apply one staged write.  Must not fail: the transaction has committed. */
static void
xact_apply(SCPendingOp *op, TimestampTz now)
{
	const SCStorePolicy *policy = SCCachesPolicy();
	SCStoreRules rules;
	bool		live;

	switch (op->kind)
	{
		case SC_OP_PUT:
			live = SCStoreApplyPut(op->hash, op->cache_id, op->key, op->keylen,
								   op->staged, policy);
			op->staged = 0;
			if (!live)
				return;
			SCStatAdd(op->cache_id, SC_STAT_PUTS, 1);
			if (op->def.notify)
				SCNotifyQueue(op->cache_id, op->key, op->keylen, SC_NOTIFY_PUT,
							  op->version);
			break;
		case SC_OP_DELETE:
			live = SCStoreApplyDelete(op->hash, op->cache_id, op->key,
									  op->keylen, policy);
			if (!live)
				return;
			SCStatAdd(op->cache_id, op->evict ?
					  SC_STAT_EVICTED_USER_LIMIT : SC_STAT_DELETES, 1);
			if (op->def.notify)
				SCNotifyQueue(op->cache_id, op->key, op->keylen,
							  op->evict ? SC_NOTIFY_EVICT : SC_NOTIFY_DELETE,
							  op->version);
			break;
		case SC_OP_TOUCH:
			SCCacheRules(&op->def, &rules);
			if (SCStoreApplyTouch(op->hash, op->cache_id, op->key, op->keylen,
								  &rules, now, op->def.durable))
				SCStatAdd(op->cache_id, SC_STAT_TOUCHES, 1);
			break;
	}
}

static void
xact_reset(void)
{
	SCPendingReset();
	SCLocksXactEnd();
}

static void
xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;
	List	   *flush;
	TimestampTz now;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (SCPendingAny() || SCCachesHavePending())
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that has written to sessioncache"),
						 errdetail("Cache writes are applied when the transaction commits and cannot be handed to a prepared transaction.")));
			break;
		case XACT_EVENT_COMMIT:
			/* new and altered caches first: the ops may refer to them */
			flush = SCCachesXactEnd(true);
			foreach(lc, flush)
				SCNotifyFlushCache((const char *) lfirst(lc));
			if (SCPendingOps() != NIL)
			{
				SCCachesRefresh();	/* the store's policy reads the copy */
				now = GetCurrentTimestamp();
				foreach(lc, SCPendingOps())
					xact_apply((SCPendingOp *) lfirst(lc), now);
			}
			foreach(lc, SCPendingViews())
			{
				SCPendingView *pv = lfirst(lc);

				SCNotifyMembership(pv->cluster, pv->view_id);
			}
			SCNotifyWakeWorker();
			xact_reset();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			SCInternalWriteReset();
			(void) SCCachesXactEnd(false);
			SCPendingDiscardAll();
			xact_reset();
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			xact_reset();
			break;
		default:
			break;
	}
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			SCPendingSubXactCommit(mySubid, parentSubid);
			SCLocksSubXactCommit(mySubid, parentSubid);
			SCCachesSubXactEnd(mySubid, parentSubid, true);
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			SCInternalWriteReset();
			SCPendingSubXactAbort(mySubid);
			SCLocksSubXactAbort();
			SCCachesSubXactEnd(mySubid, parentSubid, false);
			break;
		default:
			break;
	}
}

void
SCXactInit(void)
{
	RegisterXactCallback(xact_callback, NULL);
	RegisterSubXactCallback(subxact_callback, NULL);
}

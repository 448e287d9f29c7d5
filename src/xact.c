/*-------------------------------------------------------------------------
 *
 * xact.c
 *		Cache writes staged per transaction and applied when it commits.
 *
 * A write (put, patch, incr, delete, touch) does its checks and any memory
 * allocation at once, so that every error reaches the caller, but changes
 * nothing that other sessions can see: a put copies the new entry into a
 * block of its partition that is not linked into the table.  The staged
 * operation is remembered here, tagged with the subtransaction that made it.
 *
 * - At commit the operations are applied in order (XACT_EVENT_COMMIT: the
 *   transaction is already durable and visible, and the key locks are still
 *   held, so nobody can slip in between the commit and the apply).
 * - At abort, and for a rolled-back savepoint, the staged blocks are freed
 *   and the operations forgotten: a rollback leaves no trace.
 * - A savepoint that is released hands its operations to its parent.
 * - PREPARE TRANSACTION is refused after a cache write: the staged state
 *   lives in this backend and could not outlive it.
 *
 * Writers serialize per key with a transaction-scoped heavyweight lock (an
 * advisory lock tag in a field-4 space that the SQL advisory functions do not
 * use), so read-modify-write operations such as patch and incr are atomic,
 * deadlocks are detected by PostgreSQL and a rolled-back savepoint releases
 * what it took.  A transaction that writes many keys of a cache escalates
 * to one lock on the cache (xact_lock_in_cache).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/memutils.h"

#include "sessioncache.h"

/* field 4 of our lock tags; pg_advisory_* use 1 and 2 */
#define SC_LOCK_KEY			0x5c01
#define SC_LOCK_USER		0x5c02
#define SC_LOCK_CACHE_DEFS	0x5c03
#define SC_LOCK_CACHE		0x5c04

/* build a lookup index on the pending list once it gets this long */
#define SC_PENDING_INDEX_MIN	16

typedef struct PendingIndexKey
{
	int32		cache_id;
	uint32		hash;
} PendingIndexKey;

typedef struct PendingIndexEntry
{
	PendingIndexKey k;
	List	   *ops;			/* PUT and DELETE ops on this hash, in order */
} PendingIndexEntry;

static MemoryContext pending_cxt = NULL;
static List *pending_ops = NIL;
static HTAB *pending_index = NULL;

/* membership view changes to announce at commit */
typedef struct PendingView
{
	char	   *cluster;
	int64		view_id;
	SubTransactionId subid;
} PendingView;

static List *pending_views = NIL;

/*
 * Past SC_KEY_LOCKS_SOFT key locks in one cache, a transaction tries (every
 * SC_KEY_LOCKS_SOFT keys, without waiting) to take the whole cache instead;
 * past SC_KEY_LOCKS_HARD it waits for it.  A big delete_user therefore does
 * not stall the cache's writers behind one idle transaction, and a bulk load
 * of a million keys does not fill the shared lock table.
 */
#define SC_KEY_LOCKS_SOFT	64
#define SC_KEY_LOCKS_HARD	4096

/* per cache, this transaction's key locks */
typedef struct CacheLocks
{
	int32		cache_id;
	int			nkeys;
	bool		escalated;
	SubTransactionId escalated_subid;
} CacheLocks;

static List *cache_locks = NIL;

static void
xact_lock(uint32 f1, uint32 f2, uint32 f3, uint16 kind, LOCKMODE mode)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, f1, f2, f3, kind);
	(void) LockAcquire(&tag, mode, false, false);
}

/*
 * Take the lock that covers writes of one key (or one user's new keys) of
 * a cache.  Every writer holds the cache's lock in RowExclusiveLock (taking
 * it again is a local increment); a transaction with many key locks takes
 * it in ExclusiveLock instead (see SC_KEY_LOCKS_SOFT), which keeps the
 * cache's other writers out until it ends.
 */
static void
xact_lock_in_cache(int32 cache_id, SCHash hash, uint16 kind)
{
	ListCell   *lc;
	CacheLocks *cl = NULL;
	MemoryContext old;

	xact_lock(MyDatabaseId, 0, (uint32) cache_id, SC_LOCK_CACHE, RowExclusiveLock);
	foreach(lc, cache_locks)
	{
		if (((CacheLocks *) lfirst(lc))->cache_id == cache_id)
		{
			cl = lfirst(lc);
			break;
		}
	}
	if (cl == NULL)
	{
		/* a drop_cache may have committed while we waited for the lock */
		SCCheckCacheStillDefined(cache_id);
		old = MemoryContextSwitchTo(TopTransactionContext);
		cl = palloc0(sizeof(CacheLocks));
		cl->cache_id = cache_id;
		cache_locks = lappend(cache_locks, cl);
		MemoryContextSwitchTo(old);
	}
	if (cl->escalated)
		return;
	if (++cl->nkeys > SC_KEY_LOCKS_SOFT)
	{
		LOCKTAG		tag;
		bool		got = false;

		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, (uint32) cache_id, SC_LOCK_CACHE);
		if (cl->nkeys > SC_KEY_LOCKS_HARD)
			got = (LockAcquire(&tag, ExclusiveLock, false, false) != LOCKACQUIRE_NOT_AVAIL);
		else if (cl->nkeys % SC_KEY_LOCKS_SOFT == 1)
			got = (LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL);
		if (got)
		{
			cl->escalated = true;
			cl->escalated_subid = GetCurrentSubTransactionId();
			return;
		}
	}
	xact_lock((uint32) (hash.h >> 32), (uint32) hash.h, (uint32) cache_id,
			  kind, ExclusiveLock);
}

/* Serialize writers of one key until the end of the transaction. */
void
SCLockKey(int32 cache_id, SCHash hash)
{
	xact_lock_in_cache(cache_id, hash, SC_LOCK_KEY);
}

/* Serialize writers that add entries for one user (per-user limits). */
void
SCLockUser(int32 cache_id, SCHash hash)
{
	xact_lock_in_cache(cache_id, hash, SC_LOCK_USER);
}

/* Keep every writer of a cache out until the end of the transaction. */
void
SCLockCacheExclusive(int32 cache_id)
{
	xact_lock(MyDatabaseId, 0, (uint32) cache_id, SC_LOCK_CACHE, AccessExclusiveLock);
}

/* Serialize define_cache and drop_cache. */
void
SCLockCacheDefs(void)
{
	xact_lock(MyDatabaseId, 0, 0, SC_LOCK_CACHE_DEFS, ExclusiveLock);
}

static void
pending_index_add(SCPendingOp *op)
{
	PendingIndexKey k;
	PendingIndexEntry *ent;
	bool		found;
	MemoryContext old;

	if (op->kind == SC_OP_TOUCH)
		return;
	k.cache_id = op->cache_id;
	k.hash = (uint32) op->hash.h;
	ent = hash_search(pending_index, &k, HASH_ENTER, &found);
	if (!found)
		ent->ops = NIL;
	old = MemoryContextSwitchTo(pending_cxt);
	ent->ops = lappend(ent->ops, op);
	MemoryContextSwitchTo(old);
}

static void
pending_index_build(void)
{
	HASHCTL		ctl;
	ListCell   *lc;

	ctl.keysize = sizeof(PendingIndexKey);
	ctl.entrysize = sizeof(PendingIndexEntry);
	ctl.hcxt = pending_cxt;
	pending_index = hash_create("sessioncache pending writes", 256, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	foreach(lc, pending_ops)
		pending_index_add((SCPendingOp *) lfirst(lc));
}

/*
 * Remember a staged write of the current (sub)transaction.  The caller fills
 * in staged/version/user afterwards; the op is on the list before any shared
 * memory is allocated for it, so an error in between cannot leak a block.
 */
SCPendingOp *
SCPendingAdd(SCOpKind kind, const SCCacheDef *def, SCHash hash,
			 const char *key, int keylen)
{
	MemoryContext old;
	SCPendingOp *op;

	/* the transaction's own context: it goes away with the transaction */
	if (pending_cxt == NULL)
		pending_cxt = TopTransactionContext;
	old = MemoryContextSwitchTo(pending_cxt);
	op = palloc0(sizeof(SCPendingOp));
	op->kind = kind;
	op->cache_id = def->id;
	op->def = *def;
	op->hash = hash;
	op->subid = GetCurrentSubTransactionId();
	op->key = pnstrdup(key, keylen);
	op->keylen = keylen;
	pending_ops = lappend(pending_ops, op);
	MemoryContextSwitchTo(old);

	if (pending_index != NULL)
		pending_index_add(op);
	return op;
}

/* Copy a user id into the op's context. */
void
SCPendingSetUser(SCPendingOp *op, const char *user, int userlen)
{
	op->user = NULL;
	op->userlen = 0;
	if (user)
	{
		op->user = MemoryContextAlloc(pending_cxt, userlen + 1);
		memcpy(op->user, user, userlen);
		op->user[userlen] = '\0';
		op->userlen = userlen;
	}
}

static bool
pending_matches(SCPendingOp *op, int32 cache_id, SCHash hash,
				const char *key, int keylen)
{
	return op->kind != SC_OP_TOUCH && op->cache_id == cache_id &&
		op->hash.h == hash.h && op->keylen == keylen &&
		memcmp(op->key, key, keylen) == 0;
}

/*
 * The latest staged put or delete of this key in the current transaction,
 * or NULL: what the transaction reads instead of the committed entry.
 */
SCPendingOp *
SCPendingFind(int32 cache_id, SCHash hash, const char *key, int keylen)
{
	int			i;

	if (pending_ops == NIL)
		return NULL;
	if (pending_index == NULL &&
		list_length(pending_ops) >= SC_PENDING_INDEX_MIN)
		pending_index_build();
	if (pending_index != NULL)
	{
		PendingIndexKey k;
		PendingIndexEntry *ent;

		k.cache_id = cache_id;
		k.hash = (uint32) hash.h;
		ent = hash_search(pending_index, &k, HASH_FIND, NULL);
		if (ent == NULL)
			return NULL;
		for (i = list_length(ent->ops) - 1; i >= 0; i--)
		{
			SCPendingOp *op = list_nth(ent->ops, i);

			if (pending_matches(op, cache_id, hash, key, keylen))
				return op;
		}
		return NULL;
	}
	for (i = list_length(pending_ops) - 1; i >= 0; i--)
	{
		SCPendingOp *op = list_nth(pending_ops, i);

		if (pending_matches(op, cache_id, hash, key, keylen))
			return op;
	}
	return NULL;
}

List *
SCPendingOps(void)
{
	return pending_ops;
}

/* Announce a membership view change if the current transaction commits. */
void
SCPendingViewChange(const char *cluster, int64 view_id)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PendingView *pv = palloc(sizeof(PendingView));

	pv->cluster = pstrdup(cluster);
	pv->view_id = view_id;
	pv->subid = GetCurrentSubTransactionId();
	pending_views = lappend(pending_views, pv);
	MemoryContextSwitchTo(old);
}

static void
pending_reset(void)
{
	/* the memory goes with TopTransactionContext */
	pending_ops = NIL;
	pending_index = NULL;
	pending_cxt = NULL;
	pending_views = NIL;
	cache_locks = NIL;
}

static void
xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;
	TimestampTz now;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (pending_ops != NIL || pending_views != NIL ||
				SCCachesHavePending())
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that has written to sessioncache"),
						 errdetail("Cache writes are applied when the transaction commits and cannot be handed to a prepared transaction.")));
			break;
		case XACT_EVENT_COMMIT:
			/* new and altered caches first: the ops may refer to them */
			SCCachesXactEnd(true);
			if (pending_ops != NIL)
			{
				now = GetCurrentTimestamp();
				foreach(lc, pending_ops)
					SCApplyOp((SCPendingOp *) lfirst(lc), now);
			}
			foreach(lc, pending_views)
			{
				PendingView *pv = lfirst(lc);

				SCNotifyMembership(pv->cluster, pv->view_id);
			}
			SCAfterApply();
			pending_reset();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			SCInternalWriteReset();
			SCCachesXactEnd(false);
			foreach(lc, pending_ops)
				SCDiscardOp((SCPendingOp *) lfirst(lc));
			pending_reset();
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			pending_reset();
			break;
		default:
			break;
	}
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			foreach(lc, pending_ops)
			{
				SCPendingOp *op = lfirst(lc);

				if (op->subid == mySubid)
					op->subid = parentSubid;
			}
			foreach(lc, pending_views)
			{
				PendingView *pv = lfirst(lc);

				if (pv->subid == mySubid)
					pv->subid = parentSubid;
			}
			foreach(lc, cache_locks)
			{
				CacheLocks *cl = lfirst(lc);

				if (cl->escalated && cl->escalated_subid == mySubid)
					cl->escalated_subid = parentSubid;
			}
			SCCachesSubXactEnd(mySubid, parentSubid, true);
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			SCInternalWriteReset();
			foreach(lc, pending_ops)
			{
				SCPendingOp *op = lfirst(lc);

				if (op->subid == mySubid)
				{
					SCDiscardOp(op);
					pending_ops = foreach_delete_current(pending_ops, lc);
				}
			}
			/* the index may point at discarded ops: rebuilt when next used */
			pending_index = NULL;
			foreach(lc, pending_views)
			{
				PendingView *pv = lfirst(lc);

				if (pv->subid == mySubid)
					pending_views = foreach_delete_current(pending_views, lc);
			}
			/*
			 * The savepoint's locks are released, perhaps a cache lock taken
			 * in it: forget what we know, so that the next write takes the
			 * cache lock and checks the cache again (a drop_cache may commit
			 * in between).  Escalations are taken again if still needed.
			 */
			cache_locks = NIL;
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

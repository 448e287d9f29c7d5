/*-------------------------------------------------------------------------
 *
 * pending.c
 *		The current transaction's staged writes (see pending.h).
 *
 * The list lives in TopTransactionContext.  Past SC_PENDING_INDEX_MIN ops
 * a hash index on (cache id, hash) makes finding a key's latest op O(1).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "pending.h"

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
static List *pending_views = NIL;

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

SCPendingOp *
SCPendingAdd(SCOpKind kind, const SCCacheDef *def, SCHash hash,
			 const char *key, int keylen)
{
	MemoryContext old;
	SCPendingOp *op;

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

SCPendingOp *
SCPendingFind(int32 cache_id, SCHash hash, const char *key, int keylen)
{
	List	   *ops = pending_ops;
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
		ops = ent->ops;
	}
	for (i = list_length(ops) - 1; i >= 0; i--)
	{
		SCPendingOp *op = list_nth(ops, i);

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

void
SCPendingViewChange(const char *cluster, int64 view_id)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	SCPendingView *pv = palloc(sizeof(SCPendingView));

	pv->cluster = pstrdup(cluster);
	pv->view_id = view_id;
	pv->subid = GetCurrentSubTransactionId();
	pending_views = lappend(pending_views, pv);
	MemoryContextSwitchTo(old);
}

List *
SCPendingViews(void)
{
	return pending_views;
}

bool
SCPendingAny(void)
{
	return pending_ops != NIL || pending_views != NIL;
}

void
SCPendingSubXactCommit(SubTransactionId mySubid, SubTransactionId parentSubid)
{
	ListCell   *lc;

	foreach(lc, pending_ops)
	{
		SCPendingOp *op = lfirst(lc);

		if (op->subid == mySubid)
			op->subid = parentSubid;
	}
	foreach(lc, pending_views)
	{
		SCPendingView *pv = lfirst(lc);

		if (pv->subid == mySubid)
			pv->subid = parentSubid;
	}
}

static void
pending_discard(SCPendingOp *op)
{
	if (op->staged != 0)
	{
		SCStoreFreeEntry(op->hash.partno, op->staged);
		op->staged = 0;
	}
}

void
SCPendingSubXactAbort(SubTransactionId mySubid)
{
	ListCell   *lc;

	foreach(lc, pending_ops)
	{
		SCPendingOp *op = lfirst(lc);

		if (op->subid == mySubid)
		{
			pending_discard(op);
			pending_ops = foreach_delete_current(pending_ops, lc);
		}
	}
	/* the index may point at discarded ops: rebuilt when next used */
	pending_index = NULL;
	foreach(lc, pending_views)
	{
		SCPendingView *pv = lfirst(lc);

		if (pv->subid == mySubid)
			pending_views = foreach_delete_current(pending_views, lc);
	}
}

void
SCPendingDiscardAll(void)
{
	ListCell   *lc;

	foreach(lc, pending_ops)
		pending_discard((SCPendingOp *) lfirst(lc));
}

void
SCPendingReset(void)
{
	pending_ops = NIL;
	pending_index = NULL;
	pending_cxt = NULL;
	pending_views = NIL;
}

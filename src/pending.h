/*-------------------------------------------------------------------------
 *
 * pending.h
 *		The current transaction's staged writes: cache operations waiting
 *		for commit, and membership view changes to announce.
 *
 * Backend-local; no shared state and no locks, except that discarding an
 * operation frees its staged block in the store.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_PENDING_H
#define SC_PENDING_H

#include "caches.h"
#include "store.h"

typedef enum SCOpKind
{
	SC_OP_PUT,
	SC_OP_DELETE,
	SC_OP_TOUCH
} SCOpKind;

/* one staged write of the current transaction */
typedef struct SCPendingOp
{
	SCOpKind	kind;
	int32		cache_id;
	SCCacheDef	def;			/* the cache as the write saw it */
	SCHash		hash;
	SubTransactionId subid;
	char	   *key;
	int			keylen;
	uint32		staged;			/* staged entry block, 0 = none */
	int64		version;
	char	   *user;			/* user of a put, for the overlay */
	int			userlen;
	bool		evict;			/* a delete made by a per-user limit */
} SCPendingOp;

/* a membership view change to announce at commit */
typedef struct SCPendingView
{
	char	   *cluster;
	int64		view_id;
	SubTransactionId subid;
} SCPendingView;

/*
 * Remember a staged write of the current (sub)transaction.  The caller fills
 * in staged/version/user afterwards; the op is on the list before any shared
 * memory is allocated for it, so an error in between cannot leak a block.
 */
extern SCPendingOp *SCPendingAdd(SCOpKind kind, const SCCacheDef *def,
								 SCHash hash, const char *key, int keylen);

/* Copy a user id into the op's memory. */
extern void SCPendingSetUser(SCPendingOp *op, const char *user, int userlen);

/* The latest staged put or delete of this key, or NULL. */
extern SCPendingOp *SCPendingFind(int32 cache_id, SCHash hash,
								  const char *key, int keylen);

/* Every staged op, in order. */
extern List *SCPendingOps(void);

/* Announce a membership view change if the current transaction commits. */
extern void SCPendingViewChange(const char *cluster, int64 view_id);

/* The staged view changes, in order. */
extern List *SCPendingViews(void);

/* Anything staged (PREPARE TRANSACTION refuses then)? */
extern bool SCPendingAny(void);

/* Savepoint released: its ops belong to the parent now. */
extern void SCPendingSubXactCommit(SubTransactionId mySubid,
								   SubTransactionId parentSubid);

/* Savepoint rolled back: free its staged blocks, forget its ops. */
extern void SCPendingSubXactAbort(SubTransactionId mySubid);

/* Transaction aborted: free every staged block. */
extern void SCPendingDiscardAll(void);

/* Transaction over: forget everything (memory goes with the transaction). */
extern void SCPendingReset(void);

#endif							/* SC_PENDING_H */

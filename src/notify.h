/*-------------------------------------------------------------------------
 *
 * notify.h
 *		Invalidation messages: a shared ring filled after commit, drained by
 *		the notify worker into LISTEN/NOTIFY.
 *
 * The ring has its own LWLock, taken with no partition lock held.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_NOTIFY_H
#define SC_NOTIFY_H

#include "storage/latch.h"
#include "storage/lwlock.h"

typedef enum SCNotifyOp
{
	SC_NOTIFY_PUT,
	SC_NOTIFY_DELETE,
	SC_NOTIFY_EXPIRE,
	SC_NOTIFY_EVICT,
	SC_NOTIFY_VIEW,				/* a membership view change */
	SC_NOTIFY_FLUSH_CACHE		/* a cache was dropped or redefined */
} SCNotifyOp;

#define SC_CHANNEL_SECRET_LEN	32	/* bytes of sessioncache.channel_key */
#define SC_NOTIFY_HASH_HEX		32	/* hex digits of a key_hash or mac */

/* Shared memory to request, and attaching it (shmem_startup, under
 * AddinShmemInitLock). */
extern Size SCNotifyShmemSize(void);
extern void SCNotifyShmemInit(LWLock *lock);

/*
 * Queue a committed change of a key of a cache with notify on (the caller
 * checks).  When the ring is full the message is dropped and listeners
 * will be told to flush.  Cannot fail.
 */
extern void SCNotifyQueue(int32 cache_id, const char *key, int keylen,
						  SCNotifyOp op, int64 version);

/*
 * The same for a worker that would rather wait for room than drop: waits
 * until 'deadline' at most, then drops like SCNotifyQueue.  Interruptible.
 */
extern void SCNotifyQueueWait(int32 cache_id, const char *key, int keylen,
							  SCNotifyOp op, int64 version,
							  TimestampTz deadline);

/* A cache was dropped or redefined: listeners drop all they hold of it. */
extern void SCNotifyFlushCache(const char *name);

/* Queue a membership view change (channel sessioncache_membership). */
extern void SCNotifyMembership(const char *cluster, int64 view_id);

/* Wake the worker if this backend queued anything since it last did. */
extern void SCNotifyWakeWorker(void);

/* The notify worker registers (or, NULL, withdraws) its latch. */
extern void SCNotifySetWorkerLatch(Latch *latch);

/*
 * The worker's round: send what is queued in a transaction of its own.
 * Returns the messages sent.
 */
extern int	SCNotifyDrain(void);

/* For the notify_stats view: queued, dropped, flushes. */
extern void SCNotifyCounters(uint64 *pending, uint64 *dropped,
							 uint64 *flushes);

/*
 * Read the installation's channel secret (as the extension's owner, whose
 * role id goes to *owner when not NULL).  False when the installation has
 * none (1.0's SQL).  Needs a transaction.
 */
extern bool SCNotifyReadSecret(uint8 *secret, Oid *owner);

/*
 * Hex of the first 16 bytes of HMAC-SHA256(secret, parts joined by NUL
 * bytes) into out (SC_NOTIFY_HASH_HEX + 1 bytes); a length < 0 means
 * strlen.  Needs a transaction (a resource owner).
 */
extern void SCNotifyHmacHex(const uint8 *secret, const char *const *parts,
							const int *lens, int nparts, char *out);

/* A key's key_hash: SCNotifyHmacHex of (cache, key). */
extern void SCNotifyKeyHash(const uint8 *secret, const char *cache,
							const char *key, int keylen, char *out);

#endif							/* SC_NOTIFY_H */

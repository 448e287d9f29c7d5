/*-------------------------------------------------------------------------
 *
 * membership.h
 *		Cluster membership with leases: the C side (lease epoch, reaper).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_MEMBERSHIP_H
#define SC_MEMBERSHIP_H

/* Shared memory to request, and attaching it (shmem_startup, under
 * AddinShmemInitLock). */
extern Size SCMembershipShmemSize(void);
extern void SCMembershipShmemInit(void);

/*
 * The reaper, run by the expiry worker outside any transaction: removes
 * the members whose lease lapsed, one short transaction per cluster.
 * Returns the members removed.
 */
extern int64 SCMembershipReap(void);

#endif							/* SC_MEMBERSHIP_H */

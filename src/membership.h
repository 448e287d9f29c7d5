/*-------------------------------------------------------------------------
 *
 * membership.h
 *		Cluster membership with leases: the C side (lease epoch, reaper).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_MEMBERSHIP_H
#define SC_MEMBERSHIP_H

extern Size SCMembershipShmemSize(void);
extern void SCMembershipShmemInit(void);

/*
 * The reaper, run by the expiry worker outside any transaction: removes
 * the members whose lease lapsed, one short transaction per cluster.
 * Returns the members removed.
 */
extern int64 SCMembershipReap(void);

#endif							/* SC_MEMBERSHIP_H */

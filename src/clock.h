/*-------------------------------------------------------------------------
 *
 * clock.h
 *		Entry versions: a hybrid logical clock in shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_CLOCK_H
#define SC_CLOCK_H

/* Shared memory to request, and attaching it (shmem_startup, under
 * AddinShmemInitLock). */
extern Size SCClockShmemSize(void);
extern void SCClockShmemInit(void);

/*
 * The next version: never below the current time in microseconds, so
 * versions keep rising across restarts and failovers even for keys whose
 * rows are gone.  Lock-free; cannot fail.
 */
extern int64 SCNextVersion(void);

/* Make sure versions handed out from now on exceed one seen in the table. */
extern void SCAdvanceVersion(int64 seen);

#endif							/* SC_CLOCK_H */

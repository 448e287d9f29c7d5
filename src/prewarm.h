/*-------------------------------------------------------------------------
 *
 * prewarm.h
 *		Loading durable entries into shared memory after a start.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_PREWARM_H
#define SC_PREWARM_H

/*
 * The prewarm worker's one round, outside any transaction.  Returns the
 * entries installed; stops at a shutdown request or when memory is full.
 */
extern int64 SCPrewarmRun(void);

#endif							/* SC_PREWARM_H */

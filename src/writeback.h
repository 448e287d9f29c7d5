/*-------------------------------------------------------------------------
 *
 * writeback.h
 *		Write-behind of touched idle timers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_WRITEBACK_H
#define SC_WRITEBACK_H

/*
 * One round of the writeback worker, outside any transaction: collect the
 * dirty entries of durable caches and write their idle timers to the table,
 * a chunk per transaction.  Returns the rows written.  With to_the_end, it
 * goes on after a shutdown request (the final flush).
 */
extern int64 SCWritebackRun(bool to_the_end);

#endif							/* SC_WRITEBACK_H */

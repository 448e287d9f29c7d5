/*-------------------------------------------------------------------------
 *
 * xact.h
 *		Applying the staged writes when a transaction commits, and
 *		forgetting them when it aborts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_XACT_H
#define SC_XACT_H

/* Register the transaction callbacks (from _PG_init). */
extern void SCXactInit(void);

#endif							/* SC_XACT_H */

/*-------------------------------------------------------------------------
 *
 * expiry.h
 *		The expiry worker's round.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_EXPIRY_H
#define SC_EXPIRY_H

/*
 * Advance every partition's wheel to now, delete expired rows of durable
 * caches in short transactions, reap lapsed members.  Runs outside a
 * transaction in the expiry worker; stops early on a shutdown request.
 * Returns the entries, rows and members removed.
 */
extern int64 SCExpiryRun(void);

#endif							/* SC_EXPIRY_H */

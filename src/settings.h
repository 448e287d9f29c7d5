/*-------------------------------------------------------------------------
 *
 * settings.h
 *		The sessioncache.* settings, the limits of the API, and the check
 *		every SQL entry point makes first.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_SETTINGS_H
#define SC_SETTINGS_H

/* limits of the API (API.md) */
#define SC_MAX_CACHES			64
#define SC_CACHE_NAME_MAX		63	/* bytes, without the terminator */
#define SC_KEY_MAX				255
#define SC_USER_MAX				255

/* longest timeout accepted: 100 years of 365.25 days */
#define SC_MAX_TIMEOUT_US		(INT64CONST(36525) * USECS_PER_DAY)

/* range of sessioncache.memory, in kB */
#define SC_MEMORY_MIN_KB		(8 * 1024)
#define SC_MEMORY_MAX_KB		(64 * 1024 * 1024)

/* SQLSTATEs of our own */
#define ERRCODE_SC_LEASE_LAPSED	MAKE_SQLSTATE('S','C','0','0','1')
#define ERRCODE_SC_USER_LIMIT	MAKE_SQLSTATE('S','C','0','0','2')

extern int	sc_memory_kb;
extern char *sc_database;
extern int	sc_max_value_size;
extern int	sc_expiry_interval_ms;
extern int	sc_flush_interval_ms;
extern bool sc_prewarm;

/*
 * Define the settings.  With preloading false (the library was loaded by a
 * backend, not by the postmaster) only those a backend may define are:
 * postmaster-context settings cannot be created after startup.
 */
extern void SCSettingsDefine(bool preloading);

/* sessioncache.memory in bytes */
extern Size SCSettingsMemoryBytes(void);

/* The loader says shared memory is attached in this process. */
extern void SCSettingsMarkAttached(void);

/*
 * Error 55000 unless the library was preloaded (shared memory exists) and
 * the caller is connected to sessioncache.database.  No lock.
 */
extern void SCCheckUsable(void);

#endif							/* SC_SETTINGS_H */

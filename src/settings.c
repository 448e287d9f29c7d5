/*-------------------------------------------------------------------------
 *
 * settings.c
 *		The sessioncache.* settings and the usability check.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "settings.h"

int			sc_memory_kb = 64 * 1024;
char	   *sc_database = NULL;
int			sc_max_value_size = 16 * 1024;
int			sc_expiry_interval_ms = 1000;
int			sc_flush_interval_ms = 5000;
bool		sc_prewarm = true;

/* has this process attached the shared memory (preloaded library)? */
static bool attached = false;

void
SCSettingsDefine(bool preloading)
{
	if (preloading)
	{
		DefineCustomIntVariable("sessioncache.memory",
								"Shared memory for cache entries.",
								"Divided evenly among the partitions of the table.",
								&sc_memory_kb,
								64 * 1024, SC_MEMORY_MIN_KB, SC_MEMORY_MAX_KB,
								PGC_POSTMASTER, GUC_UNIT_KB,
								NULL, NULL, NULL);
		DefineCustomStringVariable("sessioncache.database",
								   "The database that holds the sessioncache extension.",
								   "Background workers connect to it; the functions refuse to run elsewhere.",
								   &sc_database,
								   "postgres",
								   PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);
	}
	DefineCustomIntVariable("sessioncache.max_value_size",
							"Largest value, in bytes of its jsonb form.",
							NULL,
							&sc_max_value_size,
							16 * 1024, 64, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sessioncache.expiry_interval",
							"Period of the expiry worker.",
							NULL,
							&sc_expiry_interval_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sessioncache.flush_interval",
							"Period of the write-behind of touched idle timers.",
							"A crash can make an idle timer look older by at most this much.",
							&sc_flush_interval_ms,
							5000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("sessioncache.prewarm",
							 "Load durable caches into shared memory after a start.",
							 NULL,
							 &sc_prewarm,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("sessioncache");
}

Size
SCSettingsMemoryBytes(void)
{
	return (Size) sc_memory_kb * 1024;
}

void
SCSettingsMarkAttached(void)
{
	attached = true;
}

void
SCCheckUsable(void)
{
	static bool database_checked = false;

	if (!attached)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("sessioncache must be loaded via shared_preload_libraries"),
				 errhint("Add sessioncache to shared_preload_libraries in postgresql.conf and restart the server.")));
	if (!database_checked)
	{
		char	   *here = get_database_name(MyDatabaseId);

		if (here == NULL || strcmp(here, sc_database) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("sessioncache is in database \"%s\", not in \"%s\"",
							sc_database, here ? here : "?"),
					 errhint("Connect to database \"%s\", or set sessioncache.database and restart the server.",
							 sc_database)));
		database_checked = true;
	}
}

/*-------------------------------------------------------------------------
 *
 * clock.c
 *		Entry versions (see clock.h).
 *
 * A promoted standby's counter starts at its own start, and rows may carry
 * versions from before a restart: the clock never hands out a version below
 * the wall clock, nor below any version a fill or write has seen.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/atomics.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "clock.h"

static pg_atomic_uint64 *next_version = NULL;

Size
SCClockShmemSize(void)
{
	return MAXALIGN(sizeof(pg_atomic_uint64));
}

void
SCClockShmemInit(void)
{
	bool		found;

	next_version = ShmemInitStruct("sessioncache clock", SCClockShmemSize(),
								   &found);
	if (!found)
		pg_atomic_init_u64(next_version, (uint64) GetCurrentTimestamp());
}

int64
SCNextVersion(void)
{
	uint64		now = (uint64) GetCurrentTimestamp();
	uint64		cur = pg_atomic_read_u64(next_version);

	for (;;)
	{
		uint64		next = Max(cur, now);

		if (pg_atomic_compare_exchange_u64(next_version, &cur, next + 1))
			return (int64) next;
	}
}

void
SCAdvanceVersion(int64 seen)
{
	uint64		cur = pg_atomic_read_u64(next_version);

	while (cur <= (uint64) seen &&
		   !pg_atomic_compare_exchange_u64(next_version, &cur,
										   (uint64) seen + 1))
		;
}

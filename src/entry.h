/*-------------------------------------------------------------------------
 *
 * entry.h
 *		The layout of one entry in shared memory (types and inline
 *		accessors only; no functions to link against).
 *
 * An entry lives in one block of its partition's arena: this header, the
 * optional per-entry timeouts, the value (a varlena, 4-byte aligned), the
 * key and the user id.  All links are offsets within the partition's region;
 * 0 means none.  A region is at most 4 GB (settings.h bounds
 * sessioncache.memory; store.c checks it at compile time).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_ENTRY_H
#define SC_ENTRY_H

#include "datatype/timestamp.h"

/* SCEntry.flags */
#define SC_ENTRY_HAS_USER		0x01
#define SC_ENTRY_HAS_TIMEOUTS	0x02	/* per-entry timeouts follow the
										 * header */
#define SC_ENTRY_LINKED			0x04	/* in the table (not a staged copy) */
#define SC_ENTRY_DIRTY			0x08	/* last_access not yet written back */

typedef struct SCEntry
{
	uint32		hash;			/* low 32 bits of the hash of (cache, key) */
	uint32		next;			/* next entry in the same key bucket */
	uint32		user_hash;		/* hash of (cache id, user id) */
	uint32		user_next;		/* next entry in the same user bucket */
	uint32		wheel_next;		/* expiry wheel slot list */
	uint32		wheel_prev;
	int32		cache_id;
	uint32		value_len;		/* VARSIZE of the value */
	uint16		wheel_slot;		/* which expiry wheel slot holds it */
	uint8		key_len;
	uint8		user_len;
	uint8		flags;
	uint8		referenced;		/* CLOCK bit, set by readers */
	int64		version;
	int64		access_slot;	/* slot of its row's idle timer, 0 = none */
	TimestampTz created_at;
	TimestampTz last_access;
} SCEntry;

/* optional per-entry timeouts, 0 = use the cache's */
typedef struct SCEntryTimeouts
{
	int64		idle_us;
	int64		max_us;
} SCEntryTimeouts;

#define SCEntryAt(base, off)	((SCEntry *) ((base) + (off)))

static inline SCEntryTimeouts *
SCEntryGetTimeouts(SCEntry *e)
{
	return (e->flags & SC_ENTRY_HAS_TIMEOUTS) ?
		(SCEntryTimeouts *) ((char *) e + sizeof(SCEntry)) : NULL;
}

static inline char *
SCEntryValue(SCEntry *e)
{
	return (char *) e + sizeof(SCEntry) +
		((e->flags & SC_ENTRY_HAS_TIMEOUTS) ? sizeof(SCEntryTimeouts) : 0);
}

static inline char *
SCEntryKey(SCEntry *e)
{
	return SCEntryValue(e) + e->value_len;
}

static inline char *
SCEntryUser(SCEntry *e)
{
	return SCEntryKey(e) + e->key_len;
}

/*
 * least(last_access + idle, created_at + max_lifespan) with the effective
 * timeouts (the entry's own where set, else the cache's); DT_NOEND if none.
 */
static inline TimestampTz
SCExpiryOf(int64 cache_idle_us, int64 cache_max_us, const SCEntryTimeouts *t,
		   TimestampTz created_at, TimestampTz last_access)
{
	int64		idle = (t && t->idle_us) ? t->idle_us : cache_idle_us;
	int64		max = (t && t->max_us) ? t->max_us : cache_max_us;
	TimestampTz exp = DT_NOEND;

	if (idle != 0)
		exp = last_access + idle;
	if (max != 0)
		exp = Min(exp, created_at + max);
	return exp;
}

#endif							/* SC_ENTRY_H */

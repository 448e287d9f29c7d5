/*-------------------------------------------------------------------------
 *
 * wheel.h
 *		A hierarchical timing wheel over the entries of one partition.
 *
 * Three levels of 256 slots, of 1 s, 256 s and 65536 s (Varghese and
 * Lauck): an entry due within 4 minutes sits in its exact second, one due
 * within 18 hours in its 256-second span, one due within 194 days in its
 * 18-hour span; later ones wait in the farthest slot and are re-slotted
 * when it is reached.  Insert, remove and move are O(1) (a doubly linked
 * list per slot threaded through the entries).
 *
 * The caller (store.c) holds the partition's lock exclusively for every
 * call; nothing here allocates or throws.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_WHEEL_H
#define SC_WHEEL_H

#include "entry.h"

#define SC_WHEEL_BITS			8
#define SC_WHEEL_SLOTS			(1 << SC_WHEEL_BITS)
#define SC_WHEEL_LEVELS			3
#define SC_WHEEL_DETACHED		0xFFFF	/* on no slot */

typedef struct SCWheel
{
	int64		now;			/* last second fully processed */
	uint32		slots[SC_WHEEL_LEVELS * SC_WHEEL_SLOTS];
} SCWheel;

/* An empty wheel whose processed time is just before 'now'. */
extern void SCWheelInit(SCWheel *w, TimestampTz now);

/* Put an entry on the slot for its expiry time, seen from tick 'base_tick'. */
extern void SCWheelInsertFrom(SCWheel *w, char *base, uint32 off,
							  int64 base_tick, TimestampTz expires_at);

/* Put an entry on the slot for its expiry time (from the next tick). */
extern void SCWheelInsert(SCWheel *w, char *base, uint32 off,
						  TimestampTz expires_at);

/* Take an entry off its slot (no-op when it is on none). */
extern void SCWheelRemove(SCWheel *w, char *base, uint32 off);

/* Re-slot an entry whose expiry time changed. */
extern void SCWheelMove(SCWheel *w, char *base, uint32 off,
						TimestampTz expires_at);

/*
 * The slots tick 'sec' must process, in order: the cascades from the upper
 * levels at their boundaries, then the second's own slot.  Returns how many
 * (1 to 3) were written to slots[].
 */
extern int	SCWheelSlotsOfTick(int64 sec, uint16 *slots);

/* Take the first entry off a slot; 0 when the slot is empty. */
extern uint32 SCWheelPop(SCWheel *w, char *base, uint16 slot);

#endif							/* SC_WHEEL_H */

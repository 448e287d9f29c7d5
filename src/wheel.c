/*-------------------------------------------------------------------------
 *
 * wheel.c
 *		The timing wheel of one partition (see wheel.h).
 *
 * Each tick of the expiry worker visits one slot per level boundary: the
 * cost of a round is that of what expires plus the few entries cascading
 * down a level, never a scan of the table.  Redis samples, memcached
 * crawls; this visits only what is due.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "wheel.h"

#define WHEEL_MASK			(SC_WHEEL_SLOTS - 1)

/* the second an expiry time falls due in, rounded up */
static int64
wheel_second(TimestampTz t)
{
	if (t == DT_NOEND || t > PG_INT64_MAX - USECS_PER_SEC)
		return PG_INT64_MAX / 2;
	if (t < 0)
		return 0;
	return (t + USECS_PER_SEC - 1) / USECS_PER_SEC;
}

/* the slot for an entry due at second 'due', seen from tick 'base' */
static uint16
wheel_slot_for(int64 base, int64 due)
{
	if (due - base < SC_WHEEL_SLOTS)
		return (uint16) ((Max(due, base)) & WHEEL_MASK);
	if ((due >> SC_WHEEL_BITS) - (base >> SC_WHEEL_BITS) < SC_WHEEL_SLOTS)
		return (uint16) (SC_WHEEL_SLOTS + ((due >> SC_WHEEL_BITS) & WHEEL_MASK));
	if ((due >> (2 * SC_WHEEL_BITS)) - (base >> (2 * SC_WHEEL_BITS)) < SC_WHEEL_SLOTS)
		return (uint16) (2 * SC_WHEEL_SLOTS + ((due >> (2 * SC_WHEEL_BITS)) & WHEEL_MASK));
	/* beyond the horizon: the farthest slot, re-slotted when reached */
	return (uint16) (2 * SC_WHEEL_SLOTS +
					 (((base >> (2 * SC_WHEEL_BITS)) + WHEEL_MASK) & WHEEL_MASK));
}

static void
wheel_push(SCWheel *w, char *base, uint32 off, uint16 slot)
{
	SCEntry    *e = SCEntryAt(base, off);
	uint32		head = w->slots[slot];

	e->wheel_slot = slot;
	e->wheel_prev = 0;
	e->wheel_next = head;
	if (head != 0)
		SCEntryAt(base, head)->wheel_prev = off;
	w->slots[slot] = off;
}

void
SCWheelInit(SCWheel *w, TimestampTz now)
{
	memset(w->slots, 0, sizeof(w->slots));
	w->now = wheel_second(now) - 1;
}

void
SCWheelInsertFrom(SCWheel *w, char *base, uint32 off, int64 base_tick,
				  TimestampTz expires_at)
{
	wheel_push(w, base, off, wheel_slot_for(base_tick, wheel_second(expires_at)));
}

void
SCWheelInsert(SCWheel *w, char *base, uint32 off, TimestampTz expires_at)
{
	SCWheelInsertFrom(w, base, off, w->now + 1, expires_at);
}

void
SCWheelRemove(SCWheel *w, char *base, uint32 off)
{
	SCEntry    *e = SCEntryAt(base, off);

	if (e->wheel_slot == SC_WHEEL_DETACHED)
		return;
	if (e->wheel_prev != 0)
		SCEntryAt(base, e->wheel_prev)->wheel_next = e->wheel_next;
	else
		w->slots[e->wheel_slot] = e->wheel_next;
	if (e->wheel_next != 0)
		SCEntryAt(base, e->wheel_next)->wheel_prev = e->wheel_prev;
	e->wheel_next = e->wheel_prev = 0;
	e->wheel_slot = SC_WHEEL_DETACHED;
}

void
SCWheelMove(SCWheel *w, char *base, uint32 off, TimestampTz expires_at)
{
	SCWheelRemove(w, base, off);
	SCWheelInsert(w, base, off, expires_at);
}

int
SCWheelSlotsOfTick(int64 sec, uint16 *slots)
{
	int			n = 0;

	if ((sec & ((INT64CONST(1) << (2 * SC_WHEEL_BITS)) - 1)) == 0)
		slots[n++] = 2 * SC_WHEEL_SLOTS + ((sec >> (2 * SC_WHEEL_BITS)) & WHEEL_MASK);
	if ((sec & WHEEL_MASK) == 0)
		slots[n++] = SC_WHEEL_SLOTS + ((sec >> SC_WHEEL_BITS) & WHEEL_MASK);
	slots[n++] = sec & WHEEL_MASK;
	return n;
}

uint32
SCWheelPop(SCWheel *w, char *base, uint16 slot)
{
	uint32		off = w->slots[slot];

	if (off != 0)
		SCWheelRemove(w, base, off);
	return off;
}

/*-------------------------------------------------------------------------
 *
 * arena.c
 *		A bounded-time allocator for variable-size blocks in one partition.
 *
 * Every partition of the entry table owns a region of shared memory; its
 * heap is carved into blocks with an 8-byte header (size and flags, size of
 * the physically preceding block).  Free blocks are coalesced with their
 * neighbours at once and kept in segregated free lists: one list per 16-byte
 * size below 1 kB and eight lists per power of two above.  A bitmap of the
 * non-empty lists lets allocation find a fitting list without scanning, so
 * both allocation and free run in constant time and waste at most one
 * alignment unit per block.  Keys and values therefore cost what they
 * weigh, not a fixed slot.
 *
 * The caller holds the partition's lock exclusively for every call here.
 * Offsets returned are those of the payload (block + 8), relative to the
 * region's base; 0 means "no block".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/pg_bitutils.h"

#include "arena.h"

#define BLOCK_ALIGN			16
#define BLOCK_HDR			8
#define BLOCK_MIN			16
#define BLOCK_USED			0x1
#define BLOCK_SIZE_MASK		(~(uint32) (BLOCK_ALIGN - 1))
#define SMALL_LIMIT			1024	/* exact classes below this */
#define SUBCLASS_BITS		3	/* eight classes per power of two */

typedef struct ArenaBlock
{
	uint32		size_flags;		/* block size in bytes | BLOCK_USED */
	uint32		prev_size;		/* size of the preceding block, 0 if first */
	/* free blocks only: */
	uint32		next_free;
	uint32		prev_free;
} ArenaBlock;

#define BLOCK_AT(base, off)	((ArenaBlock *) ((base) + (off)))
#define BLOCK_SIZE(b)		((b)->size_flags & BLOCK_SIZE_MASK)
#define BLOCK_IS_USED(b)	(((b)->size_flags & BLOCK_USED) != 0)

/* the class a free block of exactly this size belongs to */
static int
arena_class_of(uint32 size)
{
	int			msb;

	if (size < SMALL_LIMIT)
		return size >> 4;
	msb = pg_leftmost_one_pos32(size);
	return SMALL_LIMIT / BLOCK_ALIGN +
		(msb - 10) * (1 << SUBCLASS_BITS) +
		((size >> (msb - SUBCLASS_BITS)) & ((1 << SUBCLASS_BITS) - 1));
}

/*
 * The first class whose every block is at least this big: round the request
 * up to the next class boundary, so that no list needs to be searched.
 */
static int
arena_class_for_request(uint32 size)
{
	int			msb;
	uint32		step;

	if (size < SMALL_LIMIT)
		return size >> 4;
	msb = pg_leftmost_one_pos32(size);
	step = (uint32) 1 << (msb - SUBCLASS_BITS);
	if (size & (step - 1))
	{
		if (size > PG_UINT32_MAX - step)
			return SC_ARENA_NBINS;
		size = (size + step) & ~(step - 1);
	}
	return arena_class_of(size);
}

static void
arena_list_insert(SCArena *arena, char *base, uint32 off)
{
	ArenaBlock *b = BLOCK_AT(base, off);
	int			cls = arena_class_of(BLOCK_SIZE(b));
	uint32		head = arena->bins[cls];

	b->prev_free = 0;
	b->next_free = head;
	if (head != 0)
		BLOCK_AT(base, head)->prev_free = off;
	arena->bins[cls] = off;
	arena->bitmap[cls / 64] |= UINT64CONST(1) << (cls % 64);
}

static void
arena_list_remove(SCArena *arena, char *base, uint32 off)
{
	ArenaBlock *b = BLOCK_AT(base, off);
	int			cls = arena_class_of(BLOCK_SIZE(b));

	if (b->prev_free != 0)
		BLOCK_AT(base, b->prev_free)->next_free = b->next_free;
	else
	{
		Assert(arena->bins[cls] == off);
		arena->bins[cls] = b->next_free;
		if (b->next_free == 0)
			arena->bitmap[cls / 64] &= ~(UINT64CONST(1) << (cls % 64));
	}
	if (b->next_free != 0)
		BLOCK_AT(base, b->next_free)->prev_free = b->prev_free;
}

/* the first non-empty class at or above cls, or -1 */
static int
arena_find_class(SCArena *arena, int cls)
{
	int			word = cls / 64;
	uint64		bits;

	if (cls >= SC_ARENA_NBINS)
		return -1;
	bits = arena->bitmap[word] & (~UINT64CONST(0) << (cls % 64));
	for (;;)
	{
		if (bits != 0)
			return word * 64 + pg_rightmost_one_pos64(bits);
		if (++word >= SC_ARENA_BITMAP_WORDS)
			return -1;
		bits = arena->bitmap[word];
	}
}

/*
 * Set up an empty heap in [heap_start, heap_end): one free block and a used
 * end sentinel that stops coalescing.
 */
void
SCArenaInit(SCArena *arena, char *base, uint32 heap_start, uint32 heap_end)
{
	ArenaBlock *first;
	ArenaBlock *sentinel;
	uint32		size;

	heap_start = TYPEALIGN(BLOCK_ALIGN, heap_start);
	heap_end = TYPEALIGN_DOWN(BLOCK_ALIGN, heap_end) - BLOCK_ALIGN;
	if (heap_start == 0)
		heap_start = BLOCK_ALIGN;	/* offset 0 means "none" */
	Assert(heap_end > heap_start + BLOCK_MIN);

	memset(arena, 0, sizeof(SCArena));
	arena->heap_start = heap_start;
	arena->heap_end = heap_end;

	size = heap_end - heap_start;
	first = BLOCK_AT(base, heap_start);
	first->size_flags = size;
	first->prev_size = 0;
	sentinel = BLOCK_AT(base, heap_end);
	sentinel->size_flags = BLOCK_ALIGN | BLOCK_USED;
	sentinel->prev_size = size;
	arena_list_insert(arena, base, heap_start);
}

/*
 * Allocate a block with room for nbytes of payload.  Returns the payload's
 * offset, or 0 when no free block is big enough.
 */
uint32
SCArenaAlloc(SCArena *arena, char *base, Size nbytes)
{
	uint32		size;
	int			cls;
	uint32		off;
	ArenaBlock *b;
	uint32		bsize;

	if (nbytes > (Size) (arena->heap_end - arena->heap_start))
		return 0;
	size = TYPEALIGN(BLOCK_ALIGN, nbytes + BLOCK_HDR);
	size = Max(size, BLOCK_MIN);

	cls = arena_find_class(arena, arena_class_for_request(size));
	if (cls < 0)
		return 0;
	off = arena->bins[cls];
	b = BLOCK_AT(base, off);
	bsize = BLOCK_SIZE(b);
	Assert(bsize >= size && !BLOCK_IS_USED(b));
	arena_list_remove(arena, base, off);

	if (bsize - size >= BLOCK_MIN)
	{
		/* split; the rest goes back to a free list */
		uint32		rest_off = off + size;
		ArenaBlock *rest = BLOCK_AT(base, rest_off);

		rest->size_flags = bsize - size;
		rest->prev_size = size;
		BLOCK_AT(base, rest_off + (bsize - size))->prev_size = bsize - size;
		arena_list_insert(arena, base, rest_off);
		bsize = size;
	}
	b->size_flags = bsize | BLOCK_USED;
	arena->used_bytes += bsize;
	return off + BLOCK_HDR;
}

/* Free the block whose payload is at off, merging it with free neighbours. */
void
SCArenaFree(SCArena *arena, char *base, uint32 off)
{
	uint32		boff = off - BLOCK_HDR;
	ArenaBlock *b = BLOCK_AT(base, boff);
	uint32		size = BLOCK_SIZE(b);
	ArenaBlock *next;

	if (!BLOCK_IS_USED(b))
		elog(PANIC, "sessioncache: double free of block %u", boff);
	arena->used_bytes -= size;

	next = BLOCK_AT(base, boff + size);
	if (!BLOCK_IS_USED(next))
	{
		arena_list_remove(arena, base, boff + size);
		size += BLOCK_SIZE(next);
	}
	if (b->prev_size != 0)
	{
		uint32		prev_off = boff - b->prev_size;
		ArenaBlock *prev = BLOCK_AT(base, prev_off);

		if (!BLOCK_IS_USED(prev))
		{
			arena_list_remove(arena, base, prev_off);
			size += BLOCK_SIZE(prev);
			boff = prev_off;
			b = prev;
		}
	}
	b->size_flags = size;
	BLOCK_AT(base, boff + size)->prev_size = size;
	arena_list_insert(arena, base, boff);
}

/*
 * The payload bytes of the largest free block: the highest non-empty class
 * holds it; look at up to 64 blocks of that class (a class spans an eighth
 * of a power of two, so the answer is exact or within that much).
 */
Size
SCArenaLargestFree(SCArena *arena, char *base)
{
	int			word;
	uint32		best = 0;

	for (word = SC_ARENA_BITMAP_WORDS - 1; word >= 0; word--)
	{
		if (arena->bitmap[word] != 0)
		{
			int			cls = word * 64 + pg_leftmost_one_pos64(arena->bitmap[word]);
			uint32		f = arena->bins[cls];
			int			seen = 0;

			for (; f != 0 && seen < 64; f = BLOCK_AT(base, f)->next_free, seen++)
				best = Max(best, BLOCK_SIZE(BLOCK_AT(base, f)));
			break;
		}
	}
	return best > BLOCK_HDR ? best - BLOCK_HDR : 0;
}

/*
 * Walk the heap and check its invariants: sizes chain to the sentinel,
 * prev_size matches, no two free blocks touch, the used count adds up and
 * every free block is on the list of its class.  For tests.
 */
bool
SCArenaCheck(SCArena *arena, char *base)
{
	uint32		off = arena->heap_start;
	uint32		prev_size = 0;
	bool		prev_free = false;
	uint64		used = 0;
	uint64		nfree = 0;
	uint64		listed = 0;
	int			cls;

	while (off < arena->heap_end)
	{
		ArenaBlock *b = BLOCK_AT(base, off);
		uint32		size = BLOCK_SIZE(b);

		if (size < BLOCK_MIN || b->prev_size != prev_size ||
			off + size > arena->heap_end)
			return false;
		if (BLOCK_IS_USED(b))
		{
			used += size;
			prev_free = false;
		}
		else
		{
			if (prev_free)
				return false;
			nfree++;
			prev_free = true;
		}
		prev_size = size;
		off += size;
	}
	if (off != arena->heap_end || used != arena->used_bytes ||
		BLOCK_AT(base, off)->prev_size != prev_size)
		return false;

	for (cls = 0; cls < SC_ARENA_NBINS; cls++)
	{
		uint32		f = arena->bins[cls];
		bool		bit = (arena->bitmap[cls / 64] >> (cls % 64)) & 1;

		if ((f != 0) != bit)
			return false;
		for (; f != 0; f = BLOCK_AT(base, f)->next_free)
		{
			if (BLOCK_IS_USED(BLOCK_AT(base, f)) ||
				arena_class_of(BLOCK_SIZE(BLOCK_AT(base, f))) != cls)
				return false;
			if (++listed > nfree)
				return false;
		}
	}
	return listed == nfree;
}

/*-------------------------------------------------------------------------
 *
 * arena.h
 *		A bounded-time allocator for variable-size blocks inside one region
 *		of shared memory (one partition of the store).
 *
 * Every call expects the caller to hold the lock that protects the region
 * exclusively (SCArenaLargestFree and SCArenaCheck: shared is enough).  None
 * allocates backend memory or throws.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SC_ARENA_H
#define SC_ARENA_H

/*
 * Free blocks are kept in segregated lists: exact 16-byte classes below
 * 1 kB, then eight classes per power of two.  A bitmap of non-empty lists
 * makes both allocation and free O(1).
 */
#define SC_ARENA_NBINS			240
#define SC_ARENA_BITMAP_WORDS	((SC_ARENA_NBINS + 63) / 64)

/* offsets inside a region are uint32: a region is at most 4 GB */
typedef struct SCArena
{
	uint32		heap_start;		/* offset of the first block in the region */
	uint32		heap_end;		/* offset of the end sentinel */
	uint64		used_bytes;		/* bytes in allocated blocks, headers included */
	uint64		bitmap[SC_ARENA_BITMAP_WORDS];
	uint32		bins[SC_ARENA_NBINS];	/* first free block of each class */
} SCArena;

/* Make [heap_start, heap_end) of the region at base one free block. */
extern void SCArenaInit(SCArena *arena, char *base, uint32 heap_start,
						uint32 heap_end);

/* A block of at least nbytes; its payload's offset, or 0 when none fits. */
extern uint32 SCArenaAlloc(SCArena *arena, char *base, Size nbytes);

/* Free the block whose payload is at off, coalescing with free neighbours. */
extern void SCArenaFree(SCArena *arena, char *base, uint32 off);

/* The largest free block's size (a bitmap lookup, not a scan). */
extern Size SCArenaLargestFree(SCArena *arena, char *base);

/* Walk the heap and the free lists; false when an invariant is broken. */
extern bool SCArenaCheck(SCArena *arena, char *base);

#endif							/* SC_ARENA_H */

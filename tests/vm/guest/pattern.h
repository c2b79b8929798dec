/*
 * Shared by the vm tests (host, glibc) and the test init (guest, musl):
 * the deterministic byte pattern written to disks and the hash both sides
 * compare. Not cryptographic; it only has to make a wrong byte visible.
 */
#ifndef SM_TEST_PATTERN_H
#define SM_TEST_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#define PATTERN_FNV_OFFSET 0xcbf29ce484222325ULL
#define PATTERN_FNV_PRIME 0x100000001b3ULL

/* xorshift64*: byte i of the pattern for seed s depends only on (s, i). */
static inline void pattern_fill(uint8_t *buf, size_t len, uint64_t seed, uint64_t offset)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t x = seed ^ ((offset + i) / 8 + 1) * 0x9e3779b97f4a7c15ULL;
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		x *= 0x2545f4914f6cdd1dULL;
		buf[i] = (uint8_t)(x >> (8 * ((offset + i) % 8)));
	}
}

/* FNV-1a 64, continued from h (start with PATTERN_FNV_OFFSET). */
static inline uint64_t pattern_hash(uint64_t h, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= buf[i];
		h *= PATTERN_FNV_PRIME;
	}
	return h;
}

#endif

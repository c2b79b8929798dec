/*
 * A byte stream through a socket and back, checked end to end: one thread
 * writes `len` pseudo-random bytes to fd, another reads `len` bytes back
 * from it; SHA-256 of both sides must match. Used by the vsock tests (unit,
 * against the synthetic guest's echo; vm, against a real guest's).
 */
#ifndef SM_TESTS_STREAM_CHECK_H
#define SM_TESTS_STREAM_CHECK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct stream_check {
	int fd;
	uint64_t len;
	uint64_t got;
	uint8_t md_in[32], md_out[32];
	bool done;
	pthread_t writer, reader;
};

/* Starts both threads on fd (a blocking socket). */
void stream_check_start(struct stream_check *s, int fd, uint64_t len);
/* Has the reader finished (all bytes, or EOF/error)? For polling loops. */
bool stream_check_done(void *s);
/* Shuts fd down, joins both threads; true when every byte came back intact. */
bool stream_check_finish(struct stream_check *s);

#endif

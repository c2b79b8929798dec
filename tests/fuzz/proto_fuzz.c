/*
 * libFuzzer target for the agent protocol decoder (src/proto): the input
 * is a byte stream as a peer would send it. Every frame found is decoded
 * by the decoder of its type; whatever a decoder accepts must re-encode
 * to exactly the same bytes (the encoding is canonical), so a decoder
 * that accepts something the encoder could not have produced is a bug.
 * The same stream also goes through proto_reader over a pipe.
 *
 * tests/unit/test_proto.c links this file to replay the seed corpus.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/proto.h"
#include "proto_fuzz.h"

/* Re-encodes a decoded frame into b; -1 if the type has no decoder here. */
static int reencode(const struct proto_frame *f, struct proto_buf *b)
{
	union {
		struct proto_hello hello;
		struct proto_exec exec;
		struct proto_file file;
		struct proto_resize resize;
		struct proto_shutdown shutdown;
		struct proto_error error;
		struct proto_exit exit;
		struct proto_file_info info;
		struct proto_pong pong;
		struct proto_probe_result probe;
		struct proto_config config;
		struct proto_resume resume;
	} m;
	const char *path;
	uint32_t v32;
	uint64_t v64;
	uint16_t port;
	int sig, rc = -1;
	const uint8_t *p;
	size_t n;

	switch (f->type) {
	case PROTO_HELLO:
		if (proto_decode_hello(f, &m.hello) == 0)
			rc = proto_encode_hello(b, &m.hello);
		break;
	case PROTO_EXEC:
		if (proto_decode_exec(f, &m.exec) == 0) {
			rc = proto_encode_exec(b, &m.exec);
			proto_exec_release(&m.exec);
		}
		break;
	case PROTO_WRITE_FILE:
	case PROTO_FILE:
		if (proto_decode_file(f, &m.file) == 0)
			rc = proto_encode_file(b, f->type, &m.file);
		break;
	case PROTO_READ_FILE:
		if (proto_decode_path(f, &path) == 0)
			rc = proto_encode_path(b, f->type, path);
		break;
	case PROTO_TCP_CONNECT:
		if (proto_decode_port(f, &port) == 0)
			rc = proto_encode_u32(b, f->type, port);
		break;
	case PROTO_PROBE_LISTEN:
		if (proto_decode_probe(f, &port) == 0)
			rc = proto_encode_u32(b, f->type, port);
		break;
	case PROTO_QUIESCE:
		if (proto_decode_quiesce(f, &v32) == 0)
			rc = proto_encode_u32(b, f->type, v32);
		break;
	case PROTO_STARTED:
		if (proto_decode_u32(f, &v32) == 0)
			rc = proto_encode_u32(b, f->type, v32);
		break;
	case PROTO_SIGNAL:
	case PROTO_SIGNAL_WORKLOAD:
		if (proto_decode_signal(f, &sig) == 0)
			rc = proto_encode_u32(b, f->type, (uint32_t)sig);
		break;
	case PROTO_SET_TIME:
	case PROTO_COUNTER:
		if (proto_decode_u64(f, &v64) == 0)
			rc = proto_encode_u64(b, f->type, v64);
		break;
	case PROTO_PING:
	case PROTO_HEARTBEAT:
	case PROTO_OK:
		if (proto_decode_empty(f) == 0)
			rc = proto_encode_empty(b, f->type);
		break;
	case PROTO_ADD_ENTROPY:
		if (proto_decode_entropy(f, &p, &n) == 0)
			rc = proto_encode_data(b, f->type, 0, p, n);
		break;
	case PROTO_STDIN:
	case PROTO_STDOUT:
	case PROTO_STDERR:
	case PROTO_DATA:
		rc = proto_encode_data(b, f->type, f->flags, f->payload, f->len);
		break;
	case PROTO_RESUME:
		if (proto_decode_resume(f, &m.resume) == 0)
			rc = proto_encode_resume(b, &m.resume);
		break;
	case PROTO_RESIZE:
		if (proto_decode_resize(f, &m.resize) == 0)
			rc = proto_encode_resize(b, &m.resize);
		break;
	case PROTO_SHUTDOWN:
		if (proto_decode_shutdown(f, &m.shutdown) == 0)
			rc = proto_encode_shutdown(b, &m.shutdown);
		break;
	case PROTO_ERROR:
		if (proto_decode_error(f, &m.error) == 0)
			rc = proto_encode_error(b, (int)m.error.err, "%s", m.error.message);
		break;
	case PROTO_EXIT:
		if (proto_decode_exit(f, &m.exit) == 0)
			rc = proto_encode_exit(b, &m.exit);
		break;
	case PROTO_FILE_INFO:
		if (proto_decode_file_info(f, &m.info) == 0)
			rc = proto_encode_file_info(b, &m.info);
		break;
	case PROTO_PONG:
		if (proto_decode_pong(f, &m.pong) == 0)
			rc = proto_encode_pong(b, &m.pong);
		break;
	case PROTO_PROBE_RESULT:
		if (proto_decode_probe_result(f, &m.probe) == 0)
			rc = proto_encode_probe_result(b, &m.probe);
		break;
	case PROTO_GUEST_CONFIG:
		if (proto_decode_config(f, &m.config) == 0) {
			rc = proto_encode_config(b, &m.config);
			proto_config_release(&m.config);
		}
		break;
	}
	return rc;
}

int proto_fuzz_frame(const struct proto_frame *f)
{
	struct proto_buf b = { 0 };
	int accepted = reencode(f, &b) == 0;

	if (accepted && (b.len != PROTO_HDR_SIZE + f->len || memcmp(b.data + PROTO_HDR_SIZE, f->payload, f->len) ||
			 b.data[0] != f->type || b.data[1] != f->flags)) {
		fprintf(stderr, "proto: a '%s' frame of %u bytes decoded but re-encodes differently\n",
			proto_type_name(f->type), f->len);
		abort();
	}
	proto_buf_free(&b);
	return accepted;
}

/* The same bytes through the fd reader, as they would arrive on a socket. */
static void through_reader(const uint8_t *data, size_t size, bool exact)
{
	struct proto_reader r;
	struct proto_frame f;
	int p[2];

	/* Within a pipe's capacity, so writing never blocks. */
	if (size > 60000 || pipe(p) < 0)
		return;
	if (write(p[1], data, size) != (ssize_t)size) {
		close(p[0]);
		close(p[1]);
		return;
	}
	close(p[1]);
	proto_reader_init(&r, exact);
	while (proto_reader_next(&r, p[0], &f) == 1)
		proto_fuzz_frame(&f);
	proto_reader_free(&r);
	close(p[0]);
}

int proto_fuzz_one(const uint8_t *data, size_t size)
{
	struct proto_frame f;
	size_t off = 0, used;
	int frames = 0;

	while (proto_frame_parse(data + off, size - off, &f, &used) == 1) {
		frames += proto_fuzz_frame(&f);
		off += used;
	}
	through_reader(data, size, size & 1);
	return frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_fuzz_one(data, size);
	return 0;
}

/*
 * The wire codec: round trips of every message, and rejection of every
 * malformed frame (each truncation, trailing bytes, bad strings, counts
 * past the payload, out-of-range values, bad headers); the fd reader over
 * split and short streams; and a replay of the fuzz target's seed corpus.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../fuzz/proto_fuzz.h"
#include "proto/proto.h"

TestSuite(proto, .timeout = 60);

/* The single frame in b. */
static struct proto_frame only_frame(const struct proto_buf *b)
{
	struct proto_frame f;
	size_t used;

	cr_assert_eq(proto_frame_parse(b->data, b->len, &f, &used), 1);
	cr_assert_eq(used, b->len, "more than one frame");
	return f;
}

/*
 * The frame in b decodes (through the fuzz target's decoder-by-type), but
 * no shorter payload does, and neither does one with a byte added.
 */
static void check_strict(const struct proto_buf *b)
{
	struct proto_frame f = only_frame(b), g;
	uint8_t *longer = malloc(f.len + 1);

	cr_assert_eq(proto_fuzz_frame(&f), 1, "a valid '%s' frame was rejected", proto_type_name(f.type));
	for (uint32_t n = 0; n < f.len; n++) {
		g = f;
		g.len = n;
		cr_assert_eq(proto_fuzz_frame(&g), 0, "'%s' truncated to %u of %u bytes was accepted",
			     proto_type_name(f.type), n, f.len);
	}
	memcpy(longer, f.payload, f.len);
	longer[f.len] = 0;
	g = f;
	g.payload = longer;
	g.len = f.len + 1;
	cr_assert_eq(proto_fuzz_frame(&g), 0, "'%s' with a trailing byte was accepted", proto_type_name(f.type));
	free(longer);
}

Test(proto, header_checks)
{
	uint8_t h[8] = { PROTO_STDOUT, PROTO_FLAG_EOF, 0, 0, 5, 0, 0, 0 };
	struct proto_frame f;

	cr_expect_eq(proto_hdr_decode(h, &f), 0);
	cr_expect_eq(f.len, 5);
	h[0] = 99; /* unknown type */
	cr_expect_eq(proto_hdr_decode(h, &f), -EPROTO);
	h[0] = PROTO_EXEC; /* EOF flag only on streams */
	cr_expect_eq(proto_hdr_decode(h, &f), -EPROTO);
	h[1] = 0;
	cr_expect_eq(proto_hdr_decode(h, &f), 0);
	h[2] = 1; /* reserved */
	cr_expect_eq(proto_hdr_decode(h, &f), -EPROTO);
	h[2] = 0;
	h[0] = PROTO_STDIN;
	h[1] = 0x02; /* unknown flag */
	cr_expect_eq(proto_hdr_decode(h, &f), -EPROTO);
	h[1] = 0;
	h[4] = 1, h[5] = 0, h[6] = 0x10, h[7] = 0; /* 1 MiB + 1 */
	cr_expect_eq(proto_hdr_decode(h, &f), -EPROTO);
	h[4] = 0; /* exactly 1 MiB */
	cr_expect_eq(proto_hdr_decode(h, &f), 0);
}

Test(proto, frame_parse_needs_whole_frame)
{
	struct proto_buf b = { 0 };
	struct proto_frame f;
	size_t used;

	proto_encode_data(&b, PROTO_STDOUT, 0, "hello", 5);
	for (size_t n = 0; n < b.len; n++)
		cr_expect_eq(proto_frame_parse(b.data, n, &f, &used), 0);
	cr_expect_eq(proto_frame_parse(b.data, b.len, &f, &used), 1);
	cr_expect_eq(f.len, 5);
	cr_expect(memcmp(f.payload, "hello", 5) == 0);
	proto_buf_free(&b);
}

Test(proto, hello)
{
	struct proto_buf b = { 0 };
	struct proto_hello h = { PROTO_MAGIC, PROTO_VERSION, PROTO_CAP_CGROUP }, d;
	struct proto_frame f;

	cr_assert_eq(proto_encode_hello(&b, &h), 0);
	check_strict(&b);
	f = only_frame(&b);
	cr_assert_eq(proto_decode_hello(&f, &d), 0);
	cr_expect_eq(d.caps, PROTO_CAP_CGROUP);
	b.data[8] ^= 1; /* magic */
	f = only_frame(&b);
	cr_expect_eq(proto_decode_hello(&f, &d), -EPROTO);
	proto_buf_free(&b);
}

static struct proto_exec sample_exec(void)
{
	static const char *env[] = { "A=1", "EMPTY=", NULL };
	static const char *c0[] = { "cc", "-O2", "/tmp/main.c", NULL };
	static const char *c1[] = { "/tmp/m", NULL };
	static const char **cmds[] = { c0, c1 };

	return (struct proto_exec){ .flags = PROTO_EXEC_TTY, .rows = 40, .cols = 120, .timeout_ms = 30000,
				    .cwd = "/work", .user = "1000:100", .nenv = 2, .env = env, .ncmds = 2,
				    .cmds = cmds, .nfiles = 1 };
}

Test(proto, exec_round_trip)
{
	struct proto_buf b = { 0 };
	struct proto_exec e = sample_exec(), d;
	struct proto_frame f;

	cr_assert_eq(proto_encode_exec(&b, &e), 0);
	check_strict(&b);
	f = only_frame(&b);
	cr_assert_eq(proto_decode_exec(&f, &d), 0);
	cr_expect_eq(d.flags, PROTO_EXEC_TTY);
	cr_expect_eq(d.rows, 40);
	cr_expect_eq(d.cols, 120);
	cr_expect_eq(d.timeout_ms, 30000);
	cr_expect_str_eq(d.cwd, "/work");
	cr_expect_str_eq(d.user, "1000:100");
	cr_assert_eq(d.nenv, 2);
	cr_expect_str_eq(d.env[1], "EMPTY=");
	cr_expect_null(d.env[2]);
	cr_assert_eq(d.ncmds, 2);
	cr_expect_str_eq(d.cmds[0][2], "/tmp/main.c");
	cr_expect_null(d.cmds[0][3]);
	cr_expect_str_eq(d.cmds[1][0], "/tmp/m");
	cr_expect_null(d.cmds[1][1]);
	cr_expect_eq(d.nfiles, 1);
	proto_exec_release(&d);
	proto_buf_free(&b);
}

/* Encodes e and expects its decoder to refuse it. */
static void exec_rejected(struct proto_exec e, const char *why)
{
	struct proto_buf b = { 0 };
	struct proto_exec d;
	struct proto_frame f;

	cr_assert_eq(proto_encode_exec(&b, &e), 0);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_exec(&f, &d), -EPROTO, "accepted: %s", why);
	proto_buf_free(&b);
}

Test(proto, exec_invalid_values)
{
	static const char *bad_env[] = { "NOEQUALS", NULL };
	static const char *eq_first[] = { "=x", NULL };
	static const char *empty0[] = { "", NULL };
	static const char *none[] = { NULL };
	static const char **cmds_empty0[] = { empty0 };
	static const char **cmds_none[] = { none };
	static const char *one[] = { "true", NULL };
	static const char **many[PROTO_MAX_CHAIN + 1];
	struct proto_exec e;

	e = sample_exec(), e.env = bad_env, e.nenv = 1;
	exec_rejected(e, "env entry without =");
	e = sample_exec(), e.env = eq_first, e.nenv = 1;
	exec_rejected(e, "env entry with an empty key");
	e = sample_exec(), e.cwd = "relative";
	exec_rejected(e, "relative cwd");
	e = sample_exec(), e.flags = 0x80;
	exec_rejected(e, "unknown flags");
	e = sample_exec(), e.nfiles = PROTO_MAX_STAGED + 1;
	exec_rejected(e, "too many staged files");
	e = sample_exec(), e.ncmds = 0;
	exec_rejected(e, "no command");
	e = sample_exec(), e.cmds = cmds_empty0, e.ncmds = 1;
	exec_rejected(e, "empty argv[0]");
	e = sample_exec(), e.cmds = cmds_none, e.ncmds = 1;
	exec_rejected(e, "empty argv");
	for (size_t i = 0; i < PROTO_MAX_CHAIN + 1; i++)
		many[i] = one;
	e = sample_exec(), e.cmds = many, e.ncmds = PROTO_MAX_CHAIN + 1;
	exec_rejected(e, "chain too long");
}

/* A hand-built exec payload whose env count claims far more entries than it holds. */
Test(proto, counts_bounded_by_payload)
{
	struct proto_buf b = { 0 };
	struct proto_exec d;
	struct proto_frame f;
	size_t s = proto_frame_begin(&b, PROTO_EXEC, 0);

	proto_put_u32(&b, 0);
	proto_put_u16(&b, 0);
	proto_put_u16(&b, 0);
	proto_put_u32(&b, 0);
	proto_put_str(&b, "");
	proto_put_str(&b, "");
	proto_put_u32(&b, 4000); /* env count, within PROTO_MAX_LIST, but 0 strings follow */
	proto_put_u32(&b, 1);
	proto_frame_end(&b, s);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_exec(&f, &d), -EPROTO);
	proto_buf_free(&b);
}

Test(proto, strings)
{
	struct proto_buf b = { 0 };
	const char *path;
	struct proto_frame f;
	size_t s;

	/* no NUL at the end */
	s = proto_frame_begin(&b, PROTO_READ_FILE, 0);
	proto_put_u32(&b, 3);
	proto_put_bytes(&b, "/ab", 3);
	proto_frame_end(&b, s);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_path(&f, &path), -EPROTO);
	/* a NUL inside */
	b.len = 0;
	s = proto_frame_begin(&b, PROTO_READ_FILE, 0);
	proto_put_u32(&b, 4);
	proto_put_bytes(&b, "/a\0b", 4);
	proto_frame_end(&b, s);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_path(&f, &path), -EPROTO);
	/* zero length: not even the NUL */
	b.len = 0;
	s = proto_frame_begin(&b, PROTO_READ_FILE, 0);
	proto_put_u32(&b, 0);
	proto_frame_end(&b, s);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_path(&f, &path), -EPROTO);
	/* a length past the payload */
	b.len = 0;
	s = proto_frame_begin(&b, PROTO_READ_FILE, 0);
	proto_put_u32(&b, 0xfffffff0u);
	proto_put_bytes(&b, "/x", 3);
	proto_frame_end(&b, s);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_path(&f, &path), -EPROTO);
	/* longer than PATH_MAX */
	char *longp = malloc(PROTO_MAX_PATH + 2);
	memset(longp, 'a', PROTO_MAX_PATH + 1);
	longp[0] = '/';
	longp[PROTO_MAX_PATH + 1] = 0;
	b.len = 0;
	proto_encode_path(&b, PROTO_READ_FILE, longp);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_path(&f, &path), -EPROTO);
	longp[PROTO_MAX_PATH] = 0;
	b.len = 0;
	proto_encode_path(&b, PROTO_READ_FILE, longp);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_path(&f, &path), 0);
	free(longp);
	proto_buf_free(&b);
}

Test(proto, every_message_strict)
{
	struct proto_buf b = { 0 };
	struct proto_file file = { "/tmp/f", 0755 };
	struct proto_resize rs = { 50, 132 };
	struct proto_shutdown sd = { 1000 };
	struct proto_exit ex = { PROTO_SIGNALED, 1, 9, 3, 123456789, 4096 };
	struct proto_file_info fi = { 1 << 30, 0100644 };
	struct proto_pong pong = { 1, 2 };
	struct proto_probe_result pr = { 1, 8080 };
	static const uint8_t entropy[32] = { 1, 2, 3 };

#define STRICT(expr)                          \
	do {                                  \
		b.len = 0;                    \
		cr_assert_eq((expr), 0);      \
		check_strict(&b);             \
	} while (0)
	STRICT(proto_encode_file(&b, PROTO_FILE, &file));
	STRICT(proto_encode_file(&b, PROTO_WRITE_FILE, &file));
	STRICT(proto_encode_path(&b, PROTO_READ_FILE, "/etc/passwd"));
	STRICT(proto_encode_u32(&b, PROTO_TCP_CONNECT, 6379));
	STRICT(proto_encode_u32(&b, PROTO_PROBE_LISTEN, 0));
	STRICT(proto_encode_u32(&b, PROTO_QUIESCE, 100));
	STRICT(proto_encode_u32(&b, PROTO_SIGNAL, SIGTERM));
	STRICT(proto_encode_u32(&b, PROTO_SIGNAL_WORKLOAD, 64));
	STRICT(proto_encode_u32(&b, PROTO_STARTED, 42));
	STRICT(proto_encode_u64(&b, PROTO_SET_TIME, 1700000000000000000ull));
	STRICT(proto_encode_u64(&b, PROTO_COUNTER, 7));
	STRICT(proto_encode_resize(&b, &rs));
	STRICT(proto_encode_shutdown(&b, &sd));
	STRICT(proto_encode_error(&b, ENOENT, "open %s: %s", "/x", "No such file or directory"));
	STRICT(proto_encode_exit(&b, &ex));
	STRICT(proto_encode_file_info(&b, &fi));
	STRICT(proto_encode_pong(&b, &pong));
	STRICT(proto_encode_probe_result(&b, &pr));
#undef STRICT
	/* Raw bytes: any length from 1 to the limit is a valid entropy frame. */
	b.len = 0;
	cr_assert_eq(proto_encode_data(&b, PROTO_ADD_ENTROPY, 0, entropy, sizeof(entropy)), 0);
	struct proto_frame f = only_frame(&b);
	cr_expect_eq(proto_fuzz_frame(&f), 1);
	proto_buf_free(&b);
}

/* Values each decoder must refuse although the shape is right. */
Test(proto, resume_round_trip_and_bounds)
{
	uint8_t rnd[PROTO_MAX_ENTROPY + 1];
	struct proto_buf b = { 0 };
	struct proto_resume r;
	struct proto_frame f;

	for (size_t i = 0; i < sizeof(rnd); i++)
		rnd[i] = (uint8_t)(i * 7);
	cr_assert(proto_encode_resume(&b, &(struct proto_resume){ 1700000000123456789ull, rnd, 64 }) == 0);
	f = only_frame(&b);
	cr_expect_eq(proto_fuzz_frame(&f), 1); /* decodes and re-encodes to the same bytes */
	f.len = 8 + PROTO_MIN_RESUME_ENTROPY - 1; /* cut inside the minimum */
	cr_expect_eq(proto_decode_resume(&f, &r), -EPROTO);
	f.len = 7; /* cut inside the clock */
	cr_expect_eq(proto_decode_resume(&f, &r), -EPROTO);
	f = only_frame(&b);
	cr_assert_eq(proto_decode_resume(&f, &r), 0);
	cr_expect_eq(r.realtime_ns, 1700000000123456789ull);
	cr_expect(r.nentropy == 64 && memcmp(r.entropy, rnd, 64) == 0);
	/* too little entropy to matter, or more than the agent adds at once: refused */
	static const size_t bad[] = { 0, 1, PROTO_MIN_RESUME_ENTROPY - 1, PROTO_MAX_ENTROPY + 1 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b.len = 0;
		proto_encode_resume(&b, &(struct proto_resume){ 1, rnd, bad[i] });
		f = only_frame(&b);
		cr_expect_eq(proto_decode_resume(&f, &r), -EPROTO, "%zu bytes of entropy accepted", bad[i]);
	}
	b.len = 0;
	proto_encode_resume(&b, &(struct proto_resume){ 1, rnd, PROTO_MAX_ENTROPY });
	f = only_frame(&b);
	cr_expect_eq(proto_decode_resume(&f, &r), 0);
	proto_buf_free(&b);
}

Test(proto, out_of_range_values)
{
	struct proto_buf b = { 0 };
	struct proto_frame f;
	struct proto_exit ex;
	int sig;
	uint16_t port;
	uint32_t ms;
	const uint8_t *p;
	size_t n;

	proto_encode_u32(&b, PROTO_SIGNAL, 0);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_signal(&f, &sig), -EPROTO);
	b.len = 0;
	proto_encode_u32(&b, PROTO_SIGNAL, 65);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_signal(&f, &sig), -EPROTO);
	b.len = 0;
	proto_encode_u32(&b, PROTO_TCP_CONNECT, 0);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_port(&f, &port), -EPROTO);
	b.len = 0;
	proto_encode_u32(&b, PROTO_TCP_CONNECT, 65536);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_port(&f, &port), -EPROTO);
	b.len = 0;
	proto_encode_u32(&b, PROTO_QUIESCE, PROTO_MAX_SETTLE_MS + 1);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_quiesce(&f, &ms), -EPROTO);
	b.len = 0;
	proto_encode_data(&b, PROTO_ADD_ENTROPY, 0, NULL, 0);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_entropy(&f, &p, &n), -EPROTO);
	b.len = 0;
	proto_encode_exit(&b, &(struct proto_exit){ .how = PROTO_EXITED, .code = 256 });
	f = only_frame(&b);
	cr_expect_eq(proto_decode_exit(&f, &ex), -EPROTO);
	b.len = 0;
	proto_encode_exit(&b, &(struct proto_exit){ .how = PROTO_SIGNALED, .code = 0 });
	f = only_frame(&b);
	cr_expect_eq(proto_decode_exit(&f, &ex), -EPROTO);
	b.len = 0;
	proto_encode_exit(&b, &(struct proto_exit){ .how = 2 });
	f = only_frame(&b);
	cr_expect_eq(proto_decode_exit(&f, &ex), -EPROTO);
	b.len = 0;
	proto_encode_exit(&b, &(struct proto_exit){ .timed_out = 2 });
	f = only_frame(&b);
	cr_expect_eq(proto_decode_exit(&f, &ex), -EPROTO);
	proto_buf_free(&b);
}

Test(proto, error_text_is_sanitized)
{
	struct proto_buf b = { 0 };
	struct proto_error e;
	struct proto_frame f;
	size_t s;

	/* The encoder turns control characters (terminal escapes in a hostile path) into '?'. */
	proto_encode_error(&b, EIO, "bad \x1b[31mname\x07");
	f = only_frame(&b);
	cr_assert_eq(proto_decode_error(&f, &e), 0);
	cr_expect_str_eq(e.message, "bad ?[31mname?");
	/* and the decoder refuses them from a peer that did not */
	b.len = 0;
	s = proto_frame_begin(&b, PROTO_ERROR, 0);
	proto_put_u32(&b, EIO);
	proto_put_str(&b, "esc\x1b");
	proto_frame_end(&b, s);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_error(&f, &e), -EPROTO);
	proto_buf_free(&b);
}

Test(proto, config_round_trip)
{
	static const char *env[] = { "PATH=/bin", NULL };
	static const char *argv[] = { "httpd", "-f", NULL };
	struct proto_volume vols[2] = { { "/dev/vdb", "/data", "", 0 }, { "/dev/vdc", "/ro", "ext4", PROTO_VOL_RO } };
	struct proto_config c = { .flags = PROTO_CFG_NETWORK, .hostname = "web", .root_dev = "/dev/vda",
				  .root_fstype = "ext4", .nenv = 1, .env = env, .nargv = 2, .argv = argv,
				  .workdir = "/srv", .user = "www", .stop_signal = SIGQUIT, .nvolumes = 2,
				  .volumes = vols, .ip = { 10, 0, 2, 15 }, .gateway = { 10, 0, 2, 2 },
				  .dns = { 10, 0, 2, 3 }, .prefix_len = 24 }, d;
	struct proto_buf b = { 0 };
	struct proto_frame f;

	cr_assert_eq(proto_encode_config(&b, &c), 0);
	check_strict(&b);
	f = only_frame(&b);
	cr_assert_eq(proto_decode_config(&f, &d), 0);
	cr_expect_str_eq(d.hostname, "web");
	cr_expect_str_eq(d.argv[1], "-f");
	cr_expect_null(d.argv[2]);
	cr_expect_str_eq(d.env[0], "PATH=/bin");
	cr_assert_eq(d.nvolumes, 2);
	cr_expect_str_eq(d.volumes[1].path, "/ro");
	cr_expect_eq(d.volumes[1].flags, PROTO_VOL_RO);
	cr_expect_eq(d.stop_signal, SIGQUIT);
	cr_expect_eq(d.ip[3], 15);
	cr_expect_eq(d.prefix_len, 24);
	proto_config_release(&d);
	c.prefix_len = 33;
	b.len = 0;
	proto_encode_config(&b, &c);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_config(&f, &d), -EPROTO);
	proto_buf_free(&b);
}

/* Shares name their tag where a disk names its device; a bad one is refused, leaving nothing set. */
Test(proto, config_shares_by_tag)
{
	struct proto_volume vols[2] = { { "work", "/mnt/work", PROTO_FSTYPE_VIRTIOFS, PROTO_VOL_RO },
					{ "/dev/vdb", "/data", "", 0 } };
	struct proto_config c = { .hostname = "h", .root_dev = "smroot", .root_fstype = PROTO_FSTYPE_VIRTIOFS,
				  .workdir = "", .user = "", .nvolumes = 2, .volumes = vols },
			    d;
	struct proto_buf b = { 0 };
	struct proto_frame f;
	static const char *const bad[] = { "", "a/b", "../x", "has space",
					   "a-tag-of-thirty-seven-bytes-is-1-too-long" };

	cr_assert_eq(proto_encode_config(&b, &c), 0);
	f = only_frame(&b);
	cr_assert_eq(proto_decode_config(&f, &d), 0);
	cr_expect_str_eq(d.root_dev, "smroot");
	cr_expect_str_eq(d.volumes[0].device, "work");
	cr_expect_str_eq(d.volumes[1].device, "/dev/vdb");
	proto_config_release(&d);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vols[0].device = bad[i];
		b.len = 0;
		cr_assert_eq(proto_encode_config(&b, &c), 0);
		f = only_frame(&b);
		cr_expect_eq(proto_decode_config(&f, &d), -EPROTO, "tag '%s'", bad[i]);
		cr_expect(d.nvolumes == 0 && !d.volumes, "a refused config keeps %u volumes", d.nvolumes);
	}
	vols[0].device = "work";
	vols[1].device = "vdb"; /* a disk still needs a path */
	b.len = 0;
	cr_assert_eq(proto_encode_config(&b, &c), 0);
	f = only_frame(&b);
	cr_expect_eq(proto_decode_config(&f, &d), -EPROTO);
	proto_buf_free(&b);
}

Test(proto, too_big_frame_is_not_encoded)
{
	struct proto_buf b = { 0 };
	char *big = calloc(1, PROTO_MAX_PAYLOAD + 1);

	proto_encode_empty(&b, PROTO_OK);
	cr_expect_eq(proto_encode_data(&b, PROTO_STDOUT, 0, big, PROTO_MAX_PAYLOAD + 1), -E2BIG);
	memset(big, 'a', PROTO_MAX_PAYLOAD);
	big[0] = '/';
	cr_expect_eq(proto_encode_path(&b, PROTO_READ_FILE, big), -E2BIG);
	/* The frames before are intact. */
	cr_expect_eq(b.len, PROTO_HDR_SIZE);
	free(big);
	proto_buf_free(&b);
}

/* A send queue that is partly sent, then grows: frames built meanwhile stay whole. */
Test(proto, queue_compaction_keeps_frames_whole)
{
	struct proto_buf b = { 0 };
	static uint8_t chunk[PROTO_CHUNK];
	size_t total = 0, off = 0;
	uint8_t *all = NULL;

	for (int round = 0; round < 64; round++) {
		memset(chunk, round, sizeof(chunk));
		cr_assert_eq(proto_encode_data(&b, PROTO_STDOUT, 0, chunk, sizeof(chunk) - (size_t)round), 0);
		/* "send" most of what is pending */
		size_t n = proto_buf_pending(&b) * 3 / 4;
		all = realloc(all, total + n);
		memcpy(all + total, b.data + b.off, n);
		total += n;
		proto_buf_consume(&b, n);
	}
	all = realloc(all, total + proto_buf_pending(&b));
	memcpy(all + total, b.data + b.off, proto_buf_pending(&b));
	total += proto_buf_pending(&b);
	for (int round = 0; round < 64; round++) {
		struct proto_frame f;
		size_t used;
		cr_assert_eq(proto_frame_parse(all + off, total - off, &f, &used), 1, "frame %d is broken", round);
		cr_assert_eq(f.len, sizeof(chunk) - (size_t)round);
		cr_assert_eq(f.payload[0], round);
		cr_assert_eq(f.payload[f.len - 1], round);
		off += used;
	}
	cr_expect_eq(off, total);
	free(all);
	proto_buf_free(&b);
}

/* ---- reader ----------------------------------------------------------------- */

Test(proto, reader_byte_by_byte)
{
	struct proto_buf b = { 0 };
	struct proto_reader r;
	struct proto_frame f;
	int sv[2];

	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	proto_encode_data(&b, PROTO_STDOUT, 0, "abc", 3);
	proto_encode_data(&b, PROTO_STDERR, PROTO_FLAG_EOF, "", 0);
	proto_reader_init(&r, false);
	int got = 0;
	for (size_t i = 0; i < b.len; i++) {
		cr_assert(write(sv[0], b.data + i, 1) == 1);
		int rc;
		while ((rc = proto_reader_next(&r, sv[1], &f)) == 1) {
			got++;
			cr_expect_eq(f.type, got == 1 ? PROTO_STDOUT : PROTO_STDERR);
		}
		cr_assert_eq(rc, 0);
	}
	cr_expect_eq(got, 2);
	close(sv[0]);
	cr_expect_eq(proto_reader_next(&r, sv[1], &f), -EPIPE, "a clean end between frames");
	proto_reader_free(&r);
	close(sv[1]);
	proto_buf_free(&b);
}

Test(proto, reader_end_inside_frame)
{
	struct proto_buf b = { 0 };
	struct proto_reader r;
	struct proto_frame f;
	int sv[2];

	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	proto_encode_data(&b, PROTO_STDOUT, 0, "abcdef", 6);
	cr_assert(write(sv[0], b.data, b.len - 2) == (ssize_t)b.len - 2);
	close(sv[0]);
	proto_reader_init(&r, false);
	cr_expect_eq(proto_reader_next(&r, sv[1], &f), -EPROTO);
	proto_reader_free(&r);
	close(sv[1]);
	proto_buf_free(&b);
}

Test(proto, reader_bad_header)
{
	uint8_t junk[16] = { 0xee, 0, 0, 0, 1, 0, 0, 0 };
	struct proto_reader r;
	struct proto_frame f;
	int sv[2];

	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	cr_assert(write(sv[0], junk, sizeof(junk)) == sizeof(junk));
	proto_reader_init(&r, false);
	cr_expect_eq(proto_reader_next(&r, sv[1], &f), -EPROTO);
	proto_reader_free(&r);
	close(sv[0]);
	close(sv[1]);
}

Test(proto, reader_exact_leaves_the_rest)
{
	struct proto_buf b = { 0 };
	struct proto_reader r;
	struct proto_frame f;
	char rest[16] = { 0 };
	int sv[2];

	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	proto_encode_empty(&b, PROTO_OK);
	proto_put_bytes(&b, "raw bytes", 9);
	cr_assert(write(sv[0], b.data, b.len) == (ssize_t)b.len);
	proto_reader_init(&r, true);
	cr_assert_eq(proto_reader_next(&r, sv[1], &f), 1);
	cr_expect_eq(f.type, PROTO_OK);
	cr_expect_eq(proto_reader_buffered(&r), 0);
	cr_expect_eq(read(sv[1], rest, sizeof(rest)), 9);
	cr_expect_str_eq(rest, "raw bytes");
	proto_reader_free(&r);
	close(sv[0]);
	close(sv[1]);
	proto_buf_free(&b);
}

Test(proto, reader_max_frame)
{
	struct proto_buf b = { 0 };
	struct proto_reader r;
	struct proto_frame f;
	uint8_t *big = malloc(PROTO_MAX_PAYLOAD);
	int sv[2];

	memset(big, 0x5a, PROTO_MAX_PAYLOAD);
	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	cr_assert_eq(proto_encode_data(&b, PROTO_DATA, 0, big, PROTO_MAX_PAYLOAD), 0);
	proto_reader_init(&r, false);
	size_t sent = 0;
	int rc = 0;
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	while (rc == 0) {
		if (sent < b.len) {
			ssize_t w = send(sv[0], b.data + sent, b.len - sent, MSG_DONTWAIT);
			if (w > 0)
				sent += (size_t)w;
		}
		rc = proto_reader_next(&r, sv[1], &f);
	}
	cr_assert_eq(rc, 1);
	cr_expect_eq(f.len, PROTO_MAX_PAYLOAD);
	cr_expect(memcmp(f.payload, big, PROTO_MAX_PAYLOAD) == 0);
	free(big);
	proto_reader_free(&r);
	close(sv[0]);
	close(sv[1]);
	proto_buf_free(&b);
}

/* ---- the fuzz target's seed corpus ------------------------------------------- */

Test(proto, seed_corpus_replays)
{
	const char *src = getenv("SUPERMACHINE_SOURCE_ROOT");
	char dir[4096];
	struct dirent *e;
	int files = 0;
	DIR *d;

	cr_assert(src, "SUPERMACHINE_SOURCE_ROOT is not set");
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/proto", src);
	d = opendir(dir);
	cr_assert(d, "%s: %s", dir, strerror(errno));
	while ((e = readdir(d))) {
		char path[8192];
		uint8_t buf[65536];
		struct proto_frame f;
		size_t off = 0, used;
		int fd, frames = 0;
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		fd = open(path, O_RDONLY);
		cr_assert(fd >= 0);
		n = read(fd, buf, sizeof(buf));
		close(fd);
		cr_assert(n > 0);
		while (proto_frame_parse(buf + off, (size_t)n - off, &f, &used) == 1) {
			frames++;
			off += used;
		}
		cr_expect_eq(off, (size_t)n, "%s: bytes after the last frame", e->d_name);
		/* Every seed frame is valid: the seeds and the decoders agree on the format. */
		cr_expect_eq(proto_fuzz_one(buf, (size_t)n), frames, "%s: a seed frame was rejected", e->d_name);
		files++;
	}
	closedir(d);
	cr_expect(files >= 5, "only %d seed files", files);
}

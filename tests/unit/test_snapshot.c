/*
 * Snapshot state and memory files: round trips, and every truncation,
 * corruption and wrong version rejected with an error that names the file
 * and, inside a section, the section.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/snapshot.h"
#include "proto/worker.h"
#include "vmm/snapshot_memory.h"

static const uint8_t blob[40] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };

/* Two sections: MCHN 0 (scalars) and VCPU 1 (bytes and blobs). */
static struct snap_writer *sample(void)
{
	struct snap_writer *w = snap_writer_new();

	cr_assert_not_null(w);
	snap_section_begin(w, SNAP_TAG_MACHINE, 0, 1);
	snap_put_u8(w, 0xab);
	snap_put_u16(w, 0xbeef);
	snap_put_u32(w, 0xdeadbeef);
	snap_put_u64(w, 0x0123456789abcdefULL);
	snap_section_end(w);
	snap_section_begin(w, SNAP_TAG_VCPU, 1, 7);
	snap_put_bytes(w, "raw!", 4);
	snap_put_blob(w, blob, sizeof(blob));
	snap_put_blob(w, blob, 3);
	snap_section_end(w);
	return w;
}

static const uint8_t *encode(struct snap_writer *w, size_t *len)
{
	const uint8_t *buf = snap_writer_encode(w, len);

	cr_assert_not_null(buf);
	return buf;
}

static void read_sample(struct snap_reader *r)
{
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	uint8_t raw[4], b[40], small[8];
	size_t n;

	/* Out of file order: sections are looked up by tag and index. */
	cr_assert_eq(snap_section_enter(r, SNAP_TAG_VCPU, 1), 0);
	cr_assert_eq(snap_section_version(r), 7);
	cr_assert_eq(snap_get_bytes(r, raw, 4), 0);
	cr_assert_eq(memcmp(raw, "raw!", 4), 0);
	cr_assert_eq(snap_get_blob(r, b, sizeof(b)), 0);
	cr_assert_eq(memcmp(b, blob, sizeof(b)), 0);
	cr_assert_eq(snap_get_blob_max(r, small, sizeof(small), &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(snap_section_leave(r), 0);

	cr_assert_eq(snap_section_enter(r, SNAP_TAG_MACHINE, 0), 0);
	cr_assert_eq(snap_get_u8(r, &u8), 0);
	cr_assert_eq(snap_get_u16(r, &u16), 0);
	cr_assert_eq(snap_get_u32(r, &u32), 0);
	cr_assert_eq(snap_get_u64(r, &u64), 0);
	cr_assert_eq(u8, 0xab);
	cr_assert_eq(u16, 0xbeef);
	cr_assert_eq(u32, 0xdeadbeef);
	cr_assert_eq(u64, 0x0123456789abcdefULL);
	cr_assert_eq(snap_section_leave(r), 0);
	cr_assert_eq(snap_reader_check_consumed(r), 0);
}

Test(snapshot, round_trip_in_memory)
{
	struct snap_writer *w = sample();
	struct snap_reader *r;
	struct vmm_err err = { { 0 } };
	size_t len;
	const uint8_t *buf = encode(w, &len);

	cr_assert_eq(len, SNAP_STATE_HEADER_BYTES + 2 * SNAP_SECTION_HEADER_BYTES + 15 + 4 + 44 + 7);
	cr_assert_eq(snap_reader_parse(&r, "mem", buf, len, &err), 0, "%s", err.msg);
	read_sample(r);
	snap_reader_free(r);
	snap_writer_free(w);
}

static char *tmpdir(void)
{
	char *d = strdup("/tmp/snapshot-test-XXXXXX");

	cr_assert_not_null(mkdtemp(d));
	return d;
}

static void rm_dir(char *d)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	cr_assert_eq(system(cmd), 0);
	free(d);
}

Test(snapshot, round_trip_through_file)
{
	char *d = tmpdir(), path[256], tmp[300];
	struct snap_writer *w = sample();
	struct snap_reader *r;
	struct vmm_err err = { { 0 } };

	snprintf(path, sizeof(path), "%s/state", d);
	cr_assert_eq(snap_writer_finish(w, path, &err), 0, "%s", err.msg);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(access(tmp, F_OK), -1, "the temporary file must be renamed away");
	cr_assert_eq(snap_reader_open(&r, path, &err), 0, "%s", err.msg);
	read_sample(r);
	snap_reader_free(r);
	snap_writer_free(w);
	rm_dir(d);
}

static void expect_parse_error(const uint8_t *buf, size_t len, const char *name, const char *what)
{
	struct snap_reader *r = (void *)1;
	struct vmm_err err = { { 0 } };

	cr_assert_lt(snap_reader_parse(&r, name, buf, len, &err), 0, "accepted %zu bytes", len);
	cr_assert_null(r);
	cr_assert_not_null(strstr(err.msg, name), "error '%s' does not name the file", err.msg);
	if (what)
		cr_assert_not_null(strstr(err.msg, what), "error '%s' lacks '%s'", err.msg, what);
}

Test(snapshot, every_truncation_rejected)
{
	struct snap_writer *w = sample();
	size_t len;
	const uint8_t *buf = encode(w, &len);

	/* The header's body length catches a cut anywhere, even at a section boundary. */
	for (size_t n = 0; n < len; n++)
		expect_parse_error(buf, n, "cut-state", "truncated");
	snap_writer_free(w);
}

Test(snapshot, every_bit_flip_rejected)
{
	struct snap_writer *w = sample();
	size_t len;
	const uint8_t *buf = encode(w, &len);
	uint8_t *copy = malloc(len);

	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, buf, len);
			copy[i] ^= (uint8_t)(1u << bit);
			expect_parse_error(copy, len, "flipped-state", NULL);
		}
	}
	/* A flip in the VCPU payload is blamed on that section. */
	memcpy(copy, buf, len);
	copy[len - 2] ^= 1;
	expect_parse_error(copy, len, "flipped-state", "section VCPU 1: checksum mismatch");
	free(copy);
	snap_writer_free(w);
}

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

Test(snapshot, wrong_version_rejected)
{
	struct snap_writer *w = sample();
	size_t len;
	const uint8_t *buf = encode(w, &len);
	uint8_t *copy = malloc(len);

	memcpy(copy, buf, len);
	le32(copy + 8, SNAP_FORMAT_VERSION + 1);
	le32(copy + 28, snap_crc32(copy, 28)); /* a well-formed file of another version */
	expect_parse_error(copy, len, "v2-state", "format version 2");
	free(copy);
	snap_writer_free(w);
}

Test(snapshot, bad_magic_and_trailing_data_rejected)
{
	struct snap_writer *w = sample();
	size_t len;
	const uint8_t *buf = encode(w, &len);
	uint8_t *copy = calloc(1, len + 1);

	memcpy(copy, buf, len);
	copy[0] = 'X';
	expect_parse_error(copy, len, "magic-state", "bad magic");
	memcpy(copy, buf, len);
	expect_parse_error(copy, len + 1, "long-state", "trailing data");
	free(copy);
	snap_writer_free(w);
}

Test(snapshot, duplicate_section_rejected)
{
	struct snap_writer *w = snap_writer_new();
	size_t len;

	for (int i = 0; i < 2; i++) {
		snap_section_begin(w, SNAP_TAG_VCPU, 0, 1);
		snap_put_u32(w, 1);
		snap_section_end(w);
	}
	const uint8_t *buf = encode(w, &len);
	expect_parse_error(buf, len, "dup-state", "section VCPU 0 appears twice");
	snap_writer_free(w);
}

static struct snap_reader *parse_sample(struct snap_writer *w)
{
	struct snap_reader *r;
	struct vmm_err err = { { 0 } };
	size_t len;
	const uint8_t *buf = encode(w, &len);

	cr_assert_eq(snap_reader_parse(&r, "s", buf, len, &err), 0, "%s", err.msg);
	return r;
}

Test(snapshot, reads_past_a_section_rejected)
{
	struct snap_writer *w = sample();
	struct snap_reader *r = parse_sample(w);
	struct vmm_err err = { { 0 } };
	uint64_t v;
	uint8_t big[64];

	cr_assert_eq(snap_section_enter(r, SNAP_TAG_MACHINE, 0), 0);
	cr_assert_eq(snap_get_u64(r, &v), 0);
	cr_assert_eq(snap_get_u64(r, &v), -EBADMSG); /* 7 bytes left */
	cr_assert_eq(snap_reader_error(r, &err), -EBADMSG);
	cr_assert_str_eq(err.msg, "s: section MCHN 0: truncated: needs 8 more bytes at offset 8, 7 left");
	snap_reader_free(r);

	/* A blob longer than its destination, and a blob of the wrong size. */
	r = parse_sample(w);
	cr_assert_eq(snap_section_enter(r, SNAP_TAG_VCPU, 1), 0);
	cr_assert_eq(snap_get_bytes(r, big, 4), 0);
	cr_assert_eq(snap_get_blob(r, big, 39), -EBADMSG);
	snap_reader_error(r, &err);
	cr_assert_not_null(strstr(err.msg, "a 40-byte field where 39 bytes were expected"), "%s", err.msg);
	snap_reader_free(r);
	r = parse_sample(w);
	cr_assert_eq(snap_section_enter(r, SNAP_TAG_VCPU, 1), 0);
	cr_assert_eq(snap_get_bytes(r, big, 4), 0);
	size_t n;
	cr_assert_eq(snap_get_blob_max(r, big, 8, &n), -EBADMSG);
	snap_reader_free(r);
	snap_writer_free(w);
}

Test(snapshot, leftovers_missing_and_unread_sections_rejected)
{
	struct snap_writer *w = sample();
	struct snap_reader *r = parse_sample(w);
	struct vmm_err err = { { 0 } };
	uint8_t u8;

	cr_assert_eq(snap_section_enter(r, SNAP_TAG_MACHINE, 0), 0);
	cr_assert_eq(snap_get_u8(r, &u8), 0);
	cr_assert_eq(snap_section_leave(r), -EBADMSG);
	snap_reader_error(r, &err);
	cr_assert_str_eq(err.msg, "s: section MCHN 0: 14 unread bytes at the end (format mismatch)");
	snap_reader_free(r);

	r = parse_sample(w);
	cr_assert_eq(snap_section_enter(r, SNAP_TAG_VCPU, 2), -ENOENT);
	snap_reader_error(r, &err);
	cr_assert_str_eq(err.msg, "s: section VCPU 2 is missing");
	snap_reader_free(r);

	r = parse_sample(w);
	cr_assert_eq(snap_section_enter(r, SNAP_TAG_MACHINE, 0), 0);
	cr_assert_eq(snap_reader_check_consumed(r), -EBADMSG);
	snap_reader_error(r, &err);
	cr_assert_str_eq(err.msg, "s: section VCPU 1 is not understood by this supermachine");
	snap_reader_free(r);

	r = parse_sample(w);
	cr_assert_eq(snap_section_enter(r, SNAP_TAG_VCPU, 1), 0);
	cr_assert_eq(snap_reader_fail(r, "queue size %u is not a power of two", 3), -EINVAL);
	snap_reader_error(r, &err);
	cr_assert_str_eq(err.msg, "s: section VCPU 1: queue size 3 is not a power of two");
	snap_reader_free(r);
	snap_writer_free(w);
}

Test(snapshot, writer_errors_reported_at_finish)
{
	struct snap_writer *w = snap_writer_new();
	struct vmm_err err = { { 0 } };

	snap_put_u32(w, 1); /* outside a section */
	cr_assert_lt(snap_writer_finish(w, "/nonexistent/state", &err), 0);
	cr_assert_not_null(strstr(err.msg, "outside a section"), "%s", err.msg);
	snap_writer_free(w);

	w = snap_writer_new();
	snap_section_begin(w, SNAP_TAG_VCPU, 0, 1);
	snap_writer_fail(w, -EIO, "KVM_GET_REGS: %s", "Input/output error");
	snap_section_end(w);
	cr_assert_eq(snap_writer_finish(w, "/nonexistent/state", &err), -EIO);
	cr_assert_str_eq(err.msg, "/nonexistent/state: KVM_GET_REGS: Input/output error");
	snap_writer_free(w);
}

Test(snapshot, oversized_state_file_refused_before_reading)
{
	char *d = tmpdir(), path[256];
	struct snap_reader *r;
	struct vmm_err err = { { 0 } };

	snprintf(path, sizeof(path), "%s/state", d);
	int fd = open(path, O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)SNAP_STATE_MAX_BYTES + 1), 0);
	close(fd);
	cr_assert_eq(snap_reader_open(&r, path, &err), -EFBIG);
	cr_assert_not_null(strstr(err.msg, path), "%s", err.msg);
	rm_dir(d);
}

/* ---- memory file ---- */

#define MEM_BYTES (64ull << 20)

static const uint8_t id_a[SNAP_ID_BYTES] = { 0xa };
static const uint8_t id_b[SNAP_ID_BYTES] = { 0xb };

static void mem_fill(struct guest_mem *m)
{
	cr_assert_eq(guest_mem_alloc(m, MEM_BYTES, 3ull << 30, 4ull << 30), 0);
	/* A few scattered pages; one page written then zeroed again. */
	memset(guest_mem_ptr(m, 0, 4096), 0x11, 4096);
	memset(guest_mem_ptr(m, 5 << 20, 8192), 0x22, 8192);
	memset(guest_mem_ptr(m, MEM_BYTES - 4096, 4096), 0x33, 4096);
	memset(guest_mem_ptr(m, 9 << 20, 4096), 0x44, 4096);
	memset(guest_mem_ptr(m, 9 << 20, 4096), 0, 4096);
	*(uint8_t *)guest_mem_ptr(m, (7 << 20) + 100, 1) = 0x55;
}

static char *mem_write(struct guest_mem *m, char *d)
{
	static char path[256];
	struct vmm_err err = { { 0 } };

	snprintf(path, sizeof(path), "%s/memory", d);
	cr_assert_eq(snap_memory_write(path, m, id_a, &err), 0, "%s", err.msg);
	return path;
}

Test(snapshot, memory_round_trip_is_sparse_and_private)
{
	char *d = tmpdir();
	struct guest_mem m, back;
	struct vmm_err err = { { 0 } };
	struct stat st;

	mem_fill(&m);
	char *path = mem_write(&m, d);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, WORKER_SNAP_MEMORY_HEADER_BYTES + MEM_BYTES);
	/* header + 4 data pages (+ slack for filesystem allocation granularity) */
	cr_assert_lt((uint64_t)st.st_blocks * 512, 1ull << 20, "zero pages were written: %lld blocks",
		     (long long)st.st_blocks);

	int fd = snap_memory_open(path, MEM_BYTES, id_a, &err);
	cr_assert_geq(fd, 0, "%s", err.msg);
	cr_assert_eq(guest_mem_map_file(&back, fd, WORKER_SNAP_MEMORY_HEADER_BYTES, MEM_BYTES, 3ull << 30,
					4ull << 30), 0);
	cr_assert(back.file_backed);
	for (uint64_t gpa = 0; gpa < MEM_BYTES; gpa += 1 << 20)
		cr_assert_eq(memcmp(guest_mem_ptr(&back, gpa, 1 << 20), guest_mem_ptr(&m, gpa, 1 << 20),
				    1 << 20), 0, "RAM differs in the MiB at %#llx", (unsigned long long)gpa);
	/* Writes stay private: the file is unchanged. */
	memset(guest_mem_ptr(&back, 0, 4096), 0x99, 4096);
	guest_mem_free(&back);
	fd = snap_memory_open(path, MEM_BYTES, id_a, &err);
	cr_assert_geq(fd, 0, "%s", err.msg);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, WORKER_SNAP_MEMORY_HEADER_BYTES), 1);
	cr_assert_eq(b, 0x11);
	close(fd);

	/* A snapshot of a restored (private, file-backed) VM round-trips too. */
	fd = snap_memory_open(path, MEM_BYTES, id_a, &err);
	cr_assert_eq(guest_mem_map_file(&back, fd, WORKER_SNAP_MEMORY_HEADER_BYTES, MEM_BYTES, 3ull << 30,
					4ull << 30), 0);
	memset(guest_mem_ptr(&back, 2 << 20, 4096), 0x66, 4096);
	char path2[300];
	snprintf(path2, sizeof(path2), "%s/memory2", d);
	cr_assert_eq(snap_memory_write(path2, &back, id_b, &err), 0, "%s", err.msg);
	int fd2 = snap_memory_open(path2, MEM_BYTES, id_b, &err);
	cr_assert_geq(fd2, 0, "%s", err.msg);
	cr_assert_eq(pread(fd2, &b, 1, WORKER_SNAP_MEMORY_HEADER_BYTES + (2 << 20)), 1);
	cr_assert_eq(b, 0x66);
	cr_assert_eq(pread(fd2, &b, 1, WORKER_SNAP_MEMORY_HEADER_BYTES + (5 << 20)), 1);
	cr_assert_eq(b, 0x22);
	close(fd2);
	guest_mem_free(&back);
	guest_mem_free(&m);
	rm_dir(d);
}

static void expect_memory_error(const char *path, uint64_t ram, const uint8_t *id, const char *what)
{
	struct vmm_err err = { { 0 } };

	cr_assert_lt(snap_memory_open(path, ram, id, &err), 0);
	cr_assert_not_null(strstr(err.msg, path), "'%s' does not name the file", err.msg);
	cr_assert_not_null(strstr(err.msg, what), "'%s' lacks '%s'", err.msg, what);
}

Test(snapshot, bad_memory_files_rejected)
{
	char *d = tmpdir();
	struct guest_mem m;

	mem_fill(&m);
	char *path = mem_write(&m, d);
	guest_mem_free(&m);

	expect_memory_error(path, MEM_BYTES * 2, id_a, "the state file says");
	expect_memory_error(path, MEM_BYTES, id_b, "id mismatch");
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	/* truncated: RAM missing at the end */
	cr_assert_eq(ftruncate(fd, (off_t)(WORKER_SNAP_MEMORY_HEADER_BYTES + MEM_BYTES - 4096)), 0);
	expect_memory_error(path, MEM_BYTES, id_a, "truncated");
	cr_assert_eq(ftruncate(fd, 100), 0);
	expect_memory_error(path, MEM_BYTES, id_a, "smaller than its header");
	cr_assert_eq(ftruncate(fd, (off_t)(WORKER_SNAP_MEMORY_HEADER_BYTES + MEM_BYTES)), 0);
	/* header wiped (version bumped and checksum fixed: a newer format) */
	uint8_t h[48] = { 'S', 'M', 'M', 'E', 'M', 'O', 'R', 'Y' };
	le32(h + 8, SNAP_FORMAT_VERSION + 1);
	le32(h + 12, 4096);
	le32(h + 44, snap_crc32(h, 44));
	cr_assert_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	expect_memory_error(path, MEM_BYTES, id_a, "format version 2");
	h[44] ^= 1;
	cr_assert_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	expect_memory_error(path, MEM_BYTES, id_a, "checksum mismatch");
	h[0] = 'X';
	cr_assert_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	expect_memory_error(path, MEM_BYTES, id_a, "bad magic");
	close(fd);
	rm_dir(d);
}

/*
 * Snapshot files: the state file (sections of vCPU, interrupt controller,
 * clock and device state) and the memory file (a header page, then guest
 * RAM, zero pages left as holes). docs/snapshot-format.md is the byte-level
 * description; this is the code that writes and reads it.
 *
 * A snapshot file is untrusted input: the reader loads the whole state file
 * (bounded), checks the header, every section header and every checksum
 * before handing out a byte, and every get below is bounds-checked against
 * the section it reads. Errors name the file and the section.
 *
 * Writing never fails half-way through a device: the writer buffers in
 * memory, remembers the first error, and snap_writer_finish() reports it
 * or writes the file with durable_write() (base/fsutil.h).
 *
 * The memory file's header is here too, so the format has one home; the
 * RAM behind it is the VMM's (src/vmm/snapshot_memory.h).
 */
#ifndef SM_BASE_SNAPSHOT_H
#define SM_BASE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/guest_mem.h"
#include "base/log.h"

#define SNAP_FORMAT_VERSION 1
/* The directory's file names and where RAM starts in the memory file: src/proto/worker.h. */

/* Bounds a reader enforces before it allocates anything. */
#define SNAP_STATE_MAX_BYTES (64u << 20)
#define SNAP_MAX_SECTIONS 4096u

#define SNAP_STATE_HEADER_BYTES 32u
#define SNAP_SECTION_HEADER_BYTES 24u
#define SNAP_ID_BYTES 16

/* Section tags: four ASCII characters, first one in the lowest byte. */
#define SNAP_TAG(a, b, c, d) \
	((uint32_t)(a) | ((uint32_t)(b) << 8) | ((uint32_t)(c) << 16) | ((uint32_t)(d) << 24))
#define SNAP_TAG_MACHINE SNAP_TAG('M', 'C', 'H', 'N') /* id, RAM size, vCPU count, devices */
#define SNAP_TAG_VM SNAP_TAG('V', 'M', 'S', 'T')      /* irqchip, PIT, kvmclock */
#define SNAP_TAG_VCPU SNAP_TAG('V', 'C', 'P', 'U')    /* index = vCPU number */
#define SNAP_TAG_VIRTIO SNAP_TAG('V', 'I', 'R', 'T')  /* index = device slot */
#define SNAP_TAG_SERIAL SNAP_TAG('U', 'A', 'R', 'T')

struct snap_writer;
struct snap_reader;

/* ---- writer ------------------------------------------------------------------ */

/* NULL on ENOMEM. */
struct snap_writer *snap_writer_new(void);
void snap_writer_free(struct snap_writer *w);

/* Sections cannot nest; a (tag, index) pair may appear once per file. */
void snap_section_begin(struct snap_writer *w, uint32_t tag, uint32_t index, uint32_t version);
void snap_section_end(struct snap_writer *w);

void snap_put_u8(struct snap_writer *w, uint8_t v);
void snap_put_u16(struct snap_writer *w, uint16_t v);
void snap_put_u32(struct snap_writer *w, uint32_t v);
void snap_put_u64(struct snap_writer *w, uint64_t v);
/* Raw bytes whose length the reader knows. */
void snap_put_bytes(struct snap_writer *w, const void *p, size_t len);
/* A u32 length, then the bytes: for kernel structs whose size could differ. */
void snap_put_blob(struct snap_writer *w, const void *p, size_t len);

/* Records a failure of the caller's own (e.g. a KVM_GET_* ioctl); the first one wins. */
__attribute__((format(printf, 3, 4)))
void snap_writer_fail(struct snap_writer *w, int rc, const char *fmt, ...);
/* 0, or the first error recorded (-errno). */
int snap_writer_error(const struct snap_writer *w);

/*
 * Writes the file at path with durable_write() (a unique temp file, fsync,
 * rename, fsync of the directory). Reports the first recorded error
 * instead if there is one. Returns 0 or -errno.
 */
int snap_writer_finish(struct snap_writer *w, const char *path, struct vmm_err *err);

/* The encoded file (header + sections) in memory, for tests; NULL on error. */
const uint8_t *snap_writer_encode(struct snap_writer *w, size_t *len);

/* ---- reader ------------------------------------------------------------------ */

/*
 * Reads and checks the whole state file: size bound, magic, format
 * version, header and section checksums, section bounds, duplicate
 * sections. Returns 0 or -errno with err naming the file and the problem.
 */
int snap_reader_open(struct snap_reader **out, const char *path, struct vmm_err *err);
/* The same over a buffer (copied); name is used in error messages. */
int snap_reader_parse(struct snap_reader **out, const char *name, const void *buf, size_t len,
		      struct vmm_err *err);
void snap_reader_free(struct snap_reader *r);

/*
 * Positions the reader at the start of section (tag, index). -ENOENT if
 * the file has none (err says which). Any section left open is closed
 * without the leftover-bytes check: call snap_section_leave() for that.
 */
int snap_section_enter(struct snap_reader *r, uint32_t tag, uint32_t index);
/* Does the file hold section (tag, index)? */
bool snap_section_exists(const struct snap_reader *r, uint32_t tag, uint32_t index);
/* The version the writer gave the current section. */
uint32_t snap_section_version(const struct snap_reader *r);
/* Bytes not yet read in the current section. */
size_t snap_section_left(const struct snap_reader *r);
/* Ends the current section: -EBADMSG if bytes are left unread (a format mismatch). */
int snap_section_leave(struct snap_reader *r);

/* Each returns 0, or -EBADMSG when the section has fewer bytes left. */
int snap_get_u8(struct snap_reader *r, uint8_t *v);
int snap_get_u16(struct snap_reader *r, uint16_t *v);
int snap_get_u32(struct snap_reader *r, uint32_t *v);
int snap_get_u64(struct snap_reader *r, uint64_t *v);
int snap_get_bytes(struct snap_reader *r, void *p, size_t len);
/* A blob written by snap_put_blob() that must be exactly len bytes long. */
int snap_get_blob(struct snap_reader *r, void *p, size_t len);
/* A blob of at most max bytes into p; *len gets its length. */
int snap_get_blob_max(struct snap_reader *r, void *p, size_t max, size_t *len);

/*
 * A value that is well-formed but wrong (a queue size that is not a power
 * of two, a vCPU count that does not match): records the message against
 * the current section. Returns -EINVAL. The first error wins.
 */
__attribute__((format(printf, 2, 3)))
int snap_reader_fail(struct snap_reader *r, const char *fmt, ...);

/* Every section was entered: -EBADMSG naming the first one nobody read. */
int snap_reader_check_consumed(struct snap_reader *r);

/* Copies the first error ("FILE: section NAME: what") into err; returns its code. */
int snap_reader_error(const struct snap_reader *r, struct vmm_err *err);

/* "VCPU 1" for tag VCPU, index 1. buf must hold 24 bytes. */
const char *snap_tag_name(uint32_t tag, uint32_t index, char buf[24]);

/* ---- memory file header ------------------------------------------------------ */

/* The fields at the start of the memory file's header page; the rest is zero. */
#define SNAP_MEMORY_HEADER_FIELD_BYTES 48u

/* Magic, format version, page size, RAM size, snapshot id and the checksum. */
void snap_memory_header_encode(uint8_t h[SNAP_MEMORY_HEADER_FIELD_BYTES], uint64_t ram_bytes,
			       const uint8_t id[SNAP_ID_BYTES]);

/*
 * Checks a memory file's header fields against what the state file says:
 * magic, checksum, version, page size, RAM size and snapshot id. Returns 0
 * or -errno with err naming path and the first mismatch.
 */
int snap_memory_header_check(const char *path, const uint8_t h[SNAP_MEMORY_HEADER_FIELD_BYTES],
			     uint64_t ram_bytes, const uint8_t id[SNAP_ID_BYTES], struct vmm_err *err);

/* CRC-32 (zlib's) of a buffer, as stored in the files. */
uint32_t snap_crc32(const void *p, size_t len);

#endif

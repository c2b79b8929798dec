/*
 * The snapshot memory file: a header page (its fields are the format's,
 * src/base/snapshot.h), then guest RAM at file offset = guest offset, zero
 * pages left as holes. docs/snapshot-format.md is the byte-level layout.
 */
#ifndef SM_VMM_SNAPSHOT_MEMORY_H
#define SM_VMM_SNAPSHOT_MEMORY_H

#include <stdint.h>

#include "base/guest_mem.h"
#include "base/log.h"
#include "base/snapshot.h"

/*
 * Writes guest RAM to path (path.tmp, fsync, rename, fsync of the
 * directory): the header page, then RAM in file-offset order. Pages that
 * are all zero are not written, so they stay holes; on a memfd, ranges
 * SEEK_DATA says are holes are skipped without being read (reading them
 * would allocate them).
 */
int snap_memory_write(const char *path, const struct guest_mem *m,
		      const uint8_t id[SNAP_ID_BYTES], struct vmm_err *err);

/*
 * Opens a memory file for a restore and checks its header against what the
 * state file says: magic, version, RAM size, snapshot id, and that the file
 * holds all of it. Reads only the header page. Returns the fd (O_RDONLY,
 * CLOEXEC) or -errno with err set.
 */
int snap_memory_open(const char *path, uint64_t ram_bytes, const uint8_t id[SNAP_ID_BYTES],
		     struct vmm_err *err);

#endif

/*
 * Helpers of the host-side targets: their temp directories, and tar
 * archives built from fuzz input, for the targets that take layers or
 * `docker save` tarballs: the fuzzer mutates entries (names, types, link
 * targets, modes, data) rather than tar header bytes, whose checksums
 * would make most mutations dead ends. One record per entry:
 *
 *   u8  type   0 file, 1 dir, 2 symlink, 3 hardlink, 4 char device,
 *              5 block device, 6 fifo; 7 ends this archive (the next
 *              records go to the next one); others are files
 *   u8  flags  1: an xattr "user.fuzz" (value: the data), 2: owner
 *              1000:1000, 4: SCHILY/LIBARCHIVE "security.capability" xattr
 *              with the data as its value
 *   u16 mode   permission bits (little endian)
 *   u16 nlen, u16 dlen, then nlen name bytes and dlen data bytes: a file's
 *              content, or a link's target
 */
#ifndef SM_FUZZ_HOST_H
#define SM_FUZZ_HOST_H

#include <stddef.h>
#include <stdint.h>

/*
 * Writes the records of data, from *off up to the end or an end record,
 * to a pax tar at path; *off moves past what was used. Returns the
 * number of entries written, or -1 when the file cannot be written.
 */
int fuzz_tar_write(const char *path, const uint8_t *data, size_t size, size_t *off);

/* A fresh directory for the target's files (under $TMPDIR, else /dev/shm
 * when it exists, else /tmp); aborts when none can be made. */
char *fuzz_tmpdir(const char *name);

/* Removes every file (not directory) directly in dir; returns how many. */
size_t fuzz_dir_clear(const char *dir);

#endif

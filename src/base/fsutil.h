/*
 * Files that survive a crash: the one way the host side writes a file
 * atomically and durably, and the small helpers it is made of.
 *
 * Every function returns 0 or -errno and reports nothing itself: callers
 * say what they were writing and where (sm_error, vmm_err).
 */
#ifndef SM_BASE_FSUTIL_H
#define SM_BASE_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* write(2) until done, retrying EINTR. */
int file_write_full(int fd, const void *buf, size_t len);

/* mkdir -p: every missing component, existing ones are fine. */
int mkdir_p(const char *path, mode_t mode);

/* fsync of a directory by name, and of the directory holding path. */
int fsync_dir(const char *dir);
int fsync_dir_of(const char *path);

/*
 * rename(2), then fsync of the directory of to, so the new name outlives a
 * crash. Works for files and for directories. When the fsync fails the
 * rename has happened but is not known durable.
 */
int durable_rename(const char *from, const char *to);

/*
 * Installs a finished temporary file (closed, written by the caller)
 * as path: fsync, chmod to mode, rename, fsync of the directory. On failure
 * tmp is left for the caller to remove.
 */
int durable_install(const char *tmp, const char *path, mode_t mode);

/*
 * Replaces path with buf: a unique temp file beside path (same filesystem,
 * so the rename is atomic), written whole, chmod'ed to exactly mode (no
 * umask), fsync'ed, renamed over path, and the directory fsync'ed. On any
 * failure the temp file is removed and path keeps its old content (unless
 * only the final directory fsync failed: then path has the new content,
 * not yet known durable).
 */
int durable_write(const char *path, const void *buf, size_t len, mode_t mode);

#endif

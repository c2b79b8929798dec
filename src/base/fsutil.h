/*
 * Files that survive a crash: the one way the host side writes a file
 * atomically and durably, and the small helpers it is made of; and the
 * one way a flat directory is emptied, removed and measured.
 *
 * Every function returns 0 or -errno and reports nothing itself: callers
 * say what they were writing and where (sm_error, vmm_err).
 */
#ifndef SM_BASE_FSUTIL_H
#define SM_BASE_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

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

/*
 * ---- flat directories (a snapshot, a VM's runtime directory, a store's blobs) ----
 * Neither descends: what is in dir's subdirectories is never touched or
 * counted, and a symlink is the link itself, never what it points to.
 */

/*
 * Removes what is directly in the directory open as dfd (named dir, for
 * failed): files and symlinks, and subdirectories that are empty (a VM's
 * jail/ mount point). A subdirectory with anything in it stays. 0, or the
 * first failure's -errno with its path in failed (when failed is given);
 * the rest is still removed, and an entry gone meanwhile is no failure.
 */
int dir_empty_at(int dfd, const char *dir, char *failed, size_t failed_len);
/* dir_empty_at() on dir, then dir itself: 0, or -errno with the path that stayed in failed. */
int dir_remove_flat(const char *dir, char *failed, size_t failed_len);

struct dir_usage {
	uint64_t files; /* regular files */
	uint64_t bytes; /* their allocated bytes (st_blocks) */
	time_t newest;  /* the newest mtime of dir and of everything in it */
};
/* Adds what is directly in dir (suffix: only names ending so) to u. 0, or -errno when dir cannot be read. */
int dir_usage_add(const char *dir, const char *suffix, struct dir_usage *u);

#endif

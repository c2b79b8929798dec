/*
 * virtio-fs: fuzzed FUSE requests (src/devices/virtio/fs_fuse.c) against
 * a small fresh tree on tmpfs for each input (a file, a directory, a
 * symlink inside, and two leading to a directory beside the tree),
 * opaque and follow policies in turn, then the tables through a snapshot
 * and back. The input is a sequence
 * of records:
 *
 *   u8 op    index into the opcode table below; 0xff: the bytes are a
 *            whole request, header included (lengths as hostile as they come)
 *   u8 node  the request's node ID
 *   u16 len  then len argument bytes
 *
 * Anything the guest does must end in a reply, never a crash; with the
 * opaque policy it must not touch anything outside the tree: the harness
 * checks a canary file in the directory beside it stays as it was. (Under
 * follow the guest may change that directory: it is made anew each time,
 * and nothing else is reachable.)
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fuse.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio/fs_internal.h"
#include "base/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t ops[] = {
	FUSE_LOOKUP, FUSE_FORGET, FUSE_GETATTR, FUSE_SETATTR, FUSE_READLINK, FUSE_SYMLINK, FUSE_MKNOD,
	FUSE_MKDIR, FUSE_UNLINK, FUSE_RMDIR, FUSE_RENAME, FUSE_LINK, FUSE_OPEN, FUSE_READ, FUSE_WRITE,
	FUSE_STATFS, FUSE_RELEASE, FUSE_FSYNC, FUSE_SETXATTR, FUSE_GETXATTR, FUSE_LISTXATTR,
	FUSE_REMOVEXATTR, FUSE_FLUSH, FUSE_INIT, FUSE_OPENDIR, FUSE_READDIR, FUSE_RELEASEDIR,
	FUSE_FSYNCDIR, FUSE_ACCESS, FUSE_CREATE, FUSE_INTERRUPT, FUSE_DESTROY, FUSE_BATCH_FORGET,
	FUSE_FALLOCATE, FUSE_READDIRPLUS, FUSE_RENAME2, FUSE_LSEEK, FUSE_COPY_FILE_RANGE, 9999,
};

#define CANARY_TEXT "untouched"

static char dir[64], outside[64], canary[96];

/* Removes one entry of a tree; a directory made unreadable is opened up first (never through a symlink). */
static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_DP || flag == FTW_DNR)
		chmod(path, 0700);
	return remove(path);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
}

static void tree_make(void)
{
	char p[128];

	snprintf(outside, sizeof(outside), "/dev/shm/sm-fuzz-fs-outside-%d", (int)getpid());
	nftw(outside, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(outside, 0755) < 0)
		abort();
	snprintf(canary, sizeof(canary), "%s/canary", outside);
	write_file(canary, CANARY_TEXT);
	snprintf(dir, sizeof(dir), "/dev/shm/sm-fuzz-fs-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(p, sizeof(p), "%s/sub", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/sub/file", dir);
	write_file(p, "data");
	snprintf(p, sizeof(p), "%s/in", dir);
	symlink("sub/file", p);
	snprintf(p, sizeof(p), "%s/out", dir);
	symlink(outside, p);
	char up[96];
	snprintf(up, sizeof(up), "../../%s", outside + strlen("/dev/shm/"));
	snprintf(p, sizeof(p), "%s/sub/up", dir);
	symlink(up, p);
	snprintf(p, sizeof(p), "%s/canary", dir);
	symlink(canary, p);
}

static void outside_remove(void)
{
	nftw(outside, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void canary_check(void)
{
	char buf[32] = "";
	int fd = open(canary, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) < 0 || strcmp(buf, CANARY_TEXT) != 0 ||
	    fstat(fd, &st) < 0 || (st.st_mode & 07777) != 0644)
		abort(); /* something reached outside the shared tree */
	close(fd);
}

/* Builds one request from a record and dispatches it; how many input bytes it used, 0 at the end. */
static size_t one_request(struct fs_server *s, const uint8_t *data, size_t size, uint64_t unique)
{
	static uint8_t req[sizeof(struct fuse_in_header) + 65536];
	struct fuse_in_header h = { .unique = unique };
	uint16_t len;

	if (size < 4)
		return 0;
	memcpy(&len, data + 2, 2);
	if (len > size - 4)
		len = (uint16_t)(size - 4);
	if (data[0] == 0xff) {
		fs_dispatch(s, data + 4, len, FS_MAX_REPLY);
		return 4 + (size_t)len;
	}
	h.opcode = ops[data[0] % (sizeof(ops) / sizeof(ops[0]))];
	h.nodeid = data[1];
	h.len = (uint32_t)(sizeof(h) + len);
	memcpy(req, &h, sizeof(h));
	memcpy(req + sizeof(h), data + 4, len);
	/* no host disk filled by one record: preallocation stays small */
	if (h.opcode == FUSE_FALLOCATE && len >= 24) {
		uint64_t max = 1 << 20;
		memcpy(req + sizeof(h) + 16, &max, sizeof(max));
	}
	fs_dispatch(s, req, h.len, data[1] & 1 ? 64 : FS_MAX_REPLY);
	return 4 + (size_t)len;
}

static void save_restore(struct fs_server *s)
{
	struct snap_writer *w = snap_writer_new();
	struct snap_reader *r;
	struct vmm_err err;
	size_t len;

	if (!w)
		abort();
	snap_section_begin(w, SNAP_TAG_VIRTIO, 0, 1);
	fs_server_save(s, w);
	snap_section_end(w);
	const uint8_t *buf = snap_writer_encode(w, &len);
	if (!buf || snap_reader_parse(&r, "fuzz", buf, len, &err) < 0 ||
	    snap_section_enter(r, SNAP_TAG_VIRTIO, 0) < 0)
		abort();
	/* what a server saved it restores, whatever the guest did before */
	if (fs_server_restore(s, r) < 0)
		abort();
	snap_reader_free(r);
	snap_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	struct fuse_init_in init = { .major = 7, .minor = 38, .flags = 0xffffffff };
	uint8_t req[sizeof(struct fuse_in_header) + sizeof(init)];
	struct fuse_in_header h = { .len = sizeof(req), .opcode = FUSE_INIT, .unique = 1 };

	if (!once) {
		signal(SIGXFSZ, SIG_IGN);
		atexit(outside_remove);
		once = true;
	}
	tree_make();
	bool follow = size % 2;
	struct virtio_fs_options o = { .tag = "fuzz", .symlinks = follow ? VIRTIO_FS_SYMLINKS_FOLLOW
								      : VIRTIO_FS_SYMLINKS_OPAQUE };
	struct fs_server *s = fs_server_new(open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC), &o);
	if (!s)
		abort();
	memcpy(req, &h, sizeof(h));
	memcpy(req + sizeof(h), &init, sizeof(init));
	fs_dispatch(s, req, sizeof(req), FS_MAX_REPLY);
	uint64_t unique = 2;
	for (size_t at = 0, n; (n = one_request(s, data + at, size - at, unique++)); at += n)
		;
	save_restore(s);
	fs_server_free(s);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (!follow)
		canary_check();
	return 0;
}

/*
 * PID 1 for the virtio-fs vm test (tests/vm/test_virtio_fs.c), as guest
 * root. It mounts the tag "work" (writable, policy opaque) at /mnt and
 * "ro" (read-only) at /ro with mount -t virtiofs, then reports one line
 * per check, "SMTEST fs <check> ok" or "SMTEST fs <check> fail=WHAT",
 * and "SMTEST fs done" before it reboots:
 *
 *   mount      both tags mounted
 *   read       /mnt/hello.txt holds what the host wrote
 *   write      /mnt/guest.txt created, written, fsynced (the host checks it)
 *   many       2000 files made, listed by readdir, removed; mkdir/rmdir
 *   rename     rename, and truncate
 *   sparse     a write at 5 GiB: the size is right, the hole reads zeros
 *   mmap       a MAP_SHARED file mapping written and read back with read()
 *   perms      chmod, and a setuid bit that never reaches the host
 *   device     mknod of a character device: EPERM
 *   extlink    the host's /mnt/abs (-> /etc) refused: EACCES
 *   plant      the guest's escape -> /etc/passwd: readlink reads it verbatim
 *   hardlink   a hard link inside the share
 *   xattr      security.* refused
 *   readonly   writing under /ro: EROFS
 *   change     after "SMTEST fs waiting", the host rewrites /mnt/change.txt;
 *              the guest sees the new content within 10 s
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <time.h>

#include "devguest.h"

static void result(const char *check, const char *fail)
{
	if (fail)
		say("fs %s fail=%s errno=%d", check, fail, errno);
	else
		say("fs %s ok", check);
}

static int put(const char *path, const char *text, int flags, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, mode);
	ssize_t n = fd < 0 ? -1 : write(fd, text, strlen(text));

	if (fd >= 0 && (fsync(fd) < 0 || close(fd) < 0))
		return -1;
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int get(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, len - 1);

	if (fd >= 0)
		close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

static const char *check_many(void)
{
	char path[64];
	unsigned seen = 0;

	if (mkdir("/mnt/many", 0755) < 0)
		return "mkdir";
	for (int i = 0; i < 2000; i++) {
		snprintf(path, sizeof(path), "/mnt/many/f%04d", i);
		if (put(path, "", O_EXCL, 0644) < 0)
			return "create";
	}
	DIR *d = opendir("/mnt/many");
	if (!d)
		return "opendir";
	for (struct dirent *e; (e = readdir(d));)
		seen += e->d_name[0] == 'f';
	closedir(d);
	if (seen != 2000)
		return "count";
	for (int i = 0; i < 2000; i++) {
		snprintf(path, sizeof(path), "/mnt/many/f%04d", i);
		if (unlink(path) < 0)
			return "unlink";
	}
	return rmdir("/mnt/many") < 0 ? "rmdir" : NULL;
}

static const char *check_rename(void)
{
	struct stat st;

	if (put("/mnt/r1", "0123456789", O_TRUNC, 0644) < 0 || rename("/mnt/r1", "/mnt/r2") < 0)
		return "rename";
	if (access("/mnt/r1", F_OK) == 0 || truncate("/mnt/r2", 4) < 0 || stat("/mnt/r2", &st) < 0)
		return "truncate";
	return st.st_size == 4 ? NULL : "size";
}

static const char *check_sparse(void)
{
	int fd = open("/mnt/sparse", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	char c = 'x', z = 1;
	struct stat st;

	if (fd < 0 || pwrite(fd, &c, 1, 5ll << 30) != 1 || fstat(fd, &st) < 0)
		return "write";
	if (st.st_size != (5ll << 30) + 1 || pread(fd, &z, 1, 1ll << 30) != 1 || z != 0)
		return "hole";
	close(fd);
	return unlink("/mnt/sparse") < 0 ? "unlink" : NULL;
}

static const char *check_mmap(void)
{
	int fd = open("/mnt/mapped", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	char back[8] = "";

	if (fd < 0 || ftruncate(fd, 4096) < 0)
		return "create";
	char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return "mmap";
	memcpy(p, "mapped!", 7);
	if (msync(p, 4096, MS_SYNC) < 0 || munmap(p, 4096) < 0)
		return "msync";
	close(fd);
	if (get("/mnt/mapped", back, sizeof(back)) < 0 || strcmp(back, "mapped!") != 0)
		return "readback";
	return NULL;
}

static const char *check_perms(void)
{
	struct stat st;

	if (put("/mnt/suid", "x", O_TRUNC, 04755) < 0 || chmod("/mnt/suid", 06755) < 0)
		return "create";
	if (stat("/mnt/suid", &st) < 0 || (st.st_mode & (S_ISUID | S_ISGID)))
		return "setuid-kept";
	if (chmod("/mnt/suid", 0600) < 0 || stat("/mnt/suid", &st) < 0 || (st.st_mode & 07777) != 0600)
		return "chmod";
	return NULL;
}

static const char *check_links(void)
{
	char t[64];
	ssize_t n;

	if (symlink("/etc/passwd", "/mnt/escape") < 0)
		return "symlink";
	n = readlink("/mnt/escape", t, sizeof(t));
	if (n != 11 || memcmp(t, "/etc/passwd", 11) != 0)
		return "readlink";
	/* resolved by the guest, in the guest: its initramfs has no /etc/passwd */
	if (open("/mnt/escape", O_RDONLY | O_CLOEXEC) >= 0 || errno != ENOENT)
		return "followed";
	return NULL;
}

static const char *check_change(void)
{
	static char buf[64];

	say("fs waiting");
	for (int i = 0; i < 100; i++) {
		if (get("/mnt/change.txt", buf, sizeof(buf)) == 0 && strcmp(buf, "after") == 0)
			return NULL;
		usleep(100 * 1000);
	}
	return buf;
}

int main(void)
{
	char buf[64] = "";
	struct stat st;

	guest_mounts();
	mkdir("/mnt", 0755);
	mkdir("/ro", 0755);
	result("mount", mount("work", "/mnt", "virtiofs", 0, NULL) < 0 ? "work" :
			mount("ro", "/ro", "virtiofs", MS_RDONLY, NULL) < 0 ? "ro" : NULL);
	result("read", get("/mnt/hello.txt", buf, sizeof(buf)) < 0 ? "open" :
		       strcmp(buf, "hello from the host") ? buf : NULL);
	result("write", put("/mnt/guest.txt", "written by the guest", O_TRUNC, 0644) < 0 ? "write" : NULL);
	result("many", check_many());
	result("rename", check_rename());
	result("sparse", check_sparse());
	result("mmap", check_mmap());
	result("perms", check_perms());
	result("device", mknod("/mnt/null", S_IFCHR | 0666, makedev(1, 3)) == 0 ? "made" :
			 errno != EPERM ? "errno" : NULL);
	result("extlink", lstat("/mnt/abs", &st) == 0 ? "visible" : errno != EACCES ? "errno" : NULL);
	result("plant", check_links());
	result("hardlink", link("/mnt/guest.txt", "/mnt/guest-link") < 0 ? "link" : NULL);
	result("xattr", setxattr("/mnt/guest.txt", "security.evil", "x", 1, 0) == 0 ? "set" : NULL);
	result("readonly", put("/ro/new", "x", 0, 0644) == 0 ? "written" : errno != EROFS ? "errno" : NULL);
	result("change", check_change());
	say("fs done");
	guest_reboot();
	return 0;
}

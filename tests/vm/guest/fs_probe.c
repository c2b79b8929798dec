/*
 * sm-fsprobe: what a guest can and cannot do on a virtio-fs share, for
 * tests/vm/test_mounts.c. One line per check on stdout: "ok NAME" or
 * "FAIL NAME: why"; the exit status is the number of FAIL lines (capped).
 * Modes:
 *   ops DIR            file operations on a writable share
 *   ro DIR             every write fails with EROFS
 *   policy DIR P       symlinks under policy P (deny, opaque, follow): the
 *                      host made out_abs and out_rel (to a secret outside
 *                      the share) and in_link (to file_in, inside)
 *   race DIR SECONDS   a directory swapped for a symlink to "/" and back
 *                      while another process opens through it
 *   hold FILE OUT      opens FILE, then on SIGUSR1 reads it through the
 *                      same descriptor into OUT (a handle across a restore)
 *   log FILE FIRST     appends "rec N" lines to FILE from N = FIRST on,
 *                      fdatasync after each, and prints "ack N" once the
 *                      sync returned, until killed (tests/vm/test_crash.c)
 * A static musl binary: the busybox fixture has no compiler.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define SECRET "HOST-SECRET"
#define MANY 3000
#define HOLD_PID_FILE "/tmp/sm-fsprobe-hold.pid" /* the fixture's busybox has no pkill */

static int fails;

static void check(int ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(int ok, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (ok) {
		printf("ok %s\n", name);
		return;
	}
	fails++;
	printf("FAIL %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" (errno %s)\n", strerror(errno));
}

static char *at(const char *dir, const char *name)
{
	static char buf[4][4096];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

static int put(const char *path, const char *text, int flags)
{
	int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* The file's first bytes as a string ("" when it cannot be read). */
static const char *get(const char *path)
{
	static char buf[256];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

static void ops_files(const char *d)
{
	struct stat st;

	check(put(at(d, "a"), "alpha", O_TRUNC) == 0 && strcmp(get(at(d, "a")), "alpha") == 0, "create-write-read", "a");
	check(put(at(d, "a"), "+more", O_APPEND) == 0 && strcmp(get(at(d, "a")), "alpha+more") == 0, "append", "a");
	check(rename(at(d, "a"), at(d, "b")) == 0 && access(at(d, "a"), F_OK) < 0 && strcmp(get(at(d, "b")), "alpha+more") == 0,
	      "rename", "a to b");
	check(truncate(at(d, "b"), 3) == 0 && stat(at(d, "b"), &st) == 0 && st.st_size == 3, "truncate", "b");
	int fd = open(at(d, "b"), O_WRONLY);
	check(fd >= 0 && write(fd, "x", 1) == 1 && fsync(fd) == 0 && fdatasync(fd) == 0, "fsync", "b");
	if (fd >= 0)
		close(fd);
	check(unlink(at(d, "b")) == 0 && access(at(d, "b"), F_OK) < 0, "unlink", "b");
	check(mkdir(at(d, "sub"), 0755) == 0 && put(at(d, "sub/in"), "x", 0) == 0 && unlink(at(d, "sub/in")) == 0 &&
		      rmdir(at(d, "sub")) == 0,
	      "mkdir-rmdir", "sub");
	check(put(at(d, "perm"), "p", 0) == 0 && chmod(at(d, "perm"), 0600) == 0 && stat(at(d, "perm"), &st) == 0 &&
		      (st.st_mode & 07777) == 0600,
	      "chmod", "mode %o", st.st_mode & 07777);
	/* set-id bits never reach the host: refused, or stripped */
	int rc = chmod(at(d, "perm"), 04755);
	check(stat(at(d, "perm"), &st) == 0 && !(st.st_mode & (S_ISUID | S_ISGID)), "no-setuid", "chmod 4755 gave %o (rc %d)",
	      st.st_mode & 07777, rc);
	fd = open(at(d, "suid"), O_CREAT | O_WRONLY, 06755);
	check(fd >= 0 && fstat(fd, &st) == 0 && !(st.st_mode & (S_ISUID | S_ISGID)), "create-no-setuid", "mode %o",
	      st.st_mode & 07777);
	if (fd >= 0)
		close(fd);
	errno = 0;
	check(mknod(at(d, "dev"), S_IFCHR | 0600, makedev(1, 3)) < 0, "no-device-nodes", "mknod of /dev/null's numbers worked");
	check(mkfifo(at(d, "fifo"), 0600) == 0 || errno == EPERM, "mkfifo", "fifo");
	check(setxattr(at(d, "perm"), "security.evil", "1", 1, 0) < 0, "no-security-xattr", "security.* set");
	check(setxattr(at(d, "perm"), "trusted.evil", "1", 1, 0) < 0, "no-trusted-xattr", "trusted.* set");
	check(link(at(d, "perm"), at(d, "perm2")) == 0 && stat(at(d, "perm2"), &st) == 0 && st.st_nlink == 2, "hardlink",
	      "perm2");
}

static void ops_mmap(const char *d)
{
	int fd = open(at(d, "mm"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	char *p;

	if (fd < 0 || ftruncate(fd, 8192) < 0) {
		check(0, "mmap-shared", "create mm");
		return;
	}
	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		check(0, "mmap-shared", "mmap");
		close(fd);
		return;
	}
	memcpy(p + 4096, "mapped", 6);
	check(msync(p, 8192, MS_SYNC) == 0, "msync", "mm");
	munmap(p, 8192);
	close(fd);
	fd = open(at(d, "mm"), O_RDONLY);
	char buf[8] = { 0 };
	check(fd >= 0 && pread(fd, buf, 6, 4096) == 6 && memcmp(buf, "mapped", 6) == 0, "mmap-shared", "read back '%s'",
	      buf);
	if (fd >= 0)
		close(fd);
}

static void ops_sparse(const char *d)
{
	const off_t at5g = 5ll << 30;
	int fd = open(at(d, "sparse"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	struct stat st;
	char c = 0;

	check(fd >= 0 && pwrite(fd, "z", 1, at5g) == 1 && fstat(fd, &st) == 0 && st.st_size == at5g + 1 &&
		      pread(fd, &c, 1, at5g) == 1 && c == 'z' && (off_t)st.st_blocks * 512 < (64 << 20),
	      "sparse-over-4g", "size %lld blocks %lld", (long long)st.st_size, (long long)st.st_blocks);
	if (fd >= 0)
		close(fd);
	unlink(at(d, "sparse"));
}

static void ops_readdir(const char *d)
{
	char path[4096];
	int made = 0, seen = 0;
	struct dirent *e;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/many", d);
	mkdir(path, 0755);
	for (int i = 0; i < MANY; i++) {
		char f[4200];
		snprintf(f, sizeof(f), "%s/entry-with-a-longish-name-%05d", path, i);
		made += put(f, "", 0) == 0;
	}
	dir = opendir(path);
	while (dir && (e = readdir(dir)))
		seen += strncmp(e->d_name, "entry-", 6) == 0;
	if (dir)
		closedir(dir);
	check(made == MANY && seen == MANY, "readdir-many", "made %d, readdir saw %d of %d", made, seen, MANY);
}

static void ro(const char *d)
{
	struct stat st;

	errno = 0;
	check(open(at(d, "new"), O_CREAT | O_WRONLY, 0644) < 0 && errno == EROFS, "ro-create", "create");
	check(open(at(d, "file_in"), O_WRONLY) < 0 && errno == EROFS, "ro-open-write", "open for writing");
	check(mkdir(at(d, "dir"), 0755) < 0 && errno == EROFS, "ro-mkdir", "mkdir");
	check(unlink(at(d, "file_in")) < 0 && errno == EROFS, "ro-unlink", "unlink");
	check(rename(at(d, "file_in"), at(d, "x")) < 0 && errno == EROFS, "ro-rename", "rename");
	check(chmod(at(d, "file_in"), 0600) < 0 && errno == EROFS, "ro-chmod", "chmod");
	check(symlink("x", at(d, "l")) < 0 && errno == EROFS, "ro-symlink", "symlink");
	check(truncate(at(d, "file_in"), 0) < 0 && errno == EROFS, "ro-truncate", "truncate");
	check(stat(at(d, "file_in"), &st) == 0 && strcmp(get(at(d, "file_in")), "inside") == 0, "ro-read", "read file_in");
}

static void policy(const char *d, const char *p)
{
	char target[256] = { 0 };
	int follow = strcmp(p, "follow") == 0;

	errno = 0;
	int made = symlink("/etc/passwd", at(d, "g_abs"));
	if (strcmp(p, "deny") == 0)
		check(made < 0 && errno == EPERM, "deny-symlink-create", "symlink made (%d)", made);
	else
		check(made == 0 && readlink(at(d, "g_abs"), target, sizeof(target) - 1) > 0 &&
			      strcmp(target, "/etc/passwd") == 0,
		      "symlink-verbatim", "target '%s'", target);
	check(strcmp(get(at(d, "in_link")), "inside") == 0, "inside-link", "in_link read '%s'", get(at(d, "in_link")));
	/* the secret is outside the share: only follow may reach it, through the host's links */
	const char *abs = get(at(d, "out_abs")), *rel = get(at(d, "out_rel"));
	if (follow)
		check(strstr(abs, SECRET) && strstr(rel, SECRET), "follow-reaches", "out_abs '%s' out_rel '%s'", abs, rel);
	else
		check(!strstr(abs, SECRET) && !strstr(rel, SECRET), "no-escape", "out_abs '%s' out_rel '%s'", abs, rel);
	/* "..": the guest kernel resolves it in the guest, never past the share on the host */
	check(!strstr(get(at(d, "../outside/secret")), SECRET), "no-dotdot", "../outside/secret read");
}

/* One process swaps d/sw between a directory and a symlink to "/"; this one opens d/sw/secret. */
static void race(const char *d, int seconds)
{
	time_t end = time(NULL) + seconds;
	long opens = 0, leaks = 0;
	pid_t pid;

	mkdir(at(d, "sw"), 0755);
	put(at(d, "sw/secret"), "decoy", O_TRUNC);
	pid = fork();
	if (pid == 0) {
		while (time(NULL) < end) {
			rename(at(d, "sw"), at(d, "sw.dir"));
			symlink("/", at(d, "sw"));
			unlink(at(d, "sw"));
			rename(at(d, "sw.dir"), at(d, "sw"));
		}
		_exit(0);
	}
	while (time(NULL) < end) {
		const char *c = get(at(d, "sw/outside/secret"));
		opens++;
		leaks += strstr(c, SECRET) != NULL;
		c = get(at(d, "sw/secret"));
		leaks += strstr(c, SECRET) != NULL;
	}
	waitpid(pid, NULL, 0);
	check(leaks == 0 && opens > 0, "swap-race", "%ld of %ld reads leaked the secret", leaks, opens);
}

static volatile sig_atomic_t go;
static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static int hold(const char *file, const char *out)
{
	int fd = open(file, O_RDONLY);
	char buf[256] = { 0 };

	if (fd < 0)
		return perror(file), 1;
	signal(SIGUSR1, on_usr1);
	pid_t child = fork();
	if (child > 0) { /* the exec ends; the child keeps the descriptor, its pid in HOLD_PID_FILE */
		char pid[24];
		snprintf(pid, sizeof(pid), "%d\n", (int)child);
		return put(HOLD_PID_FILE, pid, O_TRUNC) < 0 ? 1 : (printf("ok holding\n"), 0);
	}
	setsid();
	while (!go)
		pause();
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	return put(out, n > 0 ? buf : "read failed", O_TRUNC) < 0;
}

static int append_log(const char *file, long first)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_APPEND, 0644);
	char line[32];

	if (fd < 0)
		return perror(file), 1;
	for (long n = first;; n++) {
		int len = snprintf(line, sizeof(line), "rec %08ld\n", n);
		if (write(fd, line, (size_t)len) != len || fdatasync(fd) < 0)
			return perror(file), 1;
		printf("ack %ld\n", n);
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[1], "ops") == 0) {
		ops_files(argv[2]);
		ops_mmap(argv[2]);
		ops_sparse(argv[2]);
		ops_readdir(argv[2]);
	} else if (argc == 3 && strcmp(argv[1], "ro") == 0) {
		ro(argv[2]);
	} else if (argc == 4 && strcmp(argv[1], "policy") == 0) {
		policy(argv[2], argv[3]);
	} else if (argc == 4 && strcmp(argv[1], "race") == 0) {
		race(argv[2], atoi(argv[3]));
	} else if (argc == 4 && strcmp(argv[1], "hold") == 0) {
		return hold(argv[2], argv[3]);
	} else if (argc == 4 && strcmp(argv[1], "log") == 0) {
		return append_log(argv[2], atol(argv[3]));
	} else {
		fprintf(stderr, "usage: sm-fsprobe ops|ro DIR | policy DIR P | race DIR S | hold FILE OUT | log FILE FIRST\n");
		return 2;
	}
	return fails > 100 ? 100 : fails;
}

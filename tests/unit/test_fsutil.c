/*
 * src/base/fsutil.c: the durable write replaces whole, or not at all, and
 * leaves no temp behind; flat directories are emptied, removed and
 * measured without descending or following a symlink.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fsutil.h"

static char dir[] = "/tmp/sm-fsutil-XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(fsutil, .init = setup, .fini = teardown);

static void path_in(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

static void expect_content(const char *path, const char *want)
{
	char buf[256] = { 0 };
	FILE *f = fopen(path, "r");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	cr_expect_eq(n, strlen(want), "%s: %zu bytes, want %zu", path, n, strlen(want));
	cr_expect_str_eq(buf, want, "%s", path);
}

/* Names in d other than . and .. (the temp files would show up here). */
static int entries(const char *d)
{
	DIR *dp = opendir(d);
	struct dirent *de;
	int n = 0;

	cr_assert_not_null(dp, "%s", d);
	while ((de = readdir(dp)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(dp);
	return n;
}

Test(fsutil, writes_and_replaces)
{
	char p[128];
	struct stat st;

	path_in(p, sizeof(p), "meta.json");
	cr_assert_eq(durable_write(p, "first", 5, 0640), 0);
	expect_content(p, "first");
	cr_assert_eq(stat(p, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0640, "mode %o", st.st_mode & 07777);
	cr_assert_eq(durable_write(p, "second, longer", 14, 0644), 0);
	expect_content(p, "second, longer");
	cr_assert_eq(durable_write(p, "", 0, 0644), 0);
	expect_content(p, "");
	cr_expect_eq(entries(dir), 1, "a temp file was left beside the target");
}

Test(fsutil, missing_directory_fails_cleanly)
{
	char p[128];

	path_in(p, sizeof(p), "no/such/dir/file");
	cr_expect_eq(durable_write(p, "x", 1, 0644), -ENOENT);
	cr_expect_eq(entries(dir), 0);
}

/* The rename is what fails: the temp is gone and the target is as it was. */
Test(fsutil, failed_rename_keeps_target)
{
	char p[128], inside[160];

	path_in(p, sizeof(p), "busy");
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(inside, sizeof(inside), "%s/keep", p);
	cr_assert_eq(durable_write(inside, "old", 3, 0644), 0);
	cr_expect_lt(durable_write(p, "new", 3, 0644), 0);
	expect_content(inside, "old");
	cr_expect_eq(entries(dir), 1, "a temp file was left beside the target");
}

/* The write is what fails (the file size limit, as a full disk would): old content stays. */
Test(fsutil, failed_write_keeps_old_content)
{
	char p[128], big[4096];
	struct rlimit old, small = { .rlim_cur = 1024 };

	path_in(p, sizeof(p), "state");
	cr_assert_eq(durable_write(p, "old", 3, 0644), 0);
	memset(big, 'x', sizeof(big));
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	small.rlim_max = old.rlim_max;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
	int rc = durable_write(p, big, sizeof(big), 0644);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	cr_expect_eq(rc, -EFBIG, "rc %d", rc);
	expect_content(p, "old");
	cr_expect_eq(entries(dir), 1, "a temp file was left beside the target");
}

Test(fsutil, install_and_rename)
{
	char tmp[128], p[128], sub[128], moved[128];

	path_in(tmp, sizeof(tmp), "blob.partial");
	path_in(p, sizeof(p), "blob");
	FILE *f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fputs("blob", f);
	fclose(f);
	cr_assert_eq(durable_install(tmp, p, 0444), 0);
	expect_content(p, "blob");
	cr_expect_eq(access(tmp, F_OK), -1);
	cr_expect_eq(durable_install(tmp, p, 0444), -ENOENT);

	path_in(sub, sizeof(sub), "a/b/c");
	cr_assert_eq(mkdir_p(sub, 0755), 0);
	cr_assert_eq(mkdir_p(sub, 0755), 0);
	path_in(moved, sizeof(moved), "a/d");
	cr_expect_eq(durable_rename(sub, moved), 0);
	cr_expect_eq(fsync_dir(moved), 0);
	cr_expect_eq(fsync_dir_of(moved), 0);
}

/* ---- flat directories: emptied, removed and measured without descending or following ---- */

static void put(const char *name, const char *text)
{
	char p[256];
	FILE *f;

	path_in(p, sizeof(p), name);
	f = fopen(p, "w");
	cr_assert_not_null(f, "%s", p);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

static void mk(const char *name)
{
	char p[256];

	path_in(p, sizeof(p), name);
	cr_assert_eq(mkdir(p, 0700), 0, "%s", p);
}

static bool exists(const char *name)
{
	char p[256];
	struct stat st;

	path_in(p, sizeof(p), name);
	return lstat(p, &st) == 0;
}

/* flat/ with a file, symlinks to a file and a directory outside it, an empty subdirectory. */
static void flat_dir(void)
{
	char p[256], t[256];

	mk("flat");
	mk("outside");
	mk("flat/jail");
	put("flat/meta.json", "{}");
	put("outside/kept", "kept");
	path_in(t, sizeof(t), "outside/kept"), path_in(p, sizeof(p), "flat/to-file");
	cr_assert_eq(symlink(t, p), 0);
	path_in(t, sizeof(t), "outside"), path_in(p, sizeof(p), "flat/to-dir");
	cr_assert_eq(symlink(t, p), 0);
}

Test(fsutil, remove_flat_takes_links_not_their_targets)
{
	char p[256], failed[256] = "";

	flat_dir();
	path_in(p, sizeof(p), "flat");
	cr_expect_eq(dir_remove_flat(p, failed, sizeof(failed)), 0, "%s", failed);
	cr_expect(!exists("flat"), "the directory stayed");
	cr_expect(exists("outside") && exists("outside/kept"), "a symlink's target was removed");
	expect_content(strcat(strcpy(p, dir), "/outside/kept"), "kept");
}

Test(fsutil, remove_flat_leaves_a_full_subdirectory_and_names_it)
{
	char p[256], want[256], failed[256] = "";

	flat_dir();
	mk("flat/sub");
	put("flat/sub/deep", "deep");
	path_in(p, sizeof(p), "flat");
	int rc = dir_remove_flat(p, failed, sizeof(failed));
	cr_expect(rc == -ENOTEMPTY || rc == -EEXIST, "rc %d", rc);
	path_in(want, sizeof(want), "flat/sub");
	cr_expect_str_eq(failed, want);
	cr_expect(exists("flat/sub/deep"), "it descended into a subdirectory");
	cr_expect(!exists("flat/meta.json") && !exists("flat/jail") && !exists("flat/to-dir"),
		  "the rest was not removed");
	cr_expect(exists("outside/kept"));
}

Test(fsutil, remove_flat_refuses_a_missing_dir_and_a_symlink)
{
	char p[256], t[256], failed[256] = "";

	path_in(p, sizeof(p), "nothing");
	cr_expect_eq(dir_remove_flat(p, failed, sizeof(failed)), -ENOENT);
	cr_expect_str_eq(failed, p);
	flat_dir();
	path_in(t, sizeof(t), "outside"), path_in(p, sizeof(p), "link");
	cr_assert_eq(symlink(t, p), 0);
	cr_expect_lt(dir_remove_flat(p, failed, sizeof(failed)), 0, "emptied a directory through a symlink");
	cr_expect_str_eq(failed, p);
	cr_expect(exists("outside/kept") && exists("link"));
	int rc = dir_remove_flat(p, NULL, 0); /* no place for the path is fine */
	cr_expect(rc == -ELOOP || rc == -ENOTDIR, "rc %d", rc);
}

Test(fsutil, empty_at_keeps_the_directory)
{
	char p[256], failed[256] = "";

	flat_dir();
	path_in(p, sizeof(p), "flat");
	int fd = open(p, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(fd, 0);
	cr_expect_eq(dir_empty_at(fd, p, failed, sizeof(failed)), 0, "%s", failed);
	close(fd);
	cr_expect_eq(entries(p), 0);
	cr_expect(exists("outside/kept"));
}

Test(fsutil, usage_counts_regular_files_here_only)
{
	char p[256];
	struct dir_usage u = { .files = 0 };
	struct timespec old[2] = { { .tv_sec = 1000 }, { .tv_sec = 1000 } };

	flat_dir();
	put("flat/a.ext4", "0123456789");
	mk("flat/sub");
	put("flat/sub/deep.ext4", "deep");
	path_in(p, sizeof(p), "flat");
	cr_assert_eq(dir_usage_add(p, NULL, &u), 0);
	cr_expect_eq(u.files, 2, "%llu files: links, subdirectories or their content counted",
		     (unsigned long long)u.files);
	cr_expect_gt(u.bytes, 0);
	cr_expect_geq(u.newest, time(NULL) - 60);

	struct dir_usage s = { .files = 0 };
	cr_assert_eq(dir_usage_add(p, ".ext4", &s), 0);
	cr_expect_eq(s.files, 1);
	cr_expect_leq(s.bytes, u.bytes);
	cr_assert_eq(dir_usage_add(p, ".ext4", &s), 0);
	cr_expect_eq(s.files, 2, "a second directory adds to the first");

	/* newest: the directory itself counts, as files come and go in it */
	struct dir_usage n = { .files = 0 };
	path_in(p, sizeof(p), "outside/kept");
	cr_assert_eq(utimensat(AT_FDCWD, p, old, AT_SYMLINK_NOFOLLOW), 0);
	path_in(p, sizeof(p), "outside");
	cr_assert_eq(utimensat(AT_FDCWD, p, old, AT_SYMLINK_NOFOLLOW), 0);
	cr_assert_eq(dir_usage_add(p, NULL, &n), 0);
	cr_expect_eq(n.newest, 1000);
	path_in(p, sizeof(p), "nothing");
	cr_expect_eq(dir_usage_add(p, NULL, &n), -ENOENT);
}

/* The durable write (src/base/fsutil.c): replaces whole, or not at all, and leaves no temp behind. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

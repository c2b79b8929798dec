/*
 * virtio-fs against a real Linux guest (tests/vm/guest/fs_guest.c): the
 * worker shares a writable directory (policy opaque) and a read-only one;
 * the guest, as root, runs file operations, the policy and escape checks,
 * and waits for a change the host makes while it runs. The host then
 * checks what reached its directory, and that nothing outside changed.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "worker_proc.h"

#define BOOT_WAIT 600000 /* hang guard: nested KVM under TCG, maybe beside other VMs */

static const char *const checks[] = {
	"mount", "read", "write", "many", "rename", "sparse", "mmap", "perms", "device",
	"extlink", "plant", "hardlink", "xattr", "readonly",
};

/* Removes one entry of a tree, never following a symlink. */
static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void host_put(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_not_null(f = fopen(path, "w"), "%s", path);
	fputs(text, f);
	fclose(f);
}

static void host_expect(const char *dir, const char *name, const char *text)
{
	char path[256], buf[128] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_not_null(f = fopen(path, "r"), "%s", path);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	cr_expect_str_eq(buf, text, "%s", path);
}

/* The guest's line for check: fails the test unless it is "ok". */
static void expect_ok(struct wproc *w, const char *check)
{
	char prefix[64], line[512];

	snprintf(prefix, sizeof(prefix), "SMTEST fs %s ", check);
	if (!wproc_wait_line(w, prefix, line, sizeof(line), BOOT_WAIT)) {
		wproc_dump(w);
		cr_assert_fail("no line for %s from the guest", check);
	}
	cr_expect(strstr(line, " ok"), "%s", line);
}

Test(vm_virtio_fs, guest_file_operations_policies_and_host_changes, .timeout = 900)
{
	char work[128], ro[128], spec_w[160], spec_ro[160], line[256], path[256], target[64];
	struct wproc w;
	struct stat st;

	snprintf(work, sizeof(work), "/tmp/sm-vmfs-XXXXXX");
	cr_assert_not_null(mkdtemp(work));
	snprintf(ro, sizeof(ro), "%.100s-ro", work);
	cr_assert_eq(mkdir(ro, 0755), 0);
	host_put(work, "hello.txt", "hello from the host");
	host_put(work, "change.txt", "before");
	host_put(ro, "kept.txt", "read-only");
	snprintf(path, sizeof(path), "%s/abs", work);
	cr_assert_eq(symlink("/etc", path), 0);
	snprintf(spec_w, sizeof(spec_w), "work,%s", work);
	snprintf(spec_ro, sizeof(spec_ro), "ro,%s,ro", ro);
	const char *const extra[] = { "--fs", spec_w, "--fs", spec_ro, NULL };

	if (!wproc_start(&w, SM_FS_GUEST_INITRAMFS, "quiet", 256, extra))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
		expect_ok(&w, checks[i]);
	if (!wproc_wait_line(&w, "SMTEST fs waiting", line, sizeof(line), BOOT_WAIT)) {
		wproc_dump(&w);
		cr_assert_fail("the guest never waited for the host's change");
	}
	host_put(work, "change.txt", "after");
	expect_ok(&w, "change");
	cr_assert(wproc_wait_line(&w, "SMTEST fs done", line, sizeof(line), BOOT_WAIT));
	cr_expect_eq(wproc_wait(&w, BOOT_WAIT), 0, "the guest reboots: exit status 0");

	host_expect(work, "guest.txt", "written by the guest");
	host_expect(work, "guest-link", "written by the guest");
	host_expect(work, "r2", "0123");
	host_expect(work, "mapped", "mapped!");
	host_expect(ro, "kept.txt", "read-only");
	snprintf(path, sizeof(path), "%s/escape", work);
	cr_assert_eq(readlink(path, target, sizeof(target)), 11);
	cr_expect_eq(memcmp(target, "/etc/passwd", 11), 0);
	snprintf(path, sizeof(path), "%s/suid", work);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0600);
	snprintf(path, sizeof(path), "%s/null", work);
	cr_expect_neq(lstat(path, &st), 0, "no device node reached the host");
	snprintf(path, sizeof(path), "%s/new", ro);
	cr_expect_neq(lstat(path, &st), 0, "nothing written to the read-only share");
	cr_assert_eq(stat("/etc", &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0755, "the host's /etc untouched");
	wproc_stop(&w);
	nftw(work, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	nftw(ro, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

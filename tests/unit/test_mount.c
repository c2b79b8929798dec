/*
 * Host-directory mounts as the library checks them before a worker runs
 * (src/lib/vm_mount.c): the --mount spec, the config checks that must
 * fail before any VM starts, and the record a snapshot keeps and a
 * restore reads back.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/snapshot.h"
#include "lib/vm_mount.h"

static char tmp[64], dir_a[128], dir_b[128], file[128];

static void setup(void)
{
	FILE *f;

	snprintf(tmp, sizeof(tmp), "/tmp/sm-mount-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
	snprintf(dir_a, sizeof(dir_a), "%s/a", tmp);
	snprintf(dir_b, sizeof(dir_b), "%s/b", tmp);
	snprintf(file, sizeof(file), "%s/f", tmp);
	cr_assert_eq(mkdir(dir_a, 0755), 0);
	cr_assert_eq(mkdir(dir_b, 0755), 0);
	f = fopen(file, "w");
	cr_assert_not_null(f);
	fclose(f);
}

static void teardown(void)
{
	rmdir(dir_a);
	rmdir(dir_b);
	unlink(file);
	rmdir(tmp);
}

TestSuite(mount, .init = setup, .fini = teardown);

Test(mount, parse_forms)
{
	char buf[256];
	sm_mount m;

	cr_assert_eq(sm_mount_parse("/srv/a:/work", buf, sizeof(buf), &m, NULL), 0);
	cr_expect_str_eq(m.host_dir, "/srv/a");
	cr_expect_str_eq(m.guest_path, "/work");
	cr_expect_not(m.read_only);
	cr_expect_eq(m.symlinks, SM_SYMLINKS_OPAQUE);
	cr_assert_eq(sm_mount_parse("rel/dir:/w/x:ro,symlinks=deny", buf, sizeof(buf), &m, NULL), 0);
	cr_expect_str_eq(m.host_dir, "rel/dir");
	cr_expect_str_eq(m.guest_path, "/w/x");
	cr_expect(m.read_only);
	cr_expect_eq(m.symlinks, SM_SYMLINKS_DENY);
	cr_assert_eq(sm_mount_parse("/a:/b:rw,symlinks=follow", buf, sizeof(buf), &m, NULL), 0);
	cr_expect_not(m.read_only);
	cr_expect_eq(m.symlinks, SM_SYMLINKS_FOLLOW);
}

Test(mount, parse_refuses)
{
	static const char *const bad[] = {
		"", "/a", ":/b", "/a:", "/a:b", "/a:/", "/a:/b/../c", "/a:/b/./c", "/a:/b//c", "/a:/b/",
		"/a:/b:rx", "/a:/b,symlinks=maybe", "/a:/b,ro", "/a:/b:ro,", "/a:/b,symlinks",
	};
	char buf[256];
	sm_mount m;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sm_error *e = NULL;
		cr_expect_eq(sm_mount_parse(bad[i], buf, sizeof(buf), &m, &e), -1, "'%s' parsed", bad[i]);
		cr_expect_eq(sm_error_code(e), SM_E_INVALID, "'%s'", bad[i]);
		cr_expect_not_null(strstr(sm_error_message(e), "mount"), "'%s': %s", bad[i], sm_error_message(e));
		sm_error_free(e);
	}
	cr_expect_eq(sm_mount_parse("/a:/b", buf, 4, &m, NULL), -1, "a spec longer than the buffer");
}

/* plan() of one config: the error's message, or NULL when it planned. */
static char *plan_error(const sm_mount *ms, size_t n, const sm_volume *vols, size_t nvols)
{
	sm_vm_config c = { .mounts = ms, .nmounts = n, .volumes = vols, .nvolumes = nvols };
	struct vm_mounts out;
	sm_error *e = NULL;
	char *msg;

	if (vm_mounts_plan(&c, &out, &e) == 0) {
		vm_mounts_free(&out);
		return NULL;
	}
	msg = strdup(sm_error_message(e));
	sm_error_free(e);
	return msg;
}

static void expect_refused(const sm_mount *ms, size_t n, const sm_volume *vols, size_t nvols, const char *says)
{
	char *msg = plan_error(ms, n, vols, nvols);

	cr_assert_not_null(msg, "planned; wanted an error saying '%s'", says);
	cr_expect_not_null(strstr(msg, says), "'%s' does not say '%s'", msg, says);
	free(msg);
}

Test(mount, plan_refuses_before_start)
{
	sm_mount missing = { .host_dir = "/nonexistent/sm-mount", .guest_path = "/w" };
	sm_mount a_file = { .host_dir = file, .guest_path = "/w" };
	sm_mount two_tags[] = { { .host_dir = dir_a, .guest_path = "/a", .tag = "t" },
				{ .host_dir = dir_b, .guest_path = "/b", .tag = "t" } };
	sm_mount nested[] = { { .host_dir = dir_a, .guest_path = "/w" }, { .host_dir = dir_b, .guest_path = "/w/in" } };
	sm_mount outer[] = { { .host_dir = dir_a, .guest_path = "/w/in" }, { .host_dir = dir_b, .guest_path = "/w" } };
	sm_mount same[] = { { .host_dir = dir_a, .guest_path = "/w" }, { .host_dir = dir_b, .guest_path = "/w" } };
	sm_mount in_volume = { .host_dir = dir_a, .guest_path = "/data/share" };
	sm_volume vol = { .host_path = file, .guest_path = "/data" };
	sm_mount bad_tag = { .host_dir = dir_a, .guest_path = "/w", .tag = "a,b" };
	sm_mount long_tag = { .host_dir = dir_a, .guest_path = "/w", .tag = "0123456789012345678901234567890123456" };
	sm_mount bad_path = { .host_dir = dir_a, .guest_path = "w" };
	sm_mount bad_policy = { .host_dir = dir_a, .guest_path = "/w", .symlinks = (sm_symlinks)7 };

	expect_refused(&missing, 1, NULL, 0, "/nonexistent/sm-mount");
	expect_refused(&a_file, 1, NULL, 0, "is not a directory");
	expect_refused(two_tags, 2, NULL, 0, "tag 't' is already mount 0's");
	expect_refused(nested, 2, NULL, 0, "overlaps mount 0's /w");
	expect_refused(outer, 2, NULL, 0, "overlaps mount 0's /w/in");
	expect_refused(same, 2, NULL, 0, "overlaps");
	expect_refused(&in_volume, 1, &vol, 1, "overlaps volume 0's /data");
	expect_refused(&bad_tag, 1, NULL, 0, "tag 'a,b'");
	expect_refused(&long_tag, 1, NULL, 0, "tag '0123");
	expect_refused(&bad_path, 1, NULL, 0, "guest path 'w'");
	expect_refused(&bad_policy, 1, NULL, 0, "symlink policy 7");
	/* 8 volumes, the rootfs and 7 mounts: one more than the VM's device slots */
	sm_mount seven[7];
	sm_volume eight[8];
	for (int i = 0; i < 8; i++)
		eight[i] = (sm_volume){ .host_path = file, .guest_path = i ? "/v1" : "/v0" };
	for (int i = 0; i < 7; i++)
		seven[i] = (sm_mount){ .host_dir = dir_a };
	expect_refused(seven, 7, eight, 8, "a VM has room for 15 disks and mounts together");
	char *ok = plan_error(seven, 6, eight, 8);
	cr_expect_null(ok, "6 mounts with 8 volumes fit: %s", ok);
	free(ok);
}

Test(mount, plan_resolves)
{
	sm_mount ms[] = { { .host_dir = dir_a, .guest_path = "/w" },
			  { .host_dir = dir_b, .tag = "mine", .read_only = true, .symlinks = SM_SYMLINKS_FOLLOW },
			  { .host_dir = dir_a, .guest_path = "/wx" } };
	sm_vm_config c = { .mounts = ms, .nmounts = 3 };
	struct proto_volume guest[SM_MAX_MOUNTS];
	struct worker_launch l = { 0 };
	struct vm_mounts out;

	cr_assert_eq(vm_mounts_plan(&c, &out, NULL), 0);
	cr_assert_eq(out.n, 3);
	cr_expect_str_eq(out.m[0].tag, "sm0");
	cr_expect_str_eq(out.m[1].tag, "mine");
	cr_expect_str_eq(out.m[2].tag, "sm2");
	cr_expect_eq(out.m[0].host_dir[0], '/');
	vm_mounts_launch(&out, &l);
	cr_assert_eq(l.nmounts, 3);
	cr_expect(l.mounts[1].read_only);
	cr_expect_eq(l.mounts[1].symlinks, WORKER_SYMLINKS_FOLLOW);
	/* the one without a guest path is the guest's to mount by hand */
	cr_assert_eq(vm_mounts_guest(&out, guest), 2);
	cr_expect_str_eq(guest[0].device, "sm0");
	cr_expect_str_eq(guest[0].fstype, PROTO_FSTYPE_VIRTIOFS);
	cr_expect_str_eq(guest[1].path, "/wx");
	vm_mounts_free(&out);
}

Test(mount, snapshot_record_and_restore)
{
	sm_mount ms[] = { { .host_dir = dir_a, .guest_path = "/w", .read_only = true } };
	sm_mount other = { .host_dir = dir_b, .guest_path = "/w", .read_only = true };
	sm_mount moved = { .host_dir = dir_b, .guest_path = "/elsewhere", .read_only = true };
	sm_vm_config c = { .mounts = ms, .nmounts = 1 }, none = { 0 };
	sm_vm_config again = { .mounts = &other, .nmounts = 1 }, wrong = { .mounts = &moved, .nmounts = 1 };
	struct vm_mounts out, back;
	sm_error *e = NULL;
	json_t *rec;

	cr_assert_eq(vm_mounts_plan(&c, &out, NULL), 0);
	rec = vm_mounts_json(&out, true);
	cr_assert_not_null(rec);
	/* nothing given: the snapshot's own host directory */
	cr_assert_eq(vm_mounts_restore(rec, &none, &back, NULL), 0);
	cr_expect_str_eq(back.m[0].host_dir, out.m[0].host_dir);
	cr_expect(back.m[0].read_only);
	vm_mounts_free(&back);
	/* another host directory under the same guest path */
	cr_assert_eq(vm_mounts_restore(rec, &again, &back, NULL), 0);
	cr_expect_not_null(strstr(back.m[0].host_dir, "/b"));
	vm_mounts_free(&back);
	cr_expect_eq(vm_mounts_restore(rec, &wrong, &back, &e), -1);
	cr_expect_not_null(strstr(sm_error_message(e), "only its host directory may change"), "%s",
			   sm_error_message(e));
	sm_error_free(e);
	/* the snapshot's directory is gone: a clear error, not a VM without it */
	teardown();
	e = NULL;
	cr_expect_eq(vm_mounts_restore(rec, &none, &back, &e), -1);
	cr_expect_not_null(strstr(sm_error_message(e), "host directory"), "%s", sm_error_message(e));
	sm_error_free(e);
	setup();
	json_decref(rec);
	vm_mounts_free(&out);
}

Test(mount, hostile_record)
{
	static const char *const bad[] = {
		"{}", "[1]", "[{\"tag\":\"a\"}]", "[{\"tag\":\"a\",\"read_only\":1,\"symlinks\":\"deny\"}]",
		"[{\"tag\":\"a\",\"read_only\":true,\"symlinks\":\"sometimes\"}]",
		"[{\"tag\":\"a\",\"read_only\":true,\"symlinks\":\"deny\",\"guest_path\":5}]",
		"[{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}]",
	};
	sm_mount ms[SM_MAX_MOUNTS];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *j = json_loads(bad[i], 0, NULL);
		sm_error *e = NULL;
		size_t n;
		cr_assert_not_null(j, "%s", bad[i]);
		cr_expect_eq(vm_mounts_from_json(j, ms, &n, &e), -1, "%s was read", bad[i]);
		cr_expect_eq(sm_error_code(e), SM_E_SNAPSHOT, "%s", bad[i]);
		sm_error_free(e);
		json_decref(j);
	}
}

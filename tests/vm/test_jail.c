/*
 * A jailed worker (docs/security.md), booted and restored as root: the
 * host sees its jail uid in /proc/PID/status, and its mount namespace
 * holds the jail's root and its /proc alone; it captures into a directory
 * outside the store (sent as a descriptor), and that capture restores.
 * Skipped unless root (no jail otherwise).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"
#include "lib/vm_cgroup.h"

#define JAIL_ID_BASE 0x5e000000ul /* WORKER_JAIL_ID_BASE */

static char IMAGE[4200];

static void setup(void)
{
	if (geteuid() != 0)
		cr_skip_test("the jail applies to workers a root process starts");
	setenv("SUPERMACHINE_JAIL", "1", 1); /* opt-in in this version (docs/security.md) */
	fx_vm_store("jailtest", IMAGE, sizeof(IMAGE));
}

TestSuite(jail, .init = setup, .timeout = 1800);

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	fx_shared_store_remove("jailtest");
}

/* The worker's host pid, from its pidfd's fdinfo. */
static int worker_pid(const sm_vm *vm)
{
	char path[64], line[128];
	int pid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", sm_vm_pidfd(vm));
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid: %d", &pid) == 1)
			break;
	if (f)
		fclose(f);
	return pid;
}

static unsigned long status_uid(int pid)
{
	char path[64], line[256];
	unsigned long uid = ~0ul;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %lu", &uid) == 1)
			break;
	if (f)
		fclose(f);
	return uid;
}

/* Its mount points: "/" and "/proc"; nothing else. */
static void expect_jailed(const sm_vm *vm)
{
	char path[64], line[1024], point[512];
	int pid = worker_pid(vm), n = 0;
	FILE *f;

	cr_assert_gt(pid, 1);
	unsigned long uid = status_uid(pid);
	cr_expect(uid >= JAIL_ID_BASE && uid < JAIL_ID_BASE + 65536, "worker uid %lu", uid);
	snprintf(path, sizeof(path), "/proc/%d/mountinfo", pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		cr_assert_eq(sscanf(line, "%*s %*s %*s %*s %511s", point), 1);
		cr_expect(!strcmp(point, "/") || !strcmp(point, "/proc"), "a host mount in the jail: %s", point);
		n++;
	}
	fclose(f);
	cr_expect_eq(n, 2, "%d mounts", n);
}

Test(jail, booted_and_restored_workers_run_jailed)
{
	sm_vm_config cfg = { .size = sizeof(cfg) };
	sm_error *err = NULL;
	sm_vm *vm, *clone;

	if (geteuid() != 0)
		cr_skip_test("the jail is root's");
	vm = sm_vm_start(IMAGE, &cfg, &err);
	cr_assert_not_null(vm, "%s", err ? sm_error_string(err) : "");
	expect_jailed(vm);
	cr_assert_eq(sm_vm_snapshot(vm, "jailtest-snap", &err), 0, "%s", err ? sm_error_string(err) : "");
	sm_vm_stop(vm, 0, NULL);
	sm_vm_free(vm);
	clone = sm_vm_restore("jailtest-snap", NULL, &err);
	cr_assert_not_null(clone, "%s", err ? sm_error_string(err) : "");
	expect_jailed(clone);
	sm_vm_stop(clone, 0, NULL);
	sm_vm_free(clone);
}

/*
 * Where this host puts jailed workers' cgroup leaves, from `check`'s
 * cgroup line ("... a cgroup v2 leaf under PARENT: ..."); false when it
 * allows none (a hybrid host, controllers not delegated).
 */
static bool cgroup_parent(char *out, size_t len)
{
	static const char mark[] = "leaf under ";
	sm_host_report *r = sm_host_check(0, NULL);
	bool found = false;

	for (size_t i = 0; r && i < sm_host_report_count(r); i++) {
		const char *d = sm_host_report_detail(r, i), *p = strstr(d, mark);
		if (strcmp(sm_host_report_name(r, i), "cgroup") || !p)
			continue;
		p += strlen(mark);
		snprintf(out, len, "%.*s", (int)strcspn(p, ":"), p);
		found = true;
	}
	sm_host_report_free(r);
	return found;
}

static void read_text(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	cr_assert_not_null(f, "%s", path);
	buf[fread(buf, 1, len - 1, f)] = 0;
	fclose(f);
}

Test(jail, worker_runs_in_its_cgroup_leaf)
{
	sm_vm_config cfg = { .size = sizeof(cfg), .memory_mib = 256, .vcpus = 2 };
	char parent[4096], leaf[4200], path[4300], text[4096], want[4300];
	sm_error *err = NULL;
	struct stat st;
	sm_vm *vm;

	if (!cgroup_parent(parent, sizeof(parent)))
		cr_skip_test("this host allows no cgroup v2 leaf (see `supermachine check`)");
	vm = sm_vm_start(IMAGE, &cfg, &err);
	cr_assert_not_null(vm, "%s", err ? sm_error_string(err) : "");
	snprintf(leaf, sizeof(leaf), "%s/%s", parent, sm_vm_id(vm));
	snprintf(path, sizeof(path), "/proc/%d/cgroup", worker_pid(vm));
	read_text(path, text, sizeof(text));
	/* the leaf's path in the hierarchy: parent below /sys/fs/cgroup */
	snprintf(want, sizeof(want), "0::%s/%s\n", parent + strlen(VM_CGROUP_ROOT), sm_vm_id(vm));
	cr_expect(strstr(text, want), "the worker's cgroups: %s, want %s", text, want);
	snprintf(path, sizeof(path), "%s/memory.max", leaf);
	read_text(path, text, sizeof(text));
	cr_expect_eq(strtoull(text, NULL, 10), (256ull + VM_CGROUP_VMM_MIB + VM_CGROUP_VSOCK_MIB) << 20, "memory.max %s", text);
	snprintf(path, sizeof(path), "%s/cpu.max", leaf);
	read_text(path, text, sizeof(text));
	cr_expect_str_eq(text, "200000 100000\n");
	sm_vm_stop(vm, 0, NULL);
	sm_vm_free(vm);
	cr_expect_neq(stat(leaf, &st), 0, "%s outlived its VM", leaf);
}

/* A snapshot directory holds files alone. */
static void remove_flat(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	cr_assert_not_null(d, "%s", dir);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			cr_expect_eq(unlinkat(dirfd(d), e->d_name, 0), 0, "%s/%s", dir, e->d_name);
	closedir(d);
	cr_expect_eq(rmdir(dir), 0, "%s", dir);
}

Test(jail, captures_outside_the_store)
{
	sm_vm_config cfg = { .size = sizeof(cfg) };
	char parent[] = "/tmp/sm-jail-capture-XXXXXX", dir[64];
	sm_error *err = NULL;
	sm_vm *vm, *clone;

	cr_assert_not_null(mkdtemp(parent));
	snprintf(dir, sizeof(dir), "%s/snap", parent);
	vm = sm_vm_start(IMAGE, &cfg, &err);
	cr_assert_not_null(vm, "%s", err ? sm_error_string(err) : "");
	cr_assert_eq(sm_vm_snapshot(vm, dir, &err), 0, "%s", err ? sm_error_string(err) : "");
	sm_vm_stop(vm, 0, NULL);
	sm_vm_free(vm);
	clone = sm_vm_restore(dir, NULL, &err);
	cr_assert_not_null(clone, "%s", err ? sm_error_string(err) : "");
	expect_jailed(clone);
	sm_vm_stop(clone, 0, NULL);
	sm_vm_free(clone);
	remove_flat(dir);
	cr_expect_eq(rmdir(parent), 0, "%s is left with more than the capture", parent);
}

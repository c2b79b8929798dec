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
#include <unistd.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"

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

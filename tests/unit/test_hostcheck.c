/*
 * The host check (src/lib/hostcheck.c, src/base/kvm_host.c, `supermachine
 * check`): the judging of injected probe figures (fast, nested, emulating,
 * missing, not permitted, a missing capability, a probe cut off), the
 * report's text and JSON, the store's free space, the cached refusal of
 * sm_vm_start, and the real probe on this machine's /dev/kvm when it has
 * one: bounded even for a guest that never exits.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"
#include "base/kvm_host.h"
#include "lib/hostcheck.h"

static struct kvm_probe fast_probe(double mips, double exit_us)
{
	struct kvm_probe p = { .api_version = KVM_HOST_API_VERSION, .ran = true, .loop_done = true,
			       .loop_iters = KVM_PROBE_LOOP_ITERS, .insns_per_s = mips * 1e6,
			       .exit_ns = (uint64_t)(exit_us * 1000), .exits = 1999,
			       .exit_avg_ns = exit_us * 1000 };
	return p;
}

static const struct host_item *find(const struct sm_host_report *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->items[i].name, name))
			return &r->items[i];
	return NULL;
}

static sm_check_status status_of(const struct sm_host_report *r, const char *name)
{
	const struct host_item *it = find(r, name);

	cr_assert(it, "no '%s' line in the report", name);
	return it->status;
}

Test(hostcheck, hardware_speed_is_ok_and_can_run)
{
	struct sm_host_report r = { 0 };
	struct kvm_probe p = fast_probe(2500, 1.5);

	hostcheck_judge_kvm(&r, "/dev/kvm", &p);
	cr_expect_eq(status_of(&r, "kvm.device"), SM_CHECK_OK);
	cr_expect_eq(status_of(&r, "kvm.api"), SM_CHECK_OK);
	cr_expect_eq(status_of(&r, "kvm.caps"), SM_CHECK_OK);
	cr_expect_eq(status_of(&r, "kvm.speed"), SM_CHECK_OK);
	cr_expect_eq(status_of(&r, "kvm.exits"), SM_CHECK_OK);
	cr_expect(hostcheck_can_run(&r));
	cr_expect_float_eq(find(&r, "kvm.speed")->value, 2500.0, 1e-6);
	cr_expect_str_eq(find(&r, "kvm.speed")->unit, "M instructions/s");
}

Test(hostcheck, nested_speed_warns_but_can_run)
{
	struct sm_host_report r = { 0 };
	struct kvm_probe p = fast_probe(150, 110);

	hostcheck_judge_kvm(&r, "/dev/kvm", &p);
	cr_expect_eq(status_of(&r, "kvm.speed"), SM_CHECK_WARN);
	cr_expect_eq(status_of(&r, "kvm.exits"), SM_CHECK_WARN);
	cr_expect(hostcheck_can_run(&r));
}

Test(hostcheck, emulating_kvm_fails_with_the_figure)
{
	struct sm_host_report r = { 0 };
	struct kvm_probe p = fast_probe(0.4, 14);
	const struct host_item *it;

	p.loop_done = false;
	p.timed_out = true;
	hostcheck_judge_kvm(&r, "/dev/kvm", &p);
	it = find(&r, "kvm.speed");
	cr_assert(it);
	cr_expect_eq(it->status, SM_CHECK_FAIL);
	cr_expect(strstr(it->detail, "0.4 M instructions/s"), "%s", it->detail);
	cr_expect(strstr(it->detail, "emulates guest kernel code"), "%s", it->detail);
	cr_expect(strstr(it->detail, "cut off"), "%s", it->detail);
	cr_expect(it->hint[0]);
	cr_expect_not(hostcheck_can_run(&r));
}

Test(hostcheck, missing_device)
{
	struct sm_host_report r = { 0 };
	struct kvm_probe p = { .open_errno = ENOENT, .api_version = -1 };

	hostcheck_judge_kvm(&r, "/dev/kvm", &p);
	cr_assert_eq(r.n, 1, "one line for a device that is not there, not %zu", r.n);
	cr_expect_eq(r.items[0].status, SM_CHECK_FAIL);
	cr_expect(strstr(r.items[0].detail, "/dev/kvm does not exist"), "%s", r.items[0].detail);
	cr_expect(strstr(r.items[0].hint, "kvm_intel"), "%s", r.items[0].hint);
}

Test(hostcheck, not_permitted_names_the_kvm_group)
{
	struct sm_host_report r = { 0 };
	struct kvm_probe p = { .open_errno = EACCES, .api_version = -1 };

	hostcheck_judge_kvm(&r, "/dev/kvm", &p);
	cr_assert_eq(r.n, 1);
	cr_expect_eq(r.items[0].status, SM_CHECK_FAIL);
	cr_expect(strstr(r.items[0].detail, "permission denied"), "%s", r.items[0].detail);
	cr_expect(strstr(r.items[0].hint, "'kvm' group"), "%s", r.items[0].hint);
}

Test(hostcheck, missing_capability_is_named)
{
	struct sm_host_report r = { 0 };
	struct kvm_probe p = { .api_version = KVM_HOST_API_VERSION };

	snprintf(p.missing, sizeof(p.missing), "irqfd, PIT2");
	hostcheck_judge_kvm(&r, "/dev/kvm", &p);
	cr_expect_eq(status_of(&r, "kvm.caps"), SM_CHECK_FAIL);
	cr_expect(strstr(find(&r, "kvm.caps")->detail, "irqfd, PIT2"));
	cr_expect_null(find(&r, "kvm.speed"), "no speed line when the VM cannot be made");
}

Test(hostcheck, wrong_api_version)
{
	struct sm_host_report r = { 0 };
	struct kvm_probe p = { .api_version = 11 };

	hostcheck_judge_kvm(&r, "/dev/kvm", &p);
	cr_expect_eq(status_of(&r, "kvm.api"), SM_CHECK_FAIL);
	cr_expect(strstr(find(&r, "kvm.api")->detail, "version 11"));
}

Test(hostcheck, probe_that_timed_out_without_an_exit)
{
	struct sm_host_report r = { 0 };
	struct kvm_probe p = { .api_version = KVM_HOST_API_VERSION, .ran = true, .timed_out = true,
			       .loop_iters = 1000, .loop_ns = 300000000, .insns_per_s = 6666 };

	hostcheck_judge_kvm(&r, "/dev/kvm", &p);
	cr_expect_eq(status_of(&r, "kvm.speed"), SM_CHECK_FAIL);
	cr_expect_eq(status_of(&r, "kvm.exits"), SM_CHECK_FAIL);
	cr_expect(strstr(find(&r, "kvm.exits")->detail, "no I/O exit"));
}

Test(hostcheck, probe_guest_that_failed)
{
	struct sm_host_report r = { 0 };
	struct kvm_probe p = { .api_version = KVM_HOST_API_VERSION };

	snprintf(p.error, sizeof(p.error), "KVM_SET_SREGS (64-bit mode): Invalid argument");
	hostcheck_judge_kvm(&r, "/dev/kvm", &p);
	cr_expect_eq(status_of(&r, "kvm.guest"), SM_CHECK_FAIL);
	cr_expect(strstr(find(&r, "kvm.guest")->detail, "KVM_SET_SREGS"));
}

Test(hostcheck, store_space_and_writability)
{
	struct sm_host_report r = { 0 };

	hostcheck_judge_store(&r, "/s", 0, 10ull << 20);
	hostcheck_judge_store(&r, "/s", 0, 1ull << 30);
	hostcheck_judge_store(&r, "/s", 0, 50ull << 30);
	hostcheck_judge_store(&r, "/s", EROFS, 50ull << 30);
	cr_assert_eq(r.n, 4);
	cr_expect_eq(r.items[0].status, SM_CHECK_FAIL);
	cr_expect(strstr(r.items[0].detail, "10 MiB free"), "%s", r.items[0].detail);
	cr_expect_eq(r.items[1].status, SM_CHECK_WARN);
	cr_expect_eq(r.items[2].status, SM_CHECK_OK);
	cr_expect_eq(r.items[3].status, SM_CHECK_FAIL);
	cr_expect(strstr(r.items[3].detail, strerror(EROFS)), "%s", r.items[3].detail);
}

Test(hostcheck, text_and_json)
{
	struct sm_host_report *r = calloc(1, sizeof(*r));
	struct kvm_probe p = fast_probe(0.4, 14);
	json_t *j, *speed = NULL;
	char *text, *js;
	size_t i;
	json_t *v;

	cr_assert(r);
	hostcheck_judge_kvm(r, "/dev/kvm", &p);
	hostcheck_judge_nested(r, "/usr/bin/qemu-system-x86_64");
	text = sm_host_report_text(r);
	cr_assert(text);
	cr_expect(strstr(text, "ok    kvm.device       /dev/kvm opens read-write\n"), "%s", text);
	cr_expect(strstr(text, "FAIL  kvm.speed        guest kernel code runs at 0.4 M"), "%s", text);
	cr_expect(strstr(text, "-> use a host with hardware virtualization"), "%s", text);
	cr_expect(strstr(text, "warn  nested"), "%s", text);
	cr_expect(strstr(text, "VMs cannot run on this host (1 FAIL)\n"), "%s", text);
	js = sm_host_report_json(r);
	cr_assert(js);
	j = json_loads(js, 0, NULL);
	cr_assert(json_is_array(j), "%s", js);
	cr_expect_eq(json_array_size(j), sm_host_report_count(r));
	json_array_foreach(j, i, v)
		if (!strcmp(json_string_value(json_object_get(v, "name")), "kvm.speed"))
			speed = v;
	cr_assert(speed);
	cr_expect_str_eq(json_string_value(json_object_get(speed, "status")), "FAIL");
	cr_expect_float_eq(json_real_value(json_object_get(speed, "value")), 0.4, 1e-9);
	cr_expect_str_eq(json_string_value(json_object_get(speed, "unit")), "M instructions/s");
	cr_expect(json_is_string(json_object_get(speed, "hint")));
	cr_expect_not(sm_host_report_can_run(r));
	cr_expect_str_eq(sm_check_status_name(sm_host_report_status(r, 3)), "FAIL");
	cr_expect_null(sm_host_report_name(r, 99));
	json_decref(j);
	free(js);
	free(text);
	sm_host_report_free(r);
}

Test(hostcheck, not_root_says_whether_user_namespaces_are_possible)
{
	struct sm_host_report r = { .n = 0 };

	hostcheck_judge_userns(&r, -1, 63000);
	cr_expect(strstr(find(&r, "jail")->detail, "user namespaces are possible here (user.max_user_namespaces=63000)"),
		  "%s", r.items[0].detail);
	r.n = 0;
	hostcheck_judge_userns(&r, 0, 63000);
	cr_expect(strstr(find(&r, "jail")->detail, "seccomp and no_new_privs only"), "%s", r.items[0].detail);
	cr_expect(strstr(find(&r, "jail")->detail, "kernel.unprivileged_userns_clone=0"));
	r.n = 0;
	hostcheck_judge_userns(&r, 1, 0);
	cr_expect(strstr(find(&r, "jail")->detail, "user.max_user_namespaces=0"), "%s", r.items[0].detail);
	cr_expect_eq(status_of(&r, "jail"), SM_CHECK_OK);
}

Test(hostcheck, cgroup_leaf_or_why_not)
{
	struct sm_host_report *r = calloc(1, sizeof(*r));
	char *text;

	cr_assert(r);
	hostcheck_judge_cgroup(r, true, "/sys/fs/cgroup/supermachine", NULL);
	cr_expect_eq(status_of(r, "cgroup"), SM_CHECK_OK);
	cr_expect(strstr(find(r, "cgroup")->detail, "each jailed worker gets a cgroup v2 leaf under "
			 "/sys/fs/cgroup/supermachine"), "%s", find(r, "cgroup")->detail);
	r->n = 0;
	hostcheck_judge_cgroup(r, false, NULL, "no cgroup v2 hierarchy on /sys/fs/cgroup (cgroup v1, or a hybrid host)");
	cr_expect_eq(status_of(r, "cgroup"), SM_CHECK_OK, "no jail: nothing is missing");
	r->n = 0;
	hostcheck_judge_cgroup(r, true, NULL, "no cgroup v2 hierarchy on /sys/fs/cgroup (cgroup v1, or a hybrid host)");
	text = sm_host_report_text(r);
	cr_assert(text);
	cr_expect(strstr(text, "warn  cgroup           jailed workers get no cgroup leaf, so no memory.max or "
			 "cpu.max: no cgroup v2 hierarchy on /sys/fs/cgroup"), "%s", text);
	cr_expect(strstr(text, "-> run as root where cgroup v2 is mounted"), "%s", text);
	cr_expect(sm_host_report_can_run(r), "a missing leaf does not stop VMs");
	free(text);
	sm_host_report_free(r);
}

Test(hostcheck, internal_error_says_what_and_where)
{
	static const uint8_t insn[] = { 0x0f, 0x01, 0xd9 };
	char msg[512];

	kvm_internal_error_text(msg, sizeof(msg), 0, 1, 0xffffffff81000000ull, insn, sizeof(insn));
	cr_expect(strstr(msg, "vCPU 0"), "%s", msg);
	cr_expect(strstr(msg, "0xffffffff81000000"), "%s", msg);
	cr_expect(strstr(msg, "(bytes 0f 01 d9)"), "%s", msg);
	cr_expect(strstr(msg, "suberror 1: instruction emulation failed"), "%s", msg);
	cr_expect(strstr(msg, "could not run"), "%s", msg);
	cr_expect(strstr(msg, "supermachine check"), "%s", msg);
	kvm_internal_error_text(msg, sizeof(msg), 2, 3, 0x1000, NULL, 0);
	cr_expect_null(strstr(msg, "bytes"), "%s", msg);
	cr_expect(strstr(msg, "could not be delivered"), "%s", msg);
}

/* ---- this machine's /dev/kvm, when it has one ---- */

static void need_kvm(void)
{
	int fd = open(KVM_HOST_DEVICE, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		cr_skip_test("no usable /dev/kvm here");
	close(fd);
}

static double since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

Test(hostcheck, real_probe_reports_figures_within_its_bound)
{
	struct kvm_probe p;
	struct timespec t0;

	need_kvm();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(kvm_probe_run(NULL, &p), 0, "%s", p.error);
	cr_expect_lt(since(&t0), 5.0, "the probe took %.2f s", since(&t0));
	cr_expect(p.ran);
	cr_expect_gt(p.loop_iters, 0);
	cr_expect_gt(p.insns_per_s, 0);
	cr_expect_gt(p.exit_ns, 0, "the single I/O exit was measured");
	cr_expect_str_empty(p.missing);
}

Test(hostcheck, probe_guest_that_never_exits_is_cut_off)
{
	struct kvm_probe_opts o = { .program = KVM_PROBE_SPIN, .loop_budget_ms = 100 };
	struct kvm_probe p;
	struct timespec t0;

	need_kvm();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(kvm_probe_run(&o, &p), 0, "%s", p.error);
	cr_expect_lt(since(&t0), 3.0, "a spinning guest held the probe %.2f s", since(&t0));
	cr_expect(p.timed_out);
	cr_expect_not(p.loop_done);
	cr_expect_geq(p.loop_ns, 100000000ull, "cut off before its budget: %llu ns", (unsigned long long)p.loop_ns);
}

Test(hostcheck, user_outside_the_kvm_group_is_told_so)
{
	struct stat st;
	pid_t pid;
	int status;

	need_kvm();
	if (geteuid() != 0 || stat(KVM_HOST_DEVICE, &st) < 0 || (st.st_mode & 0006))
		cr_skip_test("needs root and a /dev/kvm that others may not open");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		sm_host_report *r;
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(3);
		r = sm_host_check(SM_CHECK_KVM_ONLY, NULL);
		_exit(r && sm_host_report_status(r, 0) == SM_CHECK_FAIL &&
		      strstr(sm_host_report_detail(r, 0), "permission denied for uid 65534") &&
		      strstr(sm_host_report_hint(r, 0), "'kvm' group") && !sm_host_report_can_run(r) ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
}

/* ---- the refusal of sm_vm_start, from the cached verdict ---- */

static char *runtime_env(void)
{
	char *dir = fx_tmpdir();

	cr_assert(dir);
	setenv("XDG_RUNTIME_DIR", dir, 1);
	return dir;
}

static void cache_put(bool ok, const char *why)
{
	char path[4200], key[512];
	FILE *f;

	cr_assert_eq(hostcheck_kvm_cache(KVM_HOST_DEVICE, path, sizeof(path), key, sizeof(key)), 0);
	f = fopen(path, "w");
	cr_assert(f);
	json_t *j = json_pack("{s:s, s:b, s:s}", "key", key, "ok", ok, "why", why);
	json_dumpf(j, f, 0);
	json_decref(j);
	fclose(f);
}

Test(hostcheck, start_is_refused_fast_from_the_cached_verdict)
{
	char *dir, rootfs[4200], kernel[4200];
	sm_error *err = NULL;
	struct timespec t0;
	sm_vm *vm;

	need_kvm();
	dir = runtime_env();
	cache_put(false, "guest kernel code runs at 0.4 M instructions/s (test)");
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs.ext4", dir);
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
	fclose(fopen(rootfs, "w"));
	fclose(fopen(kernel, "w"));
	setenv("SUPERMACHINE_KERNEL", kernel, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	vm = sm_vm_start(rootfs, NULL, &err);
	cr_assert_null(vm);
	cr_expect_lt(since(&t0), 1.0, "refused after %.2f s", since(&t0));
	cr_expect_eq(sm_error_code(err), SM_E_KVM, "%s", sm_error_string(err));
	cr_expect(strstr(sm_error_string(err), "0.4 M instructions/s (test)"), "%s", sm_error_string(err));
	cr_expect(strstr(sm_error_string(err), "supermachine check"), "%s", sm_error_string(err));
	sm_error_free(err);
	unsetenv("SUPERMACHINE_KERNEL");
	fx_rmrf(dir);
	free(dir);
}

Test(hostcheck, cached_good_verdict_skips_the_probe_and_a_miss_writes_one)
{
	char path[4200], key[512];
	struct timespec t0;
	char *dir;
	json_t *j;

	need_kvm();
	dir = runtime_env();
	cache_put(true, "");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_expect_eq(hostcheck_require_kvm(NULL), 0);
	cr_expect_lt(since(&t0), 0.05, "a cached verdict took %.3f s (probed again?)", since(&t0));
	/* no cache: the probe runs and leaves its verdict under this boot's key */
	cr_assert_eq(hostcheck_kvm_cache(KVM_HOST_DEVICE, path, sizeof(path), key, sizeof(key)), 0);
	unlink(path);
	hostcheck_require_kvm(NULL);
	j = json_load_file(path, 0, NULL);
	cr_assert(j, "no cache at %s after a probe", path);
	cr_expect_str_eq(json_string_value(json_object_get(j, "key")), key);
	cr_expect(json_is_boolean(json_object_get(j, "ok")));
	json_decref(j);
	fx_rmrf(dir);
	free(dir);
}

Test(hostcheck, a_missing_device_is_refused_without_probing)
{
	sm_error *err = NULL;

	setenv("SUPERMACHINE_KVM_DEVICE", "/nonexistent/kvm", 1);
	cr_expect_eq(hostcheck_require_kvm(&err), -1);
	cr_expect_eq(sm_error_code(err), SM_E_KVM);
	cr_expect(strstr(sm_error_string(err), "/nonexistent/kvm"), "%s", sm_error_string(err));
	unsetenv("SUPERMACHINE_KVM_DEVICE");
	sm_error_free(err);
}

/* ---- the CLI ---- */

Test(hostcheck, cli_missing_device_one_line_and_exit_1)
{
	char *out = NULL, *err = NULL;
	int rc = fx_sh(&out, &err, "SUPERMACHINE_KVM_DEVICE=/nonexistent/kvm %s check --kvm-only", fx_cli());

	cr_expect_eq(rc, 1, "exit %d: %s%s", rc, out, err);
	cr_expect(strstr(out, "FAIL  kvm.device       /nonexistent/kvm does not exist"), "%s", out);
	cr_expect(strstr(out, "VMs cannot run on this host (1 FAIL)"), "%s", out);
	free(out);
	free(err);
	rc = fx_sh(&out, &err, "%s check --bogus", fx_cli());
	cr_expect_eq(rc, 125, "an unknown flag: exit %d", rc);
	cr_expect(strstr(err, "supermachine: check: unknown option: --bogus") && !strstr(err, "usage:"), "%s", err);
	free(out);
	free(err);
}

/* The store on a full filesystem: a 1 MiB tmpfs in a mount namespace of the test's own. */
Test(hostcheck, cli_store_without_space_fails)
{
	char *dir = fx_tmpdir(), cmd[8400];
	pid_t pid;
	int status;

	cr_assert(dir);
	if (geteuid() != 0)
		cr_skip_test("needs root for a tmpfs in a mount namespace");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", dir, "tmpfs", 0, "size=1m") < 0)
			_exit(3);
		snprintf(cmd, sizeof(cmd), "SUPERMACHINE_HOME=%s %s check | grep -q '^FAIL  store .* MiB free: no root "
			 "filesystem fits'; s=$?; SUPERMACHINE_HOME=%s %s check >/dev/null; [ $? = 1 ] && exit $s; exit 9",
			 dir, fx_cli(), dir, fx_cli());
		_exit(WEXITSTATUS(system(cmd)));
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		cr_skip_test("no tmpfs in a private mount namespace here");
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	fx_rmrf(dir);
	free(dir);
}

/*
 * The public API pieces that need no VM: the VM list over runtime
 * directories (sm_vm_list_*), waiting for a VM (sm_vm_pidfd, sm_vm_wait)
 * on a process that passes for a worker, and the sized config structs
 * (src/lib/config.c) at every entry point that takes one.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "lib/config.h"

static char tmp[64], base[128];

static void up(void)
{
	strcpy(tmp, "/tmp/sm-apivm-XXXXXX");
	cr_assert(mkdtemp(tmp));
	setenv("XDG_RUNTIME_DIR", tmp, 1);
	setenv("SUPERMACHINE_HOME", tmp, 1);
	snprintf(base, sizeof(base), "%s/supermachine", tmp);
	cr_assert(mkdir(base, 0700) == 0);
}

static void down(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	cr_assert(system(cmd) == 0);
}

TestSuite(api_vm, .init = up, .fini = down, .timeout = 30);

/* A runtime directory as the library leaves one: meta.json and, when console is set, a console log saying it. */
static void vm_dir(const char *id, pid_t pid, int64_t created, const char *console)
{
	char path[256], log[300];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", base, id);
	cr_assert(mkdir(path, 0700) == 0);
	snprintf(log, sizeof(log), "%s/console.log", path);
	if (console) {
		f = fopen(log, "w");
		cr_assert(f);
		fputs(console, f);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/%s/meta.json", base, id);
	f = fopen(path, "w");
	cr_assert(f);
	fprintf(f, "{\"id\": \"%s\", \"pid\": %d, \"created\": %lld, \"image\": \"img-%s\", \"command\": \"sh -c x\", "
		   "\"console\": \"%s\", \"detached\": true}", id, (int)pid, (long long)created, id, log);
	fclose(f);
}

/* A child that passes for a worker (its comm is what vm_pid_is_worker looks for) until killed. */
static pid_t fake_worker(void)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_NAME, "supermachine-worker");
		for (;;)
			pause();
	}
	for (int i = 0; i < 200; i++) { /* until the name is set */
		char path[64], comm[32] = "";
		snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
		FILE *f = fopen(path, "r");
		if (f && fgets(comm, sizeof(comm), f) && !strncmp(comm, "supermachine-wo", 15)) {
			fclose(f);
			return pid;
		}
		if (f)
			fclose(f);
		usleep(5000);
	}
	cr_assert_fail("the fake worker never took its name");
	return -1;
}

static pid_t dead_pid(void)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	return pid;
}

static const sm_vm_info *find(const sm_vm_list *l, const char *id)
{
	for (size_t i = 0; i < sm_vm_list_count(l); i++)
		if (!strcmp(sm_vm_info_id(sm_vm_list_at(l, i)), id))
			return sm_vm_list_at(l, i);
	return NULL;
}

Test(api_vm, list_running_and_exited_with_their_codes)
{
	pid_t w = fake_worker(), gone = dead_pid();
	int64_t now = (int64_t)time(NULL);
	sm_error *err = NULL;

	vm_dir("aaaaaaaaaaaa", w, now - 30, "[ 0.1] init[1]: started\n");
	vm_dir("bbbbbbbbbbbb", gone, now - 20, "x\ninit[1]: workload exited with status 3\nreboot: Power down\n");
	vm_dir("cccccccccccc", gone, now - 10, "init[1]: workload exited with status 0\ninit[1]: workload ended by signal 9\n");
	vm_dir("dddddddddddd", gone, now, NULL);
	char junk[200];
	snprintf(junk, sizeof(junk), "%s/not-a-vm", base);
	cr_assert(mkdir(junk, 0700) == 0);

	sm_vm_list *l = sm_vm_list_load(&err);
	cr_assert(l, "%s", sm_error_string(err));
	cr_assert_eq(sm_vm_list_count(l), 4);
	cr_expect_str_eq(sm_vm_info_id(sm_vm_list_at(l, 0)), "dddddddddddd", "newest first");
	cr_expect_str_eq(sm_vm_info_id(sm_vm_list_at(l, 3)), "aaaaaaaaaaaa");
	cr_expect_null(sm_vm_list_at(l, 4));
	const sm_vm_info *a = find(l, "aaaaaaaaaaaa"), *b = find(l, "bbbbbbbbbbbb");
	const sm_vm_info *c = find(l, "cccccccccccc"), *d = find(l, "dddddddddddd");
	cr_assert(a && b && c && d);
	cr_expect_eq(sm_vm_info_status(a), SM_VM_RUNNING);
	cr_expect_eq(sm_vm_info_pid(a), (int)w);
	cr_expect_eq(sm_vm_info_exit_code(a), -1);
	cr_expect_str_eq(sm_vm_info_image(a), "img-aaaaaaaaaaaa");
	cr_expect_str_eq(sm_vm_info_command(a), "sh -c x");
	cr_expect_eq(sm_vm_info_created(a), now - 30);
	cr_expect(sm_vm_info_detached(a));
	cr_expect(strstr(sm_vm_info_console(a), "/aaaaaaaaaaaa/console.log"));
	cr_expect_eq(sm_vm_info_status(b), SM_VM_EXITED);
	cr_expect_eq(sm_vm_info_exit_code(b), 3);
	cr_expect_eq(sm_vm_info_exit_code(c), 128 + 9, "the last line says how it ended");
	cr_expect_eq(sm_vm_info_exit_code(d), -1, "no console: not known");
	sm_vm_list_free(l);
	kill(w, SIGKILL);
	waitpid(w, NULL, 0);
}

Test(api_vm, wait_for_a_vm_to_end)
{
	pid_t w = fake_worker();
	sm_error *err = NULL;
	int status = 99;

	vm_dir("eeeeeeeeeeee", w, (int64_t)time(NULL), "init[1]: workload exited with status 7\n");
	sm_vm *vm = sm_vm_attach("eeee", &err);
	cr_assert(vm, "%s", sm_error_string(err));
	cr_expect(sm_vm_pidfd(vm) >= 0, "no pidfd for a running worker");
	cr_expect_eq(sm_vm_wait(vm, 0, &status, &err), 1, "still running");
	cr_expect_eq(sm_vm_wait(vm, 50, &status, &err), 1, "still running after 50 ms");
	cr_expect_eq(status, 99, "status set while running");
	kill(w, SIGKILL);
	cr_expect_eq(sm_vm_wait(vm, -1, &status, &err), 0);
	cr_expect_eq(status, 7);
	cr_expect_eq(sm_vm_wait(vm, 0, NULL, &err), 0, "ended stays ended");
	waitpid(w, NULL, 0);
	sm_vm_free(vm);
	cr_expect(sm_vm_wait(NULL, 0, NULL, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_INVALID);
	sm_error_free(err);
}

/* A struct of a newer layout: ours, then fields this library does not know. */
struct newer_vm_config {
	sm_vm_config c;
	const void *unknown;
};

static void expect_invalid(sm_error *err, const char *what)
{
	cr_expect_eq(sm_error_code(err), SM_E_INVALID, "%s", err ? sm_error_string(err) : "no error");
	cr_expect(err && strstr(sm_error_string(err), what), "%s", err ? sm_error_string(err) : "no error");
	sm_error_free(err);
}

Test(api_vm, configs_refuse_sizes_they_cannot_honour)
{
	struct newer_vm_config newer = { .c = { .size = sizeof(newer) }, .unknown = &newer };
	sm_vm_config tiny = { .size = 4 };
	sm_bake_config bake = SM_BAKE_CONFIG_INIT;
	sm_error *err = NULL;

	cr_expect_null(sm_vm_start("busybox", &newer.c, &err));
	expect_invalid(err, "newer supermachine.h"), err = NULL;
	cr_expect_null(sm_vm_restore("some-snapshot", &tiny, &err));
	expect_invalid(err, "smaller than its first layout"), err = NULL;
	bake.vm = &newer.c;
	cr_expect(sm_bake("busybox", "snap", &bake, &err) < 0);
	expect_invalid(err, "sm_vm_config.size"), err = NULL;
	bake.size = 1;
	cr_expect(sm_bake("busybox", "snap", &bake, &err) < 0);
	expect_invalid(err, "sm_bake_config.size"), err = NULL;
	/* unknown fields left zero: accepted, and the start fails later for its own reason */
	newer.unknown = NULL;
	cr_expect_null(sm_vm_start("no-such-image", &newer.c, &err));
	cr_expect_neq(sm_error_code(err), SM_E_INVALID, "%s", sm_error_string(err));
	sm_error_free(err);
}

/* The copy itself: an older, smaller layout leaves the newer fields zero; size 0 is the first layout. */
Test(api_vm, config_copy_by_size)
{
	struct v2 { size_t size; int a, b; long c; } in = { .size = offsetof(struct v2, b), .a = 1, .b = 2, .c = 3 }, out;
	sm_error *err = NULL;

	cr_assert(config_copy(&out, sizeof(out), offsetof(struct v2, b), &in, "v2", &err) == 0);
	cr_expect(out.size == sizeof(out) && out.a == 1 && out.b == 0 && out.c == 0);
	in.size = 0;
	cr_assert(config_copy(&out, sizeof(out), sizeof(out), &in, "v2", &err) == 0);
	cr_expect(out.a == 1 && out.b == 2 && out.c == 3);
	cr_assert(config_copy(&out, sizeof(out), sizeof(out), NULL, "v2", &err) == 0);
	cr_expect(out.size == sizeof(out) && out.a == 0);
	sm_pool_config pc = SM_POOL_CONFIG_INIT, pout;
	pc.max = 3;
	cr_assert(pool_config_copy(&pout, &pc, &err) == 0);
	cr_expect(pout.max == 3 && pout.size == sizeof(pout));
}

/*
 * The public API pieces that need no VM: the VM list over runtime
 * directories (sm_vm_list_*), waiting for a VM (sm_vm_pidfd, sm_vm_wait)
 * on a process that passes for a worker, and the sized config structs
 * (src/lib/config.c) at every entry point that takes one.
 */
#include <criterion/criterion.h>
#include <jansson.h>
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
#include "lib/vm.h"

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

/* `ps --format json`: an array of objects, each field typed; a status not known is null. */
Test(api_vm, list_as_json)
{
	pid_t w = fake_worker(), gone = dead_pid();
	int64_t now = (int64_t)time(NULL);
	sm_error *err = NULL;
	json_error_t jerr;

	vm_dir("aaaaaaaaaaaa", w, now - 30, "init[1]: started\n");
	vm_dir("bbbbbbbbbbbb", gone, now - 20, "init[1]: workload exited with status 3\n");
	sm_vm_list *l = sm_vm_list_load(&err);
	cr_assert(l, "%s", sm_error_string(err));
	char *text = sm_vm_list_json(l);
	json_t *arr = json_loads(text, 0, &jerr), *a, *b;
	cr_assert(json_is_array(arr) && json_array_size(arr) == 2, "%s", text);
	b = json_array_get(arr, 0), a = json_array_get(arr, 1);
	cr_expect_str_eq(json_string_value(json_object_get(a, "id")), "aaaaaaaaaaaa");
	cr_expect_str_eq(json_string_value(json_object_get(a, "status")), "running");
	cr_expect(json_is_null(json_object_get(a, "exit_code")), "%s", text);
	cr_expect_eq(json_integer_value(json_object_get(a, "pid")), (json_int_t)w);
	cr_expect_eq(json_integer_value(json_object_get(a, "created")), now - 30);
	cr_expect_str_eq(json_string_value(json_object_get(a, "image")), "img-aaaaaaaaaaaa");
	cr_expect_str_eq(json_string_value(json_object_get(a, "command")), "sh -c x");
	cr_expect(json_is_true(json_object_get(a, "detached")));
	cr_expect(json_is_string(json_object_get(a, "console")));
	cr_expect_str_eq(json_string_value(json_object_get(b, "status")), "exited");
	cr_expect_eq(json_integer_value(json_object_get(b, "exit_code")), 3);
	json_decref(arr);
	free(text);
	sm_vm_list_free(l);
	text = sm_vm_list_json(NULL);
	cr_expect_str_eq(text, "[]", "no list: an empty array");
	free(text);
	kill(w, SIGKILL);
	waitpid(w, NULL, 0);
}

/* `system df` counts the runtime directories; `system prune` removes only ended VMs past a minute. */
Test(api_vm, store_usage_and_prune)
{
	pid_t w = fake_worker(), gone = dead_pid();
	int64_t now = (int64_t)time(NULL);
	sm_store_usage u = SM_STORE_USAGE_INIT;
	sm_prune_report r = SM_PRUNE_REPORT_INIT;
	sm_error *err = NULL;
	char path[256];

	vm_dir("aaaaaaaaaaaa", w, now - 600, "running\n");
	vm_dir("bbbbbbbbbbbb", gone, now - 600, "init[1]: workload exited with status 0\n");
	vm_dir("cccccccccccc", gone, now - 5, "just started: its worker may not be up yet\n");
	cr_assert(sm_store_usage_get(&u, &err) == 0, "%s", sm_error_string(err));
	cr_expect_eq(u.vms, 3);
	cr_expect_eq(u.vms_running, 1);
	cr_expect_gt(u.runtime_bytes, 0);
	cr_expect_eq(u.images, 0);
	cr_expect_eq(u.snapshots, 0);
	cr_assert(sm_store_prune(&r, &err) == 0, "%s", sm_error_string(err));
	cr_expect_eq(r.vms, 1);
	cr_expect_gt(r.vm_bytes, 0);
	snprintf(path, sizeof(path), "%s/bbbbbbbbbbbb", base);
	cr_expect(access(path, F_OK) < 0, "the ended VM's directory is still there");
	snprintf(path, sizeof(path), "%s/aaaaaaaaaaaa/meta.json", base);
	cr_expect(access(path, F_OK) == 0, "a running VM's directory went");
	snprintf(path, sizeof(path), "%s/cccccccccccc/meta.json", base);
	cr_expect(access(path, F_OK) == 0, "a VM started a moment ago was pruned");
	u.size = sizeof(size_t) - 1;
	cr_expect(sm_store_usage_get(&u, &err) < 0 && sm_error_code(err) == SM_E_INVALID);
	sm_error_free(err);
	kill(w, SIGKILL);
	waitpid(w, NULL, 0);
}

/* A runtime directory as vm_boot leaves one, through the library's own writers, with a name when given. */
static struct sm_vm *made_vm(const char *name, pid_t pid, bool keep, sm_error **err)
{
	struct sm_vm *vm = vm_alloc();
	sm_vm_config cfg = { .size = sizeof(cfg), .name = name, .keep = keep, .detached = true,
			     .restart = "on-failure:2", .stop_timeout_ms = 3000 };
	struct vm_machine mach = { .memory_mib = 256, .vcpus = 2, .network = true, .restartable = true };

	cr_assert(vm);
	vm->kind = &vm_kind_detached;
	vm->pid = pid;
	cr_assert(vm_runtime_create(vm, err) == 0);
	if (vm_take_config(vm, &cfg, err) < 0) {
		vm_discard(vm);
		return NULL;
	}
	cr_assert(vm_record_meta(vm, &cfg, "busybox", (const char *[]){ "sh", "-c", "x", NULL }, &mach, err) == 0);
	return vm;
}

Test(api_vm, names_are_unique_and_resolve_like_ids)
{
	pid_t w = fake_worker();
	sm_error *err = NULL;
	struct sm_vm *a = made_vm("web", w, true, &err);

	cr_assert(a, "%s", sm_error_string(err));
	cr_expect_str_eq(sm_vm_name(a), "web");
	cr_expect_null(made_vm("web", dead_pid(), true, &err), "a name taken twice");
	cr_expect_eq(sm_error_code(err), SM_E_BUSY);
	cr_expect(err && strstr(sm_error_string(err), "already in use") && strstr(sm_error_string(err), a->id),
		  "%s", sm_error_string(err));
	sm_error_free(err), err = NULL;
	cr_expect_null(made_vm("no good", dead_pid(), true, &err));
	cr_expect_eq(sm_error_code(err), SM_E_INVALID);
	sm_error_free(err), err = NULL;

	sm_vm *by_name = sm_vm_attach("web", &err);
	cr_assert(by_name, "%s", sm_error_string(err));
	cr_expect_str_eq(sm_vm_id(by_name), a->id);
	cr_expect_str_eq(sm_vm_name(by_name), "web");
	sm_vm_free(by_name);

	sm_vm_list *l = sm_vm_list_load(&err);
	cr_assert(l);
	const sm_vm_info *v = sm_vm_list_find(l, "web", &err);
	cr_assert(v, "%s", sm_error_string(err));
	cr_expect_str_eq(sm_vm_info_name(v), "web");
	cr_expect_eq(sm_vm_list_find(l, a->id, NULL), v);
	cr_expect_null(sm_vm_list_find(l, "nosuch", &err));
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	sm_error_free(err), err = NULL;
	sm_vm_list_free(l);

	/* removed: the name is free again; a link left by a VM that is gone is taken over */
	cr_expect(sm_vm_remove("web", false, &err) < 0, "a running VM removed without force");
	cr_expect_eq(sm_error_code(err), SM_E_BUSY);
	sm_error_free(err), err = NULL;
	cr_expect(sm_vm_remove("web", true, &err) == 0, "%s", sm_error_string(err));
	cr_expect(access(a->dir, F_OK) < 0, "runtime directory left");
	cr_expect_null(sm_vm_attach("web", &err));
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	cr_expect(err && strstr(sm_error_string(err), "no such VM: web"), "%s", sm_error_string(err));
	sm_error_free(err), err = NULL;
	a->dir[0] = 0; /* gone already */
	vm_destroy(a);
	struct sm_vm *b = made_vm("web", dead_pid(), true, &err);
	cr_assert(b, "the name of a removed VM: %s", sm_error_string(err));
	char stale[300];
	snprintf(stale, sizeof(stale), "rm -rf '%s'", b->dir);
	cr_assert(system(stale) == 0); /* its directory gone behind our back: its link is stale */
	struct sm_vm *c = made_vm("web", dead_pid(), true, &err);
	cr_expect(c, "a stale name link was not taken over: %s", sm_error_string(err));
	b->dir[0] = 0;
	vm_destroy(b);
	if (c)
		vm_discard(c);
	waitpid(w, NULL, 0);
}

Test(api_vm, a_kept_vm_records_its_end_and_shows_it)
{
	pid_t w = fake_worker();
	sm_error *err = NULL;
	struct sm_vm *a = made_vm("kept", w, true, &err);
	char *json;

	cr_assert(a, "%s", sm_error_string(err));
	sm_vm *vm = sm_vm_attach("kept", &err);
	cr_assert(vm);
	sm_vm_set_exit_code(vm, 42);
	kill(w, SIGKILL);
	waitpid(w, NULL, 0);
	cr_expect_eq(sm_vm_stop(vm, 0, &err), 0, "%s", sm_error_string(err));
	sm_vm_free(vm);
	cr_expect(access(a->dir, F_OK) == 0, "a kept VM was removed by its stop");

	sm_vm_list *l = sm_vm_list_load(&err);
	const sm_vm_info *v = l ? sm_vm_list_find(l, "kept", NULL) : NULL;
	cr_assert(v);
	cr_expect_eq(sm_vm_info_status(v), SM_VM_EXITED);
	cr_expect_eq(sm_vm_info_exit_code(v), 42);
	cr_expect(sm_vm_info_finished(v) >= sm_vm_info_created(v) && sm_vm_info_finished(v) > 0);
	cr_expect_str_eq(sm_vm_info_restart_policy(v), "on-failure:2");
	cr_expect_eq(sm_vm_info_stop_timeout_ms(v), 3000);
	cr_expect(sm_vm_info_kept(v));
	cr_expect_eq(sm_vm_info_port_count(v), 0, "an ended VM publishes nothing");
	json = sm_vm_info_json(v);
	cr_assert(json);
	cr_expect(strstr(json, "\"name\": \"kept\"") && strstr(json, "\"exit_code\": 42") &&
		  strstr(json, "\"running\": false") && strstr(json, "\"memory_mib\": 256") &&
		  strstr(json, "\"vcpus\": 2") && strstr(json, "\"restart\": \"on-failure:2\""), "%s", json);
	free(json);
	sm_vm_list_free(l);

	/* stopped on request: not to be restarted by its watcher */
	vm = sm_vm_attach("kept", &err);
	cr_assert(vm);
	cr_expect(sm_vm_restart(vm, &err) < 0);
	sm_error_free(err), err = NULL;
	sm_vm_free(vm);
	cr_expect(sm_vm_remove("kept", false, &err) == 0, "an ended VM needs no force: %s", sm_error_string(err));
	cr_expect(access(a->dir, F_OK) < 0);
	a->dir[0] = 0;
	vm_destroy(a);
}

/* worker.args lives in a directory the user can edit: a restart refuses one it cannot read whole. */
Test(api_vm, restart_refuses_a_malformed_worker_args)
{
	static const struct {
		const char *text;
		size_t len;
	} bad[] = {
#define ARGS(s) { s, sizeof(s) - 1 }
		ARGS("/usr/bin/supermachine-worker\0--net\0"), /* no namespaces field */
		ARGS("ns=\0/w\0"),
		ARGS("ns=-1\0/w\0"),
		ARGS("ns=10zz\0/w\0"),
		ARGS("ns=0\0"), /* no command line */
		ARGS("ns=0\0/w"), /* cut */
#undef ARGS
	};
	sm_error *err = NULL;
	struct sm_vm *a = made_vm("rs", dead_pid(), true, &err);
	char path[400];

	cr_assert(a, "%s", sm_error_string(err));
	snprintf(path, sizeof(path), "%s/worker.args", a->dir);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		FILE *f = fopen(path, "w");
		cr_assert(f);
		cr_assert(fwrite(bad[i].text, 1, bad[i].len, f) == bad[i].len && fclose(f) == 0);
		sm_vm *vm = sm_vm_attach("rs", &err);
		cr_assert(vm, "%s", sm_error_string(err));
		cr_expect(sm_vm_restart(vm, &err) < 0, "case %zu restarted", i);
		cr_expect(err && strstr(sm_error_string(err), "malformed") && strstr(sm_error_string(err), path),
			  "case %zu: %s", i, sm_error_string(err));
		sm_error_free(err), err = NULL;
		sm_vm_free(vm);
	}
	vm_discard(a);
}

/* meta.json is written by the library but lives in a directory the user can edit: hostile input. */
Test(api_vm, hostile_metadata)
{
	struct vm_meta m = { .pid = 5, .created = 10, .exit_code = -1, .nports = 1 };
	struct vm_meta r;
	const char *why;
	char *text;

	snprintf(m.id, sizeof(m.id), "0123456789ab");
	snprintf(m.name, sizeof(m.name), "web");
	snprintf(m.ports[0].addr, sizeof(m.ports[0].addr), "127.0.0.1");
	m.ports[0].host = 8080, m.ports[0].guest = 80;
	text = vm_meta_dump(&m);
	cr_assert(text);
	cr_assert(vm_meta_parse(text, &r, &why) == 0, "%s", why);
	cr_expect_str_eq(r.name, "web");
	cr_expect(r.nports == 1 && r.ports[0].host == 8080 && r.ports[0].guest == 80);
	cr_expect_eq(r.started, 0);
	free(text);
	static const char *const bad[] = {
		"[]", "{\"id\": \"../../etc\", \"pid\": 1}", "{\"id\": \"0123456789ab\", \"pid\": -4}",
		"{\"id\": \"0123456789ab\", \"pid\": 1, \"name\": \"a/b\"}",
		"{\"id\": \"0123456789ab\", \"pid\": 1, \"exit_code\": 999}",
		"{\"id\": \"0123456789ab\", \"pid\": 1, \"ports\": [{\"addr\": \"x\", \"host\": 1, \"guest\": 0}]}",
		"{\"id\": \"0123456789ab\", \"pid\": 1, \"ports\": {}}",
		"{\"id\": \"0123456789ab\", \"pid\": 1, \"volumes\": [1]}",
		"{\"id\": \"0123456789ab\", \"pid\": 1, \"id\": \"0123456789ac\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect(vm_meta_parse(bad[i], &r, &why) < 0, "accepted: %s", bad[i]);
}

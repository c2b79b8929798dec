/*
 * supermachine-runtime without a VM: config.json parsing (good and
 * hostile bundles), the state JSON, and the command line itself run as
 * the shim runs it: flags, a bad bundle that leaves nothing under --root,
 * and a pod sandbox's whole life (it needs no VM).
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/rt.h"

static char tmp[64], bundle[128], root[128];

static void setup(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/rt-test-XXXXXX");
	cr_assert(mkdtemp(tmp));
	snprintf(bundle, sizeof(bundle), "%s/bundle", tmp);
	snprintf(root, sizeof(root), "%s/root", tmp);
	cr_assert_eq(mkdir(bundle, 0755), 0);
	cr_assert_eq(mkdir(strcat(strcpy((char[200]){ 0 }, bundle), "/rootfs"), 0755), 0);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(runtime, .init = setup, .fini = teardown);

static void write_config(const char *text)
{
	char path[200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/config.json", bundle);
	f = fopen(path, "w");
	cr_assert(f);
	fputs(text, f);
	fclose(f);
}

#define PROCESS "\"process\":{\"args\":[\"sh\",\"-c\",\"echo hi\"],\"cwd\":\"/\",\"env\":[\"PATH=/bin\"]," \
		"\"user\":{\"uid\":1000,\"gid\":100},\"terminal\":true,\"consoleSize\":{\"height\":24,\"width\":80}}"

Test(runtime, config_good)
{
	char why[RT_WHY], dir[100];
	struct rt_spec s;

	snprintf(dir, sizeof(dir), "%s/data", tmp);
	cr_assert_eq(mkdir(dir, 0755), 0);
	char cfg[2048];
	snprintf(cfg, sizeof(cfg),
		 "{\"ociVersion\":\"1.1.0\",\"root\":{\"path\":\"rootfs\",\"readonly\":true},\"hostname\":\"h\"," PROCESS
		 ",\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
		 "{\"destination\":\"/data\",\"type\":\"bind\",\"source\":\"%s\",\"options\":[\"rbind\",\"ro\"]},"
		 "{\"destination\":\"/etc/x\",\"type\":\"bind\",\"source\":\"/etc/passwd\"},"
		 "{\"destination\":\"/run\",\"type\":\"tmpfs\",\"source\":\"tmpfs\"}],"
		 "\"linux\":{\"resources\":{\"memory\":{\"limit\":536870913},\"cpu\":{\"quota\":150000,\"period\":100000}}},"
		 "\"annotations\":{\"a\":\"b\"}}",
		 dir);
	write_config(cfg);
	cr_assert_eq(rt_spec_load(bundle, &s, why, sizeof(why)), 0, "%s", why);
	cr_expect_not_null(strstr(s.rootfs, "/bundle/rootfs"));
	cr_expect(s.root_read_only);
	cr_expect_str_eq(s.hostname, "h");
	cr_expect_str_eq(s.proc.args[2], "echo hi");
	cr_expect_null(s.proc.args[3]);
	cr_expect_str_eq(s.proc.env[0], "PATH=/bin");
	cr_expect_eq(s.proc.uid, 1000);
	cr_expect_eq(s.proc.gid, 100);
	cr_expect(s.proc.terminal);
	cr_expect_eq(s.proc.rows, 24);
	cr_expect_eq(s.nbinds, 1, "the directory bind only: /proc is init's, a file and a tmpfs are warned about");
	cr_expect_str_eq(s.binds[0].destination, "/data");
	cr_expect(s.binds[0].read_only);
	cr_expect_eq(s.memory_mib, 513, "a limit rounds up to whole MiB");
	cr_expect_eq(s.vcpus, sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 2u : 1u);
	cr_expect_not(s.sandbox);
	cr_expect_not_null(strstr(s.warnings, "/etc/passwd is a file"));
	cr_expect_not_null(strstr(s.warnings, "/run (tmpfs)"));

	sm_vm_config c;
	sm_mount m[RT_MAX_MOUNTS];
	rt_spec_vm_config(&s, "ctr1", &c, m);
	cr_expect_str_eq(c.root_dir, s.rootfs);
	cr_expect(c.root_read_only);
	cr_expect_eq(c.nmounts, 1);
	cr_expect_str_eq(c.mounts[0].guest_path, "/data");
	cr_expect_eq(c.memory_mib, 513);
	rt_spec_free(&s);
}

/* Each hostile bundle: refused with a message naming what is wrong. */
Test(runtime, config_hostile)
{
	static const struct {
		const char *json, *expect;
	} cases[] = {
		{ "{", "bad JSON" },
		{ "[]", "not a JSON object" },
		{ "{\"ociVersion\":\"2.0\"}", "ociVersion '2.0'" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"nope\"}," PROCESS "}", "nope: No such file" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"config.json\"}," PROCESS "}", "not a directory" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"}}", "process: not an object" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"},\"process\":{\"args\":[],\"cwd\":\"/\"}}", "empty" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"},\"process\":{\"args\":[1],\"cwd\":\"/\"}}", "args[0]" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"},\"process\":{\"args\":[\"a\"],\"cwd\":\"../x\"}}", "process.cwd" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"},\"process\":{\"args\":[\"a\"],\"cwd\":\"/\",\"env\":[\"NOEQ\"]}}",
		  "not KEY=VALUE" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"},\"process\":{\"args\":[\"a\"],\"cwd\":\"/\",\"user\":{\"uid\":-1}}}",
		  "process.user.uid" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"}," PROCESS
		  ",\"mounts\":[{\"destination\":\"/../etc\",\"type\":\"bind\",\"source\":\"/tmp\"}]}",
		  "destination '/../etc'" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"}," PROCESS
		  ",\"mounts\":[{\"destination\":\"/x\",\"type\":\"bind\",\"source\":\"relative\"}]}",
		  "absolute source" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"}," PROCESS
		  ",\"mounts\":[{\"destination\":\"/x\",\"type\":\"bind\",\"source\":\"/no/such/dir\"}]}",
		  "/no/such/dir" },
		{ "{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"}," PROCESS ",\"mounts\":{}}", "mounts an array" },
		{ "{\"ociVersion\":\"1.0\",\"ociVersion\":\"1.0\"}", "duplicate" },
	};
	char why[RT_WHY];
	struct rt_spec s;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_config(cases[i].json);
		why[0] = 0;
		cr_expect_eq(rt_spec_load(bundle, &s, why, sizeof(why)), -1, "case %zu accepted", i);
		cr_expect_not_null(strstr(why, cases[i].expect), "case %zu: '%s' lacks '%s'", i, why, cases[i].expect);
	}
	cr_expect_eq(rt_spec_load("relative", &s, why, sizeof(why)), -1);
}

Test(runtime, ids_and_state_json)
{
	struct rt_state st = { .pid = 1, .annotations = json_object() };

	cr_expect(rt_id_ok("abc-1.2_3+4"));
	cr_expect_not(rt_id_ok(""));
	cr_expect_not(rt_id_ok(".."));
	cr_expect_not(rt_id_ok("a/b"));
	cr_expect_not(rt_id_ok("-x"));
	snprintf(st.id, sizeof(st.id), "c1");
	snprintf(st.dir, sizeof(st.dir), "%s", tmp);
	snprintf(st.bundle, sizeof(st.bundle), "/b");
	snprintf(st.created, sizeof(st.created), "2024-01-01T00:00:00Z");
	st.pid_start = rt_pid_start(1) + 1; /* not pid 1's start: a reused pid, so stopped */
	char *text = rt_state_json(&st);
	json_t *o = json_loads(text, 0, NULL);
	cr_assert_not_null(o);
	cr_expect_str_eq(json_string_value(json_object_get(o, "status")), "stopped");
	cr_expect_eq(json_integer_value(json_object_get(o, "pid")), 0);
	cr_expect_str_eq(json_string_value(json_object_get(o, "id")), "c1");
	cr_expect_str_eq(json_string_value(json_object_get(o, "ociVersion")), RT_OCI_VERSION);
	cr_expect(json_is_object(json_object_get(o, "annotations")));
	json_decref(o);
	free(text);
	st.pid = getpid();
	st.pid_start = rt_pid_start(getpid());
	cr_expect_eq(rt_state_status(&st), RT_CREATED, "alive and no start mark");
	rt_state_free(&st);
}

/* Runs the built runtime with --root ROOT and args; its exit status, its stdout+stderr in out. */
static int rt_run(char *out, size_t cap, const char *args)
{
	char cmd[1024];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd), "'%s/src/runtime/supermachine-runtime' --root '%s' %s 2>&1",
		 getenv("SUPERMACHINE_BUILD_ROOT"), root, args);
	p = popen(cmd, "r");
	cr_assert(p);
	n = fread(out, 1, cap - 1, p);
	out[n] = 0;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The first cap-1 bytes of path, NUL-terminated; how many, or -1. */
static ssize_t read_file(const char *path, char *out, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	fclose(f);
	return (ssize_t)n;
}

static bool root_empty(void)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s' 2>/dev/null)\"", root);
	return system(cmd) == 0;
}

Test(runtime, cli_flags)
{
	char out[4096], args[300];

	cr_expect_eq(rt_run(out, sizeof(out), "--bogus state x"), 1);
	cr_expect_not_null(strstr(out, "unknown global option '--bogus'"), "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "--log-format xml state x"), 1);
	cr_expect_eq(rt_run(out, sizeof(out), "create --frobnicate x"), 1);
	cr_expect_not_null(strstr(out, "create: unknown option '--frobnicate'"), "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "pause x"), 1);
	cr_expect_not_null(strstr(out, "unknown command 'pause'"), "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "--systemd-cgroup --log-format json state nosuch"), 1);
	cr_expect_not_null(strstr(out, "container nosuch does not exist"), "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "kill nosuch SIGBOGUS"), 1);
	cr_expect_not_null(strstr(out, "unknown signal"), "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "features"), 0);
	json_t *f = json_loads(out, 0, NULL);
	cr_expect_str_eq(json_string_value(json_object_get(f, "ociVersionMax")), RT_OCI_VERSION);
	json_decref(f);
	/* --log json: the error as a line of JSON, which the shim reads back */
	snprintf(args, sizeof(args), "--log '%s/log' --log-format json delete nosuch", tmp);
	cr_expect_eq(rt_run(out, sizeof(out), args), 1);
	snprintf(args, sizeof(args), "%s/log", tmp);
	json_error_t je;
	json_t *l = json_load_file(args, 0, &je);
	cr_assert_not_null(l, "%s", je.text);
	cr_expect_str_eq(json_string_value(json_object_get(l, "level")), "error");
	cr_expect_not_null(strstr(json_string_value(json_object_get(l, "msg")), "nosuch"));
	json_decref(l);
}

/* A bundle that cannot run leaves nothing under --root; its ID stays free. */
Test(runtime, bad_bundle_leaves_nothing)
{
	char out[4096], args[300];

	snprintf(args, sizeof(args), "create --bundle '%s' --pid-file '%s/pid' c1", bundle, tmp);
	cr_expect_eq(rt_run(out, sizeof(out), args), 1);
	cr_expect_not_null(strstr(out, "config.json"), "%s", out);
	write_config("{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"gone\"}," PROCESS "}");
	cr_expect_eq(rt_run(out, sizeof(out), args), 1);
	cr_expect_not_null(strstr(out, "gone"), "%s", out);
	cr_expect(root_empty());
	snprintf(args, sizeof(args), "%s/pid", tmp);
	cr_expect_neq(access(args, F_OK), 0, "no pid file either");
}

/* A CRI pause container: no VM, so its whole life runs here. */
Test(runtime, sandbox_lifecycle)
{
	char out[4096], args[300];

	write_config("{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"},\"process\":{\"args\":[\"/pause\"],\"cwd\":\"/\"},"
		     "\"annotations\":{\"io.kubernetes.cri.container-type\":\"sandbox\"}}");
	/* the supervisor keeps create's stdio, as the shim wants: not our pipe, or reading it never ends */
	snprintf(args, sizeof(args), "create --bundle '%s' --pid-file '%s/pid' pod1 < /dev/null > /dev/null 2>&1", bundle, tmp);
	cr_assert_eq(rt_run(out, sizeof(out), args), 0, "%s", out);
	snprintf(args, sizeof(args), "create --bundle '%s' pod1 2>&1 < /dev/null | head -c 300", bundle);
	cr_expect_eq(rt_run(out, sizeof(out), args), 0, "the same ID again: piped through head");
	cr_expect_not_null(strstr(out, "already exists"), "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "state pod1"), 0);
	cr_expect_not_null(strstr(out, "\"created\""), "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "start pod1"), 0, "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "start pod1"), 1, "started twice");
	cr_expect_eq(rt_run(out, sizeof(out), "state pod1"), 0);
	cr_expect_not_null(strstr(out, "\"running\""), "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "delete pod1"), 1, "running: delete needs --force");
	cr_expect_eq(rt_run(out, sizeof(out), "kill pod1 TERM"), 0, "%s", out);
	for (int i = 0; i < 200 && rt_run(out, sizeof(out), "state pod1") == 0 && !strstr(out, "\"stopped\""); i++)
		usleep(10000);
	cr_expect_not_null(strstr(out, "\"stopped\""), "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "delete pod1"), 0, "%s", out);
	cr_expect(root_empty());
}

/* With --log a warning goes there only: under the shim, create's stderr is the container's.
 * A --root whose parents do not exist is made, as runc makes it. */
Test(runtime, warnings_to_the_log_only_and_a_new_root)
{
	char out[4096], args[600], path[200];

	write_config("{\"ociVersion\":\"1.0\",\"root\":{\"path\":\"rootfs\"},\"process\":{\"args\":[\"/pause\"],\"cwd\":\"/\"},"
		     "\"mounts\":[{\"destination\":\"/run\",\"type\":\"tmpfs\",\"source\":\"tmpfs\"}],"
		     "\"annotations\":{\"io.kubernetes.cri.container-type\":\"sandbox\"}}");
	/* the supervisor keeps create's stdio: files, not a pipe that would stay open; dockerd's --root
	 * (EXEC_ROOT/runtime-NAME/moby) does not exist yet */
	snprintf(args, sizeof(args), "--root '%s/new/root' --log '%s/log' create --bundle '%s' pod2 < /dev/null > /dev/null 2>'%s/err'",
		 tmp, tmp, bundle, tmp);
	cr_expect_eq(rt_run(out, sizeof(out), args), 0, "%s", out);
	snprintf(path, sizeof(path), "%s/err", tmp);
	cr_expect(read_file(path, out, sizeof(out)) == 0 && !out[0], "stderr: %s", out);
	snprintf(path, sizeof(path), "%s/log", tmp);
	cr_expect(read_file(path, out, sizeof(out)) > 0 && strstr(out, "/run (tmpfs) is not applied"), "log: %s", out);
	snprintf(args, sizeof(args), "--root '%s/new/root' delete --force pod2", tmp);
	cr_expect_eq(rt_run(out, sizeof(out), args), 0, "%s", out);
	snprintf(path, sizeof(path), "%s/new/root", tmp);
	cr_expect_eq(rmdir(path), 0, "state left under the new --root");
}

/* What a crashed create leaves (a directory without state.json) goes with delete --force. */
Test(runtime, delete_force_cleans_leftovers)
{
	char out[4096], dir[200];

	snprintf(dir, sizeof(dir), "%s/half", root);
	cr_assert_eq(mkdir(root, 0700), 0);
	cr_assert_eq(mkdir(dir, 0700), 0);
	cr_expect_eq(rt_run(out, sizeof(out), "state half"), 1);
	cr_expect_not_null(strstr(out, "interrupted"), "%s", out);
	cr_expect_eq(rt_run(out, sizeof(out), "delete --force half"), 0, "%s", out);
	cr_expect(root_empty());
}

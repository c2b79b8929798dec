/*
 * `supermachine run` and the VM API against real images: the busybox OCI
 * fixture imported with `supermachine pull oci:...` into a private store,
 * booted by the built worker on the guest kernel. Each test boots as few
 * VMs as it can (a boot takes seconds under nested KVM).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"

#define HTTP_WAIT_S 120 /* httpd starts after the agent answers; nested KVM is slow */

static char *tmp;       /* store, runtime dirs, volumes */
static char IMAGE[4200]; /* the fixture image's name in the store */
static char home_env[4300], runtime_env[4300];

static void need_kernel(void)
{
	if (!getenv("SUPERMACHINE_KERNEL_DIR"))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
}

/* A private store holding the fixture image, and a private runtime base. */
static void setup(void)
{
	char *err = NULL, rt[4200];
	int rc;

	need_kernel();
	signal(SIGPIPE, SIG_IGN);
	tmp = fx_tmpdir();
	snprintf(home_env, sizeof(home_env), "SUPERMACHINE_HOME=%s/store", tmp);
	snprintf(rt, sizeof(rt), "%s/run", tmp);
	cr_assert(mkdir(rt, 0700) == 0);
	snprintf(runtime_env, sizeof(runtime_env), "XDG_RUNTIME_DIR=%s", rt);
	putenv(home_env);
	putenv(runtime_env);
	/* "base": the busybox image's config without the special-files layer (which makes /tmp a file) */
	snprintf(IMAGE, sizeof(IMAGE), "oci:%s/layout:base", fx_images());
	rc = fx_sh(NULL, &err, "'%s' pull -q '%s'", fx_cli(), IMAGE);
	cr_assert(rc == 0, "pull failed: %s", err);
	free(err);
}

static void teardown(void)
{
	if (tmp)
		fx_rmrf(tmp);
	free(tmp);
	tmp = NULL;
}

TestSuite(run, .init = setup, .fini = teardown, .timeout = 1200);

static const char *s(const char *p)
{
	return p ? p : "";
}

Test(run, command_status_streams_env_and_image_config)
{
	char *out = NULL, *err = NULL;
	int rc = fx_cli_run(&out, &err,
		     (const char *[]){ "run", "--rm", "-e", "FOO=bar", IMAGE, "sh", "-c",
				       "echo out $FOO $GREETING; pwd; echo err >&2; exit 3", NULL });

	cr_expect_eq(rc, 3, "status %d, stderr: %s", rc, s(err));
	/* -e added to the image's Env (GREETING), WorkingDir /tmp applied */
	cr_expect_str_eq(s(out), "out bar hello\n/tmp\n");
	cr_expect(strstr(s(err), "err\n") != NULL, "stderr: %s", s(err));
	free(out), free(err);

	/* -i: our stdin streamed to the command, its EOF passed on */
	rc = fx_sh(&out, &err, "printf 'piped in\\n' | '%s' run --rm -i '%s' cat", fx_cli(), IMAGE);
	cr_expect_eq(rc, 0, "run -i: status %d, stderr: %s", rc, s(err));
	cr_expect_str_eq(s(out), "piped in\n");
	free(out), free(err);

	/* no CMD: the image's Entrypoint+Cmd */
	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "--rm", IMAGE, NULL });
	cr_expect_eq(rc, 0, "status %d, stderr: %s", rc, s(err));
	cr_expect_str_eq(s(out), "hello from busybox\n");
	free(out), free(err);
}

Test(run, volume_survives_into_the_next_vm)
{
	char spec[4300], *out = NULL, *err = NULL;
	struct stat st;
	int rc;

	snprintf(spec, sizeof(spec), "%s/vol.ext4:/data:64M", tmp);
	rc = fx_cli_run(&out, &err,
		 (const char *[]){ "run", "--rm", "-v", spec, IMAGE, "sh", "-c",
				   "echo persisted > /data/f && busybox grep -c ' /data ext4 ' /proc/mounts", NULL });
	cr_assert_eq(rc, 0, "first VM: status %d, stderr: %s", rc, s(err));
	cr_expect_str_eq(s(out), "1\n");
	free(out), free(err);
	snprintf(spec, sizeof(spec), "%s/vol.ext4", tmp);
	cr_assert(stat(spec, &st) == 0);
	cr_expect_eq(st.st_size, 64 << 20, "volume size %lld", (long long)st.st_size);
	cr_expect_lt(st.st_blocks * 512, 64 << 20, "the volume is not sparse");
	snprintf(spec, sizeof(spec), "%s/vol.ext4:/data", tmp);
	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "--rm", "-v", spec, IMAGE, "cat", "/data/f", NULL });
	cr_expect_eq(rc, 0, "second VM: status %d, stderr: %s", rc, s(err));
	cr_expect_str_eq(s(out), "persisted\n");
	free(out), free(err);
}

/* A free TCP port on 127.0.0.1 right now. */
static unsigned free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/* Retries GET until the page comes (httpd starts in its own time). */
static char *http_wait(unsigned port, const char *want)
{
	for (int i = 0; i < HTTP_WAIT_S * 2; i++) {
		char *r = fx_http_get(port);
		if (r && strstr(r, want))
			return r;
		free(r);
		usleep(500000);
	}
	return NULL;
}

#define HTTPD_WORKLOAD                                                                             \
	"busybox mkdir -p /tmp/www && echo hello-http > /tmp/www/index.html && echo workload-up && "          \
	"exec busybox httpd -f -p 8080 -h /tmp/www"

Test(run, detached_service_ps_exec_logs_stop)
{
	char port_spec[64], *out = NULL, *err = NULL, *id, *page;
	unsigned port = free_port();
	int rc;

	snprintf(port_spec, sizeof(port_spec), "127.0.0.1:%u:8080", port);
	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "-d", "-p", port_spec, IMAGE, "sh", "-c", HTTPD_WORKLOAD, NULL });
	cr_assert_eq(rc, 0, "run -d: status %d, stderr: %s", rc, s(err));
	id = strndup(s(out), strcspn(s(out), "\n"));
	cr_assert_eq(strlen(id), 12, "run -d printed '%s'", s(out));
	free(out), free(err);

	page = http_wait(port, "hello-http");
	cr_expect(page, "no page from the workload's httpd through -p %u", port);
	free(page);

	rc = fx_cli_run(&out, &err, (const char *[]){ "ps", NULL });
	cr_expect_eq(rc, 0);
	cr_expect(strstr(s(out), id) && strstr(s(out), "running"), "ps: %s", s(out));
	free(out), free(err);

	rc = fx_cli_run(&out, &err, (const char *[]){ "exec", id, "sh", "-c", "cat /etc/motd; exit 7", NULL });
	cr_expect_eq(rc, 7, "exec: status %d, stderr: %s", rc, s(err));
	cr_expect_str_eq(s(out), "welcome\n");
	free(out), free(err);

	rc = fx_cli_run(&out, &err, (const char *[]){ "logs", id, NULL });
	cr_expect_eq(rc, 0);
	cr_expect(strstr(s(out), "workload-up"), "logs: %s", s(out));
	free(out), free(err);

	rc = fx_cli_run(&out, &err, (const char *[]){ "stop", id, NULL });
	cr_expect_eq(rc, 0, "stop: %s", s(err));
	free(out), free(err);

	/* run without --rm: kept, stopped, until rm */
	rc = fx_cli_run(&out, &err, (const char *[]){ "ps", NULL });
	cr_expect(!strstr(s(out), id), "a stopped VM listed as running: %s", s(out));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "ps", "-a", NULL });
	cr_expect(strstr(s(out), id) && strstr(s(out), "Exited ("), "stopped VM not kept: %s", s(out));
	free(out), free(err);
	/* the forwarder process notices the worker's exit through its pidfd, a moment after stop returns */
	char *late = fx_http_get(port);
	for (int i = 0; i < 50 && late; i++) {
		free(late);
		usleep(100000);
		late = fx_http_get(port);
	}
	cr_expect(late == NULL, "the forwarder outlived the VM");
	free(late);
	rc = fx_cli_run(&out, &err, (const char *[]){ "exec", id, "true", NULL });
	cr_expect_eq(rc, 125, "exec after stop: %d", rc);
	cr_expect(strstr(s(err), id), "exec after stop: %s", s(err));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "rm", id, NULL });
	cr_expect_eq(rc, 0, "rm of a stopped VM: %s", s(err));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "ps", "-a", NULL });
	cr_expect(!strstr(s(out), id), "removed VM still listed: %s", s(out));
	free(out), free(err);
	free(id);

	/* --rm -d: once the workload ends, the VM is gone from `ps -a` without a stop. */
	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "--rm", "-d", IMAGE, "true", NULL });
	cr_assert_eq(rc, 0, "run --rm -d: status %d, stderr: %s", rc, s(err));
	id = strndup(s(out), strcspn(s(out), "\n"));
	free(out), free(err);
	bool listed = true;
	for (int i = 0; i < HTTP_WAIT_S * 10 && listed; i++) {
		fx_cli_run(&out, &err, (const char *[]){ "ps", "-a", NULL });
		listed = strstr(s(out), id) != NULL;
		free(out), free(err);
		if (listed)
			usleep(100000);
	}
	cr_expect(!listed, "run --rm -d: VM %s still listed after its workload ended", id);
	free(id);
}

/* The library API: expose_tcp, files, connect, and a worker that dies. */
Test(run, api_expose_files_and_a_dying_worker)
{
	const char *workload[] = { "sh", "-c", HTTPD_WORKLOAD, NULL };
	sm_vm_config cfg = { .workload = workload };
	sm_error *err = NULL;
	sm_forward *fwd;
	sm_outcome o;
	void *data = NULL;
	size_t len = 0;
	char *page;
	sm_vm *vm;
	int fd;

	vm = sm_vm_start(IMAGE, &cfg, &err);
	cr_assert(vm, "start: %s", err ? sm_error_string(err) : "?");
	fwd = sm_vm_expose_tcp(vm, "127.0.0.1", 0, 8080, &err);
	cr_assert(fwd, "expose: %s", err ? sm_error_string(err) : "?");
	page = http_wait(sm_forward_port(fwd), "hello-http");
	cr_expect(page, "no page through expose_tcp");
	free(page);

	cr_assert(sm_vm_write_file(vm, "/tmp/x", "abc", 3, 0600, &err) == 0, "%s", err ? sm_error_string(err) : "");
	cr_assert(sm_vm_read_file(vm, "/tmp/x", 1024, &data, &len, &err) == 0);
	cr_expect(len == 3 && memcmp(data, "abc", 3) == 0);
	free(data);
	cr_expect(sm_vm_read_file(vm, "/nonexistent", 1024, &data, &len, &err) < 0);
	cr_expect(err && strstr(sm_error_string(err), "/nonexistent"), "%s", err ? sm_error_string(err) : "");
	sm_error_free(err), err = NULL;

	fd = sm_vm_connect(vm, 8080, &err);
	cr_assert(fd >= 0, "connect: %s", err ? sm_error_string(err) : "");
	close(fd);

	sm_forward_stop(fwd);

	/* kill the worker behind the library's back: calls fail fast, no hang */
	char path[4300];
	snprintf(path, sizeof(path), "%s/run/supermachine/%s/meta.json", tmp, sm_vm_id(vm));
	cr_expect(access(path, R_OK) == 0, "no runtime metadata at %s", path);
	char cmd[4400];
	snprintf(cmd, sizeof(cmd), "kill -9 $(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/' '%s')", path);
	cr_assert(system(cmd) == 0);
	for (int i = 0; i < 100 && sm_vm_running(vm); i++)
		usleep(50000);
	cr_expect(!sm_vm_running(vm));
	cr_expect(sm_vm_write_file(vm, "/tmp/y", "a", 1, 0600, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_VM_DIED, "%s", err ? sm_error_string(err) : "");
	sm_error_free(err), err = NULL;
	sm_exec *x = sm_exec_new(vm);
	sm_exec_argv(x, (const char *[]){ "true", NULL });
	cr_expect(sm_exec_output(x, &o, &err) < 0);
	cr_expect(err != NULL);
	sm_error_free(err);
	sm_exec_free(x);
	sm_vm_free(vm);
	snprintf(path, sizeof(path), "%s/run/supermachine", tmp);
	cr_expect_eq(fx_count_vms(path), 0, "runtime directory left behind");
}

struct thread_start {
	sm_vm *vm;
	sm_error *err;
};

static void *start_on_thread(void *opaque)
{
	struct thread_start *t = opaque;

	t->vm = sm_vm_start(IMAGE, NULL, &t->err);
	return NULL;
}

/*
 * A VM started by a thread that has exited since runs on: its worker was
 * forked by the library's launcher thread, not by the one that asked
 * (src/lib/launcher.c). Used from the main thread afterwards.
 */
Test(run, vm_outlives_the_thread_that_started_it)
{
	struct thread_start t = { 0 };
	sm_error *err = NULL;
	pthread_t th;
	sm_outcome o;

	cr_assert(pthread_create(&th, NULL, start_on_thread, &t) == 0);
	cr_assert(pthread_join(th, NULL) == 0);
	cr_assert(t.vm, "start: %s", t.err ? sm_error_string(t.err) : "?");
	usleep(500000); /* a worker tied to that thread (PR_SET_PDEATHSIG) would be dying by now */
	cr_expect(sm_vm_running(t.vm), "the worker died with the thread that started it");
	sm_exec *x = sm_exec_new(t.vm);
	sm_exec_argv(x, (const char *[]){ "echo", "alive", NULL });
	cr_assert(sm_exec_output(x, &o, &err) == 0, "exec: %s", err ? sm_error_string(err) : "?");
	cr_expect_eq(o.status, 0);
	cr_expect_str_eq(o.stdout_data ? o.stdout_data : "", "alive\n");
	sm_outcome_free(&o);
	sm_exec_free(x);
	sm_vm_free(t.vm);
}

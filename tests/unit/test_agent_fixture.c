#include "test_agent_fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/init.h"

const char *agent_fixture_binary(bool musl)
{
	static char path[4096];
	const char *root = getenv("SUPERMACHINE_BUILD_ROOT");

	cr_assert(root, "SUPERMACHINE_BUILD_ROOT is not set (run through meson test)");
	snprintf(path, sizeof(path), "%s/src/guest/%s", root, musl ? "init" : "init-glibc");
	return path;
}

void agent_fixture_path(const struct agent_fixture *f, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", f->dir, name);
}

static void exec_agent(const struct agent_fixture *f, const char *binary, const char *const *extra, int ready)
{
	const char *argv[32];
	char listen[160], fdarg[16];
	int n = 0, log = open(f->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	/* Output to the log, not the test runner's pipes; and die with the test. */
	if (log < 0 || dup2(log, STDOUT_FILENO) < 0 || dup2(log, STDERR_FILENO) < 0)
		_exit(126);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	snprintf(listen, sizeof(listen), "unix:%s", f->sock);
	snprintf(fdarg, sizeof(fdarg), "%d", ready);
	argv[n++] = binary;
	argv[n++] = "--agent-only";
	argv[n++] = "--listen";
	argv[n++] = listen;
	argv[n++] = "--ready-fd";
	argv[n++] = fdarg;
	for (int i = 0; extra && extra[i] && n < 31; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	/* The agent inherits nothing blocked from the test runner. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(binary, (char *const *)argv);
	_exit(127);
}

void agent_fixture_start(struct agent_fixture *f, const char *binary, const char *const *extra)
{
	int ready[2];
	char byte;
	struct pollfd p;

	memset(f, 0, sizeof(*f));
	strcpy(f->dir, "/tmp/sm-agent-XXXXXX");
	cr_assert(mkdtemp(f->dir), "mkdtemp: %s", strerror(errno));
	agent_fixture_path(f, "agent.sock", f->sock, sizeof(f->sock));
	agent_fixture_path(f, "agent.log", f->log, sizeof(f->log));
	cr_assert(access(binary, X_OK) == 0, "agent binary %s: %s", binary, strerror(errno));
	cr_assert(pipe(ready) == 0);
	f->pid = fork();
	cr_assert(f->pid >= 0);
	if (f->pid == 0) {
		close(ready[0]);
		exec_agent(f, binary, extra, ready[1]);
	}
	close(ready[1]);
	p = (struct pollfd){ .fd = ready[0], .events = POLLIN };
	cr_assert(poll(&p, 1, 20000) == 1 && read(ready[0], &byte, 1) == 1,
		  "the agent did not become ready; its log:\n%s", agent_fixture_log(f));
	close(ready[0]);
	cr_assert(agent_target_init(&f->target, f->sock, 0, NULL) == 0);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path) < 0 ? 0 : 0;
}

/* A sanitizer report from the agent or any of its sessions fails the test. */
static void check_log(const struct agent_fixture *f)
{
	static const char *const bad[] = { "AddressSanitizer", "LeakSanitizer", "runtime error:" };
	char *log = agent_fixture_log(f);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect(!strstr(log, bad[i]), "the agent reported a bug:\n%s", log);
	free(log);
}

void agent_fixture_stop(struct agent_fixture *f)
{
	if (f->pid > 0) {
		kill(f->pid, SIGTERM);
		waitpid(f->pid, NULL, 0);
		f->pid = 0;
		check_log(f);
	}
	if (f->dir[0])
		nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	f->dir[0] = 0;
}

char *agent_fixture_log(const struct agent_fixture *f)
{
	uint8_t *buf = NULL;
	size_t len;

	if (init_read_file(f->log, 1 << 20, &buf, &len) < 0)
		return strdup("(no log)");
	return (char *)buf;
}

int agent_fixture_descendants(const struct agent_fixture *f, pid_t *out, int max)
{
	return (int)tree_descendants(f->pid, out, (size_t)max);
}

void agent_fixture_config(const char *path, const char *const *argv, uint32_t nargv)
{
	struct proto_config cfg = { .hostname = "", .root_dev = "", .root_fstype = "", .workdir = "", .user = "",
				    .argv = (const char **)argv, .nargv = nargv };
	struct proto_buf b = { 0 };
	int fd;

	cr_assert(proto_encode_config(&b, &cfg) == 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0 && write(fd, b.data, b.len) == (ssize_t)b.len, "%s: %s", path, strerror(errno));
	close(fd);
	proto_buf_free(&b);
}

void agent_fixture_cgroup2(char *dir, size_t len)
{
	char line[512], mnt[256], type[64];
	FILE *fp = fopen("/proc/mounts", "r");

	dir[0] = 0;
	while (fp && fgets(line, sizeof(line), fp)) {
		if (sscanf(line, "%*s %255s %63s", mnt, type) != 2 || strcmp(type, "cgroup2"))
			continue;
		if (snprintf(dir, len, "%s/sm-test-%d", mnt, (int)getpid()) >= (int)len)
			continue;
		if (mkdir(dir, 0755) == 0)
			break;
		dir[0] = 0;
	}
	if (fp)
		fclose(fp);
}

sm_exec *fixture_sh(const struct agent_target *t, const char *script)
{
	sm_exec *x = exec_new(t);

	cr_assert(x && sm_exec_argv(x, (const char *[]){ "sh", "-c", script, NULL }) == 0);
	return x;
}

struct barrier_exec {
	const struct agent_target *t;
	const char *dir;
	int i, n, status;
	uint32_t timeout_ms;
	char out[16];
};

static void *barrier_one(void *arg)
{
	struct barrier_exec *b = arg;
	char script[512], idx[12];
	sm_error *err = NULL;
	sm_outcome out;
	sm_exec *x;

	/* Only the glob and the test are builtins: 32 pollers forking ls|wc
	 * starve an emulated guest long before the barrier opens. */
	snprintf(script, sizeof(script),
		 "i=$1; touch %s/$i; while :; do set -- %s/*; [ $# -ge %d ] && break; sleep 0.2; done; echo $i",
		 b->dir, b->dir, b->n);
	snprintf(idx, sizeof(idx), "%d", b->i);
	x = exec_new(b->t);
	sm_exec_argv(x, (const char *[]){ "sh", "-c", script, "sh", idx, NULL });
	sm_exec_timeout_ms(x, b->timeout_ms);
	b->status = sm_exec_output(x, &out, &err) < 0 ? -2 : out.status;
	if (b->status == 0)
		snprintf(b->out, sizeof(b->out), "%s", out.stdout_data ? out.stdout_data : "");
	if (err)
		sm_error_free(err);
	else
		sm_outcome_free(&out);
	sm_exec_free(x);
	return NULL;
}

void fixture_concurrent(const struct agent_target *t, const char *dir, int n, uint32_t timeout_ms)
{
	struct barrier_exec *b = calloc((size_t)n, sizeof(*b));
	pthread_t *th = calloc((size_t)n, sizeof(*th));
	sm_outcome out;
	char mk[256];
	sm_exec *x;

	cr_assert(b && th);
	snprintf(mk, sizeof(mk), "mkdir %s", dir);
	x = fixture_sh(t, mk);
	cr_assert(sm_exec_output(x, &out, NULL) == 0 && out.status == 0, "could not make %s", dir);
	sm_outcome_free(&out);
	sm_exec_free(x);
	for (int i = 0; i < n; i++) {
		b[i] = (struct barrier_exec){ .t = t, .dir = dir, .i = i, .n = n, .timeout_ms = timeout_ms };
		cr_assert(pthread_create(&th[i], NULL, barrier_one, &b[i]) == 0);
	}
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < n; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%d\n", i);
		cr_expect_eq(b[i].status, 0, "exec %d of %d: status %d (a timeout means they did not run at once)", i,
			     n, b[i].status);
		cr_expect_str_eq(b[i].out, want);
	}
	free(b);
	free(th);
}

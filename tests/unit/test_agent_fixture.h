/*
 * Runs the real guest agent (src/guest: init-glibc, or the static musl
 * init) on this host as `init --agent-only --listen unix:...` in a
 * temporary directory, for the exec, file and protocol tests.
 */
#ifndef SM_TEST_AGENT_FIXTURE_H
#define SM_TEST_AGENT_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

#include "lib/agent.h"
#include "lib/exec.h"

struct agent_fixture {
	pid_t pid;
	char dir[64];   /* a fresh temporary directory, removed by stop */
	char sock[128];
	char log[128];  /* the agent's stderr */
	struct agent_target target;
};

/* build/src/guest/init-glibc, or the static musl init with musl. */
const char *agent_fixture_binary(bool musl);
/* Starts binary with extra (NULL-terminated, may be NULL) arguments; aborts the test on failure. */
void agent_fixture_start(struct agent_fixture *f, const char *binary, const char *const *extra);
void agent_fixture_stop(struct agent_fixture *f);
/* The agent's log so far (malloc'ed). */
char *agent_fixture_log(const struct agent_fixture *f);
/* Pids of processes below the agent (its sessions and what they run); returns how many. */
int agent_fixture_descendants(const struct agent_fixture *f, pid_t *out, int max);
/* "name=value" path under the fixture dir */
void agent_fixture_path(const struct agent_fixture *f, const char *name, char *out, size_t len);

/* A guest configuration file at path whose workload is argv (nargv words; none: no workload). */
void agent_fixture_config(const char *path, const char *const *argv, uint32_t nargv);
/* A fresh cgroup2 directory for an agent's --cgroup, or "" when this host has none to use. */
void agent_fixture_cgroup2(char *dir, size_t len);

/* An exec of `sh -c script` at t. */
sm_exec *fixture_sh(const struct agent_target *t, const char *script);
/*
 * n execs at once, from n threads, each waiting in the guest until all n
 * have started (a barrier of files in dir, which must not exist yet): it
 * passes only if the agent serves them concurrently.
 */
void fixture_concurrent(const struct agent_target *t, const char *dir, int n, uint32_t timeout_ms);

#endif

/*
 * The guest's /init: PID 1 duties (pid1.c, net.c) and the exec agent
 * (agent.c: the listener; session.c: one process per connection; run.c:
 * exec; files.c: file transfer; user.c: users and env).
 *
 * Built twice from the same sources: static with musl for the initramfs,
 * and with the host's libc (init-glibc) so the unit tests can run the real
 * agent as an ordinary process (--agent-only) without KVM.
 */
#ifndef SM_GUEST_INIT_H
#define SM_GUEST_INIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/proto.h"
#include "proto/worker.h" /* the boot marker port and values */

#define INIT_CONFIG_PATH "/" INIT_CONFIG_NAME
#define INIT_HEARTBEAT_PATH "/run/supermachine/heartbeat"
#define INIT_CGROUP_ROOT "/sys/fs/cgroup"
#define INIT_DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* What the agent's per-connection processes need to see live. */
struct init_shared {
	volatile uint64_t heartbeat;  /* bytes written to the heartbeat FIFO */
	volatile pid_t workload_pid;  /* 0 when there is none (any more) */
	/*
	 * 1 from QUIESCE to RESUME (seal.c): a futex word, so sessions that
	 * must not run while sealed sleep on it. Only __atomic accesses.
	 */
	uint32_t sealed;
	/* Set for good once a workload or exec ran outside its cgroup: it cannot be frozen. */
	uint32_t uncontained;
};

/* PID 1's own process state: the one struct of mutable state /init keeps. */
struct init_state {
	bool pid1;          /* real init in a VM, not --agent-only on a host */
	bool allow_clock;   /* --agent-only: let SET_TIME set this machine's clock */
	bool test_resume;   /* --agent-only: RESUME only thaws and unseals (tests) */
	uint32_t seal_wait_ms; /* how long a request waits for RESUME while sealed */
	const char *listen; /* "vsock:PORT" or "unix:PATH" */
	const char *heartbeat_path;
	char cgroup_root[256]; /* cgroup v2 directory for per-exec cgroups, "" = none */
	int listen_fd, sig_fd, ctl_rd, ctl_wr, heartbeat_fd, ready_fd;
	uint8_t *config_raw;
	struct proto_config cfg;
	const char **image_env; /* the image's Env, or just a default PATH */
	struct init_shared *shared;
	uint64_t start_ns;
};

/* sessions -> PID 1, over the ctl pipe */
struct init_ctl {
	uint8_t op; /* 'S' shutdown */
	uint32_t arg;
};

/* util.c */
__attribute__((format(printf, 1, 2))) void agent_log(const char *fmt, ...);
uint64_t init_now_ns(void);
int init_nonblock(int fd, bool on);
/* Reads a whole small file (bounded by max) into a malloc'ed, NUL-terminated buffer. */
int init_read_file(const char *path, size_t max, uint8_t **out, size_t *len);
int init_write_file(const char *path, const char *s);
int init_mkdir_p(const char *path, mode_t mode);
/* Blocking send of everything pending in b on a socket that may be non-blocking. */
int init_flush(struct proto_buf *b, int fd);

/* user.c */
struct user_ids {
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	int ngroups;
	char home[PROTO_MAX_PATH + 1];
	char name[PROTO_MAX_NAME + 1];
};
/* Resolves "", "name", "uid", "name:group", "uid:gid" from /etc/passwd and /etc/group. */
int user_resolve(const char *spec, struct user_ids *ids, char *why, size_t whylen);
/* image env + request env (overriding by key) + HOME/TERM defaults; free with free(). */
char **env_build(const char *const *image, const char *const *req, const struct user_ids *ids, bool tty);

/* run.c */
struct spawn_spec {
	const char *const *argv;
	char **envp;
	const char *cwd;
	const struct user_ids *ids;
	int fd_in, fd_out, fd_err; /* become 0, 1, 2 */
	bool ctty;                 /* fd_in is a terminal to make the controlling one */
	int cgroup_fd;             /* cgroup.procs to join, or -1 */
};
pid_t spawn_command(const struct spawn_spec *s);
int run_exec(const struct init_state *st, int conn, struct proto_reader *rd, const struct proto_frame *req);

/* tree.c */
/* A cgroup for one exec under root; -1 when cgroups are not in use. */
int cgroup_create(const char *root, const char *name, char *path, size_t pathlen);
void cgroup_remove(const char *path);
/* Live descendants of root (from /proc), at most max of them. */
size_t tree_descendants(pid_t root, pid_t *out, size_t max);
/* Kills every descendant of this (subreaper) process, and the cgroup if any. */
void tree_kill(const char *cgroup_path, pid_t pgid);

/* seal.c */
#define SEAL_WAIT_MS 60000u
/* QUIESCE: seals and freezes every child cgroup of the cgroup root; 0 or a positive errno, why says what. */
int seal_quiesce(const struct init_state *st, char *why, size_t whylen);
/* RESUME's end: thaws them and unseals; 0 or a positive errno, why says what. */
int seal_release(const struct init_state *st, char *why, size_t whylen);
/* Waits while sealed, at most st->seal_wait_ms: 0 (not sealed), 1 (waited), or -ETIMEDOUT. */
int seal_wait(const struct init_state *st);
/* For a cgroup made after passing seal_wait: frozen too if a seal began meanwhile; 0 or a positive errno. */
int seal_adopt(const struct init_state *st, const char *cgroup_path);
/* A workload or exec got no cgroup although the agent uses them. */
void seal_uncontained(const struct init_state *st, const char *what);

/* files.c */
int files_receive(int conn, struct proto_reader *rd, const char *path, uint32_t mode, uid_t uid,
		  gid_t gid, char *why, size_t whylen);
int files_write(int conn, struct proto_reader *rd, const struct proto_frame *req);
int files_read(int conn, const struct proto_frame *req);

/* session.c */
void session_serve(const struct init_state *st, int conn);

/* agent.c */
int agent_listen(struct init_state *st);
int agent_run(struct init_state *st);
pid_t agent_start_workload(struct init_state *st);

/* pid1.c */
int pid1_boot(struct init_state *st);
__attribute__((noreturn)) void pid1_poweroff(struct init_state *st);
void boot_marker(uint8_t value);

/* net.c */
int net_setup(const struct proto_config *cfg);
int net_loopback_up(void);

#endif

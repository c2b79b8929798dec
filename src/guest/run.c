/*
 * One exec, in its session process: staged files, then the chain of
 * commands with pipes or a pty, streaming both ways with flow control,
 * a timeout that kills the whole tree, and one EXIT frame.
 *
 * Flow control: output is read from the command only while fewer than
 * OUT_QUEUE_MAX bytes wait for the host, so a host that reads slowly
 * makes the command block on write instead of the guest buffering it;
 * stdin frames are read from the host only while fewer than
 * STDIN_QUEUE_MAX bytes wait for the command.
 */
#include "guest/init.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <termios.h>
#include <unistd.h>

#define STDIN_QUEUE_MAX (1u << 20)
#define OUT_QUEUE_MAX (256u << 10)
/* A pty whose slave someone in the background still holds: stop reading after this quiet time. */
#define TTY_LINGER_NS (100u * 1000000u)

struct stream {
	int fd; /* -1 once finished */
	uint8_t type;
};

struct run {
	const struct init_state *st;
	int conn;
	struct proto_reader *rd;
	struct proto_buf out; /* frames for the host */
	struct proto_buf in;  /* bytes for the command's stdin */
	struct proto_exec req;
	uint8_t *req_copy;
	struct user_ids ids;
	char **envp;
	const char *cwd;
	bool tty;
	int master;
	int stdin_fd;     /* our end of the command's stdin, -1 when closed */
	bool stdin_eof;   /* the host closed stdin: close ours once `in` is drained */
	bool stdin_dead;  /* the command closed its stdin: drop what comes */
	int child_fd[3];  /* the command's ends, kept for the next command of the chain */
	struct stream s[2];
	uint8_t *chunk;
	int sfd;
	char cg_path[PROTO_MAX_PATH];
	int cg_fd;
	pid_t pid;        /* the running command, 0 when none */
	uint32_t idx;
	int wstatus;
	bool timed_out, host_gone, draining;
	uint64_t start_ns, end_ns, deadline_ns, linger_ns;
};

/* ---- the command's process -------------------------------------------------- */

static void child_reset_signals(void)
{
	sigset_t all;

	/* Blocked and ignored signals survive execve: undo what the agent set up. */
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
}

static void child_fail(const char *what, const char *arg, int err, int code)
{
	dprintf(STDERR_FILENO, "supermachine: %s %s: %s\n", what, arg, strerror(err));
	_exit(code);
}

static void child_close_fds(void)
{
	if (syscall(SYS_close_range, 3u, ~0u, 0u) < 0) {
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	}
}

static void child_setup_stdio(const struct spawn_spec *s)
{
	int fds[3] = { s->fd_in, s->fd_out, s->fd_err };

	if (s->ctty && ioctl(s->fd_in, TIOCSCTTY, 1) < 0)
		child_fail("set controlling terminal", "", errno, 126);
	/* Move the sources above 2 first so dup2 never clobbers one it still needs. */
	for (int i = 0; i < 3; i++) {
		if (fds[i] >= 0 && fds[i] < 3) {
			int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
			if (moved < 0)
				_exit(126);
			for (int j = i + 1; j < 3; j++)
				if (fds[j] == fds[i])
					fds[j] = moved;
			fds[i] = moved;
		}
	}
	for (int i = 0; i < 3; i++) {
		int src = fds[i] >= 0 ? fds[i] : open("/dev/null", O_RDWR);
		if (src < 0 || dup2(src, i) < 0)
			_exit(126);
	}
}

static void child_drop_privileges(const struct user_ids *ids)
{
	gid_t groups[65];
	int n = 0;

	groups[n++] = ids->gid;
	for (int i = 0; i < ids->ngroups; i++)
		groups[n++] = ids->groups[i];
	if (setgroups((size_t)n, groups) < 0 && errno != EPERM)
		child_fail("setgroups for", ids->name, errno, 126);
	if (setgid(ids->gid) < 0 && getgid() != ids->gid)
		child_fail("setgid for", ids->name, errno, 126);
	if (setuid(ids->uid) < 0 && getuid() != ids->uid)
		child_fail("setuid for", ids->name, errno, 126);
}

pid_t spawn_command(const struct spawn_spec *s)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	child_reset_signals();
	/* Its own session and process group: signals and the tty belong to the exec. */
	setsid();
	if (s->cgroup_fd >= 0 && write(s->cgroup_fd, "0", 1) < 0)
		child_fail("join cgroup", "", errno, 126);
	/* Back from the agent's -1000 (pid1.c): the OOM killer may pick the command. */
	init_write_file("/proc/self/oom_score_adj", "0");
	child_setup_stdio(s);
	child_close_fds();
	child_drop_privileges(s->ids);
	if (chdir(s->cwd) < 0)
		child_fail("chdir", s->cwd, errno, 126);
	environ = s->envp;
	execvp(s->argv[0], (char *const *)s->argv);
	/* Like a shell: 127 when there is no such command, 126 when it cannot run. */
	child_fail("exec", s->argv[0], errno, errno == ENOENT ? 127 : 126);
	return -1;
}

/* ---- request ---------------------------------------------------------------- */

static int send_error(struct run *r, int err, const char *msg)
{
	proto_encode_error(&r->out, err, "%s", msg);
	return init_flush(&r->out, r->conn);
}

/*
 * Reads the staged files into place, or, with discard (the request already
 * failed), reads and drops them to stay in step with the host.
 */
static int stage_files(struct run *r, bool discard, char *why, size_t whylen)
{
	int err = 0;

	for (uint32_t i = 0; i < r->req.nfiles; i++) {
		struct proto_frame f;
		struct proto_file file;
		char path[PROTO_MAX_PATH + 1];
		char fwhy[PROTO_MAX_MESSAGE / 2];
		int rc = proto_reader_next(r->rd, r->conn, &f);

		if (rc <= 0 || f.type != PROTO_FILE || proto_decode_file(&f, &file) < 0) {
			snprintf(why, whylen, "staged file %u: expected a valid 'file' frame", i);
			return -EPROTO;
		}
		snprintf(path, sizeof(path), "%s", file.path);
		rc = files_receive(r->conn, r->rd, err || discard ? NULL : path, file.mode, r->ids.uid,
				   r->ids.gid, fwhy, sizeof(fwhy));
		if (rc == -EPROTO || rc == -EAGAIN) {
			snprintf(why, whylen, "%s", fwhy);
			return -EPROTO;
		}
		if (rc < 0 && !err) {
			err = rc;
			snprintf(why, whylen, "staging %s", fwhy);
		}
	}
	return err;
}

static int check_cwd(struct run *r, char *why, size_t whylen)
{
	const struct proto_config *cfg = &r->st->cfg;
	struct stat sb;

	r->cwd = r->req.cwd[0] ? r->req.cwd : (cfg->workdir && cfg->workdir[0]) ? cfg->workdir : "/";
	if (stat(r->cwd, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(why, whylen, "working directory %s does not exist", r->cwd);
		return -ENOENT;
	}
	return 0;
}

/* Everything that can fail before a command runs; errors become an ERROR frame. */
static int prepare(struct run *r, char *why, size_t whylen)
{
	char staging[PROTO_MAX_MESSAGE];
	int rc, staged;

	rc = user_resolve(r->req.user[0] ? r->req.user : r->st->cfg.user, &r->ids, why, whylen);
	if (rc == 0)
		rc = check_cwd(r, why, whylen);
	staged = stage_files(r, rc < 0, staging, sizeof(staging));
	if (staged == -EPROTO || (rc == 0 && staged < 0)) {
		snprintf(why, whylen, "%s", staging);
		return staged;
	}
	if (rc < 0)
		return rc;
	r->envp = env_build(r->st->image_env, r->req.env, &r->ids, r->req.flags & PROTO_EXEC_TTY);
	if (!r->envp) {
		snprintf(why, whylen, "out of memory building the environment");
		return -ENOMEM;
	}
	return 0;
}

static int open_pty(struct run *r)
{
	struct winsize ws = { .ws_row = r->req.rows ? r->req.rows : 24, .ws_col = r->req.cols ? r->req.cols : 80 };
	char name[128];
	int slave;

	r->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (r->master < 0)
		return -errno;
	if (grantpt(r->master) < 0 || unlockpt(r->master) < 0 || ptsname_r(r->master, name, sizeof(name)))
		return -errno;
	if (ioctl(r->master, TIOCSWINSZ, &ws) < 0)
		return -errno;
	slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		return -errno;
	if (r->ids.uid && fchown(slave, r->ids.uid, (gid_t)-1) < 0) {
		int e = errno;
		close(slave);
		return -e;
	}
	r->child_fd[0] = slave;
	r->child_fd[1] = slave;
	r->child_fd[2] = slave;
	/* Separate descriptors for both directions, so each can be closed on its own. */
	r->stdin_fd = fcntl(r->master, F_DUPFD_CLOEXEC, 3);
	r->s[0].fd = fcntl(r->master, F_DUPFD_CLOEXEC, 3);
	r->s[1].fd = -1;
	return r->stdin_fd < 0 || r->s[0].fd < 0 ? -errno : 0;
}

static int open_pipes(struct run *r)
{
	int p[3][2];

	for (int i = 0; i < 3; i++) {
		if (pipe2(p[i], O_CLOEXEC) < 0) {
			int e = errno;
			while (i--) {
				close(p[i][0]);
				close(p[i][1]);
			}
			return -e;
		}
	}
	r->child_fd[0] = p[0][0];
	r->stdin_fd = p[0][1];
	r->child_fd[1] = p[1][1];
	r->s[0].fd = p[1][0];
	r->child_fd[2] = p[2][1];
	r->s[1].fd = p[2][0];
	return 0;
}

static int open_io(struct run *r)
{
	int rc;
	sigset_t chld;

	r->tty = r->req.flags & PROTO_EXEC_TTY;
	rc = r->tty ? open_pty(r) : open_pipes(r);
	if (rc < 0)
		return rc;
	if (init_nonblock(r->stdin_fd, true) < 0 || init_nonblock(r->s[0].fd, true) < 0 ||
	    (r->s[1].fd >= 0 && init_nonblock(r->s[1].fd, true) < 0) || init_nonblock(r->conn, true) < 0)
		return -errno;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	r->sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	return r->sfd < 0 ? -errno : 0;
}

static void close_child_fds(struct run *r)
{
	for (int i = 0; i < 3; i++) {
		if (r->child_fd[i] >= 0 && (i == 0 || r->child_fd[i] != r->child_fd[i - 1]))
			close(r->child_fd[i]);
	}
	r->child_fd[0] = r->child_fd[1] = r->child_fd[2] = -1;
}

/* ---- the loop ----------------------------------------------------------------- */

static void queue_output(struct run *r, uint8_t type, const void *p, size_t n)
{
	/* Past OUT_QUEUE_MAX nothing more is read, so this stays bounded. */
	proto_encode_data(&r->out, type, 0, p, n);
}

static void start_command(struct run *r)
{
	struct spawn_spec spec = {
		.argv = r->req.cmds[r->idx],
		.envp = r->envp,
		.cwd = r->cwd,
		.ids = &r->ids,
		.fd_in = r->child_fd[0],
		.fd_out = r->child_fd[1],
		.fd_err = r->child_fd[2],
		.ctty = r->tty,
		.cgroup_fd = r->cg_fd,
	};
	pid_t pid = spawn_command(&spec);

	if (pid < 0) {
		char msg[256];
		int n = snprintf(msg, sizeof(msg), "supermachine: fork: %s\n", strerror(errno));
		queue_output(r, r->tty ? PROTO_STDOUT : PROTO_STDERR, msg, (size_t)n);
		r->wstatus = 126 << 8;
		r->pid = 0;
		return;
	}
	r->pid = pid;
	/* The last command needs no spare copies: its stdin may now see EPIPE, its pty EIO. */
	if (r->idx + 1 == r->req.ncmds)
		close_child_fds(r);
}

static void command_ended(struct run *r)
{
	bool ok = WIFEXITED(r->wstatus) && WEXITSTATUS(r->wstatus) == 0;

	if (ok && r->idx + 1 < r->req.ncmds && !r->timed_out && !r->host_gone) {
		r->idx++;
		start_command(r);
		if (r->pid)
			return;
	}
	r->end_ns = init_now_ns();
	r->draining = true;
	close_child_fds(r);
}

static void reap(struct run *r)
{
	struct signalfd_siginfo si;
	int status;
	pid_t pid;

	while (read(r->sfd, &si, sizeof(si)) == sizeof(si))
		;
	/* Orphans of the exec come to us too (we are a subreaper): reap them all. */
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == r->pid) {
			r->wstatus = status;
			r->pid = 0;
			command_ended(r);
		}
	}
}

static void kill_all(struct run *r)
{
	tree_kill(r->cg_path, r->pid);
}

static int conn_frame(struct run *r, const struct proto_frame *f)
{
	struct proto_resize rs;
	int sig;

	switch (f->type) {
	case PROTO_STDIN:
		if (!r->stdin_eof && !r->stdin_dead)
			proto_put_bytes(&r->in, f->payload, f->len);
		if (f->flags & PROTO_FLAG_EOF)
			r->stdin_eof = true;
		return r->in.failed ? -ENOMEM : 0;
	case PROTO_RESIZE: {
		if (proto_decode_resize(f, &rs) < 0)
			return -EPROTO;
		struct winsize ws = { .ws_row = rs.rows, .ws_col = rs.cols };
		if (r->tty)
			ioctl(r->master, TIOCSWINSZ, &ws);
		return 0;
	}
	case PROTO_SIGNAL:
		if (proto_decode_signal(f, &sig) < 0)
			return -EPROTO;
		if (r->pid)
			kill(-r->pid, sig);
		return 0;
	default:
		agent_log("exec: unexpected '%s' frame from the host; closing", proto_type_name(f->type));
		return -EPROTO;
	}
}

static void read_conn(struct run *r)
{
	while (proto_buf_pending(&r->in) < STDIN_QUEUE_MAX) {
		struct proto_frame f;
		int rc = proto_reader_next(r->rd, r->conn, &f);

		if (rc == 0)
			return;
		if (rc < 0 || conn_frame(r, &f) < 0) {
			if (rc == -EPROTO)
				agent_log("exec: malformed frame from the host; closing");
			/* The host is gone or broke the protocol: nobody will collect the result. */
			r->host_gone = true;
			kill_all(r);
			return;
		}
	}
}

static void write_stdin(struct run *r)
{
	if (r->stdin_fd >= 0) {
		int rc = proto_buf_send(&r->in, r->stdin_fd);
		if (rc > 0)
			return;
		if (rc < 0) {
			/* EPIPE: the command closed its stdin; what is left has no reader. */
			r->stdin_dead = true;
			proto_buf_consume(&r->in, proto_buf_pending(&r->in));
		}
	}
	if (r->stdin_fd < 0 || proto_buf_pending(&r->in) || !(r->stdin_eof || r->stdin_dead))
		return;
	if (r->tty && !r->stdin_dead) {
		/* A terminal has no half-close: send its EOF character, as a user would. */
		struct termios t;
		char eof = tcgetattr(r->master, &t) == 0 ? (char)t.c_cc[VEOF] : 4;
		if (write(r->stdin_fd, &eof, 1) < 0 && errno == EAGAIN)
			return;
	}
	close(r->stdin_fd);
	r->stdin_fd = -1;
}

/* Reads what the stream has now; true when it is finished (EOF, or drained after the end). */
static bool read_stream(struct run *r, struct stream *s)
{
	while (proto_buf_pending(&r->out) < OUT_QUEUE_MAX) {
		ssize_t n = read(s->fd, r->chunk, PROTO_CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0) {
			queue_output(r, s->type, r->chunk, (size_t)n);
			r->linger_ns = 0;
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			if (!r->draining)
				return false;
			/* Pipes: the commands are gone, so what is not there now came from strays. */
			if (!r->tty)
				return true;
			if (!r->linger_ns)
				r->linger_ns = init_now_ns() + TTY_LINGER_NS;
			return init_now_ns() >= r->linger_ns;
		}
		/* EOF, or EIO from a pty master once every slave is closed */
		return true;
	}
	return false;
}

static void pump_streams(struct run *r)
{
	for (int i = 0; i < 2; i++) {
		if (r->s[i].fd >= 0 && read_stream(r, &r->s[i])) {
			close(r->s[i].fd);
			r->s[i].fd = -1;
		}
	}
}

static int poll_timeout(const struct run *r)
{
	uint64_t now = init_now_ns(), until = 0;

	if (r->pid && r->deadline_ns && !r->timed_out)
		until = r->deadline_ns;
	if (r->draining && r->linger_ns && (!until || r->linger_ns < until))
		until = r->linger_ns;
	if (!until)
		return -1;
	return until <= now ? 0 : (int)((until - now) / 1000000u + 1);
}

static bool finished(const struct run *r)
{
	return r->host_gone || (r->draining && r->s[0].fd < 0 && r->s[1].fd < 0);
}

static void run_loop(struct run *r)
{
	while (!finished(r)) {
		struct pollfd p[5];
		int n = 0, out_room;

		/* Frames that came in with the request wait in the reader, not the socket. */
		if (proto_reader_ready(r->rd) && proto_buf_pending(&r->in) < STDIN_QUEUE_MAX) {
			read_conn(r);
			write_stdin(r);
			if (finished(r))
				break;
		}
		out_room = proto_buf_pending(&r->out) < OUT_QUEUE_MAX;

		p[n++] = (struct pollfd){ .fd = r->conn,
			.events = (short)((proto_buf_pending(&r->in) < STDIN_QUEUE_MAX ? POLLIN : 0) |
					  (proto_buf_pending(&r->out) ? POLLOUT : 0)) };
		p[n++] = (struct pollfd){ .fd = r->sfd, .events = POLLIN };
		/* Only when there is something to write: a pipe with no reader reports POLLERR always. */
		p[n++] = (struct pollfd){ .fd = proto_buf_pending(&r->in) || r->stdin_eof ? r->stdin_fd : -1,
			.events = POLLOUT };
		for (int i = 0; i < 2; i++)
			p[n++] = (struct pollfd){ .fd = out_room ? r->s[i].fd : -1, .events = POLLIN };
		if (poll(p, (nfds_t)n, poll_timeout(r)) < 0 && errno != EINTR) {
			agent_log("exec: poll: %s", strerror(errno));
			r->host_gone = true;
			kill_all(r);
			break;
		}
		if (r->pid && r->deadline_ns && !r->timed_out && init_now_ns() >= r->deadline_ns) {
			r->timed_out = true;
			kill_all(r);
		}
		if (p[0].revents & POLLIN)
			read_conn(r);
		if (!(p[0].revents & POLLIN) && p[0].revents & (POLLHUP | POLLERR)) {
			/* The host hung up without waiting for the exit: it abandoned the exec. */
			r->host_gone = true;
			kill_all(r);
		}
		if (proto_buf_pending(&r->out) && proto_buf_send(&r->out, r->conn) < 0) {
			r->host_gone = true;
			kill_all(r);
		}
		write_stdin(r);
		reap(r);
		pump_streams(r);
	}
}

static void send_exit(struct run *r)
{
	struct proto_exit x = { .chain_index = r->idx, .timed_out = r->timed_out };
	struct rusage ru;

	if (WIFSIGNALED(r->wstatus)) {
		x.how = PROTO_SIGNALED;
		x.code = WTERMSIG(r->wstatus);
	} else {
		x.how = PROTO_EXITED;
		x.code = WEXITSTATUS(r->wstatus);
	}
	x.duration_ns = r->end_ns - r->start_ns;
	/* The largest RSS of any process of the exec that was reaped here (all of them). */
	if (getrusage(RUSAGE_CHILDREN, &ru) == 0)
		x.peak_rss_kib = (uint64_t)ru.ru_maxrss;
	proto_encode_data(&r->out, PROTO_STDOUT, PROTO_FLAG_EOF, NULL, 0);
	proto_encode_data(&r->out, PROTO_STDERR, PROTO_FLAG_EOF, NULL, 0);
	proto_encode_exit(&r->out, &x);
	init_flush(&r->out, r->conn);
}

static void run_free(struct run *r)
{
	close_child_fds(r);
	for (int i = 0; i < 2; i++)
		if (r->s[i].fd >= 0)
			close(r->s[i].fd);
	if (r->master >= 0)
		close(r->master);
	if (r->stdin_fd >= 0)
		close(r->stdin_fd);
	if (r->sfd >= 0)
		close(r->sfd);
	if (r->cg_fd >= 0)
		close(r->cg_fd);
	cgroup_remove(r->cg_path);
	free(r->envp);
	free(r->chunk);
	proto_exec_release(&r->req);
	free(r->req_copy);
	proto_buf_free(&r->out);
	proto_buf_free(&r->in);
}

/*
 * The exec's own cgroup, frozen at once if a seal began after this exec
 * passed its gate (seal.c): 0 or a positive errno with why.
 */
static int exec_cgroup(struct run *r, char *why, size_t whylen)
{
	const struct init_state *st = r->st;
	char name[64];
	int rc;

	snprintf(name, sizeof(name), "sm-exec-%d", (int)getpid());
	r->cg_fd = cgroup_create(st->cgroup_root, name, r->cg_path, sizeof(r->cg_path));
	if (r->cg_fd < 0 && (st->pid1 || st->cgroup_root[0]))
		seal_uncontained(st, "an exec");
	rc = seal_adopt(st, r->cg_path);
	if (rc)
		snprintf(why, whylen, "freezing the exec's cgroup %.256s for a snapshot: %s", r->cg_path, strerror(rc));
	return rc;
}

int run_exec(const struct init_state *st, int conn, struct proto_reader *rd, const struct proto_frame *req)
{
	struct run r = {
		.st = st, .conn = conn, .rd = rd, .master = -1, .stdin_fd = -1, .sfd = -1, .cg_fd = -1,
		.child_fd = { -1, -1, -1 }, .s = { { -1, PROTO_STDOUT }, { -1, PROTO_STDERR } },
	};
	struct proto_frame own = *req;
	char why[PROTO_MAX_MESSAGE] = "";
	int rc;

	/* The request's strings point into the reader's buffer, which later reads reuse. */
	r.req_copy = malloc(req->len ? req->len : 1);
	r.chunk = malloc(PROTO_CHUNK);
	if (!r.req_copy || !r.chunk) {
		rc = send_error(&r, ENOMEM, "out of memory");
		goto out;
	}
	memcpy(r.req_copy, req->payload, req->len);
	own.payload = r.req_copy;
	rc = proto_decode_exec(&own, &r.req);
	if (rc < 0) {
		agent_log("exec: malformed exec request; closing");
		goto out;
	}
	rc = prepare(&r, why, sizeof(why));
	if (rc == -EPROTO) {
		agent_log("exec: %s; closing", why);
		goto out;
	}
	if (rc < 0) {
		rc = send_error(&r, -rc, why);
		goto out;
	}
	rc = open_io(&r);
	if (rc < 0) {
		snprintf(why, sizeof(why), "setting up the exec's %s: %s", r.req.flags & PROTO_EXEC_TTY ? "pty" : "pipes",
			 strerror(-rc));
		rc = send_error(&r, -rc, why);
		goto out;
	}
	rc = exec_cgroup(&r, why, sizeof(why));
	if (rc) {
		rc = send_error(&r, rc, why);
		goto out;
	}
	r.start_ns = init_now_ns();
	if (r.req.timeout_ms)
		r.deadline_ns = r.start_ns + (uint64_t)r.req.timeout_ms * 1000000u;
	start_command(&r);
	if (r.pid)
		proto_encode_u32(&r.out, PROTO_STARTED, (uint32_t)r.pid);
	else
		command_ended(&r);
	run_loop(&r);
	if (!r.host_gone)
		send_exit(&r);
	rc = 0;
out:
	run_free(&r);
	return rc;
}

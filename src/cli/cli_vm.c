/* Shared by the VM commands: option values and terminal streaming. */
#include "cli/cli_vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

void cli_error(const char *cmd, sm_error *err)
{
	fprintf(stderr, "supermachine: %s: %s\n", cmd, err ? sm_error_string(err) : "failed");
	sm_error_free(err);
}

int cli_number(const char *s, unsigned long max, unsigned long *v, const char *cmd, const char *what)
{
	char *end;

	errno = 0;
	*v = strtoul(s, &end, 10);
	if (errno || !*s || *end || *v == 0 || *v > max || s[0] == '-') {
		fprintf(stderr, "supermachine: %s: %s '%s': want a number from 1 to %lu\n", cmd, what, s, max);
		return -1;
	}
	return 0;
}

/* Keeps kv (made here, may be NULL: out of memory) in o's environment. */
static int env_own(struct cli_exec_opts *o, char *kv)
{
	if (!kv)
		return -1;
	o->env_owned[o->nenv_owned++] = kv;
	o->env[o->nenv++] = kv;
	return 0;
}

int cli_env_add(struct cli_exec_opts *o, const char *spec, const char *cmd)
{
	const char *val;
	char *kv;

	if (!spec[0] || spec[0] == '=') {
		fprintf(stderr, "supermachine: %s: -e '%s': want KEY=VALUE\n", cmd, spec);
		return -1;
	}
	if (o->nenv == CLI_MAX_ENV) {
		fprintf(stderr, "supermachine: %s: more than %d -e\n", cmd, CLI_MAX_ENV);
		return -1;
	}
	if (strchr(spec, '=')) {
		o->env[o->nenv++] = spec;
		return 0;
	}
	val = getenv(spec); /* like docker: a bare KEY passes this shell's value, and nothing when unset */
	if (!val)
		return 0;
	if (asprintf(&kv, "%s=%s", spec, val) < 0)
		return -1;
	return env_own(o, kv);
}

void cli_exec_opts_free(struct cli_exec_opts *o)
{
	for (size_t i = 0; i < o->nenv_owned; i++)
		free(o->env_owned[i]);
	o->nenv_owned = 0;
}

static int cli_port_number(const char *s, size_t n, bool zero_ok, uint16_t *out)
{
	char buf[8], *end;
	long v;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	v = strtol(buf, &end, 10);
	if (*end || v < (zero_ok ? 0 : 1) || v > 65535 || buf[0] == '-' || buf[0] == '+')
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int cli_port_parse(const char *spec, struct cli_port *p, const char *cmd)
{
	const char *guest = strrchr(spec, ':'), *host;

	memset(p, 0, sizeof(*p));
	snprintf(p->addr, sizeof(p->addr), "127.0.0.1"); /* not 0.0.0.0: a guest service is not exposed to the LAN unless asked */
	if (!guest)
		goto bad;
	host = spec;
	const char *colon = memchr(spec, ':', (size_t)(guest - spec));
	if (colon) {
		size_t alen = (size_t)(colon - spec);
		if (alen == 0 || alen >= sizeof(p->addr))
			goto bad;
		memcpy(p->addr, spec, alen);
		p->addr[alen] = 0;
		host = colon + 1;
	}
	if (cli_port_number(host, (size_t)(guest - host), true, &p->host_port) < 0 ||
	    cli_port_number(guest + 1, strlen(guest + 1), false, &p->guest_port) < 0)
		goto bad;
	return 0;
bad:
	fprintf(stderr, "supermachine: %s: -p '%s': want [ADDR:]HOSTPORT:GUESTPORT\n", cmd, spec);
	return -1;
}

/* ---- streaming ---- */

struct stream {
	sm_child *child;
	bool tty;
	struct termios saved;
	bool raw;
	int sigfd;
	sigset_t oldmask;
};

static void stream_winsize(struct stream *s, unsigned *rows, unsigned *cols)
{
	struct winsize ws;

	*rows = 24, *cols = 80;
	if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
		*rows = ws.ws_row, *cols = ws.ws_col;
}

static void stream_raw(struct stream *s)
{
	struct termios t;

	if (!s->tty || tcgetattr(STDIN_FILENO, &s->saved) < 0)
		return;
	t = s->saved;
	cfmakeraw(&t);
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
		s->raw = true;
}

static void stream_restore(struct stream *s)
{
	if (s->raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &s->saved);
	if (s->sigfd >= 0)
		close(s->sigfd);
	sigprocmask(SIG_SETMASK, &s->oldmask, NULL);
}

/* Copies what is readable on from to to; false at EOF or error. */
static bool stream_copy(int from, int to)
{
	char buf[65536];
	ssize_t n = read(from, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0)
		return false;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(to, buf + off, (size_t)(n - off));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return true; /* our stdout went away: drop the rest, keep the command's status */
		off += w;
	}
	return true;
}

static void stream_signal(struct stream *s)
{
	struct signalfd_siginfo si;
	unsigned rows, cols;

	if (read(s->sigfd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGWINCH) {
		stream_winsize(s, &rows, &cols);
		sm_child_resize(s->child, rows, cols, NULL);
	} else {
		sm_child_signal(s->child, (int)si.ssi_signo, NULL);
	}
}

/* Pumps stdin/stdout/stderr until the command's output ends. */
static void stream_pump(struct stream *s, bool interactive)
{
	int in = interactive ? STDIN_FILENO : -1;
	int out = sm_child_stdout(s->child), errfd = sm_child_stderr(s->child);

	if (!interactive)
		sm_child_close_stdin(s->child);
	while (out >= 0 || errfd >= 0) {
		struct pollfd p[4] = {
			{ .fd = in, .events = POLLIN },
			{ .fd = out, .events = POLLIN },
			{ .fd = errfd, .events = POLLIN },
			{ .fd = s->sigfd, .events = POLLIN },
		};
		if (poll(p, 4, -1) < 0 && errno != EINTR)
			break;
		if (p[3].revents)
			stream_signal(s);
		if (p[0].revents && !stream_copy(in, sm_child_stdin(s->child))) {
			in = -1;
			sm_child_close_stdin(s->child);
		}
		if (p[1].revents && !stream_copy(out, STDOUT_FILENO))
			out = -1;
		if (p[2].revents && !stream_copy(errfd, STDERR_FILENO))
			errfd = -1;
	}
}

static int stream_apply(sm_exec *x, const char *const *argv, const struct cli_exec_opts *o, struct stream *s)
{
	unsigned rows, cols;

	if (sm_exec_argv(x, argv) < 0)
		return -1;
	for (size_t i = 0; i < o->nenv; i++) {
		size_t k = strcspn(o->env[i], "=");
		char key[256];
		if (k >= sizeof(key))
			return -1;
		memcpy(key, o->env[i], k);
		key[k] = 0;
		if (sm_exec_env(x, key, o->env[i] + k + 1) < 0)
			return -1;
	}
	if ((o->workdir && sm_exec_cwd(x, o->workdir) < 0) || (o->user && sm_exec_user(x, o->user) < 0))
		return -1;
	if (o->tty) {
		stream_winsize(s, &rows, &cols);
		if (sm_exec_tty(x, true) < 0 || sm_exec_winsize(x, rows, cols) < 0)
			return -1;
	}
	return 0;
}

int cli_exec_stream(sm_vm *vm, const char *const *argv, const struct cli_exec_opts *o, const char *cmd)
{
	struct stream s = { .tty = o->tty && isatty(STDIN_FILENO), .sigfd = -1 };
	sm_exec *x = sm_exec_new(vm);
	sm_error *err = NULL;
	sm_outcome out;
	sigset_t set;
	int status = 125;

	if (!x) {
		fprintf(stderr, "supermachine: %s: out of memory\n", cmd);
		return 125;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGWINCH);
	sigprocmask(SIG_BLOCK, &set, &s.oldmask); /* they reach the command through the signalfd */
	s.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	stream_apply(x, argv, o, &s); /* a bad value is kept by x and reported by spawn */
	s.child = sm_exec_spawn(x, &err);
	if (!s.child) {
		cli_error(cmd, err);
		goto out;
	}
	stream_raw(&s);
	stream_pump(&s, o->interactive);
	if (sm_child_wait(s.child, &out, &err) < 0) {
		stream_restore(&s);
		s.raw = false, s.sigfd = -1;
		cli_error(cmd, err);
		goto out;
	}
	status = out.signal ? 128 + out.signal : out.status;
	if (out.timed_out)
		status = 124;
	sm_outcome_free(&out);
out:
	stream_restore(&s);
	sm_child_free(s.child);
	sm_exec_free(x);
	return status;
}

/* ---- option values: --env-file, --net, a refused option ---- */

#define ENV_FILE_SPACE " \t\r\v\f"

/*
 * One line of an env file, as Docker's reader takes it: leading space
 * dropped, the line end (\n or \r\n) too, the value kept as written.
 * 0, or -1 after saying what is wrong at path:lineno.
 */
static int env_file_line(struct cli_exec_opts *o, char *line, const char *path, unsigned lineno,
			 const char *cmd)
{
	size_t len, name_len;

	line += strspn(line, ENV_FILE_SPACE);
	len = strcspn(line, "\n");
	if (len && line[len - 1] == '\r')
		len--;
	line[len] = 0;
	if (!line[0] || line[0] == '#')
		return 0;
	name_len = strcspn(line, "=");
	if (!line[name_len]) {
		while (len && strchr(ENV_FILE_SPACE, line[len - 1]))
			line[--len] = 0;
		return cli_env_add(o, line, cmd); /* KEY alone: this shell's value, as -e KEY */
	}
	if (name_len == 0 || strcspn(line, ENV_FILE_SPACE) < name_len) {
		fprintf(stderr, "supermachine: %s: --env-file %s:%u: %s '%.*s'\n", cmd, path, lineno,
			name_len ? "whitespace in the variable name" : "no variable name before '='", (int)name_len,
			line);
		return -1;
	}
	if (o->nenv_owned == CLI_MAX_ENV || o->nenv == CLI_MAX_ENV) {
		fprintf(stderr, "supermachine: %s: --env-file %s: more than %d variables\n", cmd, path, CLI_MAX_ENV);
		return -1;
	}
	return env_own(o, strdup(line));
}

int cli_env_file(struct cli_exec_opts *o, const char *path, const char *cmd)
{
	FILE *f = fopen(path, "re");
	unsigned lineno = 0;
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;

	if (!f) {
		fprintf(stderr, "supermachine: %s: --env-file %s: %s\n", cmd, path, strerror(errno));
		return -1;
	}
	errno = 0;
	while (rc == 0 && getline(&line, &cap, f) >= 0)
		rc = env_file_line(o, line, path, ++lineno, cmd);
	if (rc == 0 && ferror(f)) {
		fprintf(stderr, "supermachine: %s: --env-file %s: %s\n", cmd, path, strerror(errno ? errno : EIO));
		rc = -1;
	}
	free(line);
	fclose(f);
	return rc;
}

int cli_format_json(const char *v, bool *json, const char *cmd)
{
	if (strcmp(v, "json")) {
		fprintf(stderr, "supermachine: %s: --format '%s': only json is supported (Go templates are not)\n", cmd, v);
		return -1;
	}
	*json = true;
	return 0;
}

static const char *const net_values[] = { "none", "nat", "slirp", "bridge", "default", "host" };

bool cli_net_is_value(const char *v)
{
	for (size_t i = 0; v && i < sizeof(net_values) / sizeof(net_values[0]); i++)
		if (!strcmp(v, net_values[i]))
			return true;
	return false;
}

int cli_net_value(const char *v, bool *on, const char *cmd)
{
	if (!strcmp(v, "host")) {
		fprintf(stderr, "supermachine: %s: --net host: a VM cannot share the host's network stack; "
				"use the default (NAT) and -p to publish ports\n", cmd);
		return -1;
	}
	if (!cli_net_is_value(v)) {
		fprintf(stderr, "supermachine: %s: --net '%s': want none, or nat (the default: outbound NAT)\n", cmd,
			v);
		return -1;
	}
	*on = strcmp(v, "none") != 0;
	return 0;
}

const char *cli_net_arg(bool optional, int argc, char **argv)
{
	if (optarg || !optional)
		return optarg;
	if (optind < argc && cli_net_is_value(argv[optind]))
		return argv[optind++];
	return "nat";
}

int cli_bad_option(int c, char **argv, const char *cmd)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	const char *what = c == ':' ? "option needs a value" : "unknown option";

	/* a long option is the argument itself; a short one may sit in a cluster (-dz) */
	if (!strncmp(arg, "--", 2) || optopt <= ' ' || optopt >= 127)
		fprintf(stderr, "supermachine: %s: %s: %s (see 'supermachine %s --help')\n", cmd, what, arg, cmd);
	else
		fprintf(stderr, "supermachine: %s: %s: -%c (see 'supermachine %s --help')\n", cmd, what, optopt, cmd);
	return CLI_EXIT_FAILED;
}

int cli_mount_add(struct cli_mounts *ms, const char *spec, const char *cmd)
{
	sm_error *err = NULL;

	if (ms->n == SM_MAX_MOUNTS) {
		fprintf(stderr, "supermachine: %s: more than %d mounts\n", cmd, SM_MAX_MOUNTS);
		return -1;
	}
	if (sm_mount_parse(spec, ms->buf[ms->n], sizeof(ms->buf[0]), &ms->m[ms->n], &err) < 0) {
		cli_error(cmd, err);
		return -1;
	}
	ms->n++;
	return 0;
}

bool cli_volume_is_dir(const char *spec)
{
	char host[4096];
	const char *colon = strchr(spec, ':');
	struct stat st;

	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return false;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = 0;
	return stat(host, &st) == 0 && S_ISDIR(st.st_mode);
}

bool cli_help_only(int argc, char **argv, const char *cmd, void (*usage)(FILE *out), int *rc)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 1;
	opterr = 0;
	c = getopt_long(argc, argv, "+:h", longopts, NULL);
	if (c == -1)
		return true;
	if (c == 'h') {
		usage(stdout);
		*rc = 0;
	} else {
		*rc = cli_bad_option(c, argv, cmd);
	}
	return false;
}

/* ---- what ps shows ---- */

void cli_human_duration(int64_t s, char *out, size_t len)
{
	int64_t m = s / 60, h = (s + 1800) / 3600; /* hours round, as go-units does */

	if (s < 1)
		snprintf(out, len, "Less than a second");
	else if (s == 1)
		snprintf(out, len, "1 second");
	else if (s < 60)
		snprintf(out, len, "%lld seconds", (long long)s);
	else if (m == 1)
		snprintf(out, len, "About a minute");
	else if (m < 60)
		snprintf(out, len, "%lld minutes", (long long)m);
	else if (h == 1)
		snprintf(out, len, "About an hour");
	else if (h < 48)
		snprintf(out, len, "%lld hours", (long long)h);
	else if (h < 24 * 7 * 2)
		snprintf(out, len, "%lld days", (long long)(h / 24));
	else if (h < 24 * 30 * 2)
		snprintf(out, len, "%lld weeks", (long long)(h / 24 / 7));
	else if (h < 24 * 365 * 2)
		snprintf(out, len, "%lld months", (long long)(h / 24 / 30));
	else
		snprintf(out, len, "%lld years", (long long)(s / 3600 / 24 / 365));
}

void cli_status_string(const sm_vm_info *v, int64_t now, char *out, size_t len)
{
	char d[32];

	if (sm_vm_info_status(v) == SM_VM_RUNNING) {
		cli_human_duration(now - sm_vm_info_started(v), d, sizeof(d));
		snprintf(out, len, "Up %s", d);
		return;
	}
	if (!sm_vm_info_finished(v)) {
		snprintf(out, len, "Exited (%d)", sm_vm_info_exit_code(v));
		return;
	}
	cli_human_duration(now - sm_vm_info_finished(v), d, sizeof(d));
	snprintf(out, len, "Exited (%d) %s ago", sm_vm_info_exit_code(v), d);
}

void cli_ports_string(const sm_vm_info *v, char *out, size_t len)
{
	size_t n = 0;

	out[0] = 0;
	for (size_t i = 0; i < sm_vm_info_port_count(v) && n < len; i++) {
		const char *addr;
		uint16_t host, guest;
		sm_vm_info_port(v, i, &addr, &host, &guest);
		n += (size_t)snprintf(out + n, len - n, "%s%s:%u->%u/tcp", i ? ", " : "", addr, host, guest);
	}
}

/* ---- cp operands ---- */

int cli_cp_parse(const char *spec, struct cli_cp_spec *out)
{
	const char *colon = strchr(spec, ':');

	memset(out, 0, sizeof(*out));
	out->path = spec;
	/* as docker cp: a path with a '/' before any ':' (./a:b, /x:y) is the host's */
	if (!colon || memchr(spec, '/', (size_t)(colon - spec)) || colon == spec)
		return 0;
	if ((size_t)(colon - spec) >= sizeof(out->vm) || !colon[1]) {
		fprintf(stderr, "supermachine: cp: '%s': want VM:PATH with a VM name or ID and a path\n", spec);
		return -1;
	}
	memcpy(out->vm, spec, (size_t)(colon - spec));
	out->path = colon + 1;
	return 0;
}

int cli_guest_path(const char *path, char *out, size_t len)
{
	size_t n = 0;

	if (len < 2)
		return -1;
	for (const char *p = path; *p;) {
		size_t c = strcspn(p, "/");
		if (c == 2 && p[0] == '.' && p[1] == '.') {
			if (n == 0)
				return -1; /* above the root */
			while (n > 0 && out[n - 1] != '/')
				n--;
			n--; /* the '/' before it */
		} else if (c && !(c == 1 && p[0] == '.')) {
			if (n + 1 + c >= len)
				return -1;
			out[n++] = '/';
			memcpy(out + n, p, c);
			n += c;
		}
		p += c;
		while (*p == '/')
			p++;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = 0;
	return 0;
}

/*
 * supermachine-runtime: the command line containerd's runc shim
 * (io.containerd.runc.v2) and dockerd drive, as runc's: global flags,
 * then create / start / state / kill / delete / exec / ps / features.
 * What it does with each is in docs/kubernetes.md.
 */
#include "runtime/rt.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct globals {
	const char *root;
	const char *log;
	bool log_json;
};

static struct globals *g_log; /* where rt_error writes besides stderr; set once in main */

static void log_line(const char *level, const char *fmt, va_list ap)
{
	char msg[RT_WHY], when[40];
	time_t now = time(NULL);
	FILE *f;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* under the shim create's stderr is the container's own: a warning there would be in its output */
	if (strcmp(level, "error") == 0 || !g_log || !g_log->log)
		fprintf(stderr, "supermachine-runtime: %s%s\n", strcmp(level, "error") ? "warning: " : "", msg);
	if (!g_log || !g_log->log || !(f = fopen(g_log->log, "ae")))
		return;
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	if (g_log->log_json) {
		/* the shim reads the last error line of this file into the error it reports */
		json_t *o = json_pack("{s:s, s:s, s:s}", "level", level, "msg", msg, "time", when);
		char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (text)
			fprintf(f, "%s\n", text);
		free(text);
		json_decref(o);
	} else {
		fprintf(f, "%s %s: %s\n", when, level, msg);
	}
	fclose(f);
}

void rt_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("error", fmt, ap);
	va_end(ap);
}

void rt_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("warning", fmt, ap);
	va_end(ap);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: supermachine-runtime [GLOBAL OPTIONS] COMMAND [OPTIONS] ID\n"
		"\n"
		"An OCI runtime (runtime-spec 1.1, runc's command line) that runs each\n"
		"container as a supermachine microVM whose root is the bundle's rootfs.\n"
		"\n"
		"Global options:\n"
		"  --root DIR           container state (default " RT_DEFAULT_ROOT ")\n"
		"  --log FILE           also write errors there, and warnings only there\n"
		"  --log-format text|json\n"
		"  --systemd-cgroup, --debug  accepted, no effect\n"
		"\n"
		"Commands:\n"
		"  create --bundle DIR [--pid-file F] [--console-socket S] ID\n"
		"  start ID\n"
		"  state ID\n"
		"  kill ID [SIGNAL] [--all]\n"
		"  delete [--force] ID\n"
		"  exec --process P.json [--detach] [--pid-file F] [--console-socket S] ID\n"
		"  ps [--format table|json] ID\n"
		"  features\n");
}

/* ---- getopt around each command ---- */

enum { O_BUNDLE = 1, O_PID_FILE, O_CONSOLE, O_NO_PIVOT, O_NO_KEYRING, O_PRESERVE, O_PROCESS, O_DETACH, O_TTY,
       O_FORCE, O_ALL, O_FORMAT, O_HELP };

struct cmd_opts {
	const char *bundle, *pid_file, *console_socket, *process, *format;
	bool detach, force, all;
	char **args;
	int nargs;
};

static int parse_cmd(const char *cmd, int argc, char **argv, const struct option *longs, struct cmd_opts *o)
{
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":b:p:dfat", longs, NULL)) != -1) {
		switch (c) {
		case 'b': case O_BUNDLE: o->bundle = optarg; break;
		case O_PID_FILE: o->pid_file = optarg; break;
		case O_CONSOLE: o->console_socket = optarg; break;
		case 'p': case O_PROCESS: o->process = optarg; break;
		case O_FORMAT: o->format = optarg; break;
		case 'd': case O_DETACH: o->detach = true; break;
		case 'f': case O_FORCE: o->force = true; break;
		case 'a': case O_ALL: o->all = true; break;
		case 't': case O_TTY: case O_NO_PIVOT: case O_NO_KEYRING: case O_PRESERVE: break;
		case ':':
			rt_error("%s: option %s needs a value", cmd, argv[optind - 1]);
			return -1;
		default:
			rt_error("%s: unknown option '%s' (see supermachine-runtime --help)", cmd, argv[optind - 1]);
			return -1;
		}
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	return 0;
}

/* The command's ID (its one required argument beyond extra allowed ones). */
static const char *one_id(const char *cmd, const struct cmd_opts *o, int extra)
{
	if (o->nargs < 1 || o->nargs > 1 + extra) {
		rt_error("%s: want %s ID%s, got %d arguments", cmd, cmd, extra ? " [SIGNAL]" : "", o->nargs);
		return NULL;
	}
	if (!rt_id_ok(o->args[0])) {
		rt_error("%s: container ID '%s' is not [A-Za-z0-9][A-Za-z0-9_.+-]* (at most 255 bytes)", cmd, o->args[0]);
		return NULL;
	}
	return o->args[0];
}

static int load(const struct globals *g, const char *id, struct rt_state *st)
{
	char why[RT_WHY];

	if (rt_state_read(g->root, id, st, why, sizeof(why)) < 0) {
		rt_error("%s", why);
		return -1;
	}
	return 0;
}

static int write_pid_file(const char *path, pid_t pid)
{
	char text[32], why[RT_WHY];

	if (!path)
		return 0;
	snprintf(text, sizeof(text), "%d", (int)pid);
	if (rt_write_file(path, text, why, sizeof(why)) < 0) {
		rt_error("pid file: %s", why);
		return -1;
	}
	return 0;
}

/*
 * Forks the process that stands for the container or exec and waits for
 * its first line: "ok VMID" once it is up, "error MESSAGE" otherwise.
 */
static pid_t fork_ready(char *vm_id, size_t cap, void (*child)(void *, int), void *arg)
{
	int p[2];
	char line[RT_WHY + 16] = "";
	ssize_t n, got = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return rt_error("pipe: %s", strerror(errno)), -1;
	pid = fork();
	if (pid < 0)
		return rt_error("fork: %s", strerror(errno)), -1;
	if (pid == 0) {
		close(p[0]);
		setsid();
		child(arg, p[1]);
		_exit(1);
	}
	close(p[1]);
	while (got < (ssize_t)sizeof(line) - 1 && (n = read(p[0], line + got, sizeof(line) - 1 - (size_t)got)) > 0)
		got += n;
	close(p[0]);
	line[got] = 0;
	line[strcspn(line, "\n")] = 0;
	if (strncmp(line, "ok ", 3) == 0 && (size_t)snprintf(vm_id, cap, "%s", line + 3) < cap)
		return pid;
	rt_error("%s", strncmp(line, "error ", 6) == 0 ? line + 6
		       : strncmp(line, "ok ", 3) == 0 ? "the supervisor's VM ID is too long"
						      : "the supervisor ended before it was ready");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* ---- create ---- */

struct create_arg {
	const struct rt_spec *spec;
	const char *id, *dir, *console_socket;
};

static void create_child(void *a, int ready_fd)
{
	const struct create_arg *c = a;
	struct rt_run r = { .state_dir = c->dir, .console_socket = c->console_socket, .ready_fd = ready_fd };

	rt_supervise(c->spec, c->id, &r);
}

static int create_state(struct rt_state *st, const struct rt_spec *s, const char *bundle, pid_t pid)
{
	char why[RT_WHY];
	time_t now = time(NULL);

	snprintf(st->bundle, sizeof(st->bundle), "%s", bundle);
	strftime(st->created, sizeof(st->created), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	st->pid = pid;
	st->pid_start = rt_pid_start(pid);
	st->annotations = s->annotations;
	if (rt_state_write(st, why, sizeof(why)) < 0) {
		rt_error("%s", why);
		return -1;
	}
	return 0;
}

static int prepare_dir(const struct globals *g, const char *id, struct rt_state *st)
{
	char fifo[PATH_MAX + 32];

	snprintf(st->id, sizeof(st->id), "%s", id);
	if ((size_t)snprintf(st->dir, sizeof(st->dir), "%s/%s", g->root, id) >= sizeof(st->dir))
		return rt_error("--root %s: too long", g->root), -1;
	if (rt_mkdir_parents(g->root, 0711) < 0)
		return rt_error("--root %s: %s", g->root, strerror(errno)), -1;
	if (mkdir(st->dir, 0700) < 0)
		return rt_error("create %s: %s", id, errno == EEXIST ? "a container with that ID already exists" : strerror(errno)), -1;
	snprintf(fifo, sizeof(fifo), "%s/" RT_START_FIFO, st->dir);
	if (mkfifo(fifo, 0600) < 0) {
		rt_error("create %s: fifo %s: %s", id, fifo, strerror(errno));
		rmdir(st->dir);
		return -1;
	}
	return 0;
}

static int cmd_create(const struct globals *g, int argc, char **argv)
{
	static const struct option longs[] = { { "bundle", required_argument, 0, O_BUNDLE },
		{ "pid-file", required_argument, 0, O_PID_FILE }, { "console-socket", required_argument, 0, O_CONSOLE },
		{ "no-pivot", no_argument, 0, O_NO_PIVOT }, { "no-new-keyring", no_argument, 0, O_NO_KEYRING },
		{ "preserve-fds", required_argument, 0, O_PRESERVE }, { 0 } };
	struct cmd_opts o = { 0 };
	struct rt_state st = { 0 };
	struct rt_spec spec;
	char why[RT_WHY], bundle[PATH_MAX];
	const char *id;
	pid_t pid;

	if (parse_cmd("create", argc, argv, longs, &o) < 0 || !(id = one_id("create", &o, 0)))
		return 1;
	if (!realpath(o.bundle ? o.bundle : ".", bundle))
		return rt_error("create %s: bundle %s: %s", id, o.bundle ? o.bundle : ".", strerror(errno)), 1;
	if (rt_spec_load(bundle, &spec, why, sizeof(why)) < 0)
		return rt_error("create %s: %s", id, why), 1;
	for (char *w = spec.warnings, *nl; w && *w; w = nl + 1) {
		nl = strchr(w, '\n');
		rt_warn("create %s: %.*s", id, (int)(nl - w), w);
	}
	if (prepare_dir(g, id, &st) < 0) {
		rt_spec_free(&spec);
		return 1;
	}
	struct create_arg a = { &spec, id, st.dir, o.console_socket };
	pid = fork_ready(st.vm_id, sizeof(st.vm_id), create_child, &a);
	if (pid < 0 || create_state(&st, &spec, bundle, pid) < 0 || write_pid_file(o.pid_file, pid) < 0) {
		if (pid > 0)
			kill(pid, SIGKILL);
		rt_state_remove(st.dir);
		rt_spec_free(&spec);
		return 1;
	}
	rt_spec_free(&spec);
	return 0;
}

/* ---- start, state, kill, ps ---- */

static int cmd_start(const struct globals *g, int argc, char **argv)
{
	static const struct option longs[] = { { 0 } };
	char path[PATH_MAX + 32], why[RT_WHY];
	struct cmd_opts o = { 0 };
	struct rt_state st;
	const char *id;
	int fd, rc = 1;

	if (parse_cmd("start", argc, argv, longs, &o) < 0 || !(id = one_id("start", &o, 0)) || load(g, id, &st) < 0)
		return 1;
	if (rt_state_status(&st) != RT_CREATED) {
		rt_error("start %s: the container is %s, not created", id, rt_status_name(rt_state_status(&st)));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/" RT_STARTED_FILE, st.dir);
	if (rt_write_file(path, "", why, sizeof(why)) < 0) {
		rt_error("start %s: %s", id, why);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/" RT_START_FIFO, st.dir);
	/* non-blocking: with the supervisor gone there is no reader, and ENXIO says so */
	fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || write(fd, "s", 1) != 1)
		rt_error("start %s: the supervisor (pid %d) does not listen: %s", id, (int)st.pid, strerror(errno));
	else
		rc = 0;
	if (fd >= 0)
		close(fd);
out:
	rt_state_free(&st);
	return rc;
}

static int cmd_state(const struct globals *g, int argc, char **argv)
{
	static const struct option longs[] = { { 0 } };
	struct cmd_opts o = { 0 };
	struct rt_state st;
	const char *id;
	char *text;

	if (parse_cmd("state", argc, argv, longs, &o) < 0 || !(id = one_id("state", &o, 0)) || load(g, id, &st) < 0)
		return 1;
	text = rt_state_json(&st);
	rt_state_free(&st);
	if (!text)
		return rt_error("state %s: out of memory", id), 1;
	printf("%s\n", text);
	free(text);
	return 0;
}

static int signal_number(const char *s)
{
	char *end;
	long n;

	if (!s)
		return SIGTERM;
	n = strtol(s, &end, 10);
	if (end != s && !*end)
		return n > 0 && n < NSIG ? (int)n : -1;
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (int sig = 1; sig < NSIG; sig++)
		if (sigabbrev_np(sig) && strcasecmp(sigabbrev_np(sig), s) == 0)
			return sig;
	return -1;
}

static int cmd_kill(const struct globals *g, int argc, char **argv)
{
	static const struct option longs[] = { { "all", no_argument, 0, O_ALL }, { 0 } };
	struct cmd_opts o = { 0 };
	struct rt_state st;
	const char *id;
	int sig, rc = 1;

	if (parse_cmd("kill", argc, argv, longs, &o) < 0 || !(id = one_id("kill", &o, 1)))
		return 1;
	if ((sig = signal_number(o.nargs > 1 ? o.args[1] : NULL)) < 0)
		return rt_error("kill %s: unknown signal '%s'", id, o.args[1]), 1;
	if (load(g, id, &st) < 0)
		return 1;
	rt_status s = rt_state_status(&st);
	/* the supervisor forwards it to the process in the VM (or, before start, ends with it) */
	if (s != RT_CREATED && s != RT_RUNNING)
		rt_error("kill %s: the container is %s", id, rt_status_name(s));
	else if (kill(st.pid, sig) < 0)
		rt_error("kill %s: pid %d: %s", id, (int)st.pid, strerror(errno));
	else
		rc = 0;
	rt_state_free(&st);
	return rc;
}

static int cmd_ps(const struct globals *g, int argc, char **argv)
{
	static const struct option longs[] = { { "format", required_argument, 0, O_FORMAT }, { 0 } };
	struct cmd_opts o = { 0 };
	struct rt_state st;
	const char *id;

	if (parse_cmd("ps", argc, argv, longs, &o) < 0 || !(id = one_id("ps", &o, 0)))
		return 1;
	if (o.format && strcmp(o.format, "json") && strcmp(o.format, "table"))
		return rt_error("ps: --format %s: want table or json", o.format), 1;
	if (load(g, id, &st) < 0)
		return 1;
	/* the host sees one process per container: the supervisor; the guest's are the VM's own */
	bool alive = rt_state_status(&st) == RT_CREATED || rt_state_status(&st) == RT_RUNNING;
	if (o.format && strcmp(o.format, "json") == 0)
		alive ? printf("[%d]\n", (int)st.pid) : printf("[]\n");
	else
		alive ? printf("PID\n%d\n", (int)st.pid) : printf("PID\n");
	rt_state_free(&st);
	return 0;
}

/* ---- delete ---- */

static void stop_vm(const char *vm_id)
{
	sm_vm *vm;

	if (!vm_id[0] || !(vm = sm_vm_attach(vm_id, NULL)))
		return;
	/* also removes the runtime directory a killed worker left */
	sm_vm_stop(vm, 1000, NULL);
	sm_vm_free(vm);
}

static int cmd_delete(const struct globals *g, int argc, char **argv)
{
	static const struct option longs[] = { { "force", no_argument, 0, O_FORCE }, { 0 } };
	char why[RT_WHY], dir[PATH_MAX + 300];
	struct cmd_opts o = { 0 };
	struct rt_state st;
	const char *id;

	if (parse_cmd("delete", argc, argv, longs, &o) < 0 || !(id = one_id("delete", &o, 0)))
		return 1;
	if (rt_state_read(g->root, id, &st, why, sizeof(why)) < 0) {
		snprintf(dir, sizeof(dir), "%s/%s", g->root, id);
		/* an interrupted create: nothing runs, remove what it left */
		if (access(dir, F_OK) == 0 && rt_state_remove(dir) == 0)
			return 0;
		return rt_error("%s", why), 1;
	}
	rt_status s = rt_state_status(&st);
	if (s == RT_RUNNING && !o.force) {
		rt_error("delete %s: the container is running: kill it first, or delete --force", id);
		rt_state_free(&st);
		return 1;
	}
	if (s == RT_CREATED || s == RT_RUNNING) {
		kill(st.pid, SIGKILL);
		for (int i = 0; i < 500 && rt_pid_start(st.pid) == st.pid_start; i++)
			usleep(10000);
	}
	stop_vm(st.vm_id);
	rt_state_free(&st);
	if (rt_state_remove(st.dir) < 0)
		return rt_error("delete %s: remove %s: %s", id, st.dir, strerror(errno)), 1;
	return 0;
}

/* ---- exec ---- */

struct exec_arg {
	const char *vm_id, *dir, *console_socket;
	const struct rt_process *proc;
};

static void exec_child(void *a, int ready_fd)
{
	const struct exec_arg *x = a;
	struct rt_run r = { .state_dir = x->dir, .console_socket = x->console_socket, .ready_fd = ready_fd };

	_exit(rt_exec(x->vm_id, x->proc, &r));
}

static int cmd_exec(const struct globals *g, int argc, char **argv)
{
	static const struct option longs[] = { { "process", required_argument, 0, O_PROCESS },
		{ "detach", no_argument, 0, O_DETACH }, { "pid-file", required_argument, 0, O_PID_FILE },
		{ "console-socket", required_argument, 0, O_CONSOLE }, { "tty", no_argument, 0, O_TTY },
		{ "preserve-fds", required_argument, 0, O_PRESERVE }, { 0 } };
	struct cmd_opts o = { 0 };
	struct rt_process p;
	struct rt_state st;
	char why[RT_WHY], vm_id[128];
	const char *id;
	int rc = 1;

	if (parse_cmd("exec", argc, argv, longs, &o) < 0 || !(id = one_id("exec", &o, 0)))
		return 1;
	if (!o.process)
		return rt_error("exec %s: --process FILE is required (runc's inline COMMAND form is not supported)", id), 1;
	if (rt_process_load(o.process, &p, why, sizeof(why)) < 0)
		return rt_error("exec %s: %s", id, why), 1;
	if (load(g, id, &st) < 0)
		goto out_proc;
	if (rt_state_status(&st) != RT_RUNNING || !st.vm_id[0]) {
		rt_error("exec %s: the container is %s%s", id, rt_status_name(rt_state_status(&st)),
			 st.vm_id[0] ? "" : " (a pod sandbox: it has no VM to run in)");
		goto out;
	}
	struct exec_arg a = { st.vm_id, st.dir, o.console_socket, &p };
	if (o.detach) {
		pid_t pid = fork_ready(vm_id, sizeof(vm_id), exec_child, &a);
		rc = pid > 0 && write_pid_file(o.pid_file, pid) == 0 ? 0 : 1;
	} else if (write_pid_file(o.pid_file, getpid()) == 0) {
		struct rt_run r = { .state_dir = st.dir, .console_socket = o.console_socket, .ready_fd = -1 };
		rc = rt_exec(st.vm_id, &p, &r);
	}
out:
	rt_state_free(&st);
out_proc:
	rt_process_free(&p);
	return rc;
}

/* ---- features (runtime-spec features.md) ---- */

static int cmd_features(void)
{
	printf("{\n"
	       "  \"ociVersionMin\": \"1.0.0\",\n"
	       "  \"ociVersionMax\": \"" RT_OCI_VERSION "\",\n"
	       "  \"hooks\": [],\n"
	       "  \"mountOptions\": [\"bind\", \"rbind\", \"ro\", \"rw\"],\n"
	       "  \"linux\": {\n"
	       "    \"namespaces\": [],\n"
	       "    \"capabilities\": [],\n"
	       "    \"cgroup\": {\"v1\": false, \"v2\": false, \"systemd\": false, \"systemdUser\": false},\n"
	       "    \"seccomp\": {\"enabled\": false},\n"
	       "    \"apparmor\": {\"enabled\": false},\n"
	       "    \"selinux\": {\"enabled\": false}\n"
	       "  },\n"
	       "  \"annotations\": {\"io.github.supermachine.runtime\": \"each container is a KVM microVM\"}\n"
	       "}\n");
	return 0;
}

/* ---- global flags and dispatch ---- */

static int parse_globals(int argc, char **argv, struct globals *g)
{
	static const struct option longs[] = { { "root", required_argument, 0, 'r' }, { "log", required_argument, 0, 'l' },
		{ "log-format", required_argument, 0, 'F' }, { "systemd-cgroup", no_argument, 0, 's' },
		{ "debug", no_argument, 0, 'D' }, { "help", no_argument, 0, 'h' }, { "version", no_argument, 0, 'v' },
		{ 0 } };
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:hv", longs, NULL)) != -1) {
		switch (c) {
		case 'r': g->root = optarg; break;
		case 'l': g->log = optarg; break;
		case 'F':
			if (strcmp(optarg, "json") && strcmp(optarg, "text"))
				return rt_error("--log-format %s: want text or json", optarg), -1;
			g->log_json = strcmp(optarg, "json") == 0;
			break;
		case 's': case 'D': break;
		case 'h': usage(stdout); exit(0);
		case 'v': printf("supermachine-runtime %s\nspec: %s\n", sm_version(), RT_OCI_VERSION); exit(0);
		case ':': return rt_error("option %s needs a value", argv[optind - 1]), -1;
		default: return rt_error("unknown global option '%s' (see --help)", argv[optind - 1]), -1;
		}
	}
	return optind;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(const struct globals *, int, char **);
	} cmds[] = { { "create", cmd_create }, { "start", cmd_start }, { "state", cmd_state }, { "kill", cmd_kill },
		     { "delete", cmd_delete }, { "exec", cmd_exec }, { "ps", cmd_ps } };
	struct globals g = { .root = RT_DEFAULT_ROOT };
	int first;

	g_log = &g;
	if ((first = parse_globals(argc, argv, &g)) < 0)
		return 1;
	if (first >= argc) {
		usage(stderr);
		return 1;
	}
	if (strcmp(argv[first], "features") == 0)
		return cmd_features();
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[first], cmds[i].name) == 0)
			return cmds[i].fn(&g, argc - first, argv + first);
	rt_error("unknown command '%s' (pause, resume, update, checkpoint and restore are not supported)", argv[first]);
	return 1;
}

/*
 * The VMs on this host as an embedder sees them: sm_vm_list_* over the
 * runtime directories (what `supermachine ps` shows), and waiting for one
 * VM to end (sm_vm_pidfd, sm_vm_wait). The lists are opaque, read through
 * accessors, so that a field (a name, the ports) can be added later
 * without changing what a caller allocates.
 */
#include "lib/vm.h"

#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* How far back in the console init's line about the workload's end is looked for. */
#define VM_CONSOLE_TAIL 8192

struct sm_vm_info {
	struct vm_meta m;
	sm_vm_status status;
	int exit_code;
};

struct sm_vm_list {
	struct sm_vm_info *v;
	size_t n;
};

/* What init logs as the workload ends (src/guest/agent.c). */
#define WORKLOAD_EXITED "]: workload exited with status "
#define WORKLOAD_SIGNALED "]: workload ended by signal "

/* The last occurrence of key in text, or NULL. */
static const char *last_of(const char *text, const char *key)
{
	const char *at = NULL;

	for (const char *p = text; (p = strstr(p, key)); p++)
		at = p;
	return at;
}

/* The number 0..max right after key at at, or -1. */
static int number_after(const char *at, const char *key, long max)
{
	const char *s = at + strlen(key);
	char *end;
	long v = strtol(s, &end, 10);

	return end != s && v >= 0 && v <= max ? (int)v : -1;
}

/*
 * The console is the guest's: a line it prints itself can claim any
 * status, which only misreports its own workload, as its exit code could.
 */
int vm_console_workload_status(const char *console)
{
	char buf[VM_CONSOLE_TAIL + 1];
	ssize_t n = vm_file_tail(console, buf, sizeof(buf));
	const char *ex, *sig;

	if (n <= 0)
		return -1;
	for (ssize_t i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = ' '; /* console bytes may hold NULs */
	ex = last_of(buf, WORKLOAD_EXITED);
	sig = last_of(buf, WORKLOAD_SIGNALED);
	if (sig && (!ex || sig > ex)) {
		int s = number_after(sig, WORKLOAD_SIGNALED, 127);
		return s > 0 ? 128 + s : -1;
	}
	return ex ? number_after(ex, WORKLOAD_EXITED, 255) : -1;
}

/* One console line at p, its control bytes made spaces, into out. */
static void console_line(const char *p, const char *end, char *out, size_t len)
{
	size_t n = 0;

	for (; p < end && *p != '\n' && n + 1 < len; p++)
		out[n++] = (unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e ? ' ' : *p;
	while (n && out[n - 1] == ' ')
		n--;
	out[n] = 0;
}

/* The start of the line that holds at. */
static const char *line_start(const char *buf, const char *at)
{
	while (at > buf && at[-1] != '\n')
		at--;
	return at;
}

/*
 * The guest's last words when its kernel panicked: init's last log line
 * before the panic (why it ended), or else the line before the panic,
 * and the panic line, so that a VM that died while booting says more
 * than "panic". Empty without a panic. The console is the guest's: this
 * is shown, never acted on.
 */
void vm_console_panic(const char *console, char *out, size_t len)
{
	char buf[VM_CONSOLE_TAIL + 1], why[200] = "", panic[160];
	ssize_t n = vm_file_tail(console, buf, sizeof(buf));
	const char *at, *init;

	out[0] = 0;
	if (n <= 0)
		return;
	for (ssize_t i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = ' ';
	if (!(at = last_of(buf, "Kernel panic")))
		return;
	at = line_start(buf, at);
	console_line(at, buf + n, panic, sizeof(panic));
	buf[at - buf] = 0; /* what came before the panic */
	if ((init = last_of(buf, PROTO_INIT_LOG_PREFIX)))
		console_line(init, at, why, sizeof(why));
	else if (at > buf)
		console_line(line_start(buf, at - 1), at, why, sizeof(why));
	snprintf(out, len, "%s%s%s", why, why[0] ? " / " : "", panic);
}

int sm_vm_pidfd(const sm_vm *vm)
{
	return vm ? vm->pidfd : -1;
}

int sm_vm_wait(sm_vm *vm, int timeout_ms, int *status, sm_error **err)
{
	if (!vm)
		return sm_error_set(err, SM_E_INVALID, 0, "wait: no VM given"), -1;
	if (timeout_ms < 0) {
		while (!vm_wait_exit(vm, INT_MAX))
			;
	} else if (!vm_wait_exit(vm, timeout_ms)) {
		return 1;
	}
	if (status)
		*status = vm_console_workload_status(vm->console);
	return 0;
}

/*
 * Running or not, and how it ended: what was recorded at its end, else
 * (nobody watched it end) the console's word and the console's last write.
 */
static void info_status(struct sm_vm_info *v)
{
	struct stat st;

	v->status = vm_pid_is_worker(v->m.pid) ? SM_VM_RUNNING : SM_VM_EXITED;
	v->exit_code = -1;
	if (v->status == SM_VM_RUNNING) {
		v->m.finished = 0;
		return;
	}
	if (v->m.finished) {
		v->exit_code = v->m.exit_code;
		return;
	}
	v->exit_code = vm_console_workload_status(v->m.console);
	if (stat(v->m.console, &st) == 0)
		v->m.finished = st.st_mtime;
}

/* Newest first, as `docker ps` lists; the ID breaks ties so the order is stable. */
static int info_cmp(const void *a, const void *b)
{
	const struct sm_vm_info *x = a, *y = b;

	if (x->m.created != y->m.created)
		return x->m.created > y->m.created ? -1 : 1;
	return strcmp(x->m.id, y->m.id);
}

sm_vm_list *sm_vm_list_load(sm_error **err)
{
	struct sm_vm_list *l = calloc(1, sizeof(*l));
	struct vm_meta *metas = NULL;
	size_t n = 0;

	if (!l)
		return sm_error_set(err, SM_E_NOMEM, 0, "VM list"), NULL;
	if (vm_meta_list(&metas, &n, err) < 0 || (n && !(l->v = calloc(n, sizeof(*l->v))))) {
		if (n)
			sm_error_set(err, SM_E_NOMEM, 0, "VM list");
		free(metas);
		free(l);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		l->v[i].m = metas[i];
		info_status(&l->v[i]);
	}
	l->n = n;
	free(metas);
	if (l->n) /* qsort takes no NULL array, even empty */
		qsort(l->v, l->n, sizeof(*l->v), info_cmp);
	return l;
}

size_t sm_vm_list_count(const sm_vm_list *l)
{
	return l ? l->n : 0;
}

const sm_vm_info *sm_vm_list_at(const sm_vm_list *l, size_t i)
{
	return l && i < l->n ? &l->v[i] : NULL;
}

void sm_vm_list_free(sm_vm_list *l)
{
	if (!l)
		return;
	free(l->v);
	free(l);
}

/* One VM as `ps --format json` shows it; fields are only ever added. */
static json_t *info_json(const struct sm_vm_info *v)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:i, s:s, s:o, s:b, s:s}", "id", v->m.id, "image", v->m.image,
			 "command", v->m.command, "created", (json_int_t)v->m.created, "pid", (int)v->m.pid, "status",
			 v->status == SM_VM_RUNNING ? "running" : "exited", "exit_code",
			 v->exit_code >= 0 ? json_integer(v->exit_code) : json_null(), "detached", v->m.detached,
			 "console", v->m.console);
}

char *sm_vm_list_json(const sm_vm_list *l)
{
	json_t *arr = json_array();
	char *text = NULL;

	for (size_t i = 0; arr && l && i < l->n; i++)
		if (json_array_append_new(arr, info_json(&l->v[i])) < 0)
			goto out;
	if (arr)
		text = json_dumps(arr, JSON_INDENT(2));
out:
	json_decref(arr);
	return text;
}

const char *sm_vm_info_id(const sm_vm_info *v) { return v->m.id; }
const char *sm_vm_info_image(const sm_vm_info *v) { return v->m.image; }
const char *sm_vm_info_command(const sm_vm_info *v) { return v->m.command; }
int64_t sm_vm_info_created(const sm_vm_info *v) { return v->m.created; }
int sm_vm_info_pid(const sm_vm_info *v) { return (int)v->m.pid; }
sm_vm_status sm_vm_info_status(const sm_vm_info *v) { return v->status; }
int sm_vm_info_exit_code(const sm_vm_info *v) { return v->exit_code; }
bool sm_vm_info_detached(const sm_vm_info *v) { return v->m.detached; }
const char *sm_vm_info_console(const sm_vm_info *v) { return v->m.console; }
const char *sm_vm_info_name(const sm_vm_info *v) { return v->m.name; }
int64_t sm_vm_info_started(const sm_vm_info *v) { return v->m.started; }
int64_t sm_vm_info_finished(const sm_vm_info *v) { return v->m.finished; }
unsigned sm_vm_info_restarts(const sm_vm_info *v) { return v->m.restarts; }
const char *sm_vm_info_restart_policy(const sm_vm_info *v) { return v->m.restart[0] ? v->m.restart : "no"; }
bool sm_vm_info_kept(const sm_vm_info *v) { return v->m.keep; }
uint32_t sm_vm_info_stop_timeout_ms(const sm_vm_info *v) { return v->m.stop_timeout_ms; }
size_t sm_vm_info_port_count(const sm_vm_info *v) { return v->status == SM_VM_RUNNING ? v->m.nports : 0; }

int sm_vm_info_port(const sm_vm_info *v, size_t i, const char **host_addr, uint16_t *host_port,
		    uint16_t *guest_port)
{
	if (i >= sm_vm_info_port_count(v))
		return -1;
	*host_addr = v->m.ports[i].addr;
	*host_port = v->m.ports[i].host;
	*guest_port = v->m.ports[i].guest;
	return 0;
}

/* Entries whose ID starts with prefix: their count, the first in *first. */
static size_t list_prefix(const sm_vm_list *l, const char *prefix, const sm_vm_info **first)
{
	size_t found = 0, n = strlen(prefix);

	for (size_t i = 0; i < l->n; i++)
		if (strncmp(l->v[i].m.id, prefix, n) == 0 && found++ == 0)
			*first = &l->v[i];
	return found;
}

const sm_vm_info *sm_vm_list_find(const sm_vm_list *l, const char *id_or_name, sm_error **err)
{
	const sm_vm_info *hit = NULL;
	size_t n;

	if (!l || !id_or_name || !id_or_name[0])
		return sm_error_set(err, SM_E_NOT_FOUND, 0, "no such VM: %s", id_or_name ? id_or_name : ""), NULL;
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].m.id, id_or_name))
			return &l->v[i];
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].m.name, id_or_name))
			return &l->v[i];
	n = list_prefix(l, id_or_name, &hit);
	if (n > 1)
		return sm_error_set(err, SM_E_INVALID, 0, "VM ID prefix %s matches %zu VMs", id_or_name, n), NULL;
	if (!n)
		return sm_error_set(err, SM_E_NOT_FOUND, 0, "no such VM: %s (see supermachine ps -a)", id_or_name), NULL;
	return hit;
}

/* unix time as RFC 3339 UTC, as docker inspect prints it; "" for 0. */
static json_t *info_time(int64_t t)
{
	char buf[32] = "";
	time_t tt = (time_t)t;
	struct tm tm;

	if (t > 0 && gmtime_r(&tt, &tm))
		strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

static json_t *info_state_json(const sm_vm_info *v)
{
	bool running = v->status == SM_VM_RUNNING;

	return json_pack("{s:s, s:b, s:i, s:i, s:o, s:o, s:i}", "status", running ? "running" : "exited", "running",
			 running, "pid", running ? (int)v->m.pid : 0, "exit_code", v->exit_code, "started",
			 info_time(v->m.started), "finished", info_time(running ? 0 : v->m.finished), "restarts",
			 (int)v->m.restarts);
}

static json_t *info_config_json(const sm_vm_info *v)
{
	json_t *vols = json_array(), *mounts = json_array(), *ports = json_array();

	for (unsigned i = 0; i < v->m.nvolumes; i++) {
		const struct vm_meta_volume *x = &v->m.volumes[i];
		json_array_append_new(vols, json_sprintf("%s:%s%s", x->host, x->guest, x->read_only ? ":ro" : ""));
		/* a volume is a disk image the guest mounts as ext4: docker's Mounts, with its Type */
		json_array_append_new(mounts, json_pack("{s:s, s:s, s:s, s:b}", "type", "ext4-disk", "source", x->host,
							"destination", x->guest, "rw", !x->read_only));
	}
	for (unsigned i = 0; i < v->m.nports; i++)
		json_array_append_new(ports, json_pack("{s:s, s:i, s:i, s:s}", "host_ip", v->m.ports[i].addr,
						       "host_port", v->m.ports[i].host, "guest_port",
						       v->m.ports[i].guest, "protocol", "tcp"));
	return json_pack("{s:i, s:i, s:b, s:o, s:o, s:o, s:s, s:i, s:b, s:b}", "memory_mib", (int)v->m.memory_mib,
			 "vcpus", (int)v->m.vcpus, "network", v->m.network, "volumes", vols, "mounts", mounts, "ports",
			 ports, "restart", sm_vm_info_restart_policy(v), "stop_timeout_ms", (int)v->m.stop_timeout_ms,
			 "detached", v->m.detached, "keep", v->m.keep);
}

char *sm_vm_info_json(const sm_vm_info *v)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o}", "id", v->m.id, "name", v->m.name, "image",
			      v->m.image, "command", v->m.command, "created", info_time(v->m.created), "console",
			      v->m.console, "state", info_state_json(v), "config", info_config_json(v));
	char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;

	json_decref(j);
	return text;
}

int sm_vm_remove(const char *id_or_name, bool force, sm_error **err)
{
	sm_vm *vm = sm_vm_attach(id_or_name, err);

	if (!vm)
		return -1;
	if (sm_vm_running(vm)) {
		if (!force) {
			sm_error_set(err, SM_E_BUSY, 0, "VM %s is running: stop it first, or remove it with -f (force)",
				     vm->id);
			sm_vm_free(vm);
			return -1;
		}
		vm_mark_stopping(vm); /* not to be restarted by its watcher */
		kill(vm->pid, SIGKILL); /* as docker rm -f: no grace */
		vm_wait_exit(vm, 5000);
	}
	vm->keep = false;
	vm->remove = true;
	sm_vm_free(vm);
	return 0;
}

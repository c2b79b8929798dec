/*
 * The VMs on this host as an embedder sees them: sm_vm_list_* over the
 * runtime directories (what `supermachine ps` shows), and waiting for one
 * VM to end (sm_vm_pidfd, sm_vm_wait). The lists are opaque, read through
 * accessors, so that a field (a name, the ports) can be added later
 * without changing what a caller allocates.
 */
#include "lib/vm.h"

#include <limits.h>
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
		struct sm_vm_info *v = &l->v[i];
		v->m = metas[i];
		v->status = vm_pid_is_worker(v->m.pid) ? SM_VM_RUNNING : SM_VM_EXITED;
		v->exit_code = v->status == SM_VM_EXITED ? vm_console_workload_status(v->m.console) : -1;
	}
	l->n = n;
	free(metas);
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

const char *sm_vm_info_id(const sm_vm_info *v) { return v->m.id; }
const char *sm_vm_info_image(const sm_vm_info *v) { return v->m.image; }
const char *sm_vm_info_command(const sm_vm_info *v) { return v->m.command; }
int64_t sm_vm_info_created(const sm_vm_info *v) { return v->m.created; }
int sm_vm_info_pid(const sm_vm_info *v) { return (int)v->m.pid; }
sm_vm_status sm_vm_info_status(const sm_vm_info *v) { return v->status; }
int sm_vm_info_exit_code(const sm_vm_info *v) { return v->exit_code; }
bool sm_vm_info_detached(const sm_vm_info *v) { return v->m.detached; }
const char *sm_vm_info_console(const sm_vm_info *v) { return v->m.console; }

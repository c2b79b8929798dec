/*
 * The jail of a worker the library starts as root (docs/security.md).
 * The library decides, the launcher starts the worker in new namespaces
 * (worker_jail_clone_flags()), and the worker jails itself once its files
 * are open (src/vmm/jail.c). Here: whether to, which ids, which root and
 * what of the runtime directory the jail's uid may reach.
 */
#include "lib/vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "lib/vm_cgroup.h"
#include "oci/oci.h"

/*
 * Opt-in (SUPERMACHINE_JAIL=1) until every vm test has run jailed
 * (docs/security.md, "Limits of this version").
 */
bool vm_jail_wanted(void)
{
	const char *v = getenv("SUPERMACHINE_JAIL");

	return geteuid() == 0 && v && strcmp(v, "1") == 0;
}

/* The VM's own id in the jail range: FNV-1a of its id (docs/security.md). */
static uint32_t jail_default_id(const char *vm_id)
{
	uint32_t h = 2166136261u;

	for (const char *p = vm_id; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return WORKER_JAIL_ID_BASE + h % WORKER_JAIL_ID_COUNT;
}

/* SUPERMACHINE_JAIL_UID=UID[:GID] (GID defaults to UID), else the VM's own id for both. */
static int jail_ids(const char *vm_id, uint32_t *uid, uint32_t *gid, sm_error **err)
{
	const char *v = getenv("SUPERMACHINE_JAIL_UID");
	unsigned long u, g;
	char *end;

	if (!v || !*v) {
		*uid = *gid = jail_default_id(vm_id);
		return 0;
	}
	errno = 0;
	u = strtoul(v, &end, 10);
	g = *end == ':' ? strtoul(end + 1, &end, 10) : u;
	if (errno || *end || u == 0 || g == 0 || u >= UINT32_MAX || g >= UINT32_MAX)
		return sm_error_set(err, SM_E_INVALID, 0,
				    "SUPERMACHINE_JAIL_UID '%s': UID[:GID], numbers from 1 below 4294967295", v), -1;
	*uid = (uint32_t)u;
	*gid = (uint32_t)g;
	return 0;
}

int snapshot_base(char *out, size_t len, sm_error **err)
{
	struct oci_store *st = NULL;

	if (oci_store_open(NULL, &st, err) < 0)
		return -1;
	int n = snprintf(out, len, "%s/snapshots", oci_store_root(st));
	oci_store_close(st);
	if (n < 0 || (size_t)n >= len)
		return sm_error_set(err, SM_E_INVALID, 0, "snapshot directory path too long"), -1;
	if (mkdir(out, 0700) < 0 && errno != EEXIST)
		return sm_error_set(err, SM_E_IO, errno, "create %s", out), -1;
	return 0;
}

/*
 * The jail's uid may search the runtime directory, not list it: guest
 * connects reach RUNTIME_DIR/vsock.sock_PORT through a descriptor of it
 * (virtio_vsock_connect_via). Its files are 0600 and its directories 0700,
 * so the group's x is all the jail gets.
 */
static int jail_runtime_dir(const struct sm_vm *vm, uint32_t gid, sm_error **err)
{
	if (chown(vm->dir, (uid_t)-1, gid) < 0 || chmod(vm->dir, 0710) < 0)
		return sm_error_set(err, SM_E_IO, errno, "jail: let gid %u search %s", (unsigned)gid, vm->dir), -1;
	return 0;
}

int vm_jail_prepare(struct sm_vm *vm, struct worker_launch *l, struct vm_jail *j, sm_error **err)
{
	uint32_t uid = 0, gid = 0;

	j->namespaces = 0;
	j->cgroup_fd = -1;
	if (!vm_jail_wanted())
		return 0;
	/* shared host directories are served with root's rights, as virtiofsd does */
	if (l->nmounts == 0 && jail_ids(vm->id, &uid, &gid, err) < 0)
		return -1;
	snprintf(j->root, sizeof(j->root), "%s/" VM_JAIL_DIR, vm->dir);
	if (mkdir(j->root, 0700) < 0 && errno != EEXIST)
		return sm_error_set(err, SM_E_IO, errno, "jail: create %s", j->root), -1;
	if (gid && jail_runtime_dir(vm, gid, err) < 0)
		return -1;
	struct vm_cgroup_limits lim = { .memory_mib = l->memory_mib, .vcpus = l->vcpus, .nmounts = l->nmounts };
	if (vm_cgroup_start(vm->id, &lim, &j->cgroup_fd, err) < 0)
		return -1;
	/* no paths: a capture's directory comes as a descriptor (snapshot.c) */
	l->jail = (struct worker_jail){ .root = j->root, .uid = uid, .gid = gid };
	j->namespaces = worker_jail_clone_flags(l);
	vm->jailed = true;
	vm->jail_uid = uid;
	vm->jail_gid = gid;
	return 0;
}

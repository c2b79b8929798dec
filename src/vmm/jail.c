/*
 * The worker's jail (jail.h). The order matters: mounts while the worker
 * is still root and sees the host's tree, the pivot, then the rlimits
 * and last the ids, after which nothing here could be undone.
 *
 * Paths are bound at the path they have on the host, so the names the
 * library sends later (a snapshot directory on the control socket) mean
 * the same inside. The tmpfs root lives in the worker's mount namespace
 * only: the mount points made in it vanish with the worker.
 */
#include "vmm/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/fsutil.h"

#define JAIL_MNT_FLAGS (MS_NOSUID | MS_NODEV | MS_NOEXEC)

/* The mount point for b under root: a directory, or an empty file for a file. */
static int bind_target(const char *target, const struct jail_bind *b)
{
	char parent[PATH_MAX];
	int fd;

	if (!b->file)
		return mkdir_p(target, 0755);
	snprintf(parent, sizeof(parent), "%s", target);
	*strrchr(parent, '/') = 0;
	if (mkdir_p(parent, 0755) < 0)
		return -1;
	fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

/* b->path bound at the same path under root; nosuid, nodev, noexec, and read-only if asked. */
static int jail_bind_one(const char *root, const struct jail_bind *b, struct vmm_err *err)
{
	char target[PATH_MAX];
	unsigned long ro = b->read_only ? MS_RDONLY : 0;

	if ((size_t)snprintf(target, sizeof(target), "%s%s", root, b->path) >= sizeof(target))
		return vmm_err_set(err, -ENAMETOOLONG, "jail: bind %s: path too long", b->path);
	if (bind_target(target, b) < 0)
		return vmm_err_set(err, -errno, "jail: mount point for %s: %s", b->path, strerror(errno));
	if (mount(b->path, target, NULL, MS_BIND, NULL) < 0 ||
	    mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | JAIL_MNT_FLAGS | ro, NULL) < 0)
		return vmm_err_set(err, -errno, "jail: bind %s: %s", b->path, strerror(errno));
	return 0;
}

/* The tmpfs on root, its binds and a /proc of the worker's own PID namespace. */
static int jail_mounts(const struct jail_options *o, struct vmm_err *err)
{
	char proc[PATH_MAX];

	/* nothing mounted here may reach the host's tree (shared propagation) */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return vmm_err_set(err, -errno, "jail: make the mounts private: %s", strerror(errno));
	if (mount("tmpfs", o->root, "tmpfs", JAIL_MNT_FLAGS, "mode=0755,size=1m,nr_inodes=256") < 0)
		return vmm_err_set(err, -errno, "jail: tmpfs on %s: %s", o->root, strerror(errno));
	for (unsigned i = 0; i < o->nbinds; i++)
		if (jail_bind_one(o->root, &o->binds[i], err) < 0)
			return -1;
	snprintf(proc, sizeof(proc), "%s/proc", o->root);
	if (mkdir(proc, 0555) < 0 || mount("proc", proc, "proc", JAIL_MNT_FLAGS, NULL) < 0)
		return vmm_err_set(err, -errno, "jail: mount %s: %s", proc, strerror(errno));
	return 0;
}

/* root becomes "/", the old root is detached, and the new one read-only. */
static int jail_pivot(const char *root, struct vmm_err *err)
{
	/* pivot_root(".", "."): the old root stacks under the new one, then goes */
	if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
		return vmm_err_set(err, -errno, "jail: pivot_root into %s: %s", root, strerror(errno));
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		return vmm_err_set(err, -errno, "jail: detach the old root: %s", strerror(errno));
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | JAIL_MNT_FLAGS, NULL) < 0)
		return vmm_err_set(err, -errno, "jail: make the root read-only: %s", strerror(errno));
	return 0;
}

static int jail_limit(int resource, const char *name, rlim_t v, struct vmm_err *err)
{
	struct rlimit r = { v, v };

	if (setrlimit(resource, &r) < 0)
		return vmm_err_set(err, -errno, "jail: %s %llu: %s", name, (unsigned long long)v, strerror(errno));
	return 0;
}

static int jail_limits(const struct jail_options *o, struct vmm_err *err)
{
	if (jail_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", (rlim_t)o->fsize, err) < 0 ||
	    jail_limit(RLIMIT_NPROC, "RLIMIT_NPROC", JAIL_NPROC, err) < 0 ||
	    jail_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, err) < 0)
		return -1;
	return o->keep_nofile ? 0 : jail_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", JAIL_NOFILE, err);
}

/* Groups, gid, uid, in that order: each later one takes the right to set the earlier. */
static int jail_ids(const struct jail_options *o, struct vmm_err *err)
{
	if (setgroups(0, NULL) < 0 || setresgid(o->gid, o->gid, o->gid) < 0 ||
	    setresuid(o->uid, o->uid, o->uid) < 0)
		return vmm_err_set(err, -errno, "jail: become uid %u gid %u: %s", (unsigned)o->uid,
				   (unsigned)o->gid, strerror(errno));
	/*
	 * The uid change made it non-dumpable: its /proc files root's, its
	 * own threads untraceable (a sanitizer build's leak check traces
	 * them). Dumpable again: no other process runs as this uid, none
	 * outside can see it by pid, and seccomp forbids ptrace.
	 */
	if (prctl(PR_SET_DUMPABLE, 1) < 0)
		return vmm_err_set(err, -errno, "jail: PR_SET_DUMPABLE: %s", strerror(errno));
	return 0;
}

int jail_apply(const struct jail_options *o, struct vmm_err *err)
{
	if (jail_mounts(o, err) < 0 || jail_pivot(o->root, err) < 0 || jail_limits(o, err) < 0)
		return -1;
	return o->drop_ids ? jail_ids(o, err) : 0;
}

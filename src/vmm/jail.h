/*
 * The worker's jail (docs/security.md), applied once the VM is set up and
 * before the seccomp filter: every file the worker needs is open and its
 * sockets are bound, so what is left of the host can go. The launcher
 * started the worker in its own mount, PID, IPC, UTS (and, without a NIC,
 * network) namespaces; here the worker makes its mounts private, mounts a
 * tmpfs on the jail root holding a fresh /proc and the bound paths,
 * pivots into it, drops the old root, makes the new one read-only, sets
 * its rlimits and drops to an unprivileged uid and gid.
 */
#ifndef SM_VMM_JAIL_H
#define SM_VMM_JAIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/log.h"

#define JAIL_MAX_BINDS 8
#define JAIL_NOFILE 4096  /* descriptors of a worker without shared directories */
#define JAIL_NPROC 256    /* threads of its uid: vCPUs (at most 32) and the worker's own */

struct jail_bind {
	const char *path;  /* an absolute host path, bound at the same path inside */
	bool read_only;
	bool file;         /* a file (resolv.conf), not a directory */
};

struct jail_options {
	const char *root;  /* an existing directory: the tmpfs is mounted on it */
	struct jail_bind binds[JAIL_MAX_BINDS];
	unsigned nbinds;
	bool drop_ids;     /* setuid/setgid to uid/gid; false keeps uid 0 (shared host directories) */
	uid_t uid;
	gid_t gid;
	uint64_t fsize;    /* RLIMIT_FSIZE: the largest file it writes (snapshot memory) or grows */
	bool keep_nofile;  /* leave RLIMIT_NOFILE (virtio-fs raised it for its node fds) */
};

/* Applies o to the calling process. 0, or -errno with err saying which step failed. */
int jail_apply(const struct jail_options *o, struct vmm_err *err);

#endif

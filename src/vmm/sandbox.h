/*
 * The worker's lock-down once the VM is set up: no_new_privs and a seccomp
 * filter allowing only the system calls a running VM needs. A call outside
 * the list does not run: the worker writes which one it was to stderr and
 * exits with SANDBOX_EXIT_STATUS, so a missing entry is obvious and easy
 * to add (see docs/vmm.md).
 */
#ifndef SM_VMM_SANDBOX_H
#define SM_VMM_SANDBOX_H

#include <stdbool.h>

#include "base/log.h"

#define SANDBOX_EXIT_STATUS 5

enum sandbox_mode {
	SANDBOX_ENFORCE, /* blocked call: message, exit SANDBOX_EXIT_STATUS */
	SANDBOX_LOG,     /* blocked call: allowed, logged by the kernel (audit) */
	SANDBOX_OFF,     /* no filter (no_new_privs still set) */
};

struct sandbox_options {
	enum sandbox_mode mode;
	/* Host sockets opened while running (vsock's guest->host connects, slirp). */
	bool sockets;
	/* The control socket may ask for a snapshot (files in its directory,
	 * KVM state ioctls) or a reset in place (the KVM SET ioctls). */
	bool snapshots;
	/* virtio-fs serves host directories: the *at() calls on their fds. */
	bool mounts;
};

/* The mode SUPERMACHINE_SECCOMP asks for: "log", "off", else enforce. */
enum sandbox_mode sandbox_mode_from_env(void);

/*
 * Applies the filter to every thread of the process (TSYNC). Call after the
 * last thread was created. Returns 0 or -errno with err filled.
 */
int sandbox_apply(const struct sandbox_options *o, struct vmm_err *err);

#endif

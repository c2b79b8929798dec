#include "vmm/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <termios.h>
#include <unistd.h>

/* What every running worker does: vCPU exits, the event loop, disk I/O, malloc, threads ending. */
static const char *const base_syscalls[] = {
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "lseek", "fsync", "fdatasync", "close", "fstat", "newfstatat",
	"fcntl", "unlink",
	"epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl",
	"accept4", "recvfrom", "recvmsg", "sendto", "sendmsg", "shutdown",
	"timerfd_settime", "timerfd_gettime",
	"mmap", "munmap", "mremap", "mprotect", "madvise", "brk",
	"futex", "sched_yield", "nanosleep", "clock_nanosleep", "clock_gettime", "gettimeofday",
	"getrandom", "getpid", "gettid", "tgkill", "rt_sigreturn", "rt_sigprocmask",
	"restart_syscall", "exit", "exit_group",
	/* glibc's start of a vCPU thread the scheduler ran only after the lockdown */
	"set_robust_list", "rseq",
};

/* Host sockets made at run time: vsock connecting to <uds>_P, slirp's NAT. */
static const char *const socket_syscalls[] = {
	"socket", "connect", "bind", "listen", "accept", "setsockopt", "getsockopt",
	"getsockname", "getpeername", "poll", "ppoll", "recvmmsg", "sendmmsg", "socketpair",
};

/*
 * Snapshots on request: the state file through durable_write (a unique
 * temp, fchmod, fsync, rename), the memory file as DIR/memory.tmp (sized,
 * fsync, rename), then the directory opened and fsync'ed so the names
 * outlive a crash (src/base/fsutil.c). openat only with those flags.
 */
static const char *const snapshot_syscalls[] = {
	"ftruncate", "fchmod", "rename", "renameat", "renameat2",
};
static const unsigned snapshot_open_flags[] = {
	O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, /* the memory file's temp */
	O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,    /* durable_write's temp (mkostemp) */
	O_RDONLY | O_DIRECTORY | O_CLOEXEC,       /* fsync_dir after the rename */
};

/*
 * virtio-fs (src/devices/virtio/fs_fuse.c): each FUSE request's host
 * call, always relative to a node's fd. openat2 is allowed with any
 * flags: the device passes RESOLVE_BENEATH itself, and seccomp cannot
 * look inside struct open_how. Nothing here takes a path from the root
 * of the host: the *at() calls get names of one component.
 */
static const char *const mount_syscalls[] = {
	"openat2", "fstatfs", "readlinkat", "getdents64",
	"mkdirat", "mknodat", "symlinkat", "linkat", "unlinkat", "renameat2",
	"fchmod", "fchmodat2", "fchown", "fchownat", "utimensat", "faccessat2",
	"ftruncate", "fallocate",
	"fgetxattr", "fsetxattr", "flistxattr", "fremovexattr",
};

/* The vCPU and VM state a snapshot reads, and a reset in place writes back. */
static const unsigned long snapshot_ioctls[] = {
	KVM_GET_MP_STATE, KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_GET_XCRS, KVM_GET_DEBUGREGS,
	KVM_GET_LAPIC, KVM_GET_TSC_KHZ, KVM_GET_CPUID2, KVM_GET_MSRS, KVM_GET_VCPU_EVENTS,
	KVM_GET_PIT2, KVM_GET_CLOCK, KVM_GET_IRQCHIP, KVM_KVMCLOCK_CTRL,
	KVM_SET_MP_STATE, KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_XSAVE, KVM_SET_XCRS,
	KVM_SET_DEBUGREGS, KVM_SET_LAPIC, KVM_SET_MSRS, KVM_SET_VCPU_EVENTS, KVM_SET_PIT2,
	KVM_SET_CLOCK, KVM_SET_IRQCHIP,
};

/*
 * The sanitizer runtimes (ASan/UBSan/LSan test builds only): reports open
 * /proc files and may start a symbolizer; LeakSanitizer stops the world
 * with a ptrace-ing thread at exit. Never part of a release filter.
 */
static const char *const sanitizer_syscalls[] = {
	"open", "openat", "readlink", "readlinkat", "stat", "lstat", "statx", "access",
	"faccessat", "faccessat2", "getdents", "getdents64", "clone", "clone3", "ptrace", "wait4", "waitid",
	"prctl", "sigaltstack", "rt_sigaction", "sched_getaffinity", "getppid", "pipe2", "dup",
	"dup2", "dup3", "execve", "fork", "vfork", "kill", "uname", "prlimit64", "getrlimit",
	"setrlimit", "mincore", "getcwd", "getuid", "geteuid",
	"sysinfo", "capget", "fstatfs", "statfs",
};

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define SANDBOX_SANITIZER 1
#else
#define SANDBOX_SANITIZER 0
#endif

struct sandbox_ioctl {
	unsigned long cmd;
	bool sockets_only;
};

static const struct sandbox_ioctl allowed_ioctls[] = {
	{ KVM_RUN, false },
	{ KVM_IRQ_LINE, false },
	{ KVM_GET_REGS, false },  /* where a vCPU was when the guest reset */
	{ KVM_GET_SREGS, false },
	{ KVM_TRANSLATE, false }, /* the instruction bytes behind a KVM internal error */
	{ TCGETS, false }, /* isatty() and restoring the terminal */
	{ TCSETS, false },
	{ TCSETSW, false },
	{ TCSETSF, false },
	{ FIONBIO, true },
	{ FIONREAD, true },
};

enum sandbox_mode sandbox_mode_from_env(void)
{
	const char *v = getenv("SUPERMACHINE_SECCOMP");

	if (v && strcmp(v, "off") == 0)
		return SANDBOX_OFF;
	if (v && strcmp(v, "log") == 0)
		return SANDBOX_LOG;
	return SANDBOX_ENFORCE;
}

/* Async-signal-safe decimal. */
static size_t fmt_uint(char *buf, unsigned long v)
{
	char tmp[24];
	size_t n = 0, out = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		buf[out++] = tmp[--n];
	return out;
}

static void sandbox_sigsys(int sig, siginfo_t *info, void *uctx)
{
	char msg[256];
	size_t n = 0;
	static const char a[] = VMM_LOG_PREFIX "sandbox: blocked system call ";
	static const char b[] = "; find its name with `scmp_sys_resolver ";
	static const char c[] = "` and allow it in src/vmm/sandbox.c if the VM needs it\n";

	memcpy(msg + n, a, sizeof(a) - 1);
	n += sizeof(a) - 1;
	n += fmt_uint(msg + n, (unsigned long)info->si_syscall);
	memcpy(msg + n, b, sizeof(b) - 1);
	n += sizeof(b) - 1;
	n += fmt_uint(msg + n, (unsigned long)info->si_syscall);
	memcpy(msg + n, c, sizeof(c) - 1);
	n += sizeof(c) - 1;
	if (write(STDERR_FILENO, msg, n) < 0) {
		/* nothing left to tell */
	}
	_exit(SANDBOX_EXIT_STATUS);
}

static int allow_list(scmp_filter_ctx ctx, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int allow_ioctls(scmp_filter_ctx ctx, bool sockets)
{
	for (size_t i = 0; i < sizeof(allowed_ioctls) / sizeof(allowed_ioctls[0]); i++) {
		if (allowed_ioctls[i].sockets_only && !sockets)
			continue;
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
						  allowed_ioctls[i].cmd));
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int allow_snapshots(scmp_filter_ctx ctx)
{
	int rc = allow_list(ctx, snapshot_syscalls,
			    sizeof(snapshot_syscalls) / sizeof(snapshot_syscalls[0]));

	for (size_t i = 0; rc == 0 && i < sizeof(snapshot_ioctls) / sizeof(snapshot_ioctls[0]); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, snapshot_ioctls[i]));
	for (size_t i = 0; rc == 0 && i < sizeof(snapshot_open_flags) / sizeof(snapshot_open_flags[0]); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, 0xffffffffu, snapshot_open_flags[i]));
	return rc;
}

static int sandbox_build(scmp_filter_ctx ctx, const struct sandbox_options *o)
{
	int rc = allow_list(ctx, base_syscalls, sizeof(base_syscalls) / sizeof(base_syscalls[0]));

	if (rc == 0 && o->sockets)
		rc = allow_list(ctx, socket_syscalls,
				sizeof(socket_syscalls) / sizeof(socket_syscalls[0]));
	if (rc == 0 && SANDBOX_SANITIZER)
		rc = allow_list(ctx, sanitizer_syscalls,
				sizeof(sanitizer_syscalls) / sizeof(sanitizer_syscalls[0]));
	if (rc == 0)
		rc = allow_ioctls(ctx, o->sockets || SANDBOX_SANITIZER);
	if (rc == 0 && o->snapshots)
		rc = allow_snapshots(ctx);
	if (rc == 0 && o->mounts)
		rc = allow_list(ctx, mount_syscalls, sizeof(mount_syscalls) / sizeof(mount_syscalls[0]));
	if (rc == 0)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	return rc;
}

int sandbox_apply(const struct sandbox_options *o, struct vmm_err *err)
{
	struct sigaction sa = { .sa_sigaction = sandbox_sigsys, .sa_flags = SA_SIGINFO };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return vmm_err_set(err, -errno, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (o->mode == SANDBOX_OFF)
		return 0;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return vmm_err_set(err, -errno, "SIGSYS handler: %s", strerror(errno));

	scmp_filter_ctx ctx = seccomp_init(o->mode == SANDBOX_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
	if (!ctx)
		return vmm_err_set(err, -ENOMEM, "seccomp_init failed");
	int rc = sandbox_build(ctx, o);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0)
		return vmm_err_set(err, rc, "seccomp filter: %s", strerror(-rc));
	return 0;
}

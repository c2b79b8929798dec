/*
 * supermachine-worker: one VM per process. Parses the command line, builds
 * the VM and its devices, locks itself down, runs the guest and turns the
 * way it ended into the exit status (docs/vmm.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/balloon.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/fs.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "vmm/arch.h"
#include "vmm/console.h"
#include "vmm/control.h"
#include "vmm/jail.h"
#include "vmm/sandbox.h"
#include "vmm/vm.h"
#include "vmm/vm_snapshot.h"
#include "proto/worker.h"

#define VSOCK_GUEST_CID 3
/* rng, the disks, net, vsock, balloon, the mounts */
#define WORKER_MAX_DEVICES (WORKER_MAX_DISKS + 4 + WORKER_MAX_MOUNTS)

struct worker {
	struct worker_launch opt;
	struct vm *vm;
	struct console console;
	bool console_open;
	struct control *control;
	/* in the order added (device_kinds); each kind's entry beside it */
	struct virtio_dev *dev[WORKER_MAX_DEVICES];
	const struct device_kind *dev_kind[WORKER_MAX_DEVICES];
	unsigned ndevs;
	/* each --fs directory, opened first (O_PATH); -1 once its device has it */
	int mount_fd[WORKER_MAX_MOUNTS];
	struct vm_snapshot snap;
	int signal_fd;
	int statm_fd; /* /proc/self/statm, for WORKER_CTL_USAGE after the lockdown */
};

static const int stop_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };

static int usage_error(const char *msg)
{
	fprintf(stderr, VMM_LOG_PREFIX "%s\n", msg);
	return WORKER_EXIT_USAGE;
}

/*
 * Termination signals are read from a signalfd on the event loop: the
 * handler context then is ordinary code that may stop the VM cleanly.
 */
static int signals_block(struct worker *w)
{
	sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaddset(&set, stop_signals[i]);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -EINVAL;
	signal(SIGPIPE, SIG_IGN);
	w->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return w->signal_fd < 0 ? -errno : 0;
}

static void signal_readable(void *opaque, uint32_t events)
{
	struct worker *w = opaque;
	struct signalfd_siginfo si;

	if (read(w->signal_fd, &si, sizeof(si)) == sizeof(si))
		vm_request_exit_signal(w->vm, (int)si.ssi_signo);
}

/* ---- devices ---------------------------------------------------------------- */

static unsigned count_one(const struct worker *w) { return 1; }
static unsigned count_disks(const struct worker *w) { return w->opt.ndisks; }
static unsigned count_net(const struct worker *w) { return w->opt.net; }
static unsigned count_vsock(const struct worker *w) { return w->opt.vsock != NULL; }
static unsigned count_balloon(const struct worker *w) { return w->opt.balloon; }
static unsigned count_mounts(const struct worker *w) { return w->opt.nmounts; }

static struct virtio_dev *make_rng(struct worker *w, unsigned i)
{
	return virtio_rng_create(&w->vm->mem);
}

static struct virtio_dev *make_disk(struct worker *w, unsigned i)
{
	const struct worker_disk *spec = &w->opt.disks[i];
	struct virtio_blk_options bo = {
		.path = spec->path,
		.read_only = spec->read_only,
		.id = spec->id,
	};

	return virtio_blk_create(&w->vm->mem, &bo);
}

static struct virtio_dev *make_net(struct worker *w, unsigned i)
{
	return virtio_net_create(&w->vm->mem, w->vm->loop, NULL);
}

static struct virtio_dev *make_vsock(struct worker *w, unsigned i)
{
	return virtio_vsock_create(&w->vm->mem, w->vm->loop, VSOCK_GUEST_CID, w->opt.vsock, NULL);
}

static struct virtio_dev *make_balloon(struct worker *w, unsigned i)
{
	return virtio_balloon_create(&w->vm->mem);
}

/*
 * The shared directories, opened before anything else (no KVM needed to
 * be told one is missing or a file) and long before the sandbox.
 */
static int mounts_open(struct worker *w)
{
	char msg[600];

	for (unsigned i = 0; i < w->opt.nmounts; i++) {
		const struct worker_mount *m = &w->opt.mounts[i];
		int fd = virtio_fs_open_root(m->dir);
		if (fd < 0) {
			snprintf(msg, sizeof(msg), "--fs %s: %s: %s", m->tag, m->dir,
				 fd == -ENOTDIR ? "not a directory" : strerror(-fd));
			return usage_error(msg);
		}
		w->mount_fd[i] = fd;
	}
	return -1;
}

/* The contract's policy and tag are the device's, by value */
_Static_assert((int)WORKER_SYMLINKS_DENY == (int)VIRTIO_FS_SYMLINKS_DENY &&
		       (int)WORKER_SYMLINKS_FOLLOW == (int)VIRTIO_FS_SYMLINKS_FOLLOW,
	       "enum worker_symlinks is enum virtio_fs_symlinks");
_Static_assert(WORKER_MOUNT_TAG_MAX == VIRTIO_FS_TAG_BYTES, "a --fs tag fits the device's config space");

static struct virtio_dev *make_mount(struct worker *w, unsigned i)
{
	const struct worker_mount *m = &w->opt.mounts[i];
	struct virtio_fs_options fo = {
		.tag = m->tag,
		.read_only = m->read_only,
		.symlinks = (enum virtio_fs_symlinks)m->symlinks,
	};
	int fd = w->mount_fd[i];

	w->mount_fd[i] = -1; /* the device's now, whatever happens */
	return virtio_fs_create(&w->vm->mem, fd, &fo);
}

static void what_mount(const struct worker *w, unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "--fs %s: directory %s", w->opt.mounts[i].tag, w->opt.mounts[i].dir);
}

static void what_disk(const struct worker *w, unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "disk %s", w->opt.disks[i].path);
}

static void what_vsock(const struct worker *w, unsigned i, char *buf, size_t len)
{
	/* Cut at 300 bytes as ever; a unix socket path is far shorter anyway. */
	snprintf(buf, len < 300 ? len : 300, "--vsock %s", w->opt.vsock);
}

/*
 * Every kind of device the worker adds, in the order it adds them: that
 * order fixes each device's MMIO window and GSI, which snapshots record.
 */
static const struct device_kind {
	const char *what;   /* names it in errors, unless describe does */
	void (*describe)(const struct worker *w, unsigned i, char *buf, size_t len);
	unsigned (*count)(const struct worker *w); /* how many the options ask for */
	struct virtio_dev *(*create)(struct worker *w, unsigned i); /* NULL, errno set */
	const char *locked; /* the error for EWOULDBLOCK from create, or NULL */
	const char *command; /* its control command (docs/devices.md), or NULL */
	control_fn control;
} device_kinds[] = {
	{ "virtio-rng", NULL, count_one, make_rng, NULL, NULL, NULL },
	{ NULL, what_disk, count_disks, make_disk, "in use by another VM (locked)", NULL, NULL },
	{ "--net", NULL, count_net, make_net, NULL, "net", virtio_net_control },
	{ NULL, what_vsock, count_vsock, make_vsock, NULL, "vsock", virtio_vsock_control },
	{ "--balloon", NULL, count_balloon, make_balloon, NULL, "balloon", virtio_balloon_control },
	/* last: snapshots taken before mounts existed keep their device slots */
	{ NULL, what_mount, count_mounts, make_mount, NULL, NULL, NULL },
};

/* The i-th device of kind k, created and placed; kept for teardown even if placing fails. */
static int add_device(struct worker *w, const struct device_kind *k, unsigned i, char *msg,
		      size_t len)
{
	char what[sizeof(((struct vmm_err *)0)->msg)];
	struct virtio_dev *d;
	int rc;

	if (k->describe)
		k->describe(w, i, what, sizeof(what));
	else
		snprintf(what, sizeof(what), "%s", k->what);
	d = k->create(w, i);
	if (!d) {
		/* a message cut at len is still the message: the worker exits with it */
		if (snprintf(msg, len, "%s: %s", what, k->locked && errno == EWOULDBLOCK ? k->locked : strerror(errno)) < 0)
			msg[0] = 0;
		return -1;
	}
	w->dev[w->ndevs] = d;
	w->dev_kind[w->ndevs++] = k;
	rc = vmm_attach_virtio(w->vm, d);
	if (rc == -ENOSPC) {
		if (snprintf(msg, len, "%s: too many devices: a VM has room for %d virtio devices", what,
			     VM_MAX_VIRTIO) < 0)
			msg[0] = 0;
		return -1;
	}
	if (rc < 0) {
		if (snprintf(msg, len, "%s: %s", what, strerror(-rc)) < 0)
			msg[0] = 0;
		return -1;
	}
	return 0;
}

static int add_devices(struct worker *w, char *msg, size_t len)
{
	for (size_t k = 0; k < sizeof(device_kinds) / sizeof(device_kinds[0]); k++)
		for (unsigned i = 0; i < device_kinds[k].count(w); i++)
			if (add_device(w, &device_kinds[k], i, msg, len) < 0)
				return -1;
	return 0;
}

static int build_cmdline(struct worker *w, char *msg, size_t len)
{
	/* Devices appended their fragments already; the fixed part goes first. */
	char devices[VM_CMDLINE_MAX];

	memcpy(devices, w->vm->cmdline, w->vm->cmdline_len + 1);
	w->vm->cmdline_len = 0;
	w->vm->cmdline[0] = 0;
	if (vm_cmdline_append(w->vm, "console=ttyS0 reboot=t panic=-1") < 0 ||
	    vm_cmdline_append(w->vm, w->opt.cmdline ? w->opt.cmdline : WORKER_DEFAULT_CMDLINE) < 0 ||
	    (devices[0] && vm_cmdline_append(w->vm, devices) < 0)) {
		snprintf(msg, len, "--cmdline: the kernel command line would exceed %d bytes",
			 VM_CMDLINE_MAX - 1);
		return -1;
	}
	return 0;
}

/* Which device counter adds up to which usage field (WORKER_CTL_USAGE). */
static const struct {
	const char *dev, *key, *usage;
} usage_counters[] = {
	{ "blk", "bytes_read", WORKER_USAGE_BLK_READ },
	{ "blk", "bytes_written", WORKER_USAGE_BLK_WRITE },
	{ "net", "rx_bytes", WORKER_USAGE_NET_RX },
	{ "net", "tx_bytes", WORKER_USAGE_NET_TX },
	{ "vsock", "bytes_to_guest", WORKER_USAGE_VSOCK_RX },
	{ "vsock", "bytes_from_guest", WORKER_USAGE_VSOCK_TX },
};
#define USAGE_COUNTERS (sizeof(usage_counters) / sizeof(usage_counters[0]))

static void usage_add_device(struct virtio_dev *d, uint64_t *sum)
{
	struct virtio_dev_stats st = { 0 };

	if (!d->ops->stats)
		return;
	d->ops->stats(d, &st);
	for (size_t c = 0; c < USAGE_COUNTERS; c++)
		for (unsigned f = 0; f < VIRTIO_DEV_STATS_MAX && st.f[f].key; f++)
			if (!strcmp(d->ops->name, usage_counters[c].dev) && !strcmp(st.f[f].key, usage_counters[c].key))
				sum[c] += st.f[f].val;
}

/* The resident set from /proc/self/statm, opened before the lockdown and read with pread. */
static uint64_t usage_rss(const struct worker *w)
{
	char buf[128];
	unsigned long long size, resident;
	ssize_t n = w->statm_fd >= 0 ? pread(w->statm_fd, buf, sizeof(buf) - 1, 0) : -1;

	if (n <= 0)
		return 0;
	buf[n] = 0;
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return 0;
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

_Static_assert(GUEST_MEM_SHMEM_THP == 1 && GUEST_MEM_MEMFD == 4 && GUEST_MEM_SNAPSHOT == 5,
	       "the ram_backing numbers proto/worker.h documents");

static void cmd_usage(void *opaque, const char *args, char *reply, size_t len)
{
	struct worker *w = opaque;
	uint64_t sum[USAGE_COUNTERS] = { 0 };
	struct timespec cpu = { 0 };
	size_t n;

	for (unsigned i = 0; i < w->ndevs; i++)
		usage_add_device(w->dev[i], sum);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	n = (size_t)snprintf(reply, len, "ok " WORKER_USAGE_CPU_NS "=%llu " WORKER_USAGE_RSS "=%llu "
				 WORKER_USAGE_MEMORY "=%llu " WORKER_USAGE_RAM_BACKING "=%d",
			     (unsigned long long)cpu.tv_sec * 1000000000ull + (unsigned long long)cpu.tv_nsec,
			     (unsigned long long)usage_rss(w), (unsigned long long)w->vm->mem.ram_size,
			     (int)w->vm->mem.backing);
	for (size_t c = 0; c < USAGE_COUNTERS && n < len; c++)
		n += (size_t)snprintf(reply + n, len - n, " %s=%llu", usage_counters[c].usage,
				      (unsigned long long)sum[c]);
}

static void cmd_snapshot_fd(void *opaque, const char *args, char *reply, size_t len)
{
	struct worker *w = opaque;

	(void)args;
	vm_snapshot_control_save_fd(&w->snap, control_take_fd(w->control), reply, len);
}

static int control_setup(struct worker *w, struct vmm_err *err)
{
	if (!w->opt.control)
		return 0;
	w->control = control_open(w->vm, w->opt.control, err);
	if (!w->control)
		return -1;
	/* Device commands (docs/devices.md): net, vsock, balloon. */
	for (unsigned i = 0; i < w->ndevs; i++)
		if (w->dev_kind[i]->command)
			control_register(w->control, w->dev_kind[i]->command, w->dev_kind[i]->control,
					 w->dev[i]);
	/* Snapshots (docs/vmm.md). */
	control_register(w->control, "snapshot", vm_snapshot_control_save, &w->snap);
	control_register(w->control, WORKER_CTL_SNAPSHOT_FD, cmd_snapshot_fd, w);
	control_register(w->control, "reset", vm_snapshot_control_reset, &w->snap);
	w->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	control_register(w->control, WORKER_CTL_USAGE, cmd_usage, w);
	return 0;
}

/* Console, devices and control socket: the same for a boot and a restore. */
static int machine_setup(struct worker *w, struct vmm_err *err)
{
	char msg[sizeof(err->msg)];

	if (console_open(&w->console, w->vm, w->opt.console, err) < 0)
		return usage_error(err->msg);
	w->console_open = true;
	w->snap.vm = w->vm;
	w->snap.uart = &w->console.uart;
	if (add_devices(w, msg, sizeof(msg)) < 0)
		return usage_error(msg);
	if (!w->opt.restore && build_cmdline(w, msg, sizeof(msg)) < 0)
		return usage_error(msg);
	if (control_setup(w, err) < 0)
		return usage_error(err->msg);
	return -1;
}

/* Boot: a fresh VM, the kernel loaded. Returns an exit status, or -1 to go on. */
static int boot_setup(struct worker *w, const struct timespec *t0, struct vmm_err *err)
{
	struct vm_config cfg = {
		.mem_mib = w->opt.memory_mib,
		.nvcpus = w->opt.vcpus,
		.mem_fd = -1,
		.t_process = *t0,
	};

	if (arch_kernel_check(w->opt.kernel, w->opt.initrd, w->opt.memory_mib << 20, err) < 0)
		return usage_error(err->msg);
	if (signals_block(w) < 0)
		return usage_error("cannot set up signal handling");
	if (vm_create(&w->vm, &cfg, err) < 0) {
		fprintf(stderr, VMM_LOG_PREFIX "%s\n", err->msg);
		return WORKER_EXIT_ERROR;
	}
	int status = machine_setup(w, err);
	if (status >= 0)
		return status;
	if (vm_boot_load(w->vm, w->opt.kernel, w->opt.initrd, err) < 0)
		return usage_error(err->msg);
	return -1;
}

/*
 * Restore: RAM mapped from the snapshot's memory file, the same devices
 * rebuilt from the command line, then every piece of state loaded. Any
 * problem with the snapshot is a usage error (2) before a guest
 * instruction runs.
 */
static uint64_t cpu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int restore_setup(struct worker *w, const struct timespec *t0, struct vmm_err *err)
{
	struct vm_snap_machine m;
	int mem_fd;
	uint64_t c0 = cpu_now_ns(), c1, c2;

	snprintf(w->snap.dir, sizeof(w->snap.dir), "%s", w->opt.restore);
	if (vm_snapshot_open(w->opt.restore, &w->snap.st, &m, &mem_fd, err) < 0)
		return usage_error(err->msg);
	struct vm_config cfg = {
		.mem_mib = m.ram_bytes >> 20,
		.nvcpus = m.nvcpus,
		.mem_fd = mem_fd,
		.mem_offset = WORKER_SNAP_MEMORY_HEADER_BYTES,
		.t_process = *t0,
	};
	if (signals_block(w) < 0) {
		close(mem_fd);
		return usage_error("cannot set up signal handling");
	}
	c1 = cpu_now_ns();
	int rc = vm_create(&w->vm, &cfg, err);
	if (rc < 0) {
		/* -EINVAL: the snapshot asks for what this host's KVM cannot give. */
		fprintf(stderr, VMM_LOG_PREFIX "%s/" WORKER_SNAP_STATE_FILE ": %s\n", w->opt.restore, err->msg);
		return rc == -EINVAL ? WORKER_EXIT_USAGE : WORKER_EXIT_ERROR;
	}
	int status = machine_setup(w, err);
	if (status >= 0)
		return status;
	c2 = cpu_now_ns();
	if (vm_snapshot_load(&w->snap, &m, true, err) < 0)
		return usage_error(err->msg);
	/* Where a restore's host CPU goes (bench/snapshot_vmm reads this line). */
	vmm_log("restore: cpu ms: before=%.3f open=%.3f vm+devices=%.3f load=%.3f",
		(double)c0 / 1e6, (double)(c1 - c0) / 1e6, (double)(c2 - c1) / 1e6,
		(double)(cpu_now_ns() - c2) / 1e6);
	return -1;
}

/*
 * The jail (docs/security.md), once every file is open and every socket
 * bound: the snapshot directories it may still write into, the resolver
 * configuration slirp reads, and a file size limit that lets a snapshot's
 * memory file and every disk be written whole.
 */
_Static_assert(WORKER_JAIL_MAX_PATHS + 1 <= JAIL_MAX_BINDS, "the jail paths and resolv.conf fit the binds");

/* Guest connects to host listeners through a descriptor of the vsock socket's directory. */
static int jail_vsock(struct worker *w, struct vmm_err *err)
{
	for (unsigned i = 0; i < w->ndevs; i++) {
		if (w->dev_kind[i]->control != virtio_vsock_control)
			continue;
		int rc = virtio_vsock_connect_via(w->dev[i]);
		if (rc < 0)
			return vmm_err_set(err, rc, "jail: open the directory of %s: %s", w->opt.vsock, strerror(-rc));
	}
	return 0;
}

static int worker_jail(struct worker *w, struct vmm_err *err)
{
	const struct worker_jail *j = &w->opt.jail;
	struct jail_options o = {
		.root = j->root,
		.drop_ids = j->uid || j->gid,
		.uid = j->uid,
		.gid = j->gid,
		.fsize = w->vm->mem.ram_size + WORKER_SNAP_MEMORY_HEADER_BYTES,
		.keep_nofile = w->opt.nmounts > 0,
	};
	struct stat st;

	for (unsigned i = 0; i < j->npaths; i++)
		o.binds[o.nbinds++] = (struct jail_bind){ .path = j->paths[i] };
	if (w->opt.net && stat("/etc/resolv.conf", &st) == 0)
		o.binds[o.nbinds++] = (struct jail_bind){ "/etc/resolv.conf", true, true };
	for (unsigned i = 0; i < w->opt.ndisks; i++)
		if (stat(w->opt.disks[i].path, &st) == 0 && (uint64_t)st.st_size > o.fsize)
			o.fsize = (uint64_t)st.st_size;
	return jail_vsock(w, err) < 0 ? -1 : jail_apply(&o, err);
}

/* Everything up to the first KVM_RUN. Returns an exit status, or -1 to go on. */
static int worker_setup(struct worker *w, const struct timespec *t0)
{
	struct vmm_err err = { { 0 } };
	int status = mounts_open(w);

	if (status >= 0)
		return status;
	status = w->opt.restore ? restore_setup(w, t0, &err) : boot_setup(w, t0, &err);

	if (status >= 0)
		return status;
	if (evloop_add(w->vm->loop, w->signal_fd, EPOLLIN, signal_readable, w) < 0 ||
	    console_start(&w->console) < 0) {
		fprintf(stderr, VMM_LOG_PREFIX "event loop setup failed\n");
		return WORKER_EXIT_ERROR;
	}
	if (vm_start(w->vm) < 0)
		return WORKER_EXIT_ERROR;
	if (w->opt.jail.root) {
		uint64_t c0 = cpu_now_ns();
		if (worker_jail(w, &err) < 0) {
			fprintf(stderr, VMM_LOG_PREFIX "%s\n", err.msg);
			vm_request_exit(w->vm, VM_EXIT_ERROR, "jail setup failed");
			return WORKER_EXIT_ERROR;
		}
		/* what the jail adds to a start (bench/restore adds it to restore_host_cpu) */
		vmm_log("jail: cpu ms=%.3f", (double)(cpu_now_ns() - c0) / 1e6);
	}

	struct sandbox_options so = {
		.mode = sandbox_mode_from_env(),
		.sockets = w->opt.net || w->opt.vsock,
		.snapshots = w->opt.control != NULL,
		.mounts = w->opt.nmounts > 0,
	};
	if (sandbox_apply(&so, &err) < 0) {
		fprintf(stderr, VMM_LOG_PREFIX "%s\n", err.msg);
		vm_request_exit(w->vm, VM_EXIT_ERROR, "sandbox setup failed");
		return WORKER_EXIT_ERROR;
	}
	return -1;
}

static int exit_status(const struct vm_exit_info *e)
{
	switch (e->reason) {
	case VM_EXIT_REBOOT: return WORKER_EXIT_REBOOT;
	case VM_EXIT_PANIC: return WORKER_EXIT_PANIC;
	case VM_EXIT_STOP: return WORKER_EXIT_STOP;
	case VM_EXIT_SIGNAL: return WORKER_EXIT_SIGNAL_BASE + e->signo;
	default: return WORKER_EXIT_ERROR;
	}
}

static void worker_teardown(struct worker *w)
{
	/* After a setup failure past vm_start the vCPU threads wait at the gate. */
	vm_join(w->vm);
	control_close(w->control);
	if (w->console_open)
		console_close(&w->console);
	for (unsigned i = 0; i < w->ndevs; i++)
		virtio_dev_free(w->dev[i]);
	for (unsigned i = 0; i < WORKER_MAX_MOUNTS; i++)
		if (w->mount_fd[i] >= 0)
			close(w->mount_fd[i]);
	vm_destroy(w->vm);
	snap_reader_free(w->snap.st);
	if (w->signal_fd >= 0)
		close(w->signal_fd);
	if (w->statm_fd >= 0)
		close(w->statm_fd);
	worker_launch_free(&w->opt);
}

/* ---- a spare (proto/worker.h): linked, waiting for its command line ---- */

struct spare_msg {
	char buf[WORKER_SPARE_MSG_MAX];
	char *argv[WORKER_MAX_ARGS + 2];
	int argc;
};

/* The one message on fd and the log descriptor with it: 0, or -1 with msg saying why. */
static int spare_receive(int fd, struct spare_msg *m, int *log_fd, char *msg, size_t len)
{
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } c;
	struct iovec iov = { m->buf, sizeof(m->buf) };
	struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf) };
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct cmsghdr *cm;
	ssize_t n;

	*log_fd = -1;
	if (poll(&p, 1, WORKER_SPARE_WAIT_S * 1000) == 0)
		return snprintf(msg, len, "spare: no command line in %d s", WORKER_SPARE_WAIT_S), -1;
	n = recvmsg(fd, &h, MSG_CMSG_CLOEXEC);
	cm = n > 0 ? CMSG_FIRSTHDR(&h) : NULL;
	if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
	    cm->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(log_fd, CMSG_DATA(cm), sizeof(int));
	if (n <= 0)
		return snprintf(msg, len, "spare: %s", n == 0 ? "the library closed the socket" : strerror(errno)), -1;
	if (h.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		return snprintf(msg, len, "spare: the handoff is cut (over %d bytes, or more than one descriptor)",
				WORKER_SPARE_MSG_MAX), -1;
	if (*log_fd < 0)
		return snprintf(msg, len, "spare: the handoff carries no log descriptor"), -1;
	m->argc = worker_handoff_decode(m->buf, (size_t)n, m->argv, sizeof(m->argv) / sizeof(m->argv[0]));
	if (m->argc < 0)
		return snprintf(msg, len, "spare: malformed handoff: %s",
				m->argc == -E2BIG ? "too many arguments" : "no magic, no arguments or not NUL-terminated"),
		       -1;
	return 0;
}

/* The handoff's command line as the worker's: what a spare may not be asked for is refused. */
static int spare_parse(struct worker *w, struct spare_msg *m, char *msg, size_t len)
{
	if (worker_launch_parse(m->argc, m->argv, &w->opt, msg, len) < 0)
		return -1;
	if (w->opt.help || w->opt.jail.root)
		return snprintf(msg, len, "spare: a handoff may not ask for %s",
				w->opt.help ? "--help" : "a jail (a spare runs in the host's namespaces)"), -1;
	return 0;
}

static void spare_reply(int fd, const char *line)
{
	if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0)
		fprintf(stderr, VMM_LOG_PREFIX "spare: reply: %s\n", strerror(errno));
}

/*
 * Waits on the socket fd for the command line and the log; then the log
 * is stdout and stderr. 0, or an exit status once the refusal is said
 * (on the log when one came, else on the spare's own stderr, and back on
 * the socket).
 */
static int spare_wait(struct worker *w, int fd, struct spare_msg *m)
{
	char msg[WORKER_CTL_LINE_MAX - 16], line[WORKER_CTL_LINE_MAX]; /* "error " and msg fit a line */
	int log_fd, rc = spare_receive(fd, m, &log_fd, msg, sizeof(msg));

	if (log_fd >= 0 && (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0))
		rc = -1, snprintf(msg, sizeof(msg), "spare: the log descriptor: %s", strerror(errno));
	if (log_fd >= 0)
		close(log_fd);
	if (rc == 0)
		rc = spare_parse(w, m, msg, sizeof(msg));
	snprintf(line, sizeof(line), rc == 0 ? "ok" : "error %s", msg);
	spare_reply(fd, line);
	close(fd);
	return rc == 0 ? 0 : usage_error(msg);
}

/* `--spare FD`: the descriptor, or -1 when argv asks for something else. */
static int spare_fd(int argc, char **argv)
{
	char *end;
	long fd;

	if (argc != 3 || strcmp(argv[1], WORKER_SPARE_OPTION))
		return -1;
	fd = strtol(argv[2], &end, 10);
	return *argv[2] && !*end && fd > STDERR_FILENO && fd < 1024 ? (int)fd : -1;
}

/* The command line: argv's, or a spare's handoff. Returns an exit status, or -1 to go on. */
static int worker_options(struct worker *w, int argc, char **argv, struct spare_msg **spare)
{
	char msg[512];
	int fd = spare_fd(argc, argv);

	/* Whatever the parent leaked is not ours to keep once the guest runs. */
	if (fd > STDERR_FILENO + 1)
		close_range(STDERR_FILENO + 1, (unsigned)fd - 1, 0);
	close_range(fd < 0 ? (unsigned)STDERR_FILENO + 1 : (unsigned)fd + 1, ~0U, 0);
	if (fd >= 0) {
		*spare = calloc(1, sizeof(**spare));
		if (!*spare)
			return close(fd), usage_error("spare: out of memory");
		int status = spare_wait(w, fd, *spare);
		return status ? status : -1;
	}
	if (argc >= 2 && !strcmp(argv[1], WORKER_SPARE_OPTION))
		return usage_error(WORKER_SPARE_OPTION ": wants one descriptor above 2 and nothing else");
	if (worker_launch_parse(argc, argv, &w->opt, msg, sizeof(msg)) < 0)
		return usage_error(msg);
	if (w->opt.help) {
		fputs(worker_usage, stdout);
		return 0;
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct worker w = { .signal_fd = -1, .statm_fd = -1 };
	struct spare_msg *spare = NULL;
	struct timespec t0;
	char msg[512];
	int status;

	for (unsigned i = 0; i < WORKER_MAX_MOUNTS; i++)
		w.mount_fd[i] = -1;
	status = worker_options(&w, argc, argv, &spare);
	/* a spare's start is its handoff: the restore's clock starts there */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (status >= 0) {
		worker_launch_free(&w.opt);
		free(spare);
		return status;
	}
	status = worker_setup(&w, &t0);
	if (status < 0) {
		struct vm_exit_info e = vm_run(w.vm);
		console_flush(&w.console);
		status = exit_status(&e);
		struct vm_stats st;
		vm_stats_read(w.vm, &st);
		vm_stats_format(&st, msg, sizeof(msg));
		vmm_log("stats: %s", msg);
		vmm_log("vm ended: %s (%s); exit status %d", vm_exit_reason_name(e.reason), e.detail,
			status);
	}
	worker_teardown(&w);
	free(spare); /* w.opt pointed into it: freed by worker_teardown first */
	return status;
}

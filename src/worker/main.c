/*
 * supermachine-worker: one VM per process. Parses the command line, builds
 * the VM and its devices, locks itself down, runs the guest and turns the
 * way it ended into the exit status (docs/vmm.md).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/balloon.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "vmm/arch.h"
#include "vmm/console.h"
#include "vmm/control.h"
#include "vmm/sandbox.h"
#include "vmm/vm.h"
#include "vmm/vm_snapshot.h"
#include "worker/options.h"

#define VSOCK_GUEST_CID 3

struct worker {
	struct worker_options opt;
	struct vm *vm;
	struct console console;
	bool console_open;
	struct control *control;
	struct virtio_dev *rng;
	struct virtio_dev *disks[WORKER_MAX_DISKS];
	unsigned ndisks;
	struct virtio_dev *net, *vsock, *balloon;
	struct vm_snapshot snap;
	int signal_fd;
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

static int add_disks(struct worker *w, char *msg, size_t len)
{
	for (unsigned i = 0; i < w->opt.ndisks; i++) {
		const struct worker_disk *spec = &w->opt.disks[i];
		struct virtio_blk_options bo = {
			.path = spec->path,
			.read_only = spec->read_only,
			.id = spec->id,
		};
		struct virtio_dev *d = virtio_blk_create(&w->vm->mem, &bo);
		if (!d) {
			snprintf(msg, len, "disk %s: %s", spec->path,
				 errno == EWOULDBLOCK ? "in use by another VM (locked)" : strerror(errno));
			return -1;
		}
		w->disks[w->ndisks++] = d;
		int rc = vmm_attach_virtio(w->vm, d);
		if (rc < 0) {
			snprintf(msg, len, "disk %s: %s", spec->path, strerror(-rc));
			return -1;
		}
	}
	return 0;
}

static int attach_or_fail(struct worker *w, struct virtio_dev *d, const char *what, char *msg,
			  size_t len)
{
	if (!d) {
		snprintf(msg, len, "%s: %s", what, strerror(errno));
		return -1;
	}
	int rc = vmm_attach_virtio(w->vm, d);
	if (rc < 0) {
		snprintf(msg, len, "%s: %s", what, strerror(-rc));
		return -1;
	}
	return 0;
}

static int add_devices(struct worker *w, char *msg, size_t len)
{
	w->rng = virtio_rng_create(&w->vm->mem);
	if (attach_or_fail(w, w->rng, "virtio-rng", msg, len) < 0)
		return -1;
	if (add_disks(w, msg, len) < 0)
		return -1;
	if (w->opt.net) {
		w->net = virtio_net_create(&w->vm->mem, w->vm->loop, NULL);
		if (attach_or_fail(w, w->net, "--net", msg, len) < 0)
			return -1;
	}
	if (w->opt.vsock) {
		w->vsock = virtio_vsock_create(&w->vm->mem, w->vm->loop, VSOCK_GUEST_CID, w->opt.vsock,
					       NULL);
		char what[300];
		snprintf(what, sizeof(what), "--vsock %s", w->opt.vsock);
		if (attach_or_fail(w, w->vsock, what, msg, len) < 0)
			return -1;
	}
	if (w->opt.balloon) {
		w->balloon = virtio_balloon_create(&w->vm->mem);
		if (attach_or_fail(w, w->balloon, "--balloon", msg, len) < 0)
			return -1;
	}
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

static int control_setup(struct worker *w, struct vmm_err *err)
{
	if (!w->opt.control)
		return 0;
	w->control = control_open(w->vm, w->opt.control, err);
	if (!w->control)
		return -1;
	/* Device commands (docs/devices.md): net, vsock, balloon. */
	if (w->net)
		control_register(w->control, "net", virtio_net_control, w->net);
	if (w->vsock)
		control_register(w->control, "vsock", virtio_vsock_control, w->vsock);
	if (w->balloon)
		control_register(w->control, "balloon", virtio_balloon_control, w->balloon);
	/* Snapshots (docs/vmm.md). */
	control_register(w->control, "snapshot", vm_snapshot_control_save, &w->snap);
	control_register(w->control, "reset", vm_snapshot_control_reset, &w->snap);
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
		.mem_offset = SNAP_MEMORY_HEADER_BYTES,
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
		fprintf(stderr, VMM_LOG_PREFIX "%s/" SNAP_STATE_FILE ": %s\n", w->opt.restore, err->msg);
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

/* Everything up to the first KVM_RUN. Returns an exit status, or -1 to go on. */
static int worker_setup(struct worker *w, const struct timespec *t0)
{
	struct vmm_err err = { { 0 } };
	int status = w->opt.restore ? restore_setup(w, t0, &err) : boot_setup(w, t0, &err);

	if (status >= 0)
		return status;
	if (evloop_add(w->vm->loop, w->signal_fd, EPOLLIN, signal_readable, w) < 0 ||
	    console_start(&w->console) < 0) {
		fprintf(stderr, VMM_LOG_PREFIX "event loop setup failed\n");
		return WORKER_EXIT_ERROR;
	}
	if (vm_start(w->vm) < 0)
		return WORKER_EXIT_ERROR;

	struct sandbox_options so = {
		.mode = sandbox_mode_from_env(),
		.sockets = w->opt.net || w->opt.vsock,
		.snapshots = w->opt.control != NULL,
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
	virtio_dev_free(w->rng);
	for (unsigned i = 0; i < w->ndisks; i++)
		virtio_dev_free(w->disks[i]);
	virtio_dev_free(w->net);
	virtio_dev_free(w->vsock);
	virtio_dev_free(w->balloon);
	vm_destroy(w->vm);
	snap_reader_free(w->snap.st);
	if (w->signal_fd >= 0)
		close(w->signal_fd);
	worker_options_free(&w->opt);
}

int main(int argc, char **argv)
{
	struct worker w = { .signal_fd = -1 };
	struct timespec t0;
	char msg[512];
	int status;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Whatever the parent leaked is not ours to keep once the guest runs. */
	close_range(3, ~0U, 0);
	if (worker_options_parse(argc, argv, &w.opt, msg, sizeof(msg)) < 0) {
		worker_options_free(&w.opt);
		return usage_error(msg);
	}
	if (w.opt.help) {
		fputs(worker_usage, stdout);
		worker_options_free(&w.opt);
		return 0;
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
	return status;
}

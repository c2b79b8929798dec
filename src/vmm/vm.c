#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/kvm_host.h"
#include "vmm/arch.h"
#include "vmm/vcpu.h"

/* One per virtio queue: what its ioeventfd wakes up on the event loop. */
struct vm_virtio_queue {
	struct virtio_dev *dev;
	uint16_t index;
	int fd;
};

/*
 * A placed virtio device. The VMM owns the fds; it owns the device itself
 * only when vmm_add_virtio() allocated it, so teardown never touches a
 * device model that its owner already destroyed.
 */
struct vm_virtio_slot {
	struct virtio_dev *dev;
	bool owned;
	int irq_fd;
	uint16_t nqueues;
	struct vm_virtio_queue q[VIRTIO_MAX_QUEUES];
};

uint64_t vm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

const char *vm_exit_reason_name(enum vm_exit_reason r)
{
	switch (r) {
	case VM_EXIT_RUNNING: return "running";
	case VM_EXIT_REBOOT: return "reboot";
	case VM_EXIT_PANIC: return "panic";
	case VM_EXIT_STOP: return "stop";
	case VM_EXIT_SIGNAL: return "signal";
	case VM_EXIT_ERROR: return "error";
	}
	return "unknown";
}

static void marker_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct vm *vm = opaque;
	uint8_t id = *(const uint8_t *)data;
	uint64_t now = vm_now_ns();

	if (id == VM_MARKER_INIT) {
		uint64_t expected = 0;
		if (!__atomic_compare_exchange_n(&vm->t_marker_ns, &expected, now, false,
						 __ATOMIC_RELEASE, __ATOMIC_RELAXED))
			return;
		uint64_t first = __atomic_load_n(&vm->t_first_run_ns, __ATOMIC_ACQUIRE);
		vmm_log("boot: guest /init reached after %.3f ms (process start), %.3f ms (first KVM_RUN); "
			"monotonic_ns=%llu",
			(double)(now - vm->t_process_ns) / 1e6, (double)(now - first) / 1e6,
			(unsigned long long)now);
		return;
	}
	/* A guest could write markers forever: only the first few reach the log. */
	if (__atomic_fetch_add(&vm->markers_logged, 1, __ATOMIC_RELAXED) < VM_MARKERS_LOGGED)
		vmm_log("boot: guest marker %u at %.3f ms", id, (double)(now - vm->t_process_ns) / 1e6);
}

static void marker_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	memset(data, 0, len);
}

static int kvm_open(struct vm *vm, struct vmm_err *err)
{
	size_t ncaps;
	const struct kvm_host_cap *caps = kvm_host_caps(&ncaps);

	vm->kvm_fd = open(KVM_HOST_DEVICE, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return vmm_err_set(err, -errno, "/dev/kvm: %s (is KVM enabled, and may this user open it?)",
				   strerror(errno));
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_HOST_API_VERSION)
		return vmm_err_set(err, -ENOTSUP, "/dev/kvm: unexpected KVM API version");
	for (size_t i = 0; i < ncaps; i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
			return vmm_err_set(err, -ENOTSUP, "KVM lacks %s", caps[i].name);
	int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max > 0 && vm->nvcpus > (unsigned)max)
		return vmm_err_set(err, -EINVAL, "KVM allows at most %d vCPUs", max);
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size < (int)sizeof(struct kvm_run))
		return vmm_err_set(err, -EINVAL, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return vmm_err_set(err, -errno, "KVM_CREATE_VM: %s", strerror(errno));
	return 0;
}

static int vm_mem_setup(struct vm *vm, struct vmm_err *err)
{
	uint64_t size = vm->cfg.mem_mib << 20;
	int rc;

	if (vm->cfg.mem_fd >= 0) {
		rc = guest_mem_map_file(&vm->mem, vm->cfg.mem_fd, vm->cfg.mem_offset, size,
					arch_mem_hole_start(), arch_mem_hole_end());
		if (rc == 0)
			vm->cfg.mem_fd = -1; /* the mapping owns it now */
	} else {
		const char *name = getenv(GUEST_MEM_ENV);
		int want = guest_mem_backing_parse(name);
		if (want < 0)
			return vmm_err_set(err, -EINVAL,
					   GUEST_MEM_ENV "=%s: not auto, shmem-thp, hugetlb, anon-thp or memfd", name);
		rc = guest_mem_alloc_backing(&vm->mem, (enum guest_mem_backing)want, size, arch_mem_hole_start(),
					     arch_mem_hole_end());
	}
	if (rc < 0)
		return vmm_err_set(err, rc, "guest RAM of %llu MiB: %s",
				   (unsigned long long)vm->cfg.mem_mib, strerror(-rc));
	/* which pages a boot's first touches fault in (bench/boot reads this line); a restore's are the snapshot's */
	if (vm->mem.backing != GUEST_MEM_SNAPSHOT)
		vmm_log("guest RAM: %llu MiB, backing %s", (unsigned long long)vm->cfg.mem_mib,
			guest_mem_backing_name(vm->mem.backing));
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct guest_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region region = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->hva,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
			return vmm_err_set(err, -errno, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	}
	return 0;
}

static int vm_vcpus_create(struct vm *vm, struct vmm_err *err)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		v->vm = vm;
		v->index = i;
		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (v->fd < 0)
			return vmm_err_set(err, -errno, "KVM_CREATE_VCPU %u: %s", i, strerror(errno));
		v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			return vmm_err_set(err, -errno, "mmap vCPU %u: %s", i, strerror(errno));
		}
		int rc = arch_vcpu_setup(vm, v, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int vm_create(struct vm **out, const struct vm_config *cfg, struct vmm_err *err)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	int rc;

	if (!vm)
		return vmm_err_set(err, -ENOMEM, "out of memory");
	vm->cfg = *cfg;
	vm->kvm_fd = vm->vm_fd = -1;
	vm->mem.fd = -1;
	vm->nvcpus = cfg->nvcpus;
	vm->t_process_ns = (uint64_t)cfg->t_process.tv_sec * 1000000000ULL +
			   (uint64_t)cfg->t_process.tv_nsec;
	pthread_mutex_init(&vm->state_lock, NULL);
	pthread_cond_init(&vm->state_cond, NULL);
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	*out = vm;

	if (cfg->nvcpus < 1 || cfg->nvcpus > VM_MAX_VCPUS)
		return vmm_err_set(err, -EINVAL, "%u vCPUs: must be 1 to %d", cfg->nvcpus,
				   VM_MAX_VCPUS);
	if (cfg->mem_mib < VM_MIN_MEM_MIB || cfg->mem_mib > (1ULL << 24))
		return vmm_err_set(err, -EINVAL, "%llu MiB of memory: must be %d MiB to 16 TiB",
				   (unsigned long long)cfg->mem_mib, VM_MIN_MEM_MIB);
	vm->loop = evloop_new();
	if (!vm->loop)
		return vmm_err_set(err, -ENOMEM, "event loop: %s", strerror(errno));
	rc = vcpu_signal_setup();
	if (rc < 0)
		return vmm_err_set(err, rc, "vCPU kick signal: %s", strerror(-rc));
	rc = kvm_open(vm, err);
	if (rc < 0)
		return rc;
	rc = arch_vm_setup(vm, err);
	if (rc < 0)
		return rc;
	rc = vm_mem_setup(vm, err);
	if (rc < 0)
		return rc;
	rc = vm_vcpus_create(vm, err);
	if (rc < 0)
		return rc;
	rc = arch_snapshot_setup(vm, err);
	if (rc < 0)
		return rc;
	struct vm_io_handler marker = {
		.base = WORKER_MARKER_PORT,
		.len = 1,
		.read = marker_read,
		.write = marker_write,
		.opaque = vm,
		.name = "boot-marker",
	};
	return vm_add_pio(vm, &marker);
}

static void vm_virtio_free(struct vm *vm, struct vm_virtio_slot *slot)
{
	for (unsigned q = 0; q < slot->nqueues; q++) {
		if (slot->q[q].fd < 0)
			continue;
		evloop_del(vm->loop, slot->q[q].fd);
		close(slot->q[q].fd);
	}
	if (slot->irq_fd >= 0)
		close(slot->irq_fd);
	if (slot->owned) {
		virtio_dev_destroy(slot->dev);
		free(slot->dev);
	}
	free(slot);
}

void vm_join(struct vm *vm)
{
	bool started = false;

	if (!vm)
		return;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		started |= vm->vcpus[i].started;
	if (!started)
		return;
	if (!vm_exiting(vm))
		vm_request_exit(vm, VM_EXIT_ERROR, "VM torn down before it ran");
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_thread_join(&vm->vcpus[i]);
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm_join(vm);
	for (unsigned i = 0; i < vm->nvirtio; i++)
		vm_virtio_free(vm, vm->virtio[i]);
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->run)
			munmap(v->run, (size_t)vm->run_size);
		if (v->fd >= 0)
			close(v->fd);
	}
	guest_mem_free(&vm->mem);
	if (vm->cfg.mem_fd >= 0)
		close(vm->cfg.mem_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	evloop_free(vm->loop);
	free(vm->cpuid);
	free(vm->msr_index);
	pthread_mutex_destroy(&vm->state_lock);
	pthread_cond_destroy(&vm->state_cond);
	free(vm);
}

static bool io_overlaps(const struct vm_io_handler *hs, unsigned n, const struct vm_io_handler *h)
{
	for (unsigned i = 0; i < n; i++)
		if (h->base < hs[i].base + hs[i].len && hs[i].base < h->base + h->len)
			return true;
	return false;
}

static int io_add(struct vm_io_handler *hs, unsigned *n, const struct vm_io_handler *h)
{
	if (*n == VM_MAX_IO_HANDLERS)
		return -ENOSPC;
	if (h->len == 0 || h->base + h->len < h->base || io_overlaps(hs, *n, h))
		return -EINVAL;
	hs[(*n)++] = *h;
	return 0;
}

int vm_add_pio(struct vm *vm, const struct vm_io_handler *h)
{
	return io_add(vm->pio, &vm->npio, h);
}

int vm_add_mmio(struct vm *vm, const struct vm_io_handler *h)
{
	return io_add(vm->mmio, &vm->nmmio, h);
}

int vm_cmdline_append(struct vm *vm, const char *s)
{
	size_t len = strlen(s);
	size_t sep = vm->cmdline_len ? 1 : 0;

	if (vm->cmdline_len + sep + len + 1 > sizeof(vm->cmdline))
		return -E2BIG;
	if (sep)
		vm->cmdline[vm->cmdline_len++] = ' ';
	memcpy(vm->cmdline + vm->cmdline_len, s, len + 1);
	vm->cmdline_len += len;
	return 0;
}

static void virtio_queue_kicked(void *opaque, uint32_t events)
{
	struct vm_virtio_queue *q = opaque;
	uint64_t v;

	if (read(q->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	if (q->dev->ops->queue_notify)
		q->dev->ops->queue_notify(q->dev, q->index);
}

static void virtio_mmio_read_cb(void *opaque, uint64_t off, void *data, uint32_t len)
{
	virtio_mmio_read(opaque, off, data, len);
}

static void virtio_mmio_write_cb(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	virtio_mmio_write(opaque, off, data, len);
}

static int virtio_queues_wire(struct vm *vm, struct vm_virtio_slot *slot)
{
	struct virtio_dev *d = slot->dev;

	for (uint16_t q = 0; q < slot->nqueues; q++) {
		slot->q[q].fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (slot->q[q].fd < 0)
			return -errno;
		struct kvm_ioeventfd io = {
			.datamatch = q,
			.addr = d->mmio_base + VIRTIO_MMIO_QUEUE_NOTIFY,
			.len = 4,
			.fd = slot->q[q].fd,
			.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
		};
		if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
			return -errno;
		int rc = evloop_add(vm->loop, slot->q[q].fd, EPOLLIN, virtio_queue_kicked, &slot->q[q]);
		if (rc < 0)
			return rc;
		d->notify_fd[q] = slot->q[q].fd;
	}
	return 0;
}

static int virtio_place(struct vm *vm, struct vm_virtio_slot *slot)
{
	struct virtio_dev *d = slot->dev;
	char frag[96];
	int rc;

	slot->irq_fd = d->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (slot->irq_fd < 0)
		return -errno;
	struct kvm_irqfd irqfd = { .fd = (uint32_t)slot->irq_fd, .gsi = d->gsi };
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
		return -errno;
	rc = virtio_queues_wire(vm, slot);
	if (rc < 0)
		return rc;
	struct vm_io_handler h = {
		.base = d->mmio_base,
		.len = VIRTIO_MMIO_SIZE,
		.read = virtio_mmio_read_cb,
		.write = virtio_mmio_write_cb,
		.opaque = d,
		.name = d->ops->name,
	};
	rc = vm_add_mmio(vm, &h);
	if (rc < 0)
		return rc;
	if (virtio_dev_cmdline(d, frag, sizeof(frag)) < 0)
		return -EINVAL;
	return vm_cmdline_append(vm, frag);
}

static int virtio_attach(struct vm *vm, struct virtio_dev *d, bool owned)
{
	uint32_t gsi = arch_virtio_gsi_first() + vm->nvirtio;

	if (vm->nvirtio == VM_MAX_VIRTIO || gsi > arch_virtio_gsi_last())
		return -ENOSPC;
	if (d->ops->num_queues == 0 || d->ops->num_queues > VIRTIO_MAX_QUEUES)
		return -EINVAL;
	struct vm_virtio_slot *slot = calloc(1, sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	slot->dev = d;
	slot->owned = owned;
	slot->irq_fd = -1;
	slot->nqueues = d->ops->num_queues;
	for (uint16_t q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		slot->q[q].dev = d;
		slot->q[q].index = q;
		slot->q[q].fd = -1;
	}
	d->mmio_base = arch_virtio_mmio_base() + (uint64_t)vm->nvirtio * VIRTIO_MMIO_SIZE;
	d->gsi = gsi;
	d->log = d->log ? d->log : stderr;
	vm->virtio[vm->nvirtio++] = slot;
	return virtio_place(vm, slot);
}

int vmm_attach_virtio(struct vm *vm, struct virtio_dev *d)
{
	return virtio_attach(vm, d, false);
}

int vmm_add_virtio(struct vm *vm, const struct virtio_dev_ops *ops, void *priv,
		   struct virtio_dev **out)
{
	struct virtio_dev *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	virtio_dev_init(d, ops, priv, &vm->mem, 0, 0, -1);
	unsigned before = vm->nvirtio;
	int rc = virtio_attach(vm, d, true);
	if (vm->nvirtio == before) {
		/* Never placed: still ours to free. Once placed, vm_destroy frees it. */
		virtio_dev_destroy(d);
		free(d);
		return rc;
	}
	if (rc == 0 && out)
		*out = d;
	return rc;
}

struct virtio_dev *vm_virtio_dev(struct vm *vm, unsigned i)
{
	return i < vm->nvirtio ? vm->virtio[i]->dev : NULL;
}

int vm_boot_load(struct vm *vm, const char *kernel, const char *initrd, struct vmm_err *err)
{
	return arch_boot_load(vm, kernel, initrd, err);
}

int vm_irq_line(struct vm *vm, uint32_t irq, bool level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level ? 1 : 0 };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		return -errno;
	return 0;
}

/* The format attribute lets clang check the callers' formats instead of this vsnprintf's. */
__attribute__((format(printf, 4, 0)))
static void vm_exit_record(struct vm *vm, enum vm_exit_reason reason, int signo,
			   const char *fmt, va_list ap)
{
	bool first = false;

	pthread_mutex_lock(&vm->state_lock);
	if (!vm->exiting) {
		first = true;
		vm->exiting = true;
		vm->exit.reason = reason;
		vm->exit.signo = signo;
		vsnprintf(vm->exit.detail, sizeof(vm->exit.detail), fmt, ap);
		pthread_cond_broadcast(&vm->state_cond);
	}
	pthread_mutex_unlock(&vm->state_lock);
	if (!first)
		return;
	evloop_stop(vm->loop);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

void vm_request_exit(struct vm *vm, enum vm_exit_reason reason, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vm_exit_record(vm, reason, 0, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 3, 4)))
static void vm_exit_signal_fmt(struct vm *vm, int signo, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vm_exit_record(vm, VM_EXIT_SIGNAL, signo, fmt, ap);
	va_end(ap);
}

void vm_request_exit_signal(struct vm *vm, int signo)
{
	vm_exit_signal_fmt(vm, signo, "signal %s", sigabbrev_np(signo) ? sigabbrev_np(signo) : "?");
}

bool vm_exiting(struct vm *vm)
{
	return __atomic_load_n(&vm->exiting, __ATOMIC_ACQUIRE);
}

int vm_start(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		int rc = vcpu_thread_start(&vm->vcpus[i]);
		if (rc < 0) {
			vm_request_exit(vm, VM_EXIT_ERROR, "starting vCPU %u: %s", i, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int vm_pause(struct vm *vm)
{
	int rc = 0;

	pthread_mutex_lock(&vm->state_lock);
	__atomic_store_n(&vm->pause_req, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->state_lock);
	/* A vCPU between its pause check and KVM_RUN sees immediate_exit. */
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_mutex_lock(&vm->state_lock);
	while (vm->npaused < vm->nvcpus && !vm->exiting)
		pthread_cond_wait(&vm->state_cond, &vm->state_lock);
	if (vm->exiting)
		rc = -ECANCELED;
	pthread_mutex_unlock(&vm->state_lock);
	return rc;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->state_lock);
	__atomic_store_n(&vm->pause_req, false, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->state_cond);
	pthread_mutex_unlock(&vm->state_lock);
}

struct vm_exit_info vm_run(struct vm *vm)
{
	pthread_mutex_lock(&vm->state_lock);
	vm->go = true;
	pthread_cond_broadcast(&vm->state_cond);
	pthread_mutex_unlock(&vm->state_lock);

	int rc = evloop_run(vm->loop);
	if (rc < 0)
		vm_request_exit(vm, VM_EXIT_ERROR, "event loop: %s", strerror(-rc));
	else if (!vm_exiting(vm))
		vm_request_exit(vm, VM_EXIT_ERROR, "event loop ended unexpectedly");
	vm_join(vm);
	return vm->exit;
}

void vm_stats_read(struct vm *vm, struct vm_stats *s)
{
	const uint64_t *src = (const uint64_t *)&vm->stats;
	uint64_t *dst = (uint64_t *)s;

	for (size_t i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

int vm_stats_format(const struct vm_stats *s, char *buf, size_t len)
{
	return snprintf(buf, len,
			"exits=%llu io=%llu mmio=%llu intr=%llu other=%llu io_unhandled=%llu "
			"mmio_unhandled=%llu",
			(unsigned long long)s->runs, (unsigned long long)s->io,
			(unsigned long long)s->mmio, (unsigned long long)s->intr,
			(unsigned long long)s->other, (unsigned long long)s->io_unhandled,
			(unsigned long long)s->mmio_unhandled);
}

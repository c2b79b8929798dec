#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "base/kvm_host.h"

#define VCPU_KICK_SIGNAL SIGUSR1

static void vcpu_kick_handler(int sig)
{
	/* Only here so KVM_RUN returns -EINTR; immediate_exit covers the race. */
}

int vcpu_signal_setup(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	return 0;
}

static void stat_inc(uint64_t *c)
{
	__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

static const struct vm_io_handler *io_find(const struct vm_io_handler *hs, unsigned n,
					   uint64_t addr, uint32_t len)
{
	for (unsigned i = 0; i < n; i++)
		if (addr >= hs[i].base && addr - hs[i].base < hs[i].len &&
		    len <= hs[i].len - (addr - hs[i].base))
			return &hs[i];
	return NULL;
}

void vcpu_pio(struct vm *vm, uint16_t port, bool write, void *data, uint32_t len)
{
	const struct vm_io_handler *h = io_find(vm->pio, vm->npio, port, len);

	if (!h) {
		/* No device: reads float high, writes vanish, as on a PC. */
		stat_inc(&vm->stats.io_unhandled);
		vmm_log_once(&vm->io_unhandled_logged,
			     "guest %s unhandled I/O port %#x (len %u); further ones are not logged",
			     write ? "wrote" : "read", port, len);
		if (!write)
			memset(data, 0xff, len);
		return;
	}
	if (write) {
		if (h->write)
			h->write(h->opaque, port - h->base, data, len);
	} else if (h->read) {
		h->read(h->opaque, port - h->base, data, len);
	} else {
		memset(data, 0xff, len);
	}
}

void vcpu_mmio(struct vm *vm, uint64_t addr, bool write, void *data, uint32_t len)
{
	const struct vm_io_handler *h = io_find(vm->mmio, vm->nmmio, addr, len);

	if (!h) {
		stat_inc(&vm->stats.mmio_unhandled);
		vmm_log_once(&vm->mmio_unhandled_logged,
			     "guest %s unhandled MMIO address %#llx (len %u); further ones are not logged",
			     write ? "wrote" : "read", (unsigned long long)addr, len);
		if (!write)
			memset(data, 0, len);
		return;
	}
	if (write) {
		if (h->write)
			h->write(h->opaque, addr - h->base, data, len);
	} else if (h->read) {
		h->read(h->opaque, addr - h->base, data, len);
	} else {
		memset(data, 0, len);
	}
}

static int vcpu_exit_io(struct vcpu *v)
{
	struct kvm_run *r = v->run;
	uint32_t size = r->io.size, count = r->io.count;

	stat_inc(&v->vm->stats.io);
	if ((size != 1 && size != 2 && size != 4) || r->io.data_offset > (uint64_t)v->vm->run_size ||
	    (uint64_t)size * count > (uint64_t)v->vm->run_size - r->io.data_offset) {
		vm_request_exit(v->vm, VM_EXIT_ERROR, "vCPU %u: KVM reported a malformed I/O exit",
				v->index);
		return -EINVAL;
	}
	uint8_t *data = (uint8_t *)r + r->io.data_offset;
	for (uint32_t i = 0; i < count; i++)
		vcpu_pio(v->vm, r->io.port, r->io.direction == KVM_EXIT_IO_OUT, data + i * size, size);
	return 0;
}

static int vcpu_exit_mmio(struct vcpu *v)
{
	struct kvm_run *r = v->run;

	stat_inc(&v->vm->stats.mmio);
	if (r->mmio.len == 0 || r->mmio.len > sizeof(r->mmio.data)) {
		vm_request_exit(v->vm, VM_EXIT_ERROR, "vCPU %u: KVM reported a malformed MMIO exit",
				v->index);
		return -EINVAL;
	}
	vcpu_mmio(v->vm, r->mmio.phys_addr, r->mmio.is_write, r->mmio.data, r->mmio.len);
	return 0;
}

/*
 * Where the vCPU was when it reset the machine: for a reboot the guest
 * asked for this says little, for a triple fault during boot it is the
 * first clue.
 */
static void vcpu_where(struct vcpu *v, char *buf, size_t len)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
		snprintf(buf, len, "registers unavailable");
		return;
	}
	snprintf(buf, len, "rip=%#llx rsp=%#llx cr0=%#llx cr3=%#llx cr4=%#llx efer=%#llx",
		 (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
		 (unsigned long long)sregs.cr0, (unsigned long long)sregs.cr3,
		 (unsigned long long)sregs.cr4, (unsigned long long)sregs.efer);
}

static int vcpu_exit_shutdown(struct vcpu *v)
{
	struct vm *vm = v->vm;
	char where[160];

	vcpu_where(v, where, sizeof(where));
	if (__atomic_load_n(&vm->guest_panicked, __ATOMIC_ACQUIRE))
		vm_request_exit(vm, VM_EXIT_PANIC, "guest kernel panic, then vCPU %u reset the machine (%s)",
				v->index, where);
	else
		vm_request_exit(vm, VM_EXIT_REBOOT, "guest reboot: vCPU %u reset the machine (%s)",
				v->index, where);
	return 1;
}

static int vcpu_exit_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_CRASH:
		vm_request_exit(v->vm, VM_EXIT_PANIC, "guest crash reported by KVM (vCPU %u)",
				v->index);
		return 1;
	default:
		return vcpu_exit_shutdown(v);
	}
}

/* Up to 15 bytes of the instruction at the vCPU's RIP; 0 when they cannot be read. */
static size_t vcpu_insn_bytes(struct vcpu *v, uint64_t *rip, uint8_t out[15])
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_translation tr = { 0 };
	const uint8_t *p;
	size_t n = 15;

	*rip = 0;
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
		return 0;
	*rip = regs.rip;
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return 0;
	tr.linear_address = sregs.cs.base + regs.rip;
	if (ioctl(v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
		return 0;
	/* not across a page: the next one may map elsewhere */
	if ((tr.physical_address & 4095) + n > 4096)
		n = 4096 - (tr.physical_address & 4095);
	p = guest_mem_ptr(&v->vm->mem, tr.physical_address, n);
	if (!p)
		return 0;
	memcpy(out, p, n);
	return n;
}

/* What an internal error means, said once with the instruction it stopped at. */
static int vcpu_exit_internal(struct vcpu *v)
{
	char msg[512];
	uint8_t insn[15];
	uint64_t rip;
	size_t n = vcpu_insn_bytes(v, &rip, insn);

	kvm_internal_error_text(msg, sizeof(msg), v->index, v->run->internal.suberror, rip, insn, n);
	vm_request_exit(v->vm, VM_EXIT_ERROR, "%s", msg);
	return -EIO;
}

/* 0: keep running; > 0: the VM is ending; < 0: failed (already requested exit). */
static int vcpu_exit(struct vcpu *v)
{
	struct kvm_run *r = v->run;

	switch (r->exit_reason) {
	case KVM_EXIT_IO:
		return vcpu_exit_io(v);
	case KVM_EXIT_MMIO:
		return vcpu_exit_mmio(v);
	case KVM_EXIT_SHUTDOWN:
		return vcpu_exit_shutdown(v);
	case KVM_EXIT_SYSTEM_EVENT:
		return vcpu_exit_system_event(v);
	case KVM_EXIT_INTR:
		stat_inc(&v->vm->stats.intr);
		return 0;
	case KVM_EXIT_FAIL_ENTRY:
		vm_request_exit(v->vm, VM_EXIT_ERROR, "vCPU %u: KVM entry failed (reason %#llx)",
				v->index,
				(unsigned long long)r->fail_entry.hardware_entry_failure_reason);
		return -EIO;
	case KVM_EXIT_INTERNAL_ERROR:
		return vcpu_exit_internal(v);
	default:
		stat_inc(&v->vm->stats.other);
		vm_request_exit(v->vm, VM_EXIT_ERROR, "vCPU %u: unexpected KVM exit reason %u",
				v->index, r->exit_reason);
		return -EIO;
	}
}

static bool vcpu_wait_gate(struct vm *vm)
{
	pthread_mutex_lock(&vm->state_lock);
	while (!vm->go && !vm->exiting)
		pthread_cond_wait(&vm->state_cond, &vm->state_lock);
	bool go = !vm->exiting;
	pthread_mutex_unlock(&vm->state_lock);
	return go;
}

/*
 * KVM keeps the second half of an I/O or MMIO exit (the value of an IN,
 * the rest of a REP string op) inside the kernel, not in any state a
 * snapshot can read. KVM_RUN with immediate_exit set completes it and
 * returns -EINTR without running guest code; a string op may come back
 * with one more exit to serve first.
 */
static int vcpu_complete_io(struct vcpu *v)
{
	for (;;) {
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
		int rc = ioctl(v->fd, KVM_RUN, 0);
		if (rc < 0 && (errno == EINTR || errno == EAGAIN))
			return 0;
		if (rc < 0) {
			vm_request_exit(v->vm, VM_EXIT_ERROR, "vCPU %u: KVM_RUN (completing I/O): %s",
					v->index, strerror(errno));
			return -EIO;
		}
		if (vcpu_exit(v) != 0)
			return -EIO;
	}
}

static void vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;

	if (vcpu_complete_io(v) < 0)
		return;
	__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_RELEASE);
	pthread_mutex_lock(&vm->state_lock);
	vm->npaused++;
	pthread_cond_broadcast(&vm->state_cond);
	while (vm->pause_req && !vm->exiting)
		pthread_cond_wait(&vm->state_cond, &vm->state_lock);
	vm->npaused--;
	pthread_mutex_unlock(&vm->state_lock);
}

/* What a boot or a restore cost the host before the guest ran: wall and CPU time. */
static void vcpu_first_run(struct vm *vm)
{
	struct timespec cpu;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu) == 0)
		__atomic_store_n(&vm->cpu_first_run_ns,
				 (uint64_t)cpu.tv_sec * 1000000000ULL + (uint64_t)cpu.tv_nsec,
				 __ATOMIC_RELAXED);
	__atomic_store_n(&vm->t_first_run_ns, vm_now_ns(), __ATOMIC_RELEASE);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sigset_t kick;

	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	/* A blocked SIGSYS would kill the process silently instead of naming the call. */
	sigaddset(&kick, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	if (!vcpu_wait_gate(vm))
		return NULL;

	while (!vm_exiting(vm)) {
		if (__atomic_load_n(&vm->pause_req, __ATOMIC_ACQUIRE)) {
			vcpu_park(v);
			continue;
		}
		if (v->index == 0 && !vm->t_first_run_ns)
			vcpu_first_run(vm);
		int rc = ioctl(v->fd, KVM_RUN, 0);
		if (rc < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_RELAXED);
				stat_inc(&vm->stats.intr);
				continue;
			}
			vm_request_exit(vm, VM_EXIT_ERROR, "vCPU %u: KVM_RUN: %s", v->index,
					strerror(errno));
			break;
		}
		stat_inc(&vm->stats.runs);
		if (vcpu_exit(v) != 0)
			break;
	}
	return NULL;
}

int vcpu_thread_start(struct vcpu *v)
{
	char name[16];
	sigset_t all, old;

	/* The thread starts with every signal blocked and opens only the kick. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&v->thread, NULL, vcpu_thread, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return -rc;
	v->started = true;
	snprintf(name, sizeof(name), "vcpu%u", v->index);
	pthread_setname_np(v->thread, name);
	return 0;
}

void vcpu_thread_join(struct vcpu *v)
{
	if (!v->started)
		return;
	pthread_join(v->thread, NULL);
	v->started = false;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->run)
		return;
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
	if (v->started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

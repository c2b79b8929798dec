/*
 * The KVM host probe (kvm_host.h): capabilities, and a tiny long-mode
 * guest timed under a bound.
 *
 * The guest, at 0x10000 in 128 KiB of RAM, identity-mapped by one 2 MiB
 * page, entered directly in 64-bit mode at CPL 0:
 *
 *     mov ecx, LOOP       ; b9 imm32
 *  1: dec ecx             ; ff c9
 *     jnz 1b              ; 75 fc
 *     out 0x10, al        ; e6 10     loop done
 *     mov ecx, EXITS      ; b9 imm32  (batch entry)
 *  2: out 0x11, al        ; e6 11     one exit each
 *     dec ecx             ; ff c9
 *     jnz 2b              ; 75 fa
 *     out 0x12, al        ; e6 12     batch done
 *     hlt                 ; f4
 *
 * A loop cut off by its budget is judged from ecx (how far it got), and
 * the batch then starts from its entry, so an emulating host still gets
 * an exit figure.
 */
#include "base/kvm_host.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PROBE_MEM_SIZE 0x20000u
#define PROBE_PML4 0x1000u
#define PROBE_PDPT 0x2000u
#define PROBE_PD 0x3000u
#define PROBE_CODE 0x10000u
#define PROBE_BATCH_OFF 12u /* the batch's mov ecx, from PROBE_CODE */
#define PORT_LOOP_DONE 0x10
#define PORT_EXIT 0x11
#define PORT_BATCH_DONE 0x12
#define PROBE_MAX_CPUID 256

static const struct kvm_host_cap caps[] = {
	{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
	{ KVM_CAP_IRQFD, "irqfd" },
	{ KVM_CAP_IOEVENTFD, "ioeventfd" },
	{ KVM_CAP_USER_MEMORY, "user memory" },
	{ KVM_CAP_IMMEDIATE_EXIT, "immediate_exit" },
	{ KVM_CAP_PIT2, "PIT2" },
	{ KVM_CAP_EXT_CPUID, "CPUID2" },
};

const struct kvm_host_cap *kvm_host_caps(size_t *n)
{
	*n = sizeof(caps) / sizeof(caps[0]);
	return caps;
}

/* One probe in progress: its fds and mappings, and the timer that bounds it. */
struct probe {
	const struct kvm_probe_opts *o;
	struct kvm_probe *out;
	int kvm, vm, vcpu, sig;
	uint8_t *mem;
	struct kvm_run *run;
	size_t run_size;
	timer_t timer;
	bool timer_ok;
	uint32_t loop_iters, batch_exits;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 2, 3))) static int probe_fail(struct probe *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->out->error, sizeof(p->out->error), fmt, ap);
	va_end(ap);
	return -1;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void probe_program(struct probe *p)
{
	static const uint8_t measure[] = {
		0xb9, 0, 0, 0, 0, 0xff, 0xc9, 0x75, 0xfc, 0xe6, PORT_LOOP_DONE,
		0x90, /* PROBE_BATCH_OFF: */ 0xb9, 0, 0, 0, 0, 0xe6, PORT_EXIT, 0xff, 0xc9, 0x75, 0xfa,
		0xe6, PORT_BATCH_DONE, 0xf4,
	};
	static const uint8_t spin[] = { 0xeb, 0xfe };
	uint64_t *pml4 = (uint64_t *)(p->mem + PROBE_PML4), *pdpt = (uint64_t *)(p->mem + PROBE_PDPT);
	uint64_t *pd = (uint64_t *)(p->mem + PROBE_PD);
	uint8_t *code = p->mem + PROBE_CODE;

	pml4[0] = PROBE_PDPT | 3;   /* present, writable */
	pdpt[0] = PROBE_PD | 3;
	pd[0] = 0x83;               /* present, writable, 2 MiB page at 0 */
	if (p->o->program == KVM_PROBE_SPIN) {
		memcpy(code, spin, sizeof(spin));
		return;
	}
	memcpy(code, measure, sizeof(measure));
	put32(code + 1, p->loop_iters);
	put32(code + PROBE_BATCH_OFF + 1, p->batch_exits);
}

static void probe_caps(struct probe *p)
{
	struct kvm_probe *o = p->out;
	size_t used = 0;

	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		if (ioctl(p->kvm, KVM_CHECK_EXTENSION, caps[i].cap) > 0)
			continue;
		int w = snprintf(o->missing + used, sizeof(o->missing) - used, "%s%s", used ? ", " : "",
				 caps[i].name);
		if (w > 0 && (size_t)w < sizeof(o->missing) - used)
			used += (size_t)w;
	}
}

static int probe_open(struct probe *p)
{
	const char *dev = p->o->device ? p->o->device : KVM_HOST_DEVICE;

	p->kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (p->kvm < 0) {
		p->out->open_errno = errno ? errno : EIO;
		return probe_fail(p, "open %s: %s", dev, strerror(errno));
	}
	p->out->api_version = ioctl(p->kvm, KVM_GET_API_VERSION, 0);
	if (p->out->api_version != KVM_HOST_API_VERSION)
		return probe_fail(p, "%s: KVM API version %d, not %d", dev, p->out->api_version,
				  KVM_HOST_API_VERSION);
	probe_caps(p);
	return p->out->missing[0] ? probe_fail(p, "KVM lacks %s", p->out->missing) : 0;
}

/* The guest's CPUID must claim long mode, or KVM refuses EFER.LME. */
static int probe_cpuid(struct probe *p)
{
	size_t sz = sizeof(struct kvm_cpuid2) + PROBE_MAX_CPUID * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, sz);
	int rc = 0;

	if (!c)
		return probe_fail(p, "out of memory");
	c->nent = PROBE_MAX_CPUID;
	if (ioctl(p->kvm, KVM_GET_SUPPORTED_CPUID, c) < 0)
		rc = probe_fail(p, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	else if (ioctl(p->vcpu, KVM_SET_CPUID2, c) < 0)
		rc = probe_fail(p, "KVM_SET_CPUID2: %s", strerror(errno));
	free(c);
	return rc;
}

static void seg64(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	*s = (struct kvm_segment){ .base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
				   .present = 1, .dpl = 0, .s = 1, .g = 1, .l = code, .db = !code };
}

static int probe_regs(struct probe *p)
{
	struct kvm_sregs s;
	struct kvm_regs r = { .rip = PROBE_CODE, .rflags = 2, .rsp = PROBE_CODE };

	if (ioctl(p->vcpu, KVM_GET_SREGS, &s) < 0)
		return probe_fail(p, "KVM_GET_SREGS: %s", strerror(errno));
	seg64(&s.cs, 8, 11, true);
	seg64(&s.ds, 16, 3, false);
	s.es = s.fs = s.gs = s.ss = s.ds;
	s.cr3 = PROBE_PML4;
	s.cr4 = 1u << 5;                  /* PAE */
	s.cr0 = 0x80050033;               /* PG, WP, NE, ET, MP, PE */
	s.efer = (1u << 8) | (1u << 10);  /* LME, LMA */
	if (ioctl(p->vcpu, KVM_SET_SREGS, &s) < 0)
		return probe_fail(p, "KVM_SET_SREGS (64-bit mode): %s", strerror(errno));
	if (ioctl(p->vcpu, KVM_SET_REGS, &r) < 0)
		return probe_fail(p, "KVM_SET_REGS: %s", strerror(errno));
	return 0;
}

static int probe_vm(struct probe *p)
{
	struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0,
						      .memory_size = PROBE_MEM_SIZE };
	int sz;

	p->vm = ioctl(p->kvm, KVM_CREATE_VM, 0);
	if (p->vm < 0)
		return probe_fail(p, "KVM_CREATE_VM: %s", strerror(errno));
	p->mem = mmap(NULL, PROBE_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->mem == MAP_FAILED) {
		p->mem = NULL;
		return probe_fail(p, "guest memory: %s", strerror(errno));
	}
	probe_program(p);
	region.userspace_addr = (uintptr_t)p->mem;
	if (ioctl(p->vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return probe_fail(p, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	p->vcpu = ioctl(p->vm, KVM_CREATE_VCPU, 0);
	if (p->vcpu < 0)
		return probe_fail(p, "KVM_CREATE_VCPU: %s", strerror(errno));
	sz = ioctl(p->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz < (int)sizeof(struct kvm_run))
		return probe_fail(p, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	p->run_size = (size_t)sz;
	p->run = mmap(NULL, p->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->vcpu, 0);
	if (p->run == MAP_FAILED) {
		p->run = NULL;
		return probe_fail(p, "map the vCPU's run area: %s", strerror(errno));
	}
	return probe_cpuid(p) < 0 ? -1 : probe_regs(p);
}

/*
 * KVM_RUN sees the timer signal (blocked everywhere else on this thread)
 * and returns -EINTR when it fires, even if it fired just before entry:
 * a pending unblocked signal stops the entry. No handler runs, ever.
 */
static int probe_signal_mask(struct probe *p)
{
	_Alignas(struct kvm_signal_mask) uint8_t buf[sizeof(struct kvm_signal_mask) + 8];
	struct kvm_signal_mask *km = (struct kvm_signal_mask *)buf;
	sigset_t cur;

	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	sigdelset(&cur, p->sig);
	km->len = 8; /* the kernel's sigset_t */
	memcpy(km->sigset, &cur, 8);
	if (ioctl(p->vcpu, KVM_SET_SIGNAL_MASK, km) < 0)
		return probe_fail(p, "KVM_SET_SIGNAL_MASK: %s", strerror(errno));
	return 0;
}

static int probe_timer(struct probe *p)
{
	struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = p->sig };

	ev._sigev_un._tid = gettid(); /* sigev_notify_thread_id, which this glibc does not name */
	if (timer_create(CLOCK_MONOTONIC, &ev, &p->timer) < 0)
		return probe_fail(p, "timer_create: %s", strerror(errno));
	p->timer_ok = true;
	return 0;
}

/* Arms the budget (ms > 0) or disarms it (0), and drops a signal left pending. */
static void probe_arm(struct probe *p, uint32_t ms)
{
	struct itimerspec it = { .it_value = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 } };
	struct timespec zero = { 0, 0 };
	sigset_t s;

	timer_settime(p->timer, 0, &it, NULL);
	sigemptyset(&s);
	sigaddset(&s, p->sig);
	while (sigtimedwait(&s, NULL, &zero) > 0)
		;
}

/* 1: an I/O exit on port; 0: the budget ran out (EINTR); -1: anything else. */
static int probe_run_to(struct probe *p, uint16_t port)
{
	if (ioctl(p->vcpu, KVM_RUN, 0) < 0) {
		if (errno == EINTR)
			return 0;
		return probe_fail(p, "KVM_RUN: %s", strerror(errno));
	}
	p->out->ran = true;
	if (p->run->exit_reason == KVM_EXIT_INTR)
		return 0;
	if (p->run->exit_reason == KVM_EXIT_IO && p->run->io.port == port)
		return 1;
	if (p->run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
		return probe_fail(p, "the probe guest failed: KVM internal error (suberror %u)",
				  p->run->internal.suberror);
	return probe_fail(p, "the probe guest stopped with KVM exit reason %u, not an exit on port %#x",
			  p->run->exit_reason, port);
}

static int probe_loop(struct probe *p)
{
	struct kvm_probe *o = p->out;
	struct kvm_regs r;
	uint64_t t0 = now_ns();
	int rc;

	probe_arm(p, p->o->loop_budget_ms ? p->o->loop_budget_ms : KVM_PROBE_LOOP_BUDGET_MS);
	rc = probe_run_to(p, PORT_LOOP_DONE);
	o->loop_ns = now_ns() - t0;
	probe_arm(p, 0);
	if (rc < 0)
		return -1;
	o->ran = true;
	if (ioctl(p->vcpu, KVM_GET_REGS, &r) < 0)
		return probe_fail(p, "KVM_GET_REGS: %s", strerror(errno));
	o->loop_done = rc == 1;
	o->timed_out = rc == 0;
	if (p->o->program == KVM_PROBE_SPIN)
		return 0;
	o->loop_iters = o->loop_done ? p->loop_iters : p->loop_iters - (uint32_t)r.rcx;
	if (o->loop_ns)
		o->insns_per_s = (double)o->loop_iters * KVM_PROBE_INSNS_PER_ITER * 1e9 / (double)o->loop_ns;
	if (o->loop_done)
		return 0;
	/* cut off mid-loop: on to the batch, so the exits are measured all the same */
	r.rip = PROBE_CODE + PROBE_BATCH_OFF;
	if (ioctl(p->vcpu, KVM_SET_REGS, &r) < 0)
		return probe_fail(p, "KVM_SET_REGS: %s", strerror(errno));
	return 0;
}

static int probe_exits(struct probe *p)
{
	struct kvm_probe *o = p->out;
	uint64_t t0, t1;
	int rc;

	probe_arm(p, p->o->exits_budget_ms ? p->o->exits_budget_ms : KVM_PROBE_EXITS_BUDGET_MS);
	t0 = now_ns();
	rc = probe_run_to(p, PORT_EXIT);
	t1 = now_ns();
	if (rc == 1) {
		o->exit_ns = t1 - t0;
		while (o->exits + 1 < p->batch_exits && (rc = probe_run_to(p, PORT_EXIT)) == 1)
			o->exits++;
		o->exits_ns = now_ns() - t1;
		if (o->exits)
			o->exit_avg_ns = (double)o->exits_ns / o->exits;
	}
	probe_arm(p, 0);
	if (rc == 0)
		o->timed_out = true;
	return rc < 0 ? -1 : 0;
}

static void probe_close(struct probe *p)
{
	if (p->timer_ok)
		timer_delete(p->timer);
	if (p->run)
		munmap(p->run, p->run_size);
	if (p->vcpu >= 0)
		close(p->vcpu);
	if (p->mem)
		munmap(p->mem, PROBE_MEM_SIZE);
	if (p->vm >= 0)
		close(p->vm);
	if (p->kvm >= 0)
		close(p->kvm);
}

static void *probe_thread(void *arg)
{
	struct probe *p = arg;
	intptr_t rc = -1;

	if (probe_open(p) < 0 || probe_vm(p) < 0 || probe_signal_mask(p) < 0 || probe_timer(p) < 0)
		goto out;
	if (probe_loop(p) < 0)
		goto out;
	if (p->o->program == KVM_PROBE_SPIN || probe_exits(p) == 0)
		rc = 0;
out:
	probe_close(p);
	return (void *)rc;
}

int kvm_probe_run(const struct kvm_probe_opts *opts, struct kvm_probe *out)
{
	static const struct kvm_probe_opts defaults = { .program = KVM_PROBE_MEASURE };
	struct probe p = { .o = opts ? opts : &defaults, .out = out, .kvm = -1, .vm = -1, .vcpu = -1 };
	sigset_t all, old;
	pthread_t t;
	void *ret = NULL;
	int rc;

	*out = (struct kvm_probe){ .api_version = -1 };
	p.loop_iters = p.o->loop_iters ? p.o->loop_iters : KVM_PROBE_LOOP_ITERS;
	p.batch_exits = p.o->batch_exits ? p.o->batch_exits : KVM_PROBE_BATCH_EXITS;
	/* a real-time signal of our own; blocked in the probe thread from its first instruction */
	p.sig = SIGRTMAX - 2;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&t, NULL, probe_thread, &p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		return snprintf(out->error, sizeof(out->error), "start the probe thread: %s", strerror(rc)), -1;
	pthread_join(t, &ret);
	return ret == NULL ? 0 : -1;
}

static const char *internal_suberror_name(uint32_t sub)
{
	switch (sub) {
	case KVM_INTERNAL_ERROR_EMULATION: return "instruction emulation failed";
	case KVM_INTERNAL_ERROR_SIMUL_EX: return "an exception while delivering an exception";
	case KVM_INTERNAL_ERROR_DELIVERY_EV: return "an event could not be delivered to the guest";
	case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: return "a hardware exit the host's KVM did not expect";
	default: return "unknown to us";
	}
}

void kvm_internal_error_text(char *buf, size_t len, unsigned vcpu, uint32_t suberror, uint64_t rip,
			     const uint8_t *insn, size_t ninsn)
{
	char bytes[3 * 16 + 16] = "";
	size_t used = 0;

	for (size_t i = 0; i < ninsn && i < 15; i++)
		used += (size_t)snprintf(bytes + used, sizeof(bytes) - used, "%s%02x", i ? " " : "", insn[i]);
	snprintf(buf, len,
		 "vCPU %u: the host's KVM could not run the guest instruction at %#llx%s%s%s "
		 "(KVM internal error, suberror %u: %s); this host's /dev/kvm cannot run the guest "
		 "(see `supermachine check`)",
		 vcpu, (unsigned long long)rip, used ? " (bytes " : "", bytes, used ? ")" : "", suberror,
		 internal_suberror_name(suberror));
}

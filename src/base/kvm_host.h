/*
 * What supermachine needs of a host's /dev/kvm, and a measured probe of
 * what a guest can actually do on it.
 *
 * A /dev/kvm that opens and answers every capability can still be unable
 * to run our guest: a software hypervisor module that emulates guest
 * kernel code, or a cloud VM with broken nested virtualization. So the
 * probe runs a tiny 64-bit guest at CPL 0 (a fixed loop, then one I/O
 * exit, then a batch of exits) under a time bound, and reports how fast
 * it ran; the judging lives with the caller (src/lib/hostcheck.c).
 *
 * Used by the library (its host check and the refusal in sm_vm_start /
 * sm_vm_restore) and by the VMM (the capability list, the explanation of
 * KVM_EXIT_INTERNAL_ERROR). Plain libc and <linux/kvm.h>.
 */
#ifndef SM_BASE_KVM_HOST_H
#define SM_BASE_KVM_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVM_HOST_DEVICE "/dev/kvm"
#define KVM_HOST_API_VERSION 12

/* One KVM capability the VMM relies on. */
struct kvm_host_cap {
	int cap;          /* KVM_CAP_* */
	const char *name; /* for messages */
};

/* Every capability the VMM checks before creating a VM; *n gets the count. */
const struct kvm_host_cap *kvm_host_caps(size_t *n);

/* The guest program the probe runs. */
enum kvm_probe_program {
	KVM_PROBE_MEASURE, /* the loop, one exit, a batch of exits, halt */
	KVM_PROBE_SPIN,    /* jmp . at CPL 0: never exits (tests the time bound) */
};

struct kvm_probe_opts {
	const char *device;     /* NULL = /dev/kvm */
	enum kvm_probe_program program;
	uint32_t loop_iters;    /* 0 = KVM_PROBE_LOOP_ITERS */
	uint32_t batch_exits;   /* 0 = KVM_PROBE_BATCH_EXITS */
	uint32_t loop_budget_ms;  /* 0 = KVM_PROBE_LOOP_BUDGET_MS */
	uint32_t exits_budget_ms; /* 0 = KVM_PROBE_EXITS_BUDGET_MS */
};
/*
 * A 2-instruction loop: hardware virtualization runs 10 M iterations in a
 * few ms; an emulating host is cut off by the budget and judged from how
 * far it got.
 */
#define KVM_PROBE_LOOP_ITERS 10000000u
#define KVM_PROBE_BATCH_EXITS 2000u
#define KVM_PROBE_LOOP_BUDGET_MS 300u
#define KVM_PROBE_EXITS_BUDGET_MS 200u
#define KVM_PROBE_INSNS_PER_ITER 2u

/* What the probe saw. Every figure is 0 when the step it comes from did not run. */
struct kvm_probe {
	int open_errno;          /* 0 when the device opened read-write */
	int api_version;         /* KVM_GET_API_VERSION, -1 when unknown */
	char missing[256];       /* capabilities of kvm_host_caps() it lacks, ", "-separated */
	bool ran;                /* the guest ran at all */
	bool loop_done;          /* the loop finished inside its budget */
	bool timed_out;          /* a phase was cut off by its budget */
	uint64_t loop_iters;     /* loop iterations done */
	uint64_t loop_ns;        /* time they took */
	double insns_per_s;      /* guest kernel-mode instructions per second */
	uint64_t exit_ns;        /* the single I/O exit's round trip */
	uint32_t exits;          /* exits of the batch done */
	uint64_t exits_ns;       /* time they took */
	double exit_avg_ns;      /* mean round trip over the batch */
	char error[256];         /* a step that failed (not a slow guest): what and why */
};

/*
 * Opens the device, checks the API version and capabilities, and runs the
 * probe guest, each step only when the one before worked. Never blocks
 * past the two budgets (plus VM setup): a guest that never exits is cut
 * off. The guest runs on a thread of its own with every signal blocked
 * but the probe's timer signal, which only that thread's KVM_RUN sees
 * (KVM_SET_SIGNAL_MASK): no signal handler is installed in the caller's
 * process. Returns 0 when the figures are filled (slow or not), -1 when a
 * step failed (out->error says which, or open_errno / missing).
 */
int kvm_probe_run(const struct kvm_probe_opts *opts, struct kvm_probe *out);

/*
 * What a KVM_EXIT_INTERNAL_ERROR means, in words: the suberror, the
 * instruction bytes and address when known, and that the host's KVM
 * could not run it. insn may be NULL (ninsn 0).
 */
void kvm_internal_error_text(char *buf, size_t len, unsigned vcpu, uint32_t suberror, uint64_t rip,
			     const uint8_t *insn, size_t ninsn);

#endif

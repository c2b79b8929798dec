/*
 * x86_64 VM and vCPU state in a snapshot: the VMST section (PIT, kvmclock,
 * PIC master/slave, IOAPIC) and one VCPU section per vCPU (CPUID, TSC kHz,
 * mp_state, regs, sregs, xsave, xcrs, debug regs, LAPIC, MSRs, events).
 *
 * The order of the ioctls follows Firecracker's, for the reasons its
 * comments give:
 *   save     KVM_GET_MP_STATE first (it runs kvm_apic_accept_events(),
 *            which may change LAPIC and vCPU state), KVM_GET_LAPIC before
 *            KVM_GET_MSRS, KVM_GET_VCPU_EVENTS last (other GETs may still
 *            move pending events around);
 *   restore  KVM_SET_CPUID2 first (MSRs and LAPIC features depend on it),
 *            sregs (APIC base) before KVM_SET_LAPIC, the LAPIC before
 *            KVM_SET_MSRS (TSC_DEADLINE needs the timer mode), MSR_IA32_TSC
 *            before MSR_IA32_TSC_DEADLINE, KVM_SET_VCPU_EVENTS last.
 * The file holds the fields in restore order; save reads them into memory
 * in save order first.
 *
 * Everything read back is hostile: blobs must have exactly the size of the
 * kernel struct, counts are bounded, and KVM refuses what it cannot take;
 * every refusal is reported against the section it came from.
 */
#include "vmm/x86/snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "base/snapshot.h"
#include "vmm/arch.h"
#include "vmm/vm.h"
#include "vmm/x86/cpuid.h"

#define X86_VMST_VERSION 1
#define X86_VCPU_VERSION 1
/* KVM takes at most 256 CPUID entries (KVM_MAX_CPUID_ENTRIES). */
#define X86_CPUID_MAX 256
#define X86_MSRS_MAX 1024
#define X86_XSAVE_LEGACY 4096u

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

/* ---- setup ------------------------------------------------------------------- */

void x86_msr_order(uint32_t *idx, uint32_t n)
{
	uint32_t out = 0;
	bool tsc = false, deadline = false;

	for (uint32_t i = 0; i < n; i++) {
		if (idx[i] == MSR_IA32_TSC)
			tsc = true;
		else if (idx[i] == MSR_IA32_TSC_DEADLINE)
			deadline = true;
		else
			idx[out++] = idx[i];
	}
	/* Shift up to make room for the TSC in front. */
	if (tsc) {
		memmove(idx + 1, idx, out * sizeof(*idx));
		idx[0] = MSR_IA32_TSC;
		out++;
	}
	if (deadline)
		idx[out++] = MSR_IA32_TSC_DEADLINE;
}

static struct kvm_msr_list *msr_list_get(int kvm_fd)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };

	/* The first call fails with E2BIG and says how many there are. */
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return NULL;
	if (probe.nmsrs > X86_MSRS_MAX) {
		errno = E2BIG;
		return NULL;
	}
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
	if (!l)
		return NULL;
	l->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		free(l);
		return NULL;
	}
	return l;
}

static struct kvm_msrs *msrs_alloc(uint32_t n)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + (size_t)n * sizeof(struct kvm_msr_entry));

	if (m)
		m->nmsrs = n;
	return m;
}

/*
 * Keeps the MSRs KVM_GET_MSRS reads on this vCPU: the index list also
 * names MSRs the vCPU's CPUID does not have. KVM_GET_MSRS stops at the
 * first one it refuses and returns how many it read, so each refusal
 * costs one more call, not one call per MSR.
 */
static int msr_list_filter(int vcpu_fd, struct kvm_msr_list *l)
{
	struct kvm_msrs *m = msrs_alloc(l->nmsrs);
	uint32_t keep = 0, pos = 0;

	if (!m)
		return -ENOMEM;
	while (pos < l->nmsrs) {
		uint32_t n = l->nmsrs - pos;
		m->nmsrs = n;
		for (uint32_t i = 0; i < n; i++)
			m->entries[i] = (struct kvm_msr_entry){ .index = l->indices[pos + i] };
		int rc = ioctl(vcpu_fd, KVM_GET_MSRS, m);
		if (rc < 0) {
			free(m);
			return -errno;
		}
		for (int i = 0; i < rc; i++)
			l->indices[keep++] = l->indices[pos + (uint32_t)i];
		pos += (uint32_t)rc + ((uint32_t)rc < n ? 1 : 0); /* skip the refused one */
	}
	l->nmsrs = keep;
	free(m);
	return 0;
}

int arch_snapshot_setup(struct vm *vm, struct vmm_err *err)
{
	int size = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	/* KVM_CAP_XSAVE2 gives the size of the guest's whole XSAVE area when
	 * it is larger than the legacy 4 KiB struct (AMX); 0 on older KVM. */
	vm->xsave_size = size > (int)X86_XSAVE_LEGACY ? (uint32_t)size : X86_XSAVE_LEGACY;
	/* A restore takes the list its snapshot was captured with (checked by
	 * KVM_SET_MSRS as it loads): probing costs a restore many ioctls. */
	if (vm->mem.file_backed)
		return 0;
	vm->msr_index = msr_list_get(vm->kvm_fd);
	if (!vm->msr_index)
		return vmm_err_set(err, -errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
	int rc = msr_list_filter(vm->vcpus[0].fd, vm->msr_index);
	if (rc < 0)
		return vmm_err_set(err, rc, "KVM_GET_MSRS (probing the MSR list): %s", strerror(-rc));
	x86_msr_order(vm->msr_index->indices, vm->msr_index->nmsrs);
	return 0;
}

/* ---- VM: PIT, kvmclock, interrupt controllers ---------------------------------- */

static const uint32_t irqchip_ids[] = { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
					KVM_IRQCHIP_IOAPIC };
#define IRQCHIPS (sizeof(irqchip_ids) / sizeof(irqchip_ids[0]))

void arch_vm_save(struct vm *vm, struct snap_writer *w)
{
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock = { 0 };
	struct kvm_irqchip chip[IRQCHIPS];

	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
		snap_writer_fail(w, -errno, "KVM_GET_PIT2: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		snap_writer_fail(w, -errno, "KVM_GET_CLOCK: %s", strerror(errno));
	for (unsigned i = 0; i < IRQCHIPS; i++) {
		memset(&chip[i], 0, sizeof(chip[i]));
		chip[i].chip_id = irqchip_ids[i];
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip[i]) < 0)
			snap_writer_fail(w, -errno, "KVM_GET_IRQCHIP %u: %s", irqchip_ids[i],
					 strerror(errno));
	}
	snap_section_begin(w, SNAP_TAG_VM, 0, X86_VMST_VERSION);
	snap_put_blob(w, &pit, sizeof(pit));
	snap_put_u64(w, clock.clock);
	for (unsigned i = 0; i < IRQCHIPS; i++)
		snap_put_blob(w, &chip[i].chip, sizeof(chip[i].chip));
	snap_section_end(w);
}

static int section_open(struct snap_reader *r, uint32_t tag, uint32_t index, uint32_t version)
{
	int rc = snap_section_enter(r, tag, index);

	if (rc < 0)
		return rc;
	if (snap_section_version(r) != version)
		return snap_reader_fail(r, "section version %u; this supermachine reads %u",
					snap_section_version(r), version);
	return 0;
}

static int vm_ioctl_set(struct snap_reader *r, int fd, unsigned long req, const char *name,
			void *arg)
{
	if (ioctl(fd, req, arg) < 0)
		return snap_reader_fail(r, "%s: %s", name, strerror(errno));
	return 0;
}

int arch_vm_restore(struct vm *vm, struct snap_reader *r)
{
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock = { 0 };
	struct kvm_irqchip chip[IRQCHIPS];
	int rc = section_open(r, SNAP_TAG_VM, 0, X86_VMST_VERSION);

	if (rc < 0)
		return rc;
	uint64_t ns;

	if (snap_get_blob(r, &pit, sizeof(pit)) < 0 || snap_get_u64(r, &ns) < 0)
		return -EBADMSG;
	clock.clock = ns;
	for (unsigned i = 0; i < IRQCHIPS; i++) {
		memset(&chip[i], 0, sizeof(chip[i]));
		chip[i].chip_id = irqchip_ids[i];
		if (snap_get_blob(r, &chip[i].chip, sizeof(chip[i].chip)) < 0)
			return -EBADMSG;
	}
	if (snap_section_left(r))
		return snap_section_leave(r);
	/* Firecracker's order: PIT, clock, then the interrupt controllers. */
	if ((rc = vm_ioctl_set(r, vm->vm_fd, KVM_SET_PIT2, "KVM_SET_PIT2", &pit)) < 0)
		return rc;
	/* flags 0: the clock continues from the captured value, as if no time passed. */
	if ((rc = vm_ioctl_set(r, vm->vm_fd, KVM_SET_CLOCK, "KVM_SET_CLOCK", &clock)) < 0)
		return rc;
	for (unsigned i = 0; i < IRQCHIPS; i++)
		if ((rc = vm_ioctl_set(r, vm->vm_fd, KVM_SET_IRQCHIP, "KVM_SET_IRQCHIP", &chip[i])) < 0)
			return rc;
	return snap_section_leave(r);
}

/* ---- vCPUs ------------------------------------------------------------------- */

/* Everything one vCPU section holds. */
struct x86_vcpu_state {
	struct kvm_cpuid2 *cpuid;
	uint32_t tsc_khz;
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave *xsave; /* vm->xsave_size bytes */
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dregs;
	struct kvm_lapic_state lapic;
	struct kvm_msrs *msrs;
	struct kvm_vcpu_events events;
};

static void vcpu_state_free(struct x86_vcpu_state *s)
{
	free(s->cpuid);
	free(s->xsave);
	free(s->msrs);
}

static int vcpu_state_alloc(struct vm *vm, struct x86_vcpu_state *s, uint32_t nmsrs)
{
	memset(s, 0, sizeof(*s));
	s->cpuid = calloc(1, sizeof(*s->cpuid) + X86_CPUID_MAX * sizeof(struct kvm_cpuid_entry2));
	s->xsave = calloc(1, vm->xsave_size);
	s->msrs = msrs_alloc(nmsrs);
	if (!s->cpuid || !s->xsave || !s->msrs) {
		vcpu_state_free(s);
		return -ENOMEM;
	}
	s->cpuid->nent = X86_CPUID_MAX;
	return 0;
}

#define VCPU_GET(w, v, req, arg)                                                             \
	do {                                                                                 \
		if (ioctl((v)->fd, req, arg) < 0)                                            \
			snap_writer_fail(w, -errno, "vCPU %u: " #req ": %s", (v)->index,     \
					 strerror(errno));                                   \
	} while (0)

/* The GETs, in the order Firecracker found safe (see the top of the file). */
static void vcpu_state_read(struct vm *vm, struct vcpu *v, struct x86_vcpu_state *s,
			    struct snap_writer *w)
{
	VCPU_GET(w, v, KVM_GET_MP_STATE, &s->mp);
	VCPU_GET(w, v, KVM_GET_REGS, &s->regs);
	VCPU_GET(w, v, KVM_GET_SREGS, &s->sregs);
	if (vm->xsave_size > X86_XSAVE_LEGACY)
		VCPU_GET(w, v, KVM_GET_XSAVE2, s->xsave);
	else
		VCPU_GET(w, v, KVM_GET_XSAVE, s->xsave);
	VCPU_GET(w, v, KVM_GET_XCRS, &s->xcrs);
	VCPU_GET(w, v, KVM_GET_DEBUGREGS, &s->dregs);
	VCPU_GET(w, v, KVM_GET_LAPIC, &s->lapic);
	int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	if (khz <= 0)
		snap_writer_fail(w, -EIO, "vCPU %u: KVM_GET_TSC_KHZ failed", v->index);
	s->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	VCPU_GET(w, v, KVM_GET_CPUID2, s->cpuid);
	for (uint32_t i = 0; i < s->msrs->nmsrs; i++)
		s->msrs->entries[i] = (struct kvm_msr_entry){ .index = vm->msr_index->indices[i] };
	int n = ioctl(v->fd, KVM_GET_MSRS, s->msrs);
	if (n != (int)s->msrs->nmsrs)
		snap_writer_fail(w, -EIO, "vCPU %u: KVM_GET_MSRS read %d of %u MSRs", v->index, n,
				 s->msrs->nmsrs);
	VCPU_GET(w, v, KVM_GET_VCPU_EVENTS, &s->events);
}

static void vcpu_state_put(struct vm *vm, const struct x86_vcpu_state *s, struct snap_writer *w)
{
	snap_put_u32(w, s->cpuid->nent);
	snap_put_blob(w, s->cpuid->entries, s->cpuid->nent * sizeof(struct kvm_cpuid_entry2));
	snap_put_u32(w, s->tsc_khz);
	snap_put_blob(w, &s->mp, sizeof(s->mp));
	snap_put_blob(w, &s->regs, sizeof(s->regs));
	snap_put_blob(w, &s->sregs, sizeof(s->sregs));
	snap_put_blob(w, s->xsave, vm->xsave_size);
	snap_put_blob(w, &s->xcrs, sizeof(s->xcrs));
	snap_put_blob(w, &s->dregs, sizeof(s->dregs));
	snap_put_blob(w, &s->lapic, sizeof(s->lapic));
	snap_put_u32(w, s->msrs->nmsrs);
	for (uint32_t i = 0; i < s->msrs->nmsrs; i++) {
		snap_put_u32(w, s->msrs->entries[i].index);
		snap_put_u64(w, s->msrs->entries[i].data);
	}
	snap_put_blob(w, &s->events, sizeof(s->events));
}

void arch_vcpu_save(struct vm *vm, struct vcpu *v, struct snap_writer *w)
{
	struct x86_vcpu_state s;

	if (vcpu_state_alloc(vm, &s, vm->msr_index ? vm->msr_index->nmsrs : 0) < 0) {
		snap_writer_fail(w, -ENOMEM, "out of memory");
		return;
	}
	if (!vm->msr_index)
		snap_writer_fail(w, -EINVAL, "internal error: no MSR list");
	else
		vcpu_state_read(vm, v, &s, w);
	snap_section_begin(w, SNAP_TAG_VCPU, v->index, X86_VCPU_VERSION);
	vcpu_state_put(vm, &s, w);
	snap_section_end(w);
	vcpu_state_free(&s);
}

static int vcpu_cpuid_get(struct vm *vm, struct snap_reader *r, struct x86_vcpu_state *s)
{
	char why[160];
	uint32_t nent;
	size_t len;

	if (snap_get_u32(r, &nent) < 0)
		return -EBADMSG;
	if (nent == 0 || nent > X86_CPUID_MAX)
		return snap_reader_fail(r, "%u CPUID entries; 1 to %u are accepted", nent, X86_CPUID_MAX);
	if (snap_get_blob_max(r, s->cpuid->entries, nent * sizeof(struct kvm_cpuid_entry2), &len) < 0)
		return -EBADMSG;
	if (len != nent * sizeof(struct kvm_cpuid_entry2))
		return snap_reader_fail(r, "CPUID: %zu bytes for %u entries", len, nent);
	s->cpuid->nent = nent;
	if (x86_cpuid_check(s->cpuid, vm->cpuid, why, sizeof(why)) < 0)
		return snap_reader_fail(r, "this host's CPU cannot give the snapshot's CPUID: %s", why);
	return 0;
}

static int vcpu_msrs_get(struct snap_reader *r, struct x86_vcpu_state *s)
{
	uint32_t n;

	if (snap_get_u32(r, &n) < 0)
		return -EBADMSG;
	if (n > X86_MSRS_MAX)
		return snap_reader_fail(r, "%u MSRs; at most %u are accepted", n, X86_MSRS_MAX);
	free(s->msrs);
	s->msrs = msrs_alloc(n);
	if (!s->msrs)
		return snap_reader_fail(r, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		uint64_t data;
		if (snap_get_u32(r, &s->msrs->entries[i].index) < 0 || snap_get_u64(r, &data) < 0)
			return -EBADMSG;
		s->msrs->entries[i].data = data;
	}
	return 0;
}

/*
 * Parses the whole section before any ioctl, so a bad file changes nothing;
 * the section stays open so KVM's refusals are reported against it.
 */
static int vcpu_state_get(struct vm *vm, struct snap_reader *r, struct x86_vcpu_state *s)
{
	if (vcpu_cpuid_get(vm, r, s) < 0 || snap_get_u32(r, &s->tsc_khz) < 0 ||
	    snap_get_blob(r, &s->mp, sizeof(s->mp)) < 0 ||
	    snap_get_blob(r, &s->regs, sizeof(s->regs)) < 0 ||
	    snap_get_blob(r, &s->sregs, sizeof(s->sregs)) < 0 ||
	    snap_get_blob(r, s->xsave, vm->xsave_size) < 0 ||
	    snap_get_blob(r, &s->xcrs, sizeof(s->xcrs)) < 0 ||
	    snap_get_blob(r, &s->dregs, sizeof(s->dregs)) < 0 ||
	    snap_get_blob(r, &s->lapic, sizeof(s->lapic)) < 0 || vcpu_msrs_get(r, s) < 0 ||
	    snap_get_blob(r, &s->events, sizeof(s->events)) < 0)
		return -EBADMSG;
	if (snap_section_left(r))
		return snap_section_leave(r); /* reports the unread bytes */
	return 0;
}

/* Runs the TSC at the captured rate, or says this host cannot. */
static int vcpu_tsc_set(struct snap_reader *r, struct vcpu *v, uint32_t khz)
{
	int now = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);

	if (khz == 0)
		return snap_reader_fail(r, "TSC frequency 0 kHz");
	if (now > 0 && (uint32_t)now == khz)
		return 0;
	if (ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)khz) < 0)
		return snap_reader_fail(r, "the snapshot's TSC runs at %u kHz, this host's at %d kHz "
					"and KVM cannot scale it (%s)", khz, now, strerror(errno));
	return 0;
}

#define VCPU_SET(r, v, req, arg)                                                              \
	do {                                                                                  \
		if (ioctl((v)->fd, req, arg) < 0)                                             \
			return snap_reader_fail(r, #req ": %s", strerror(errno));             \
	} while (0)

/* The SETs, in the order Firecracker found safe (see the top of the file). */
static int vcpu_state_write(struct vcpu *v, struct x86_vcpu_state *s, struct snap_reader *r,
			    bool first)
{
	/* A reset in place keeps the CPUID and TSC rate it restored first:
	 * KVM refuses a CPUID change once the vCPU ran, and it is the same. */
	if (first) {
		VCPU_SET(r, v, KVM_SET_CPUID2, s->cpuid);
		if (vcpu_tsc_set(r, v, s->tsc_khz) < 0)
			return -EINVAL;
	}
	VCPU_SET(r, v, KVM_SET_MP_STATE, &s->mp);
	VCPU_SET(r, v, KVM_SET_REGS, &s->regs);
	VCPU_SET(r, v, KVM_SET_SREGS, &s->sregs);
	VCPU_SET(r, v, KVM_SET_XSAVE, s->xsave);
	VCPU_SET(r, v, KVM_SET_XCRS, &s->xcrs);
	VCPU_SET(r, v, KVM_SET_DEBUGREGS, &s->dregs);
	VCPU_SET(r, v, KVM_SET_LAPIC, &s->lapic);
	int n = ioctl(v->fd, KVM_SET_MSRS, s->msrs);
	if (n < 0)
		return snap_reader_fail(r, "KVM_SET_MSRS: %s", strerror(errno));
	if ((uint32_t)n != s->msrs->nmsrs)
		return snap_reader_fail(r, "KVM_SET_MSRS: this host refused MSR %#x (%d of %u set)",
					s->msrs->entries[n].index, n, s->msrs->nmsrs);
	VCPU_SET(r, v, KVM_SET_VCPU_EVENTS, &s->events);
	return 0;
}

/* The MSRs a restored VM saves in its own snapshots: the ones it was restored with. */
static int msr_list_adopt(struct vm *vm, const struct kvm_msrs *m)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + m->nmsrs * sizeof(uint32_t));

	if (!l)
		return -ENOMEM;
	l->nmsrs = m->nmsrs;
	for (uint32_t i = 0; i < m->nmsrs; i++)
		l->indices[i] = m->entries[i].index;
	vm->msr_index = l;
	return 0;
}

int arch_vcpu_restore(struct vm *vm, struct vcpu *v, struct snap_reader *r, bool first)
{
	struct x86_vcpu_state s;
	int rc = section_open(r, SNAP_TAG_VCPU, v->index, X86_VCPU_VERSION);

	if (rc < 0)
		return rc;
	if (vcpu_state_alloc(vm, &s, 0) < 0)
		return snap_reader_fail(r, "out of memory");
	rc = vcpu_state_get(vm, r, &s);
	if (rc == 0)
		rc = vcpu_state_write(v, &s, r, first);
	if (rc == 0 && !vm->msr_index && msr_list_adopt(vm, s.msrs) < 0)
		rc = snap_reader_fail(r, "out of memory");
	if (rc == 0)
		rc = snap_section_leave(r);
	vcpu_state_free(&s);
	return rc;
}

void arch_vcpu_paused(struct vcpu *v)
{
	/* Tells the guest (through its kvmclock page) that the vCPU was
	 * stopped by the host, so its soft-lockup watchdog does not fire.
	 * EINVAL until the guest enabled kvmclock: nothing to tell then. */
	if (ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0) < 0) {
		/* best effort */
	}
}

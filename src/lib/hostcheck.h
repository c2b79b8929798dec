/*
 * The host readiness report (`supermachine check`, sm_host_check) and the
 * refusal that sm_vm_start / sm_vm_restore make on a host whose /dev/kvm
 * cannot run the guest. The judging functions take figures, not devices,
 * so the unit tests can inject a fast, slow, missing or broken host.
 */
#ifndef SM_LIB_HOSTCHECK_H
#define SM_LIB_HOSTCHECK_H

#include <stdint.h>

#include <supermachine.h>

#include "base/kvm_host.h"

#define HOST_MAX_ITEMS 24
/*
 * Hardware virtualization runs guest kernel code at hundreds of M
 * instructions/s or more; software that emulates it runs a few M. Below
 * the first bound no kernel boots in reasonable time (FAIL); below the
 * second, VMs run but slowly (WARN: nested virtualization, or QEMU's TCG
 * under tests/nested).
 */
#define HOST_MIN_GUEST_IPS 20e6
#define HOST_HW_GUEST_IPS 300e6
/* An I/O exit round trip: a few µs on hardware; past these, WARN then FAIL. */
#define HOST_WARN_EXIT_NS 20000.0
#define HOST_FAIL_EXIT_NS 1000000.0
/* Free space in the store: FAIL below the first (no rootfs fits), WARN below the second. */
#define HOST_MIN_FREE_BYTES (256ull << 20)
#define HOST_WARN_FREE_BYTES (2ull << 30)
#define HOST_KVM_CACHE_NAME "kvm-probe.json"

struct host_item {
	char name[32];
	sm_check_status status;
	char detail[512];
	char hint[384];
	double value;     /* the measured figure, when unit is set */
	const char *unit; /* NULL: no figure */
};

struct sm_host_report {
	struct host_item items[HOST_MAX_ITEMS];
	size_t n;
};

/* The KVM lines (kvm.device, kvm.api, kvm.caps, kvm.guest, kvm.speed, kvm.exits) from a probe's figures. */
void hostcheck_judge_kvm(struct sm_host_report *r, const char *device, const struct kvm_probe *p);
/* The store line from where it is, whether a file could be made there (0 or an errno), and its free bytes. */
void hostcheck_judge_store(struct sm_host_report *r, const char *root, int write_errno, uint64_t free_bytes);
/* The tests/nested hint, for a host whose KVM cannot run VMs: qemu is the path of QEMU, or NULL. */
void hostcheck_judge_nested(struct sm_host_report *r, const char *qemu);
/*
 * The jail line of a process that is not root, from the host's user
 * namespace settings: kernel.unprivileged_userns_clone (-1: no such
 * setting) and user.max_user_namespaces (-1: unreadable).
 */
void hostcheck_judge_userns(struct sm_host_report *r, int unprivileged_clone, long max_user_namespaces);
/*
 * The cgroup line of root: the leaves' parent (vm_cgroup_probe), or NULL
 * and why there can be none; jailed: SUPERMACHINE_JAIL=1.
 */
void hostcheck_judge_cgroup(struct sm_host_report *r, bool jailed, const char *parent, const char *why);
/* False when any line is a FAIL. */
bool hostcheck_can_run(const struct sm_host_report *r);

/*
 * The check sm_vm_start and sm_vm_restore make first: 0 when this host's
 * KVM can run the guest, else -1 with SM_E_KVM saying why. The probe's
 * verdict is cached in the runtime directory, keyed by the boot id and
 * the device, so only the first VM after a boot pays for it.
 */
int hostcheck_require_kvm(sm_error **err);
/* Where that verdict is cached for dev, and the key it must carry; -1 when there is no cache. */
int hostcheck_kvm_cache(const char *dev, char *path, size_t plen, char *key, size_t klen);

#endif

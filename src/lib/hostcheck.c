/*
 * The host readiness report (sm_host_check, `supermachine check`) and the
 * KVM refusal of sm_vm_start / sm_vm_restore (hostcheck.h).
 */
#include "lib/hostcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fsutil.h"
#include "lib/assets.h"
#include "lib/vm.h"
#include "lib/vm_cgroup.h"
#include "oci/oci.h"

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)

__attribute__((format(printf, 4, 5))) static struct host_item *item_add(struct sm_host_report *r, const char *name,
									  sm_check_status status, const char *fmt, ...)
{
	static struct host_item overflow; /* past HOST_MAX_ITEMS: a bug, written nowhere visible */
	struct host_item *it = r->n < HOST_MAX_ITEMS ? &r->items[r->n++] : &overflow;
	va_list ap;

	*it = (struct host_item){ .status = status };
	snprintf(it->name, sizeof(it->name), "%s", name);
	va_start(ap, fmt);
	vsnprintf(it->detail, sizeof(it->detail), fmt, ap);
	va_end(ap);
	return it;
}

static void item_hint(struct host_item *it, const char *hint)
{
	snprintf(it->hint, sizeof(it->hint), "%s", hint);
}

static void item_figure(struct host_item *it, double value, const char *unit)
{
	it->value = value;
	it->unit = unit;
}

/* ---- judging: figures in, lines out ---------------------------------------- */

static void judge_open(struct sm_host_report *r, const char *dev, int e)
{
	struct host_item *it;

	if (e == ENOENT || e == ENODEV || e == ENXIO) {
		it = item_add(r, "kvm.device", SM_CHECK_FAIL, "%s does not exist (%s)", dev, strerror(e));
		item_hint(it, "enable virtualization (VT-x/AMD-V in the firmware, or nested virtualization for a "
			      "cloud VM) and load kvm_intel or kvm_amd");
	} else if (e == EACCES || e == EPERM) {
		it = item_add(r, "kvm.device", SM_CHECK_FAIL, "%s: permission denied for uid %u", dev,
			      (unsigned)geteuid());
		item_hint(it, "add this user to the 'kvm' group (usermod -aG kvm USER) and log in again, "
			      "or run as root");
	} else {
		it = item_add(r, "kvm.device", SM_CHECK_FAIL, "%s does not open: %s", dev, strerror(e));
		item_hint(it, "check that the KVM module is loaded (lsmod | grep kvm) and dmesg for errors");
	}
}

static void judge_speed(struct sm_host_report *r, const struct kvm_probe *p)
{
	double mips = p->insns_per_s / 1e6;
	const char *how = p->loop_done ? "a loop at CPL 0" : "a loop at CPL 0, cut off by its time bound";
	struct host_item *it;

	if (p->insns_per_s < HOST_MIN_GUEST_IPS) {
		it = item_add(r, "kvm.speed", SM_CHECK_FAIL,
			      "guest kernel code runs at %.1f M instructions/s (%s); hardware virtualization runs "
			      "hundreds of M/s: this /dev/kvm emulates guest kernel code and cannot run the guest",
			      mips, how);
		item_hint(it, "use a host with hardware virtualization (VT-x or AMD-V), or one whose nested "
			      "virtualization is enabled");
	} else if (p->insns_per_s < HOST_HW_GUEST_IPS) {
		it = item_add(r, "kvm.speed", SM_CHECK_WARN,
			      "guest kernel code runs at %.0f M instructions/s (%s), slower than hardware "
			      "virtualization (hundreds of M/s or more): nested or emulated; VMs run, slowly",
			      mips, how);
	} else {
		it = item_add(r, "kvm.speed", SM_CHECK_OK, "guest kernel code runs at %.0f M instructions/s (%s)",
			      mips, how);
	}
	item_figure(it, mips, "M instructions/s");
}

static void judge_exits(struct sm_host_report *r, const struct kvm_probe *p)
{
	double us = (p->exits ? p->exit_avg_ns : (double)p->exit_ns) / 1000.0;
	struct host_item *it;

	if (!p->exit_ns) {
		it = item_add(r, "kvm.exits", SM_CHECK_FAIL, "no I/O exit came back from the probe guest in time");
		item_hint(it, "this /dev/kvm cannot run the guest: see kvm.speed");
		return;
	}
	if (us * 1000.0 > HOST_FAIL_EXIT_NS)
		it = item_add(r, "kvm.exits", SM_CHECK_FAIL, "an I/O exit round trip takes %.0f us (over %u exits); "
			      "hardware virtualization takes a few us", us, p->exits + 1);
	else if (us * 1000.0 > HOST_WARN_EXIT_NS)
		it = item_add(r, "kvm.exits", SM_CHECK_WARN, "an I/O exit round trip takes %.1f us (over %u exits), "
			      "more than hardware virtualization's few us: device I/O will be slow", us, p->exits + 1);
	else
		it = item_add(r, "kvm.exits", SM_CHECK_OK, "an I/O exit round trip takes %.1f us (over %u exits)",
			      us, p->exits + 1);
	item_figure(it, us, "us");
}

void hostcheck_judge_kvm(struct sm_host_report *r, const char *device, const struct kvm_probe *p)
{
	struct host_item *it;

	if (p->open_errno)
		return judge_open(r, device, p->open_errno);
	item_add(r, "kvm.device", SM_CHECK_OK, "%s opens read-write", device);
	if (p->api_version != KVM_HOST_API_VERSION) {
		it = item_add(r, "kvm.api", SM_CHECK_FAIL, "KVM API version %d, not %d", p->api_version,
			      KVM_HOST_API_VERSION);
		return item_hint(it, "this KVM is too old or not Linux's: use a Linux 4.14 or later host");
	}
	item_add(r, "kvm.api", SM_CHECK_OK, "KVM API version %d", p->api_version);
	if (p->missing[0]) {
		it = item_add(r, "kvm.caps", SM_CHECK_FAIL, "KVM lacks %s", p->missing);
		return item_hint(it, "use a newer host kernel with full KVM support");
	}
	item_add(r, "kvm.caps", SM_CHECK_OK, "every capability the VMM needs is there");
	if (!p->ran || p->error[0]) {
		it = item_add(r, "kvm.guest", SM_CHECK_FAIL, "the probe guest could not run: %s",
			      p->error[0] ? p->error : "KVM_RUN never returned from it");
		return item_hint(it, "this /dev/kvm cannot run a 64-bit guest: check dmesg");
	}
	judge_speed(r, p);
	judge_exits(r, p);
}

void hostcheck_judge_store(struct sm_host_report *r, const char *root, int write_errno, uint64_t free_bytes)
{
	struct host_item *it;

	if (write_errno) {
		it = item_add(r, "store", SM_CHECK_FAIL, "cannot write in the store %s: %s", root,
			      strerror(write_errno));
		item_hint(it, "set SUPERMACHINE_HOME to a writable directory");
	} else if (free_bytes < HOST_MIN_FREE_BYTES) {
		it = item_add(r, "store", SM_CHECK_FAIL, "the store %s has %.0f MiB free: no root filesystem fits",
			      root, (double)free_bytes / MIB);
		item_hint(it, "free disk space, or set SUPERMACHINE_HOME to a larger filesystem");
	} else if (free_bytes < HOST_WARN_FREE_BYTES) {
		it = item_add(r, "store", SM_CHECK_WARN, "the store %s has only %.2f GiB free", root,
			      (double)free_bytes / GIB);
		item_hint(it, "images and snapshots take hundreds of MiB each: free disk space");
	} else {
		it = item_add(r, "store", SM_CHECK_OK, "the store %s is writable, %.1f GiB free", root,
			      (double)free_bytes / GIB);
	}
	item_figure(it, (double)free_bytes / GIB, "GiB");
}

void hostcheck_judge_nested(struct sm_host_report *r, const char *qemu)
{
	struct host_item *it;

	if (qemu) {
		it = item_add(r, "nested", SM_CHECK_WARN, "%s is installed: tests/nested can run VMs inside QEMU's "
			      "software emulation of a CPU with SVM (slow; for tests, not for serving)", qemu);
		item_hint(it, "in a source tree, `make test` and `make demo` do so by themselves");
	} else {
		it = item_add(r, "nested", SM_CHECK_WARN, "no qemu-system-x86_64: tests/nested cannot run VMs here "
			      "under emulation either");
		item_hint(it, "install QEMU (scripts/setup does) to run the tests under tests/nested");
	}
}

bool hostcheck_can_run(const struct sm_host_report *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->items[i].status == SM_CHECK_FAIL)
			return false;
	return true;
}

/* ---- measuring: this host ------------------------------------------------------ */

static const char *kvm_device(void)
{
	const char *d = getenv("SUPERMACHINE_KVM_DEVICE"); /* tests: another device or a missing path */

	return d && *d ? d : KVM_HOST_DEVICE;
}

static void check_kvm(struct sm_host_report *r)
{
	struct kvm_probe_opts o = { .device = kvm_device(), .program = KVM_PROBE_MEASURE };
	struct kvm_probe p;

	kvm_probe_run(&o, &p);
	hostcheck_judge_kvm(r, o.device, &p);
}

static void check_asset(struct sm_host_report *r, const char *name, const char *path, const char *from)
{
	item_add(r, name, SM_CHECK_OK, "%s (%s)", path, from);
}

static void check_assets(struct sm_host_report *r)
{
	struct vm_asset_paths a;
	sm_error *e = NULL;
	struct host_item *it;

	if (vm_assets_find(NULL, &a, &e) < 0) {
		it = item_add(r, "assets", SM_CHECK_FAIL, "%s", sm_error_string(e));
		item_hint(it, "install supermachine, or set SUPERMACHINE_KERNEL_DIR / SUPERMACHINE_ASSETS_DIR "
			      "(docs/api.md, asset discovery)");
		sm_error_free(e);
		return;
	}
	check_asset(r, "assets.kernel", a.kernel, a.kernel_from);
	check_asset(r, "assets.initramfs", a.initramfs, a.initramfs_from);
	check_asset(r, "assets.worker", a.worker, a.worker_from);
}

/* 0 when a file can be made (and is removed again) in dir/tmp, else the errno. */
static int store_writable(const char *root)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/tmp/.check-XXXXXX", root);
	fd = mkstemp(path);
	if (fd < 0)
		return errno;
	close(fd);
	unlink(path);
	return 0;
}

static void check_store(struct sm_host_report *r)
{
	struct oci_store *st = NULL;
	struct statvfs vfs;
	sm_error *e = NULL;
	struct host_item *it;
	const char *root;

	if (oci_store_open(NULL, &st, &e) < 0) {
		it = item_add(r, "store", SM_CHECK_FAIL, "%s", sm_error_string(e));
		item_hint(it, "set SUPERMACHINE_HOME to a writable directory");
		sm_error_free(e);
		return;
	}
	root = oci_store_root(st);
	if (statvfs(root, &vfs) < 0)
		hostcheck_judge_store(r, root, errno, 0);
	else
		hostcheck_judge_store(r, root, store_writable(root), (uint64_t)vfs.f_bavail * vfs.f_frsize);
	oci_store_close(st);
}

static void check_runtime(struct sm_host_report *r)
{
	char base[VM_PATH_MAX];
	sm_error *e = NULL;
	struct host_item *it;

	if (vm_runtime_base(base, sizeof(base), &e) == 0) {
		item_add(r, "runtime", SM_CHECK_OK, "VM runtime directories go under %s", base);
		return;
	}
	it = item_add(r, "runtime", SM_CHECK_FAIL, "%s", sm_error_string(e));
	item_hint(it, "set XDG_RUNTIME_DIR to a directory private to this user");
	sm_error_free(e);
}

/* The first line of a small /proc or /sys file, without its newline; "" when unreadable. */
static void read_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "re");

	out[0] = 0;
	if (!f)
		return;
	if (!fgets(out, (int)len, f))
		out[0] = 0;
	fclose(f);
	out[strcspn(out, "\n")] = 0;
}

/* The bracketed choice of a sysfs setting ("always [madvise] never" -> "madvise"); "" if unreadable. */
static void sysfs_choice(const char *path, char *out, size_t len)
{
	char buf[256], *a, *b;

	read_line(path, buf, sizeof(buf));
	out[0] = 0;
	if ((a = strchr(buf, '[')) && (b = strchr(a, ']'))) {
		*b = 0;
		snprintf(out, len, "%s", a + 1);
	}
}

static void check_thp(struct sm_host_report *r)
{
	char thp[32], shmem[32];
	struct host_item *it;

	sysfs_choice("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof(thp));
	sysfs_choice("/sys/kernel/mm/transparent_hugepage/shmem_enabled", shmem, sizeof(shmem));
	if (!thp[0] || !strcmp(thp, "never")) {
		it = item_add(r, "thp", SM_CHECK_WARN, "transparent huge pages are %s: guest RAM is mapped with "
			      "4 KiB pages (more VM exits and page faults)", thp[0] ? "off" : "not available");
		item_hint(it, "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled");
		return;
	}
	item_add(r, "thp", SM_CHECK_OK, "transparent huge pages: %s (shmem: %s)", thp, shmem[0] ? shmem : "?");
}

static void check_overcommit(struct sm_host_report *r)
{
	char buf[16];
	struct host_item *it;

	read_line("/proc/sys/vm/overcommit_memory", buf, sizeof(buf));
	if (buf[0] == '2') {
		it = item_add(r, "overcommit", SM_CHECK_WARN, "vm.overcommit_memory=2: every restored VM is charged "
			      "its whole RAM up front, so few clones fit");
		item_hint(it, "sysctl vm.overcommit_memory=0 (the default)");
		return;
	}
	item_add(r, "overcommit", SM_CHECK_OK, "vm.overcommit_memory=%c: restored VMs share their snapshot's "
		 "pages copy-on-write", buf[0] ? buf[0] : '?');
}

/* The worker's sandbox: a seccomp filter whose action is SIGSYS (trap), synced to every thread. */
static void check_seccomp(struct sm_host_report *r)
{
	char acts[256];
	struct host_item *it;

	read_line("/proc/sys/kernel/seccomp/actions_avail", acts, sizeof(acts));
	if (prctl(PR_GET_SECCOMP) < 0 || !strstr(acts, "trap")) {
		it = item_add(r, "seccomp", SM_CHECK_FAIL, "seccomp filters are not available (actions: %s)",
			      acts[0] ? acts : "none");
		item_hint(it, "use a kernel built with CONFIG_SECCOMP_FILTER: the worker's sandbox needs it");
		return;
	}
	item_add(r, "seccomp", SM_CHECK_OK, "seccomp filters with the trap action (the worker's sandbox)");
}

/* Whether a child may unshare the namespaces a jailed worker starts in: 0 or an errno. */
static int jail_namespaces_errno(void)
{
	struct worker_launch l = { .jail.root = "/" };
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return errno;
	if (pid == 0)
		_exit(unshare((int)worker_jail_clone_flags(&l)) < 0 ? errno & 0xff : 0);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
}

void hostcheck_judge_userns(struct sm_host_report *r, int unprivileged_clone, long max_user_namespaces)
{
	char max[24] = "unknown";

	if (unprivileged_clone == 0) {
		item_add(r, "jail", SM_CHECK_OK, "not root: workers run with seccomp and no_new_privs only; user "
			 "namespaces are not allowed here (kernel.unprivileged_userns_clone=0)");
		return;
	}
	if (max_user_namespaces == 0) {
		item_add(r, "jail", SM_CHECK_OK, "not root: workers run with seccomp and no_new_privs only; user "
			 "namespaces are not allowed here (user.max_user_namespaces=0)");
		return;
	}
	if (max_user_namespaces > 0)
		snprintf(max, sizeof(max), "%ld", max_user_namespaces);
	item_add(r, "jail", SM_CHECK_OK, "not root: workers run with seccomp and no_new_privs, without a jail; "
		 "user namespaces are possible here (user.max_user_namespaces=%s) but not used yet", max);
}

/* A number from a /proc/sys file: -1 when it is absent or not a number. */
static long read_sysctl(const char *path)
{
	char buf[64], *end;
	long v;

	read_line(path, buf, sizeof(buf));
	errno = 0;
	v = strtol(buf, &end, 10);
	return !buf[0] || *end || errno || v < 0 ? -1 : v;
}

static void check_userns(struct sm_host_report *r)
{
	hostcheck_judge_userns(r, (int)read_sysctl("/proc/sys/kernel/unprivileged_userns_clone"),
			       read_sysctl("/proc/sys/user/max_user_namespaces"));
}

void hostcheck_judge_cgroup(struct sm_host_report *r, bool jailed, const char *parent, const char *why)
{
	struct host_item *it;

	if (parent) {
		item_add(r, "cgroup", SM_CHECK_OK, "%s worker gets a cgroup v2 leaf under %s: memory.max = guest "
			 "RAM + %u MiB, cpu.max = its vCPUs", jailed ? "each jailed" : "with SUPERMACHINE_JAIL=1, each",
			 parent, VM_CGROUP_VMM_MIB + VM_CGROUP_VSOCK_MIB);
		return;
	}
	if (!jailed) {
		item_add(r, "cgroup", SM_CHECK_OK, "no cgroup leaf for workers (nor with SUPERMACHINE_JAIL=1): %s", why);
		return;
	}
	it = item_add(r, "cgroup", SM_CHECK_WARN, "jailed workers get no cgroup leaf, so no memory.max or cpu.max: "
		      "%s", why);
	item_hint(it, "run as root where cgroup v2 is mounted on " VM_CGROUP_ROOT " with the memory and cpu "
		  "controllers enabled for this process's cgroup");
}

static void check_cgroup(struct sm_host_report *r)
{
	char parent[4096], why[512];

	if (geteuid() != 0)
		return; /* only a jailed worker, root's, gets a leaf */
	if (vm_cgroup_host(parent, sizeof(parent), why, sizeof(why)) < 0)
		return hostcheck_judge_cgroup(r, vm_jail_wanted(), NULL, why);
	hostcheck_judge_cgroup(r, vm_jail_wanted(), parent, NULL);
}

/* Which confinement a worker started now gets (docs/security.md): the jail, or seccomp alone. */
static void check_jail(struct sm_host_report *r)
{
	struct host_item *it;
	int e;

	if (geteuid() != 0)
		return check_userns(r);
	if (!vm_jail_wanted()) {
		it = item_add(r, "jail", SM_CHECK_WARN, "workers run as root with seccomp and no_new_privs only: "
			      "the jail is opt-in in this version");
		item_hint(it, "SUPERMACHINE_JAIL=1 jails them (see docs/security.md for what a jailed worker "
			  "cannot do yet)");
		return;
	}
	e = jail_namespaces_errno();
	if (e) {
		it = item_add(r, "jail", SM_CHECK_FAIL, "workers are jailed as root, but new namespaces are "
			      "refused here: %s", strerror(e));
		item_hint(it, "run where namespaces are allowed, or unset SUPERMACHINE_JAIL (no jail)");
		return;
	}
	item_add(r, "jail", SM_CHECK_OK, "workers are jailed: own namespaces, a pivoted root, uid %u and up, "
		 "rlimits, seccomp", WORKER_JAIL_ID_BASE);
}

/* The first qemu-system-x86_64 on PATH, into out; NULL when there is none. */
static const char *find_qemu(char *out, size_t len)
{
	const char *path = getenv("PATH");
	char *dirs, *save = NULL;

	if (!path || !(dirs = strdup(path)))
		return NULL;
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/qemu-system-x86_64", d);
		if (access(out, X_OK) == 0) {
			free(dirs);
			return out;
		}
	}
	free(dirs);
	return NULL;
}

static bool kvm_failed(const struct sm_host_report *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strncmp(r->items[i].name, "kvm.", 4) && r->items[i].status == SM_CHECK_FAIL)
			return true;
	return false;
}

sm_host_report *sm_host_check(unsigned flags, sm_error **err)
{
	struct sm_host_report *r = calloc(1, sizeof(*r));
	char qemu[4200];

	if (!r)
		return sm_error_set(err, SM_E_NOMEM, 0, "host check"), NULL;
	check_kvm(r);
	if (!(flags & SM_CHECK_KVM_ONLY)) {
		check_assets(r);
		check_store(r);
		check_runtime(r);
		check_thp(r);
		check_overcommit(r);
		check_seccomp(r);
		check_jail(r);
		check_cgroup(r);
	}
	if (kvm_failed(r))
		hostcheck_judge_nested(r, find_qemu(qemu, sizeof(qemu)));
	return r;
}

/* ---- the report's accessors and renderings ---------------------------------------- */

static const struct host_item *item_at(const sm_host_report *r, size_t i)
{
	return r && i < r->n ? &r->items[i] : NULL;
}

size_t sm_host_report_count(const sm_host_report *r)
{
	return r ? r->n : 0;
}

const char *sm_host_report_name(const sm_host_report *r, size_t i)
{
	const struct host_item *it = item_at(r, i);

	return it ? it->name : NULL;
}

sm_check_status sm_host_report_status(const sm_host_report *r, size_t i)
{
	const struct host_item *it = item_at(r, i);

	return it ? it->status : SM_CHECK_FAIL;
}

const char *sm_host_report_detail(const sm_host_report *r, size_t i)
{
	const struct host_item *it = item_at(r, i);

	return it ? it->detail : NULL;
}

const char *sm_host_report_hint(const sm_host_report *r, size_t i)
{
	const struct host_item *it = item_at(r, i);

	return it && it->hint[0] ? it->hint : NULL;
}

const char *sm_host_report_figure(const sm_host_report *r, size_t i, double *value)
{
	const struct host_item *it = item_at(r, i);

	if (!it || !it->unit)
		return NULL;
	if (value)
		*value = it->value;
	return it->unit;
}

bool sm_host_report_can_run(const sm_host_report *r)
{
	return r && hostcheck_can_run(r);
}

const char *sm_check_status_name(sm_check_status s)
{
	switch (s) {
	case SM_CHECK_OK: return "ok";
	case SM_CHECK_WARN: return "warn";
	case SM_CHECK_FAIL: return "FAIL";
	}
	return "?";
}

char *sm_host_report_text(const sm_host_report *r)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	size_t fails = 0;

	if (!f)
		return NULL;
	for (size_t i = 0; r && i < r->n; i++) {
		const struct host_item *it = &r->items[i];
		fprintf(f, "%-4s  %-16s %s\n", sm_check_status_name(it->status), it->name, it->detail);
		if (it->hint[0])
			fprintf(f, "      %-16s -> %s\n", "", it->hint);
		fails += it->status == SM_CHECK_FAIL;
	}
	if (fails)
		fprintf(f, "VMs cannot run on this host (%zu FAIL)\n", fails);
	else
		fprintf(f, "VMs can run on this host\n");
	fclose(f);
	return out;
}

char *sm_host_report_json(const sm_host_report *r)
{
	json_t *a = json_array();
	char *out;

	for (size_t i = 0; a && r && i < r->n; i++) {
		const struct host_item *it = &r->items[i];
		json_t *o = json_pack("{s:s, s:s, s:s}", "name", it->name, "status",
				      sm_check_status_name(it->status), "detail", it->detail);
		if (o && it->hint[0])
			json_object_set_new(o, "hint", json_string(it->hint));
		if (o && it->unit) {
			json_object_set_new(o, "value", json_real(it->value));
			json_object_set_new(o, "unit", json_string(it->unit));
		}
		if (o)
			json_array_append_new(a, o);
	}
	out = a ? json_dumps(a, JSON_INDENT(2)) : NULL;
	json_decref(a);
	return out;
}

void sm_host_report_free(sm_host_report *r)
{
	free(r);
}

/* ---- the refusal, cached per boot and device --------------------------------------- */

/* "BOOT_ID dev=MAJ:MIN ino=N ctime=S": a new boot, or a re-made device, probes again. */
static int kvm_cache_key(const char *dev, char *out, size_t len)
{
	char boot[64];
	struct stat st;

	if (stat(dev, &st) < 0)
		return -1;
	read_line("/proc/sys/kernel/random/boot_id", boot, sizeof(boot));
	snprintf(out, len, "%s %s dev=%u:%u ino=%llu ctime=%lld", boot, dev, major(st.st_rdev), minor(st.st_rdev),
		 (unsigned long long)st.st_ino, (long long)st.st_ctime);
	return 0;
}

/* 1: the cache holds a verdict for key (*ok, why), 0: no verdict. */
static int kvm_cache_read(const char *path, const char *key, bool *ok, char *why, size_t len)
{
	json_t *j = json_load_file(path, 0, NULL);
	const char *k = NULL, *w = "";
	int found = 0;

	if (!j)
		return 0;
	if (json_unpack(j, "{s:s, s:b, s?s}", "key", &k, "ok", ok, "why", &w) == 0 && !strcmp(k, key)) {
		snprintf(why, len, "%s", w);
		found = 1;
	}
	json_decref(j);
	return found;
}

/* Best effort: a cache that cannot be written costs the next VM one more probe. */
static void kvm_cache_write(const char *path, const char *key, bool ok, const char *why)
{
	json_t *j = json_pack("{s:s, s:b, s:s}", "key", key, "ok", ok, "why", why);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	if (text)
		durable_write(path, text, strlen(text), 0600);
	free(text);
	json_decref(j);
}

/* Probes and judges: true when the KVM lines hold no FAIL, else why says the first. */
static bool kvm_verdict(const char *dev, char *why, size_t len)
{
	struct kvm_probe_opts o = { .device = dev, .program = KVM_PROBE_MEASURE };
	struct sm_host_report r = { .n = 0 };
	struct kvm_probe p;

	kvm_probe_run(&o, &p);
	hostcheck_judge_kvm(&r, dev, &p);
	why[0] = 0;
	for (size_t i = 0; i < r.n; i++)
		if (r.items[i].status == SM_CHECK_FAIL) {
			snprintf(why, len, "%s", r.items[i].detail);
			return false;
		}
	return true;
}

int hostcheck_kvm_cache(const char *dev, char *path, size_t plen, char *key, size_t klen)
{
	char base[VM_PATH_MAX];

	if (kvm_cache_key(dev, key, klen) < 0 || vm_runtime_base(base, sizeof(base), NULL) < 0)
		return -1;
	return (size_t)snprintf(path, plen, "%s/" HOST_KVM_CACHE_NAME, base) < plen ? 0 : -1;
}

int hostcheck_require_kvm(sm_error **err)
{
	const char *dev = kvm_device(), *skip = getenv("SUPERMACHINE_SKIP_KVM_CHECK");
	char path[VM_PATH_MAX + 32], key[512], why[512];
	bool ok = false, cached;
	int fd;

	if (skip && !strcmp(skip, "1"))
		return 0;
	/* opening is cheap and its failure (no device, no permission) must never be cached */
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return sm_error_set(err, SM_E_KVM, errno, "open %s (see `supermachine check`)", dev), -1;
	close(fd);
	cached = hostcheck_kvm_cache(dev, path, sizeof(path), key, sizeof(key)) == 0;
	if (!cached || !kvm_cache_read(path, key, &ok, why, sizeof(why))) {
		ok = kvm_verdict(dev, why, sizeof(why));
		if (cached)
			kvm_cache_write(path, key, ok, why);
	}
	if (ok)
		return 0;
	return sm_error_set(err, SM_E_KVM, 0, "this host's KVM cannot run the guest: %s (see `supermachine check`)",
			    why), -1;
}

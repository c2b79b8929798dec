/*
 * A cgroup v2 leaf per jailed worker (vm_cgroup.h, docs/security.md).
 * The rules of the kernel this follows (Documentation/admin-guide/
 * cgroup-v2.rst): a controller can be enabled for a cgroup's children
 * only when the cgroup has it (cgroup.controllers), and, but for the
 * root, only while the cgroup holds no process. Our own cgroup holds us,
 * so unless it is the root the leaves go beside it, under its parent
 * (cg_base). Where the host has no cgroup v2 or does not delegate the
 * controllers, they are skipped with the reason logged.
 */
#include "lib/vm_cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "lib/log.h"
#include "lib/vm.h"

#define CG_TEXT_MAX 4096
#define CG_CONTROLLERS "+memory +cpu"

/* A small cgroup (or /proc) file into buf, NUL-terminated: its length, or -1 with errno. */
static ssize_t cg_read(const char *path, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	buf[n] = 0;
	return r < 0 ? -1 : (ssize_t)n;
}

/* One value into a cgroup file, as `echo VALUE > FILE` writes it: -1 with errno. */
static int cg_write(const char *path, const char *value)
{
	size_t len = strlen(value);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, value, len);
	int e = errno;
	close(fd);
	errno = e;
	return n == (ssize_t)len ? 0 : -1;
}

static bool cg_has_word(const char *list, const char *word)
{
	size_t len = strlen(word);

	for (const char *p = list; (p = strstr(p, word)); p += len)
		if ((p == list || p[-1] == ' ') && (p[len] == 0 || p[len] == ' ' || p[len] == '\n'))
			return true;
	return false;
}

int vm_cgroup_self(const char *proc_text, char *own, size_t len)
{
	for (const char *l = proc_text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		size_t n = strcspn(l, "\n");
		if (strncmp(l, "0::/", 4) || n - 3 >= len)
			continue;
		memcpy(own, l + 3, n - 3);
		own[n - 3] = 0;
		return 0;
	}
	return -1;
}

/* root + own (whose "/" root is "") + tail into out; false when it does not fit. */
static bool cg_path(char *out, size_t len, const char *root, const char *own, const char *tail)
{
	int n = snprintf(out, len, "%s%s%s", root, strcmp(own, "/") ? own : "", tail);

	return n >= 0 && (size_t)n < len;
}

__attribute__((format(printf, 3, 4))) static int cg_skip(char *why, size_t wlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, wlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Whether own has the memory and cpu controllers (its parent enabled them for it). */
static int cg_probe_controllers(const char *root, const char *own, char *why, size_t wlen)
{
	char path[PATH_MAX], text[CG_TEXT_MAX];

	if (!cg_path(path, sizeof(path), root, own, "/cgroup.controllers") || cg_read(path, text, sizeof(text)) < 0)
		return cg_skip(why, wlen, "cannot read %s: %s", path, strerror(errno));
	text[strcspn(text, "\n")] = 0;
	if (!cg_has_word(text, "memory") || !cg_has_word(text, "cpu"))
		return cg_skip(why, wlen, "the memory and cpu controllers are not both delegated to %s (it has: %s)",
			       own, text[0] ? text : "none");
	return 0;
}

/*
 * The cgroup that holds the leaves' parent, into base: own when it may
 * enable controllers for children (the root, or holding no process),
 * else own's parent, which enabled them for own already: the leaves are
 * then own's siblings' children, the layout crun and systemd-run use.
 */
static int cg_base(const char *root, const char *own, char *base, size_t blen, char *why, size_t wlen)
{
	char path[PATH_MAX], text[CG_TEXT_MAX];
	const char *slash = strrchr(own, '/');

	if (cg_probe_controllers(root, own, why, wlen) < 0)
		return -1;
	if (strlen(own) >= blen)
		return cg_skip(why, wlen, "cgroup path %s too long", own);
	strcpy(base, own);
	if (!strcmp(own, "/"))
		return 0; /* the root may hold processes and enable controllers */
	if (!cg_path(path, sizeof(path), root, own, "/cgroup.procs") || cg_read(path, text, sizeof(text)) < 0)
		return cg_skip(why, wlen, "cannot read %s: %s", path, strerror(errno));
	if (!text[0])
		return 0;
	/* no internal processes: own, which holds some, cannot enable controllers for a child */
	base[slash == own ? 1 : slash - own] = 0;
	return 0;
}

int vm_cgroup_probe(const char *root, const char *own, char *parent, size_t plen, char *why, size_t wlen)
{
	char path[PATH_MAX], base[PATH_MAX];
	struct stat st;

	if (!cg_path(path, sizeof(path), root, "/", "/cgroup.controllers") || stat(path, &st) < 0)
		return cg_skip(why, wlen, "no cgroup v2 hierarchy on %s (cgroup v1, or a hybrid host)", root);
	if (own[0] != '/' || strstr(own, "/.."))
		return cg_skip(why, wlen, "our cgroup '%s' is not a path in the hierarchy", own);
	if (cg_base(root, own, base, sizeof(base), why, wlen) < 0)
		return -1;
	if (!cg_path(parent, plen, root, base, "/" VM_CGROUP_PARENT))
		return cg_skip(why, wlen, "cgroup path %s%s too long", root, base);
	return 0;
}

int vm_cgroup_delegate(const char *root, const char *own, char *parent, size_t plen, char *why, size_t wlen)
{
	char path[PATH_MAX], base[PATH_MAX];

	if (vm_cgroup_probe(root, own, parent, plen, why, wlen) < 0 ||
	    cg_base(root, own, base, sizeof(base), why, wlen) < 0)
		return -1;
	/* a no-op where base enabled them already (own's parent) */
	if (!cg_path(path, sizeof(path), root, base, "/cgroup.subtree_control") || cg_write(path, CG_CONTROLLERS) < 0)
		return cg_skip(why, wlen, "cannot enable memory and cpu in %s: %s", path, strerror(errno));
	if (mkdir(parent, 0755) < 0 && errno != EEXIST)
		return cg_skip(why, wlen, "cannot create %s: %s", parent, strerror(errno));
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", parent);
	if (cg_write(path, CG_CONTROLLERS) < 0)
		return cg_skip(why, wlen, "cannot enable memory and cpu in %s: %s", path, strerror(errno));
	return 0;
}

void vm_cgroup_format(const struct vm_cgroup_limits *lim, char *memory_max, size_t mlen, char *cpu_max, size_t clen)
{
	uint64_t mib = lim->memory_mib + VM_CGROUP_VMM_MIB + VM_CGROUP_VSOCK_MIB +
		       (uint64_t)lim->nmounts * VM_CGROUP_FS_MIB;
	unsigned vcpus = lim->vcpus ? lim->vcpus : 1;

	snprintf(memory_max, mlen, "%" PRIu64, mib << 20);
	snprintf(cpu_max, clen, "%" PRIu64 " %u", (uint64_t)vcpus * VM_CGROUP_CPU_PERIOD_US, VM_CGROUP_CPU_PERIOD_US);
}

static int cg_leaf_limit(const char *leaf, const char *file, const char *value, sm_error **err)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/%s", leaf, file);

	if (n < 0 || (size_t)n >= sizeof(path))
		return sm_error_set(err, SM_E_INVALID, 0, "cgroup leaf %s: path too long", leaf), -1;
	if (cg_write(path, value) < 0)
		return sm_error_set(err, SM_E_IO, errno, "cgroup leaf: write %s to %s", value, path), -1;
	return 0;
}

int vm_cgroup_leaf(const char *parent, const char *id, const struct vm_cgroup_limits *lim, int *fd, sm_error **err)
{
	char leaf[PATH_MAX], mem[32], cpu[48];
	int n = snprintf(leaf, sizeof(leaf), "%s/%s", parent, id);

	if (n < 0 || (size_t)n >= sizeof(leaf) || !id[0] || strchr(id, '/') || id[0] == '.')
		return sm_error_set(err, SM_E_INVALID, 0, "cgroup leaf for VM '%s' under %s: bad name", id, parent), -1;
	rmdir(leaf); /* a crashed process's, of the same id; a populated one stays and is used */
	if (mkdir(leaf, 0755) < 0 && errno != EEXIST)
		return sm_error_set(err, SM_E_IO, errno, "cgroup leaf: create %s", leaf), -1;
	vm_cgroup_format(lim, mem, sizeof(mem), cpu, sizeof(cpu));
	if (cg_leaf_limit(leaf, "memory.max", mem, err) < 0 || cg_leaf_limit(leaf, "cpu.max", cpu, err) < 0)
		goto fail;
	*fd = open(leaf, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* not O_PATH: clone3 takes no O_PATH descriptor */
	if (*fd >= 0)
		return 0;
	sm_error_set(err, SM_E_IO, errno, "cgroup leaf: open %s", leaf);
fail:
	rmdir(leaf);
	return -1;
}

void vm_cgroup_sweep(const char *parent, const char *runtime_base)
{
	char path[PATH_MAX];
	struct dirent *e;
	struct stat st;
	DIR *d = opendir(parent);

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' || e->d_type != DT_DIR)
			continue;
		snprintf(path, sizeof(path), "%s/%s", runtime_base, e->d_name);
		if (stat(path, &st) == 0 || errno != ENOENT)
			continue; /* its VM's directory is there: the VM may be starting or running */
		snprintf(path, sizeof(path), "%s/%s", parent, e->d_name);
		if (rmdir(path) == 0)
			log_debug("removed the stale cgroup leaf %s", path);
	}
	if (d)
		closedir(d);
}

/* ---- at the real hierarchy ---- */

static int cg_own(char *own, size_t len, char *why, size_t wlen)
{
	char text[CG_TEXT_MAX];

	if (cg_read("/proc/self/cgroup", text, sizeof(text)) < 0)
		return cg_skip(why, wlen, "cannot read /proc/self/cgroup: %s", strerror(errno));
	if (vm_cgroup_self(text, own, len) < 0)
		return cg_skip(why, wlen, "this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup)");
	return 0;
}

int vm_cgroup_host(char *parent, size_t plen, char *why, size_t wlen)
{
	char own[PATH_MAX];

	if (cg_own(own, sizeof(own), why, wlen) < 0)
		return -1;
	return vm_cgroup_probe(VM_CGROUP_ROOT, own, parent, plen, why, wlen);
}

/* The leaves' parent, no error: where it fails, why is the reason to log. */
static int cg_parent(char *parent, size_t plen, bool make, char *why, size_t wlen)
{
	char own[PATH_MAX];

	if (cg_own(own, sizeof(own), why, wlen) < 0)
		return -1;
	if (make)
		return vm_cgroup_delegate(VM_CGROUP_ROOT, own, parent, plen, why, wlen);
	return vm_cgroup_probe(VM_CGROUP_ROOT, own, parent, plen, why, wlen);
}

int vm_cgroup_start(const char *id, const struct vm_cgroup_limits *lim, int *fd, sm_error **err)
{
	char parent[PATH_MAX], why[512], base[PATH_MAX];

	*fd = -1;
	if (cg_parent(parent, sizeof(parent), true, why, sizeof(why)) < 0) {
		log_info("VM %s: no cgroup leaf: %s", id, why);
		return 0;
	}
	if (vm_runtime_base(base, sizeof(base), NULL) == 0)
		vm_cgroup_sweep(parent, base);
	return vm_cgroup_leaf(parent, id, lim, fd, err);
}

int vm_cgroup_open(const char *id)
{
	char parent[PATH_MAX], why[512], leaf[PATH_MAX + VM_ID_LEN + 2];

	if (cg_parent(parent, sizeof(parent), false, why, sizeof(why)) < 0)
		return -1;
	snprintf(leaf, sizeof(leaf), "%s/%s", parent, id);
	return open(leaf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

void vm_cgroup_remove(const char *id)
{
	char parent[PATH_MAX], why[512], leaf[PATH_MAX + VM_ID_LEN + 2];

	/* only root makes leaves (a jailed worker's) */
	if (geteuid() != 0 || !id[0] || cg_parent(parent, sizeof(parent), false, why, sizeof(why)) < 0)
		return;
	snprintf(leaf, sizeof(leaf), "%s/%s", parent, id);
	if (rmdir(leaf) < 0 && errno != ENOENT)
		log_warn("cgroup leaf %s not removed: %s", leaf, strerror(errno));
}

void vm_cgroup_prune(const char *runtime_base)
{
	char parent[PATH_MAX], why[512];

	if (geteuid() == 0 && cg_parent(parent, sizeof(parent), false, why, sizeof(why)) == 0)
		vm_cgroup_sweep(parent, runtime_base);
}

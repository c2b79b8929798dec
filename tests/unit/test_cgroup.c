/*
 * A jailed worker's cgroup v2 leaf (src/lib/vm_cgroup.c) against a tree of
 * the hierarchy's own files in a temp directory: which cgroup the process
 * is in, whether the host allows leaves and why not, where they go under
 * the no-internal-processes rule, the controllers enabled on the way, the
 * limits written, and the sweep of a crashed process's leaves.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fsutil.h"
#include "lib/vm_cgroup.h"

static char root[256];

static void tree_init(void)
{
	snprintf(root, sizeof(root), "%s/sm-cgroup-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	cr_assert(mkdtemp(root));
}

static void tree_fini(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root); /* our own temp directory, no symlinks made in it */
	cr_expect_eq(system(cmd), 0);
}

/* root/rel (made with its parents) holding text. */
static void tree_file(const char *rel, const char *text)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	*strrchr(path, '/') = 0;
	cr_assert_eq(mkdir_p(path, 0755), 0, "%s", path);
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	f = fopen(path, "w");
	cr_assert(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

static char *tree_read(const char *rel)
{
	static char buf[256];
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	buf[0] = 0;
	f = fopen(path, "r");
	cr_assert(f, "%s is missing", path);
	buf[fread(buf, 1, sizeof(buf) - 1, f)] = 0;
	fclose(f);
	return buf;
}

static void leaf_in(const char *rel, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", root, rel);
}

Test(cgroup, self_is_the_unified_line)
{
	char own[64];

	cr_expect_eq(vm_cgroup_self("12:memory:/x\n1:name=systemd:/y\n0::/user.slice/session-3.scope\n", own,
				    sizeof(own)), 0);
	cr_expect_str_eq(own, "/user.slice/session-3.scope");
	cr_expect_eq(vm_cgroup_self("0::/", own, sizeof(own)), 0);
	cr_expect_str_eq(own, "/");
	cr_expect_eq(vm_cgroup_self("4:memory:/a\n1:cpu:/\n", own, sizeof(own)), -1, "cgroup v1 only");
	cr_expect_eq(vm_cgroup_self("0::/a-path-longer-than-the-buffer-given-here-by-far-and-more\n", own, 16), -1);
}

Test(cgroup, hybrid_host_has_no_unified_root, .init = tree_init, .fini = tree_fini)
{
	char parent[PATH_MAX], why[512];

	tree_file("memory/tasks", "1\n"); /* v1 controllers mounted side by side */
	tree_file("unified/cgroup.controllers", "");
	cr_expect_eq(vm_cgroup_probe(root, "/", parent, sizeof(parent), why, sizeof(why)), -1);
	cr_expect(strstr(why, "no cgroup v2 hierarchy on"), "%s", why);
}

Test(cgroup, controllers_not_delegated_are_named, .init = tree_init, .fini = tree_fini)
{
	char parent[PATH_MAX], why[512];

	tree_file("cgroup.controllers", "cpuset cpu io memory pids\n");
	tree_file("svc/cgroup.controllers", "cpuset io pids\n");
	tree_file("svc/cgroup.procs", "");
	cr_expect_eq(vm_cgroup_probe(root, "/svc", parent, sizeof(parent), why, sizeof(why)), -1);
	cr_expect(strstr(why, "not both delegated to /svc (it has: cpuset io pids)"), "%s", why);
	tree_file("svc/cgroup.controllers", "cpuset memory pids\n"); /* cpuset is not cpu */
	cr_expect_eq(vm_cgroup_probe(root, "/svc", parent, sizeof(parent), why, sizeof(why)), -1);
	cr_expect_eq(vm_cgroup_probe(root, "/../etc", parent, sizeof(parent), why, sizeof(why)), -1);
}

Test(cgroup, root_cgroup_holds_the_parent, .init = tree_init, .fini = tree_fini)
{
	char parent[PATH_MAX], why[512], want[PATH_MAX];

	tree_file("cgroup.controllers", "cpuset cpu io memory pids\n");
	tree_file("cgroup.procs", "1\n2\n"); /* the root may hold processes */
	tree_file("cgroup.subtree_control", "");
	cr_assert_eq(vm_cgroup_delegate(root, "/", parent, sizeof(parent), why, sizeof(why)), 0, "%s", why);
	leaf_in(VM_CGROUP_PARENT, want, sizeof(want));
	cr_expect_str_eq(parent, want);
	cr_expect_str_eq(tree_read("cgroup.subtree_control"), "+memory +cpu");
	cr_expect_str_eq(tree_read(VM_CGROUP_PARENT "/cgroup.subtree_control"), "+memory +cpu");
}

Test(cgroup, busy_cgroup_puts_leaves_beside_it, .init = tree_init, .fini = tree_fini)
{
	char parent[PATH_MAX], why[512], want[PATH_MAX];
	struct stat st;

	tree_file("cgroup.controllers", "cpu memory\n");
	tree_file("user.slice/cgroup.subtree_control", "cpu memory");
	tree_file("user.slice/s.scope/cgroup.controllers", "cpu memory pids\n");
	tree_file("user.slice/s.scope/cgroup.procs", "4242\n");
	cr_assert_eq(vm_cgroup_delegate(root, "/user.slice/s.scope", parent, sizeof(parent), why, sizeof(why)), 0,
		     "%s", why);
	leaf_in("user.slice/" VM_CGROUP_PARENT, want, sizeof(want));
	cr_expect_str_eq(parent, want, "no internal processes: not under the busy scope");
	cr_expect_neq(stat(strcat(strcpy(want, root), "/user.slice/s.scope/" VM_CGROUP_PARENT), &st), 0);
	/* an idle own cgroup (a delegated one we are not in) keeps them */
	tree_file("user.slice/s.scope/cgroup.procs", "");
	cr_assert_eq(vm_cgroup_probe(root, "/user.slice/s.scope", parent, sizeof(parent), why, sizeof(why)), 0);
	leaf_in("user.slice/s.scope/" VM_CGROUP_PARENT, want, sizeof(want));
	cr_expect_str_eq(parent, want);
	/* right under the root: the sibling parent is the root's */
	tree_file("a/cgroup.controllers", "cpu memory\n");
	tree_file("a/cgroup.procs", "1\n");
	cr_assert_eq(vm_cgroup_probe(root, "/a", parent, sizeof(parent), why, sizeof(why)), 0);
	leaf_in(VM_CGROUP_PARENT, want, sizeof(want));
	cr_expect_str_eq(parent, want);
}

Test(cgroup, limits_are_ram_plus_overhead_and_vcpus_periods)
{
	struct vm_cgroup_limits lim = { .memory_mib = 512, .vcpus = 2, .nmounts = 1 };
	char mem[32], cpu[48];

	vm_cgroup_format(&lim, mem, sizeof(mem), cpu, sizeof(cpu));
	cr_expect_eq(strtoull(mem, NULL, 10),
		     (512ull + VM_CGROUP_VMM_MIB + VM_CGROUP_VSOCK_MIB + VM_CGROUP_FS_MIB) << 20);
	cr_expect_str_eq(cpu, "200000 100000");
	lim = (struct vm_cgroup_limits){ .memory_mib = 128 };
	vm_cgroup_format(&lim, mem, sizeof(mem), cpu, sizeof(cpu));
	cr_expect_str_eq(cpu, "100000 100000", "no vcpus given: one");
}

Test(cgroup, leaf_gets_its_limits_and_opens, .init = tree_init, .fini = tree_fini)
{
	struct vm_cgroup_limits lim = { .memory_mib = 256, .vcpus = 4 };
	sm_error *err = NULL;
	char parent[PATH_MAX], mem[32], cpu[48];
	int fd = -1;

	leaf_in(VM_CGROUP_PARENT, parent, sizeof(parent));
	cr_assert_eq(mkdir(parent, 0755), 0);
	cr_assert_eq(vm_cgroup_leaf(parent, "0123456789ab", &lim, &fd, &err), 0, "%s", sm_error_message(err));
	cr_expect_geq(fd, 0);
	close(fd);
	vm_cgroup_format(&lim, mem, sizeof(mem), cpu, sizeof(cpu));
	cr_expect_str_eq(tree_read(VM_CGROUP_PARENT "/0123456789ab/memory.max"), mem);
	cr_expect_str_eq(tree_read(VM_CGROUP_PARENT "/0123456789ab/cpu.max"), "400000 100000");
	cr_expect_eq(vm_cgroup_leaf(parent, "../escape", &lim, &fd, &err), -1);
	cr_expect_eq(sm_error_code(err), SM_E_INVALID);
	sm_error_free(err);
	err = NULL;
	cr_expect_eq(vm_cgroup_leaf(parent, "", &lim, &fd, &err), -1);
	sm_error_free(err);
}

Test(cgroup, sweep_removes_leaves_of_gone_vms_only, .init = tree_init, .fini = tree_fini)
{
	char parent[512], base[512], path[1024];
	struct stat st;

	leaf_in("p", parent, sizeof(parent));
	leaf_in("run", base, sizeof(base));
	cr_assert_eq(mkdir(parent, 0755), 0);
	cr_assert_eq(mkdir(base, 0755), 0);
	snprintf(path, sizeof(path), "%s/live", base);
	cr_assert_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/live", parent);
	cr_assert_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/gone", parent);
	cr_assert_eq(mkdir(path, 0755), 0);
	tree_file("p/cgroup.subtree_control", "+memory +cpu");
	vm_cgroup_sweep(parent, base);
	cr_expect_neq(stat(path, &st), 0, "the leaf of a VM whose directory is gone stays");
	snprintf(path, sizeof(path), "%s/live", parent);
	cr_expect_eq(stat(path, &st), 0, "a VM's leaf was removed while its directory is there");
	cr_expect_eq(stat(strcat(strcpy(path, parent), "/cgroup.subtree_control"), &st), 0);
}

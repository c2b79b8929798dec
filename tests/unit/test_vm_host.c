/*
 * The host side of VMs that needs no KVM: volume specs and creation,
 * asset discovery, runtime directories and their metadata, and the
 * CLI's -p / -e values.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_vm.h"
#include "lib/vm.h"

static char dir[64];

static void mktmp(void)
{
	strcpy(dir, "/tmp/sm-vmhost-XXXXXX");
	cr_assert(mkdtemp(dir));
}

static void rmtmp(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert(system(cmd) == 0);
}

TestSuite(vm_host, .init = mktmp, .fini = rmtmp);

Test(vm_host, size_parse)
{
	uint64_t v;

	cr_expect(vm_size_parse("4096", &v) == 0 && v == 4096);
	cr_expect(vm_size_parse("64M", &v) == 0 && v == 64u << 20);
	cr_expect(vm_size_parse("1G", &v) == 0 && v == 1u << 30);
	cr_expect(vm_size_parse("2GiB", &v) == 0 && v == 2ull << 30);
	cr_expect(vm_size_parse("3gb", &v) == 0 && v == 3ull << 30);
	cr_expect(vm_size_parse("1T", &v) == 0 && v == 1ull << 40);
	cr_expect(vm_size_parse("", &v) < 0);
	cr_expect(vm_size_parse("-1", &v) < 0);
	cr_expect(vm_size_parse("12Q", &v) < 0);
	cr_expect(vm_size_parse("1Gx", &v) < 0);
	cr_expect(vm_size_parse("99999999999999999999", &v) < 0);
	cr_expect(vm_size_parse("20000000000T", &v) < 0, "overflow accepted");
}

Test(vm_host, volume_parse)
{
	char buf[256];
	sm_volume v;
	sm_error *err = NULL;

	cr_assert(sm_volume_parse("/h/vol.ext4:/data", buf, sizeof(buf), &v, &err) == 0);
	cr_expect_str_eq(v.host_path, "/h/vol.ext4");
	cr_expect_str_eq(v.guest_path, "/data");
	cr_expect_eq(v.size_bytes, 0);
	cr_assert(sm_volume_parse("vol:/var/lib/db:2G", buf, sizeof(buf), &v, &err) == 0);
	cr_expect_str_eq(v.guest_path, "/var/lib/db");
	cr_expect_eq(v.size_bytes, 2ull << 30);

	static const char *const bad[] = { "novolume", ":/data", "vol:data", "vol:/data:lots", "vol:/data:1K" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect(sm_volume_parse(bad[i], buf, sizeof(buf), &v, &err) < 0, "'%s' accepted", bad[i]);
		cr_expect(err && strstr(sm_error_string(err), bad[i]), "error does not name '%s'", bad[i]);
		cr_expect_eq(sm_error_code(err), SM_E_INVALID);
		sm_error_free(err);
		err = NULL;
	}
}

Test(vm_host, volume_made_sparse_and_ext4_then_kept)
{
	char path[128], cmd[256];
	sm_volume v = { .host_path = path, .guest_path = "/data", .size_bytes = 256u << 20 };
	sm_error *err = NULL;
	struct stat st;

	snprintf(path, sizeof(path), "%s/vol.ext4", dir);
	cr_assert(vm_volume_prepare(&v, &err) == 0, "%s", err ? sm_error_string(err) : "");
	cr_assert(stat(path, &st) == 0);
	cr_expect_eq(st.st_size, 256 << 20);
	cr_expect_lt(st.st_blocks * 512, 32 << 20, "%lld bytes allocated: not sparse", (long long)st.st_blocks * 512);
	snprintf(cmd, sizeof(cmd), "e2fsck -fn '%s' >/dev/null 2>&1", path);
	cr_expect(system(cmd) == 0, "e2fsck rejects the new volume");

	/* a second prepare keeps the data: it must not format again */
	snprintf(cmd, sizeof(cmd), "debugfs -w -R 'mkdir keepme' '%s' >/dev/null 2>&1", path);
	cr_assert(system(cmd) == 0);
	cr_assert(vm_volume_prepare(&v, &err) == 0);
	snprintf(cmd, sizeof(cmd), "debugfs -R 'stat keepme' '%s' 2>/dev/null | grep -q Inode", path);
	cr_expect(system(cmd) == 0, "the volume was formatted again");
}

Test(vm_host, volume_refuses_non_files_and_missing_ro)
{
	sm_volume v = { .host_path = dir, .guest_path = "/data" };
	char path[128];
	sm_error *err = NULL;

	cr_expect(vm_volume_prepare(&v, &err) < 0);
	cr_expect(err && strstr(sm_error_string(err), "not a regular file"));
	sm_error_free(err), err = NULL;
	snprintf(path, sizeof(path), "%s/missing.ext4", dir);
	v = (sm_volume){ .host_path = path, .guest_path = "/data", .read_only = true };
	cr_expect(vm_volume_prepare(&v, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	cr_expect(access(path, F_OK) < 0, "a read-only volume was created");
	sm_error_free(err);
}

static void touch(const char *path, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	cr_assert(fd >= 0, "create %s", path);
	close(fd);
	chmod(path, mode);
}

Test(vm_host, assets_explicit_env_and_clear_errors)
{
	char k[128], i[128], w[128];
	struct vm_asset_paths out;
	sm_error *err = NULL;

	snprintf(k, sizeof(k), "%s/vmlinux", dir);
	snprintf(i, sizeof(i), "%s/initramfs.cpio", dir);
	snprintf(w, sizeof(w), "%s/worker", dir);
	touch(k, 0644), touch(i, 0644), touch(w, 0755);

	sm_assets given = { .kernel = k, .initramfs = i, .worker = w };
	cr_assert(vm_assets_find(&given, &out, &err) == 0);
	cr_expect_str_eq(out.kernel, k);
	cr_expect_str_eq(out.worker, w);

	/* the environment: SUPERMACHINE_KERNEL_DIR/vmlinux, the others by name */
	setenv("SUPERMACHINE_KERNEL_DIR", dir, 1);
	setenv("SUPERMACHINE_INITRAMFS", i, 1);
	setenv("SUPERMACHINE_WORKER", w, 1);
	unsetenv("SUPERMACHINE_KERNEL");
	cr_assert(vm_assets_find(NULL, &out, &err) == 0, "%s", err ? sm_error_string(err) : "");
	cr_expect_str_eq(out.kernel, k);
	cr_expect_str_eq(out.initramfs, i);

	/* an explicit path that is missing is an error naming it, never a silent fallback */
	given.kernel = "/nonexistent/vmlinux";
	cr_expect(vm_assets_find(&given, &out, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	cr_expect(err && strstr(sm_error_string(err), "/nonexistent/vmlinux"), "%s", sm_error_string(err));
	sm_error_free(err), err = NULL;

	/* a worker that is not executable is not taken */
	chmod(w, 0644);
	given = (sm_assets){ .kernel = k, .initramfs = i, .worker = w };
	cr_expect(vm_assets_find(&given, &out, &err) < 0);
	cr_expect(err && strstr(sm_error_string(err), "worker"));
	sm_error_free(err);
}

Test(vm_host, runtime_dirs_meta_and_lookup)
{
	struct sm_vm a = { 0 }, b = { 0 };
	struct vm_meta m = { .pid = 1, .created = 1700000000, .detached = true }, r;
	struct vm_meta *list;
	sm_error *err = NULL;
	char base[128];
	struct stat st;
	size_t n;

	setenv("XDG_RUNTIME_DIR", dir, 1);
	cr_assert(vm_runtime_create(&a, &err) == 0, "%s", err ? sm_error_string(err) : "");
	cr_assert(vm_runtime_create(&b, &err) == 0);
	cr_expect_neq(strcmp(a.id, b.id), 0);
	cr_expect_eq(strlen(a.id), VM_ID_LEN);
	cr_assert(stat(a.dir, &st) == 0);
	cr_expect_eq(st.st_mode & 0777, 0700);
	snprintf(base, sizeof(base), "%s/supermachine", dir);
	cr_assert(stat(base, &st) == 0);
	cr_expect_eq(st.st_mode & 0777, 0700);
	cr_expect(strlen(a.vsock) + 7 < 108, "socket path too long: %s", a.vsock);

	snprintf(m.id, sizeof(m.id), "%s", a.id);
	snprintf(m.image, sizeof(m.image), "busybox");
	snprintf(m.command, sizeof(m.command), "sh -c 'echo \"quoted\"'");
	cr_assert(vm_meta_write(&a, &m, &err) == 0);
	cr_assert(vm_meta_read(a.dir, &r, &err) == 0);
	cr_expect_str_eq(r.command, m.command);
	cr_expect_eq(r.pid, 1);
	cr_expect(r.detached);

	/* b has no metadata yet: listed only once it has */
	cr_assert(vm_meta_list(&list, &n, &err) == 0);
	cr_expect_eq(n, 1);
	cr_expect_str_eq(list[0].id, a.id);
	free(list);

	/* lookup by a unique prefix; bad and unknown IDs are clear errors */
	struct sm_vm found = { 0 };
	char prefix[8];
	snprintf(prefix, sizeof(prefix), "%.6s", a.id);
	if (strncmp(a.id, b.id, 6) != 0) {
		cr_expect(vm_runtime_open(&found, prefix, &err) == 0);
		cr_expect_str_eq(found.dir, a.dir);
	}
	cr_expect(vm_runtime_open(&found, "../etc", &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	sm_error_free(err), err = NULL;
	cr_expect(vm_runtime_open(&found, "ffffffffffff", &err) < 0 || strcmp(a.id, "ffffffffffff") == 0);
	sm_error_free(err), err = NULL;

	vm_runtime_remove(&a);
	vm_runtime_remove(&b);
	cr_expect(access(a.dir, F_OK) < 0 && access(b.dir, F_OK) < 0);
	/* pid 1 is not a worker: ps would call it exited */
	cr_expect(!vm_pid_is_worker(1));
}

Test(vm_host, runtime_base_must_be_private)
{
	char base[128];
	sm_error *err = NULL;

	setenv("XDG_RUNTIME_DIR", dir, 1);
	snprintf(base, sizeof(base), "%s/supermachine", dir);
	cr_assert(mkdir(base, 0777) == 0);
	chmod(base, 0777);
	cr_expect(vm_runtime_base(base, sizeof(base), &err) < 0, "a world-writable base was accepted");
	cr_expect(err && strstr(sm_error_string(err), "private"));
	sm_error_free(err);
}

Test(vm_host, signal_names)
{
	cr_expect_eq(sm_signal_parse("SIGINT"), 2);
	cr_expect_eq(sm_signal_parse("TERM"), 15);
	cr_expect_eq(sm_signal_parse("9"), 9);
	cr_expect_eq(sm_signal_parse("SIGNOPE"), 0);
	cr_expect_eq(sm_signal_parse("999"), 0);
}

Test(vm_host, cli_port_specs)
{
	struct cli_port p;

	cr_assert(cli_port_parse("8080:80", &p, "test") == 0);
	cr_expect_str_eq(p.addr, "127.0.0.1");
	cr_expect(p.host_port == 8080 && p.guest_port == 80);
	cr_assert(cli_port_parse("0.0.0.0:0:6379", &p, "test") == 0);
	cr_expect_str_eq(p.addr, "0.0.0.0");
	cr_expect(p.host_port == 0 && p.guest_port == 6379);
	static const char *const bad[] = { "80", "a:b", "8080:0", "70000:80", "8080:", ":80", "x:8080:-1", "1:2:3:4" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect(cli_port_parse(bad[i], &p, "test") < 0, "'%s' accepted", bad[i]);
}

Test(vm_host, cli_env)
{
	struct cli_exec_opts o = { 0 };

	setenv("SM_TEST_FROM_HOST", "yes", 1);
	unsetenv("SM_TEST_UNSET");
	cr_expect(cli_env_add(&o, "A=1", "test") == 0);
	cr_expect(cli_env_add(&o, "SM_TEST_FROM_HOST", "test") == 0);
	cr_expect(cli_env_add(&o, "SM_TEST_UNSET", "test") == 0);
	cr_expect(cli_env_add(&o, "=x", "test") < 0);
	cr_assert_eq(o.nenv, 2);
	cr_expect_str_eq(o.env[0], "A=1");
	cr_expect_str_eq(o.env[1], "SM_TEST_FROM_HOST=yes");
	cli_exec_opts_free(&o);
}

/* docker's words for a duration (go-units HumanDuration), which ps's CREATED and STATUS use. */
Test(vm_host, cli_human_duration)
{
	static const struct {
		int64_t s;
		const char *says;
	} cases[] = {
		{ 0, "Less than a second" }, { 1, "1 second" }, { 59, "59 seconds" }, { 60, "About a minute" },
		{ 119, "About a minute" }, { 120, "2 minutes" }, { 3599, "59 minutes" }, { 3600, "About an hour" },
		{ 5399, "About an hour" }, { 5400, "2 hours" }, { 47 * 3600, "47 hours" }, { 48 * 3600, "2 days" },
		{ 14 * 86400, "2 weeks" }, { 60 * 86400, "2 months" }, { 3 * 365 * 86400, "3 years" },
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cli_human_duration(cases[i].s, buf, sizeof(buf));
		cr_expect_str_eq(buf, cases[i].says, "%lld s", (long long)cases[i].s);
	}
}

Test(vm_host, cli_cp_operands)
{
	struct cli_cp_spec c;

	cr_assert(cli_cp_parse("web:/etc/hosts", &c) == 0);
	cr_expect_str_eq(c.vm, "web");
	cr_expect_str_eq(c.path, "/etc/hosts");
	cr_assert(cli_cp_parse("0123abcd:rel/x", &c) == 0);
	cr_expect_str_eq(c.vm, "0123abcd");
	cr_expect_str_eq(c.path, "rel/x");
	/* host paths: no ':', or a '/' before it (docker cp's rule) */
	static const char *const host[] = { "/tmp/a:b", "./web:x", "plain", "dir/sub:x" };
	for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++) {
		cr_assert(cli_cp_parse(host[i], &c) == 0);
		cr_expect_str_eq(c.vm, "", "%s taken for a VM", host[i]);
		cr_expect_str_eq(c.path, host[i]);
	}
	cr_expect(cli_cp_parse("web:", &c) < 0, "a VM without a path");
}

Test(vm_host, cli_guest_paths_stay_in_the_root)
{
	static const struct {
		const char *in, *out;
	} ok[] = {
		{ "/etc/hosts", "/etc/hosts" }, { "etc//hosts/", "/etc/hosts" }, { "/a/./b/../c", "/a/c" },
		{ "/", "/" }, { ".", "/" }, { "/a/..", "/" }, { "a/b/../../c", "/c" },
	};
	static const char *const escape[] = { "..", "/..", "/../etc/passwd", "a/../../b", "/a/b/../../../x" };
	char buf[64];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_assert(cli_guest_path(ok[i].in, buf, sizeof(buf)) == 0, "%s refused", ok[i].in);
		cr_expect_str_eq(buf, ok[i].out, "%s", ok[i].in);
	}
	for (size_t i = 0; i < sizeof(escape) / sizeof(escape[0]); i++)
		cr_expect(cli_guest_path(escape[i], buf, sizeof(buf)) < 0, "%s accepted", escape[i]);
	cr_expect(cli_guest_path("/a-very-long-component-that-does-not-fit-in-the-buffer-at-all", buf, 16) < 0);
}

Test(vm_host, restart_policies_and_names)
{
	unsigned max = 99;

	cr_expect_eq(sm_restart_parse("no", &max), 0);
	cr_expect_eq(max, 0);
	cr_expect_eq(sm_restart_parse("on-failure", &max), 1);
	cr_expect_eq(max, 0, "no limit");
	cr_expect_eq(sm_restart_parse("on-failure:3", &max), 1);
	cr_expect_eq(max, 3);
	static const char *const bad[] = { "always", "unless-stopped", "on-failure:", "on-failure:x", "on-failure:-1",
					   "on-failure:3x", "", "NO" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(sm_restart_parse(bad[i], NULL), -1, "'%s' accepted", bad[i]);
	cr_expect_eq(sm_restart_parse(NULL, NULL), -1);

	static const char *const good[] = { "web", "a1", "my_vm.2-x", "0abc" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_expect(sm_vm_name_valid(good[i]), "'%s' refused", good[i]);
	static const char *const names[] = { "a", "", "-web", "_x", "we b", "a/b", "../x", "abcdef012345",
					     "x2345678901234567890123456789012345678901234567890123456789012345" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_expect(!sm_vm_name_valid(names[i]), "'%s' accepted", names[i]);
	cr_expect(!sm_vm_name_valid(NULL));
}

/* The worker's usage reply into the caller's struct, never past its size. */
Test(vm_host, stats_reply)
{
	sm_vm_stats_out s = SM_VM_STATS_OUT_INIT;
	struct {
		sm_vm_stats_out s;
		uint64_t guard;
	} small;

	vm_usage_parse("cpu_ns=1500 rss_bytes=4096 memory_bytes=268435456 blk_read_bytes=10 blk_write_bytes=20 "
		       "net_rx_bytes=30 net_tx_bytes=40 vsock_rx_bytes=50 vsock_tx_bytes=60 extra=1", &s);
	cr_expect(s.cpu_ns == 1500 && s.rss_bytes == 4096 && s.memory_bytes == 268435456);
	cr_expect(s.blk_read_bytes == 10 && s.blk_write_bytes == 20 && s.net_rx_bytes == 30 && s.net_tx_bytes == 40);
	cr_expect(s.vsock_rx_bytes == 50 && s.vsock_tx_bytes == 60);
	vm_usage_parse("cpu_ns=x rss_bytes=-1", &s);
	cr_expect(s.cpu_ns == 0 && s.rss_bytes == 0 && s.vsock_tx_bytes == 0, "bad or missing fields are 0");

	memset(&small, 0xab, sizeof(small));
	small.s.size = offsetof(sm_vm_stats_out, rss_bytes); /* an older caller: size and cpu_ns only */
	vm_usage_parse("cpu_ns=7 rss_bytes=8 vsock_tx_bytes=9", &small.s);
	cr_expect_eq(small.s.cpu_ns, 7);
	cr_expect_eq(small.s.rss_bytes, 0xababababababababull, "written past the caller's size");
	cr_expect_eq(small.guard, 0xababababababababull);
}

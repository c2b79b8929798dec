/*
 * Asset discovery (src/lib/vm_assets.c, the order documented at sm_assets
 * in include/supermachine.h) on real files in a temporary tree: every
 * place is filled, then emptied from the top, and each time the next place
 * down must win; the errors name what they tried.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/assets.h"

static char root[64];
static struct vm_assets_places places;

/* root/REL, in a static buffer per call site's use */
static const char *at(char *buf, const char *fmt, ...)
{
	char rel[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	snprintf(buf, 512, "%s/%s", root, rel);
	return buf;
}

static void mkdirs(const char *path)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", path);
	cr_assert(system(cmd) == 0);
}

/* root/REL as a file of mode, its directories made. */
static void put(const char *rel, mode_t mode)
{
	char path[512], dir[512];
	int fd;

	at(path, "%s", rel);
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = 0;
	mkdirs(dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	cr_assert(fd >= 0, "create %s", path);
	cr_assert(write(fd, "x", 1) == 1);
	close(fd);
	cr_assert(chmod(path, mode) == 0);
}

static void drop(const char *rel)
{
	char path[512];

	cr_assert(unlink(at(path, "%s", rel)) == 0, "unlink %s", path);
}

/* Places all under root; each its own directory. */
static char p_kdir[512], p_assets[512], p_data[512], p_libexec[512], p_build[512], p_kopt[512], p_src[512];

static void setup(void)
{
	strcpy(root, "/tmp/sm-assets-XXXXXX");
	cr_assert(mkdtemp(root));
	places = (struct vm_assets_places){
		.env_kernel_dir = at(p_kdir, "env-kernel-dir"),
		.env_assets_dir = at(p_assets, "env-assets"),
		.datadir = at(p_data, "prefix/share/supermachine"),
		.libexecdir = at(p_libexec, "prefix/libexec/supermachine"),
		.build_root = at(p_build, "build"),
		.kernel_dir = at(p_kopt, "kernel-opt"),
		.source_root = at(p_src, "src"),
	};
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	cr_assert(system(cmd) == 0);
}

TestSuite(assets, .init = setup, .fini = teardown);

/* A kernel/build whose --print-dir names root/cache (exit 1: "not built", as the real one says). */
static void fake_kernel_build(int status)
{
	char path[512];
	FILE *f;

	mkdirs(at(path, "src/kernel"));
	f = fopen(at(path, "src/kernel/build"), "w");
	cr_assert(f);
	fprintf(f, "#!/bin/sh\n[ \"$1\" = --print-dir ] || exit 2\necho '%s/cache'\nexit %d\n", root, status);
	fclose(f);
	cr_assert(chmod(path, 0755) == 0);
}

static int find(const sm_assets *given, struct vm_asset_paths *out, sm_error **err)
{
	sm_error_free(*err);
	*err = NULL;
	memset(out, 0, sizeof(*out));
	return vm_assets_find_in(given, &places, out, err);
}

static void expect_found(const char *got, const char *rel)
{
	char want[512];

	cr_expect_str_eq(got, at(want, "%s", rel));
}

Test(assets, each_place_in_order)
{
	static const char *kernels[] = { "env-kernel-dir/vmlinux", "env-assets/vmlinux",
					 "prefix/share/supermachine/vmlinux", "kernel-opt/vmlinux", "cache/vmlinux" };
	static const char *initramfs[] = { "env-assets/initramfs.cpio", "prefix/share/supermachine/initramfs.cpio",
					   "build/src/guest/initramfs.cpio" };
	static const char *workers[] = { "env-assets/supermachine-worker",
					 "prefix/libexec/supermachine/supermachine-worker",
					 "build/src/worker/supermachine-worker" };
	struct vm_asset_paths out;
	sm_error *err = NULL;

	fake_kernel_build(0);
	for (size_t i = 0; i < 5; i++)
		put(kernels[i], 0644);
	for (size_t i = 0; i < 3; i++) {
		put(initramfs[i], 0644);
		put(workers[i], 0755);
	}
	for (size_t i = 0; i < 5; i++) {
		cr_assert(find(NULL, &out, &err) == 0, "kernel step %zu: %s", i, sm_error_string(err));
		expect_found(out.kernel, kernels[i]);
		/* the kernel has more places: the last initramfs and worker stay for its last steps */
		expect_found(out.initramfs, initramfs[i < 2 ? i : 2]);
		expect_found(out.worker, workers[i < 2 ? i : 2]);
		if (i < 2) {
			drop(initramfs[i]);
			drop(workers[i]);
		}
		drop(kernels[i]);
	}
	cr_expect(find(NULL, &out, &err) < 0);
	cr_expect(strstr(sm_error_message(err), "no guest kernel found"), "%s", sm_error_message(err));
	sm_error_free(err);
}

Test(assets, a_miss_names_every_place_tried)
{
	struct vm_asset_paths out;
	sm_error *err = NULL;
	char want[4096];

	fake_kernel_build(1);
	cr_assert(find(NULL, &out, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	snprintf(want, sizeof(want),
		 "no guest kernel found; tried %1$s/env-kernel-dir/vmlinux (No such file or directory), "
		 "%1$s/env-assets/vmlinux (No such file or directory), "
		 "%1$s/prefix/share/supermachine/vmlinux (No such file or directory), "
		 "%1$s/kernel-opt/vmlinux (No such file or directory), "
		 "%1$s/cache/vmlinux (No such file or directory); "
		 "set SUPERMACHINE_KERNEL_DIR, or build one with kernel/build",
		 root);
	cr_expect_str_eq(sm_error_message(err), want);

	/* with a kernel, the initramfs is next; a worker that is not executable is skipped */
	put("prefix/share/supermachine/vmlinux", 0644);
	put("prefix/libexec/supermachine/supermachine-worker", 0644);
	cr_assert(find(NULL, &out, &err) < 0);
	snprintf(want, sizeof(want),
		 "no guest initramfs found; tried %1$s/env-assets/initramfs.cpio (No such file or directory), "
		 "%1$s/prefix/share/supermachine/initramfs.cpio (No such file or directory), "
		 "%1$s/build/src/guest/initramfs.cpio (No such file or directory); "
		 "set SUPERMACHINE_ASSETS_DIR, or install supermachine",
		 root);
	cr_expect_str_eq(sm_error_message(err), want);
	put("build/src/guest/initramfs.cpio", 0644);
	cr_assert(find(NULL, &out, &err) < 0);
	cr_expect(strstr(sm_error_message(err),
			 "/prefix/libexec/supermachine/supermachine-worker (not executable)"), "%s",
		  sm_error_message(err));
	/* a directory where a file should be is no asset either */
	mkdirs(at(want, "env-assets/supermachine-worker"));
	cr_assert(find(NULL, &out, &err) < 0);
	cr_expect(strstr(sm_error_message(err), "/env-assets/supermachine-worker (not a regular file)"), "%s",
		  sm_error_message(err));
	sm_error_free(err);
}

Test(assets, the_config_wins_and_never_falls_back)
{
	char k[512], i[512], w[512];
	struct vm_asset_paths out;
	sm_error *err = NULL;

	put("env-assets/vmlinux", 0644);
	put("env-assets/initramfs.cpio", 0644);
	put("env-assets/supermachine-worker", 0755);
	put("mine/k", 0644);
	put("mine/i", 0644);
	put("mine/w", 0755);
	sm_assets given = { .kernel = at(k, "mine/k"), .initramfs = at(i, "mine/i"), .worker = at(w, "mine/w") };
	cr_assert(find(&given, &out, &err) == 0);
	expect_found(out.kernel, "mine/k");
	expect_found(out.initramfs, "mine/i");
	expect_found(out.worker, "mine/w");

	/* a named file that is missing is an error naming it, though env-assets holds one */
	given.kernel = "/nonexistent/vmlinux";
	cr_assert(find(&given, &out, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	cr_expect_str_eq(sm_error_message(err),
			 "no guest kernel at /nonexistent/vmlinux (No such file or directory), which sm_assets.kernel names");

	/* dir: all three from one directory; the file fields still win over it */
	put("bundle/vmlinux", 0644);
	put("bundle/initramfs.cpio", 0644);
	put("bundle/supermachine-worker", 0755);
	given = (sm_assets){ .dir = at(k, "bundle"), .worker = at(w, "mine/w") };
	cr_assert(find(&given, &out, &err) == 0, "%s", sm_error_string(err));
	expect_found(out.kernel, "bundle/vmlinux");
	expect_found(out.initramfs, "bundle/initramfs.cpio");
	expect_found(out.worker, "mine/w");
	drop("bundle/initramfs.cpio");
	cr_assert(find(&given, &out, &err) < 0);
	cr_expect(strstr(sm_error_message(err), "bundle/initramfs.cpio (No such file or directory), which sm_assets.dir names"),
		  "%s", sm_error_message(err));
	sm_error_free(err);
}

Test(assets, a_file_variable_is_strict)
{
	char k[512];
	struct vm_asset_paths out;
	sm_error *err = NULL;

	put("prefix/share/supermachine/vmlinux", 0644);
	put("prefix/share/supermachine/initramfs.cpio", 0644);
	put("prefix/libexec/supermachine/supermachine-worker", 0755);
	put("env/vmlinux", 0644);
	places.env_kernel = at(k, "env/vmlinux");
	cr_assert(find(NULL, &out, &err) == 0, "%s", sm_error_string(err));
	expect_found(out.kernel, "env/vmlinux");
	expect_found(out.worker, "prefix/libexec/supermachine/supermachine-worker");

	places.env_worker = "/nonexistent/worker";
	cr_assert(find(NULL, &out, &err) < 0);
	cr_expect_str_eq(sm_error_message(err),
			 "no guest worker at /nonexistent/worker (No such file or directory), which $SUPERMACHINE_WORKER names");
	sm_error_free(err);
}

/* The real entry points read the environment. */
Test(assets, environment_and_public_api)
{
	sm_asset_paths *pub;
	char dir[512];
	struct vm_asset_paths out;
	sm_error *err = NULL;

	put("env-assets/vmlinux", 0644);
	put("env-assets/initramfs.cpio", 0644);
	put("env-assets/supermachine-worker", 0755);
	unsetenv("SUPERMACHINE_KERNEL");
	unsetenv("SUPERMACHINE_KERNEL_DIR");
	unsetenv("SUPERMACHINE_INITRAMFS");
	unsetenv("SUPERMACHINE_WORKER");
	setenv("SUPERMACHINE_ASSETS_DIR", at(dir, "env-assets"), 1);
	cr_assert(vm_assets_find(NULL, &out, &err) == 0, "%s", sm_error_string(err));
	expect_found(out.kernel, "env-assets/vmlinux");
	pub = sm_assets_find(NULL, &err);
	cr_assert(pub, "%s", sm_error_string(err));
	expect_found(sm_asset_paths_kernel(pub), "env-assets/vmlinux");
	expect_found(sm_asset_paths_initramfs(pub), "env-assets/initramfs.cpio");
	expect_found(sm_asset_paths_worker(pub), "env-assets/supermachine-worker");
	sm_asset_paths_free(pub);

	setenv("SUPERMACHINE_INITRAMFS", "", 1); /* empty: as if unset */
	setenv("SUPERMACHINE_KERNEL", "/nonexistent/vmlinux", 1);
	cr_assert(!sm_assets_find(NULL, &err));
	cr_expect(strstr(sm_error_string(err), "$SUPERMACHINE_KERNEL"), "%s", sm_error_string(err));
	sm_error_free(err);
}

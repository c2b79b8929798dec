/*
 * Where a VM's kernel, base initramfs and worker come from (the
 * reference's AssetPaths): explicit config, then the environment, then the
 * install prefix baked in at build time, then the build tree and the
 * kernel cache — so an installed library, a developer's build tree and a
 * test run all work without flags, and a miss says where we looked.
 */
#include "lib/vm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/error.h"

#ifndef SM_INSTALL_DATADIR
#define SM_INSTALL_DATADIR "/usr/local/share/supermachine"
#endif
#ifndef SM_INSTALL_LIBEXECDIR
#define SM_INSTALL_LIBEXECDIR "/usr/local/libexec"
#endif

struct asset_search {
	const char *what;      /* "kernel" */
	char tried[1024];      /* "a, b, c" for the error */
	size_t ntried;
};

static bool asset_try(struct asset_search *s, const char *path, int mode, char *out, size_t len)
{
	if (!path || !*path)
		return false;
	if (access(path, mode) == 0 && strlen(path) < len) {
		snprintf(out, len, "%s", path);
		return true;
	}
	s->ntried += (size_t)snprintf(s->tried + s->ntried, s->ntried < sizeof(s->tried) ? sizeof(s->tried) - s->ntried : 0,
				       "%s%s", s->ntried ? ", " : "", path);
	if (s->ntried >= sizeof(s->tried))
		s->ntried = sizeof(s->tried) - 1;
	return false;
}

static bool asset_try_in(struct asset_search *s, const char *dir, const char *name, int mode, char *out,
			 size_t len)
{
	char path[4096];

	if (!dir || !*dir)
		return false;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return asset_try(s, path, mode, out, len);
}

static int asset_missing(struct asset_search *s, const char *env, sm_error **err)
{
	sm_error_set(err, SM_E_NOT_FOUND, 0, "no guest %s found (set %s; tried: %s)", s->what, env,
		     s->ntried ? s->tried : "nothing");
	return -1;
}

/* The kernel cache entry for this source tree's kernel fragment, asked of kernel/build. */
static bool kernel_cache_dir(char *out, size_t len)
{
#ifdef SM_SOURCE_ROOT
	char cmd[4200];
	FILE *p;
	bool ok = false;

	if (access(SM_SOURCE_ROOT "/kernel/build", X_OK) < 0)
		return false;
	snprintf(cmd, sizeof(cmd), "'%s/kernel/build' --print-dir 2>/dev/null", SM_SOURCE_ROOT);
	p = popen(cmd, "re");
	if (!p)
		return false;
	if (fgets(out, (int)len, p)) {
		out[strcspn(out, "\n")] = 0;
		ok = out[0] != 0;
	}
	pclose(p);
	return ok;
#else
	(void)out;
	(void)len;
	return false;
#endif
}

static int assets_kernel(const char *given, char *out, size_t len, sm_error **err)
{
	struct asset_search s = { .what = "kernel" };
	char dir[4096];

	if (given)
		return asset_try(&s, given, R_OK, out, len) ? 0 : asset_missing(&s, "sm_assets.kernel", err);
	if (asset_try(&s, getenv("SUPERMACHINE_KERNEL"), R_OK, out, len) ||
	    asset_try_in(&s, getenv("SUPERMACHINE_KERNEL_DIR"), "vmlinux", R_OK, out, len) ||
	    asset_try_in(&s, SM_INSTALL_DATADIR, "vmlinux", R_OK, out, len))
		return 0;
#ifdef SM_KERNEL_DIR
	if (asset_try_in(&s, SM_KERNEL_DIR, "vmlinux", R_OK, out, len))
		return 0;
#endif
	if (kernel_cache_dir(dir, sizeof(dir)) && asset_try_in(&s, dir, "vmlinux", R_OK, out, len))
		return 0;
	return asset_missing(&s, "SUPERMACHINE_KERNEL_DIR or run kernel/build", err);
}

/* An asset that is one file: given, else $env, else the install prefix, else the build tree. */
struct asset_file {
	const char *what, *env, *install_dir, *name, *build_path;
	int mode;
};

static int assets_file(const struct asset_file *a, const char *given, char *out, size_t len, sm_error **err)
{
	struct asset_search s = { .what = a->what };

	if (given)
		return asset_try(&s, given, a->mode, out, len) ? 0 : asset_missing(&s, "sm_assets", err);
	if (asset_try(&s, getenv(a->env), a->mode, out, len) ||
	    asset_try_in(&s, a->install_dir, a->name, a->mode, out, len))
		return 0;
#ifdef SM_BUILD_ROOT
	if (asset_try_in(&s, SM_BUILD_ROOT, a->build_path, a->mode, out, len))
		return 0;
#endif
	return asset_missing(&s, a->env, err);
}

static const struct asset_file asset_initramfs = {
	"initramfs", "SUPERMACHINE_INITRAMFS", SM_INSTALL_DATADIR, "initramfs.cpio", "src/guest/initramfs.cpio", R_OK,
};
static const struct asset_file asset_worker = {
	"worker", "SUPERMACHINE_WORKER", SM_INSTALL_LIBEXECDIR, "supermachine-worker", "src/worker/supermachine-worker",
	X_OK,
};

int vm_assets_find(const sm_assets *given, struct vm_asset_paths *out, sm_error **err)
{
	sm_assets none = { 0 };

	if (!given)
		given = &none;
	if (assets_kernel(given->kernel, out->kernel, sizeof(out->kernel), err) < 0 ||
	    assets_file(&asset_initramfs, given->initramfs, out->initramfs, sizeof(out->initramfs), err) < 0 ||
	    assets_file(&asset_worker, given->worker, out->worker, sizeof(out->worker), err) < 0)
		return -1;
	return 0;
}

/*
 * Where a VM's kernel, base initramfs and worker come from (the
 * reference's AssetPaths): explicit config, then the environment, then the
 * install prefix baked in at build time, then the build tree and the
 * kernel cache — so an installed library, a developer's build tree and a
 * test run all work without flags, and a miss says where we looked. The
 * order is documented at sm_assets in include/supermachine.h.
 */
#include "lib/assets.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"

#ifndef SM_INSTALL_DATADIR
#define SM_INSTALL_DATADIR "/usr/local/share/supermachine"
#endif
#ifndef SM_INSTALL_LIBEXECDIR
#define SM_INSTALL_LIBEXECDIR "/usr/local/libexec/supermachine"
#endif
#ifndef SM_BUILD_ROOT
#define SM_BUILD_ROOT NULL
#endif
#ifndef SM_SOURCE_ROOT
#define SM_SOURCE_ROOT NULL
#endif
#ifndef SM_KERNEL_DIR
#define SM_KERNEL_DIR NULL
#endif

extern char **environ;

/* One kind of asset and how it is looked for. */
struct asset_kind {
	const char *what;       /* "kernel", for messages */
	const char *name;       /* its file name in any directory */
	const char *field;      /* the sm_assets field naming it */
	const char *env;        /* the variable naming the file */
	const char *env_rule;   /* "$" env, for the report of where each was found */
	const char *hint;       /* how to fix a miss */
	const char *build_path; /* under the build root; NULL: not built there */
	int mode;               /* R_OK or X_OK */
};

static const struct asset_kind kind_kernel = {
	"kernel", ASSET_KERNEL_NAME, "kernel", "SUPERMACHINE_KERNEL", "$SUPERMACHINE_KERNEL",
	"set SUPERMACHINE_KERNEL_DIR, or build one with kernel/build", NULL, R_OK,
};
static const struct asset_kind kind_initramfs = {
	"initramfs", ASSET_INITRAMFS_NAME, "initramfs", "SUPERMACHINE_INITRAMFS", "$SUPERMACHINE_INITRAMFS",
	"set SUPERMACHINE_ASSETS_DIR, or install supermachine", "src/guest/" ASSET_INITRAMFS_NAME, R_OK,
};
static const struct asset_kind kind_worker = {
	"worker", ASSET_WORKER_NAME, "worker", "SUPERMACHINE_WORKER", "$SUPERMACHINE_WORKER",
	"set SUPERMACHINE_ASSETS_DIR, or install supermachine", "src/worker/" ASSET_WORKER_NAME, X_OK,
};

/* Every place tried so far, "PATH (why), ...", for the error. */
struct asset_search {
	const struct asset_kind *kind;
	char tried[8192];
	size_t n;
	const char *from; /* the rule that found it */
};

static void search_note(struct asset_search *s, const char *path, const char *why)
{
	size_t room = sizeof(s->tried) - s->n;
	int w = snprintf(s->tried + s->n, room, "%s%s (%s)", s->n ? ", " : "", path, why);

	if (w < 0 || (size_t)w >= room)
		s->n = sizeof(s->tried) - 1;
	else
		s->n += (size_t)w;
}

/* True when path is a regular file we may read (or run); out gets it. */
static bool search_file(struct asset_search *s, const char *path, char *out, size_t len)
{
	struct stat st;

	if (!path || !*path)
		return false;
	if (stat(path, &st) < 0)
		return search_note(s, path, strerror(errno)), false;
	if (!S_ISREG(st.st_mode))
		return search_note(s, path, "not a regular file"), false;
	if (access(path, s->kind->mode) < 0)
		return search_note(s, path, s->kind->mode == X_OK ? "not executable" : "not readable"), false;
	if (strlen(path) >= len)
		return search_note(s, path, "path too long"), false;
	snprintf(out, len, "%s", path);
	return true;
}

static bool search_in(struct asset_search *s, const char *from, const char *dir, const char *name, char *out,
		      size_t len)
{
	char path[4096];

	if (!dir || !*dir)
		return false;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return search_note(s, dir, "path too long"), false;
	if (!search_file(s, path, out, len))
		return false;
	s->from = from;
	return true;
}

static int search_fail(struct asset_search *s, const char *named_by, sm_error **err)
{
	if (named_by)
		sm_error_set(err, SM_E_NOT_FOUND, 0, "no guest %s at %s, which %s names", s->kind->what, s->tried,
			     named_by);
	else
		sm_error_set(err, SM_E_NOT_FOUND, 0, "no guest %s found; tried %s; %s", s->kind->what,
			     s->n ? s->tried : "nowhere", s->kind->hint);
	return -1;
}

/* SOURCE/kernel/build --print-dir: the kernel cache entry for this tree's kernel fragment. */
static bool kernel_cache_dir(const char *source_root, char *out, size_t len)
{
	char script[4096];
	char *argv[] = { script, "--print-dir", NULL };
	posix_spawn_file_actions_t fa;
	int pfd[2], status;
	ssize_t n, got = 0;
	pid_t pid;

	if (!source_root || !*source_root || len < 2)
		return false;
	snprintf(script, sizeof(script), "%s/kernel/build", source_root);
	if (access(script, X_OK) < 0 || pipe2(pfd, O_CLOEXEC) < 0)
		return false;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	if (posix_spawn(&pid, script, &fa, NULL, argv, environ) != 0)
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	while (pid > 0 && (size_t)got < len - 1 && (n = read(pfd[0], out + got, len - 1 - (size_t)got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		got += n;
	}
	close(pfd[0]);
	if (pid < 0)
		return false;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	out[got] = 0;
	out[strcspn(out, "\n")] = 0;
	return out[0] == '/';
}

/* 1. the config, 2. the environment: a path named there must be right. */
static int asset_named(struct asset_search *s, const sm_assets *g, const char *given, const char *env, char *out,
		       size_t len, sm_error **err)
{
	char by[64];

	if (given) {
		snprintf(by, sizeof(by), "sm_assets.%s", s->kind->field);
		s->from = "named by the VM config";
		return search_file(s, given, out, len) ? 0 : search_fail(s, by, err);
	}
	if (g->dir)
		return search_in(s, "sm_assets.dir", g->dir, s->kind->name, out, len) ? 0
			: search_fail(s, "sm_assets.dir", err);
	snprintf(by, sizeof(by), "$%s", s->kind->env);
	s->from = s->kind->env_rule;
	return search_file(s, env, out, len) ? 0 : search_fail(s, by, err);
}

static int assets_kernel(const sm_assets *g, const struct vm_assets_places *p, char *out, size_t len,
			 const char **from, sm_error **err)
{
	struct asset_search s = { .kind = &kind_kernel };
	const char *name = s.kind->name;
	char cache[4096];
	int rc = 0;

	if (g->kernel || g->dir || p->env_kernel)
		rc = asset_named(&s, g, g->kernel, p->env_kernel, out, len, err);
	else if (!search_in(&s, "$SUPERMACHINE_KERNEL_DIR", p->env_kernel_dir, name, out, len) &&
		 !search_in(&s, "$SUPERMACHINE_ASSETS_DIR", p->env_assets_dir, name, out, len) &&
		 !search_in(&s, "the install prefix", p->datadir, name, out, len) &&
		 !search_in(&s, "meson -Dkernel_dir", p->kernel_dir, name, out, len) &&
		 !(kernel_cache_dir(p->source_root, cache, sizeof(cache)) &&
		   search_in(&s, "the kernel cache of the build tree's source", cache, name, out, len)))
		rc = search_fail(&s, NULL, err);
	*from = s.from;
	return rc;
}

static int assets_file(const struct asset_kind *k, const char *given, const char *env, const char *install_dir,
		       const sm_assets *g, const struct vm_assets_places *p, char *out, size_t len,
		       const char **from, sm_error **err)
{
	struct asset_search s = { .kind = k };
	int rc = 0;

	if (given || g->dir || env)
		rc = asset_named(&s, g, given, env, out, len, err);
	else if (!search_in(&s, "$SUPERMACHINE_ASSETS_DIR", p->env_assets_dir, k->name, out, len) &&
		 !search_in(&s, "the install prefix", install_dir, k->name, out, len) &&
		 !search_in(&s, "the build tree", p->build_root, k->build_path, out, len))
		rc = search_fail(&s, NULL, err);
	*from = s.from;
	return rc;
}

static const char *env_get(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

void vm_assets_places_default(struct vm_assets_places *p)
{
	*p = (struct vm_assets_places){
		.env_kernel = env_get(kind_kernel.env),
		.env_initramfs = env_get(kind_initramfs.env),
		.env_worker = env_get(kind_worker.env),
		.env_kernel_dir = env_get("SUPERMACHINE_KERNEL_DIR"),
		.env_assets_dir = env_get("SUPERMACHINE_ASSETS_DIR"),
		.datadir = SM_INSTALL_DATADIR,
		.libexecdir = SM_INSTALL_LIBEXECDIR,
		.build_root = SM_BUILD_ROOT,
		.kernel_dir = SM_KERNEL_DIR,
		.source_root = SM_SOURCE_ROOT,
	};
}

int vm_assets_find_in(const sm_assets *given, const struct vm_assets_places *p, struct vm_asset_paths *out,
		      sm_error **err)
{
	static const sm_assets none = { 0 };

	if (!given)
		given = &none;
	if (assets_kernel(given, p, out->kernel, sizeof(out->kernel), &out->kernel_from, err) < 0 ||
	    assets_file(&kind_initramfs, given->initramfs, p->env_initramfs, p->datadir, given, p, out->initramfs,
			sizeof(out->initramfs), &out->initramfs_from, err) < 0 ||
	    assets_file(&kind_worker, given->worker, p->env_worker, p->libexecdir, given, p, out->worker,
			sizeof(out->worker), &out->worker_from, err) < 0)
		return -1;
	return 0;
}

int vm_assets_find(const sm_assets *given, struct vm_asset_paths *out, sm_error **err)
{
	struct vm_assets_places p;

	vm_assets_places_default(&p);
	return vm_assets_find_in(given, &p, out, err);
}

/* What sm_assets_find() hands out: the paths discovery settled on. */
struct sm_asset_paths {
	struct vm_asset_paths found;
};

sm_asset_paths *sm_assets_find(const sm_assets *given, sm_error **err)
{
	struct sm_asset_paths *p = calloc(1, sizeof(*p));

	if (!p)
		return sm_error_set(err, SM_E_NOMEM, 0, "find assets"), NULL;
	if (vm_assets_find(given, &p->found, err) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

const char *sm_asset_paths_kernel(const sm_asset_paths *p) { return p->found.kernel; }
const char *sm_asset_paths_initramfs(const sm_asset_paths *p) { return p->found.initramfs; }
const char *sm_asset_paths_worker(const sm_asset_paths *p) { return p->found.worker; }

void sm_asset_paths_free(sm_asset_paths *p)
{
	free(p);
}

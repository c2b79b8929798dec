/*
 * Snapshots: where they live, the checks before a restore, capture
 * (sm_vm_snapshot), restore (sm_vm_restore), reset and removal (listing
 * is snapshot_list.c). The worker writes and loads state and memory
 * (control "snapshot-fd" with DIR's descriptor, --restore DIR, control "reset"); this file
 * owns metadata.json, the atomic directory, and the per-clone clock,
 * entropy and balloon target.
 */
#include "lib/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fsutil.h"
#include "lib/config.h"
#include "base/error.h"
#include "lib/hostcheck.h"
#include "lib/log.h"
#include "lib/vm_mount.h"
#include "oci/oci.h"

#define SNAP_CAPTURE_TIMEOUT_MS 600000
#define SNAP_RESET_TIMEOUT_MS 60000
#define SNAP_STATE_MIN 32
#define SNAP_STATE_MAX (64u << 20)

/* ---- names and places ---- */

bool snapshot_name_valid(const char *name)
{
	size_t n = strlen(name);
	char c0 = name[0];

	if (n == 0 || n > SNAP_NAME_MAX)
		return false;
	if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || (c0 >= '0' && c0 <= '9')))
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n &&
	       !strstr(name, SNAP_PARTIAL_MARK);
}

int snapshot_resolve(const char *name_or_dir, char *out, size_t len, sm_error **err)
{
	char base[4096], cwd[4096];
	int n;

	if (!name_or_dir || !*name_or_dir)
		return sm_error_set(err, SM_E_INVALID, 0, "no snapshot name given"), -1;
	if (strchr(name_or_dir, '/')) {
		if (name_or_dir[0] == '/')
			n = snprintf(out, len, "%s", name_or_dir);
		else if (getcwd(cwd, sizeof(cwd)))
			n = snprintf(out, len, "%s/%s", cwd, name_or_dir);
		else
			return sm_error_set(err, SM_E_IO, errno, "current directory"), -1;
		while (n > 1 && out[n - 1] == '/')
			out[--n] = 0;
	} else {
		if (!snapshot_name_valid(name_or_dir))
			return sm_error_set(err, SM_E_INVALID, 0,
					    "'%s' is not a snapshot name ([A-Za-z0-9][A-Za-z0-9._-]*, at most %d "
					    "bytes) nor a path",
					    name_or_dir, SNAP_NAME_MAX), -1;
		if (snapshot_base(base, sizeof(base), err) < 0)
			return -1;
		n = snprintf(out, len, "%s/%s", base, name_or_dir);
	}
	if (n < 0 || (size_t)n >= len || strpbrk(out, "\n\r"))
		return sm_error_set(err, SM_E_INVALID, 0, "snapshot path too long or not printable"), -1;
	return 0;
}

bool sm_snapshot_exists(const char *name_or_dir)
{
	char dir[4096], path[4200];
	struct stat st;

	if (!name_or_dir || (!strchr(name_or_dir, '/') && !snapshot_name_valid(name_or_dir)))
		return false;
	if (snapshot_resolve(name_or_dir, dir, sizeof(dir), NULL) < 0)
		return false;
	snprintf(path, sizeof(path), "%s/" WORKER_SNAP_METADATA_FILE, dir);
	return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- checks before a restore ---- */

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* The memory file's header (docs/snapshot-format.md): its id into id_hex, checks size against RAM. */
static int memory_header(const char *dir, uint64_t ram_expected, char id_hex[SNAP_ID_HEX + 1], sm_error **err)
{
	char path[4200];
	uint8_t h[48];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/" WORKER_SNAP_MEMORY_FILE, dir);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return sm_error_set(err, SM_E_SNAPSHOT, errno, "%s", path), -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		close(fd);
		return sm_error_set(err, SM_E_SNAPSHOT, 0, "%s: not a snapshot memory file (too short)", path), -1;
	}
	close(fd);
	if (memcmp(h, "SMMEMORY", 8) || le32(h + 8) != 1 || le32(h + 12) != 4096)
		return sm_error_set(err, SM_E_SNAPSHOT, 0, "%s: bad magic, version or page size", path), -1;
	uint64_t ram = le64(h + 16);
	if (ram_expected && ram != ram_expected)
		return sm_error_set(err, SM_E_SNAPSHOT, 0, "%s holds %llu bytes of RAM; the metadata says %llu", path,
				    (unsigned long long)ram, (unsigned long long)ram_expected), -1;
	if ((uint64_t)st.st_size != WORKER_SNAP_MEMORY_HEADER_BYTES + ram)
		return sm_error_set(err, SM_E_SNAPSHOT, 0, "%s is %llu bytes; %llu bytes of RAM need %llu (truncated?)",
				    path, (unsigned long long)st.st_size, (unsigned long long)ram,
				    (unsigned long long)(WORKER_SNAP_MEMORY_HEADER_BYTES + ram)), -1;
	hex(h + 24, 16, id_hex);
	return 0;
}

static int state_check(const char *dir, sm_error **err)
{
	char path[4200];
	struct stat st;

	snprintf(path, sizeof(path), "%s/" WORKER_SNAP_STATE_FILE, dir);
	if (lstat(path, &st) < 0)
		return sm_error_set(err, SM_E_SNAPSHOT, errno, "%s", path), -1;
	if (!S_ISREG(st.st_mode) || st.st_size < SNAP_STATE_MIN || st.st_size > SNAP_STATE_MAX)
		return sm_error_set(err, SM_E_SNAPSHOT, 0, "%s: not a state file (%lld bytes)", path,
				    (long long)st.st_size), -1;
	return 0;
}

/* Stamps are trusted only in a directory of ours that nobody else can write to. */
static bool dir_trusted(const char *dir)
{
	struct stat st;

	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & 022);
}

int snapshot_check(const char *dir, const struct vm_asset_paths *assets, struct snap_meta *m, sm_error **err)
{
	char path[4200], id[SNAP_ID_HEX + 1];
	bool trust = dir_trusted(dir);

	snprintf(path, sizeof(path), "%s/" WORKER_SNAP_METADATA_FILE, dir);
	if (snapmeta_load(path, false, m, err) < 0)
		return -1;
	if (state_check(dir, err) < 0 || memory_header(dir, (uint64_t)m->memory_mib << 20, id, err) < 0)
		goto fail;
	if (strcmp(id, m->id)) {
		sm_error_set(err, SM_E_SNAPSHOT, 0, "%s/memory has snapshot id %s, metadata.json says %s", dir, id,
			     m->id);
		goto fail;
	}
	if (snapfile_verify(&m->kernel, assets->kernel, trust, "kernel", err) < 0 ||
	    snapfile_verify(&m->initramfs, assets->initramfs, trust, "initramfs", err) < 0 ||
	    snapfile_verify(&m->rootfs, m->rootfs.path, trust, "root filesystem", err) < 0)
		goto fail;
	return 0;
fail:
	snapmeta_release(m);
	return -1;
}

/* ---- directories ---- */

/* Removes a flat directory (a snapshot, or a half-made one) and what is in it; what stays is logged. */
static void dir_remove(const char *dir)
{
	char failed[4400];
	int rc = dir_remove_flat(dir, failed, sizeof(failed));

	if (rc < 0 && rc != -ENOENT)
		log_warn("snapshot directory %s not removed whole: %s: %s", dir, failed, strerror(-rc));
}

int snapshot_prune_partial(unsigned min_age_s, uint64_t *bytes, sm_error **err)
{
	char base[4096], path[4400];
	struct dirent *de;
	DIR *d;

	if (snapshot_base(base, sizeof(base), err) < 0)
		return -1;
	d = opendir(base);
	if (!d)
		return sm_error_set(err, SM_E_IO, errno, "open %s", base), -1;
	while ((de = readdir(d))) {
		struct dir_usage u = { .files = 0 };
		if (de->d_name[0] == '.' || !strstr(de->d_name, SNAP_PARTIAL_MARK))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", base, de->d_name) >= sizeof(path) ||
		    dir_usage_add(path, NULL, &u) < 0)
			continue;
		if (time(NULL) - u.newest < (time_t)min_age_s)
			continue; /* a capture still writing keeps touching its files */
		dir_remove(path);
		*bytes += u.bytes;
	}
	closedir(d);
	return 0;
}

/*
 * Moves tmp to dir; an existing dir is replaced when asked (moved aside,
 * then removed). The parent directory is fsync'ed after the rename that
 * installs it, so the snapshot's name outlives a crash as its files do.
 */
static int dir_install(const char *tmp, const char *dir, bool replace, sm_error **err)
{
	char old[4200];
	int rc = durable_rename(tmp, dir);

	if (rc == 0)
		return 0;
	if ((rc != -ENOTEMPTY && rc != -EEXIST) || !replace)
		return sm_error_set(err, rc == -ENOTEMPTY || rc == -EEXIST ? SM_E_BUSY : SM_E_IO, -rc,
				    "install the snapshot as %s", dir), -1;
	snprintf(old, sizeof(old), "%s.old-%ld", dir, (long)getpid());
	if (rename(dir, old) < 0)
		return sm_error_set(err, SM_E_IO, errno, "replace the snapshot %s", dir), -1;
	rc = durable_rename(tmp, dir);
	if (rc < 0)
		return sm_error_set(err, SM_E_IO, -rc, "replace the snapshot %s", dir), -1;
	dir_remove(old);
	return 0;
}

/* ---- resume: clock, entropy, CRNG reseed, thaw (docs/snapshots.md) ---- */

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One RESUME: the host's clock, fresh entropy (the guest reseeds its CRNG from it), the thaw. */
static int restore_resume_once(struct sm_vm *vm, sm_error **err)
{
	uint8_t rnd[PROTO_RESUME_ENTROPY];
	struct proto_pong pong;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return sm_error_set(err, SM_E_IO, errno, "getrandom"), -1;
	return agent_resume(&vm->target, realtime_ns(), rnd, sizeof(rnd), &pong, err);
}

/*
 * Whether the agent itself refused us (another protocol version, a
 * malformed answer): retrying cannot help. Anything on the way there (the
 * socket not bound yet, a CONNECT reset while the guest's vsock transport
 * resets) can.
 */
static bool resume_hopeless(const sm_error *e)
{
	const sm_error *root = e;

	while (sm_error_cause(root))
		root = sm_error_cause(root);
	if (sm_error_code(root) == SM_E_UNSUPPORTED || sm_error_code(root) == SM_E_INVALID)
		return true;
	return sm_error_code(root) == SM_E_PROTOCOL && sm_error_errno(root) == 0;
}

/*
 * The first connection after a restore or reset (or a capture of a
 * running VM, which left it sealed): retried until the agent answers.
 */
static int restore_resume(struct sm_vm *vm, uint32_t timeout_ms, const char *during, sm_error **err)
{
	uint64_t deadline = agent_now_ns() + (uint64_t)timeout_ms * 1000000u;
	useconds_t pause = 1000;

	for (;;) {
		sm_error *e = NULL;
		int rc = restore_resume_once(vm, &e);

		if (rc == 0)
			return 0;
		if (rc == AGENT_REFUSED || resume_hopeless(e) || !sm_vm_running(vm) || agent_now_ns() >= deadline) {
			if (err)
				*err = e;
			else
				sm_error_free(e);
			return vm_failed(vm, during, err);
		}
		sm_error_free(e);
		usleep(pause);
		if (pause < 50000)
			pause *= 2;
	}
}

/* ---- capture ---- */

/* "target=N" from the worker's `balloon` reply. */
static uint32_t balloon_target(struct sm_vm *vm)
{
	char reply[WORKER_CTL_LINE_MAX];
	uint64_t pages;

	if (vm_control(vm, WORKER_CTL_BALLOON, reply, sizeof(reply), NULL) < 0 ||
	    worker_reply_u64(reply, "target", &pages) < 0 || pages > UINT32_MAX)
		return 0;
	return (uint32_t)pages;
}

/* The capture-time fields: id from the memory file, digests, balloon target. */
static int capture_fill(struct sm_vm *vm, const char *tmp, struct snap_meta *m, const struct snapshot_extra *x,
			sm_error **err)
{
	char id[SNAP_ID_HEX + 1];

	if (memory_header(tmp, (uint64_t)m->memory_mib << 20, id, err) < 0)
		return -1;
	memcpy(m->id, id, sizeof(id));
	if (snapfile_record(&m->kernel, m->kernel.path, true, err) < 0 ||
	    snapfile_record(&m->initramfs, m->initramfs.path, true, err) < 0 ||
	    snapfile_record(&m->rootfs, m->rootfs.path, true, err) < 0)
		return -1;
	m->created = time(NULL);
	m->balloon_target_pages = !m->balloon ? 0
				  : x && x->balloon_target_pages ? x->balloon_target_pages : balloon_target(vm);
	/* a clone's boot record carries its snapshot's bake: a capture of it is no such bake */
	snprintf(m->warmup_tag, sizeof(m->warmup_tag), "%s", x && x->warmup_tag ? x->warmup_tag : "");
	json_decref(m->bake);
	m->bake = x && x->bake ? json_incref(x->bake) : NULL;
	return 0;
}

static int capture_into(struct sm_vm *vm, const char *tmp, struct snap_meta *m, const struct snapshot_extra *x,
			sm_error **err)
{
	char reply[512], path[4300];
	int dirfd, rc;

	/* the guest's disks synced; page cache stays warm */
	if (agent_quiesce(&vm->target, 0, err) < 0)
		return -1;
	/* by descriptor: a jailed worker's root has no path to tmp */
	dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return sm_error_set(err, SM_E_IO, errno, "open %s", tmp), -1;
	rc = vm_control_fd(vm, WORKER_CTL_SNAPSHOT_FD, dirfd, reply, sizeof(reply), SNAP_CAPTURE_TIMEOUT_MS, err);
	close(dirfd);
	if (rc < 0)
		return sm_error_wrap(err, "capture into %s", tmp), -1;
	if (capture_fill(vm, tmp, m, x, err) < 0)
		return -1;
	/*
	 * Written last: its durable write fsyncs tmp itself, which makes the
	 * names of the worker's state and memory files durable too.
	 */
	snprintf(path, sizeof(path), "%s/" WORKER_SNAP_METADATA_FILE, tmp);
	return snapmeta_write(path, m, false, err);
}

int snapshot_capture(struct sm_vm *vm, const char *dir, const struct snapshot_extra *extra, bool replace,
		     sm_error **err)
{
	char tmp[4200], boot[VM_PATH_MAX + 16];
	struct snap_meta *m = calloc(1, sizeof(*m));
	struct stat st;
	int rc = -1;

	if (!m)
		return sm_error_set(err, SM_E_NOMEM, 0, "snapshot"), -1;
	if (!replace && lstat(dir, &st) == 0) {
		sm_error_set(err, SM_E_BUSY, 0, "%s already exists", dir);
		goto out;
	}
	snprintf(boot, sizeof(boot), "%s/" SNAPMETA_BOOT_FILE, vm->dir);
	if (access(boot, F_OK) < 0 && errno == ENOENT) {
		/* vm_record_boot writes none for a VM whose root is a host directory */
		sm_error_set(err, SM_E_UNSUPPORTED, 0, "VM %s has a host directory as its root: it cannot be snapshotted",
			     vm->id);
		goto out;
	}
	if (vm_check(vm, "snapshot", err) < 0 || snapmeta_load(boot, true, m, err) < 0)
		goto out;
	/* beside the target, so the final rename stays in one filesystem */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s" SNAP_PARTIAL_MARK "XXXXXX", dir) >= sizeof(tmp) || !mkdtemp(tmp)) {
		sm_error_set(err, SM_E_IO, errno, "create a directory beside %s", dir);
		goto out;
	}
	/* a jailed worker writes the files as its own uid */
	if (vm->jailed && chown(tmp, vm->jail_uid, vm->jail_gid) < 0) {
		sm_error_set(err, SM_E_IO, errno, "hand %s to the jailed worker", tmp);
		dir_remove(tmp);
		goto out;
	}
	if (capture_into(vm, tmp, m, extra, err) < 0 || dir_install(tmp, dir, replace, err) < 0) {
		dir_remove(tmp);
		vm_failed(vm, "snapshot", err);
		goto out;
	}
	rc = 0;
out:
	snapmeta_release(m);
	free(m);
	return rc;
}

/*
 * The capture's QUIESCE sealed the VM: its workload and execs stay frozen
 * until a RESUME, which also gives it fresh entropy as its clones get.
 * Resumed whether the capture worked or not; rc is the capture's result.
 */
static int capture_resume(struct sm_vm *vm, int rc, sm_error **err)
{
	sm_error *e = NULL;

	if (!sm_vm_running(vm) || restore_resume(vm, SNAP_RESET_TIMEOUT_MS, "resume after the capture", &e) == 0)
		return rc;
	if (rc < 0) {
		log_warn("VM %s stays sealed after a failed capture: %s", vm->id, sm_error_string(e));
		sm_error_free(e);
		return rc;
	}
	if (err)
		*err = e;
	else
		sm_error_free(e);
	sm_error_wrap(err, "the snapshot was written, but VM %s could not be resumed after it", vm->id);
	return -1;
}

int sm_vm_snapshot(sm_vm *vm, const char *name_or_dir, sm_error **err)
{
	char dir[4096];
	int rc;

	if (!vm)
		return sm_error_set(err, SM_E_INVALID, 0, "snapshot: no VM"), -1;
	rc = snapshot_resolve(name_or_dir, dir, sizeof(dir), err);
	if (rc == 0)
		rc = capture_resume(vm, snapshot_capture(vm, dir, NULL, false, err), err);
	if (rc < 0)
		return sm_error_wrap(err, "snapshot VM %s to %s", vm->id, name_or_dir ? name_or_dir : ""), -1;
	return 0;
}

/* ---- restore ---- */

/* cfg may repeat what the snapshot fixed, not change it. */
static int restore_cfg_check(const struct snap_meta *m, const sm_vm_config *cfg, sm_error **err)
{
	if (cfg->memory_mib && cfg->memory_mib != m->memory_mib)
		return sm_error_set(err, SM_E_INVALID, 0, "the snapshot has %u MiB of memory, not %u", m->memory_mib,
				    cfg->memory_mib), -1;
	if (cfg->vcpus && cfg->vcpus != m->vcpus)
		return sm_error_set(err, SM_E_INVALID, 0, "the snapshot has %u vCPUs, not %u", m->vcpus, cfg->vcpus),
		       -1;
	if (cfg->network && !m->network)
		return sm_error_set(err, SM_E_INVALID, 0, "the snapshot was baked without a network; bake it with one"),
		       -1;
	if (cfg->workload || cfg->env || cfg->workdir || cfg->user || cfg->hostname)
		return sm_error_set(err, SM_E_INVALID, 0,
				    "a snapshot's workload, env, workdir, user and hostname are baked in; give them "
				    "per exec instead"), -1;
	if (cfg->nvolumes != m->nvolumes)
		return sm_error_set(err, SM_E_INVALID, 0,
				    "the snapshot was taken with %u volume(s)%s%s; give the same again (volumes are "
				    "not captured)",
				    m->nvolumes, m->nvolumes ? ", the first at " : "",
				    m->nvolumes ? m->volumes[0].guest_path : ""), -1;
	for (unsigned i = 0; i < m->nvolumes; i++)
		if (!cfg->volumes[i].guest_path || strcmp(cfg->volumes[i].guest_path, m->volumes[i].guest_path) ||
		    cfg->volumes[i].read_only != m->volumes[i].read_only)
			return sm_error_set(err, SM_E_INVALID, 0, "volume %u: the snapshot mounts %s%s there", i,
					    m->volumes[i].guest_path, m->volumes[i].read_only ? " (read-only)" : ""),
			       -1;
	return 0;
}

/* ms: the mounts restore_mounts() checked and resolved, served as they are */
static int restore_spawn(struct sm_vm *vm, const char *dir, const struct vm_asset_paths *assets,
			 const struct snap_meta *m, const sm_vm_config *cfg, const struct vm_mounts *ms,
			 struct worker_launch *l, sm_error **err)
{
	snapmeta_launch(m, l);
	/* not on the command line (the snapshot says them): for the jail's cgroup leaf */
	l->memory_mib = m->memory_mib;
	l->vcpus = m->vcpus;
	l->restore = dir;
	l->vsock = vm->vsock, l->control = vm->control, l->console = vm->console;
	for (unsigned i = 0; i < m->nvolumes; i++) {
		const sm_volume *v = &cfg->volumes[i];
		if (!v->host_path || strchr(v->host_path, ','))
			return sm_error_set(err, SM_E_INVALID, 0, "volume %u: needs a host path without ','", i), -1;
		if (vm_volume_prepare(v, err) < 0)
			return -1;
		if (!(vm->volumes[vm->nvolumes++] = strdup(v->host_path)))
			return sm_error_set(err, SM_E_NOMEM, 0, "volumes"), -1;
		l->disks[1 + i].path = v->host_path;
		l->disks[1 + i].read_only = v->read_only;
	}
	vm_mounts_launch(ms, l);
	return vm_spawn_launch(vm, l, assets->worker, cfg->detached, err);
}

/*
 * The host directories this restore serves, checked and resolved once
 * into ms (the caller frees it): the snapshot's, or cfg's in their
 * place. m->mounts becomes them, so a capture of the clone records what
 * it really had.
 */
static int restore_mounts(struct snap_meta *m, const sm_vm_config *cfg, struct vm_mounts *ms, sm_error **err)
{
	json_t *now;

	if (vm_mounts_restore(m->mounts, cfg, ms, err) < 0)
		return -1;
	now = vm_mounts_json(ms, true);
	if (!now)
		return sm_error_set(err, SM_E_NOMEM, 0, "mounts"), -1;
	json_decref(m->mounts);
	m->mounts = now;
	return 0;
}

static int restore_balloon(struct sm_vm *vm, sm_error **err)
{
	char req[64], reply[256];

	if (!vm->balloon_target)
		return 0;
	snprintf(req, sizeof(req), WORKER_CTL_BALLOON " %u", vm->balloon_target);
	return vm_control(vm, req, reply, sizeof(reply), err);
}

/* What a capture of this clone records: the snapshot's own boot description. */
static int restore_record(struct sm_vm *vm, const struct snap_meta *m, const sm_vm_config *cfg, sm_error **err)
{
	const char *label = cfg->label ? cfg->label : (m->label[0] ? m->label : m->image_name);
	char **cmd = NULL;
	int rc;

	if (m->workload && json_array_size(m->workload)) {
		size_t i, n = 0;
		json_t *v;
		cmd = calloc(json_array_size(m->workload) + 1, sizeof(*cmd));
		json_array_foreach(m->workload, i, v)
			if (cmd)
				cmd[n++] = (char *)json_string_value(v);
	}
	struct vm_machine mach = { .memory_mib = m->memory_mib, .vcpus = m->vcpus, .network = m->network };
	rc = vm_record_meta(vm, cfg, label, (const char *const *)cmd, &mach, err);
	free(cmd);
	return rc < 0 ? -1 : vm_write_boot_record(vm, m, err);
}

static int restore_run(struct sm_vm *vm, const char *dir, const struct vm_asset_paths *assets,
		       const struct snap_meta *m, const sm_vm_config *cfg, const struct vm_mounts *ms, sm_error **err)
{
	struct worker_launch *a = calloc(1, sizeof(*a));
	int rc = -1;

	if (!a)
		return sm_error_set(err, SM_E_NOMEM, 0, "restore"), -1;
	vm->volumes = calloc(VM_MAX_VOLUMES + 1, sizeof(char *));
	if (!vm->volumes) {
		sm_error_set(err, SM_E_NOMEM, 0, "restore");
		goto out;
	}
	if (vm_runtime_create(vm, err) < 0 || vm_take_config(vm, cfg, err) < 0)
		goto out;
	if (cfg->console_log)
		snprintf(vm->console, sizeof(vm->console), "%s", cfg->console_log);
	vm->balloon_target = m->balloon ? m->balloon_target_pages : 0;
	if (agent_target_init(&vm->target, vm->vsock, PROTO_AGENT_PORT, err) < 0 ||
	    restore_spawn(vm, dir, assets, m, cfg, ms, a, err) < 0 || restore_record(vm, m, cfg, err) < 0 ||
	    restore_resume(vm, cfg->boot_timeout_ms ? cfg->boot_timeout_ms : VM_DEFAULT_BOOT_TIMEOUT_MS,
			   "resume after restore", err) < 0 ||
	    restore_balloon(vm, err) < 0)
		goto out;
	vm->image_cmd = snapmeta_image_command(m);
	rc = 0;
out:
	free(a);
	return rc;
}

sm_vm *sm_vm_restore(const char *name_or_dir, const sm_vm_config *given, sm_error **err)
{
	return vm_restore_spare(name_or_dir, given, NULL, err);
}

sm_vm *vm_restore_spare(const char *name_or_dir, const sm_vm_config *given, struct spare *spare, sm_error **err)
{
	struct snap_meta *m = calloc(1, sizeof(*m));
	struct vm_asset_paths assets;
	struct sm_vm *vm = vm_alloc();
	struct vm_mounts ms = { .n = 0 };
	sm_vm_config c, *cfg = &c;
	char dir[4096];

	if (vm_config_copy(&c, given, err) < 0)
		goto fail;
	if (!m || !vm) {
		sm_error_set(err, SM_E_NOMEM, 0, "restore");
		goto fail;
	}
	vm->kind = cfg->detached ? &vm_kind_restored_detached : &vm_kind_restored;
	vm->remove = !cfg->detached;
	vm->spare = spare;
	if (snapshot_resolve(name_or_dir, dir, sizeof(dir), err) < 0 ||
	    vm_assets_find(cfg->assets, &assets, err) < 0 || snapshot_check(dir, &assets, m, err) < 0)
		goto fail;
	if (restore_cfg_check(m, cfg, err) < 0 || restore_mounts(m, cfg, &ms, err) < 0 ||
	    hostcheck_require_kvm(err) < 0 || restore_run(vm, dir, &assets, m, cfg, &ms, err) < 0)
		goto fail;
	vm_mounts_free(&ms);
	snapmeta_release(m);
	free(m);
	vm->spare = NULL; /* borrowed for the start only */
	return vm;
fail:
	sm_error_wrap(err, "restore %s", name_or_dir ? name_or_dir : "snapshot");
	vm_mounts_free(&ms);
	if (m)
		snapmeta_release(m);
	free(m);
	vm_discard(vm);
	return NULL;
}

/* sm_vm_reset() of a restored VM: the worker reloads its snapshot in place. */
static int snapshot_reset(struct sm_vm *vm, sm_error **err)
{
	char reply[256];

	if (vm_check(vm, "reset", err) < 0)
		return -1;
	if (vm_control_timeout(vm, WORKER_CTL_RESET, reply, sizeof(reply), SNAP_RESET_TIMEOUT_MS, err) < 0)
		return vm_failed(vm, "reset", err);
	if (restore_resume(vm, VM_DEFAULT_BOOT_TIMEOUT_MS, "resume after reset", err) < 0)
		return -1;
	return restore_balloon(vm, err);
}

const struct vm_kind vm_kind_restored = { .free = vm_stop_and_destroy, .reset = snapshot_reset };
const struct vm_kind vm_kind_restored_detached = { .free = vm_destroy, .reset = snapshot_reset };

/* ---- removal ---- */

int sm_snapshot_remove(const char *name, sm_error **err)
{
	char dir[4096], aside[4200];

	if (!name || !snapshot_name_valid(name))
		return sm_error_set(err, SM_E_INVALID, 0, "'%s' is not a snapshot name", name ? name : ""), -1;
	if (snapshot_resolve(name, dir, sizeof(dir), err) < 0)
		return -1;
	if (!sm_snapshot_exists(name))
		return sm_error_set(err, SM_E_NOT_FOUND, 0, "no snapshot %s", name), -1;
	/* moved aside first: a restore starting now sees it whole or not at all */
	snprintf(aside, sizeof(aside), "%s.removing-%ld", dir, (long)getpid());
	if (rename(dir, aside) < 0)
		return sm_error_set(err, SM_E_IO, errno, "remove %s", dir), -1;
	dir_remove(aside);
	return 0;
}

/*
 * `supermachine system df` and `system prune` for embedders: what the
 * store (blobs, root filesystems, snapshots, tmp/) and the VMs' runtime
 * directories hold, and collecting what nothing uses (sm_store_usage_get,
 * sm_store_prune). The store's own GC (src/oci) decides what a name
 * needs; this adds what snapshots boot from and the runtime directories.
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/error.h"
#include "base/fsutil.h"
#include "lib/snapshot.h"
#include "lib/vm_cgroup.h"
#include "lib/vm.h"
#include "oci/oci.h"

/* A runtime directory younger than this may belong to a VM being started: prune leaves it. */
#define PRUNE_MIN_AGE_S 60

/* The store's directories: images, blobs, root filesystems, tmp/. */
static int usage_store(sm_store_usage *u, sm_error **err)
{
	struct oci_store *st = NULL;
	struct oci_image **imgs = NULL;
	struct dir_usage blobs = { .files = 0 }, rootfs = { .files = 0 }, tmp = { .files = 0 };
	char dir[PATH_MAX];
	size_t n = 0;

	if (oci_store_open(NULL, &st, err) < 0)
		return -1;
	if (oci_image_list(st, &imgs, &n, err) < 0) {
		oci_store_close(st);
		return -1;
	}
	oci_image_list_free(imgs, n);
	u->images = n;
	snprintf(dir, sizeof(dir), "%s/blobs/sha256", oci_store_root(st));
	dir_usage_add(dir, NULL, &blobs); /* a directory not made yet holds nothing */
	snprintf(dir, sizeof(dir), "%s/rootfs", oci_store_root(st));
	dir_usage_add(dir, ".ext4", &rootfs);
	snprintf(dir, sizeof(dir), "%s/tmp", oci_store_root(st));
	dir_usage_add(dir, NULL, &tmp);
	oci_store_close(st);
	u->blobs = blobs.files, u->blob_bytes = blobs.bytes;
	u->rootfs = rootfs.files, u->rootfs_bytes = rootfs.bytes;
	u->tmp_bytes = tmp.bytes;
	return 0;
}

static int usage_snapshots(sm_store_usage *u, sm_error **err)
{
	sm_snapshot_list *l = sm_snapshot_list_load(err);

	if (!l)
		return -1;
	u->snapshots = sm_snapshot_list_count(l);
	for (size_t i = 0; i < u->snapshots; i++)
		u->snapshot_bytes += sm_snapshot_info_disk_bytes(sm_snapshot_list_at(l, i));
	sm_snapshot_list_free(l);
	return 0;
}

/* The runtime directory of VM id, in buf. */
static void runtime_dir(char *buf, size_t n, const char *base, const char *id)
{
	snprintf(buf, n, "%s/%s", base, id);
}

static int usage_vms(sm_store_usage *u, sm_error **err)
{
	char base[PATH_MAX], dir[PATH_MAX + 32];
	struct dir_usage du = { .files = 0 };
	sm_vm_list *l;

	if (vm_runtime_base(base, sizeof(base), err) < 0 || !(l = sm_vm_list_load(err)))
		return -1;
	u->vms = sm_vm_list_count(l);
	for (size_t i = 0; i < u->vms; i++) {
		const sm_vm_info *v = sm_vm_list_at(l, i);
		u->vms_running += sm_vm_info_status(v) == SM_VM_RUNNING;
		runtime_dir(dir, sizeof(dir), base, sm_vm_info_id(v));
		dir_usage_add(dir, NULL, &du);
	}
	sm_vm_list_free(l);
	u->runtime_bytes = du.bytes;
	return 0;
}

/* The caller's sized output struct: its size, else the first layout's. -1 when too small to hold size. */
static size_t out_size(size_t given, size_t ours)
{
	if (given == 0)
		return ours;
	return given < sizeof(size_t) ? 0 : (given < ours ? given : ours);
}

int sm_store_usage_get(sm_store_usage *out, sm_error **err)
{
	sm_store_usage u = { .size = sizeof(u) };
	size_t n = out ? out_size(out->size, sizeof(u)) : 0;

	if (!n)
		return sm_error_set(err, SM_E_INVALID, 0, "store usage: no sm_store_usage, or its size too small"), -1;
	if (usage_store(&u, err) < 0 || usage_snapshots(&u, err) < 0 || usage_vms(&u, err) < 0)
		return sm_error_wrap(err, "store usage"), -1;
	u.size = n;
	memcpy(out, &u, n);
	return 0;
}

/* Removes the runtime directories of ended VMs older than PRUNE_MIN_AGE_S. */
static int prune_vms(sm_prune_report *r, sm_error **err)
{
	char base[PATH_MAX], dir[PATH_MAX + 32];
	int64_t now = (int64_t)time(NULL);
	sm_vm_list *l;

	if (vm_runtime_base(base, sizeof(base), err) < 0 || !(l = sm_vm_list_load(err)))
		return -1;
	for (size_t i = 0; i < sm_vm_list_count(l); i++) {
		const sm_vm_info *v = sm_vm_list_at(l, i);
		struct dir_usage du = { .files = 0 };
		if (sm_vm_info_status(v) == SM_VM_RUNNING || now - sm_vm_info_created(v) < PRUNE_MIN_AGE_S)
			continue;
		runtime_dir(dir, sizeof(dir), base, sm_vm_info_id(v));
		dir_usage_add(dir, NULL, &du);
		vm_runtime_remove_dir(dir);
		r->vms++;
		r->vm_bytes += du.bytes;
	}
	sm_vm_list_free(l);
	vm_cgroup_prune(base); /* leaves whose VM's directory is gone: a crashed process's */
	return 0;
}

/*
 * A capture cut short leaves NAME.partial-XXXXXX (src/lib/snapshot.h); one
 * untouched this long is no capture still writing.
 */
#define PRUNE_PARTIAL_MIN_AGE_S 600

/* The store's GC, keeping what the snapshots boot from. */
static int prune_store(sm_prune_report *r, sm_error **err)
{
	sm_snapshot_list *l = sm_snapshot_list_load(err);
	struct oci_store *st = NULL;
	const char **keep;
	size_t n = sm_snapshot_list_count(l);
	int rc = -1;

	if (!l)
		return -1;
	keep = calloc(n + 1, sizeof(*keep));
	if (!keep) {
		sm_error_set(err, SM_E_NOMEM, 0, "prune");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		keep[i] = sm_snapshot_info_rootfs(sm_snapshot_list_at(l, i));
	if (oci_store_open(NULL, &st, err) == 0)
		rc = oci_store_gc_keep(st, true, keep, &r->store_bytes, err);
	oci_store_close(st);
out:
	free(keep);
	sm_snapshot_list_free(l);
	return rc;
}

int sm_store_prune(sm_prune_report *out, sm_error **err)
{
	sm_prune_report r = { .size = sizeof(r) };
	size_t n = out ? out_size(out->size, sizeof(r)) : sizeof(r);

	if (!n)
		return sm_error_set(err, SM_E_INVALID, 0, "prune: sm_prune_report's size too small"), -1;
	if (prune_vms(&r, err) < 0 || prune_store(&r, err) < 0 ||
	    snapshot_prune_partial(PRUNE_PARTIAL_MIN_AGE_S, &r.store_bytes, err) < 0)
		return sm_error_wrap(err, "prune"), -1;
	if (out) {
		r.size = n;
		memcpy(out, &r, n);
	}
	return 0;
}

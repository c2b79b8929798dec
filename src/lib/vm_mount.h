/*
 * Host-directory mounts (sm_mount) as the library carries them from a
 * config or a snapshot's metadata to the worker's command line and the
 * guest's /init (vm_mount.c).
 */
#ifndef SM_LIB_VM_MOUNT_H
#define SM_LIB_VM_MOUNT_H

#include <jansson.h>
#include <stdbool.h>

#include <supermachine.h>

#include "proto/proto.h"
#include "proto/worker.h"

struct vm_mount {
	char tag[SM_MOUNT_TAG_MAX + 1];
	char *host_dir;   /* resolved (realpath) */
	char *guest_path; /* NULL: not mounted by /init */
	bool read_only;
	sm_symlinks symlinks;
};

struct vm_mounts {
	struct vm_mount m[SM_MAX_MOUNTS];
	unsigned n;
};

/*
 * Checks cfg's mounts (host directories exist and are directories, tags
 * unique, guest paths absolute and apart from each other and from the
 * volumes) and resolves them into ms. 0, or -1 naming the mount.
 */
int vm_mounts_plan(const sm_vm_config *cfg, struct vm_mounts *ms, sm_error **err);
/* A restore's: the snapshot's saved mounts, with cfg's host directories when it gives them. */
int vm_mounts_restore(const json_t *saved, const sm_vm_config *cfg, struct vm_mounts *ms, sm_error **err);
void vm_mounts_free(struct vm_mounts *ms);

/* One virtio-fs device per mount (pointers into ms). */
void vm_mounts_launch(const struct vm_mounts *ms, struct worker_launch *l);
/* The mounts /init makes (those with a guest path) into out[]; their count. */
unsigned vm_mounts_guest(const struct vm_mounts *ms, struct proto_volume *out);

/* As a snapshot records them (with_host: the host directories too); NULL on ENOMEM. */
json_t *vm_mounts_json(const struct vm_mounts *ms, bool with_host);
/* Reads vm_mounts_json()'s array back (strings point into a); n mounts. */
int vm_mounts_from_json(const json_t *a, sm_mount *out, size_t *n, sm_error **err);

const char *vm_symlinks_name(sm_symlinks s);

#endif

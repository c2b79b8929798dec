/*
 * Snapshots in the library (docs/snapshots.md, docs/snapshot-format.md,
 * "metadata.json"): what a snapshot directory holds besides the worker's
 * state and memory files, how it is checked before a restore, capture
 * (sm_vm_snapshot), restore (sm_vm_restore), reset and bake (bake.c).
 *
 * metadata.json is hostile input like the rest of the directory: the
 * parser bounds every size, count and string, refuses unknown versions,
 * and a restore builds the worker's command line from checked fields,
 * never from text copied out of the file.
 */
#ifndef SM_LIB_SNAPSHOT_H
#define SM_LIB_SNAPSHOT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include <supermachine.h>

#include "lib/vm.h"
#include "proto/worker.h"

#define SNAPMETA_FORMAT "supermachine-snapshot"
#define SNAPMETA_VERSION 1
#define SNAPMETA_BOOT_FILE "boot.json" /* in a VM's runtime directory: what a capture records */
#define SNAPMETA_MAX_BYTES (1u << 20)
#define SNAPMETA_MAX_LIST 4096u        /* argv / env entries */
#define SNAPMETA_MAX_STR 4096u         /* any other string */
#define SNAP_ID_HEX 32
#define SNAP_NAME_MAX 128
#define SNAP_DIGEST_LEN 71             /* "sha256:" + 64 hex */

/* A host file the snapshot depends on: its path, digest and stat stamp. */
struct snap_file {
	char path[4096];
	char sha256[SNAP_DIGEST_LEN + 1];
	uint64_t size, ino, dev;
	int64_t mtime_ns, ctime_ns;
};

struct snap_volume {
	char host_path[4096];  /* where it was at capture: a hint, never opened by a restore */
	char guest_path[4096];
	bool read_only;
};

/* metadata.json (and a runtime directory's boot.json, which lacks the capture fields). */
struct snap_meta {
	unsigned version;
	char id[SNAP_ID_HEX + 1];  /* the memory file's snapshot id, hex; "" in boot.json */
	int64_t created;
	uint32_t memory_mib;
	unsigned vcpus;
	bool network, balloon;
	uint32_t balloon_target_pages;
	struct snap_file kernel, initramfs, rootfs;
	struct snap_volume volumes[VM_MAX_VOLUMES];
	unsigned nvolumes;
	char image_name[1024];      /* "" for a bare rootfs file */
	char image_digest[80];
	char label[256];
	char warmup_tag[256];
	json_t *image_config;       /* {entrypoint, cmd, env, working_dir, user, stop_signal} or NULL */
	json_t *workload;           /* the workload's argv (array of strings) or NULL */
	json_t *bake;               /* how it was baked (bake.c's cache key) or NULL */
	json_t *mounts;             /* host-directory mounts (vm_mounts_json, with host dirs) or NULL */
};

/* ---- metadata (snapshot_meta.c) ---- */

/*
 * Parses and checks metadata: boot false for a snapshot's metadata.json
 * (every field required), true for a runtime boot.json (no id, digests).
 * what names the file in messages. m must be released.
 */
int snapmeta_parse(const char *buf, size_t len, const char *what, bool boot, struct snap_meta *m,
		   sm_error **err);
/* Reads path (bounded) and parses it. */
int snapmeta_load(const char *path, bool boot, struct snap_meta *m, sm_error **err);
/* The JSON text (malloc'ed), or NULL when out of memory. */
char *snapmeta_dump(const struct snap_meta *m, bool boot);
/* Writes path atomically (path.tmp, fsync, rename). */
int snapmeta_write(const char *path, const struct snap_meta *m, bool boot, sm_error **err);
void snapmeta_release(struct snap_meta *m);
/* The image's Entrypoint+Cmd from image_config, NULL-terminated (free each and the array); NULL if none. */
char **snapmeta_image_command(const struct snap_meta *m);
/*
 * The devices a restore of m gives its worker, in the order they were
 * captured: the rootfs, then each volume (path NULL: the caller names the
 * file; read-only as captured), the NIC and the balloon. The rest of l is
 * left as it was.
 */
void snapmeta_launch(const struct snap_meta *m, struct worker_launch *l);

/* A JSON array of v's strings (NULL-terminated); json null for NULL v. */
json_t *snapmeta_strv(const char *const *v);

/* Fills f->path and its stat stamp, and its digest when hash is set. */
int snapfile_record(struct snap_file *f, const char *path, bool hash, sm_error **err);
/*
 * Checks that the file at path (what: "kernel") is the one recorded: same
 * stat stamp when stamps may be trusted (a snapshot we own), else the
 * same sha256. SM_E_SNAPSHOT naming both digests when it changed.
 */
int snapfile_verify(const struct snap_file *rec, const char *path, bool trust_stamp, const char *what,
		    sm_error **err);

/*
 * A capture is written into NAME.partial-XXXXXX beside NAME and renamed
 * when whole: a name holding this is a capture in progress, or one a
 * crash cut short, never a snapshot.
 */
#define SNAP_PARTIAL_MARK ".partial-"
/* A valid snapshot name: [A-Za-z0-9][A-Za-z0-9._-]*, at most SNAP_NAME_MAX bytes, without SNAP_PARTIAL_MARK. */
bool snapshot_name_valid(const char *name);
/* Removes the captures a crash left (SNAP_PARTIAL_MARK) untouched for min_age_s; adds their bytes to *bytes. */
int snapshot_prune_partial(unsigned min_age_s, uint64_t *bytes, sm_error **err);
/* Where name_or_dir lives: a name in the store's snapshots/, else the path as given (made absolute). */
int snapshot_resolve(const char *name_or_dir, char *out, size_t len, sm_error **err);
/* The store's snapshots/ directory (created). */
int snapshot_base(char *out, size_t len, sm_error **err);
/*
 * Every check a restore makes before a worker runs: metadata, the state
 * and memory files (present, sizes, the memory header's id and RAM size),
 * the kernel and initramfs against assets, the rootfs. m must be released.
 */
int snapshot_check(const char *dir, const struct vm_asset_paths *assets, struct snap_meta *m, sm_error **err);

/* ---- capture (snapshot.c) ---- */

/* Extra fields a bake records; NULL members are left out. */
struct snapshot_extra {
	json_t *bake;
	const char *warmup_tag;
	uint32_t balloon_target_pages; /* 0: the target the VM has now */
};

/* Captures vm into dir (which must not exist): temp dir, worker snapshot, metadata last, rename. */
int snapshot_capture(struct sm_vm *vm, const char *dir, const struct snapshot_extra *extra, bool replace,
		     sm_error **err);

/* ---- restored VMs (snapshot.c) ---- */

/* Restored by sm_vm_restore(): reset reloads the snapshot; freed, stopped (or, detached, left running). */
extern const struct vm_kind vm_kind_restored, vm_kind_restored_detached;

#endif

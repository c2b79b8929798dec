/*
 * OCI images: the internal API the rest of supermachine uses to turn an
 * image reference into something a VM boots from.
 *
 *   struct oci_store *st;
 *   oci_store_open(NULL, &st, &err);                 // $SUPERMACHINE_HOME, XDG, ~
 *   oci_pull(st, "busybox", &opts, &img, &err);       // pull + build the rootfs
 *   ... img->rootfs_path, img->config.entrypoint ...
 *   oci_image_free(img);
 *   oci_store_close(st);
 *
 * Sources accepted by oci_pull: a registry reference as docker resolves it
 * ("nginx", "ghcr.io/o/r:tag", "localhost:5000/x@sha256:..."), optionally
 * prefixed "docker://"; "oci:DIR[:TAG]" (an OCI image layout directory);
 * "docker-archive:FILE[:TAG]" (a `docker save` tarball).
 *
 * Every function returns 0 (or a pointer) on success and -1 (or NULL) on
 * failure with an sm_error stored in *err naming what failed and where.
 */
#ifndef SM_OCI_H
#define SM_OCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <supermachine.h>

/* "sha256:" + 64 hex digits + NUL */
#define OCI_DIGEST_SIZE 72

struct oci_store;

/* The runtime parts of an image config, ready for a VM's configuration.
 * String arrays are NULL-terminated; absent fields are NULL. */
struct oci_image_config {
	char **entrypoint;
	char **cmd;
	char **env;           /* "KEY=value" */
	char *working_dir;
	char *user;
	char **exposed_ports; /* "80/tcp" */
	char *stop_signal;
	char *created;        /* RFC 3339, as the image says */
	char *os;
	char *architecture;
	char *variant;
};

/* A local image: what later stages need to boot it. */
struct oci_image {
	char *name;                            /* as stored in the index */
	char manifest_digest[OCI_DIGEST_SIZE];
	char config_digest[OCI_DIGEST_SIZE];
	char *rootfs_path;                     /* ext4 image; NULL if not built */
	uint64_t size;                         /* bytes of blobs in the store */
	uint64_t rootfs_size;                  /* bytes of the ext4 image (apparent) */
	int64_t pulled;                        /* unix time it was stored */
	struct oci_image_config config;
};

/* Where one blob of a download stands (sm_pull_blob_state, in the same order). */
enum oci_blob_state { OCI_BLOB_WAITING, OCI_BLOB_DOWNLOADING, OCI_BLOB_DONE, OCI_BLOB_CACHED };

struct oci_progress {
	const char *phase;        /* "resolving", "downloading", "building", "done" */
	uint64_t bytes_done;      /* downloading: bytes fetched; building: bytes of tar read */
	uint64_t bytes_total;
	unsigned layers_done;
	unsigned layers_total;
	/* downloading: the blob this report is about; NULL for the whole batch */
	const char *digest;
	enum oci_blob_state state;
	uint64_t blob_done, blob_total;
};
/* 0 to go on; anything else cancels the pull (SM_E_CANCELED). */
typedef int (*oci_progress_fn)(const struct oci_progress *p, void *arg);

struct oci_pull_opts {
	const char *platform;      /* "os/arch[/variant]"; NULL = "linux/amd64" */
	bool plain_http;           /* http:// for this registry (always for localhost) */
	bool insecure;             /* https without certificate verification */
	bool no_rootfs;            /* store the image but do not build its rootfs */
	unsigned max_parallel;     /* concurrent blob downloads; 0 = 4 */
	unsigned attempts;         /* tries per request on 5xx/connection errors; 0 = 5 */
	unsigned backoff_ms;       /* first retry delay, doubled each retry; 0 = 500 */
	const char *docker_config; /* credentials file; NULL = $DOCKER_CONFIG/config.json
	                              or ~/.docker/config.json */
	oci_progress_fn progress;
	void *progress_arg;
};

/* Opens (creating if needed) the store at root, or when root is NULL at
 * $SUPERMACHINE_HOME, else $XDG_DATA_HOME/supermachine, else
 * ~/.local/share/supermachine. */
int oci_store_open(const char *root, struct oci_store **out, sm_error **err);
void oci_store_close(struct oci_store *st);
const char *oci_store_root(const struct oci_store *st);

/* Pulls or imports source, stores it under its canonical name and builds its
 * rootfs (unless opts->no_rootfs). opts may be NULL. On success *out (if
 * out is not NULL) is the stored image. */
int oci_pull(struct oci_store *st, const char *source, const struct oci_pull_opts *opts,
	     struct oci_image **out, sm_error **err);

/* Finds a stored image by name ("busybox" means docker.io/library/busybox:latest,
 * "oci:DIR:TAG" as pulled) or by manifest digest or a unique prefix of at
 * least 12 hex digits of it. Builds the rootfs if it is missing. */
int oci_image_resolve(struct oci_store *st, const char *name, struct oci_image **out,
		      sm_error **err);

/* All stored images, sorted by name. */
int oci_image_list(struct oci_store *st, struct oci_image ***out, size_t *n, sm_error **err);

/* Removes the image's name from the store, then garbage-collects blobs and
 * rootfs images no remaining name uses (skipped, not failed, while a pull
 * runs: the next rm collects). *freed (if not NULL) gets the bytes freed. */
int oci_image_remove(struct oci_store *st, const char *name, uint64_t *freed, sm_error **err);

/* Collects unreferenced blobs, rootfs images and stale temporary files.
 * Waits for running pulls when wait is true, else returns 0 with *freed = 0. */
int oci_store_gc(struct oci_store *st, bool wait, uint64_t *freed, sm_error **err);
/* The same, also keeping the root filesystems at the paths of keep_rootfs
 * (NULL-terminated, may be NULL): those snapshots boot from. */
int oci_store_gc_keep(struct oci_store *st, bool wait, const char *const *keep_rootfs, uint64_t *freed,
		      sm_error **err);

void oci_image_free(struct oci_image *img);
void oci_image_list_free(struct oci_image **list, size_t n);

/* The canonical store name for a user-supplied source or name:
 * "busybox" -> "docker.io/library/busybox:latest"; "oci:./d" -> "oci:/abs/d". */
int oci_name_canonical(const char *source, char **out, sm_error **err);

/* ---- root filesystem images ------------------------------------------- */

struct oci_layer_src {
	const char *path;     /* a tar file, plain or gzip/zstd compressed */
	const char *label;    /* names the layer in errors (e.g. its digest) */
	const char *diff_id;  /* sha256 of the uncompressed tar, checked; NULL = unchecked */
};

struct oci_rootfs_stats {
	uint64_t tar_bytes;     /* uncompressed tar bytes read (both passes) */
	uint64_t entries;       /* tar entries seen */
	uint64_t files;         /* inodes in the final tree */
	uint64_t data_bytes;    /* file data written */
	uint64_t image_bytes;   /* size of the ext4 image */
};

/* Applies layers in order into a new ext4 image at out_path (replaced
 * atomically). The image holds exactly the tar headers' owners, modes,
 * times, xattrs and device numbers, whoever runs this. uuid_seed (may be
 * NULL) makes the filesystem UUID deterministic. */
int oci_rootfs_write(const struct oci_layer_src *layers, size_t n, const char *out_path,
		     const char *uuid_seed, oci_progress_fn progress, void *progress_arg,
		     struct oci_rootfs_stats *stats, sm_error **err);

#endif

/* Shared between the files of src/oci; nothing here leaves the subsystem. */
#ifndef SM_OCI_INTERNAL_H
#define SM_OCI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "base/error.h"
#include "base/fsutil.h"
#include "base/sha256.h"
#include "base/strv.h"
#include "oci/oci.h"

/* Limits on what hostile input may make us hold in memory. */
#define OCI_MANIFEST_MAX (4u << 20)
#define OCI_CONFIG_MAX (8u << 20)
#define OCI_LAYERS_MAX 256

/* ---- media types ---- */
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define MT_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* ---- digests: base/sha256.h ---- */

_Static_assert(OCI_DIGEST_SIZE == SHA256_DIGEST_SIZE, "an OCI digest is a base sha256 digest string");

/* ---- references (ref.c) ---- */

struct oci_ref {
	char *domain;   /* "docker.io", "localhost:5000" */
	char *path;     /* "library/busybox" */
	char *tag;      /* NULL when only a digest was given */
	char *digest;   /* NULL unless "@sha256:..." */
};

int oci_ref_parse(const char *s, struct oci_ref *out, sm_error **err);
void oci_ref_free(struct oci_ref *r);
/* "domain/path:tag", "domain/path@digest" or "domain/path:tag@digest". */
char *oci_ref_string(const struct oci_ref *r);
/* The host to talk to: registry-1.docker.io for docker.io. */
const char *oci_ref_api_host(const struct oci_ref *r);
/* localhost, 127.0.0.0/8 and ::1, with or without a port. */
bool oci_host_is_local(const char *hostport);

enum source_kind { SRC_REGISTRY, SRC_OCI_LAYOUT, SRC_DOCKER_ARCHIVE };
struct oci_source {
	enum source_kind kind;
	struct oci_ref ref;   /* SRC_REGISTRY */
	char *path;           /* absolute, local sources */
	char *tag;            /* local sources; may be NULL */
};
int oci_source_parse(const char *s, struct oci_source *out, sm_error **err);
void oci_source_free(struct oci_source *s);
/* The name the store keeps the image under. */
char *oci_source_name(const struct oci_source *s);

/* ---- manifests and configs (manifest.c) ---- */

struct oci_platform {
	char os[32];
	char arch[32];
	char variant[32];
};
/* "linux/amd64", "linux/arm64/v8". */
int oci_platform_parse(const char *s, struct oci_platform *out, sm_error **err);

struct oci_desc {
	char *media_type;
	char digest[OCI_DIGEST_SIZE];
	int64_t size;
	struct oci_platform platform; /* index entries only; empty when absent */
	bool has_platform;
	char *ref_name;               /* org.opencontainers.image.ref.name, layouts */
};

enum manifest_kind { MANIFEST_IMAGE, MANIFEST_INDEX };

struct oci_manifest {
	enum manifest_kind kind;
	char *media_type;
	/* MANIFEST_IMAGE */
	struct oci_desc config;
	struct oci_desc *layers;
	size_t n_layers;
	/* MANIFEST_INDEX */
	struct oci_desc *manifests;
	size_t n_manifests;
};

/* Parses and validates a manifest or index. content_type (may be NULL) is
 * the registry's Content-Type. what names the document in errors. */
int oci_manifest_parse(const void *buf, size_t len, const char *content_type,
		       const char *what, struct oci_manifest *out, sm_error **err);
void oci_manifest_free(struct oci_manifest *m);
/* Picks the entry of an index for the platform; NULL with an error listing
 * what the index offers when none matches. */
const struct oci_desc *oci_index_select(const struct oci_manifest *idx,
					const struct oci_platform *want, sm_error **err);

/* Parses an image config blob; fills diff_ids (NULL-terminated). */
int oci_config_parse(const void *buf, size_t len, struct oci_image_config *out,
		     char ***diff_ids, sm_error **err);
void oci_config_clear(struct oci_image_config *c);

/* True for layer media types we can apply; *compressed tells which. */
bool oci_layer_type_ok(const char *media_type);

/* ---- the store (store.c) ---- */

struct oci_store {
	char *root;
	int root_fd;
};

/* Creates a temporary file under tmp/ for a blob download. */
int store_tmp_open(struct oci_store *st, char **path, sm_error **err);
/* Moves a verified temporary file to blobs/sha256/<hex> (fsync + rename). */
int store_blob_commit(struct oci_store *st, const char *tmp_path, const char *digest,
		      sm_error **err);
/* Path of a blob (may not exist). Caller frees. */
char *store_blob_path(const struct oci_store *st, const char *digest);
/* True when the blob is present with the given size (-1 = any). */
bool store_blob_has(const struct oci_store *st, const char *digest, int64_t size);
/* Reads a small blob whole, re-verifying its digest. */
int store_blob_read(const struct oci_store *st, const char *digest, size_t max, char **buf,
		    size_t *len, sm_error **err);
/* Stores buf as a blob under its own digest. */
int store_blob_write(struct oci_store *st, const void *buf, size_t len,
		     char digest[OCI_DIGEST_SIZE], sm_error **err);
/* Copies a stream into the store verifying (or computing, when want is
 * NULL) its digest; want_size -1 = unknown. rd returns bytes, 0 at the end,
 * or -errno. */
typedef ssize_t (*blob_read_fn)(void *arg, void *buf, size_t n);
int store_blob_import(struct oci_store *st, blob_read_fn rd, void *arg, const char *want,
		      int64_t want_size, char got[OCI_DIGEST_SIZE], const char *what,
		      sm_error **err);
int store_blob_import_fd(struct oci_store *st, int fd, const char *want, int64_t want_size,
			 char got[OCI_DIGEST_SIZE], const char *what, sm_error **err);

struct store_record {
	char manifest[OCI_DIGEST_SIZE];
	char config[OCI_DIGEST_SIZE];
	char index[OCI_DIGEST_SIZE]; /* "" unless pulled through an index */
	char platform[100];
	int64_t pulled;
};
/* Adds or replaces name in the index (locked, atomic). */
int store_index_put(struct oci_store *st, const char *name, const struct store_record *rec,
		    sm_error **err);

/* Shared lock held by pulls so GC never removes what a pull just fetched. */
int store_pull_lock(struct oci_store *st, sm_error **err);
void store_pull_unlock(int fd);

/* Builds (or finds) rootfs/<config hex>.ext4 for a stored manifest. */
int store_rootfs_ensure(struct oci_store *st, const char *manifest_digest, char **path,
			oci_progress_fn progress, void *arg, sm_error **err);

/* durable_write (base/fsutil.h) of a 0644 file, with an error naming path. */
int file_write_atomic(const char *path, const void *buf, size_t len, sm_error **err);
/* Reads a whole file of at most max bytes. -errno style failure with err. */
int file_read_all(const char *path, size_t max, char **buf, size_t *len, sm_error **err);

/* Loads the stored manifest, config and record of a name. */
int store_image_load(struct oci_store *st, const char *name, const struct store_record *rec,
		     struct oci_image **out, sm_error **err);

/* ---- registries (auth.c, registry.c) ---- */

struct auth_challenge {
	char scheme[16];   /* "Bearer" or "Basic" */
	char *realm;
	char *service;
	char *scope;
};
/* Parses a WWW-Authenticate header value. */
int auth_challenge_parse(const char *header, struct auth_challenge *out, sm_error **err);
void auth_challenge_free(struct auth_challenge *c);

struct auth_creds {
	char *user;
	char *password;
};
/* Credentials for a registry host from the environment
 * (SUPERMACHINE_REGISTRY_USER/_PASSWORD) or a docker config.json. Returns 0
 * with empty creds when none apply; -1 only for a malformed config. */
int auth_creds_find(const char *host, const char *config_path, struct auth_creds *out,
		    sm_error **err);
void auth_creds_free(struct auth_creds *c);

struct registry;
int registry_open(const struct oci_ref *ref, const struct oci_pull_opts *opts,
		  struct registry **out, sm_error **err);
void registry_close(struct registry *r);
/* Fetches a manifest by tag or digest; verifies it when ref is a digest.
 * *digest gets the manifest's digest. */
int registry_get_manifest(struct registry *r, const char *ref, char **body, size_t *len,
			  char **content_type, char digest[OCI_DIGEST_SIZE], sm_error **err);
/* Downloads blobs not yet in the store, in parallel, verifying each. */
int registry_fetch_blobs(struct registry *r, struct oci_store *st, const struct oci_desc *blobs,
			 size_t n, sm_error **err);

/* ---- local sources (local.c) ---- */

/* Imports into the store; fills the manifest digest (and index digest when
 * the layout tag names an index). */
int local_import(struct oci_store *st, const struct oci_source *src,
		 const struct oci_platform *plat, struct store_record *rec, sm_error **err);

/* ---- shared pull helpers (pull.c) ---- */

/* Checks a fetched/imported image manifest and config and stores the config
 * in the record. */
int pull_check_image(struct oci_store *st, const struct oci_manifest *m,
		     const struct oci_platform *plat, struct store_record *rec, sm_error **err);

#endif

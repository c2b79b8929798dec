/*
 * The content store:
 *
 *   ROOT/blobs/sha256/<hex>     content-addressed, verified before it lands here
 *   ROOT/tmp/                   downloads in progress (GC removes leftovers)
 *   ROOT/rootfs/<cfg hex>.ext4  built root filesystems, keyed by config digest
 *   ROOT/index.json             names -> manifest/config digests
 *   ROOT/index.lock             serializes index read-modify-write
 *   ROOT/gc.lock                shared by pulls, exclusive for GC
 *
 * Nothing becomes visible under blobs/ or rootfs/ except by rename() of a
 * complete, fsynced, verified file, so an interrupted pull leaves only
 * tmp/ garbage that nothing trusts.
 */
#include "oci/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INDEX_MAX (64u << 20)

static char *store_default_root(void)
{
	const char *v = getenv("SUPERMACHINE_HOME");
	char *out = NULL;

	if (v && *v)
		return strdup(v);
	v = getenv("XDG_DATA_HOME");
	if (v && v[0] == '/') {
		if (asprintf(&out, "%s/supermachine", v) < 0)
			return NULL;
		return out;
	}
	v = getenv("HOME");
	if (!v || !*v) {
		struct passwd *pw = getpwuid(getuid());
		v = pw ? pw->pw_dir : NULL;
	}
	if (!v)
		return NULL;
	if (asprintf(&out, "%s/.local/share/supermachine", v) < 0)
		return NULL;
	return out;
}

static int store_path(const struct oci_store *st, char *buf, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int store_path(const struct oci_store *st, char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	int len = snprintf(buf, n, "%s/", st->root);

	if (len < 0 || (size_t)len >= n)
		return -ENAMETOOLONG;
	va_start(ap, fmt);
	int more = vsnprintf(buf + len, n - (size_t)len, fmt, ap);
	va_end(ap);
	if (more < 0 || (size_t)(len + more) >= n)
		return -ENAMETOOLONG;
	return 0;
}

int oci_store_open(const char *root, struct oci_store **out, sm_error **err)
{
	static const char *const dirs[] = { "blobs/sha256", "tmp", "rootfs" };
	struct oci_store *st = calloc(1, sizeof(*st));
	char path[PATH_MAX];
	int rc;

	if (!st)
		goto oom;
	st->root = root ? strdup(root) : store_default_root();
	if (!st->root) {
		if (root)
			goto oom;
		sm_error_set(err, SM_E_INVALID, 0,
			     "no store location: set SUPERMACHINE_HOME, XDG_DATA_HOME or HOME");
		free(st);
		return -1;
	}
	/* Every store path is root + at most ~100 bytes: check once here. */
	if (strlen(st->root) > PATH_MAX - 200 || st->root[0] == '\0') {
		sm_error_set(err, SM_E_INVALID, 0, "store path '%.80s...' is empty or too long",
			     st->root);
		goto fail;
	}
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		rc = store_path(st, path, sizeof(path), "%s", dirs[i]);
		if (rc == 0)
			rc = mkdir_p(path, 0755);
		if (rc < 0) {
			sm_error_set(err, SM_E_IO, -rc, "create store directory %s", path);
			goto fail;
		}
	}
	st->root_fd = open(st->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->root_fd < 0) {
		sm_error_set(err, SM_E_IO, errno, "open store %s", st->root);
		goto fail;
	}
	*out = st;
	return 0;
oom:
	sm_error_set(err, SM_E_NOMEM, ENOMEM, "open store");
	free(st);
	return -1;
fail:
	free(st->root);
	free(st);
	return -1;
}

void oci_store_close(struct oci_store *st)
{
	if (!st)
		return;
	close(st->root_fd);
	free(st->root);
	free(st);
}

const char *oci_store_root(const struct oci_store *st) { return st->root; }

/* ---- locks ---- */

static int lock_open(const struct oci_store *st, const char *name, int op, sm_error **err)
{
	char path[PATH_MAX];
	int fd;

	if (store_path(st, path, sizeof(path), "%s", name) < 0) {
		sm_error_set(err, SM_E_INVALID, ENAMETOOLONG, "lock %s", name);
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		sm_error_set(err, SM_E_IO, errno, "open lock %s", path);
		return -1;
	}
	while (flock(fd, op) < 0) {
		if (errno == EINTR)
			continue;
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return -2;
		sm_error_set(err, SM_E_IO, e, "lock %s", path);
		return -1;
	}
	return fd;
}

int store_pull_lock(struct oci_store *st, sm_error **err)
{
	return lock_open(st, "gc.lock", LOCK_SH, err);
}

void store_pull_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* ---- blobs ---- */

char *store_blob_path(const struct oci_store *st, const char *digest)
{
	char *p = NULL;

	if (!digest_valid(digest))
		return NULL;
	if (asprintf(&p, "%s/blobs/sha256/%s", st->root, digest_hex(digest)) < 0)
		return NULL;
	return p;
}

bool store_blob_has(const struct oci_store *st, const char *digest, int64_t size)
{
	char *p = store_blob_path(st, digest);
	struct stat s;
	bool ok;

	if (!p)
		return false;
	ok = stat(p, &s) == 0 && S_ISREG(s.st_mode) && (size < 0 || s.st_size == size);
	free(p);
	return ok;
}

int store_tmp_open(struct oci_store *st, char **path, sm_error **err)
{
	char *p = NULL;
	int fd;

	if (asprintf(&p, "%s/tmp/blob-XXXXXX", st->root) < 0) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "temporary file");
		return -1;
	}
	fd = mkostemp(p, O_CLOEXEC);
	if (fd < 0) {
		sm_error_set(err, SM_E_IO, errno, "create %s", p);
		free(p);
		return -1;
	}
	*path = p;
	return fd;
}

int store_blob_commit(struct oci_store *st, const char *tmp_path, const char *digest,
		      sm_error **err)
{
	char *dst = store_blob_path(st, digest);
	int rc;

	if (!dst) {
		sm_error_set(err, SM_E_INTERNAL, 0, "bad digest %s", digest);
		return -1;
	}
	/* rename() over an existing copy is fine: both are verified bytes. */
	rc = durable_install(tmp_path, dst, 0444);
	if (rc < 0) {
		sm_error_set(err, SM_E_IO, -rc, "store blob %s", dst);
		unlink(tmp_path);
	}
	free(dst);
	return rc < 0 ? -1 : 0;
}

int store_blob_read(const struct oci_store *st, const char *digest, size_t max, char **buf,
		    size_t *len, sm_error **err)
{
	char *p = store_blob_path(st, digest);
	char got[OCI_DIGEST_SIZE];

	if (!p) {
		sm_error_set(err, SM_E_INVALID, 0, "bad digest '%s'", digest);
		return -1;
	}
	if (file_read_all(p, max, buf, len, err) < 0) {
		sm_error_wrap(err, "blob %s", digest);
		free(p);
		return -1;
	}
	free(p);
	sha256_buf(*buf, *len, got);
	if (strcmp(got, digest)) {
		sm_error_set(err, SM_E_DIGEST, 0, "stored blob %s is corrupt (content is %s)",
			     digest, got);
		free(*buf);
		*buf = NULL;
		return -1;
	}
	return 0;
}

int store_blob_write(struct oci_store *st, const void *buf, size_t len,
		     char digest[OCI_DIGEST_SIZE], sm_error **err)
{
	char *tmp = NULL;
	int fd, rc;

	sha256_buf(buf, len, digest);
	if (store_blob_has(st, digest, (int64_t)len))
		return 0;
	fd = store_tmp_open(st, &tmp, err);
	if (fd < 0)
		return -1;
	rc = file_write_full(fd, buf, len);
	close(fd);
	if (rc < 0) {
		sm_error_set(err, SM_E_IO, -rc, "write %s", tmp);
		unlink(tmp);
		free(tmp);
		return -1;
	}
	rc = store_blob_commit(st, tmp, digest, err);
	free(tmp);
	return rc;
}

int store_blob_import(struct oci_store *st, blob_read_fn rd, void *arg, const char *want,
		      int64_t want_size, char got[OCI_DIGEST_SIZE], const char *what,
		      sm_error **err)
{
	char buf[1 << 16];
	struct sha256 h;
	char *tmp = NULL;
	int out, rc = 0;
	int64_t total = 0;

	if (want && store_blob_has(st, want, want_size)) {
		strcpy(got, want);
		return 0;
	}
	out = store_tmp_open(st, &tmp, err);
	if (out < 0)
		return -1;
	if (sha256_init(&h) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	for (;;) {
		ssize_t n = rd(arg, buf, sizeof(buf));
		if (n < 0) {
			rc = (int)n;
			sha256_free(&h);
			goto fail;
		}
		if (n == 0)
			break;
		total += n;
		if (want_size >= 0 && total > want_size)
			break;
		sha256_update(&h, buf, (size_t)n);
		rc = file_write_full(out, buf, (size_t)n);
		if (rc < 0) {
			sha256_free(&h);
			goto fail;
		}
	}
	sha256_final(&h, got);
	close(out);
	out = -1;
	if (want_size >= 0 && total != want_size) {
		sm_error_set(err, SM_E_DIGEST, 0, "%s: size is %s%jd bytes, the manifest says %jd",
			     what, total > want_size ? "over " : "", (intmax_t)total,
			     (intmax_t)want_size);
		goto fail_quiet;
	}
	if (want && strcmp(want, got)) {
		sm_error_set(err, SM_E_DIGEST, 0, "%s: content is %s, expected %s", what, got, want);
		goto fail_quiet;
	}
	rc = store_blob_commit(st, tmp, got, err);
	free(tmp);
	return rc;
fail:
	sm_error_set(err, rc == -ENOMEM ? SM_E_NOMEM : SM_E_IO, -rc, "import %s", what);
fail_quiet:
	if (out >= 0)
		close(out);
	unlink(tmp);
	free(tmp);
	return -1;
}

static ssize_t fd_read(void *arg, void *buf, size_t n)
{
	for (;;) {
		ssize_t r = read(*(int *)arg, buf, n);
		if (r < 0 && errno == EINTR)
			continue;
		return r < 0 ? -errno : r;
	}
}

int store_blob_import_fd(struct oci_store *st, int fd, const char *want, int64_t want_size,
			 char got[OCI_DIGEST_SIZE], const char *what, sm_error **err)
{
	return store_blob_import(st, fd_read, &fd, want, want_size, got, what, err);
}

/* ---- the index of names ---- */

static int index_load(const struct oci_store *st, json_t **out, sm_error **err)
{
	char path[PATH_MAX];
	char *buf = NULL;
	size_t len;
	json_error_t jerr;
	json_t *root, *images;

	store_path(st, path, sizeof(path), "index.json");
	if (file_read_all(path, INDEX_MAX, &buf, &len, NULL) < 0) {
		if (access(path, F_OK) == 0) {
			sm_error_set(err, SM_E_IO, errno, "read store index %s", path);
			return -1;
		}
		*out = json_object();
		return *out ? 0 : -1;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	free(buf);
	images = json_object_get(root, "images");
	if (!json_is_object(images)) {
		sm_error_set(err, SM_E_IO, 0, "store index %s is corrupt (%s)", path,
			     root ? "no images object" : jerr.text);
		json_decref(root);
		return -1;
	}
	*out = json_incref(images);
	json_decref(root);
	return 0;
}

static int record_from_json(json_t *j, struct store_record *rec)
{
	const char *m = json_string_value(json_object_get(j, "manifest"));
	const char *c = json_string_value(json_object_get(j, "config"));
	const char *ix = json_string_value(json_object_get(j, "index"));
	const char *pl = json_string_value(json_object_get(j, "platform"));

	memset(rec, 0, sizeof(*rec));
	if (!digest_valid(m) || !digest_valid(c) || (ix && *ix && !digest_valid(ix)))
		return -EINVAL;
	strcpy(rec->manifest, m);
	strcpy(rec->config, c);
	if (ix && *ix)
		strcpy(rec->index, ix);
	if (pl)
		snprintf(rec->platform, sizeof(rec->platform), "%s", pl);
	rec->pulled = json_integer_value(json_object_get(j, "pulled"));
	return 0;
}

static json_t *record_to_json(const struct store_record *rec)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:I}", "manifest", rec->manifest, "config",
			 rec->config, "index", rec->index, "platform", rec->platform, "pulled",
			 (json_int_t)rec->pulled);
}

static int index_save(const struct oci_store *st, json_t *images, sm_error **err)
{
	char path[PATH_MAX];
	json_t *root = json_pack("{s:i, s:O}", "version", 1, "images", images);
	char *text = root ? json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
	int rc;

	json_decref(root);
	if (!text) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "serialize store index");
		return -1;
	}
	store_path(st, path, sizeof(path), "index.json");
	rc = file_write_atomic(path, text, strlen(text), err);
	free(text);
	return rc < 0 ? -1 : 0;
}

int store_index_put(struct oci_store *st, const char *name, const struct store_record *rec,
		    sm_error **err)
{
	json_t *images = NULL, *r;
	int lock = lock_open(st, "index.lock", LOCK_EX, err);
	int rc = -1;

	if (lock < 0)
		return -1;
	if (index_load(st, &images, err) < 0)
		goto out;
	r = record_to_json(rec);
	if (!r || json_object_set_new(images, name, r) < 0) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "update store index");
		goto out;
	}
	rc = index_save(st, images, err);
out:
	json_decref(images);
	close(lock);
	return rc;
}

/* Finds a name, or a manifest digest / unique hex prefix of one. */
static int index_find(const struct oci_store *st, const char *name, char **found,
		      struct store_record *rec, sm_error **err)
{
	json_t *images, *val;
	const char *key, *hit = NULL;
	const char *hex = !strncmp(name, "sha256:", 7) ? name + 7 : name;
	size_t hexlen = strlen(hex), matches = 0;
	char *canon = NULL;

	if (index_load(st, &images, err) < 0)
		return -1;
	/* A canonical name first; local paths may be gone since the pull, so
	 * the literal name is tried too. */
	if (oci_name_canonical(name, &canon, NULL) == 0 && json_object_get(images, canon))
		hit = json_object_iter_key(json_object_iter_at(images, canon));
	else if (json_object_get(images, name))
		hit = json_object_iter_key(json_object_iter_at(images, name));
	free(canon);
	if (!hit && hexlen >= 12 && hexlen <= 64 && strspn(hex, "0123456789abcdef") == hexlen) {
		json_object_foreach(images, key, val) {
			const char *m = json_string_value(json_object_get(val, "manifest"));
			if (m && digest_valid(m) && !strncmp(m + 7, hex, hexlen)) {
				if (!hit || strcmp(key, hit))
					matches++;
				hit = key;
			}
		}
		if (matches > 1) {
			sm_error_set(err, SM_E_INVALID, 0,
				     "'%s' matches %zu images; give more of the digest or a name",
				     name, matches);
			json_decref(images);
			return -1;
		}
	}
	if (!hit) {
		sm_error_set(err, SM_E_NOT_FOUND, 0, "no image '%s' in the store (%s)", name,
			     st->root);
		json_decref(images);
		return -1;
	}
	if (record_from_json(json_object_get(images, hit), rec) < 0) {
		sm_error_set(err, SM_E_IO, 0, "store index entry '%s' is corrupt", hit);
		json_decref(images);
		return -1;
	}
	*found = strdup(hit);
	json_decref(images);
	if (!*found) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "find image");
		return -1;
	}
	return 0;
}

/* ---- images ---- */

static int manifest_load(const struct oci_store *st, const char *digest, struct oci_manifest *m,
			 sm_error **err)
{
	char *buf;
	size_t len;
	int rc;

	if (store_blob_read(st, digest, OCI_MANIFEST_MAX, &buf, &len, err) < 0)
		return -1;
	rc = oci_manifest_parse(buf, len, NULL, "stored manifest", m, err);
	free(buf);
	if (rc == 0 && m->kind != MANIFEST_IMAGE) {
		sm_error_set(err, SM_E_IMAGE, 0, "stored manifest %s is an index", digest);
		oci_manifest_free(m);
		rc = -1;
	}
	return rc < 0 ? -1 : 0;
}

static char *rootfs_path_for(const struct oci_store *st, const char *config_digest)
{
	char *p = NULL;

	if (asprintf(&p, "%s/rootfs/%s.ext4", st->root, digest_hex(config_digest)) < 0)
		return NULL;
	return p;
}

int store_image_load(struct oci_store *st, const char *name, const struct store_record *rec,
		     struct oci_image **out, sm_error **err)
{
	struct oci_image *img = calloc(1, sizeof(*img));
	struct oci_manifest m;
	char *buf = NULL;
	size_t len;
	struct stat s;
	char *rp;

	if (!img || !(img->name = strdup(name))) {
		free(img);
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "load image");
		return -1;
	}
	strcpy(img->manifest_digest, rec->manifest);
	strcpy(img->config_digest, rec->config);
	img->pulled = rec->pulled;
	if (manifest_load(st, rec->manifest, &m, err) < 0)
		goto fail;
	img->size = m.config.size;
	for (size_t i = 0; i < m.n_layers; i++)
		img->size += (uint64_t)m.layers[i].size;
	oci_manifest_free(&m);
	if (store_blob_read(st, rec->config, OCI_CONFIG_MAX, &buf, &len, err) < 0 ||
	    oci_config_parse(buf, len, &img->config, NULL, err) < 0)
		goto fail;
	free(buf);
	rp = rootfs_path_for(st, rec->config);
	if (rp && stat(rp, &s) == 0) {
		img->rootfs_path = rp;
		img->rootfs_size = (uint64_t)s.st_size;
	} else {
		free(rp);
	}
	*out = img;
	return 0;
fail:
	free(buf);
	sm_error_wrap(err, "image %s", name);
	oci_image_free(img);
	return -1;
}

void oci_image_free(struct oci_image *img)
{
	if (!img)
		return;
	free(img->name);
	free(img->rootfs_path);
	oci_config_clear(&img->config);
	free(img);
}

void oci_image_list_free(struct oci_image **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		oci_image_free(list[i]);
	free(list);
}

static int layers_for(const struct oci_store *st, const char *manifest_digest,
		      struct oci_layer_src **out, size_t *n, char ***paths_out, char ***diffs_out,
		      char cfg[OCI_DIGEST_SIZE], sm_error **err)
{
	struct oci_manifest m;
	struct oci_image_config c;
	char **diff_ids = NULL, **paths = NULL, *buf = NULL;
	struct oci_layer_src *ls = NULL;
	size_t len;

	if (manifest_load(st, manifest_digest, &m, err) < 0)
		return -1;
	if (store_blob_read(st, m.config.digest, OCI_CONFIG_MAX, &buf, &len, err) < 0 ||
	    oci_config_parse(buf, len, &c, &diff_ids, err) < 0)
		goto fail;
	oci_config_clear(&c);
	if (strv_len(diff_ids) != m.n_layers) {
		sm_error_set(err, SM_E_IMAGE, 0,
			     "image config lists %zu layer diff_ids but the manifest has %zu layers",
			     strv_len(diff_ids), m.n_layers);
		goto fail;
	}
	/* paths holds the blob paths, then the blob digests (error labels). */
	ls = calloc(m.n_layers + 1, sizeof(*ls));
	paths = calloc(2 * m.n_layers + 1, sizeof(*paths));
	if (!ls || !paths)
		goto oom;
	for (size_t i = 0; i < m.n_layers; i++) {
		paths[i] = store_blob_path(st, m.layers[i].digest);
		if (!paths[i])
			goto oom;
		ls[i].path = paths[i];
		ls[i].diff_id = diff_ids[i];
	}
	for (size_t i = 0; i < m.n_layers; i++) {
		paths[m.n_layers + i] = strdup(m.layers[i].digest);
		if (!paths[m.n_layers + i])
			goto oom;
		ls[i].label = paths[m.n_layers + i];
	}
	strcpy(cfg, m.config.digest);
	free(buf);
	oci_manifest_free(&m);
	*out = ls;
	*n = strv_len(diff_ids);
	*paths_out = paths;
	*diffs_out = diff_ids;
	return 0;
oom:
	sm_error_set(err, SM_E_NOMEM, ENOMEM, "list layers");
fail:
	free(ls);
	strv_free(paths);
	strv_free(diff_ids);
	free(buf);
	oci_manifest_free(&m);
	return -1;
}

int store_rootfs_ensure(struct oci_store *st, const char *manifest_digest, char **path,
			oci_progress_fn progress, void *arg, sm_error **err)
{
	struct oci_layer_src *ls = NULL;
	char **paths = NULL, **diffs = NULL;
	char cfg[OCI_DIGEST_SIZE], lockname[100];
	size_t n = 0;
	char *target = NULL;
	int lock = -1, rc = -1;

	if (layers_for(st, manifest_digest, &ls, &n, &paths, &diffs, cfg, err) < 0)
		return -1;
	target = rootfs_path_for(st, cfg);
	if (!target) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "rootfs path");
		goto out;
	}
	if (access(target, F_OK) == 0)
		goto done;
	/* One builder per config; the others wait and then find the result. */
	snprintf(lockname, sizeof(lockname), "rootfs/%.64s.lock", digest_hex(cfg));
	lock = lock_open(st, lockname, LOCK_EX, err);
	if (lock < 0)
		goto out;
	if (access(target, F_OK) == 0)
		goto done;
	for (size_t i = 0; i < n; i++) {
		if (access(ls[i].path, R_OK) != 0) {
			sm_error_set(err, SM_E_NOT_FOUND, errno, "layer %zu blob %s", i + 1,
				     ls[i].path);
			goto out;
		}
	}
	if (oci_rootfs_write(ls, n, target, cfg, progress, arg, NULL, err) < 0)
		goto out;
done:
	*path = target;
	target = NULL;
	rc = 0;
out:
	if (lock >= 0)
		close(lock);
	free(target);
	free(ls);
	strv_free(paths);
	strv_free(diffs);
	return rc;
}

int oci_image_resolve(struct oci_store *st, const char *name, struct oci_image **out,
		      sm_error **err)
{
	struct store_record rec;
	char *found = NULL;
	int lock, rc;

	lock = store_pull_lock(st, err);
	if (lock < 0)
		return -1;
	rc = index_find(st, name, &found, &rec, err);
	if (rc == 0)
		rc = store_image_load(st, found, &rec, out, err);
	if (rc == 0 && !(*out)->rootfs_path) {
		char *p = NULL;
		rc = store_rootfs_ensure(st, rec.manifest, &p, NULL, NULL, err);
		if (rc == 0) {
			struct stat s;
			(*out)->rootfs_path = p;
			if (stat(p, &s) == 0)
				(*out)->rootfs_size = (uint64_t)s.st_size;
		} else {
			oci_image_free(*out);
			*out = NULL;
		}
	}
	store_pull_unlock(lock);
	free(found);
	return rc < 0 ? -1 : 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp((*(struct oci_image *const *)a)->name, (*(struct oci_image *const *)b)->name);
}

int oci_image_list(struct oci_store *st, struct oci_image ***out, size_t *n, sm_error **err)
{
	json_t *images, *val;
	const char *key;
	struct oci_image **list;
	size_t count = 0;

	if (index_load(st, &images, err) < 0)
		return -1;
	list = calloc(json_object_size(images) + 1, sizeof(*list));
	if (!list) {
		json_decref(images);
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "list images");
		return -1;
	}
	json_object_foreach(images, key, val) {
		struct store_record rec;
		if (record_from_json(val, &rec) < 0 ||
		    store_image_load(st, key, &rec, &list[count], err) < 0) {
			if (err && !*err)
				sm_error_set(err, SM_E_IO, 0, "store index entry '%s' is corrupt", key);
			oci_image_list_free(list, count);
			json_decref(images);
			return -1;
		}
		count++;
	}
	json_decref(images);
	qsort(list, count, sizeof(*list), name_cmp);
	*out = list;
	*n = count;
	return 0;
}

/* ---- removal and garbage collection ---- */

int oci_image_remove(struct oci_store *st, const char *name, uint64_t *freed, sm_error **err)
{
	struct store_record rec;
	json_t *images = NULL;
	char *found = NULL;
	int lock, rc = -1;

	if (freed)
		*freed = 0;
	lock = lock_open(st, "index.lock", LOCK_EX, err);
	if (lock < 0)
		return -1;
	if (index_find(st, name, &found, &rec, err) < 0 || index_load(st, &images, err) < 0)
		goto out;
	json_object_del(images, found);
	rc = index_save(st, images, err);
out:
	json_decref(images);
	close(lock);
	free(found);
	if (rc < 0)
		return -1;
	return oci_store_gc(st, false, freed, err);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct strset {
	char **v;
	size_t n, cap;
};

static int strset_add(struct strset *s, const char *str)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n] = strdup(str);
	return s->v[s->n++] ? 0 : -ENOMEM;
}

static bool strset_has(const struct strset *s, const char *str)
{
	return s->n && bsearch(&str, s->v, s->n, sizeof(*s->v), cmp_str);
}

static void strset_free(struct strset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

/* Marks everything a record needs: its manifests, config and layers. */
static int gc_mark(const struct oci_store *st, const struct store_record *rec,
		   struct strset *keep, sm_error **err)
{
	struct oci_manifest m;
	int rc = 0;

	if (manifest_load(st, rec->manifest, &m, err) < 0)
		return -1;
	rc |= strset_add(keep, digest_hex(rec->manifest));
	rc |= strset_add(keep, digest_hex(rec->config));
	if (rec->index[0])
		rc |= strset_add(keep, digest_hex(rec->index));
	for (size_t i = 0; i < m.n_layers; i++)
		rc |= strset_add(keep, digest_hex(m.layers[i].digest));
	oci_manifest_free(&m);
	if (rc)
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "garbage collection");
	return rc ? -1 : 0;
}

static uint64_t gc_sweep(const struct oci_store *st, const char *sub, const struct strset *keep,
			 bool all)
{
	char dirpath[PATH_MAX], path[PATH_MAX + 256];
	uint64_t freed = 0;
	struct dirent *de;
	DIR *d;

	store_path(st, dirpath, sizeof(dirpath), "%s", sub);
	d = opendir(dirpath);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char key[65];
		struct stat s;
		const char *dot;
		if (de->d_name[0] == '.' && (!de->d_name[1] || !strcmp(de->d_name, "..")))
			continue;
		/* rootfs/<hex>.ext4 and rootfs/<hex>.lock belong to config <hex>;
		 * anything else there (interrupted builds) is garbage. */
		dot = strchr(de->d_name, '.');
		snprintf(key, sizeof(key), "%.*s", dot ? (int)(dot - de->d_name) : 64, de->d_name);
		if (!all && strlen(key) == 64 && strset_has(keep, key) &&
		    (!dot || !strcmp(dot, ".ext4") || !strcmp(dot, ".lock")))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dirpath, de->d_name);
		if (lstat(path, &s) == 0 && !S_ISDIR(s.st_mode) && unlink(path) == 0)
			freed += (uint64_t)s.st_blocks * 512;
	}
	closedir(d);
	return freed;
}

/* Keeps the rootfs/<hex>.ext4 files of the store that paths name. */
static int gc_mark_rootfs(const struct oci_store *st, const char *const *paths, struct strset *keep)
{
	char dir[PATH_MAX];
	size_t dlen;

	store_path(st, dir, sizeof(dir), "rootfs/");
	dlen = strlen(dir);
	for (; paths && *paths; paths++) {
		const char *base = *paths + dlen;
		if (strncmp(*paths, dir, dlen) || strlen(base) != 64 + 5 || strcmp(base + 64, ".ext4"))
			continue;
		char key[65];
		snprintf(key, sizeof(key), "%.64s", base);
		if (strset_add(keep, key) < 0)
			return -1;
	}
	return 0;
}

int oci_store_gc(struct oci_store *st, bool wait, uint64_t *freed, sm_error **err)
{
	return oci_store_gc_keep(st, wait, NULL, freed, err);
}

int oci_store_gc_keep(struct oci_store *st, bool wait, const char *const *keep_rootfs, uint64_t *freed,
		      sm_error **err)
{
	struct strset keep = { 0 };
	json_t *images = NULL, *val;
	const char *key;
	int gc, rc = -1;

	if (freed)
		*freed = 0;
	gc = lock_open(st, "gc.lock", wait ? LOCK_EX : LOCK_EX | LOCK_NB, err);
	if (gc == -2)
		return 0;
	if (gc < 0)
		return -1;
	if (index_load(st, &images, err) < 0)
		goto out;
	json_object_foreach(images, key, val) {
		struct store_record rec;
		if (record_from_json(val, &rec) < 0) {
			sm_error_set(err, SM_E_IO, 0,
				     "store index entry '%s' is corrupt; not collecting", key);
			goto out;
		}
		if (gc_mark(st, &rec, &keep, err) < 0) {
			sm_error_wrap(err, "image %s: not collecting", key);
			goto out;
		}
	}
	if (gc_mark_rootfs(st, keep_rootfs, &keep) < 0) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "garbage collection");
		goto out;
	}
	if (keep.n)
		qsort(keep.v, keep.n, sizeof(*keep.v), cmp_str);
	uint64_t total = gc_sweep(st, "blobs/sha256", &keep, false);
	total += gc_sweep(st, "rootfs", &keep, false);
	total += gc_sweep(st, "tmp", &keep, true);
	if (freed)
		*freed = total;
	rc = 0;
out:
	json_decref(images);
	strset_free(&keep);
	close(gc);
	return rc;
}

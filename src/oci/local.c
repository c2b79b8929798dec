/*
 * Local sources: an OCI image layout directory and a `docker save` tarball.
 * Both are treated as untrusted: every blob is verified (or, for docker
 * archives, which name blobs by path, digested) on its way into the store.
 */
#include "oci/internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LAYOUT_SMALL_MAX (64u << 10)
#define ARCHIVE_MANIFEST_MAX (4u << 20)

/* ---- OCI image layout ---- */

static int layout_blob_import(struct oci_store *st, const char *dir, const struct oci_desc *d,
			      const char *what, sm_error **err)
{
	char path[4096], got[OCI_DIGEST_SIZE];
	struct stat s;
	int fd, rc;

	if (store_blob_has(st, d->digest, d->size))
		return 0;
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, digest_hex(d->digest));
	/* Blobs are files; a symlink could point anywhere on the host. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int e = errno;
		sm_error_set(err, e == ENOENT ? SM_E_NOT_FOUND : e == ELOOP ? SM_E_IMAGE : SM_E_IO,
			     e, "%s %s", what, path);
		return -1;
	}
	if (fstat(fd, &s) < 0 || !S_ISREG(s.st_mode)) {
		sm_error_set(err, SM_E_IMAGE, 0, "%s %s is not a regular file", what, path);
		close(fd);
		return -1;
	}
	rc = store_blob_import_fd(st, fd, d->digest, d->size, got, what, err);
	close(fd);
	return rc;
}

/* Imports a manifest or index blob and parses it. */
static int layout_manifest(struct oci_store *st, const char *dir, const struct oci_desc *d,
			   struct oci_manifest *m, sm_error **err)
{
	char *buf = NULL;
	size_t len;
	int rc;

	if (d->size > (int64_t)OCI_MANIFEST_MAX) {
		sm_error_set(err, SM_E_IMAGE, 0, "manifest %s is too large", d->digest);
		return -1;
	}
	if (layout_blob_import(st, dir, d, "manifest", err) < 0 ||
	    store_blob_read(st, d->digest, OCI_MANIFEST_MAX, &buf, &len, err) < 0)
		return -1;
	rc = oci_manifest_parse(buf, len, d->media_type, "manifest", m, err);
	free(buf);
	return rc < 0 ? -1 : 0;
}

static const struct oci_desc *layout_pick(const struct oci_manifest *idx, const char *tag,
					  const char *dir, sm_error **err)
{
	char names[400] = "";
	size_t off = 0;

	if (!tag && idx->n_manifests == 1)
		return &idx->manifests[0];
	for (size_t i = 0; tag && i < idx->n_manifests; i++)
		if (idx->manifests[i].ref_name && !strcmp(idx->manifests[i].ref_name, tag))
			return &idx->manifests[i];
	for (size_t i = 0; i < idx->n_manifests && off < sizeof(names) - 80; i++)
		off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%.60s", off ? ", " : "",
					idx->manifests[i].ref_name ? idx->manifests[i].ref_name
								   : "(untagged)");
	if (tag)
		sm_error_set(err, SM_E_NOT_FOUND, 0, "no tag '%s' in OCI layout %s (it has: %s)", tag,
			     dir, off ? names : "nothing");
	else
		sm_error_set(err, SM_E_INVALID, 0,
			     "OCI layout %s holds %zu images: name one as oci:%s:TAG (tags: %s)",
			     dir, idx->n_manifests, dir, off ? names : "none");
	return NULL;
}

static int layout_check(const char *dir, sm_error **err)
{
	char path[4096], *buf = NULL;
	size_t len;
	json_t *root;
	const char *v;

	snprintf(path, sizeof(path), "%s/oci-layout", dir);
	if (file_read_all(path, LAYOUT_SMALL_MAX, &buf, &len, err) < 0) {
		sm_error_wrap(err, "%s is not an OCI image layout", dir);
		return -1;
	}
	root = json_loadb(buf, len, 0, NULL);
	free(buf);
	v = json_string_value(json_object_get(root, "imageLayoutVersion"));
	if (!v || strncmp(v, "1.", 2)) {
		sm_error_set(err, SM_E_IMAGE, 0, "%s: unsupported imageLayoutVersion", path);
		json_decref(root);
		return -1;
	}
	json_decref(root);
	return 0;
}

static int layout_import(struct oci_store *st, const struct oci_source *src,
			 const struct oci_platform *plat, struct store_record *rec, sm_error **err)
{
	struct oci_manifest idx = { 0 }, m = { 0 };
	struct oci_desc pick;
	char path[4096], *buf = NULL;
	size_t len;
	int rc = -1;

	if (layout_check(src->path, err) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/index.json", src->path);
	if (file_read_all(path, OCI_MANIFEST_MAX, &buf, &len, err) < 0)
		return -1;
	rc = oci_manifest_parse(buf, len, MT_OCI_INDEX, path, &idx, err);
	free(buf);
	if (rc < 0)
		return -1;
	rc = -1;
	const struct oci_desc *d = idx.kind == MANIFEST_INDEX ? layout_pick(&idx, src->tag,
									      src->path, err)
							      : NULL;
	if (!d) {
		if (idx.kind != MANIFEST_INDEX)
			sm_error_set(err, SM_E_IMAGE, 0, "%s is not an image index", path);
		goto out;
	}
	pick = *d;
	if (layout_manifest(st, src->path, &pick, &m, err) < 0)
		goto out;
	if (m.kind == MANIFEST_INDEX) {
		strcpy(rec->index, pick.digest);
		d = oci_index_select(&m, plat, err);
		if (!d)
			goto out;
		pick = *d;
		struct oci_manifest inner = { 0 };
		if (layout_manifest(st, src->path, &pick, &inner, err) < 0)
			goto out;
		oci_manifest_free(&m);
		m = inner;
		if (m.kind != MANIFEST_IMAGE) {
			sm_error_set(err, SM_E_IMAGE, 0, "index entry %s is not an image manifest",
				     pick.digest);
			goto out;
		}
	}
	strcpy(rec->manifest, pick.digest);
	if (layout_blob_import(st, src->path, &m.config, "image config", err) < 0 ||
	    pull_check_image(st, &m, plat, rec, err) < 0)
		goto out;
	for (size_t i = 0; i < m.n_layers; i++) {
		char what[64];
		snprintf(what, sizeof(what), "layer %zu", i + 1);
		if (layout_blob_import(st, src->path, &m.layers[i], what, err) < 0)
			goto out;
	}
	rc = 0;
out:
	oci_manifest_free(&m);
	oci_manifest_free(&idx);
	if (rc < 0)
		sm_error_wrap(err, "import oci:%s", src->path);
	return rc;
}

/* ---- docker save tarballs ---- */

struct member {
	char *name;     /* normalized path in the archive */
	char *link;     /* symlink target, normalized; NULL for files */
	char digest[OCI_DIGEST_SIZE];
	int64_t size;
	bool wanted, stored;
};

struct darchive {
	const char *path;
	struct member *m;
	size_t n, cap;
	char *manifest;
	size_t manifest_len;
};

static struct archive *darchive_open(const char *path, sm_error **err)
{
	struct archive *a = archive_read_new();

	if (!a) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "libarchive");
		return NULL;
	}
	archive_read_support_format_tar(a);
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_xz(a);
	archive_read_support_filter_bzip2(a);
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		sm_error_set(err, SM_E_IMAGE, 0, "%s: %s", path, archive_error_string(a));
		archive_read_free(a);
		return NULL;
	}
	return a;
}

/* "./a/b" -> "a/b"; NULL for names that leave the archive root. */
static char *member_norm(const char *dir, const char *name)
{
	char *joined = NULL, *out, *save = NULL, *tok;
	size_t len = 0;

	if (!name || name[0] == '/')
		return NULL;
	if (asprintf(&joined, "%s%s%s", dir ? dir : "", dir && *dir ? "/" : "", name) < 0)
		return NULL;
	out = calloc(1, strlen(joined) + 1);
	for (tok = strtok_r(joined, "/", &save); out && tok; tok = strtok_r(NULL, "/", &save)) {
		if (!strcmp(tok, "."))
			continue;
		if (!strcmp(tok, "..")) {
			char *slash = strrchr(out, '/');
			if (!len) {
				free(out);
				out = NULL;
				break;
			}
			len = slash ? (size_t)(slash - out) : 0;
			out[len] = '\0';
			continue;
		}
		len += (size_t)sprintf(out + len, "%s%s", len ? "/" : "", tok);
	}
	free(joined);
	return out;
}

static struct member *member_find(struct darchive *da, const char *name)
{
	for (size_t i = 0; i < da->n; i++)
		if (!strcmp(da->m[i].name, name))
			return &da->m[i];
	return NULL;
}

static int member_add(struct darchive *da, char *name, char *link)
{
	if (da->n == da->cap) {
		size_t cap = da->cap ? da->cap * 2 : 32;
		struct member *m = realloc(da->m, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;
		da->m = m;
		da->cap = cap;
	}
	memset(&da->m[da->n], 0, sizeof(da->m[0]));
	da->m[da->n].name = name;
	da->m[da->n].link = link;
	da->n++;
	return 0;
}

static void darchive_free(struct darchive *da)
{
	for (size_t i = 0; i < da->n; i++) {
		free(da->m[i].name);
		free(da->m[i].link);
	}
	free(da->m);
	free(da->manifest);
}

static int read_member_mem(struct archive *a, char **out, size_t *len, size_t max)
{
	char *buf = malloc(max + 1);
	size_t got = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		la_ssize_t n = archive_read_data(a, buf + got, max + 1 - got);
		if (n < 0) {
			free(buf);
			return -EIO;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > max) {
			free(buf);
			return -EFBIG;
		}
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}

/* First pass: the member list (with symlinks) and manifest.json. */
static int darchive_scan(struct darchive *da, sm_error **err)
{
	struct archive *a = darchive_open(da->path, err);
	struct archive_entry *e;
	int r, rc = 0;

	if (!a)
		return -1;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		char *name = member_norm(NULL, archive_entry_pathname(e));
		char *link = NULL, *dir;
		if (!name)
			continue;
		if (archive_entry_filetype(e) == AE_IFLNK) {
			dir = strdup(name);
			char *slash = dir ? strrchr(dir, '/') : NULL;
			if (dir)
				*(slash ? slash : dir) = '\0';
			link = dir ? member_norm(dir, archive_entry_symlink(e)) : NULL;
			free(dir);
			if (!link) {
				free(name);
				continue;
			}
		} else if (archive_entry_filetype(e) != AE_IFREG) {
			free(name);
			continue;
		}
		if (!link && !strcmp(name, "manifest.json") && !da->manifest) {
			rc = read_member_mem(a, &da->manifest, &da->manifest_len,
					     ARCHIVE_MANIFEST_MAX);
			if (rc < 0) {
				sm_error_set(err, SM_E_IMAGE, 0, "%s: manifest.json: %s", da->path,
					     rc == -EFBIG ? "too large" : archive_error_string(a));
				free(name);
				goto out;
			}
		}
		if (member_add(da, name, link) < 0) {
			free(name);
			free(link);
			sm_error_set(err, SM_E_NOMEM, ENOMEM, "read %s", da->path);
			rc = -1;
			goto out;
		}
	}
	if (r != ARCHIVE_EOF) {
		sm_error_set(err, SM_E_IMAGE, 0, "%s: corrupt archive: %s", da->path,
			     archive_error_string(a));
		rc = -1;
	} else if (!da->manifest) {
		sm_error_set(err, SM_E_IMAGE, 0, "%s has no manifest.json: not a docker archive",
			     da->path);
		rc = -1;
	}
out:
	archive_read_free(a);
	return rc < 0 ? -1 : 0;
}

/* Follows archive symlinks to a regular member. */
static struct member *member_resolve(struct darchive *da, const char *name)
{
	struct member *m = member_find(da, name);

	for (int hops = 0; m && m->link && hops < 16; hops++)
		m = member_find(da, m->link);
	return m && !m->link ? m : NULL;
}

static bool repotag_matches(const char *have, const char *want)
{
	struct oci_ref a, b;
	bool same = false;

	if (!strcmp(have, want))
		return true;
	if (oci_ref_parse(have, &a, NULL) < 0)
		return false;
	if (oci_ref_parse(want, &b, NULL) == 0) {
		char *sa = oci_ref_string(&a), *sb = oci_ref_string(&b);
		same = sa && sb && !strcmp(sa, sb);
		free(sa);
		free(sb);
		oci_ref_free(&b);
	}
	oci_ref_free(&a);
	return same;
}

static json_t *darchive_pick(json_t *list, const char *tag, const char *path, sm_error **err)
{
	size_t n = json_array_size(list);

	if (!json_is_array(list) || n == 0) {
		sm_error_set(err, SM_E_IMAGE, 0, "%s: manifest.json is not a non-empty list", path);
		return NULL;
	}
	if (!tag) {
		if (n == 1)
			return json_array_get(list, 0);
		sm_error_set(err, SM_E_INVALID, 0,
			     "%s holds %zu images: name one as docker-archive:%s:NAME:TAG or :@N",
			     path, n, path);
		return NULL;
	}
	if (tag[0] == '@') {
		char *end;
		unsigned long i = strtoul(tag + 1, &end, 10);
		if (*end || end == tag + 1 || i >= n) {
			sm_error_set(err, SM_E_NOT_FOUND, 0, "%s: no image %s (it has %zu)", path,
				     tag, n);
			return NULL;
		}
		return json_array_get(list, i);
	}
	for (size_t i = 0; i < n; i++) {
		json_t *tags = json_object_get(json_array_get(list, i), "RepoTags"), *t;
		size_t k;
		json_array_foreach(tags, k, t) {
			if (json_is_string(t) && repotag_matches(json_string_value(t), tag))
				return json_array_get(list, i);
		}
	}
	sm_error_set(err, SM_E_NOT_FOUND, 0, "%s: no image tagged '%s'", path, tag);
	return NULL;
}

struct archive_reader {
	struct archive *a;
};

static ssize_t archive_rd(void *arg, void *buf, size_t n)
{
	la_ssize_t r = archive_read_data(((struct archive_reader *)arg)->a, buf, n);

	return r < 0 ? -EIO : (ssize_t)r;
}

/* Second pass: streams every wanted member into the store. */
static int darchive_store(struct oci_store *st, struct darchive *da, sm_error **err)
{
	struct archive *a = darchive_open(da->path, err);
	struct archive_entry *e;
	int r, rc = 0;

	if (!a)
		return -1;
	while (rc == 0 && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		char *name = member_norm(NULL, archive_entry_pathname(e));
		struct member *m = name ? member_find(da, name) : NULL;
		free(name);
		if (!m || !m->wanted || m->stored || m->link ||
		    archive_entry_filetype(e) != AE_IFREG)
			continue;
		struct archive_reader rd = { a };
		char what[300];
		snprintf(what, sizeof(what), "%s: %s", da->path, m->name);
		rc = store_blob_import(st, archive_rd, &rd, NULL, -1, m->digest, what, err);
		if (rc < 0 && archive_errno(a))
			sm_error_set(err, SM_E_IMAGE, 0, "%s: %s", what, archive_error_string(a));
		m->size = archive_entry_size(e);
		m->stored = rc == 0;
	}
	if (rc == 0 && r != ARCHIVE_EOF) {
		sm_error_set(err, SM_E_IMAGE, 0, "%s: corrupt archive: %s", da->path,
			     archive_error_string(a));
		rc = -1;
	}
	archive_read_free(a);
	return rc < 0 ? -1 : 0;
}

static struct member *darchive_want(struct darchive *da, json_t *name, const char *what,
				    sm_error **err)
{
	char *norm = json_is_string(name) ? member_norm(NULL, json_string_value(name)) : NULL;
	struct member *m = norm ? member_resolve(da, norm) : NULL;

	if (!m)
		sm_error_set(err, SM_E_IMAGE, 0, "%s: %s '%.200s' is missing from the archive",
			     da->path, what, json_is_string(name) ? json_string_value(name) : "?");
	else
		m->wanted = true;
	free(norm);
	return m;
}

/* An OCI manifest for what the archive holds; layers stay uncompressed. */
static int darchive_manifest(struct oci_store *st, struct member *cfg, struct member **layers,
			     size_t n, char digest[OCI_DIGEST_SIZE], sm_error **err)
{
	json_t *ls = json_array(), *root;
	char *text;
	int rc;

	for (size_t i = 0; ls && i < n; i++)
		json_array_append_new(ls, json_pack("{s:s, s:s, s:I}", "mediaType",
						    "application/vnd.oci.image.layer.v1.tar",
						    "digest", layers[i]->digest, "size",
						    (json_int_t)layers[i]->size));
	root = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:o}", "schemaVersion", 2, "mediaType",
			 MT_OCI_MANIFEST, "config", "mediaType", MT_OCI_CONFIG, "digest",
			 cfg->digest, "size", (json_int_t)cfg->size, "layers", ls);
	text = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (!text) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "manifest");
		return -1;
	}
	rc = store_blob_write(st, text, strlen(text), digest, err);
	free(text);
	return rc;
}

static int archive_import(struct oci_store *st, const struct oci_source *src,
			  const struct oci_platform *plat, struct store_record *rec, sm_error **err)
{
	struct darchive da = { .path = src->path };
	struct member **layers = NULL, *cfg;
	struct oci_manifest m = { 0 };
	json_t *list = NULL, *item, *jl;
	char *buf = NULL;
	size_t n = 0, len;
	int rc = -1;

	if (darchive_scan(&da, err) < 0)
		goto out;
	list = json_loadb(da.manifest, da.manifest_len, 0, NULL);
	item = darchive_pick(list, src->tag, src->path, err);
	if (!item)
		goto out;
	jl = json_object_get(item, "Layers");
	n = json_array_size(jl);
	if (!json_is_array(jl) || n > OCI_LAYERS_MAX) {
		sm_error_set(err, SM_E_IMAGE, 0, "%s: bad Layers list in manifest.json", src->path);
		goto out;
	}
	layers = calloc(n + 1, sizeof(*layers));
	if (!layers)
		goto out;
	cfg = darchive_want(&da, json_object_get(item, "Config"), "config", err);
	for (size_t i = 0; cfg && i < n; i++)
		if (!(layers[i] = darchive_want(&da, json_array_get(jl, i), "layer", err)))
			goto out;
	if (!cfg || darchive_store(st, &da, err) < 0)
		goto out;
	if (darchive_manifest(st, cfg, layers, n, rec->manifest, err) < 0 ||
	    store_blob_read(st, rec->manifest, OCI_MANIFEST_MAX, &buf, &len, err) < 0 ||
	    oci_manifest_parse(buf, len, NULL, "manifest", &m, err) < 0)
		goto out;
	rc = pull_check_image(st, &m, plat, rec, err);
out:
	if (rc < 0)
		sm_error_wrap(err, "import docker-archive:%s", src->path);
	oci_manifest_free(&m);
	free(buf);
	free(layers);
	json_decref(list);
	darchive_free(&da);
	return rc;
}

int local_import(struct oci_store *st, const struct oci_source *src,
		 const struct oci_platform *plat, struct store_record *rec, sm_error **err)
{
	if (src->kind == SRC_OCI_LAYOUT)
		return layout_import(st, src, plat, rec, err);
	return archive_import(st, src, plat, rec, err);
}

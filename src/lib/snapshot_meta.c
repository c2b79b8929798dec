/*
 * metadata.json: reading (as hostile input), writing, and checking the
 * host files a snapshot depends on (docs/snapshot-format.md, "metadata.json").
 */
#include "lib/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fsutil.h"
#include "base/sha256.h"
#include "lib/vm_mount.h"

/* ---- field checks ---- */

/* Printable, bounded, no ',' (worker disk specs) when it is a path. */
static bool text_ok(const char *s, size_t max, bool path)
{
	size_t n = strlen(s);

	if (n >= max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || (path && c == ','))
			return false;
	}
	return !path || s[0] == '/';
}

static bool hex_ok(const char *s, size_t n)
{
	return strlen(s) == n && strspn(s, "0123456789abcdef") == n;
}

/* A JSON array of at most max strings, each text_ok. */
static bool strv_ok(const json_t *a, size_t max)
{
	size_t i;
	json_t *v;

	if (!json_is_array(a) || json_array_size(a) > max)
		return false;
	json_array_foreach(a, i, v)
		if (!json_is_string(v) || strlen(json_string_value(v)) >= PROTO_MAX_STR ||
		    json_string_length(v) != strlen(json_string_value(v)))
			return false;
	return true;
}

/* {entrypoint, cmd, env: string arrays; working_dir, user, stop_signal: strings}, all optional. */
static bool image_config_ok(const json_t *c)
{
	static const char *const lists[] = { "entrypoint", "cmd", "env" };
	static const char *const strs[] = { "working_dir", "user", "stop_signal" };
	const char *key;
	json_t *v;

	if (!json_is_object(c))
		return false;
	json_object_foreach((json_t *)c, key, v) {
		bool known = false;
		for (size_t i = 0; i < 3; i++) {
			if (!strcmp(key, lists[i])) {
				known = true;
				if (!json_is_null(v) && !strv_ok(v, SNAPMETA_MAX_LIST))
					return false;
			}
			if (!strcmp(key, strs[i])) {
				known = true;
				if (!json_is_null(v) && (!json_is_string(v) ||
							  !text_ok(json_string_value(v), SNAPMETA_MAX_STR, false)))
					return false;
			}
		}
		if (!known)
			return false;
	}
	return true;
}

/* ---- parsing ---- */

struct parse {
	const char *what;
	sm_error **err;
};

__attribute__((format(printf, 2, 3))) static int bad(struct parse *p, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sm_error_set(p->err, SM_E_SNAPSHOT, 0, "%s: %s", p->what, msg);
	return -1;
}

static int copy_str(struct parse *p, const json_t *o, const char *key, char *out, size_t len, bool path,
		    bool required)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v)) {
		out[0] = 0;
		return required ? bad(p, "field '%s' is missing", key) : 0;
	}
	if (!json_is_string(v) || json_string_length(v) != strlen(json_string_value(v)) ||
	    !text_ok(json_string_value(v), len, path))
		return path ? bad(p, "field '%s' is not an absolute path without ',' or control characters", key)
			    : bad(p, "field '%s' is not a short printable string", key);
	snprintf(out, len, "%s", json_string_value(v));
	return 0;
}

static int get_uint(struct parse *p, const json_t *o, const char *key, uint64_t min, uint64_t max, uint64_t *out)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min ||
	    (uint64_t)json_integer_value(v) > max)
		return bad(p, "field '%s' is missing or out of range", key);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_bool(struct parse *p, const json_t *o, const char *key, bool *out)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		*out = false;
		return 0;
	}
	if (!json_is_boolean(v))
		return bad(p, "field '%s' is not true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int parse_file(struct parse *p, const json_t *root, const char *key, bool boot, struct snap_file *f)
{
	json_t *o = json_object_get(root, key);
	uint64_t v = 0;

	if (!json_is_object(o))
		return bad(p, "field '%s' is missing or not an object", key);
	if (copy_str(p, o, "path", f->path, sizeof(f->path), true, true) < 0)
		return -1;
	if (boot)
		return 0;
	if (copy_str(p, o, "sha256", f->sha256, sizeof(f->sha256), false, true) < 0)
		return -1;
	if (!digest_valid(f->sha256))
		return bad(p, "the digest of '%s' is not sha256:<64 hex digits>", key);
	if (get_uint(p, o, "size", 0, INT64_MAX, &f->size) < 0 || get_uint(p, o, "ino", 0, INT64_MAX, &f->ino) < 0 ||
	    get_uint(p, o, "dev", 0, INT64_MAX, &f->dev) < 0 || get_uint(p, o, "mtime_ns", 0, INT64_MAX, &v) < 0)
		return -1;
	f->mtime_ns = (int64_t)v;
	if (get_uint(p, o, "ctime_ns", 0, INT64_MAX, &v) < 0)
		return -1;
	f->ctime_ns = (int64_t)v;
	return 0;
}

static int parse_volumes(struct parse *p, const json_t *root, struct snap_meta *m)
{
	json_t *a = json_object_get(root, "volumes"), *v;
	size_t i;

	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > VM_MAX_VOLUMES)
		return bad(p, "field 'volumes' is not an array of at most %u volumes", VM_MAX_VOLUMES);
	json_array_foreach(a, i, v) {
		struct snap_volume *vol = &m->volumes[i];
		if (!json_is_object(v) ||
		    copy_str(p, v, "host_path", vol->host_path, sizeof(vol->host_path), true, true) < 0 ||
		    copy_str(p, v, "guest_path", vol->guest_path, sizeof(vol->guest_path), true, true) < 0 ||
		    get_bool(p, v, "read_only", &vol->read_only) < 0)
			return bad(p, "volume %zu is malformed", i);
	}
	m->nvolumes = (unsigned)json_array_size(a);
	return 0;
}

static int parse_json_parts(struct parse *p, json_t *root, struct snap_meta *m)
{
	json_t *v = json_object_get(root, "image_config");

	if (v && !json_is_null(v)) {
		if (!image_config_ok(v))
			return bad(p, "field '%s' is malformed", "image_config");
		m->image_config = json_incref(v);
	}
	v = json_object_get(root, "workload");
	if (v && !json_is_null(v)) {
		if (!strv_ok(v, SNAPMETA_MAX_LIST))
			return bad(p, "field '%s' is not an array of strings", "workload");
		m->workload = json_incref(v);
	}
	v = json_object_get(root, "bake");
	if (v && !json_is_null(v)) {
		if (!json_is_object(v))
			return bad(p, "field '%s' is not an object", "bake");
		m->bake = json_incref(v);
	}
	v = json_object_get(root, "mounts");
	if (v && !json_is_null(v)) {
		sm_mount ms[SM_MAX_MOUNTS];
		size_t n;
		sm_error *e = NULL;
		if (vm_mounts_from_json(v, ms, &n, &e) < 0) {
			bad(p, "field 'mounts': %s", sm_error_message(e));
			sm_error_free(e);
			return -1;
		}
		m->mounts = json_incref(v);
	}
	return 0;
}

static int parse_root(struct parse *p, json_t *root, bool boot, struct snap_meta *m)
{
	uint64_t v = 0;
	json_t *fmt = json_object_get(root, "format");

	if (!json_is_object(root))
		return bad(p, "not a JSON object");
	if (!json_is_string(fmt) || strcmp(json_string_value(fmt), SNAPMETA_FORMAT))
		return bad(p, "field '%s' is not \"" SNAPMETA_FORMAT "\"", "format");
	if (get_uint(p, root, "version", 0, UINT32_MAX, &v) < 0)
		return -1;
	if (v != SNAPMETA_VERSION) {
		sm_error_set(p->err, SM_E_SNAPSHOT, 0, "%s: format version %llu; this supermachine reads version %d",
			     p->what, (unsigned long long)v, SNAPMETA_VERSION);
		return -1;
	}
	m->version = (unsigned)v;
	if (get_uint(p, root, "memory_mib", 64, 1u << 24, &v) < 0)
		return -1;
	m->memory_mib = (uint32_t)v;
	if (get_uint(p, root, "vcpus", 1, 32, &v) < 0)
		return -1;
	m->vcpus = (unsigned)v;
	if (get_bool(p, root, "network", &m->network) < 0 || get_bool(p, root, "balloon", &m->balloon) < 0)
		return -1;
	if (parse_file(p, root, "kernel", boot, &m->kernel) < 0 ||
	    parse_file(p, root, "initramfs", boot, &m->initramfs) < 0 ||
	    parse_file(p, root, "rootfs", boot, &m->rootfs) < 0 || parse_volumes(p, root, m) < 0)
		return -1;
	if (copy_str(p, root, "image", m->image_name, sizeof(m->image_name), false, false) < 0 ||
	    copy_str(p, root, "image_digest", m->image_digest, sizeof(m->image_digest), false, false) < 0 ||
	    copy_str(p, root, "label", m->label, sizeof(m->label), false, false) < 0 ||
	    copy_str(p, root, "warmup_tag", m->warmup_tag, sizeof(m->warmup_tag), false, false) < 0)
		return -1;
	if (m->image_digest[0] && !digest_valid(m->image_digest))
		return bad(p, "field '%s' is not sha256:<64 hex digits>", "image_digest");
	if (parse_json_parts(p, root, m) < 0)
		return -1;
	if (boot)
		return 0;
	if (copy_str(p, root, "snapshot_id", m->id, sizeof(m->id), false, true) < 0)
		return -1;
	if (!hex_ok(m->id, SNAP_ID_HEX))
		return bad(p, "field '%s' is not 32 lowercase hex digits", "snapshot_id");
	if (get_uint(p, root, "created", 0, INT64_MAX, &v) < 0)
		return -1;
	m->created = (int64_t)v;
	if (get_uint(p, root, "balloon_target_pages", 0, (uint64_t)m->memory_mib << 8, &v) < 0)
		return -1;
	m->balloon_target_pages = (uint32_t)v;
	return 0;
}

int snapmeta_parse(const char *buf, size_t len, const char *what, bool boot, struct snap_meta *m,
		   sm_error **err)
{
	struct parse p = { what, err };
	json_error_t je;
	json_t *root;
	int rc;

	memset(m, 0, sizeof(*m));
	if (len > SNAPMETA_MAX_BYTES) {
		sm_error_set(err, SM_E_SNAPSHOT, 0, "%s: %zu bytes, more than the %u allowed", what, len,
			     SNAPMETA_MAX_BYTES);
		return -1;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		sm_error_set(err, SM_E_SNAPSHOT, 0, "%s: not valid JSON: %s (line %d)", what, je.text, je.line);
		return -1;
	}
	rc = parse_root(&p, root, boot, m);
	json_decref(root);
	if (rc < 0)
		snapmeta_release(m);
	return rc;
}

int snapmeta_load(const char *path, bool boot, struct snap_meta *m, sm_error **err)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd, rc;

	memset(m, 0, sizeof(*m));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return sm_error_set(err, errno == ENOENT ? SM_E_SNAPSHOT : SM_E_IO, errno,
				    "%s%s", path, errno == ENOENT ? " is missing: not a complete snapshot" : ""), -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > SNAPMETA_MAX_BYTES) {
		close(fd);
		return sm_error_set(err, SM_E_SNAPSHOT, 0, "%s: not a regular file of at most %u bytes", path,
				    SNAPMETA_MAX_BYTES), -1;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return sm_error_set(err, SM_E_NOMEM, 0, "%s", path), -1;
	}
	n = read(fd, buf, (size_t)st.st_size + 1);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		return sm_error_set(err, SM_E_IO, n < 0 ? errno : 0, "read %s", path), -1;
	}
	rc = snapmeta_parse(buf, (size_t)n, path, boot, m, err);
	free(buf);
	return rc;
}

void snapmeta_release(struct snap_meta *m)
{
	json_decref(m->mounts);
	m->mounts = NULL;
	json_decref(m->image_config);
	json_decref(m->workload);
	json_decref(m->bake);
	m->image_config = m->workload = m->bake = NULL;
}

/* ---- writing ---- */

json_t *snapmeta_strv(const char *const *v)
{
	json_t *a;

	if (!v)
		return json_null();
	a = json_array();
	for (size_t i = 0; a && v[i]; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *file_json(const struct snap_file *f, bool boot)
{
	if (boot)
		return json_pack("{s:s}", "path", f->path);
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "path", f->path, "sha256", f->sha256, "size",
			 (json_int_t)f->size, "ino", (json_int_t)f->ino, "dev", (json_int_t)f->dev, "mtime_ns",
			 (json_int_t)f->mtime_ns, "ctime_ns", (json_int_t)f->ctime_ns);
}

static json_t *volumes_json(const struct snap_meta *m)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < m->nvolumes; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "host_path", m->volumes[i].host_path,
						   "guest_path", m->volumes[i].guest_path, "read_only",
						   m->volumes[i].read_only));
	return a;
}

void snapmeta_launch(const struct snap_meta *m, struct worker_launch *l)
{
	l->disks[0] = (struct worker_disk){ .path = m->rootfs.path, .read_only = true, .id = "rootfs" };
	for (unsigned i = 0; i < m->nvolumes && 1 + i < WORKER_MAX_DISKS; i++)
		l->disks[1 + i] = (struct worker_disk){ .read_only = m->volumes[i].read_only };
	l->ndisks = 1 + m->nvolumes;
	l->net = m->network;
	l->balloon = m->balloon;
}

/* The worker's options a restore passes, in order, for people reading the file: {NAME} stands for a path. */
static json_t *worker_argv_json(const struct snap_meta *m)
{
	char vols[VM_MAX_VOLUMES][24], why[256], **argv = NULL;
	struct worker_launch l = { .restore = "{snapshot}", .vsock = "{vsock}", .control = "{control}",
				   .console = "{console}" };
	json_t *a = json_array();

	sm_mount ms[SM_MAX_MOUNTS];
	size_t nms = 0;

	snapmeta_launch(m, &l);
	for (unsigned i = 0; i < m->nvolumes && i < VM_MAX_VOLUMES; i++) {
		snprintf(vols[i], sizeof(vols[i]), "{volume %u}", i);
		l.disks[1 + i].path = vols[i];
	}
	if (vm_mounts_from_json(m->mounts, ms, &nms, NULL) == 0)
		for (size_t i = 0; i < nms && i < WORKER_MAX_MOUNTS; i++)
			l.mounts[l.nmounts++] = (struct worker_mount){ .tag = ms[i].tag, .dir = ms[i].host_dir,
								       .read_only = ms[i].read_only,
								       .symlinks = (enum worker_symlinks)ms[i].symlinks };
	/* a path the worker cannot take (a ','): the restore itself will say so */
	if (worker_launch_argv(&l, "supermachine-worker", &argv, why, sizeof(why)) < 0)
		return a;
	for (size_t i = 1; a && argv[i]; i++)
		json_array_append_new(a, json_string(argv[i]));
	worker_argv_free(argv);
	return a;
}

static json_t *meta_json(const struct snap_meta *m, bool boot)
{
	json_t *j = json_pack("{s:s, s:i, s:I, s:i, s:b, s:b, s:o, s:o, s:o, s:o, s:s, s:s, s:s, s:s}", "format",
			      SNAPMETA_FORMAT, "version", SNAPMETA_VERSION, "memory_mib", (json_int_t)m->memory_mib,
			      "vcpus", (int)m->vcpus, "network", m->network, "balloon", m->balloon, "kernel",
			      file_json(&m->kernel, boot), "initramfs", file_json(&m->initramfs, boot), "rootfs",
			      file_json(&m->rootfs, boot), "volumes", volumes_json(m), "image", m->image_name,
			      "image_digest", m->image_digest, "label", m->label, "warmup_tag", m->warmup_tag);

	if (!j)
		return NULL;
	json_object_set(j, "image_config", m->image_config ? m->image_config : json_null());
	json_object_set(j, "workload", m->workload ? m->workload : json_null());
	json_object_set(j, "bake", m->bake ? m->bake : json_null());
	json_object_set_new(j, "mounts", m->mounts ? json_incref(m->mounts) : json_array());
	if (boot)
		return j;
	json_object_set_new(j, "snapshot_id", json_string(m->id));
	json_object_set_new(j, "created", json_integer(m->created));
	json_object_set_new(j, "balloon_target_pages", json_integer(m->balloon_target_pages));
	json_object_set_new(j, "worker_argv", worker_argv_json(m));
	return j;
}

char *snapmeta_dump(const struct snap_meta *m, bool boot)
{
	json_t *j = meta_json(m, boot);
	char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;

	json_decref(j);
	return s;
}

int snapmeta_write(const char *path, const struct snap_meta *m, bool boot, sm_error **err)
{
	char *s = snapmeta_dump(m, boot), *text = NULL;
	int rc;

	if (!s || asprintf(&text, "%s\n", s) < 0) {
		free(s);
		return sm_error_set(err, SM_E_NOMEM, 0, "snapshot metadata"), -1;
	}
	rc = durable_write(path, text, strlen(text), 0600);
	if (rc < 0)
		sm_error_set(err, SM_E_IO, -rc, "write %s", path);
	free(text);
	free(s);
	return rc < 0 ? -1 : 0;
}

static char **strv_from_json(const json_t *a, char **v, size_t *n)
{
	size_t i;
	json_t *s;

	json_array_foreach(a, i, s)
		if (!(v[(*n)++] = strdup(json_string_value(s))))
			return NULL;
	return v;
}

char **snapmeta_image_command(const struct snap_meta *m)
{
	json_t *ep = m->image_config ? json_object_get(m->image_config, "entrypoint") : NULL;
	json_t *cmd = m->image_config ? json_object_get(m->image_config, "cmd") : NULL;
	size_t total = json_array_size(ep) + json_array_size(cmd), n = 0;
	char **v;

	if (!total)
		return NULL;
	v = calloc(total + 1, sizeof(*v));
	if (!v)
		return NULL;
	if ((ep && !strv_from_json(ep, v, &n)) || (cmd && !strv_from_json(cmd, v, &n))) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return NULL;
	}
	return v;
}

/* ---- host files ---- */

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static int file_hash(const char *path, char out[SNAP_DIGEST_LEN + 1], sm_error **err)
{
	char digest[SHA256_DIGEST_SIZE];
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return sm_error_set(err, SM_E_NOT_FOUND, errno, "%s", path), -1;
	rc = sha256_file(fd, digest, NULL);
	close(fd);
	if (rc < 0)
		return sm_error_set(err, SM_E_IO, -rc, "hash %s", path), -1;
	snprintf(out, SNAP_DIGEST_LEN + 1, "%s", digest);
	return 0;
}

int snapfile_record(struct snap_file *f, const char *path, bool hash, sm_error **err)
{
	struct stat st;

	if (strlen(path) >= sizeof(f->path) || !text_ok(path, sizeof(f->path), true))
		return sm_error_set(err, SM_E_INVALID, 0, "%s: a snapshot needs an absolute path without ','", path),
		       -1;
	if (stat(path, &st) < 0)
		return sm_error_set(err, SM_E_NOT_FOUND, errno, "%s", path), -1;
	if (path != f->path) /* re-recording f's own path is fine */
		memmove(f->path, path, strlen(path) + 1);
	f->size = (uint64_t)st.st_size;
	f->ino = (uint64_t)st.st_ino;
	f->dev = (uint64_t)st.st_dev;
	f->mtime_ns = ts_ns(&st.st_mtim);
	f->ctime_ns = ts_ns(&st.st_ctim);
	f->sha256[0] = 0;
	return hash ? file_hash(path, f->sha256, err) : 0;
}

int snapfile_verify(const struct snap_file *rec, const char *path, bool trust_stamp, const char *what,
		    sm_error **err)
{
	struct snap_file now;

	if (snapfile_record(&now, path, false, err) < 0)
		return sm_error_wrap(err, "the snapshot's %s", what), -1;
	if (trust_stamp && !strcmp(now.path, rec->path) && now.size == rec->size && now.ino == rec->ino &&
	    now.dev == rec->dev && now.mtime_ns == rec->mtime_ns && now.ctime_ns == rec->ctime_ns)
		return 0;
	if (now.size != rec->size) {
		sm_error_set(err, SM_E_SNAPSHOT, 0,
			     "the %s %s changed since the snapshot was taken (%llu bytes, was %llu): bake it again",
			     what, path, (unsigned long long)now.size, (unsigned long long)rec->size);
		return -1;
	}
	if (file_hash(path, now.sha256, err) < 0)
		return -1;
	if (strcmp(now.sha256, rec->sha256)) {
		sm_error_set(err, SM_E_SNAPSHOT, 0,
			     "the %s %s changed since the snapshot was taken (%s, was %s): bake it again", what, path,
			     now.sha256, rec->sha256);
		return -1;
	}
	return 0;
}

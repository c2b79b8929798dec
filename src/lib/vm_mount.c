/*
 * Host-directory mounts (sm_mount): checked and resolved before any
 * worker runs, then handed to the worker (one virtio-fs device each), to
 * the guest's /init (a virtiofs mount at the guest path) and to the
 * snapshot's metadata, which records them as JSON so a restore can serve
 * the same directories again or others under the same guest paths.
 */
#include "lib/vm_mount.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"

/* the public limits are the worker's (the public header cannot include the contract) */
_Static_assert(SM_MAX_MOUNTS == WORKER_MAX_MOUNTS, "SM_MAX_MOUNTS is the worker's");
_Static_assert(SM_MOUNT_TAG_MAX == WORKER_MOUNT_TAG_MAX, "SM_MOUNT_TAG_MAX is the worker's");
_Static_assert((int)SM_SYMLINKS_DENY == (int)WORKER_SYMLINKS_DENY && (int)SM_SYMLINKS_FOLLOW == (int)WORKER_SYMLINKS_FOLLOW,
	       "sm_symlinks is enum worker_symlinks");

const char *vm_symlinks_name(sm_symlinks s)
{
	return worker_symlinks_name((enum worker_symlinks)s);
}

static int symlinks_from_name(const char *name, sm_symlinks *s)
{
	for (unsigned i = 0; worker_symlinks_name((enum worker_symlinks)i); i++)
		if (strcmp(name, worker_symlinks_name((enum worker_symlinks)i)) == 0)
			return *s = (sm_symlinks)i, 0;
	return -1;
}

/* Tags are names in the worker's command line and the guest's mount(8): keep them plain. */
/* Absolute, not "/", no empty, "." or ".." component, no trailing '/'. */
static bool guest_path_ok(const char *p)
{
	if (p[0] != '/' || p[1] == 0 || strlen(p) >= 4096)
		return false;
	for (const char *c = p; *c;) {
		const char *e;
		size_t n;
		c++; /* the '/' */
		e = strchrnul(c, '/');
		n = (size_t)(e - c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c = e;
	}
	return true;
}

/* a is b, or a directory above b. */
static bool path_covers(const char *a, const char *b)
{
	size_t n = strlen(a);

	return strncmp(a, b, n) == 0 && (b[n] == 0 || b[n] == '/');
}

int sm_mount_parse(const char *spec, char *buf, size_t buflen, sm_mount *m, sm_error **err)
{
	char *guest, *opt, *mode;

	memset(m, 0, sizeof(*m));
	if (!spec || snprintf(buf, buflen, "%s", spec) >= (int)buflen)
		return sm_error_set(err, SM_E_INVALID, 0, "mount '%s': too long", spec ? spec : ""), -1;
	opt = strchr(buf, ',');
	if (opt)
		*opt++ = 0;
	guest = strchr(buf, ':');
	if (!guest || guest == buf || !guest[1])
		return sm_error_set(err, SM_E_INVALID, 0,
				    "mount '%s': want HOSTDIR:GUESTPATH[:ro][,symlinks=deny|opaque|follow]", spec), -1;
	*guest++ = 0;
	mode = strchr(guest, ':');
	if (mode) {
		*mode++ = 0;
		if (strcmp(mode, "ro") && strcmp(mode, "rw"))
			return sm_error_set(err, SM_E_INVALID, 0, "mount '%s': mode '%s' is neither ro nor rw", spec,
					    mode), -1;
		m->read_only = strcmp(mode, "ro") == 0;
	}
	for (char *o = opt, *next; o; o = next) {
		if ((next = strchr(o, ',')))
			*next++ = 0;
		if (strncmp(o, "symlinks=", 9) || symlinks_from_name(o + 9, &m->symlinks) < 0)
			return sm_error_set(err, SM_E_INVALID, 0,
					    "mount '%s': option '%s' is not symlinks=deny|opaque|follow", spec, o), -1;
	}
	if (!guest_path_ok(guest))
		return sm_error_set(err, SM_E_INVALID, 0,
				    "mount '%s': guest path '%s' is not an absolute path below / without '.' or '..'",
				    spec, guest), -1;
	m->host_dir = buf;
	m->guest_path = guest;
	return 0;
}

void vm_mounts_free(struct vm_mounts *ms)
{
	for (unsigned i = 0; i < ms->n; i++) {
		free(ms->m[i].host_dir);
		free(ms->m[i].guest_path);
	}
	ms->n = 0;
}

static int mount_host_dir(const sm_mount *in, struct vm_mount *out, size_t i, sm_error **err)
{
	struct stat st;

	if (!in->host_dir || !in->host_dir[0])
		return sm_error_set(err, SM_E_INVALID, 0, "mount %zu: no host directory", i), -1;
	if (stat(in->host_dir, &st) < 0)
		return sm_error_set(err, errno == ENOENT ? SM_E_NOT_FOUND : SM_E_IO, errno,
				    "mount %zu: host directory %s", i, in->host_dir), -1;
	if (!S_ISDIR(st.st_mode))
		return sm_error_set(err, SM_E_INVALID, 0, "mount %zu: %s is not a directory", i, in->host_dir), -1;
	out->host_dir = realpath(in->host_dir, NULL);
	if (!out->host_dir)
		return sm_error_set(err, SM_E_IO, errno, "mount %zu: resolve %s", i, in->host_dir), -1;
	if (strchr(out->host_dir, ','))
		return sm_error_set(err, SM_E_INVALID, 0, "mount %zu: %s: a ',' in the path is not supported", i,
				    out->host_dir), -1;
	return 0;
}

static int mount_fields(const sm_mount *in, struct vm_mount *out, size_t i, sm_error **err)
{
	if (in->tag)
		snprintf(out->tag, sizeof(out->tag), "%s", in->tag);
	else
		snprintf(out->tag, sizeof(out->tag), "sm%zu", i);
	if (!proto_share_tag_ok(in->tag ? in->tag : out->tag))
		return sm_error_set(err, SM_E_INVALID, 0,
				    "mount %zu: tag '%s' is not 1 to %d of the characters A-Z a-z 0-9 . _ -", i,
				    in->tag, SM_MOUNT_TAG_MAX), -1;
	if (in->guest_path && !guest_path_ok(in->guest_path))
		return sm_error_set(err, SM_E_INVALID, 0,
				    "mount %zu: guest path '%s' is not an absolute path below / without '.' or '..'", i,
				    in->guest_path), -1;
	if (!vm_symlinks_name(in->symlinks))
		return sm_error_set(err, SM_E_INVALID, 0, "mount %zu: symlink policy %d is unknown", i, (int)in->symlinks),
		       -1;
	out->read_only = in->read_only;
	out->symlinks = in->symlinks;
	if (in->guest_path && !(out->guest_path = strdup(in->guest_path)))
		return sm_error_set(err, SM_E_NOMEM, 0, "mount %zu", i), -1;
	return 0;
}

/* Mount i against the ones before it and the volumes: one tag each, no mount inside another. */
static int mount_conflicts(const struct vm_mounts *ms, unsigned i, const sm_volume *vols, size_t nvols, sm_error **err)
{
	const struct vm_mount *m = &ms->m[i];

	for (unsigned j = 0; j < i; j++) {
		const struct vm_mount *o = &ms->m[j];
		if (strcmp(o->tag, m->tag) == 0)
			return sm_error_set(err, SM_E_INVALID, 0, "mount %u: tag '%s' is already mount %u's", i, m->tag, j),
			       -1;
		if (m->guest_path && o->guest_path &&
		    (path_covers(o->guest_path, m->guest_path) || path_covers(m->guest_path, o->guest_path)))
			return sm_error_set(err, SM_E_INVALID, 0, "mount %u: guest path %s overlaps mount %u's %s", i,
					    m->guest_path, j, o->guest_path), -1;
	}
	for (size_t j = 0; m->guest_path && j < nvols; j++)
		if (vols[j].guest_path &&
		    (path_covers(vols[j].guest_path, m->guest_path) || path_covers(m->guest_path, vols[j].guest_path)))
			return sm_error_set(err, SM_E_INVALID, 0, "mount %u: guest path %s overlaps volume %zu's %s", i,
					    m->guest_path, j, vols[j].guest_path), -1;
	return 0;
}

int vm_mounts_plan(const sm_vm_config *cfg, struct vm_mounts *ms, sm_error **err)
{
	memset(ms, 0, sizeof(*ms));
	if (cfg->nmounts > SM_MAX_MOUNTS)
		return sm_error_set(err, SM_E_INVALID, 0, "%zu mounts: at most %d", cfg->nmounts, SM_MAX_MOUNTS), -1;
	if (1 + cfg->nvolumes + cfg->nmounts + WORKER_FIXED_DEVICES > WORKER_MAX_VIRTIO_DEVICES)
		return sm_error_set(err, SM_E_INVALID, 0,
				    "%zu volumes and %zu mounts: a VM has room for %d disks and mounts together, the "
				    "root filesystem included",
				    cfg->nvolumes, cfg->nmounts, WORKER_MAX_VIRTIO_DEVICES - WORKER_FIXED_DEVICES), -1;
	if (cfg->nmounts && !cfg->mounts)
		return sm_error_set(err, SM_E_INVALID, 0, "%zu mounts but no array of them", cfg->nmounts), -1;
	for (size_t i = 0; i < cfg->nmounts; i++) {
		struct vm_mount *m = &ms->m[ms->n++];
		if (mount_fields(&cfg->mounts[i], m, i, err) < 0 || mount_host_dir(&cfg->mounts[i], m, i, err) < 0 ||
		    mount_conflicts(ms, (unsigned)i, cfg->volumes, cfg->nvolumes, err) < 0)
			goto fail;
	}
	return 0;
fail:
	vm_mounts_free(ms);
	return -1;
}

int vm_mounts_add_root(struct vm_mounts *ms, const char *dir, bool read_only, sm_error **err)
{
	sm_mount root = { .host_dir = dir, .tag = VM_ROOT_TAG, .read_only = read_only };
	struct vm_mount *m = &ms->m[ms->n];

	if (ms->n >= SM_MAX_MOUNTS)
		return sm_error_set(err, SM_E_INVALID, 0, "root directory %s: %d mounts leave no room for the root's share",
				    dir, SM_MAX_MOUNTS), -1;
	for (unsigned i = 0; i < ms->n; i++)
		if (strcmp(ms->m[i].tag, VM_ROOT_TAG) == 0)
			return sm_error_set(err, SM_E_INVALID, 0, "mount %u: tag '" VM_ROOT_TAG "' is the root directory's",
					    i), -1;
	memset(m, 0, sizeof(*m));
	if (mount_fields(&root, m, ms->n, err) < 0 || mount_host_dir(&root, m, ms->n, err) < 0) {
		free(m->host_dir);
		return sm_error_wrap(err, "root directory"), -1;
	}
	ms->n++;
	return 0;
}

void vm_mounts_launch(const struct vm_mounts *ms, struct worker_launch *l)
{
	for (unsigned i = 0; i < ms->n && i < WORKER_MAX_MOUNTS; i++)
		l->mounts[i] = (struct worker_mount){ .tag = ms->m[i].tag, .dir = ms->m[i].host_dir,
						      .read_only = ms->m[i].read_only,
						      .symlinks = (enum worker_symlinks)ms->m[i].symlinks };
	l->nmounts = ms->n;
}

unsigned vm_mounts_guest(const struct vm_mounts *ms, struct proto_volume *out)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ms->n; i++)
		if (ms->m[i].guest_path)
			out[n++] = (struct proto_volume){ ms->m[i].tag, ms->m[i].guest_path, PROTO_FSTYPE_VIRTIOFS,
							  ms->m[i].read_only ? PROTO_VOL_RO : 0 };
	return n;
}

/* ---- in a snapshot's metadata: [{tag, host_dir, guest_path, read_only, symlinks}] ---- */

json_t *vm_mounts_json(const struct vm_mounts *ms, bool with_host)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < ms->n; i++) {
		const struct vm_mount *m = &ms->m[i];
		json_t *o = json_pack("{s:s, s:s?, s:b, s:s}", "tag", m->tag, "guest_path", m->guest_path,
				      "read_only", m->read_only, "symlinks", vm_symlinks_name(m->symlinks));
		if (o && with_host)
			json_object_set_new(o, "host_dir", json_string(m->host_dir));
		if (!o || json_array_append_new(a, o) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static int mount_from_json(const json_t *o, sm_mount *m, size_t i, sm_error **err)
{
	const json_t *sl = json_object_get(o, "symlinks"), *ro = json_object_get(o, "read_only");

	memset(m, 0, sizeof(*m));
	m->host_dir = json_string_value(json_object_get(o, "host_dir"));
	m->guest_path = json_string_value(json_object_get(o, "guest_path"));
	m->tag = json_string_value(json_object_get(o, "tag"));
	if (!json_is_object(o) || !m->tag || !json_is_boolean(ro) || !json_is_string(sl) ||
	    symlinks_from_name(json_string_value(sl), &m->symlinks) < 0 ||
	    (json_object_get(o, "guest_path") && !json_is_null(json_object_get(o, "guest_path")) && !m->guest_path))
		return sm_error_set(err, SM_E_SNAPSHOT, 0, "mount %zu is malformed", i), -1;
	m->read_only = json_is_true(ro);
	return 0;
}

int vm_mounts_from_json(const json_t *a, sm_mount *out, size_t *n, sm_error **err)
{
	size_t i;
	const json_t *o;

	*n = 0;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a) || json_array_size(a) > SM_MAX_MOUNTS)
		return sm_error_set(err, SM_E_SNAPSHOT, 0, "field 'mounts' is not an array of at most %d mounts",
				    SM_MAX_MOUNTS), -1;
	json_array_foreach(a, i, o)
		if (mount_from_json(o, &out[i], i, err) < 0)
			return -1;
	*n = json_array_size(a);
	return 0;
}

/* A restore's mounts: the snapshot's, with other host directories when cfg names them. */
int vm_mounts_restore(const json_t *saved, const sm_vm_config *cfg, struct vm_mounts *ms, sm_error **err)
{
	sm_mount m[SM_MAX_MOUNTS];
	sm_vm_config c = *cfg;
	size_t n;

	if (vm_mounts_from_json(saved, m, &n, err) < 0)
		return -1;
	if (cfg->nmounts && cfg->nmounts != n)
		return sm_error_set(err, SM_E_INVALID, 0, "the snapshot has %zu mount(s), not %zu: give the same again",
				    n, cfg->nmounts), -1;
	for (size_t i = 0; i < cfg->nmounts; i++) {
		const sm_mount *g = &cfg->mounts[i];
		bool same_path = (!g->guest_path && !m[i].guest_path) ||
				 (g->guest_path && m[i].guest_path && strcmp(g->guest_path, m[i].guest_path) == 0);
		char tag[24]; /* "sm" and any size_t */
		snprintf(tag, sizeof(tag), "sm%zu", i);
		if (!same_path || strcmp(g->tag ? g->tag : tag, m[i].tag) || g->read_only != m[i].read_only ||
		    g->symlinks != m[i].symlinks)
			return sm_error_set(err, SM_E_INVALID, 0,
					    "mount %zu: the snapshot mounts tag %s at %s%s (symlinks=%s); only its host "
					    "directory may change",
					    i, m[i].tag, m[i].guest_path ? m[i].guest_path : "(no guest path)",
					    m[i].read_only ? " read-only" : "", vm_symlinks_name(m[i].symlinks)), -1;
		m[i].host_dir = g->host_dir;
	}
	c.mounts = m;
	c.nmounts = n;
	return vm_mounts_plan(&c, ms, err);
}

/*
 * sm_snapshot_list_*: the store's snapshots for `supermachine images`,
 * read from each one's metadata.json. An opaque list with accessors, so
 * a field can be added without changing what a caller allocates.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "lib/snapshot.h"

struct sm_snapshot_info {
	char *name, *path, *image, *image_digest, *warmup_tag, *rootfs;
	uint32_t memory_mib;
	unsigned vcpus;
	int64_t created;
	uint64_t disk_bytes;
};

struct sm_snapshot_list {
	struct sm_snapshot_info *v;
	size_t n;
};

static uint64_t disk_bytes(const char *dir, const char *name)
{
	char path[4400];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512u : 0;
}

static void info_clear(struct sm_snapshot_info *i)
{
	free(i->name);
	free(i->path);
	free(i->image);
	free(i->image_digest);
	free(i->warmup_tag);
	free(i->rootfs);
}

/* 0, -1 when base/name is no complete snapshot, -2 when out of memory. */
static int info_fill(const char *base, const char *name, struct sm_snapshot_info *i)
{
	char meta[4400];
	struct snap_meta m;

	if (asprintf(&i->path, "%s/%s", base, name) < 0)
		return i->path = NULL, -2;
	snprintf(meta, sizeof(meta), "%s/" WORKER_SNAP_METADATA_FILE, i->path);
	if (snapmeta_load(meta, false, &m, NULL) < 0)
		return -1;
	i->name = strdup(name);
	i->image = strdup(m.image_name[0] ? m.image_name : m.rootfs.path);
	i->image_digest = strdup(m.image_digest);
	i->warmup_tag = strdup(m.warmup_tag);
	i->rootfs = strdup(m.rootfs.path);
	i->memory_mib = m.memory_mib;
	i->vcpus = m.vcpus;
	i->created = m.created;
	i->disk_bytes = disk_bytes(i->path, WORKER_SNAP_MEMORY_FILE) + disk_bytes(i->path, WORKER_SNAP_STATE_FILE);
	snapmeta_release(&m);
	return i->name && i->image && i->image_digest && i->warmup_tag && i->rootfs ? 0 : -2;
}

/* Adds base/name to l when it is a complete snapshot; -1 only when out of memory. */
static int list_add(struct sm_snapshot_list *l, const char *base, const char *name)
{
	struct sm_snapshot_info *grown = realloc(l->v, (l->n + 1) * sizeof(*l->v)), *i;
	int rc;

	if (!grown)
		return -1;
	l->v = grown;
	i = memset(&l->v[l->n], 0, sizeof(*i));
	rc = info_fill(base, name, i);
	if (rc == 0)
		l->n++;
	else
		info_clear(i); /* half-made (no metadata.json yet) or not ours: not listed */
	return rc == -2 ? -1 : 0;
}

sm_snapshot_list *sm_snapshot_list_load(sm_error **err)
{
	struct sm_snapshot_list *l = calloc(1, sizeof(*l));
	char base[4096];
	struct dirent *de;
	DIR *d;

	if (!l)
		return sm_error_set(err, SM_E_NOMEM, 0, "snapshot list"), NULL;
	if (snapshot_base(base, sizeof(base), err) < 0)
		goto fail;
	d = opendir(base);
	if (!d) {
		sm_error_set(err, SM_E_IO, errno, "open %s", base);
		goto fail;
	}
	while ((de = readdir(d)))
		if (snapshot_name_valid(de->d_name) && list_add(l, base, de->d_name) < 0) {
			closedir(d);
			sm_error_set(err, SM_E_NOMEM, 0, "snapshot list");
			goto fail;
		}
	closedir(d);
	return l;
fail:
	sm_snapshot_list_free(l);
	return NULL;
}

size_t sm_snapshot_list_count(const sm_snapshot_list *l)
{
	return l ? l->n : 0;
}

const sm_snapshot_info *sm_snapshot_list_at(const sm_snapshot_list *l, size_t i)
{
	return l && i < l->n ? &l->v[i] : NULL;
}

void sm_snapshot_list_free(sm_snapshot_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		info_clear(&l->v[i]);
	free(l->v);
	free(l);
}

const char *sm_snapshot_info_name(const sm_snapshot_info *s) { return s->name; }
const char *sm_snapshot_info_path(const sm_snapshot_info *s) { return s->path; }
const char *sm_snapshot_info_image(const sm_snapshot_info *s) { return s->image; }
const char *sm_snapshot_info_image_digest(const sm_snapshot_info *s) { return s->image_digest; }
const char *sm_snapshot_info_warmup_tag(const sm_snapshot_info *s) { return s->warmup_tag; }
const char *sm_snapshot_info_rootfs(const sm_snapshot_info *s) { return s->rootfs; }
uint32_t sm_snapshot_info_memory_mib(const sm_snapshot_info *s) { return s->memory_mib; }
unsigned sm_snapshot_info_vcpus(const sm_snapshot_info *s) { return s->vcpus; }
int64_t sm_snapshot_info_created(const sm_snapshot_info *s) { return s->created; }
uint64_t sm_snapshot_info_disk_bytes(const sm_snapshot_info *s) { return s->disk_bytes; }

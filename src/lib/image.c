/*
 * What an image name starts: sm_vm_start() restores a baked snapshot of
 * that name, else boots the image (vm.c). It sits above both, so vm.c
 * never calls into the snapshot code.
 *
 * sm_image: a baked snapshot opened once, from which VMs start one at a
 * time (sm_image_start), from a caller's pool (sm_image_pool), or from the
 * image's own pool (sm_image_acquire), made on first use.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "lib/config.h"
#include "lib/snapshot.h"

struct sm_image {
	char dir[4096];
	pthread_mutex_t lock; /* guards pool */
	sm_pool *pool;
};

/* The image's own pool: grows on demand up to one VM per host CPU, never kept warm beyond use. */
#define IMAGE_POOL_MAX_CAP 64u

sm_vm *sm_vm_start(const char *image, const sm_vm_config *cfg, sm_error **err)
{
	sm_vm_config c;

	if (vm_config_copy(&c, cfg, err) < 0)
		return NULL;
	/* a baked snapshot of that name: restore it instead of booting */
	if (image && !c.root_dir && sm_snapshot_exists(image))
		return sm_vm_restore(image, &c, err);
	return vm_boot(image, &c, err);
}

sm_image *sm_image_open(const char *name_or_dir, sm_error **err)
{
	struct sm_image *img = calloc(1, sizeof(*img));
	char path[4200];
	struct snap_meta m;

	if (!img)
		return sm_error_set(err, SM_E_NOMEM, 0, "open image"), NULL;
	if (!name_or_dir || !*name_or_dir) {
		sm_error_set(err, SM_E_INVALID, 0, "no snapshot given");
		goto fail;
	}
	if (snapshot_resolve(name_or_dir, img->dir, sizeof(img->dir), err) < 0)
		goto fail;
	if (access(img->dir, F_OK) != 0) {
		sm_error_set(err, SM_E_NOT_FOUND, errno, "no snapshot at %s", img->dir);
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/" WORKER_SNAP_METADATA_FILE, img->dir);
	/* A missing or malformed metadata.json is an error now, not at the first start. */
	if (snapmeta_load(path, false, &m, err) < 0)
		goto fail;
	snapmeta_release(&m);
	pthread_mutex_init(&img->lock, NULL);
	return img;
fail:
	sm_error_wrap(err, "open image %s", name_or_dir ? name_or_dir : "");
	free(img);
	return NULL;
}

const char *sm_image_path(const sm_image *img)
{
	return img->dir;
}

sm_vm *sm_image_start(sm_image *img, const sm_vm_config *cfg, sm_error **err)
{
	return sm_vm_restore(img->dir, cfg, err);
}

sm_pool *sm_image_pool(sm_image *img, const sm_pool_config *cfg, sm_error **err)
{
	return sm_pool_new(img->dir, cfg, err);
}

sm_vm *sm_image_acquire(sm_image *img, sm_error **err)
{
	sm_pool *p;

	pthread_mutex_lock(&img->lock);
	if (!img->pool) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		sm_pool_config c = { .max = cpus > 0 && (unsigned long)cpus < IMAGE_POOL_MAX_CAP ? (unsigned)cpus
												 : IMAGE_POOL_MAX_CAP };
		img->pool = sm_pool_new(img->dir, &c, err);
	}
	p = img->pool;
	pthread_mutex_unlock(&img->lock);
	return p ? sm_pool_acquire(p, err) : NULL;
}

void sm_image_free(sm_image *img)
{
	if (!img)
		return;
	sm_pool_free(img->pool);
	pthread_mutex_destroy(&img->lock);
	free(img);
}

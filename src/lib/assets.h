/*
 * Asset discovery (vm_assets.c) with every place it looks spelled out, so
 * tests can point each at a directory of their own. vm_assets_find()
 * (lib/vm.h) is vm_assets_find_in() with vm_assets_places_default().
 */
#ifndef SM_LIB_ASSETS_H
#define SM_LIB_ASSETS_H

#include <supermachine.h>

#include "lib/vm.h"

#define ASSET_KERNEL_NAME "vmlinux"
#define ASSET_INITRAMFS_NAME "initramfs.cpio"
#define ASSET_WORKER_NAME "supermachine-worker"

struct vm_assets_places {
	/* the environment (NULL = unset) */
	const char *env_kernel, *env_initramfs, *env_worker; /* files: must exist when set */
	const char *env_kernel_dir, *env_assets_dir;         /* directories: searched */
	/* the install prefix */
	const char *datadir;    /* vmlinux, initramfs.cpio */
	const char *libexecdir; /* supermachine-worker */
	/* the build tree */
	const char *build_root; /* src/guest/initramfs.cpio, src/worker/supermachine-worker */
	const char *kernel_dir; /* meson -Dkernel_dir */
	const char *source_root; /* SOURCE/kernel/build --print-dir names the kernel cache */
};

/* The environment as it is now and the places compiled in. */
void vm_assets_places_default(struct vm_assets_places *p);
int vm_assets_find_in(const sm_assets *given, const struct vm_assets_places *p, struct vm_asset_paths *out,
		      sm_error **err);

#endif

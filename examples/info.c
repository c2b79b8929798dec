/*
 * info: what this machine offers supermachine, no VM started. Prints the
 * library's version, the guest kernel, initramfs and worker that asset
 * discovery finds (see sm_assets), and whether /dev/kvm is usable.
 *
 *   info            exit 0 when everything a VM needs is there, 1 if not
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <supermachine.h>

static int kvm_check(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		perror("kvm: /dev/kvm");
		return -1;
	}
	close(fd);
	printf("kvm: /dev/kvm\n");
	return 0;
}

int main(void)
{
	sm_error *err = NULL;
	sm_asset_paths *paths;
	int rc = 0;

	printf("version: %s\n", sm_version());
	paths = sm_assets_find(NULL, &err);
	if (!paths) {
		fprintf(stderr, "assets: %s\n", sm_error_string(err));
		sm_error_free(err);
		rc = 1;
	} else {
		printf("kernel: %s\ninitramfs: %s\nworker: %s\n", sm_asset_paths_kernel(paths),
		       sm_asset_paths_initramfs(paths), sm_asset_paths_worker(paths));
		sm_asset_paths_free(paths);
	}
	if (kvm_check() < 0)
		rc = 1;
	return rc;
}

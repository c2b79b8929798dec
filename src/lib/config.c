/*
 * Config structs that can grow: the caller says which layout it has by
 * its size, as the kernel's copy_struct_from_user does for extensible
 * syscall arguments. A smaller struct (an older caller) leaves the newer
 * fields zero, which means their defaults; a larger one (a newer caller
 * on an older library) is accepted only when whatever lies past our
 * struct is zero, so nothing the caller asked for is silently dropped.
 */
#include "lib/config.h"

#include <string.h>

#include "base/error.h"

/* The size of a struct up to and including member: its first layout's, fixed for good. */
#define SIZE_TO(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

int config_copy(void *out, size_t ours, size_t first, const void *src, const char *what, sm_error **err)
{
	size_t size;

	memset(out, 0, ours);
	if (!src) {
		*(size_t *)out = ours;
		return 0;
	}
	memcpy(&size, src, sizeof(size));
	if (size == 0)
		size = first;
	if (size < first)
		return sm_error_set(err, SM_E_INVALID, 0,
				    "%s.size is %zu, smaller than its first layout (%zu bytes): set it to sizeof(%s) or 0",
				    what, size, first, what), -1;
	for (size_t i = ours; i < size; i++)
		if (((const unsigned char *)src)[i])
			return sm_error_set(err, SM_E_INVALID, 0,
					    "%s.size is %zu and a field past this library's %zu bytes is set: the "
					    "program was built against a newer supermachine.h than libsupermachine %s",
					    what, size, ours, sm_version()), -1;
	memcpy(out, src, size < ours ? size : ours);
	*(size_t *)out = ours;
	return 0;
}

int vm_config_copy(sm_vm_config *out, const sm_vm_config *cfg, sm_error **err)
{
	return config_copy(out, sizeof(*out), SIZE_TO(sm_vm_config, label), cfg, "sm_vm_config", err);
}

int pool_config_copy(sm_pool_config *out, const sm_pool_config *cfg, sm_error **err)
{
	return config_copy(out, sizeof(*out), SIZE_TO(sm_pool_config, vm), cfg, "sm_pool_config", err);
}

int bake_config_copy(sm_bake_config *out, const sm_bake_config *cfg, sm_error **err)
{
	return config_copy(out, sizeof(*out), SIZE_TO(sm_bake_config, warmup_opaque), cfg, "sm_bake_config", err);
}

int pull_config_copy(sm_pull_config *out, const sm_pull_config *cfg, sm_error **err)
{
	return config_copy(out, sizeof(*out), SIZE_TO(sm_pull_config, progress_opaque), cfg, "sm_pull_config", err);
}

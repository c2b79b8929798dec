/*
 * The public config structs, taken in at the library's size: each starts
 * with `size_t size`, the size the caller was compiled with (0: the first
 * layout). See include/supermachine.h, "configuration structs", and
 * docs/api.md, "ABI policy".
 */
#ifndef SM_LIB_CONFIG_H
#define SM_LIB_CONFIG_H

#include <stddef.h>

#include <supermachine.h>

/*
 * Copies the caller's cfg (NULL: all defaults) into out, zeroed first, at
 * min(cfg->size, sizeof(*out)) bytes, and sets out->size to sizeof(*out).
 * SM_E_INVALID when size is below the first layout, or above ours with
 * any of the bytes we do not know set (a newer caller using a field this
 * library lacks).
 */
int vm_config_copy(sm_vm_config *out, const sm_vm_config *cfg, sm_error **err);
int pool_config_copy(sm_pool_config *out, const sm_pool_config *cfg, sm_error **err);
int bake_config_copy(sm_bake_config *out, const sm_bake_config *cfg, sm_error **err);
int pull_config_copy(sm_pull_config *out, const sm_pull_config *cfg, sm_error **err);

/* What the four use: src is a struct whose first member is its size_t size. */
int config_copy(void *out, size_t ours, size_t first, const void *src, const char *what, sm_error **err);

#endif

/* VmConfig objects as sm_vm_config (config.c). */
#ifndef SM_NODE_CONFIG_H
#define SM_NODE_CONFIG_H

#include "addon.h"

struct vm_cfg {
	sm_vm_config c; /* its strings and arrays point into this struct's allocations */
	sm_assets assets;
	sm_volume *volumes;
	char **volume_specs; /* the buffers the volumes' strings point into */
};

/* A config from obj (undefined/null: the defaults); NULL with an exception thrown. */
struct vm_cfg *vm_cfg_from(napi_env env, napi_value obj);
void vm_cfg_free(struct vm_cfg *v);

#endif

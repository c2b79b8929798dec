/*
 * Module registration: per-environment instance data (the runner, the
 * error class), so the addon loads in any number of worker_threads.
 */
#include <stdlib.h>

#include "addon.h"

struct addon *addon_of(napi_env env)
{
	struct addon *a = NULL;

	napi_get_instance_data(env, (void **)&a);
	return a;
}

static void addon_finalize(napi_env env, void *data, void *hint)
{
	struct addon *a = data;

	(void)hint;
	if (a->error_class)
		napi_delete_reference(env, a->error_class);
	runner_close(a->runner);
	free(a);
}

static napi_value js_version(napi_env env, napi_callback_info info)
{
	(void)info;
	return make_string(env, sm_version());
}

static napi_value addon_init(napi_env env, napi_value exports)
{
	struct addon *a = calloc(1, sizeof(*a));

	if (!a || !(a->runner = runner_new(env))) {
		free(a);
		napi_throw_error(env, NULL, "supermachine: cannot set up the binding's threads");
		return NULL;
	}
	if (napi_set_instance_data(env, a, addon_finalize, NULL) != napi_ok) {
		runner_close(a->runner);
		free(a);
		return NULL;
	}
	export_fn(env, exports, "version", js_version);
	define_errors(env, exports);
	define_handles(env, exports);
	define_exec(env, exports);
	define_store(env, exports);
	return exports;
}

/* node_api.h's macro defines exported functions it declares nowhere else. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
NAPI_MODULE_INIT()
{
	return addon_init(env, exports);
}
#pragma GCC diagnostic pop

/*
 * VmConfig (a plain JavaScript object, docs/node.md) as an sm_vm_config
 * that owns its strings: a pool reads them for its whole life, so the
 * pool's handle keeps the struct until the pool is freed.
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"

void vm_cfg_free(struct vm_cfg *v)
{
	if (!v)
		return;
	free((char *)v->c.console_log);
	free((char *)v->c.workdir);
	free((char *)v->c.user);
	free((char *)v->c.hostname);
	free((char *)v->c.label);
	strv_free((char **)v->c.env);
	strv_free((char **)v->c.workload);
	free((char *)v->assets.kernel);
	free((char *)v->assets.initramfs);
	free((char *)v->assets.worker);
	free((char *)v->assets.dir);
	strv_free(v->volume_specs);
	free(v->volumes);
	free(v);
}

/* env: {KEY: value} or ["KEY=value", ...]. */
static int cfg_env(napi_env env, napi_value obj, struct vm_cfg *v)
{
	napi_value e, keys;
	bool is_array = false;
	uint32_t n;

	if (!opt_get(env, obj, "env", &e))
		return 0;
	napi_is_array(env, e, &is_array);
	if (is_array)
		return (v->c.env = (const char *const *)arg_strv(env, e, "env")) ? 0 : -1;
	if (napi_get_property_names(env, e, &keys) != napi_ok || napi_get_array_length(env, keys, &n) != napi_ok)
		return throw_code(env, SM_E_INVALID, "env must be an object or an array of KEY=VALUE"), -1;
	char **out = calloc(n + 1, sizeof(*out));
	if (!out)
		return throw_code(env, SM_E_NOMEM, "env: out of memory"), -1;
	v->c.env = (const char *const *)out;
	for (uint32_t i = 0; i < n; i++) {
		napi_value k, val;
		napi_get_element(env, keys, i, &k);
		napi_get_property(env, e, k, &val);
		char *ks = arg_string(env, k, "env key"), *vs = ks ? arg_string(env, val, "env value") : NULL;
		if (vs && (out[i] = malloc(strlen(ks) + strlen(vs) + 2)))
			strcat(strcat(strcpy(out[i], ks), "="), vs);
		free(ks);
		free(vs);
		if (!out[i])
			return throw_code(env, SM_E_INVALID, "env: bad entry"), -1;
	}
	return 0;
}

/* volumes: ["HOSTFILE:GUESTPATH[:SIZE]", ...], as `run -v` takes them. */
static int cfg_volumes(napi_env env, napi_value obj, struct vm_cfg *v)
{
	napi_value e;
	size_t n = 0;

	if (!opt_get(env, obj, "volumes", &e))
		return 0;
	if (!(v->volume_specs = arg_strv(env, e, "volumes")))
		return -1;
	while (v->volume_specs[n])
		n++;
	v->volumes = calloc(n, sizeof(*v->volumes));
	if (!v->volumes)
		return throw_code(env, SM_E_NOMEM, "volumes: out of memory"), -1;
	for (size_t i = 0; i < n; i++) {
		sm_error *err = NULL;
		/* parsed in place: the spec's copy becomes the buffer the volume's strings point into */
		char *spec = strdup(v->volume_specs[i]);
		if (!spec)
			return throw_code(env, SM_E_NOMEM, "volumes: out of memory"), -1;
		int rc = sm_volume_parse(spec, v->volume_specs[i], strlen(spec) + 1, &v->volumes[i], &err);
		free(spec);
		if (rc < 0)
			return throw_sm(env, err), -1;
	}
	v->c.volumes = v->volumes;
	v->c.nvolumes = n;
	return 0;
}

static int cfg_assets(napi_env env, napi_value obj, struct vm_cfg *v)
{
	napi_value a;
	bool bad = false;

	if (!opt_get(env, obj, "assets", &a))
		return 0;
	v->assets.kernel = opt_string(env, a, "kernel", &bad);
	v->assets.initramfs = opt_string(env, a, "initramfs", &bad);
	v->assets.worker = opt_string(env, a, "worker", &bad);
	v->assets.dir = opt_string(env, a, "dir", &bad);
	v->c.assets = &v->assets;
	return bad ? -1 : 0;
}

static int cfg_profile(napi_env env, napi_value obj, struct vm_cfg *v)
{
	bool bad = false;
	char *p = opt_string(env, obj, "profile", &bad);
	int rc = bad ? -1 : 0;

	if (p && !strcmp(p, "throughput"))
		v->c.profile = SM_PROFILE_THROUGHPUT;
	else if (p && strcmp(p, "latency"))
		rc = (throw_code(env, SM_E_INVALID, "profile must be 'latency' or 'throughput', not '%s'", p), -1);
	free(p);
	return rc;
}

static int cfg_scalars(napi_env env, napi_value obj, struct vm_cfg *v)
{
	bool bad = false;
	napi_value w;

	if (opt_u32(env, obj, "memoryMib", &v->c.memory_mib) < 0 || opt_u32(env, obj, "vcpus", &v->c.vcpus) < 0 ||
	    opt_u32(env, obj, "bootTimeoutMs", &v->c.boot_timeout_ms) < 0 ||
	    opt_bool(env, obj, "network", &v->c.network) < 0 ||
	    opt_bool(env, obj, "imageWorkload", &v->c.image_workload) < 0 ||
	    opt_bool(env, obj, "powerOffOnExit", &v->c.power_off_on_exit) < 0 ||
	    opt_bool(env, obj, "detached", &v->c.detached) < 0)
		return -1;
	v->c.console_log = opt_string(env, obj, "consoleLog", &bad);
	v->c.workdir = opt_string(env, obj, "workdir", &bad);
	v->c.user = opt_string(env, obj, "user", &bad);
	v->c.hostname = opt_string(env, obj, "hostname", &bad);
	v->c.label = opt_string(env, obj, "label", &bad);
	if (!bad && opt_get(env, obj, "workload", &w) && !(v->c.workload = (const char *const *)arg_strv(env, w, "workload")))
		bad = true;
	return bad ? -1 : 0;
}

struct vm_cfg *vm_cfg_from(napi_env env, napi_value obj)
{
	struct vm_cfg *v = calloc(1, sizeof(*v));
	napi_valuetype t;

	if (!v)
		return throw_code(env, SM_E_NOMEM, "VmConfig: out of memory"), NULL;
	v->c = (sm_vm_config)SM_VM_CONFIG_INIT;
	if (!is_nullish(env, obj) && (napi_typeof(env, obj, &t) != napi_ok || t != napi_object)) {
		free(v);
		return throw_code(env, SM_E_INVALID, "the VM config must be an object"), NULL;
	}
	if (cfg_scalars(env, obj, v) < 0 || cfg_profile(env, obj, v) < 0 || cfg_env(env, obj, v) < 0 ||
	    cfg_assets(env, obj, v) < 0 || cfg_volumes(env, obj, v) < 0) {
		vm_cfg_free(v);
		return NULL;
	}
	return v;
}

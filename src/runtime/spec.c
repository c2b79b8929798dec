/*
 * config.json (runtime-spec 1.1) into what a VM needs. A bundle is
 * hostile input: every field is checked for its type and sense, and what
 * a VM cannot do is either refused (a clear error) or, where runc users
 * expect it to pass (file bind mounts, tmpfs), skipped with a warning.
 */
#include "runtime/rt.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024ll * 1024ll)

static int fail(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -1;
}

static void warn(struct rt_spec *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct rt_spec *s, const char *fmt, ...)
{
	size_t had = s->warnings ? strlen(s->warnings) : 0;
	char line[600];
	va_list ap;
	char *w;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	w = realloc(s->warnings, had + strlen(line) + 2);
	if (!w)
		return; /* a warning lost to ENOMEM is only a warning */
	sprintf(w + had, "%s\n", line);
	s->warnings = w;
}

/* Absolute, no empty, "." or ".." component: nothing that climbs out of where it is put. */
static bool path_plain(const char *p)
{
	if (!p || p[0] != '/' || strlen(p) >= PATH_MAX)
		return false;
	for (const char *c = p; *c;) {
		const char *e = strchrnul(++c, '/');
		size_t n = (size_t)(e - c);
		if ((n == 0 && *e) || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c = e;
	}
	return true;
}

/* A JSON array of strings into a NULL-terminated vector (strings copied). */
static char **strv_from(const json_t *a, const char *what, bool need_eq, char *why, size_t len)
{
	size_t n = json_array_size(a), i;
	char **v;

	if (!json_is_array(a))
		return fail(why, len, "%s: not an array of strings", what), NULL;
	v = calloc(n + 1, sizeof(char *));
	if (!v)
		return fail(why, len, "%s: out of memory", what), NULL;
	for (i = 0; i < n; i++) {
		const char *str = json_string_value(json_array_get(a, i));
		if (!str || (need_eq && !strchr(str, '=')) || !(v[i] = strdup(str))) {
			fail(why, len, "%s[%zu]: %s", what, i, !str ? "not a string" : need_eq ? "not KEY=VALUE" : "out of memory");
			goto bad;
		}
	}
	return v;
bad:
	for (size_t k = 0; k < i; k++)
		free(v[k]);
	free(v);
	return NULL;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static int u32_field(const json_t *o, const char *key, uint32_t *out, const char *what, char *why, size_t len)
{
	const json_t *v = json_object_get(o, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
		return fail(why, len, "%s.%s: not an integer from 0 to %u", what, key, UINT32_MAX);
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

static int process_user(const json_t *o, struct rt_process *p, char *why, size_t len)
{
	const json_t *u = json_object_get(o, "user");

	if (!u)
		return 0;
	if (!json_is_object(u))
		return fail(why, len, "process.user: not an object");
	if (json_object_get(u, "username"))
		return fail(why, len, "process.user.username: only Windows has it");
	return u32_field(u, "uid", &p->uid, "process.user", why, len) < 0 ||
			       u32_field(u, "gid", &p->gid, "process.user", why, len) < 0
		       ? -1
		       : 0;
}

static int process_console(const json_t *o, struct rt_process *p, char *why, size_t len)
{
	const json_t *t = json_object_get(o, "terminal"), *c = json_object_get(o, "consoleSize");
	uint32_t rows = 0, cols = 0;

	if (t && !json_is_boolean(t))
		return fail(why, len, "process.terminal: not a boolean");
	p->terminal = json_is_true(t);
	if (!c)
		return 0;
	if (!json_is_object(c) || u32_field(c, "height", &rows, "process.consoleSize", why, len) < 0 ||
	    u32_field(c, "width", &cols, "process.consoleSize", why, len) < 0 || rows > 0xffff || cols > 0xffff)
		return fail(why, len, "process.consoleSize: want {height, width} below 65536");
	p->rows = rows;
	p->cols = cols;
	return 0;
}

int rt_process_parse(const json_t *o, struct rt_process *p, char *why, size_t len)
{
	const json_t *env = json_object_get(o, "env");
	const char *cwd;

	memset(p, 0, sizeof(*p));
	if (!json_is_object(o))
		return fail(why, len, "process: not an object");
	cwd = json_string_value(json_object_get(o, "cwd"));
	if (!path_plain(cwd))
		return fail(why, len, "process.cwd: %s", cwd ? "not an absolute path without '.' or '..'" : "missing (required)");
	if (!(p->args = strv_from(json_object_get(o, "args"), "process.args", false, why, len)))
		goto bad;
	if (!p->args[0] || !p->args[0][0]) {
		fail(why, len, "process.args: empty (it needs the program to run)");
		goto bad;
	}
	if (!(p->env = env ? strv_from(env, "process.env", true, why, len) : calloc(1, sizeof(char *))))
		goto bad;
	if (!(p->cwd = strdup(cwd)) || process_user(o, p, why, len) < 0 || process_console(o, p, why, len) < 0)
		goto bad;
	return 0;
bad:
	rt_process_free(p);
	return -1;
}

void rt_process_free(struct rt_process *p)
{
	strv_free(p->args);
	strv_free(p->env);
	free(p->cwd);
	memset(p, 0, sizeof(*p));
}

int rt_process_load(const char *path, struct rt_process *p, char *why, size_t len)
{
	json_error_t je;
	json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	int rc;

	if (!o)
		return fail(why, len, "process file %s: %s (line %d)", path, je.text, je.line);
	rc = rt_process_parse(o, p, why, len);
	json_decref(o);
	return rc;
}

static bool has_option(const json_t *opts, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach (opts, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), name) == 0)
			return true;
	return false;
}

/* What the guest's /init mounts itself, whatever config.json asks (pid1.c). */
static bool mounted_by_init(const char *dest)
{
	static const char *const own[] = { "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue",
					   "/sys/fs/cgroup", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf" };

	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (strcmp(dest, own[i]) == 0)
			return true;
	return false;
}

static int bind_mount(struct rt_spec *s, size_t i, const char *src, const char *dest, const json_t *opts,
		      char *why, size_t len)
{
	struct stat st;

	if (!src || src[0] != '/')
		return fail(why, len, "mounts[%zu] (%s): a bind mount needs an absolute source", i, dest);
	if (stat(src, &st) < 0)
		return fail(why, len, "mounts[%zu] (%s): source %s: %s", i, dest, src, strerror(errno));
	if (!S_ISDIR(st.st_mode)) {
		/* virtio-fs shares directories; sharing the parent would show the guest its siblings */
		warn(s, "mounts[%zu]: %s is a file: file bind mounts are not applied (a VM shares directories only)", i,
		     src);
		return 0;
	}
	if (s->nbinds == RT_MAX_MOUNTS)
		return fail(why, len, "mounts[%zu] (%s): more than %d directory bind mounts", i, dest, RT_MAX_MOUNTS);
	struct rt_bind *b = &s->binds[s->nbinds];
	if (!(b->source = strdup(src)) || !(b->destination = strdup(dest)))
		return fail(why, len, "mounts: out of memory");
	b->read_only = has_option(opts, "ro");
	s->nbinds++;
	return 0;
}

static int spec_mount(struct rt_spec *s, size_t i, const json_t *m, char *why, size_t len)
{
	const char *dest = json_string_value(json_object_get(m, "destination"));
	const char *type = json_string_value(json_object_get(m, "type"));
	const char *src = json_string_value(json_object_get(m, "source"));
	const json_t *opts = json_object_get(m, "options");

	if (!json_is_object(m))
		return fail(why, len, "mounts[%zu]: not an object", i);
	if (!path_plain(dest) || strcmp(dest, "/") == 0)
		return fail(why, len, "mounts[%zu]: destination %s%s%s is not an absolute path below / without '.' or '..'",
			    i, dest ? "'" : "", dest ? dest : "(missing)", dest ? "'" : "");
	if (opts && !json_is_array(opts))
		return fail(why, len, "mounts[%zu] (%s): options is not an array", i, dest);
	if (mounted_by_init(dest))
		return 0;
	if ((type && strcmp(type, "bind") == 0) || has_option(opts, "bind") || has_option(opts, "rbind"))
		return bind_mount(s, i, src, dest, opts, why, len);
	warn(s, "mounts[%zu]: %s (%s) is not applied: a VM takes directory bind mounts only", i, dest,
	     type ? type : "no type");
	return 0;
}

static int spec_root(struct rt_spec *s, const char *bundle, const json_t *root, char *why, size_t len)
{
	const char *path = json_string_value(json_object_get(root, "path"));
	const json_t *ro = json_object_get(root, "readonly");
	char joined[PATH_MAX + 8];
	struct stat st;

	if (!path || !path[0])
		return fail(why, len, "root.path: missing (required)");
	if (ro && !json_is_boolean(ro))
		return fail(why, len, "root.readonly: not a boolean");
	if (snprintf(joined, sizeof(joined), "%s%s%s", path[0] == '/' ? "" : bundle, path[0] == '/' ? "" : "/", path) >=
	    (int)sizeof(joined))
		return fail(why, len, "root.path: too long");
	if (stat(joined, &st) < 0)
		return fail(why, len, "rootfs %s: %s", joined, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail(why, len, "rootfs %s: not a directory", joined);
	if (!(s->rootfs = realpath(joined, NULL)))
		return fail(why, len, "rootfs %s: %s", joined, strerror(errno));
	s->root_read_only = json_is_true(ro);
	return 0;
}

/* linux.resources: the memory limit becomes guest memory, the CPU quota vCPUs. */
static int spec_resources(struct rt_spec *s, const json_t *r, char *why, size_t len)
{
	const json_t *limit = json_object_get(json_object_get(r, "memory"), "limit");
	const json_t *cpu = json_object_get(r, "cpu");
	json_int_t quota = json_integer_value(json_object_get(cpu, "quota"));
	json_int_t period = json_integer_value(json_object_get(cpu, "period"));
	long online = sysconf(_SC_NPROCESSORS_ONLN);

	if (limit && !json_is_integer(limit))
		return fail(why, len, "linux.resources.memory.limit: not an integer");
	if (json_integer_value(limit) > 0) {
		json_int_t mib = (json_integer_value(limit) + MIB - 1) / MIB;
		if (mib > UINT32_MAX)
			return fail(why, len, "linux.resources.memory.limit: %lld bytes is too much",
				    (long long)json_integer_value(limit));
		s->memory_mib = mib < RT_MIN_MEMORY_MIB ? RT_MIN_MEMORY_MIB : (uint32_t)mib;
		if (mib < RT_MIN_MEMORY_MIB)
			warn(s, "memory limit %lld MiB raised to %u MiB: the guest kernel needs room too", (long long)mib,
			     RT_MIN_MEMORY_MIB);
	}
	if (quota > 0) {
		json_int_t n = (quota + (period > 0 ? period : 100000) - 1) / (period > 0 ? period : 100000);
		s->vcpus = online > 0 && n > online ? (unsigned)online : (unsigned)n;
	}
	return 0;
}

static bool annotation_is(const json_t *a, const char *key, const char *value)
{
	const char *v = json_string_value(json_object_get(a, key));

	return v && strcmp(v, value) == 0;
}

static int spec_parse(struct rt_spec *s, const char *bundle, const json_t *c, char *why, size_t len)
{
	const char *ver = json_string_value(json_object_get(c, "ociVersion"));
	const json_t *mounts = json_object_get(c, "mounts"), *a = json_object_get(c, "annotations");
	const json_t *host = json_object_get(c, "hostname"), *m;
	size_t i;

	if (!json_is_object(c))
		return fail(why, len, "config.json: not a JSON object");
	if (!ver || strncmp(ver, "1.", 2) != 0)
		return fail(why, len, "ociVersion %s%s%s: this runtime takes 1.x", ver ? "'" : "", ver ? ver : "(missing)",
			    ver ? "'" : "");
	if ((a && !json_is_object(a)) || (host && !json_is_string(host)) || (mounts && !json_is_array(mounts)))
		return fail(why, len, "config.json: annotations must be an object, hostname a string, mounts an array");
	s->annotations = a ? json_deep_copy(a) : json_object();
	s->sandbox = annotation_is(a, "io.kubernetes.cri.container-type", "sandbox") ||
		     annotation_is(a, "io.kubernetes.cri-o.ContainerType", "sandbox");
	if (!s->annotations || (host && json_string_length(host) && !(s->hostname = strdup(json_string_value(host)))))
		return fail(why, len, "config.json: out of memory");
	if (spec_root(s, bundle, json_object_get(c, "root"), why, len) < 0 ||
	    rt_process_parse(json_object_get(c, "process"), &s->proc, why, len) < 0 ||
	    spec_resources(s, json_object_get(json_object_get(c, "linux"), "resources"), why, len) < 0)
		return -1;
	json_array_foreach (mounts, i, m)
		if (spec_mount(s, i, m, why, len) < 0)
			return -1;
	if (json_array_size(json_object_get(json_object_get(c, "process"), "rlimits")))
		warn(s, "process.rlimits are not applied: the guest's defaults hold");
	return 0;
}

int rt_spec_load(const char *bundle, struct rt_spec *s, char *why, size_t len)
{
	char path[PATH_MAX + 16];
	json_error_t je;
	json_t *c;

	memset(s, 0, sizeof(*s));
	if (!bundle || bundle[0] != '/')
		return fail(why, len, "bundle %s: not an absolute path", bundle ? bundle : "(none)");
	snprintf(path, sizeof(path), "%s/config.json", bundle);
	c = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!c && access(path, R_OK) < 0)
		return fail(why, len, "%s: %s", path, strerror(errno));
	if (!c)
		return fail(why, len, "%s: bad JSON: %s (line %d)", path, je.text, je.line);
	int rc = spec_parse(s, bundle, c, why, len);
	json_decref(c);
	if (rc < 0)
		rt_spec_free(s);
	return rc;
}

void rt_spec_free(struct rt_spec *s)
{
	free(s->rootfs);
	free(s->hostname);
	rt_process_free(&s->proc);
	for (size_t i = 0; i < s->nbinds; i++) {
		free(s->binds[i].source);
		free(s->binds[i].destination);
	}
	json_decref(s->annotations);
	free(s->warnings);
	memset(s, 0, sizeof(*s));
}

void rt_spec_vm_config(const struct rt_spec *s, const char *id, sm_vm_config *cfg, sm_mount *mounts)
{
	*cfg = (sm_vm_config)SM_VM_CONFIG_INIT;
	cfg->root_dir = s->rootfs;
	cfg->root_read_only = s->root_read_only;
	cfg->memory_mib = s->memory_mib;
	cfg->vcpus = s->vcpus;
	cfg->hostname = s->hostname ? s->hostname : id;
	cfg->label = id;
	cfg->network = true; /* user-mode NAT: outbound only (docs/kubernetes.md) */
	for (size_t i = 0; i < s->nbinds; i++)
		mounts[i] = (sm_mount){ .host_dir = s->binds[i].source, .guest_path = s->binds[i].destination,
					.read_only = s->binds[i].read_only };
	cfg->mounts = mounts;
	cfg->nmounts = s->nbinds;
}

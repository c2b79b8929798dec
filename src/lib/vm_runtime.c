/*
 * Runtime directories: one per VM under $XDG_RUNTIME_DIR/supermachine (or
 * /tmp/supermachine-UID), mode 0700, holding the worker's control and vsock
 * sockets, the console log, the per-VM initrd and meta.json for `ps`.
 * The base is checked to be a directory we own that nobody else can write,
 * since in /tmp another user could have made it first to catch our sockets.
 */
#include "lib/vm.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fsutil.h"
#include "lib/log.h"
#include "lib/vm_cgroup.h"

/* dir/name into out; lengths were bounded by vm_runtime_base(), so a cut means a bug: empty path. */
static void runtime_join(char *out, size_t len, const char *dir, const char *name)
{
	if (snprintf(out, len, "%s/%s", dir, name) >= (int)len)
		out[0] = 0;
}

static int runtime_check_dir(const char *path, sm_error **err)
{
	struct stat st;

	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return sm_error_set(err, SM_E_IO, errno, "create runtime directory %s", path), -1;
	if (lstat(path, &st) < 0)
		return sm_error_set(err, SM_E_IO, errno, "runtime directory %s", path), -1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077))
		return sm_error_set(err, SM_E_IO, 0,
				    "runtime directory %s is not a directory private to uid %u (remove it)", path,
				    (unsigned)geteuid()), -1;
	return 0;
}

int vm_runtime_base(char *out, size_t len, sm_error **err)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (xdg && xdg[0] == '/')
		n = snprintf(out, len, "%s/supermachine", xdg);
	else
		n = snprintf(out, len, "/tmp/supermachine-%u", (unsigned)geteuid());
	/* id + "/vsock.sock_65535" must still fit a unix socket path */
	if (n < 0 || (size_t)n + 1 + VM_ID_LEN + 20 >= len)
		return sm_error_set(err, SM_E_INVALID, 0, "runtime directory path too long: %s", out), -1;
	return runtime_check_dir(out, err);
}

static void runtime_paths(struct sm_vm *vm, const char *base)
{
	runtime_join(vm->dir, sizeof(vm->dir), base, vm->id);
	runtime_join(vm->control, sizeof(vm->control), vm->dir, "control.sock");
	runtime_join(vm->vsock, sizeof(vm->vsock), vm->dir, "vsock.sock");
	runtime_join(vm->console, sizeof(vm->console), vm->dir, "console.log");
}

int vm_runtime_create(struct sm_vm *vm, sm_error **err)
{
	char base[VM_PATH_MAX];
	uint8_t rnd[VM_ID_LEN / 2];

	if (vm_runtime_base(base, sizeof(base), err) < 0)
		return -1;
	for (int attempt = 0; attempt < 8; attempt++) {
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return sm_error_set(err, SM_E_IO, errno, "getrandom"), -1;
		for (size_t i = 0; i < sizeof(rnd); i++)
			snprintf(vm->id + 2 * i, 3, "%02x", rnd[i]);
		runtime_paths(vm, base);
		if (mkdir(vm->dir, 0700) == 0)
			return 0;
		if (errno != EEXIST)
			return sm_error_set(err, SM_E_IO, errno, "create %s", vm->dir), -1;
	}
	return sm_error_set(err, SM_E_INTERNAL, 0, "no free VM ID in %s", base), -1;
}

static bool runtime_id_valid(const char *id)
{
	size_t n = strlen(id);

	return n > 0 && n <= VM_ID_LEN && strspn(id, "0123456789abcdef") == n;
}

bool sm_vm_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	/* docker's [a-zA-Z0-9][a-zA-Z0-9_.-]+; never all hex digits of an ID's length, which would shadow it */
	return n >= 2 && n <= VM_NAME_MAX && isalnum((unsigned char)name[0]) &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n &&
	       !(n == VM_ID_LEN && runtime_id_valid(name));
}

/* BASE/names, where each name is a link to its VM's ID. */
static int runtime_names_dir(char *out, size_t len, sm_error **err)
{
	char base[VM_PATH_MAX];

	if (vm_runtime_base(base, sizeof(base), err) < 0)
		return -1;
	runtime_join(out, len, base, "names");
	return runtime_check_dir(out, err);
}

/* The ID a name's link holds, into id; -1 when there is none. */
static int runtime_name_lookup(const char *names, const char *name, char *id)
{
	char link[VM_PATH_MAX + VM_NAME_MAX + 2];
	ssize_t n;

	runtime_join(link, sizeof(link), names, name);
	n = readlink(link, id, VM_ID_LEN + 1);
	if (n != VM_ID_LEN)
		return -1;
	id[VM_ID_LEN] = 0;
	return runtime_id_valid(id) ? 0 : -1;
}

int vm_runtime_name(struct sm_vm *vm, const char *name, sm_error **err)
{
	char base[VM_PATH_MAX], names[VM_PATH_MAX], link[VM_PATH_MAX + VM_NAME_MAX + 2], held[VM_ID_LEN + 1];
	char dir[VM_PATH_MAX + 16];
	struct stat st;

	if (!sm_vm_name_valid(name))
		return sm_error_set(err, SM_E_INVALID, 0,
				    "'%s' is not a valid VM name: [a-zA-Z0-9][a-zA-Z0-9_.-]+, at most %d bytes", name,
				    VM_NAME_MAX), -1;
	if (vm_runtime_base(base, sizeof(base), err) < 0 || runtime_names_dir(names, sizeof(names), err) < 0)
		return -1;
	runtime_join(link, sizeof(link), names, name);
	for (int attempt = 0; attempt < 2; attempt++) {
		if (symlink(vm->id, link) == 0) {
			snprintf(vm->name, sizeof(vm->name), "%s", name);
			return 0;
		}
		if (errno != EEXIST)
			return sm_error_set(err, SM_E_IO, errno, "reserve the name %s", link), -1;
		if (runtime_name_lookup(names, name, held) == 0) {
			runtime_join(dir, sizeof(dir), base, held);
			if (lstat(dir, &st) == 0)
				return sm_error_set(err, SM_E_BUSY, 0,
						    "the name \"%s\" is already in use by VM %s: remove it (supermachine rm) "
						    "or choose another name", name, held), -1;
		}
		unlink(link); /* its VM is gone: the name is free */
	}
	return sm_error_set(err, SM_E_BUSY, 0, "the name \"%s\" is being taken by another VM", name), -1;
}

/* The full ID of the one directory id starts, into vm->id: 0, or -1 with err set. */
static int runtime_prefix(struct sm_vm *vm, const char *base, const char *id, sm_error **err)
{
	struct dirent *de;
	unsigned found = 0;
	DIR *d = opendir(base);

	if (!d)
		return sm_error_set(err, SM_E_IO, errno, "open %s", base), -1;
	while ((de = readdir(d)))
		if (strlen(de->d_name) == VM_ID_LEN && runtime_id_valid(de->d_name) &&
		    strncmp(de->d_name, id, strlen(id)) == 0) {
			if (found++ == 0)
				memcpy(vm->id, de->d_name, VM_ID_LEN + 1);
		}
	closedir(d);
	if (found == 0)
		return sm_error_set(err, SM_E_NOT_FOUND, 0, "no such VM: %s (see supermachine ps -a)", id), -1;
	if (found > 1)
		return sm_error_set(err, SM_E_INVALID, 0, "VM ID prefix %s matches %u VMs", id, found), -1;
	return 0;
}

int vm_runtime_open(struct sm_vm *vm, const char *id, sm_error **err)
{
	char base[VM_PATH_MAX], names[VM_PATH_MAX], path[VM_PATH_MAX + 16];
	struct stat st;

	if (!id || !id[0] || strlen(id) > VM_NAME_MAX)
		return sm_error_set(err, SM_E_NOT_FOUND, 0, "no such VM: %s (see supermachine ps -a)", id ? id : ""), -1;
	if (vm_runtime_base(base, sizeof(base), err) < 0 || runtime_names_dir(names, sizeof(names), err) < 0)
		return -1;
	runtime_join(path, sizeof(path), base, id);
	/* docker's order: the whole ID, then a name, then an ID prefix */
	if (strlen(id) == VM_ID_LEN && runtime_id_valid(id) && lstat(path, &st) == 0)
		memcpy(vm->id, id, VM_ID_LEN + 1);
	else if (!sm_vm_name_valid(id) || runtime_name_lookup(names, id, vm->id) < 0) {
		if (!runtime_id_valid(id))
			return sm_error_set(err, SM_E_NOT_FOUND, 0, "no such VM: %s (see supermachine ps -a)", id), -1;
		if (runtime_prefix(vm, base, id, err) < 0)
			return -1;
	}
	runtime_paths(vm, base);
	if (lstat(vm->dir, &st) < 0)
		return sm_error_set(err, SM_E_NOT_FOUND, 0, "no such VM: %s (see supermachine ps -a)", id), -1;
	return 0;
}

/* The name link goes only while it still names this VM: the name may have been taken over since. */
/* Drops every name whose link holds id (a removed VM's; normally one). */
static void runtime_unname(const char *id)
{
	char names[VM_PATH_MAX], link[VM_PATH_MAX + VM_NAME_MAX + 2], held[VM_ID_LEN + 1];
	struct dirent *de;
	DIR *d;

	if (runtime_names_dir(names, sizeof(names), NULL) < 0 || !(d = opendir(names)))
		return;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && runtime_name_lookup(names, de->d_name, held) == 0 &&
		    strcmp(held, id) == 0) {
			runtime_join(link, sizeof(link), names, de->d_name);
			unlink(link);
		}
	closedir(d);
}

void vm_runtime_prune(const struct sm_vm *vm, bool keep_initrd)
{
	static const char *const names[] = { "control.sock", "vsock.sock", "initrd.cpio" };
	char path[VM_PATH_MAX + 32];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) - (keep_initrd ? 1 : 0); i++) {
		runtime_join(path, sizeof(path), vm->dir, names[i]);
		unlink(path);
	}
}

void vm_runtime_remove(const struct sm_vm *vm)
{
	vm_runtime_remove_dir(vm->dir);
}

/*
 * Removes a VM's runtime directory and all in it: its sockets, logs,
 * metadata (with any durable_write temp a writer left), vsock.sock_PORT
 * listeners and the empty jail/ mount point. Under the directory's lock,
 * the one vm_meta_update() takes: a watcher recording the VM's end either
 * finished before (and its files go too) or finds the directory gone, so
 * it never brings a removed VM back.
 */
void vm_runtime_remove_dir(const char *dir)
{
	const char *id = strrchr(dir, '/');
	char failed[VM_PATH_MAX + 256];
	int dfd, rc;

	if (!dir[0])
		return;
	runtime_unname(id ? id + 1 : dir);
	vm_cgroup_remove(id ? id + 1 : dir); /* the worker ended: its leaf is empty */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	flock(dfd, LOCK_EX); /* released by the close */
	rc = dir_empty_at(dfd, dir, failed, sizeof(failed));
	if (rc < 0)
		log_warn("VM directory %s not removed whole: %s: %s", dir, failed, strerror(-rc));
	rmdir(dir);
	close(dfd);
}

static json_t *meta_ports_json(const struct vm_meta *m)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < m->nports; i++)
		json_array_append_new(a, json_pack("{s:s, s:i, s:i}", "addr", m->ports[i].addr, "host",
						   m->ports[i].host, "guest", m->ports[i].guest));
	return a;
}

static json_t *meta_volumes_json(const struct vm_meta *m)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < m->nvolumes; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "host", m->volumes[i].host, "guest",
						   m->volumes[i].guest, "read_only", m->volumes[i].read_only));
	return a;
}

char *vm_meta_dump(const struct vm_meta *m)
{
	json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:s, s:s, s:s, s:b, s:b, s:b, s:b, s:b, s:i, s:i, "
			      "s:i, s:s, s:i, s:o, s:o}",
			      "id", m->id, "name", m->name, "pid", (json_int_t)m->pid, "created", (json_int_t)m->created,
			      "started", (json_int_t)m->started, "finished", (json_int_t)m->finished, "exit_code",
			      m->exit_code, "image", m->image, "command", m->command, "console", m->console, "detached",
			      m->detached, "keep", m->keep, "network", m->network, "restartable", m->restartable,
			      "stopping", m->stopping,
			      "memory_mib", (int)m->memory_mib, "vcpus", (int)m->vcpus, "stop_timeout_ms",
			      (int)m->stop_timeout_ms, "restart", m->restart, "restarts", (int)m->restarts, "ports",
			      meta_ports_json(m), "volumes", meta_volumes_json(m));
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	return text;
}

int vm_meta_write(const struct sm_vm *vm, const struct vm_meta *m, sm_error **err)
{
	char path[VM_PATH_MAX + 32], *text = vm_meta_dump(m);
	int rc;

	if (!text)
		return sm_error_set(err, SM_E_NOMEM, 0, "VM metadata"), -1;
	snprintf(path, sizeof(path), "%s/meta.json", vm->dir);
	rc = durable_write(path, text, strlen(text), 0644);
	if (rc < 0)
		sm_error_set(err, SM_E_IO, -rc, "write %s", path);
	free(text);
	return rc < 0 ? -1 : 0;
}

/* A string member into out (cut to fit); "" when absent. */
static void meta_str(json_t *j, const char *key, char *out, size_t len)
{
	const char *v = json_string_value(json_object_get(j, key));

	snprintf(out, len, "%s", v ? v : "");
}

/* An integer member in [lo, hi]; def when absent; -1 when out of range or not an integer. */
static int meta_int(json_t *j, const char *key, json_int_t lo, json_int_t hi, json_int_t def, json_int_t *out)
{
	json_t *v = json_object_get(j, key);

	*out = def;
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return -1;
	*out = json_integer_value(v);
	return 0;
}

static int meta_ports_parse(json_t *a, struct vm_meta *m)
{
	size_t i;
	json_t *p;
	const char *addr;
	int host, guest;

	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > VM_MAX_PORTS)
		return -1;
	json_array_foreach(a, i, p) {
		if (json_unpack(p, "{s:s, s:i, s:i}", "addr", &addr, "host", &host, "guest", &guest) < 0 ||
		    host < 0 || host > 65535 || guest < 1 || guest > 65535 || strlen(addr) >= sizeof(m->ports[0].addr))
			return -1;
		snprintf(m->ports[m->nports].addr, sizeof(m->ports[0].addr), "%s", addr);
		m->ports[m->nports].host = (uint16_t)host;
		m->ports[m->nports++].guest = (uint16_t)guest;
	}
	return 0;
}

static int meta_volumes_parse(json_t *a, struct vm_meta *m)
{
	size_t i;
	json_t *v;
	const char *host, *guest;
	int ro = 0;

	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > VM_MAX_VOLUMES)
		return -1;
	json_array_foreach(a, i, v) {
		if (json_unpack(v, "{s:s, s:s, s?b}", "host", &host, "guest", &guest, "read_only", &ro) < 0)
			return -1;
		snprintf(m->volumes[m->nvolumes].host, sizeof(m->volumes[0].host), "%s", host);
		snprintf(m->volumes[m->nvolumes].guest, sizeof(m->volumes[0].guest), "%s", guest);
		m->volumes[m->nvolumes++].read_only = ro;
	}
	return 0;
}

/* The integers of meta.json; -1 names the first bad one in *why. */
static int meta_numbers(json_t *j, struct vm_meta *m, const char **why)
{
	json_int_t pid, created, started, finished, code, mem, vcpus, grace, restarts;

	if (meta_int(j, "pid", 1, INT32_MAX, 0, &pid) < 0 || pid == 0)
		return *why = "pid", -1;
	if (meta_int(j, "created", 0, INT64_MAX, 0, &created) < 0 || meta_int(j, "started", 0, INT64_MAX, created, &started) < 0 ||
	    meta_int(j, "finished", 0, INT64_MAX, 0, &finished) < 0)
		return *why = "a time", -1;
	if (meta_int(j, "exit_code", -1, 255, -1, &code) < 0 || meta_int(j, "memory_mib", 0, UINT32_MAX, 0, &mem) < 0 ||
	    meta_int(j, "vcpus", 0, 1024, 0, &vcpus) < 0 || meta_int(j, "stop_timeout_ms", 0, UINT32_MAX, 0, &grace) < 0 ||
	    meta_int(j, "restarts", 0, UINT32_MAX, 0, &restarts) < 0)
		return *why = "a number", -1;
	m->pid = (pid_t)pid;
	m->created = created;
	m->started = started;
	m->finished = finished;
	m->exit_code = (int)code;
	m->memory_mib = (uint32_t)mem;
	m->vcpus = (unsigned)vcpus;
	m->stop_timeout_ms = (uint32_t)grace;
	m->restarts = (unsigned)restarts;
	return 0;
}

static bool meta_bool(json_t *j, const char *key)
{
	return json_is_true(json_object_get(j, key));
}

int vm_meta_parse(const char *text, struct vm_meta *m, const char **why)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	int rc = -1;

	memset(m, 0, sizeof(*m));
	*why = "not a JSON object";
	if (!json_is_object(j))
		goto out;
	meta_str(j, "id", m->id, sizeof(m->id));
	meta_str(j, "name", m->name, sizeof(m->name));
	*why = "id or name";
	if (!runtime_id_valid(m->id) || (m->name[0] && !sm_vm_name_valid(m->name)))
		goto out;
	if (meta_numbers(j, m, why) < 0)
		goto out;
	*why = "ports or volumes";
	if (meta_ports_parse(json_object_get(j, "ports"), m) < 0 || meta_volumes_parse(json_object_get(j, "volumes"), m) < 0)
		goto out;
	meta_str(j, "image", m->image, sizeof(m->image));
	meta_str(j, "command", m->command, sizeof(m->command));
	meta_str(j, "console", m->console, sizeof(m->console));
	meta_str(j, "restart", m->restart, sizeof(m->restart));
	m->detached = meta_bool(j, "detached");
	m->keep = meta_bool(j, "keep");
	m->network = meta_bool(j, "network");
	m->restartable = meta_bool(j, "restartable");
	m->stopping = meta_bool(j, "stopping");
	rc = 0;
out:
	json_decref(j);
	return rc;
}

int vm_meta_read(const char *dir, struct vm_meta *m, sm_error **err)
{
	char path[VM_PATH_MAX + 32], text[65536];
	const char *why;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/meta.json", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return sm_error_set(err, SM_E_IO, errno, "read %s", path), -1;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0)
		return sm_error_set(err, SM_E_IO, errno, "read %s", path), -1;
	text[n] = 0;
	if (vm_meta_parse(text, m, &why) < 0)
		return sm_error_set(err, SM_E_IO, 0, "%s is malformed (%s)", path, why), -1;
	return 0;
}

int vm_meta_update(const struct sm_vm *vm, int (*fn)(struct vm_meta *m, void *arg), void *arg, sm_error **err)
{
	struct vm_meta *m = malloc(sizeof(*m));
	int dfd = open(vm->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = -1;

	if (!m || dfd < 0) {
		sm_error_set(err, m ? SM_E_IO : SM_E_NOMEM, m ? errno : 0, "update the metadata of VM %s", vm->id);
		goto out;
	}
	flock(dfd, LOCK_EX); /* released by the close */
	if (vm_meta_read(vm->dir, m, err) == 0 && fn(m, arg) == 0)
		rc = vm_meta_write(vm, m, err);
out:
	if (dfd >= 0)
		close(dfd);
	free(m);
	return rc;
}

int vm_meta_list(struct vm_meta **out, size_t *n, sm_error **err)
{
	char base[VM_PATH_MAX], dir[VM_PATH_MAX + 16];
	struct vm_meta *list = NULL;
	struct dirent *de;
	size_t cnt = 0;
	DIR *d;

	*out = NULL;
	*n = 0;
	if (vm_runtime_base(base, sizeof(base), err) < 0)
		return -1;
	d = opendir(base);
	if (!d)
		return sm_error_set(err, SM_E_IO, errno, "open %s", base), -1;
	while ((de = readdir(d))) {
		struct vm_meta m;
		if (strlen(de->d_name) != VM_ID_LEN || !runtime_id_valid(de->d_name))
			continue;
		runtime_join(dir, sizeof(dir), base, de->d_name);
		if (vm_meta_read(dir, &m, NULL) < 0)
			continue; /* being created, or not ours to judge */
		struct vm_meta *grown = realloc(list, (cnt + 1) * sizeof(*list));
		if (!grown) {
			free(list);
			closedir(d);
			return sm_error_set(err, SM_E_NOMEM, 0, "VM list"), -1;
		}
		list = grown;
		list[cnt++] = m;
	}
	closedir(d);
	*out = list;
	*n = cnt;
	return 0;
}

bool vm_pid_is_worker(pid_t pid)
{
	char path[64], comm[64] = "";
	FILE *f;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = 0;
	fclose(f);
	/* comm is cut to 15 bytes: "supermachine-wo"; a zombie still says so, check its state too */
	if (strncmp(comm, "supermachine-wo", 15) != 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	char stat[256] = "";
	if (f) {
		if (!fgets(stat, sizeof(stat), f))
			stat[0] = 0;
		fclose(f);
	}
	const char *rp = strrchr(stat, ')');
	return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

/*
 * Runtime directories: one per VM under $XDG_RUNTIME_DIR/supermachine (or
 * /tmp/supermachine-UID), mode 0700, holding the worker's control and vsock
 * sockets, the console log, the per-VM initrd and meta.json for `ps`.
 * The base is checked to be a directory we own that nobody else can write,
 * since in /tmp another user could have made it first to catch our sockets.
 */
#include "lib/vm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fsutil.h"

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

int vm_runtime_open(struct sm_vm *vm, const char *id, sm_error **err)
{
	char base[VM_PATH_MAX];
	struct dirent *de;
	unsigned found = 0;
	DIR *d;

	if (!runtime_id_valid(id))
		return sm_error_set(err, SM_E_INVALID, 0, "'%s' is not a VM ID (see supermachine ps)", id), -1;
	if (vm_runtime_base(base, sizeof(base), err) < 0)
		return -1;
	d = opendir(base);
	if (!d)
		return sm_error_set(err, SM_E_IO, errno, "open %s", base), -1;
	while ((de = readdir(d)))
		if (strlen(de->d_name) == VM_ID_LEN && strncmp(de->d_name, id, strlen(id)) == 0) {
			if (found++ == 0)
				memcpy(vm->id, de->d_name, VM_ID_LEN + 1);
		}
	closedir(d);
	if (found == 0)
		return sm_error_set(err, SM_E_NOT_FOUND, 0, "no VM %s (see supermachine ps)", id), -1;
	if (found > 1)
		return sm_error_set(err, SM_E_INVALID, 0, "VM ID prefix %s matches %u VMs", id, found), -1;
	runtime_paths(vm, base);
	return 0;
}

void vm_runtime_remove(const struct sm_vm *vm)
{
	vm_runtime_remove_dir(vm->dir);
}

void vm_runtime_remove_dir(const char *dir)
{
	static const char *const names[] = { "control.sock", "vsock.sock", "console.log", "initrd.cpio",
					     "worker.log", "meta.json", "meta.json.tmp",
					     "boot.json", "boot.json.tmp" };
	char path[VM_PATH_MAX + 32];

	if (!dir[0])
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		runtime_join(path, sizeof(path), dir, names[i]);
		unlink(path);
	}
	/* guest-initiated vsock listeners leave vsock.sock_PORT files behind */
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (strncmp(de->d_name, "vsock.sock_", 11) == 0) {
			runtime_join(path, sizeof(path), dir, de->d_name);
			unlink(path);
		}
	if (d)
		closedir(d);
	runtime_join(path, sizeof(path), dir, VM_JAIL_DIR); /* empty: the jail's tmpfs was the worker's */
	rmdir(path);
	rmdir(dir);
}

int vm_meta_write(const struct sm_vm *vm, const struct vm_meta *m, sm_error **err)
{
	char path[VM_PATH_MAX + 32], *text = NULL;
	json_t *j = json_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:b}", "id", m->id, "pid", (json_int_t)m->pid,
			      "created", (json_int_t)m->created, "image", m->image, "command", m->command, "console",
			      m->console, "detached", m->detached);
	int rc;

	if (j)
		text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!text)
		return sm_error_set(err, SM_E_NOMEM, 0, "VM metadata"), -1;
	snprintf(path, sizeof(path), "%s/meta.json", vm->dir);
	rc = durable_write(path, text, strlen(text), 0644);
	if (rc < 0)
		sm_error_set(err, SM_E_IO, -rc, "write %s", path);
	free(text);
	return rc < 0 ? -1 : 0;
}

int vm_meta_read(const char *dir, struct vm_meta *m, sm_error **err)
{
	char path[VM_PATH_MAX + 32];
	json_error_t je;
	const char *id = NULL, *image = "", *command = "", *console = "";
	json_int_t pid = 0, created = 0;
	int detached = 0;
	json_t *j;

	snprintf(path, sizeof(path), "%s/meta.json", dir);
	j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return sm_error_set(err, SM_E_IO, 0, "read %s: %s", path, je.text), -1;
	if (json_unpack_ex(j, &je, 0, "{s:s, s:I, s:I, s?s, s?s, s?s, s?b}", "id", &id, "pid", &pid, "created",
			   &created, "image", &image, "command", &command, "console", &console, "detached", &detached) < 0 ||
	    !runtime_id_valid(id) || pid <= 0 || pid > INT32_MAX) {
		json_decref(j);
		return sm_error_set(err, SM_E_IO, 0, "%s is malformed", path), -1;
	}
	memset(m, 0, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->pid = (pid_t)pid;
	m->created = created;
	snprintf(m->image, sizeof(m->image), "%s", image);
	snprintf(m->command, sizeof(m->command), "%s", command);
	snprintf(m->console, sizeof(m->console), "%s", console);
	m->detached = detached;
	json_decref(j);
	return 0;
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

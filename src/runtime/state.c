/*
 * A container's state under --root: ROOT/ID holds state.json (what
 * create settled: the supervisor's pid and start time, the VM, the
 * bundle), the start fifo and the "started" mark. The status is read off
 * the supervisor: alive and not started is created, alive and started is
 * running, gone is stopped, so a crashed runtime or supervisor never
 * leaves a container that claims to run.
 */
#include "runtime/rt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

bool rt_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > 255 || !((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= 'A' && id[0] <= 'Z') ||
				   (id[0] >= '0' && id[0] <= '9')))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-", id[i]))
			return false;
	return true;
}

uint64_t rt_pid_start(pid_t pid)
{
	char path[64], buf[1024], state;
	unsigned long long start = 0;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* the command name may hold spaces and ')': the fields start after the last ')' */
	char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
			 &state, &start) != 2)
		return 0;
	return state == 'Z' || state == 'X' ? 0 : (uint64_t)start;
}

int rt_write_file(const char *path, const char *text, char *why, size_t len)
{
	char tmp[PATH_MAX + 8];
	size_t n = strlen(text);
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return snprintf(why, len, "create %s: %s", tmp, strerror(errno)), -1;
	if (write(fd, text, n) != (ssize_t)n || close(fd) < 0) {
		snprintf(why, len, "write %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	/* runtime state lives in tmpfs (/run) and dies with the host: atomic is enough, durable is moot */
	if (rename(tmp, path) < 0) {
		snprintf(why, len, "rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int rt_state_write(const struct rt_state *st, char *why, size_t len)
{
	char path[PATH_MAX + 32];
	json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s, s:O}", "id", st->id, "bundle", st->bundle, "vm_id",
			      st->vm_id, "pid", (int)st->pid, "pid_start", (json_int_t)st->pid_start, "created",
			      st->created, "annotations", st->annotations ? st->annotations : json_object());
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	int rc;

	json_decref(o);
	if (!text)
		return snprintf(why, len, "state of %s: out of memory", st->id), -1;
	snprintf(path, sizeof(path), "%s/" RT_STATE_FILE, st->dir);
	rc = rt_write_file(path, text, why, len);
	free(text);
	return rc;
}

static int copy_field(const json_t *o, const char *key, char *out, size_t cap)
{
	const char *v = json_string_value(json_object_get(o, key));

	if (!v || strlen(v) >= cap)
		return -1;
	memcpy(out, v, strlen(v) + 1);
	return 0;
}

int rt_state_read(const char *root, const char *id, struct rt_state *st, char *why, size_t len)
{
	char path[PATH_MAX + 300];
	json_error_t je;
	json_t *o;

	memset(st, 0, sizeof(*st));
	if (!rt_id_ok(id))
		return snprintf(why, len, "container ID '%s' is not [A-Za-z0-9][A-Za-z0-9_.+-]* (at most 255 bytes)", id),
		       -1;
	snprintf(st->id, sizeof(st->id), "%s", id);
	if ((size_t)snprintf(st->dir, sizeof(st->dir), "%s/%s", root, id) >= sizeof(st->dir))
		return snprintf(why, len, "--root %s: too long", root), -1;
	if (access(st->dir, F_OK) < 0)
		return snprintf(why, len, "container %s does not exist (in %s)", id, root), -1;
	snprintf(path, sizeof(path), "%s/" RT_STATE_FILE, st->dir);
	o = json_load_file(path, 0, &je);
	if (!o)
		return snprintf(why, len, "container %s: no state (%s: %s): a create was interrupted; delete --force removes it",
				id, path, je.text), -1;
	json_int_t pid = json_integer_value(json_object_get(o, "pid"));
	st->pid = pid > 0 && pid < INT32_MAX ? (pid_t)pid : 0;
	st->pid_start = (uint64_t)json_integer_value(json_object_get(o, "pid_start"));
	st->annotations = json_incref(json_object_get(o, "annotations"));
	int rc = copy_field(o, "bundle", st->bundle, sizeof(st->bundle)) | copy_field(o, "vm_id", st->vm_id, sizeof(st->vm_id)) |
		 copy_field(o, "created", st->created, sizeof(st->created));
	json_decref(o);
	if (rc < 0 || !json_is_object(st->annotations)) {
		rt_state_free(st);
		return snprintf(why, len, "container %s: %s is damaged; delete --force removes it", id, path), -1;
	}
	return 0;
}

void rt_state_free(struct rt_state *st)
{
	json_decref(st->annotations);
	st->annotations = NULL;
}

rt_status rt_state_status(const struct rt_state *st)
{
	char path[PATH_MAX + 32];

	if (!st->pid)
		return RT_CREATING;
	if (rt_pid_start(st->pid) != st->pid_start)
		return RT_STOPPED;
	snprintf(path, sizeof(path), "%s/" RT_STARTED_FILE, st->dir);
	return access(path, F_OK) == 0 ? RT_RUNNING : RT_CREATED;
}

const char *rt_status_name(rt_status s)
{
	static const char *const names[] = { "creating", "created", "running", "stopped" };

	return names[s];
}

char *rt_state_json(const struct rt_state *st)
{
	rt_status s = rt_state_status(st);
	char rootfs[PATH_MAX + 16];
	json_t *o;
	char *text;

	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", st->bundle);
	o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:O}", "ociVersion", RT_OCI_VERSION, "id", st->id, "status",
		      rt_status_name(s), "pid", s == RT_STOPPED ? 0 : (int)st->pid, "bundle", st->bundle, "rootfs", rootfs,
		      "created", st->created, "annotations", st->annotations);
	text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
	json_decref(o);
	return text;
}

int rt_mkdir_parents(const char *path, mode_t mode)
{
	char p[PATH_MAX];

	if ((size_t)snprintf(p, sizeof(p), "%s", path) >= sizeof(p))
		return errno = ENAMETOOLONG, -1;
	for (char *c = p + 1; *c; c++) {
		if (*c != '/')
			continue;
		*c = 0;
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return -1;
		*c = '/';
	}
	return mkdir(p, mode) < 0 && errno != EEXIST ? -1 : 0;
}

int rt_state_remove(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return errno == ENOENT ? 0 : -1;
	/* flat: the runtime makes no subdirectories there */
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	return rmdir(dir);
}

/*
 * Killing an exec's whole process tree.
 *
 * With cgroup v2, each exec gets its own cgroup and cgroup.kill takes
 * everything in it, whatever sessions or process groups it made. Without
 * it, the session process is a child subreaper (PR_SET_CHILD_SUBREAPER):
 * anything the exec started that got orphaned - a daemon that double
 * forked and called setsid - is re-parented to the session, so "every
 * descendant of the session" is exactly the exec's tree, found in /proc.
 */
#include "guest/init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int cgroup_create(const char *root, const char *name, char *path, size_t pathlen)
{
	char procs[PROTO_MAX_PATH + 32];
	int fd;

	if (!root[0])
		return -1;
	if ((size_t)snprintf(path, pathlen, "%s/%s", root, name) >= pathlen)
		return -1;
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		agent_log("cgroup %s: %s; falling back to process-tree kill", path, strerror(errno));
		path[0] = 0;
		return -1;
	}
	snprintf(procs, sizeof(procs), "%s/cgroup.kill", path);
	if (access(procs, W_OK) < 0) {
		/* cgroup.kill came in Linux 5.14; without it the cgroup buys nothing. */
		rmdir(path);
		path[0] = 0;
		return -1;
	}
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", path);
	fd = open(procs, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		rmdir(path);
		path[0] = 0;
	}
	return fd;
}

void cgroup_remove(const char *path)
{
	/* Fails (EBUSY) while processes the exec left running are in it: that is fine. */
	if (path && path[0])
		rmdir(path);
}

struct proc_ent {
	pid_t pid, ppid;
	bool zombie;
};

/* Reads every process's parent from /proc; *n entries, malloc'ed. */
static struct proc_ent *proc_scan(size_t *n)
{
	DIR *d = opendir("/proc");
	struct proc_ent *v = NULL;
	size_t cap = 0;
	struct dirent *e;

	*n = 0;
	if (!d)
		return NULL;
	while ((e = readdir(d))) {
		char path[64], buf[512], *rp;
		struct proc_ent pe;
		long pid = strtol(e->d_name, &rp, 10);
		ssize_t len;
		int fd;

		if (*rp || pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = 0;
		/* "pid (comm) S ppid ...": comm may hold anything, so parse after the last ')'. */
		rp = strrchr(buf, ')');
		if (!rp || sscanf(rp + 1, " %*c %d", &pe.ppid) != 1)
			continue;
		pe.pid = (pid_t)pid;
		pe.zombie = rp[2] == 'Z';
		if (*n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			struct proc_ent *nv = realloc(v, ncap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
			cap = ncap;
		}
		v[(*n)++] = pe;
	}
	closedir(d);
	return v;
}

size_t tree_descendants(pid_t root, pid_t *out, size_t max)
{
	size_t n, found = 0;
	struct proc_ent *v = proc_scan(&n);
	bool *mark, changed = true;

	if (!v)
		return 0;
	mark = calloc(n, sizeof(*mark));
	if (!mark) {
		free(v);
		return 0;
	}
	/* Marks children of root, then children of marked ones, until nothing changes. */
	while (changed) {
		changed = false;
		for (size_t i = 0; i < n; i++) {
			if (mark[i])
				continue;
			for (size_t j = 0; j < n; j++) {
				if (v[i].ppid == root || (mark[j] && v[i].ppid == v[j].pid)) {
					mark[i] = changed = true;
					break;
				}
			}
		}
	}
	for (size_t i = 0; i < n && found < max; i++)
		if (mark[i] && !v[i].zombie)
			out[found++] = v[i].pid;
	free(mark);
	free(v);
	return found;
}

/* SIGKILLs the live descendants of root seen in one scan; returns how many. */
static size_t kill_descendants(pid_t root)
{
	pid_t pids[1024];
	size_t n = tree_descendants(root, pids, sizeof(pids) / sizeof(pids[0])), killed = 0;

	for (size_t i = 0; i < n; i++)
		if (kill(pids[i], SIGKILL) == 0)
			killed++;
	return killed;
}

static bool cgroup_kill(const char *path)
{
	char kill_path[PROTO_MAX_PATH + 32];

	if (!path || !path[0])
		return false;
	snprintf(kill_path, sizeof(kill_path), "%s/cgroup.kill", path);
	return init_write_file(kill_path, "1") == 0;
}

void tree_kill(const char *cgroup_path, pid_t pgid)
{
	struct timespec ms = { 0, 1000000 };

	cgroup_kill(cgroup_path);
	if (pgid > 0)
		kill(-pgid, SIGKILL);
	/*
	 * Repeat until a scan finds nothing alive: a process may fork between
	 * the scan and the kill. Bounded: a killed process cannot fork again.
	 */
	for (int round = 0; round < 1000; round++) {
		if (!kill_descendants(getpid()))
			break;
		nanosleep(&ms, NULL);
	}
}

/*
 * Volumes: a sparse host file formatted ext4 on first use and attached to
 * the VM as a read-write virtio-blk disk that /init mounts. Formatting
 * runs e2fsprogs' mke2fs on the host file (never on a device: the path
 * must be a regular file or not exist), with lazy init so a 1 GiB volume
 * costs a few MiB of writes.
 */
#include "lib/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"

extern char **environ;

int vm_size_parse(const char *s, uint64_t *bytes)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 0: break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: return -1;
	}
	if (*end && end[1] && strcasecmp(end + 1, "B") && strcasecmp(end + 1, "iB"))
		return -1; /* "1G", "1GB", "1GiB": all binary units, as docker's --size */
	if (shift && v > (UINT64_MAX >> shift))
		return -1;
	*bytes = (uint64_t)v << shift;
	return 0;
}

int sm_volume_parse(const char *spec, char *buf, size_t buflen, sm_volume *v, sm_error **err)
{
	char *guest, *size;

	memset(v, 0, sizeof(*v));
	if (snprintf(buf, buflen, "%s", spec) >= (int)buflen)
		return sm_error_set(err, SM_E_INVALID, 0, "volume '%s': too long", spec), -1;
	guest = strchr(buf, ':');
	if (!guest || guest == buf)
		return sm_error_set(err, SM_E_INVALID, 0, "volume '%s': want HOSTFILE:GUESTPATH[:SIZE]", spec), -1;
	*guest++ = 0;
	size = strchr(guest, ':');
	if (size)
		*size++ = 0;
	if (guest[0] != '/')
		return sm_error_set(err, SM_E_INVALID, 0, "volume '%s': guest path '%s' is not absolute", spec,
				    guest), -1;
	if (size && (vm_size_parse(size, &v->size_bytes) < 0 || v->size_bytes < (1u << 20)))
		return sm_error_set(err, SM_E_INVALID, 0, "volume '%s': size '%s' is not a size of at least 1M",
				    spec, size), -1;
	v->host_path = buf;
	v->guest_path = guest;
	return 0;
}

static int volume_mkfs(const char *path, sm_error **err)
{
	const char *argv[] = { "mke2fs", "-q", "-F", "-t", "ext4", "-E", "lazy_itable_init=1,lazy_journal_init=1",
			       "-L", "smvolume", path, NULL };
	const char *const tries[] = { "/sbin/mke2fs", "/usr/sbin/mke2fs", "mke2fs" };
	posix_spawn_file_actions_t fa;
	pid_t pid = -1;
	int st, rc = ENOENT;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]) && rc; i++)
		rc = (strchr(tries[i], '/') ? posix_spawn : posix_spawnp)(&pid, tries[i], &fa, NULL,
									     (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc)
		return sm_error_set(err, SM_E_NOT_FOUND, rc, "format volume %s: cannot run mke2fs (install e2fsprogs)",
				    path), -1;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return sm_error_set(err, SM_E_IO, 0, "format volume %s: mke2fs failed (status %d)", path,
				    WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st)), -1;
	return 0;
}

int vm_volume_prepare(const sm_volume *v, sm_error **err)
{
	uint64_t size = v->size_bytes ? v->size_bytes : SM_VOLUME_DEFAULT_SIZE;
	struct stat st;
	int fd;

	if (stat(v->host_path, &st) == 0) {
		if (!S_ISREG(st.st_mode))
			return sm_error_set(err, SM_E_INVALID, 0, "volume %s is not a regular file", v->host_path), -1;
		return 0; /* made before: keep its data */
	}
	if (errno != ENOENT)
		return sm_error_set(err, SM_E_IO, errno, "volume %s", v->host_path), -1;
	if (v->read_only)
		return sm_error_set(err, SM_E_NOT_FOUND, 0, "read-only volume %s does not exist", v->host_path), -1;
	fd = open(v->host_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return sm_error_set(err, SM_E_IO, errno, "create volume %s", v->host_path), -1;
	/* ftruncate keeps it sparse: the host pays only for blocks the guest writes */
	if (ftruncate(fd, (off_t)size) < 0) {
		sm_error_set(err, SM_E_IO, errno, "size volume %s to %llu bytes", v->host_path,
			     (unsigned long long)size);
		goto fail;
	}
	close(fd);
	fd = -1;
	if (volume_mkfs(v->host_path, err) < 0)
		goto fail;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(v->host_path); /* a half-made volume would be taken as formatted next time */
	return -1;
}

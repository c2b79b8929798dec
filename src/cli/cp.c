/*
 * supermachine cp: copy between the host and a running VM (docker cp).
 * A file goes through the agent's file calls; a directory as a tar
 * stream between the host's tar and the guest's (an exec), so the guest
 * needs a tar (busybox has one).
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli_vm.h"

#define CP_MAX_FILE (1ull << 30) /* a file is held in memory on its way */
#define CP_PATH_MAX 4096

static void cp_usage(FILE *out)
{
	fprintf(out, "usage: supermachine cp [OPTIONS] VM:SRC HOSTDEST\n"
		     "       supermachine cp [OPTIONS] HOSTSRC VM:DEST\n"
		     "\n"
		     "Copy a file or a directory between the host and a running VM (an ID,\n"
		     "a name or an ID prefix). A DEST that is an existing directory receives\n"
		     "SRC under its own name; else SRC is copied to DEST. A guest path is\n"
		     "taken from the guest's / (a relative one too); one whose '..' would\n"
		     "leave it is refused. Directories travel as tar: the guest needs a tar\n"
		     "(busybox's will do) and a shell. Files up to 1 GiB. The VM must be\n"
		     "running.\n"
		     "\n"
		     "options:\n"
		     "  -h, --help  this help\n");
}

/* Runs argv in vm and returns its exit status (-1: could not run). */
static int cp_guest_status(sm_vm *vm, const char *const *argv)
{
	sm_exec *x = sm_exec_new(vm);
	sm_outcome out;
	int status = -1;

	if (x && sm_exec_argv(x, argv) == 0 && sm_exec_output(x, &out, NULL) == 0) {
		status = out.status;
		sm_outcome_free(&out);
	}
	sm_exec_free(x);
	return status;
}

static bool cp_guest_is_dir(sm_vm *vm, const char *path)
{
	/* test is a builtin of the shells images have (busybox's ash too) */
	return cp_guest_status(vm, (const char *[]){ "sh", "-c", "test -d \"$1\"", "sh", path, NULL }) == 0;
}

/* In the guest: a command, else busybox's applet of that name (images often link only a few). */
#define CP_GUEST_RUN "b() { if command -v \"$1\" >/dev/null 2>&1; then \"$@\"; else busybox \"$@\"; fi; }; "

/* dest, or dest/basename(src) when dest is an existing directory. */
static void cp_target(const char *dest, bool dest_is_dir, const char *src, char *out, size_t len)
{
	char copy[CP_PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", src);
	if (dest_is_dir)
		snprintf(out, len, "%s/%s", strcmp(dest, "/") ? dest : "", basename(copy));
	else
		snprintf(out, len, "%s", dest);
}

/* Starts the host's tar with args; *fd is its stdin (extract) or stdout (create). */
static pid_t cp_host_tar(const char *const *args, bool extract, int *fd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(extract ? p[0] : p[1], extract ? STDIN_FILENO : STDOUT_FILENO);
		execvp("tar", (char *const *)args);
		fprintf(stderr, "supermachine: cp: tar: %s\n", strerror(errno));
		_exit(127);
	}
	close(extract ? p[0] : p[1]);
	*fd = extract ? p[1] : p[0];
	return pid;
}

/* Copies from to to until EOF; false on an error. */
static bool cp_pump(int from, int to)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(from, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(to, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EAGAIN) {
				struct pollfd p = { .fd = to, .events = POLLOUT };
				poll(&p, 1, -1);
				continue;
			}
			if (w < 0 && errno != EINTR)
				return false;
			off += w > 0 ? w : 0;
		}
	}
	return true;
}

/* Copies what the guest said on stderr to ours. */
static void cp_drain(int fd)
{
	if (fd >= 0)
		cp_pump(fd, STDERR_FILENO);
}

/* The guest's tar at one end, the host's at the other; to_guest says which way. */
static int cp_tar(sm_vm *vm, const char *const *guest, const char *const *host, bool to_guest)
{
	sm_exec *x = sm_exec_new(vm);
	sm_child *c = NULL;
	sm_error *err = NULL;
	sm_outcome out;
	int hfd = -1, st = 0, rc = -1;
	pid_t tar = -1;

	if (!x || sm_exec_argv(x, guest) < 0 || !(c = sm_exec_spawn(x, &err))) {
		cli_error("cp", err);
		goto out;
	}
	tar = cp_host_tar(host, !to_guest, &hfd);
	if (tar < 0)
		goto out;
	if (to_guest) {
		cp_pump(hfd, sm_child_stdin(c));
		sm_child_close_stdin(c);
		cp_drain(sm_child_stdout(c));
	} else {
		sm_child_close_stdin(c);
		cp_pump(sm_child_stdout(c), hfd);
	}
	close(hfd);
	cp_drain(sm_child_stderr(c));
	waitpid(tar, &st, 0);
	if (sm_child_wait(c, &out, &err) < 0) {
		cli_error("cp", err);
		goto out;
	}
	if (out.status == 127)
		fprintf(stderr, "supermachine: cp: the VM has no tar, which copying a directory needs\n");
	else if (out.status != 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "supermachine: cp: tar failed (guest status %d, host status %d)\n", out.status,
			WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	else
		rc = 0;
	sm_outcome_free(&out);
out:
	sm_child_free(c);
	sm_exec_free(x);
	return rc;
}

static int cp_file_in(sm_vm *vm, const char *src, const struct stat *st, const char *target)
{
	sm_error *err = NULL;
	char *data = NULL;
	size_t len = 0;
	FILE *f = fopen(src, "re");
	int rc = -1;

	if (!f || (uint64_t)st->st_size > CP_MAX_FILE) {
		fprintf(stderr, "supermachine: cp: %s: %s\n", src, f ? "larger than 1 GiB" : strerror(errno));
		goto out;
	}
	data = malloc((size_t)st->st_size + 1);
	len = data ? fread(data, 1, (size_t)st->st_size, f) : 0;
	if (!data || ferror(f)) {
		fprintf(stderr, "supermachine: cp: cannot read %s\n", src);
		goto out;
	}
	if (sm_vm_write_file(vm, target, data, len, st->st_mode & 07777, &err) < 0)
		cli_error("cp", err);
	else
		rc = 0;
out:
	if (f)
		fclose(f);
	free(data);
	return rc;
}

static int cp_to_guest(sm_vm *vm, const char *src, const char *dest)
{
	char target[CP_PATH_MAX + 256];
	struct stat st;

	if (stat(src, &st) < 0) {
		fprintf(stderr, "supermachine: cp: %s: %s\n", src, strerror(errno));
		return -1;
	}
	cp_target(dest, cp_guest_is_dir(vm, dest), src, target, sizeof(target));
	if (!S_ISDIR(st.st_mode))
		return cp_file_in(vm, src, &st, target);
	return cp_tar(vm, (const char *[]){ "sh", "-c", CP_GUEST_RUN "b mkdir -p \"$1\" && b tar -x -f - -C \"$1\"", "sh",
					    target, NULL },
		      (const char *[]){ "tar", "-c", "-f", "-", "-C", src, ".", NULL }, true);
}

static int cp_file_out(const char *target, const void *data, size_t len)
{
	FILE *f = fopen(target, "we");

	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "supermachine: cp: write %s: %s\n", target, strerror(errno));
		return -1;
	}
	return 0;
}

static int cp_from_guest(sm_vm *vm, const char *src, const char *dest)
{
	char target[CP_PATH_MAX + 256];
	struct stat st;
	sm_error *err = NULL;
	void *data = NULL;
	size_t len = 0;
	int rc;

	cp_target(dest, stat(dest, &st) == 0 && S_ISDIR(st.st_mode), src, target, sizeof(target));
	if (!cp_guest_is_dir(vm, src)) {
		if (sm_vm_read_file(vm, src, CP_MAX_FILE, &data, &len, &err) < 0)
			return cli_error("cp", err), -1;
		rc = cp_file_out(target, data, len);
		free(data);
		return rc;
	}
	if (mkdir(target, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "supermachine: cp: mkdir %s: %s\n", target, strerror(errno));
		return -1;
	}
	return cp_tar(vm, (const char *[]){ "sh", "-c", CP_GUEST_RUN "b tar -c -f - -C \"$1\" .", "sh", src, NULL },
		      (const char *[]){ "tar", "-x", "-f", "-", "-C", target, NULL }, false);
}

/* Both operands parsed, exactly one in the VM, its path checked: 0, or the exit status. */
static int cp_operands(const char *a, const char *b, struct cli_cp_spec *src, struct cli_cp_spec *dst, char *guest,
		       size_t len)
{
	const struct cli_cp_spec *in;

	if (cli_cp_parse(a, src) < 0 || cli_cp_parse(b, dst) < 0)
		return CLI_EXIT_FAILED;
	if (!src->vm[0] == !dst->vm[0]) {
		fprintf(stderr, "supermachine: cp: %s\n", src->vm[0] ? "copying between VMs is not supported"
								  : "one of SRC and DEST must be VM:PATH");
		return CLI_EXIT_FAILED;
	}
	in = src->vm[0] ? src : dst;
	if (cli_guest_path(in->path, guest, len) < 0) {
		fprintf(stderr, "supermachine: cp: %s: the path leaves the VM's root filesystem\n", in->path);
		return CLI_EXIT_ERROR;
	}
	return 0;
}

int cmd_cp(int argc, char **argv)
{
	struct cli_cp_spec src, dst;
	char guest[CP_PATH_MAX];
	sm_error *err = NULL;
	sm_vm *vm;
	int rc = 0;

	if (!cli_help_only(argc, argv, "cp", cp_usage, &rc))
		return rc;
	if (argc - optind != 2) {
		fprintf(stderr, "supermachine: cp: want SRC and DEST (see 'supermachine cp --help')\n");
		return CLI_EXIT_FAILED;
	}
	rc = cp_operands(argv[optind], argv[optind + 1], &src, &dst, guest, sizeof(guest));
	if (rc)
		return rc;
	vm = sm_vm_attach(src.vm[0] ? src.vm : dst.vm, &err);
	if (!vm)
		return cli_error("cp", err), CLI_EXIT_ERROR;
	if (!sm_vm_running(vm)) {
		fprintf(stderr, "supermachine: cp: VM %s is not running\n", src.vm[0] ? src.vm : dst.vm);
		rc = CLI_EXIT_ERROR;
	} else {
		rc = (src.vm[0] ? cp_from_guest(vm, guest, dst.path) : cp_to_guest(vm, src.path, guest)) < 0 ? CLI_EXIT_ERROR : 0;
	}
	sm_vm_free(vm);
	return rc;
}

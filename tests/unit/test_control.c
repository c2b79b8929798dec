/*
 * The worker's control socket passing a descriptor with a request line
 * (SCM_RIGHTS, src/vmm/control.c): the command that takes it gets the
 * very file sent, one it does not take is closed after the line, and
 * "snapshot-fd" refuses a missing descriptor or one that is no directory.
 * The worker side is a real control socket on its own event loop thread,
 * over a struct vm without KVM, as tests/fuzz/fuzz_control.c runs it.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/control.h"
#include "vmm/vm.h"
#include "vmm/vm_snapshot.h"

struct ctl_fixture {
	struct vm vm;
	struct control *ctl;
	struct vm_snapshot snap;
	pthread_t loop;
	char dir[64];
	struct sockaddr_un addr;
};

/* "ino": the inode of the request's descriptor, or "none". */
static void cmd_ino(void *opaque, const char *args, char *reply, size_t len)
{
	struct ctl_fixture *f = opaque;
	int fd = control_take_fd(f->ctl);
	struct stat st;

	(void)args;
	if (fd < 0 || fstat(fd, &st) < 0)
		snprintf(reply, len, "ok none");
	else
		snprintf(reply, len, "ok ino=%llu", (unsigned long long)st.st_ino);
	if (fd >= 0)
		close(fd);
}

static void cmd_ignore(void *opaque, const char *args, char *reply, size_t len)
{
	(void)opaque;
	(void)args;
	snprintf(reply, len, "ok");
}

static void cmd_snapshot_fd(void *opaque, const char *args, char *reply, size_t len)
{
	struct ctl_fixture *f = opaque;

	(void)args;
	vm_snapshot_control_save_fd(&f->snap, control_take_fd(f->ctl), reply, len);
}

static void *loop_main(void *arg)
{
	evloop_run(arg);
	return NULL;
}

static void fixture_start(struct ctl_fixture *f)
{
	struct vmm_err err = { { 0 } };

	snprintf(f->dir, sizeof(f->dir), "/tmp/sm-control-XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir));
	f->addr.sun_family = AF_UNIX;
	snprintf(f->addr.sun_path, sizeof(f->addr.sun_path), "%s/control.sock", f->dir);
	f->vm.loop = evloop_new();
	cr_assert_not_null(f->vm.loop);
	pthread_mutex_init(&f->vm.state_lock, NULL);
	pthread_cond_init(&f->vm.state_cond, NULL);
	f->snap.vm = &f->vm;
	f->ctl = control_open(&f->vm, f->addr.sun_path, &err);
	cr_assert_not_null(f->ctl, "%s", err.msg);
	cr_assert_eq(control_register(f->ctl, "ino", cmd_ino, f), 0);
	cr_assert_eq(control_register(f->ctl, "ignore", cmd_ignore, f), 0);
	cr_assert_eq(control_register(f->ctl, "snapshot-fd", cmd_snapshot_fd, f), 0);
	cr_assert_eq(pthread_create(&f->loop, NULL, loop_main, f->vm.loop), 0);
}

static void fixture_stop(struct ctl_fixture *f)
{
	evloop_stop(f->vm.loop);
	pthread_join(f->loop, NULL);
	control_close(f->ctl);
	evloop_free(f->vm.loop);
	rmdir(f->dir);
}

/* One request with fd (none when -1), its reply line without the newline. */
static void request(const struct ctl_fixture *f, const char *line, int fd, char *reply, size_t len)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl = { 0 };
	struct iovec iov = { (void *)line, strlen(line) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t got = 0;
	ssize_t n;

	cr_assert_geq(s, 0);
	cr_assert_eq(connect(s, (const struct sockaddr *)&f->addr, sizeof(f->addr)), 0);
	if (fd >= 0) {
		m.msg_control = ctl.buf;
		m.msg_controllen = sizeof(ctl.buf);
		CMSG_FIRSTHDR(&m)->cmsg_level = SOL_SOCKET;
		CMSG_FIRSTHDR(&m)->cmsg_type = SCM_RIGHTS;
		CMSG_FIRSTHDR(&m)->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m)), &fd, sizeof(fd));
	}
	cr_assert_eq(sendmsg(s, &m, 0), (ssize_t)strlen(line));
	while (got + 1 < len && (n = read(s, reply + got, len - 1 - got)) > 0) {
		got += (size_t)n;
		if (memchr(reply, '\n', got))
			break;
	}
	reply[got] = 0;
	reply[strcspn(reply, "\n")] = 0;
	close(s);
}

/* How many of the process's descriptors are open on path. */
static int fds_on(const char *path)
{
	DIR *d = opendir("/proc/self/fd");
	char link[300], target[256];
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		ssize_t len = readlink(link, target, sizeof(target) - 1);
		if (len < 0)
			continue;
		target[len] = 0;
		n += strcmp(target, path) == 0;
	}
	closedir(d);
	return n;
}

/* fds_on() once the worker side had time to close its copies: want, or what stayed. */
static int fds_on_settled(const char *path, int want)
{
	int n = fds_on(path);

	for (int i = 0; i < 200 && n != want; i++) {
		usleep(10 * 1000);
		n = fds_on(path);
	}
	return n;
}

Test(control, passed_descriptor_reaches_the_command)
{
	struct ctl_fixture f = { 0 };
	char reply[256], want[64];
	struct stat st;

	fixture_start(&f);
	int fd = open(f.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	snprintf(want, sizeof(want), "ok ino=%llu", (unsigned long long)st.st_ino);
	request(&f, "ino\n", fd, reply, sizeof(reply));
	cr_expect_str_eq(reply, want);
	request(&f, "ino\n", -1, reply, sizeof(reply));
	cr_expect_str_eq(reply, "ok none", "a later line without one gets none");
	close(fd);
	fixture_stop(&f);
}

Test(control, descriptor_not_taken_is_closed)
{
	struct ctl_fixture f = { 0 };
	char reply[256];

	fixture_start(&f);
	int fd = open(f.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	request(&f, "ignore\n", fd, reply, sizeof(reply));
	cr_expect_str_eq(reply, "ok");
	request(&f, "ino\n", -1, reply, sizeof(reply));
	cr_expect_str_eq(reply, "ok none", "the ignored line's descriptor is not left for the next");
	cr_expect_eq(fds_on_settled(f.dir, 1), 1, "the worker side holds no copy of the ignored descriptor");
	close(fd);
	fixture_stop(&f);
}

Test(control, snapshot_fd_refuses_what_is_no_directory)
{
	struct ctl_fixture f = { 0 };
	char reply[256], path[128];

	fixture_start(&f);
	request(&f, "snapshot-fd\n", -1, reply, sizeof(reply));
	cr_expect(strstr(reply, "error usage: snapshot-fd") == reply, "%s", reply);
	snprintf(path, sizeof(path), "%s/file", f.dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	request(&f, "snapshot-fd\n", fd, reply, sizeof(reply));
	cr_expect_str_eq(reply, "error snapshot-fd: the descriptor is not a directory");
	cr_expect_eq(fds_on_settled(path, 1), 1, "the refused descriptor is closed");
	close(fd);
	unlink(path);
	fixture_stop(&f);
}

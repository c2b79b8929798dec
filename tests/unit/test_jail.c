/*
 * The worker's jail (src/vmm/jail.c), applied as the worker applies it:
 * in the namespaces the contract names (worker_jail_clone_flags()), in a
 * forked child that is PID 1 of its own PID namespace. The child then
 * acts as a compromised worker would and reports what it could reach;
 * the parent reads its /proc/PID/status as any host tool would. Needs
 * root (the jail is root's); skipped otherwise.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/worker.h"
#include "vmm/jail.h"

#define TEST_UID 0x5e00abcdu
#define TEST_FSIZE (3ull << 30)

/* What the jailed child found, written to the parent's pipe. */
struct probe {
	char error[512];  /* jail_apply's message; empty when it worked */
	pid_t pid;
	uid_t uid, euid;
	gid_t gid;
	int shadow_errno;   /* open("/etc/shadow") */
	int net_errno;      /* connect to a public address */
	int ptrace_errno;   /* PTRACE_ATTACH to the parent's host pid */
	int kill_errno;     /* kill(parent's host pid, 0) */
	int rootwrite_errno; /* creating a file in "/" */
	int bindwrite_errno; /* creating a file in the bound directory; 0: done */
	int nmounts;         /* lines of /proc/self/mountinfo */
	char mounts[3][128]; /* their mount points */
	unsigned long long fsize, nofile;
};

static char base[] = "/tmp/sm-jail-XXXXXX";
static char root[64], bound[64];

static int errno_of(int rc) { return rc < 0 ? errno : 0; }

static int net_probe(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(53), .sin_addr.s_addr = htonl(0x01010101) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), rc;

	if (fd < 0)
		return errno;
	rc = errno_of(connect(fd, (struct sockaddr *)&a, sizeof(a)));
	close(fd);
	return rc;
}

static void mounts_probe(struct probe *p)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[1024], point[128];

	while (f && fgets(line, sizeof(line), f)) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
		if (sscanf(line, "%*s %*s %*s %*s %127s", point) == 1 && p->nmounts < 3)
			snprintf(p->mounts[p->nmounts], sizeof(p->mounts[0]), "%s", point);
		p->nmounts++;
	}
	if (f)
		fclose(f);
}

static void probe(struct probe *p, pid_t host_parent)
{
	struct rlimit r;
	char path[128];
	int fd;

	p->pid = getpid();
	p->uid = getuid();
	p->euid = geteuid();
	p->gid = getgid();
	p->shadow_errno = errno_of(open("/etc/shadow", O_RDONLY));
	p->net_errno = net_probe();
	p->ptrace_errno = errno_of((int)ptrace(PTRACE_ATTACH, host_parent, NULL, NULL));
	p->kill_errno = errno_of(kill(host_parent, 0));
	p->rootwrite_errno = errno_of(open("/owned", O_WRONLY | O_CREAT, 0600));
	snprintf(path, sizeof(path), "%s/written", bound);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	p->bindwrite_errno = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	mounts_probe(p);
	getrlimit(RLIMIT_FSIZE, &r);
	p->fsize = r.rlim_cur;
	getrlimit(RLIMIT_NOFILE, &r);
	p->nofile = r.rlim_cur;
}

static void child(int out, int go, pid_t host_parent)
{
	struct jail_options o = { .root = root, .drop_ids = true, .uid = TEST_UID, .gid = TEST_UID, .fsize = TEST_FSIZE };
	struct probe p = { .nmounts = 0 };
	struct vmm_err e = { { 0 } };
	char c;

	o.binds[o.nbinds++] = (struct jail_bind){ .path = bound };
	/* the worker's mount namespace is its own: the parent's root stays */
	if (unshare(CLONE_NEWNS) < 0)
		snprintf(p.error, sizeof(p.error), "unshare: %s", strerror(errno));
	else if (jail_apply(&o, &e) < 0)
		snprintf(p.error, sizeof(p.error), "%s", e.msg);
	else
		probe(&p, host_parent);
	if (write(out, &p, sizeof(p)) != sizeof(p))
		_exit(1);
	(void)!read(go, &c, 1); /* the parent reads our status meanwhile */
	_exit(0);
}

/* The Uid: line of pid's status, as the host sees it. */
static unsigned long status_uid(pid_t pid)
{
	char path[64], line[256];
	unsigned long uid = ~0ul;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %lu", &uid) == 1)
			break;
	if (f)
		fclose(f);
	return uid;
}

static void setup(void)
{
	cr_assert_not_null(mkdtemp(base));
	snprintf(root, sizeof(root), "%s/root", base);
	snprintf(bound, sizeof(bound), "%s/snapshots", base);
	cr_assert_eq(mkdir(root, 0700), 0);
	cr_assert_eq(mkdir(bound, 0700), 0);
	cr_assert_eq(chown(bound, TEST_UID, TEST_UID), 0);
}

static void teardown(void)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/written", bound);
	unlink(path);
	rmdir(bound);
	rmdir(root);
	rmdir(base);
}

/*
 * The worker's launcher: in the contract's namespaces, its child is PID 1.
 * A process of its own, ended by _exit: the sanitizer's exit-time leak
 * check cannot trace threads from inside a PID namespace it made.
 */
static _Noreturn void launcher(int out, int go, int pidpipe, pid_t host_parent)
{
	struct worker_launch l = { .jail.root = root };
	pid_t pid;
	int status;

	if (unshare((int)worker_jail_clone_flags(&l)) < 0)
		_exit(77);
	pid = fork();
	if (pid == 0)
		child(out, go, host_parent);
	if (pid < 0 || write(pidpipe, &pid, sizeof(pid)) != sizeof(pid) || waitpid(pid, &status, 0) != pid)
		_exit(1);
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 2);
}

Test(jail, a_compromised_worker_reaches_nothing_of_the_host, .init = setup, .fini = teardown)
{
	int out[2], go[2], pidpipe[2];
	struct probe p;
	pid_t host_parent = getpid(), mid, pid = -1;
	int status;

	if (geteuid() != 0)
		cr_skip_test("the jail is root's");
	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(pidpipe), 0);
	fflush(NULL);
	mid = fork();
	cr_assert_geq(mid, 0);
	if (mid == 0)
		launcher(out[1], go[0], pidpipe[1], host_parent);
	close(out[1]);
	close(pidpipe[1]);
	if (read(pidpipe[0], &pid, sizeof(pid)) != (ssize_t)sizeof(pid)) {
		cr_assert_eq(waitpid(mid, &status, 0), mid);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
			cr_skip_test("no namespaces here");
		cr_assert_fail("the launcher failed: status %d", status);
	}
	cr_assert_eq(read(out[0], &p, sizeof(p)), (ssize_t)sizeof(p));
	cr_expect_eq(status_uid(pid), TEST_UID, "the host sees the worker as its jail uid");
	cr_assert_eq(write(go[1], "x", 1), 1);
	cr_assert_eq(waitpid(mid, &status, 0), mid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_assert_str_empty(p.error);
	cr_expect_eq(p.pid, 1, "PID 1 of its own PID namespace");
	cr_expect(p.uid == TEST_UID && p.euid == TEST_UID && p.gid == TEST_UID);
	cr_expect_eq(p.shadow_errno, ENOENT, "/etc/shadow is not in the jail");
	cr_expect_neq(p.net_errno, 0, "no network in an empty network namespace");
	cr_expect_eq(p.ptrace_errno, ESRCH, "the host's processes are not in its PID namespace");
	cr_expect_eq(p.kill_errno, ESRCH);
	cr_expect_eq(p.rootwrite_errno, EROFS, "the jail's root is read-only");
	cr_expect_eq(p.bindwrite_errno, 0, "the bound directory is writable");
	cr_expect_eq(p.nmounts, 3, "the root, the bound directory and /proc: %d mounts", p.nmounts);
	cr_expect_str_eq(p.mounts[0], "/");
	cr_expect_str_eq(p.mounts[1], bound);
	cr_expect_str_eq(p.mounts[2], "/proc");
	cr_expect_eq(p.fsize, TEST_FSIZE);
	cr_expect_eq(p.nofile, JAIL_NOFILE);
}

Test(jail, reports_a_missing_root, .init = setup, .fini = teardown)
{
	struct worker_launch l = { .jail.root = root };
	struct jail_options o = { .root = "/nonexistent/sm-jail", .fsize = TEST_FSIZE };
	struct vmm_err e = { { 0 } };
	int msg[2], status;
	char got[sizeof(e.msg)] = "";
	pid_t pid;

	if (geteuid() != 0)
		cr_skip_test("the jail is root's");
	cr_assert_eq(pipe(msg), 0);
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (unshare((int)(worker_jail_clone_flags(&l) & ~(unsigned long)CLONE_NEWPID)) < 0)
			_exit(77);
		_exit(jail_apply(&o, &e) < 0 && write(msg[1], e.msg, sizeof(e.msg)) == sizeof(e.msg) ? 0 : 1);
	}
	close(msg[1]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		cr_skip_test("no namespaces here");
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "jail_apply did not fail");
	cr_assert_eq(read(msg[0], got, sizeof(got)), (ssize_t)sizeof(got));
	cr_expect(strstr(got, "tmpfs on /nonexistent/sm-jail"), "%s", got);
}

/*
 * Worker-level snapshots (issue 6, the VMM half): a guest that counts on
 * every CPU is captured through the control socket while it runs, keeps
 * running, and is restored many times; each clone continues from the
 * captured counts, not from zero. A clone can be captured again, a
 * restored worker can be reset in place (repeatedly), vsock listeners
 * survive while connections are reset, a disk block written before the
 * capture is read back by the clone through virtio-blk, and broken
 * snapshots are refused with exit status 2 before any guest output.
 *
 * The guest is tests/vm/guest/snap_guest.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "base/snapshot.h"
#include "guest/devguest.h"
#include "worker_proc.h"

#define BOOT_WAIT 600000 /* ms; hang guards only: nested KVM under TCG is slow */
#define LINE_WAIT 180000
#define IO_WAIT 60000
#define MAX_CPUS 4
#define MEM_MIB "128"
#define DISK_BYTES (1 << 20)
#define BLK_BYTES 4096

#define must(cond, w, ...)                        \
	do {                                      \
		if (!(cond)) {                    \
			wproc_dump(w);            \
			cr_assert_fail(__VA_ARGS__); \
		}                                 \
	} while (0)

/* What a console shows from some offset on. */
struct scan {
	long first[MAX_CPUS], last[MAX_CPUS]; /* n of the first/last count line per CPU; -1 none */
	unsigned long long blk;               /* last blk= hash seen, 0 none */
	int vsock_closed;                     /* "SMTEST vsock closed" lines */
	long end;                             /* offset after the last complete line */
};

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void scan_line(struct scan *s, const char *line)
{
	int cpu;
	long n;
	unsigned long long h;
	const char *b;

	/* A line cut by a capture or reset may run into the next one: the
	 * last SMTEST in it is the whole one. */
	for (const char *p = line; (p = strstr(p, "SMTEST ")); p++)
		line = p;
	if (strncmp(line, "SMTEST vsock closed", 19) == 0)
		s->vsock_closed++;
	if (sscanf(line, "SMTEST count cpu=%d n=%ld", &cpu, &n) != 2 || cpu < 0 || cpu >= MAX_CPUS)
		return;
	if (s->first[cpu] < 0)
		s->first[cpu] = n;
	s->last[cpu] = n;
	if ((b = strstr(line, " blk=")) && sscanf(b, " blk=%llx", &h) == 1)
		s->blk = h;
}

static void scan(const char *path, long from, struct scan *s)
{
	char line[512];
	FILE *f = fopen(path, "r");

	memset(s, 0, sizeof(*s));
	for (int i = 0; i < MAX_CPUS; i++)
		s->first[i] = s->last[i] = -1;
	s->end = from;
	if (!f)
		return;
	fseek(f, from, SEEK_SET);
	while (fgets(line, sizeof(line), f) && strchr(line, '\n')) {
		scan_line(s, line);
		s->end = ftell(f);
	}
	fclose(f);
}

static long file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Waits until every CPU printed a count line at or after `from` with n >= min_n. */
static void wait_counts(struct wproc *w, long from, int ncpu, long min_n, struct scan *s)
{
	long deadline = now_ms() + LINE_WAIT;

	for (;;) {
		int ok = 0;
		scan(w->console, from, s);
		for (int i = 0; i < ncpu; i++)
			ok += s->last[i] >= min_n;
		if (ok == ncpu)
			return;
		must(now_ms() < deadline && wproc_wait(w, 0) < 0, w,
		     "counts from every CPU (n >= %ld) never arrived (worker status %d)", min_n,
		     w->status);
		usleep(50 * 1000);
	}
}

static void control_ok(struct wproc *w, const char *req, char *reply, size_t len)
{
	must(wproc_control(w, req, reply, len), w, "no reply to '%s'", req);
	must(strncmp(reply, "ok", 2) == 0, w, "'%s': %s", req, reply);
}

/* ---- host side of vsock and the disk ------------------------------------------ */

static bool readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, timeout_ms) == 1;
}

/* CONNECT to the guest's echo port 1024 and echo one message; the open fd, or -1. */
static int vsock_echo(struct wproc *w)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char buf[64];
	size_t n = 0;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", w->vsock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || write(fd, "CONNECT 1024\n", 13) != 13)
		goto fail;
	while (n < sizeof(buf) - 1) {
		if (!readable(fd, IO_WAIT) || read(fd, buf + n, 1) != 1)
			goto fail;
		if (buf[n++] == '\n')
			break;
	}
	if (strncmp(buf, "OK ", 3) != 0 || write(fd, "hello", 5) != 5)
		goto fail;
	for (n = 0; n < 5;) {
		ssize_t r = readable(fd, IO_WAIT) ? read(fd, buf + n, 5 - n) : -1;
		if (r <= 0)
			goto fail;
		n += (size_t)r;
	}
	if (memcmp(buf, "hello", 5) == 0)
		return fd;
fail:
	close(fd);
	return -1;
}

/* Did the host end of this connection get closed (EOF or reset) within IO_WAIT? */
static bool vsock_closed(int fd)
{
	char c;

	return readable(fd, IO_WAIT) && read(fd, &c, 1) <= 0;
}

static unsigned long long expected_blk_hash(void)
{
	unsigned char b[BLK_BYTES];

	for (unsigned i = 0; i < BLK_BYTES; i++)
		b[i] = (unsigned char)(i * 7 + 3);
	return fnv1a(FNV_INIT, b, BLK_BYTES);
}

static void disk_create(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
}

static unsigned long long disk_hash(const char *path)
{
	unsigned char b[BLK_BYTES];
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, b, BLK_BYTES, 0), BLK_BYTES);
	close(fd);
	return fnv1a(FNV_INIT, b, BLK_BYTES);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* ---- the original: boot, count, capture ------------------------------------------ */

struct capture {
	struct wproc orig;
	int ncpu;
	char dir[128];       /* the snapshot */
	char disk[160];      /* the original's disk ("" without one) */
	long before[MAX_CPUS]; /* last count printed before the capture */
	long after[MAX_CPUS];  /* first count printed after it */
	int held;            /* vsock connection open across the capture */
	bool net;            /* --net */
};

static void boot_with(struct capture *c, int ncpu, bool with_disk, const char *cmdline, bool net)
{
	char vcpus[8], line[256];
	const char *extra[12];
	unsigned n = 0;

	signal(SIGPIPE, SIG_IGN);
	memset(c, 0, sizeof(*c));
	c->ncpu = ncpu;
	c->held = -1;
	snprintf(vcpus, sizeof(vcpus), "%d", ncpu);
	snprintf(c->dir, sizeof(c->dir), "/tmp/sm-snap-XXXXXX");
	cr_assert_not_null(mkdtemp(c->dir));
	extra[n++] = "--vcpus", extra[n++] = vcpus;
	extra[n++] = "--vsock";
	c->net = net;
	if (net)
		extra[n++] = "--net";
	if (with_disk) {
		snprintf(c->disk, sizeof(c->disk), "%s.disk", c->dir);
		disk_create(c->disk);
		extra[n++] = "--disk", extra[n++] = c->disk;
	}
	extra[n] = NULL;
	if (!wproc_start(&c->orig, SM_SNAP_GUEST_INITRAMFS, cmdline, atoi(MEM_MIB), extra))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
	must(wproc_wait_line(&c->orig, "SMTEST snap ready", line, sizeof(line), BOOT_WAIT), &c->orig,
	     "the guest never got ready");
}

static void boot(struct capture *c, int ncpu, bool with_disk)
{
	boot_with(c, ncpu, with_disk, "quiet", false);
}

/* Lets the counts pass 3 on every CPU, captures into c->dir, checks the original goes on. */
static void capture(struct capture *c)
{
	struct scan s;
	char req[200], reply[512];

	wait_counts(&c->orig, 0, c->ncpu, 3, &s);
	c->held = vsock_echo(&c->orig);
	must(c->held >= 0, &c->orig, "vsock echo through the original failed");
	scan(c->orig.console, 0, &s);
	memcpy(c->before, s.last, sizeof(c->before));
	snprintf(req, sizeof(req), "snapshot %s", c->dir);
	control_ok(&c->orig, req, reply, sizeof(reply));
	cr_log_info("capture: %s", reply);
	long mark = file_size(c->orig.console);
	/* The original keeps running after its capture. */
	wait_counts(&c->orig, mark, c->ncpu, 1, &s);
	memcpy(c->after, s.first, sizeof(c->after));
	for (int i = 0; i < c->ncpu; i++)
		cr_assert_gt(c->after[i], c->before[i], "cpu %d: original at %ld after capture, %ld before",
			     i, c->after[i], c->before[i]);
	/* Its own connection survives its capture. */
	must(write(c->held, "x", 1) == 1 && readable(c->held, IO_WAIT), &c->orig,
	     "the original's vsock connection died at its capture");
	char x;
	cr_assert_eq(read(c->held, &x, 1), 1);
}

static void capture_free(struct capture *c)
{
	if (c->held >= 0)
		close(c->held);
	wproc_stop(&c->orig);
	if (c->dir[0])
		sh("rm -rf %s", c->dir);
	if (c->disk[0])
		unlink(c->disk);
}

/* ---- clones ------------------------------------------------------------------------- */

/* Restores c's snapshot (disk: a copy of the original's image); waits for every CPU. */
static void clone_start(struct capture *c, const char *dir, struct wproc *w, char *disk, size_t len,
			struct scan *s)
{
	const char *extra[8];
	unsigned n = 0;

	extra[n++] = "--vsock";
	if (c->net)
		extra[n++] = "--net";
	disk[0] = 0;
	if (c->disk[0]) {
		/* The original holds its disk writable (exclusive lock): each clone
		 * gets its own copy, as a pool does for writable volumes. */
		snprintf(disk, len, "%s.clone-%d", c->disk, rand());
		sh("cp --sparse=always %s %s", c->disk, disk);
		extra[n++] = "--disk", extra[n++] = disk;
	}
	extra[n] = NULL;
	cr_assert(wproc_restore(w, dir, extra));
	wait_counts(w, 0, c->ncpu, 1, s);
}

static void clone_stop(struct wproc *w, char *disk)
{
	wproc_stop(w);
	if (disk[0])
		unlink(disk);
}

/* A clone continues from the captured counts: after what was printed before
 * the capture, no later than what the original printed next (+1: a line cut
 * by the capture only completes in the original). */
static void clone_check_counts(struct wproc *w, const long before[], const long after[], int ncpu,
			       const struct scan *s)
{
	for (int i = 0; i < ncpu; i++)
		must(s->first[i] > before[i] && s->first[i] <= after[i] + 1, w,
		     "cpu %d: clone starts at n=%ld; the capture was between %ld and %ld", i,
		     s->first[i], before[i], after[i]);
}

static void clone_check(struct capture *c, bool vsock)
{
	struct wproc w;
	struct scan s;
	char disk[256];

	clone_start(c, c->dir, &w, disk, sizeof(disk), &s);
	clone_check_counts(&w, c->before, c->after, c->ncpu, &s);
	if (c->disk[0]) {
		/* cpu 0's next line carries the hash it read through virtio-blk */
		wait_counts(&w, 0, 1, s.first[0] + 1, &s);
		must(s.blk == expected_blk_hash(), &w, "clone read blk=%llx, expected %llx", s.blk,
		     expected_blk_hash());
	}
	if (vsock) {
		/* The guest's end of the connection held across the capture is
		 * gone (transport reset); its listener is still there. */
		long deadline = now_ms() + LINE_WAIT;
		do {
			scan(w.console, 0, &s);
			if (s.vsock_closed)
				break;
			usleep(50 * 1000);
		} while (now_ms() < deadline);
		must(s.vsock_closed >= 1, &w, "the guest never saw its captured connection reset");
		int fd = vsock_echo(&w);
		must(fd >= 0, &w, "vsock echo through the clone failed");
		close(fd);
	}
	clone_stop(&w, disk);
}

static void clones(int ncpu, int n)
{
	struct capture c;
	char reply[256];

	boot(&c, ncpu, true);
	must(disk_hash(c.disk) == expected_blk_hash(), &c.orig, "the guest's block is not on the disk");
	capture(&c);
	/* Only a restored worker resets in place. */
	cr_assert(wproc_control(&c.orig, "reset", reply, sizeof(reply)));
	cr_assert_str_eq(reply, "error not restored");
	for (int i = 0; i < n; i++)
		clone_check(&c, i == 0);
	capture_free(&c);
}

TestSuite(vm_snapshot, .timeout = 1800);

Test(vm_snapshot, ten_clones_1_vcpu)
{
	clones(1, 10);
}

Test(vm_snapshot, clones_2_vcpus)
{
	clones(2, 3);
}

Test(vm_snapshot, clones_4_vcpus)
{
	clones(4, 3);
}

/* A restored VM captured again restores again, from the second capture. */
Test(vm_snapshot, snapshot_of_a_restored_vm)
{
	struct capture c, c2;
	struct scan s;
	struct wproc w;
	char disk[256], req[200], reply[512];

	boot(&c, 1, false);
	capture(&c);
	clone_start(&c, c.dir, &w, disk, sizeof(disk), &s);
	clone_check_counts(&w, c.before, c.after, 1, &s);
	wait_counts(&w, 0, 1, s.first[0] + 3, &s);

	memset(&c2, 0, sizeof(c2));
	c2.ncpu = 1;
	c2.held = -1;
	snprintf(c2.dir, sizeof(c2.dir), "/tmp/sm-snap2-XXXXXX");
	cr_assert_not_null(mkdtemp(c2.dir));
	scan(w.console, 0, &s);
	c2.before[0] = s.last[0];
	snprintf(req, sizeof(req), "snapshot %s", c2.dir);
	control_ok(&w, req, reply, sizeof(reply));
	long mark = file_size(w.console);
	wait_counts(&w, mark, 1, 1, &s);
	c2.after[0] = s.first[0];
	cr_assert_gt(c2.after[0], c2.before[0]);

	struct wproc w2;
	char disk2[256];
	clone_start(&c2, c2.dir, &w2, disk2, sizeof(disk2), &s);
	clone_check_counts(&w2, c2.before, c2.after, 1, &s);
	cr_assert_gt(s.first[0], c.after[0], "the second clone restarted from the first capture");
	clone_stop(&w2, disk2);
	clone_stop(&w, disk);
	sh("rm -rf %s", c2.dir);
	capture_free(&c);
}

/* reset brings a restored VM back to the captured counts, again and again. */
Test(vm_snapshot, reset_in_place)
{
	struct capture c;
	struct scan s;
	struct wproc w;
	char disk[256], reply[256];

	boot(&c, 2, false);
	capture(&c);
	clone_start(&c, c.dir, &w, disk, sizeof(disk), &s);
	clone_check_counts(&w, c.before, c.after, 2, &s);
	for (int round = 0; round < 3; round++) {
		long from = file_size(w.console);
		wait_counts(&w, from, 2, c.after[0] + 4, &s);
		int fd = vsock_echo(&w);
		must(fd >= 0, &w, "round %d: vsock echo before the reset failed", round);
		control_ok(&w, "reset", reply, sizeof(reply));
		cr_log_info("reset: %s", reply);
		long mark = file_size(w.console);
		/* The host end of a connection made before the reset is closed. */
		must(vsock_closed(fd), &w, "round %d: connection survived the reset", round);
		close(fd);
		wait_counts(&w, mark, 2, 1, &s);
		clone_check_counts(&w, c.before, c.after, 2, &s);
		fd = vsock_echo(&w);
		must(fd >= 0, &w, "round %d: vsock echo after the reset failed", round);
		close(fd);
	}
	clone_stop(&w, disk);
	capture_free(&c);
}

/*
 * slirp's connections are not captured, but a clone's network works for new
 * ones: nobody listens on the port before the capture (the guest's probes
 * are refused), the original is stopped, then the host listens and the
 * clone's guest connects through its own fresh slirp.
 */
Test(vm_snapshot, network_works_for_new_connections_after_restore)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t salen = sizeof(sa);
	struct capture c;
	struct wproc w;
	struct scan s;
	char cmdline[64], disk[256], line[256];
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	/* Bound now, listening only after the capture: until then connects are refused. */
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
	snprintf(cmdline, sizeof(cmdline), "quiet smsnap=net:%u", ntohs(sa.sin_port));
	boot_with(&c, 1, false, cmdline, true);
	capture(&c);
	close(c.held);
	c.held = -1;
	wproc_stop(&c.orig);
	cr_assert_eq(listen(lfd, 4), 0);
	clone_start(&c, c.dir, &w, disk, sizeof(disk), &s);
	clone_check_counts(&w, c.before, c.after, 1, &s);
	must(readable(lfd, LINE_WAIT), &w, "the clone never connected to the host");
	int fd = accept(lfd, NULL, NULL);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "hello-clone\n", 12), 12);
	close(fd);
	must(wproc_wait_line(&w, "SMTEST net got=hello-clone", line, sizeof(line), LINE_WAIT), &w,
	     "the clone's guest never got the host's answer");
	clone_stop(&w, disk);
	close(lfd);
	capture_free(&c);
}

/* ---- broken snapshots ---------------------------------------------------------------- */

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Reads dir/state, lets edit() change it, writes it back. */
static void state_edit(const char *dir, void (*edit)(unsigned char *b, size_t len))
{
	char path[512];
	static unsigned char b[1 << 20];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/state", dir);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	n = pread(fd, b, sizeof(b), 0);
	cr_assert_gt(n, 64);
	edit(b, (size_t)n);
	cr_assert_eq(pwrite(fd, b, (size_t)n, 0), n);
	close(fd);
}

static void flip_middle(unsigned char *b, size_t len)
{
	b[len / 2] ^= 0x40;
}

static void version_2(unsigned char *b, size_t len)
{
	put_le32(b + 8, 2);
	put_le32(b + 28, snap_crc32(b, 28));
}

/* Changes the snapshot id in dir/memory's header and fixes the header CRC. */
static void memory_other_id(const char *dir)
{
	char path[512];
	unsigned char h[48];
	int fd;

	snprintf(path, sizeof(path), "%s/memory", dir);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	h[24] ^= 0xff;
	put_le32(h + 44, snap_crc32(h, 44));
	cr_assert_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
}

/* Expects exit status 2, want in the worker's log, and no guest output. */
static void expect_refused(const char *dir, const char *const *extra, const char *want)
{
	struct wproc w;
	char log[4096] = { 0 };

	cr_assert(wproc_restore(&w, dir, extra));
	int status = wproc_wait(&w, IO_WAIT);
	FILE *f = fopen(w.log, "r");
	if (f) {
		size_t n = fread(log, 1, sizeof(log) - 1, f);
		log[n] = 0;
		fclose(f);
	}
	cr_assert_eq(status, 2, "exit status %d (want 2); log: %s", status, log);
	cr_assert_not_null(strstr(log, want), "log lacks '%s': %s", want, log);
	cr_assert_eq(strchr(log, '\n'), strrchr(log, '\n'), "more than one line: %s", log);
	cr_assert_eq(file_size(w.console), 0, "the guest printed something");
	wproc_stop(&w);
}

/* A copy of the snapshot to break; memory linked unless copy_memory. */
static void snap_copy(const char *src, char *dst, size_t len, bool copy_memory)
{
	snprintf(dst, len, "%s.bad-XXXXXX", src);
	cr_assert_not_null(mkdtemp(dst));
	sh("cp %s/state %s/state", src, dst);
	if (copy_memory)
		sh("cp --sparse=always %s/memory %s/memory", src, dst);
	else
		sh("ln -s %s/memory %s/memory", src, dst);
}

Test(vm_snapshot, broken_snapshots_are_refused)
{
	static const char *const vsock[] = { "--vsock", NULL };
	struct capture c;
	char bad[256], want[300], disk[200];

	boot(&c, 1, false);
	capture(&c);

	snap_copy(c.dir, bad, sizeof(bad), true);
	sh("truncate -s -4096 %s/memory", bad);
	snprintf(want, sizeof(want), "%s/memory: truncated", bad);
	expect_refused(bad, vsock, want);
	sh("rm -rf %s", bad);

	snap_copy(c.dir, bad, sizeof(bad), true);
	sh("truncate -s +4096 %s/memory", bad);
	snprintf(want, sizeof(want), "%s/memory: trailing data", bad);
	expect_refused(bad, vsock, want);
	sh("rm -rf %s", bad);

	/* A memory file of another snapshot (its id differs, its CRC is right). */
	snap_copy(c.dir, bad, sizeof(bad), true);
	memory_other_id(bad);
	snprintf(want, sizeof(want), "%s/memory: belongs to another snapshot", bad);
	expect_refused(bad, vsock, want);
	sh("rm -rf %s", bad);

	snap_copy(c.dir, bad, sizeof(bad), false);
	state_edit(bad, flip_middle);
	snprintf(want, sizeof(want), "%s/state: ", bad);
	expect_refused(bad, vsock, want);
	expect_refused(bad, vsock, "checksum mismatch");
	sh("rm -rf %s", bad);

	snap_copy(c.dir, bad, sizeof(bad), false);
	state_edit(bad, version_2);
	snprintf(want, sizeof(want), "%s/state: format version 2", bad);
	expect_refused(bad, vsock, want);
	sh("rm -rf %s", bad);

	/* The devices given must be the captured ones. */
	snprintf(disk, sizeof(disk), "%s.extra-disk", c.dir);
	disk_create(disk);
	const char *extra_disk[] = { "--vsock", "--disk", disk, NULL };
	expect_refused(c.dir, extra_disk, "the snapshot's devices are [rng,vsock]; the command line "
					  "gives [rng,blk,vsock]");
	unlink(disk);
	const char *no_vsock[] = { NULL };
	expect_refused(c.dir, no_vsock, "the command line gives [rng]");

	const char *memory[] = { "--vsock", "--memory", "256", NULL };
	expect_refused(c.dir, memory, "--memory cannot be combined with --restore");
	const char *vcpus[] = { "--vsock", "--vcpus", "2", NULL };
	expect_refused(c.dir, vcpus, "--vcpus cannot be combined with --restore");
	expect_refused("/nonexistent-snapshot", vsock, "/nonexistent-snapshot/state: No such file");

	/* The unbroken snapshot still restores. */
	struct wproc w;
	struct scan s;
	clone_start(&c, c.dir, &w, disk, sizeof(disk), &s);
	clone_check_counts(&w, c.before, c.after, 1, &s);
	clone_stop(&w, disk);
	capture_free(&c);
}

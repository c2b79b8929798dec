/*
 * PID 1 for the snapshot vm tests (tests/vm/test_snapshot_vmm.c). One
 * counter process per CPU, pinned to it, each printing
 *
 *   SMTEST count cpu=I n=N [blk=HASH]
 *
 * every tick, so a clone's first line shows where its captured state was.
 * CPU 0's line carries the FNV-1a hash of the first 4 KiB of /dev/vda,
 * read with O_DIRECT every tick (a real virtio-blk request each time) when
 * the VM has a disk; at start the guest writes a known block there first.
 * A vsock listener on port 1024 echoes each connection and reports
 * "SMTEST vsock closed" when one ends (a transport reset ends them all).
 * With smsnap=idle on the command line only the listener runs (benchmarks);
 * smsnap=net:PORT adds a prober of new outside connections (net_probe).
 */
#define _GNU_SOURCE
#include <linux/vm_sockets.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "devguest.h"

#define TICK_MS 200
#define BLK_BYTES 4096
#define VSOCK_PORT 1024

static unsigned char blk[BLK_BYTES] __attribute__((aligned(4096)));

static int blk_open(void)
{
	return open("/dev/vda", O_RDWR | O_DIRECT | O_CLOEXEC);
}

/* The block every test expects at offset 0: byte i is (i * 7 + 3) & 0xff. */
static void blk_write(int fd)
{
	for (unsigned i = 0; i < BLK_BYTES; i++)
		blk[i] = (unsigned char)(i * 7 + 3);
	if (pwrite(fd, blk, BLK_BYTES, 0) != BLK_BYTES || fsync(fd) < 0)
		say("blk write error=%d", errno);
	else
		say("blk wrote hash=%llx", fnv1a(FNV_INIT, blk, BLK_BYTES));
}

static unsigned long long blk_hash(int fd)
{
	if (pread(fd, blk, BLK_BYTES, 0) != BLK_BYTES)
		return 0;
	return fnv1a(FNV_INIT, blk, BLK_BYTES);
}

static void tick(void)
{
	struct timespec ts = { 0, TICK_MS * 1000000L };

	nanosleep(&ts, NULL);
}

static void count(int cpu, int blkfd)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
	for (unsigned long n = 1;; n++) {
		tick();
		if (cpu == 0 && blkfd >= 0)
			say("count cpu=%d n=%lu blk=%llx", cpu, n, blk_hash(blkfd));
		else
			say("count cpu=%d n=%lu", cpu, n);
	}
}

static void echo(int fd)
{
	char buf[4096];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0 || write(fd, buf, (size_t)n) != n)
			break;
	}
	say("vsock closed");
	_exit(0);
}

static void vsock_serve(void)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = VSOCK_PORT };
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		say("vsock listen error=%d", errno);
		_exit(1);
	}
	say("vsock listening");
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c >= 0 && fork() == 0)
			echo(c);
		if (c >= 0)
			close(c);
	}
}

/*
 * smsnap=net:PORT: every tick, connect to the host's PORT through slirp
 * (10.0.2.2) and report what it sends: "SMTEST net got=LINE". Nobody
 * listens there before the capture; a clone gets an answer only if new
 * connections work after its restore.
 */
static void net_probe(int port, int unused)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char buf[64];

	(void)unused;
	inet_pton(AF_INET, "10.0.2.2", &sa.sin_addr);
	if (guest_net_setup() < 0)
		say("net setup error=%d", errno);
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			ssize_t n = read(fd, buf, sizeof(buf) - 1);
			buf[n > 0 ? n : 0] = 0;
			buf[strcspn(buf, "\r\n")] = 0;
			say("net got=%s", buf);
		}
		if (fd >= 0)
			close(fd);
		tick();
	}
}

static void spawn(void (*fn)(int, int), int a, int b)
{
	if (fork() == 0) {
		fn(a, b);
		_exit(0);
	}
}

static void vsock_child(int unused_a, int unused_b)
{
	(void)unused_a;
	(void)unused_b;
	vsock_serve();
}

int main(void)
{
	long ncpu;
	int blkfd;

	char mode[16];

	guest_mounts();
	signal(SIGCHLD, SIG_IGN);
	/* smsnap=idle (bench/snapshot_vmm): only the listener, nothing ticking. */
	if (guest_param("smsnap", mode, sizeof(mode)) && strcmp(mode, "idle") == 0) {
		spawn(vsock_child, 0, 0);
		say("snap ready idle");
		for (;;)
			pause();
	}
	if (guest_param("smsnap", mode, sizeof(mode)) && strncmp(mode, "net:", 4) == 0)
		spawn(net_probe, atoi(mode + 4), 0);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	blkfd = blk_open();
	if (blkfd >= 0)
		blk_write(blkfd);
	spawn(vsock_child, 0, 0);
	for (int i = 0; i < ncpu; i++)
		spawn(count, i, blkfd);
	say("snap ready cpus=%ld", ncpu);
	for (;;)
		pause();
}

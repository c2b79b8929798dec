/*
 * vsock benchmark: a real guest (tests/vm/guest/vsock_guest.c, echo on
 * port 1024) behind supermachine-worker; the host end speaks the hybrid
 * CONNECT protocol. Figures, one JSON line each:
 *
 *   echo_throughput      MiB/s of a full-duplex echo stream (bytes each way / wall time)
 *   worker_cpu_per_mib   worker CPU (user+sys) per MiB echoed, ms
 *   rtt_p50, rtt_p99     1-byte round trips host -> guest -> host, µs
 *   exits_per_rtt        VM exits to user space per round trip (control "stats")
 *   worker_cpu_per_rtt   worker CPU per round trip, µs
 *
 * Inside tests/nested (KVM on TCG) the absolute times mean little; the
 * exits and CPU per operation are what compare across machines.
 *
 *   vsock_bench [--mib N] [--rounds N]   (needs /dev/kvm and SUPERMACHINE_KERNEL_DIR)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "../tests/vm/worker_proc.h"

#define BOOT_WAIT 600000

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *kvm_kind(void)
{
	return getenv("SUPERMACHINE_NESTED") ? "nested" : "native";
}

static void figure(const char *name, double value, const char *unit, const char *extra)
{
	printf("{\"bench\":\"vsock\",\"figure\":\"%s\",\"value\":%.3f,\"unit\":\"%s\",\"kvm\":\"%s\"%s%s}\n",
	       name, value, unit, kvm_kind(), extra ? "," : "", extra ? extra : "");
	fflush(stdout);
}

/* Worker CPU time (user + system) in seconds, from /proc/PID/stat. */
static double worker_cpu_s(const struct wproc *w)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)w->pid);
	f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		return 0;
	}
	fclose(f);
	p = strrchr(buf, ')');
	/* fields after "pid (comm)": state is 3rd; utime 14th, stime 15th */
	if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
		return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	return 0;
}

static unsigned long long worker_exits(struct wproc *w)
{
	char reply[512];
	const char *e;

	if (!wproc_control(w, "stats", reply, sizeof(reply)) || !(e = strstr(reply, "exits=")))
		return 0;
	return strtoull(e + 6, NULL, 10);
}

static int host_connect(const struct wproc *w)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char c;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", w->vsock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || write(fd, "CONNECT 1024\n", 13) != 13)
		return -1;
	do {
		if (read(fd, &c, 1) != 1)
			return -1;
	} while (c != '\n');
	return fd;
}

struct pump {
	int fd;
	uint64_t len;
};

static void *pump_writer(void *arg)
{
	struct pump *p = arg;
	static char buf[1 << 16];

	for (uint64_t sent = 0; sent < p->len;) {
		ssize_t n = write(p->fd, buf, p->len - sent < sizeof(buf) ? (size_t)(p->len - sent) : sizeof(buf));
		if (n <= 0)
			break;
		sent += (uint64_t)n;
	}
	return NULL;
}

static int bench_throughput(struct wproc *w, unsigned mib)
{
	struct pump p = { .len = (uint64_t)mib << 20 };
	static char buf[1 << 16];
	uint64_t got = 0;
	double t0, t1, c0, c1;
	pthread_t t;
	char extra[64];

	p.fd = host_connect(w);
	if (p.fd < 0)
		return -1;
	c0 = worker_cpu_s(w);
	t0 = now_s();
	pthread_create(&t, NULL, pump_writer, &p);
	while (got < p.len) {
		ssize_t n = read(p.fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		got += (uint64_t)n;
	}
	t1 = now_s();
	c1 = worker_cpu_s(w);
	pthread_join(t, NULL);
	close(p.fd);
	if (got != p.len) {
		fprintf(stderr, "vsock_bench: echo stopped after %llu of %llu bytes\n", (unsigned long long)got,
			(unsigned long long)p.len);
		return -1;
	}
	snprintf(extra, sizeof(extra), "\"mib\":%u", mib);
	figure("echo_throughput", (double)mib / (t1 - t0), "MiB/s", extra);
	figure("worker_cpu_per_mib", (c1 - c0) * 1e3 / mib, "ms", extra);
	return 0;
}

static int bench_rtt(struct wproc *w, unsigned rounds)
{
	double *rtt = calloc(rounds, sizeof(*rtt)), c0, c1;
	unsigned long long e0, e1;
	int fd = host_connect(w);
	char c = 'x', extra[64];

	if (fd < 0 || !rtt)
		return -1;
	/* warm up the path (guest process scheduled, caches) */
	for (int i = 0; i < 20; i++)
		if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
			return -1;
	e0 = worker_exits(w);
	c0 = worker_cpu_s(w);
	for (unsigned i = 0; i < rounds; i++) {
		double t = now_s();
		if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
			return -1;
		rtt[i] = (now_s() - t) * 1e6;
	}
	c1 = worker_cpu_s(w);
	e1 = worker_exits(w);
	close(fd);
	qsort(rtt, rounds, sizeof(*rtt), bench_cmp_double);
	snprintf(extra, sizeof(extra), "\"rounds\":%u", rounds);
	figure("rtt_p50", rtt[rounds / 2], "us", extra);
	figure("rtt_p99", rtt[rounds * 99 / 100], "us", extra);
	/* The two control requests around the loop cost no exits (they run on
	 * the event loop); what is counted is the guest's work. */
	figure("exits_per_rtt", (double)(e1 - e0) / rounds, "exits", extra);
	figure("worker_cpu_per_rtt", (c1 - c0) * 1e6 / rounds, "us", extra);
	free(rtt);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const extra[] = { "--vsock", NULL };
	unsigned mib = 64, rounds = 2000;
	struct wproc w;
	char line[256];
	int rc = 1;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--mib") == 0)
			mib = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--rounds") == 0)
			rounds = (unsigned)strtoul(argv[i + 1], NULL, 10);
	}
	if (!mib || !rounds) {
		fprintf(stderr, "usage: vsock_bench [--mib N] [--rounds N]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		fprintf(stderr, "vsock_bench: no /dev/kvm (run it through tests/nested/run)\n");
		return 77;
	}
	if (!wproc_start(&w, SM_VSOCK_GUEST_INITRAMFS, "quiet smvsock=echo:1024", 256, extra)) {
		fprintf(stderr, "vsock_bench: no guest kernel: set SUPERMACHINE_KERNEL_DIR\n");
		return 77;
	}
	if (!wproc_wait_line(&w, "SMTEST vsock ready", line, sizeof(line), BOOT_WAIT)) {
		wproc_dump(&w);
		goto out;
	}
	if (bench_rtt(&w, rounds) == 0 && bench_throughput(&w, mib) == 0)
		rc = 0;
out:
	wproc_stop(&w);
	return rc;
}

/* supermachine stats: CPU, memory and I/O of running VMs, as their workers report them (docker stats). */
#include "cli/cli.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli_vm.h"

#define STATS_MAX_VMS 256
#define STATS_SAMPLE_MS 500 /* --no-stream: two samples this far apart give the CPU % */

static void stats_usage(FILE *out)
{
	fprintf(out, "usage: supermachine stats [--no-stream] [VM...]\n"
		     "\n"
		     "Show each running VM's (default: all) CPU use (its worker's CPU time\n"
		     "over the interval, 100%% a whole host CPU), memory (the worker's\n"
		     "resident set / the guest's RAM), network, disk and vsock bytes (in /\n"
		     "out of the guest, read / written), refreshed every second until\n"
		     "interrupted.\n"
		     "\n"
		     "options:\n"
		     "  --no-stream  print one table and exit\n"
		     "  -h, --help   this help\n");
}

struct stats_vm {
	sm_vm *vm;
	char name[80];
	sm_vm_stats_out prev;
	struct timespec at;
	bool sampled;
};

/* docker's sizes: binary units for memory ("12.5MiB"), decimal for I/O ("1.2kB"). */
static void stats_bytes(uint64_t b, bool binary, char *out, size_t len)
{
	static const char *const bin[] = { "B", "KiB", "MiB", "GiB", "TiB" }, *const dec[] = { "B", "kB", "MB", "GB", "TB" };
	double v = (double)b, k = binary ? 1024.0 : 1000.0;
	int u = 0;

	while (v >= k && u < 4)
		v /= k, u++;
	snprintf(out, len, u ? "%.4g%s" : "%.0f%s", v, binary ? bin[u] : dec[u]);
}

static void stats_io(uint64_t a, uint64_t b, char *out, size_t len)
{
	char x[16], y[16];

	stats_bytes(a, false, x, sizeof(x));
	stats_bytes(b, false, y, sizeof(y));
	snprintf(out, len, "%s / %s", x, y);
}

static void stats_row(struct stats_vm *s, const sm_vm_stats_out *now, const struct timespec *at)
{
	double wall = (double)(at->tv_sec - s->at.tv_sec) * 1e9 + (double)(at->tv_nsec - s->at.tv_nsec);
	double cpu = wall > 0 && now->cpu_ns >= s->prev.cpu_ns ? 100.0 * (double)(now->cpu_ns - s->prev.cpu_ns) / wall : 0;
	double mem = now->memory_bytes ? 100.0 * (double)now->rss_bytes / (double)now->memory_bytes : 0;
	char rss[16], lim[16], net[40], blk[40], vsock[40];

	stats_bytes(now->rss_bytes, true, rss, sizeof(rss));
	stats_bytes(now->memory_bytes, true, lim, sizeof(lim));
	stats_io(now->net_rx_bytes, now->net_tx_bytes, net, sizeof(net));
	stats_io(now->blk_read_bytes, now->blk_write_bytes, blk, sizeof(blk));
	stats_io(now->vsock_rx_bytes, now->vsock_tx_bytes, vsock, sizeof(vsock));
	printf("%-12s  %-16s  %6.2f%%  %9s / %-9s  %6.2f%%  %-21s  %-21s  %s\n", sm_vm_id(s->vm), s->name, cpu, rss, lim,
	       mem, net, blk, vsock);
}

/* A sample of s; false when its VM is no longer running. */
static bool stats_sample(struct stats_vm *s, sm_vm_stats_out *out, struct timespec *at)
{
	*out = (sm_vm_stats_out)SM_VM_STATS_OUT_INIT;
	clock_gettime(CLOCK_MONOTONIC, at);
	return sm_vm_stats(s->vm, out, NULL) == 0;
}

/* Samples every VM; print: the table of what changed since the last sample (clear: the screen first). */
static void stats_table(struct stats_vm *v, size_t n, bool print, bool clear)
{
	if (clear)
		printf("\033[2J\033[H");
	if (print)
		printf("%-12s  %-16s  %7s  %-21s  %7s  %-21s  %-21s  %s\n", "ID", "NAME", "CPU %", "MEM USAGE / LIMIT",
	       "MEM %", "NET I/O", "BLOCK I/O", "VSOCK I/O");
	for (size_t i = 0; i < n; i++) {
		sm_vm_stats_out now;
		struct timespec at;
		if (!stats_sample(&v[i], &now, &at))
			continue;
		if (print && v[i].sampled)
			stats_row(&v[i], &now, &at);
		v[i].prev = now;
		v[i].at = at;
		v[i].sampled = true;
	}
	fflush(stdout);
}

/* The VMs to watch: those named, else every running one. */
static size_t stats_open(char **names, int n, struct stats_vm *v)
{
	sm_vm_list *l = sm_vm_list_load(NULL);
	size_t k = 0;

	for (size_t i = 0; l && n == 0 && i < sm_vm_list_count(l) && k < STATS_MAX_VMS; i++) {
		const sm_vm_info *x = sm_vm_list_at(l, i);
		if (sm_vm_info_status(x) == SM_VM_RUNNING && (v[k].vm = sm_vm_attach(sm_vm_info_id(x), NULL)))
			snprintf(v[k++].name, sizeof(v[0].name), "%s", sm_vm_info_name(x));
	}
	sm_vm_list_free(l);
	for (int i = 0; i < n && k < STATS_MAX_VMS; i++) {
		sm_error *err = NULL;
		v[k].vm = sm_vm_attach(names[i], &err);
		if (!v[k].vm) {
			cli_error("stats", err);
			return (size_t)-1;
		}
		snprintf(v[k].name, sizeof(v[0].name), "%s", sm_vm_name(v[k].vm));
		k++;
	}
	return k;
}

static volatile sig_atomic_t stats_stop;

static void stats_on_signal(int sig)
{
	(void)sig;
	stats_stop = 1;
}

static int stats_run(struct stats_vm *v, size_t n, bool stream)
{
	struct sigaction sa = { .sa_handler = stats_on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	stats_table(v, n, false, false); /* the first sample: the CPU % needs two */
	if (!stream) {
		usleep(STATS_SAMPLE_MS * 1000);
		stats_table(v, n, true, false);
		return 0;
	}
	while (!stats_stop) {
		sleep(1);
		if (!stats_stop)
			stats_table(v, n, true, isatty(STDOUT_FILENO));
	}
	return 0;
}

int cmd_stats(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "no-stream", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct stats_vm *v = calloc(STATS_MAX_VMS, sizeof(*v));
	bool stream = true;
	size_t n;
	int c, rc;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': stream = false; break;
		case 'h': stats_usage(stdout); free(v); return 0;
		default: free(v); return cli_bad_option(c, argv, "stats");
		}
	}
	n = v ? stats_open(argv + optind, argc - optind, v) : (size_t)-1;
	rc = n == (size_t)-1 ? CLI_EXIT_ERROR : stats_run(v, n, stream);
	for (size_t i = 0; v && i < STATS_MAX_VMS; i++)
		sm_vm_free(v[i].vm);
	free(v);
	return rc;
}

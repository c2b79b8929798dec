/* What the benchmarks share: clocks, per-process CPU, and the one-JSON-line figure format. */
#ifndef SM_BENCH_UTIL_H
#define SM_BENCH_UTIL_H

#include <stddef.h>
#include <time.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in seconds. */
double bench_now_s(void);
/* Any clock in seconds: CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID, ... */
double bench_clock_s(clockid_t clock);
/* {"bench":BENCH,"figure":NAME,"value":V,"unit":UNIT,"kvm":"host"|"nested"} on stdout. */
void bench_figure(const char *bench, const char *name, double value, const char *unit);
/* CPU (user + system) in seconds of a process, from /proc/PID/stat; 0 when unknown. */
double bench_proc_cpu_s(pid_t pid);
/* Page faults (minor + major) the process has taken, or -1. */
long long bench_proc_faults(pid_t pid);

/* qsort() order for doubles. */
int bench_cmp_double(const void *a, const void *b);
/* The p-th percentile (0..1) of the non-negative entries of v (reordered;
 * a negative entry is a round that failed); -1 when there are none. */
double bench_pct(double *v, size_t n, double p);

/* A process's memory in KiB from /proc/PID/smaps_rollup; USS is
 * Private_Clean + Private_Dirty; pss_anon is Pss_Anon (its anonymous
 * memory: heap, stacks, pages copied from a private file mapping; -1 on a
 * kernel without the field). All 0 when the process is gone. */
struct bench_mem {
	double rss, pss, uss, private_dirty, pss_anon;
};
void bench_proc_mem(pid_t pid, struct bench_mem *m);

#endif

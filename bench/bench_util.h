/* What the benchmarks share: clocks, per-process CPU, and the one-JSON-line figure format. */
#ifndef SM_BENCH_UTIL_H
#define SM_BENCH_UTIL_H

#include <sys/types.h>

/* CLOCK_MONOTONIC in seconds. */
double bench_now_s(void);
/* {"bench":BENCH,"figure":NAME,"value":V,"unit":UNIT,"kvm":"host"|"nested"} on stdout. */
void bench_figure(const char *bench, const char *name, double value, const char *unit);
/* CPU (user + system) in seconds of a process, from /proc/PID/stat; 0 when unknown. */
double bench_proc_cpu_s(pid_t pid);
/* Page faults (minor + major) the process has taken, or -1. */
long long bench_proc_faults(pid_t pid);

#endif

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bench_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_figure(const char *bench, const char *name, double value, const char *unit)
{
	printf("{\"bench\":\"%s\",\"figure\":\"%s\",\"value\":%.3f,\"unit\":\"%s\",\"kvm\":\"%s\"}\n", bench, name,
	       value, unit, getenv("SUPERMACHINE_NESTED") ? "nested" : "host");
	fflush(stdout);
}

/* Fields 10.. of /proc/PID/stat (after "pid (comm) state"), or -1. */
static int proc_stat_tail(pid_t pid, unsigned long long *minflt, unsigned long long *majflt,
			  unsigned long long *ut, unsigned long long *st)
{
	char path[64], buf[1024];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	const char *p = strrchr(buf, ')');
	/* after "pid (comm)": state is field 3, minflt 10, majflt 12, utime 14, stime 15 */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %llu %*u %llu %*u %llu %llu", minflt, majflt, ut,
			 st) != 4)
		return -1;
	return 0;
}

long long bench_proc_faults(pid_t pid)
{
	unsigned long long mi, ma, ut, st;

	return proc_stat_tail(pid, &mi, &ma, &ut, &st) < 0 ? -1 : (long long)(mi + ma);
}

double bench_proc_cpu_s(pid_t pid)
{
	unsigned long long mi, ma, ut = 0, st = 0;

	if (proc_stat_tail(pid, &mi, &ma, &ut, &st) < 0)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bench_clock_s(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_now_s(void)
{
	return bench_clock_s(CLOCK_MONOTONIC);
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

int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bench_pct(double *v, size_t n, double p)
{
	size_t k = 0, i;

	for (i = 0; i < n; i++)
		if (v[i] >= 0)
			v[k++] = v[i];
	if (!k)
		return -1;
	qsort(v, k, sizeof(*v), bench_cmp_double);
	i = (size_t)((double)k * p);
	return v[i < k ? i : k - 1];
}

void bench_proc_mem(pid_t pid, struct bench_mem *m)
{
	char path[64], line[256];
	unsigned long long v;
	FILE *f;

	*m = (struct bench_mem){ 0 };
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return;
	m->pss_anon = -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Rss: %llu kB", &v) == 1)
			m->rss = (double)v;
		else if (sscanf(line, "Pss: %llu kB", &v) == 1)
			m->pss = (double)v;
		else if (sscanf(line, "Pss_Anon: %llu kB", &v) == 1)
			m->pss_anon = (double)v;
		else if (sscanf(line, "Private_Clean: %llu kB", &v) == 1)
			m->uss += (double)v;
		else if (sscanf(line, "Private_Dirty: %llu kB", &v) == 1)
			m->uss += (double)v, m->private_dirty = (double)v;
	}
	fclose(f);
}

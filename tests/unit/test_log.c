/*
 * The log callback (sm_set_log, src/lib/log.c): silent by default, levels
 * filtered, calls never overlapping. That no library source writes to
 * stdout or stderr itself is a source rule: tests/build/test_source_lint.c.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <supermachine.h>

#include "lib/log.h"

struct seen {
	int n;
	sm_log_level last_level;
	char last[256];
};

static void record(sm_log_level level, const char *message, void *opaque)
{
	struct seen *s = opaque;

	s->n++;
	s->last_level = level;
	snprintf(s->last, sizeof(s->last), "%s", message);
}

Test(log, silent_by_default_then_filtered_by_level)
{
	struct seen s = { 0 };

	cr_expect(!log_enabled(SM_LOG_ERROR));
	log_error("nobody listens");

	sm_set_log(record, &s, SM_LOG_WARN);
	log_error("disk %s", "full");
	cr_expect_eq(s.n, 1);
	cr_expect_eq(s.last_level, SM_LOG_ERROR);
	cr_expect_str_eq(s.last, "disk full");
	log_warn("forward to guest port %u: %s", 80u, "refused");
	cr_expect_eq(s.n, 2);
	cr_expect_eq(s.last_level, SM_LOG_WARN);
	cr_expect_str_eq(s.last, "forward to guest port 80: refused");
	log_info("not wanted");
	log_debug("not wanted");
	cr_expect_eq(s.n, 2);
	cr_expect(!log_enabled(SM_LOG_INFO));

	sm_set_log(record, &s, SM_LOG_DEBUG);
	log_debug("now %d", 4);
	cr_expect_eq(s.n, 3);
	cr_expect_str_eq(s.last, "now 4");

	sm_set_log(NULL, &s, SM_LOG_DEBUG);
	log_error("silenced");
	cr_expect_eq(s.n, 3);
	cr_expect(!log_enabled(SM_LOG_ERROR));
}

static atomic_int inside, overlapped, calls;

static void exclusive(sm_log_level level, const char *message, void *opaque)
{
	(void)level, (void)message, (void)opaque;
	if (atomic_fetch_add(&inside, 1) != 0)
		atomic_store(&overlapped, 1);
	usleep(10);
	atomic_fetch_add(&calls, 1);
	atomic_fetch_sub(&inside, 1);
}

static void *spam(void *arg)
{
	(void)arg;
	for (int i = 0; i < 500; i++)
		log_warn("message %d", i);
	return NULL;
}

Test(log, calls_from_many_threads_never_overlap)
{
	pthread_t t[4];

	sm_set_log(exclusive, NULL, SM_LOG_INFO);
	for (int i = 0; i < 4; i++)
		cr_assert(pthread_create(&t[i], NULL, spam, NULL) == 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_expect_eq(atomic_load(&calls), 2000);
	cr_expect(!atomic_load(&overlapped), "two callbacks ran at once");
	sm_set_log(NULL, NULL, SM_LOG_ERROR);
}

Test(log, long_messages_are_cut_not_overrun)
{
	struct seen s = { 0 };
	char big[5000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	sm_set_log(record, &s, SM_LOG_ERROR);
	log_error("%s", big);
	cr_expect_eq(s.n, 1);
	cr_expect_eq(strlen(s.last), sizeof(s.last) - 1);
	sm_set_log(NULL, NULL, SM_LOG_ERROR);
}

Test(log, stderr_callback_format)
{
	char path[] = "/tmp/sm-log-XXXXXX", buf[256] = "";
	int fd = mkstemp(path), saved = dup(2);
	FILE *f;

	cr_assert(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	sm_set_log(sm_log_stderr, NULL, SM_LOG_WARN);
	log_warn("forward to guest port %u: %s", 8080u, "refused");
	log_info("dropped");
	fflush(stderr);
	dup2(saved, 2);
	sm_set_log(NULL, NULL, SM_LOG_ERROR);
	f = fopen(path, "r");
	cr_assert(f);
	cr_expect_eq(fread(buf, 1, sizeof(buf) - 1, f), strlen("supermachine: warning: forward to guest port 8080: refused\n"));
	cr_expect_str_eq(buf, "supermachine: warning: forward to guest port 8080: refused\n");
	fclose(f);
	unlink(path);
	close(fd);
	close(saved);
	cr_expect_str_eq(sm_log_level_name(SM_LOG_DEBUG), "debug");
}

/*
 * The CLI's option values without a VM: --env-file (Docker's format),
 * --net values, a refused option, and pull's progress view driven by a
 * sequence of reports on a clock the test sets.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_vm.h"
#include "cli/progress.h"

static char path[64];

static void mkfile(const char *text)
{
	int fd;

	strcpy(path, "/tmp/sm-envfile-XXXXXX");
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
}

static void rmfile(void)
{
	if (path[0])
		unlink(path);
}

TestSuite(cli_parse, .fini = rmfile);

Test(cli_parse, env_file_docker_format)
{
	struct cli_exec_opts o = { 0 };

	setenv("SM_TEST_FROM_HOST", "host value", 1);
	unsetenv("SM_TEST_UNSET");
	mkfile("# a comment\n"
	       "\n"
	       "A=1\n"
	       "  B=two words  \n"
	       "C=x=y\r\n"
	       "   # indented comment\n"
	       "SM_TEST_FROM_HOST\n"
	       "SM_TEST_UNSET\n"
	       "EMPTY=\n"
	       "LAST=no newline");
	cr_assert(cli_env_file(&o, path, "run") == 0);
	cr_assert_eq(o.nenv, 6);
	cr_expect_str_eq(o.env[0], "A=1");
	cr_expect_str_eq(o.env[1], "B=two words  ", "the value is kept as written");
	cr_expect_str_eq(o.env[2], "C=x=y", "split at the first '=', CRLF dropped");
	cr_expect_str_eq(o.env[3], "SM_TEST_FROM_HOST=host value");
	cr_expect_str_eq(o.env[4], "EMPTY=");
	cr_expect_str_eq(o.env[5], "LAST=no newline");
	cr_expect_null(o.env[6]);
	cli_exec_opts_free(&o);
}

/* Each bad file fails alone, naming the file and line; stderr has what both said. */
Test(cli_parse, env_file_bad_lines, .init = cr_redirect_stderr)
{
	struct cli_exec_opts o = { 0 };
	char want[512], first[64];

	mkfile("A=1\nBAD NAME=x\n");
	cr_expect(cli_env_file(&o, path, "run") < 0);
	cli_exec_opts_free(&o);
	snprintf(first, sizeof(first), "%s", path);
	rmfile();
	memset(&o, 0, sizeof(o));
	mkfile("=value\n");
	cr_expect(cli_env_file(&o, path, "run") < 0);
	cli_exec_opts_free(&o);
	fflush(stderr);
	snprintf(want, sizeof(want),
		 "supermachine: run: --env-file %s:2: whitespace in the variable name 'BAD NAME'\n"
		 "supermachine: run: --env-file %s:1: no variable name before '=' ''\n",
		 first, path);
	cr_expect_stderr_eq_str(want);
}

Test(cli_parse, env_file_unreadable_is_one_line, .init = cr_redirect_stderr)
{
	struct cli_exec_opts o = { 0 };

	cr_expect(cli_env_file(&o, "/nonexistent/sm-env", "run") < 0);
	cr_expect_eq(o.nenv, 0);
	fflush(stderr);
	cr_expect_stderr_eq_str("supermachine: run: --env-file /nonexistent/sm-env: No such file or directory\n");
}

Test(cli_parse, net_values, .init = cr_redirect_stderr)
{
	bool on = false;

	cr_expect(cli_net_value("nat", &on, "run") == 0 && on);
	cr_expect(cli_net_value("none", &on, "run") == 0 && !on);
	cr_expect(cli_net_value("bridge", &on, "run") == 0 && on, "Docker's default network name");
	cr_expect(cli_net_value("default", &on, "run") == 0 && on);
	cr_expect(cli_net_value("slirp", &on, "run") == 0 && on);
	on = true;
	cr_expect(cli_net_value("host", &on, "run") < 0 && on, "host networking is refused, *on untouched");
	cr_expect(cli_net_value("mynet", &on, "run") < 0);
	cr_expect(cli_net_value("", &on, "run") < 0);
	cr_expect(cli_net_is_value("none") && cli_net_is_value("host") && !cli_net_is_value("busybox") &&
		  !cli_net_is_value(NULL));
}

/* getopt_long over argv as run parses --net: bare, =VALUE, and a bare --net before IMAGE. */
static const char *net_arg_of(char **argv, int argc, int *next)
{
	static const struct option longopts[] = {
		{ "net", optional_argument, NULL, 'N' },
		{ "network", required_argument, NULL, 'O' },
		{ NULL, 0, NULL, 0 },
	};
	const char *v = NULL;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:", longopts, NULL)) != -1)
		v = cli_net_arg(c == 'N', argc, argv);
	*next = optind;
	return v;
}

Test(cli_parse, net_arg_forms)
{
	char *a1[] = { "run", "--net", "none", "busybox", NULL };
	char *a2[] = { "run", "--net", "busybox", NULL };
	char *a3[] = { "run", "--net=none", "busybox", NULL };
	char *a4[] = { "run", "--network", "none", "busybox", NULL };
	int next;

	cr_expect_str_eq(net_arg_of(a1, 4, &next), "none");
	cr_expect_eq(next, 3, "--net none consumed its value");
	cr_expect_str_eq(net_arg_of(a2, 3, &next), "nat");
	cr_expect_eq(next, 2, "--net IMAGE leaves IMAGE alone");
	cr_expect_str_eq(net_arg_of(a3, 3, &next), "none");
	cr_expect_str_eq(net_arg_of(a4, 4, &next), "none");
	cr_expect_eq(next, 3);
}

Test(cli_parse, bad_option_one_line, .init = cr_redirect_stderr)
{
	static const struct option longopts[] = { { "memory", required_argument, NULL, 'm' }, { NULL, 0, NULL, 0 } };
	char *a1[] = { "run", "--bogus", "img", NULL };
	char *a2[] = { "run", "--memory", NULL };
	int c;

	optind = 1, opterr = 0;
	c = getopt_long(3, a1, "+:d", longopts, NULL);
	cli_bad_option(c, a1, "run");
	optind = 1;
	c = getopt_long(2, a2, "+:d", longopts, NULL);
	cr_expect_eq(c, ':');
	cli_bad_option(c, a2, "run");
	fflush(stderr);
	cr_expect_stderr_eq_str("supermachine: run: unknown option: --bogus (see 'supermachine run --help')\n"
				"supermachine: run: option needs a value: --memory (see 'supermachine run --help')\n");
}

/* ---- pull's progress view ---- */

static double fake_now;

static double fake_clock(void)
{
	return fake_now;
}

static void report(struct cli_progress *v, double t, const char *digest, sm_pull_blob_state st, uint64_t done,
		   uint64_t total)
{
	sm_pull_progress p = { .phase = SM_PULL_DOWNLOADING, .digest = digest, .state = st, .done = done,
			       .total = total };

	fake_now = t;
	cli_progress_report(&p, v);
}

static void phase(struct cli_progress *v, double t, sm_pull_phase ph, uint64_t bytes, unsigned blobs)
{
	sm_pull_progress p = { .phase = ph, .bytes_done = bytes, .blobs_total = blobs };

	fake_now = t;
	cli_progress_report(&p, v);
}

#define L1 "sha256:1111111111112222222222222222222222222222222222222222222222222222"
#define L2 "sha256:aaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* One pull: two layers, one already stored, the other downloaded in 4 s, then the build. */
static char *pull_sequence(bool tty)
{
	struct cli_progress *v = malloc(sizeof(*v));
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	cli_progress_init(v, f, tty, fake_clock);
	phase(v, 0, SM_PULL_RESOLVING, 0, 0);
	phase(v, 0.5, SM_PULL_DOWNLOADING, 0, 2);
	report(v, 0.5, L1, SM_BLOB_CACHED, 1000, 1000);
	report(v, 1.0, L2, SM_BLOB_DOWNLOADING, 0, 4000000);
	report(v, 2.0, L2, SM_BLOB_DOWNLOADING, 1000000, 4000000);
	report(v, 5.0, L2, SM_BLOB_DONE, 4000000, 4000000);
	phase(v, 5.0, SM_PULL_BUILDING, 0, 2);
	phase(v, 7.0, SM_PULL_BUILDING, 10000000, 2);
	phase(v, 7.5, SM_PULL_DONE, 10000000, 2);
	cli_progress_finish(v);
	fclose(f);
	free(v);
	return text;
}

Test(cli_parse, progress_plain_lines_one_per_layer)
{
	char *text = pull_sequence(false);

	cr_expect_str_eq(text, "111111111111  already stored\n"
			       "aaaaaaaaaaaa  done  4.0 MB in 4.0 s\n"
			       "building root filesystem\n");
	free(text);
}

Test(cli_parse, progress_bars_on_a_terminal)
{
	char *text = pull_sequence(true);

	/* after 1 s of 4 MB at 1 MB/s: a quarter of the bar, 3 s to go */
	cr_expect(strstr(text, "\r\033[Kaaaaaaaaaaaa  [=====>              ] 1.0 MB / 4.0 MB  1.0 MB/s  ETA 0:03\n"),
		  "%s", text);
	cr_expect(strstr(text, "\r\033[K111111111111  already stored\n"), "%s", text);
	cr_expect(strstr(text, "\r\033[Kaaaaaaaaaaaa  done  4.0 MB in 4.0 s\n"), "%s", text);
	/* 10 MB of tar in 2 s */
	cr_expect(strstr(text, "\r\033[Kbuilding root filesystem: 2 layers, 10.0 MB of tar read, 5.0 MB/s\n"), "%s",
		  text);
	/* each drawing goes back over the last one: 2 layer lines, then 3 with the build line */
	cr_expect(strstr(text, "\033[2A") && strstr(text, "\033[3A"), "%s", text);
	const char *last = strrchr(text, '\033');
	cr_expect(last && strstr(text, "\033[3A\r\033[K111111111111"), "%s", text);
	free(text);
}

Test(cli_parse, progress_more_layers_than_the_table)
{
	struct cli_progress *v = malloc(sizeof(*v));
	char *text = NULL, digest[80];
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	cli_progress_init(v, f, false, fake_clock);
	for (unsigned i = 0; i < CLI_PROGRESS_MAX_BLOBS + 10; i++) {
		snprintf(digest, sizeof(digest), "sha256:%064u", i);
		report(v, i, digest, SM_BLOB_DONE, 10, 10);
	}
	cli_progress_finish(v);
	fclose(f);
	cr_expect_eq(v->nblobs, CLI_PROGRESS_MAX_BLOBS);
	free(text);
	free(v);
}

Test(cli_parse, format_json_only, .init = cr_redirect_stderr)
{
	bool json = false;

	cr_expect(cli_format_json("json", &json, "ps") == 0 && json);
	json = false;
	cr_expect(cli_format_json("{{.ID}}", &json, "ps") < 0 && !json);
	fflush(stderr);
	cr_expect_stderr_eq_str("supermachine: ps: --format '{{.ID}}': only json is supported (Go templates are not)\n");
}

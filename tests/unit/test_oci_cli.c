/* supermachine pull / images / inspect / rm, run as a user would. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fixtures/oci_fixture.h"

TestSuite(oci_cli, .timeout = 120);

struct cli {
	char *home;
	char envhome[4300];
};

static struct cli cli_up(void)
{
	struct cli c = { .home = fx_tmpdir() };

	snprintf(c.envhome, sizeof(c.envhome), "SUPERMACHINE_HOME=%s", c.home);
	return c;
}

static void cli_down(struct cli *c)
{
	fx_rmrf(c->home);
	free(c->home);
}

static int run(struct cli *c, char **out, char **err, const char *a1, const char *a2,
	       const char *a3)
{
	char *argv[] = { (char *)fx_cli(), (char *)a1, (char *)a2, (char *)a3, NULL };
	char *env[] = { c->envhome, NULL };

	return fx_run(argv, env, out, err);
}

static int lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

Test(oci_cli, help)
{
	static const char *const cmds[] = { "pull", "images", "inspect", "rm" };
	struct cli c = cli_up();

	for (size_t i = 0; i < 4; i++) {
		char *out = NULL, *err = NULL;
		cr_expect(run(&c, &out, &err, cmds[i], "--help", NULL) == 0, "%s --help", cmds[i]);
		cr_expect(strstr(out, "usage: supermachine") && strstr(out, cmds[i]), "%s", out);
		free(out), free(err);
		/* docker's 125 and one line for a bad flag, on every command */
		cr_expect(run(&c, &out, &err, cmds[i], "--bogus", NULL) == 125, "%s --bogus", cmds[i]);
		cr_expect(err && strstr(err, "unknown option: --bogus") && !strstr(err, "usage:"), "%s", err);
		free(out), free(err);
	}
	char *out = NULL;
	cr_expect(run(&c, &out, NULL, "--help", NULL, NULL) == 0);
	cr_expect(strstr(out, "pull") && strstr(out, "images") && strstr(out, "inspect") &&
		  strstr(out, "rm"));
	free(out);
	cli_down(&c);
}

Test(oci_cli, pull_images_inspect_rm)
{
	struct cli c = cli_up();
	char src[4300], *out = NULL, *err = NULL;
	char *digest = fx_info("busybox", "digest", -1);
	json_error_t jerr;
	json_t *j;

	snprintf(src, sizeof(src), "oci:%s/layout:busybox", fx_images());
	/* not a TTY: plain progress lines (no bars, no cursor moves), then the result */
	cr_assert(run(&c, &out, &err, "pull", src, NULL) == 0, "%s", err);
	cr_expect(!strchr(err, '\033') && !strchr(err, '\r'), "terminal codes without a TTY: %s", err);
	cr_expect_str_eq(err, "building root filesystem\n");
	cr_expect(strstr(out, src) && strstr(out, digest) && strstr(out, "rootfs: "), "%s", out);
	free(out), free(err);
	cr_assert(run(&c, &out, &err, "pull", "-q", src) == 0);
	cr_expect(strcmp(out, src) == 0 || (strncmp(out, src, strlen(src)) == 0 &&
					     !strcmp(out + strlen(src), "\n")),
		  "quiet pull prints only the name: %s", out);
	free(out), free(err);

	cr_assert(run(&c, &out, &err, "images", NULL, NULL) == 0);
	cr_expect(strstr(out, "NAME") && strstr(out, src) && strstr(out, "MB"), "%s", out);
	char shortd[20];
	snprintf(shortd, sizeof(shortd), "%.12s", digest + 7);
	cr_expect(strstr(out, shortd), "%s", out);
	free(out), free(err);

	cr_assert(run(&c, &out, &err, "images", "--json", NULL) == 0);
	j = json_loads(out, 0, &jerr);
	cr_assert(json_is_array(j) && json_array_size(j) == 1, "%s", out);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "name")), src);
	json_decref(j);
	free(out), free(err);

	cr_assert(run(&c, &out, &err, "inspect", src, NULL) == 0, "%s", err);
	j = json_loads(out, 0, &jerr);
	cr_assert(j, "inspect output is not JSON: %s", out);
	cr_expect_str_eq(json_string_value(json_object_get(j, "manifest_digest")), digest);
	const char *rootfs = json_string_value(json_object_get(j, "rootfs"));
	cr_expect(rootfs && fx_exists(rootfs));
	json_t *cfg = json_object_get(j, "config");
	cr_expect_str_eq(json_string_value(json_array_get(json_object_get(cfg, "Cmd"), 1)),
			 "echo hello from busybox");
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "WorkingDir")), "/tmp");
	cr_expect_str_eq(json_string_value(json_array_get(json_object_get(cfg, "ExposedPorts"), 0)),
			 "8080/tcp");
	json_decref(j);
	free(out), free(err);

	cr_assert(run(&c, &out, &err, "rm", src, NULL) == 0, "%s", err);
	cr_expect(strstr(out, "removed"), "%s", out);
	free(out), free(err);
	cr_assert(run(&c, &out, &err, "images", "--json", NULL) == 0);
	cr_expect_str_eq(out, "[]\n");
	free(out), free(err);
	char blobs[4400];
	snprintf(blobs, sizeof(blobs), "%s/blobs/sha256", c.home);
	cr_expect_eq(fx_count_files(blobs), 0, "rm left blobs behind");
	free(digest);
	cli_down(&c);
}

Test(oci_cli, progress_redrawn_on_a_terminal)
{
	struct cli c = cli_up();
	char *out = NULL;

	/* script(1) gives the command a pseudo-terminal */
	cr_assert(fx_sh(&out, NULL,
			"SUPERMACHINE_HOME='%s' script -qec \"'%s' pull oci:%s/layout:busybox\" "
			"/dev/null",
			c.home, fx_cli(), fx_images()) == 0,
		  "%s", out);
	cr_expect(strstr(out, "\r\033[Kbuilding root filesystem: 2 layers"), "no progress line: %s", out);
	free(out);
	cr_assert(fx_sh(&out, NULL,
			"SUPERMACHINE_HOME='%s' script -qec \"'%s' pull -q oci:%s/layout:base\" "
			"/dev/null",
			c.home, fx_cli(), fx_images()) == 0);
	cr_expect(!strstr(out, "building"), "--quiet still showed progress: %s", out);
	free(out);
	cli_down(&c);
}

Test(oci_cli, hostile_image_names_layer_and_entry)
{
	struct cli c = cli_up();
	char src[4300], *out = NULL, *err = NULL, *layer = fx_info("hostile", "layers", 1);
	char want[5000];

	snprintf(src, sizeof(src), "oci:%s/layout:hostile", fx_images());
	cr_expect_eq(run(&c, &out, &err, "pull", "-q", src), 1); /* -q: the error alone, no progress line */
	snprintf(want, sizeof(want),
		 "supermachine: pull %s: layer 2 (%s): entry '../escape': path has a '..' "
		 "component\n",
		 src, layer);
	cr_expect_str_eq(err, want);
	free(out), free(err);
	cr_assert(run(&c, &out, &err, "images", "--json", NULL) == 0);
	cr_expect_str_eq(out, "[]\n", "a refused image was recorded: %s", out);
	free(out), free(err);
	free(layer);
	cli_down(&c);
}

Test(oci_cli, failures_are_one_clear_line)
{
	static const struct {
		const char *cmd, *arg, *says;
	} cases[] = {
		{ "pull", "Not_A_Valid:Ref:", "supermachine: pull Not_A_Valid:Ref:: invalid" },
		{ "pull", "oci:/nonexistent/dir:tag", "supermachine: pull oci:/nonexistent/dir:tag: " },
		{ "pull", "docker-archive:/etc/hostname", "supermachine: pull docker-archive:/etc/" },
		{ "inspect", "busybox", "supermachine: inspect: no such VM or image: busybox" },
		{ "rm", "busybox", "supermachine: rm: no such VM, snapshot or image: busybox" },
	};
	struct cli c = cli_up();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = NULL, *err = NULL;
		int rc = run(&c, &out, &err, cases[i].cmd, cases[i].arg, NULL);
		cr_expect_eq(rc, 1, "%s %s: exit %d", cases[i].cmd, cases[i].arg, rc);
		cr_expect_eq(lines(err), 1, "%s %s: not one line: %s", cases[i].cmd, cases[i].arg,
			     err);
		cr_expect(!strncmp(err, cases[i].says, strlen(cases[i].says)),
			  "%s %s: got '%s'", cases[i].cmd, cases[i].arg, err);
		free(out), free(err);
	}
	cli_down(&c);
}

/*
 * Source rules checked on the tree, not on running code (suite build): no
 * library source prints by itself, its diagnostics go through log.c (the
 * log callback is tested in tests/unit/test_log.c); the CLI uses only the
 * public header, as any embedder does; and the arrows between subsystems
 * point one way (docs/architecture.md, "Dependencies between subsystems").
 */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The lines of `cd SOURCE_ROOT && pipeline` (at most out's size). */
static void grep_tree(const char *pipeline, char *out, size_t len)
{
	const char *src = getenv("SUPERMACHINE_SOURCE_ROOT");
	char cmd[4400], line[1024];
	FILE *p;

	cr_assert(src, "SUPERMACHINE_SOURCE_ROOT is not set (meson test sets it)");
	snprintf(cmd, sizeof(cmd), "cd '%s' && %s", src, pipeline);
	p = popen(cmd, "r");
	cr_assert(p);
	out[0] = 0;
	while (fgets(line, sizeof(line), p))
		strncat(out, line, len - strlen(out) - 1);
	pclose(p);
}

/* No library source prints by itself: its diagnostics go through log.c. */
Test(source_lint, library_sources_never_print)
{
	char found[4096];

	grep_tree("grep -rnE "
		  "'(^|[^a-z_])(printf|puts|perror|putchar|vprintf)[[:space:]]*\\(|"
		  "(fprintf|vfprintf|fputs|fputc|fwrite|putc)[[:space:]]*\\(.*(stderr|stdout)' "
		  "src/lib src/oci --include='*.c' | grep -v '^src/lib/log.c:' || true",
		  found, sizeof(found));
	cr_expect_str_eq(found, "", "library code writing to stdout/stderr (use log_* from lib/log.h):\n%s", found);
}

/*
 * The CLI and the OCI runtime are built on include/supermachine.h alone,
 * as crun's CLI is on libcrun: of the tree each includes only its own
 * headers (src/DIR/NAME.h), so whatever they need is public API an
 * embedder has too.
 */
static void expect_public_header_only(const char *dir)
{
	char found[4096], cmd[1024];

	snprintf(cmd, sizeof(cmd),
		 "{ grep -nE '#[[:space:]]*include[[:space:]]*\"' src/%s/*.[ch] | grep -vE '\"%s/[a-z_]+\\.h\"'; "
		 "grep -nE '#[[:space:]]*include[[:space:]]*<(lib|oci|base|proto|vmm|devices|worker|guest|tools|cli|runtime)/' "
		 "src/%s/*.[ch]; } || true",
		 dir, dir, dir);
	grep_tree(cmd, found, sizeof(found));
	cr_expect_str_eq(found, "", "src/%s includes more than src/%s/NAME.h and <supermachine.h>:\n%s", dir, dir, found);
}

Test(source_lint, cli_includes_only_the_public_header)
{
	expect_public_header_only("cli");
}

Test(source_lint, runtime_includes_only_the_public_header)
{
	expect_public_header_only("runtime");
}

/*
 * What each subsystem under src/ may include besides itself: the arrows
 * cli -> lib -> {oci, proto} -> base and worker -> vmm -> devices -> base.
 * cli is checked on its own above: it includes only its own headers and
 * the public one.
 */
static const struct {
	const char *dir;
	const char *const allowed[5];
} arrows[] = {
	{ "base", { NULL } },
	{ "proto", { NULL } },
	{ "tools", { NULL } },
	{ "devices", { "base" } },
	{ "oci", { "base" } },
	{ "vmm", { "devices", "base", "proto" } },
	{ "worker", { "vmm", "devices", "base", "proto" } },
	{ "guest", { "proto" } },
	{ "lib", { "oci", "proto", "base" } },
};

/* Is the include target (text between the quotes) dir's own or one it may use? */
static bool include_allowed(size_t rule, const char *target)
{
	const char *slash = strchr(target, '/');
	size_t n = slash ? (size_t)(slash - target) : 0;

	if (!slash)
		return true; /* beside the includer: its own subsystem */
	if (strlen(arrows[rule].dir) == n && strncmp(target, arrows[rule].dir, n) == 0)
		return true;
	for (const char *const *a = arrows[rule].allowed; *a; a++)
		if (strlen(*a) == n && strncmp(target, *a, n) == 0)
			return true;
	return false; /* another subsystem, or "../" */
}

/*
 * Appends to found every include of src/<dir> that breaks its rule;
 * returns how many includes it looked at.
 */
static size_t check_arrows(const char *src, size_t rule, char *found, size_t len)
{
	char cmd[4400], line[1024];
	size_t seen = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*\"' src/%s "
		 "--include='*.c' --include='*.h' || true", src, arrows[rule].dir);
	p = popen(cmd, "r");
	cr_assert(p);
	while (fgets(line, sizeof(line), p)) {
		char *q = strchr(line, '"');
		char *end = q ? strchr(q + 1, '"') : NULL;
		if (!end)
			continue;
		seen++;
		*end = '\0';
		if (!include_allowed(rule, q + 1)) {
			*end = '"';
			strncat(found, line, len - strlen(found) - 1);
		}
	}
	pclose(p);
	return seen;
}

Test(source_lint, includes_follow_the_arrows)
{
	const char *src = getenv("SUPERMACHINE_SOURCE_ROOT");
	char found[8192] = "";
	size_t seen = 0;

	cr_assert(src, "SUPERMACHINE_SOURCE_ROOT is not set (meson test sets it)");
	for (size_t i = 0; i < sizeof(arrows) / sizeof(arrows[0]); i++)
		seen += check_arrows(src, i, found, sizeof(found));
	/* the tree has a few hundred: none seen means the grep found nothing */
	cr_assert_gt(seen, 100, "only %zu includes seen under src/", seen);
	cr_expect_str_eq(found, "",
			 "includes against the arrows (docs/architecture.md, \"Dependencies between "
			 "subsystems\"; the rules are in tests/build/test_source_lint.c):\n%s", found);
}

/*
 * Source rules checked on the tree, not on running code (suite build): no
 * library source prints by itself, its diagnostics go through log.c (the
 * log callback is tested in tests/unit/test_log.c); the CLI uses only the
 * public header, as any embedder does.
 */
#include <criterion/criterion.h>
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
 * The CLI is built on include/supermachine.h alone, as crun's CLI is on
 * libcrun: of the tree it includes only its own headers (src/cli/NAME.h),
 * so whatever it needs is public API an embedder has too.
 */
Test(source_lint, cli_includes_only_the_public_header)
{
	char found[4096];

	grep_tree("{ grep -nE '#[[:space:]]*include[[:space:]]*\"' src/cli/*.[ch] | grep -vE '\"cli/[a-z_]+\\.h\"'; "
		  "grep -nE '#[[:space:]]*include[[:space:]]*<(lib|oci|base|proto|vmm|devices|worker|guest|tools)/' "
		  "src/cli/*.[ch]; } || true",
		  found, sizeof(found));
	cr_expect_str_eq(found, "", "src/cli includes more than src/cli/NAME.h and <supermachine.h>:\n%s", found);
}

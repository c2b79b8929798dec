/*
 * Source rules checked on the tree, not on running code (suite build): no
 * library source prints by itself, its diagnostics go through log.c (the
 * log callback is tested in tests/unit/test_log.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No library source prints by itself: its diagnostics go through log.c. */
Test(source_lint, library_sources_never_print)
{
	const char *src = getenv("SUPERMACHINE_SOURCE_ROOT");
	char cmd[4400], line[1024], found[4096] = "";
	FILE *p;

	cr_assert(src, "SUPERMACHINE_SOURCE_ROOT is not set (meson test sets it)");
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && grep -rnE "
		 "'(^|[^a-z_])(printf|puts|perror|putchar|vprintf)[[:space:]]*\\(|"
		 "(fprintf|vfprintf|fputs|fputc|fwrite|putc)[[:space:]]*\\(.*(stderr|stdout)' "
		 "src/lib src/oci --include='*.c' | grep -v '^src/lib/log.c:' || true",
		 src);
	p = popen(cmd, "r");
	cr_assert(p);
	while (fgets(line, sizeof(line), p))
		strncat(found, line, sizeof(found) - strlen(found) - 1);
	pclose(p);
	cr_expect_str_eq(found, "", "library code writing to stdout/stderr (use log_* from lib/log.h):\n%s", found);
}

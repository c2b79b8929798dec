#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"

Test(error, chain_keeps_context_and_cause)
{
	sm_error *err = NULL;

	sm_error_set(&err, SM_E_IO, ENOENT, "open %s", "/nope");
	sm_error_wrap(&err, "pull %s", "busybox");
	cr_assert_eq(sm_error_code(err), SM_E_IO);
	cr_assert_str_eq(sm_error_message(err), "pull busybox");
	cr_assert_str_eq(sm_error_string(err), "pull busybox: open /nope: No such file or directory");
	cr_assert_eq(sm_error_errno(sm_error_cause(err)), ENOENT);
	cr_assert_null(sm_error_cause(sm_error_cause(err)));
	sm_error_free(err);
}

Test(error, null_sink_is_ignored)
{
	sm_error_set(NULL, SM_E_INVALID, 0, "ignored");
	sm_error_free(NULL);
	cr_assert_eq(sm_error_code(NULL), SM_OK);
}

Test(error, code_names)
{
	cr_assert_str_eq(sm_code_name(SM_E_NOT_FOUND), "not-found");
	cr_assert_str_eq(sm_code_name((sm_code)999), "unknown");
}

Test(error, version_matches_header)
{
	char want[32];

	snprintf(want, sizeof(want), "%d.%d.%d", SM_VERSION_MAJOR, SM_VERSION_MINOR, SM_VERSION_PATCH);
	cr_assert_str_eq(sm_version(), want);
}

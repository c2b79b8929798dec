/*
 * `supermachine check` on a /dev/kvm that runs the guest (natively, or
 * inside tests/nested): it exits 0, says VMs can run, and reports the
 * guest speed and exit cost it measured.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../fixtures/oci_fixture.h"

static json_t *item(json_t *report, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(report, i, v)
		if (!strcmp(json_string_value(json_object_get(v, "name")), name))
			return v;
	return NULL;
}

Test(check, vms_can_run_here_and_the_guest_speed_is_reported, .timeout = 120)
{
	char *home = fx_tmpdir(), *out = NULL, *err = NULL;
	json_t *report, *speed, *exits;
	int rc;

	cr_assert(home);
	rc = fx_sh(&out, &err, "SUPERMACHINE_HOME=%s %s check --json", home, fx_cli());
	cr_expect_eq(rc, 0, "check exited %d:\n%s\n%s", rc, out, err);
	report = json_loads(out, 0, NULL);
	cr_assert(json_is_array(report), "not a JSON array: %s", out);
	speed = item(report, "kvm.speed");
	exits = item(report, "kvm.exits");
	cr_assert(speed && exits, "no speed or exit line: %s", out);
	cr_expect_neq(strcmp(json_string_value(json_object_get(speed, "status")), "FAIL"), 0, "%s", out);
	cr_expect_gt(json_real_value(json_object_get(speed, "value")), 0.0);
	cr_expect_gt(json_real_value(json_object_get(exits, "value")), 0.0);
	cr_log_info("guest kernel code: %.1f M instructions/s, I/O exit %.1f us",
		    json_real_value(json_object_get(speed, "value")), json_real_value(json_object_get(exits, "value")));
	json_decref(report);
	free(out);
	free(err);
	rc = fx_sh(&out, &err, "SUPERMACHINE_HOME=%s %s check", home, fx_cli());
	cr_expect_eq(rc, 0);
	cr_expect(strstr(out, "VMs can run on this host\n"), "%s", out);
	cr_expect_null(strstr(out, "FAIL"), "%s", out);
	free(out);
	free(err);
	fx_rmrf(home);
	free(home);
}

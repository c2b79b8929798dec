/*
 * The worker's command line (src/proto/worker.c): what the library builds
 * (worker_launch_argv) is what the worker parses (worker_launch_parse),
 * for a boot and for a restore, and what cannot be said on it is refused
 * before a worker is started.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proto/worker.h"

static int argc_of(char **argv)
{
	int n = 0;

	while (argv[n])
		n++;
	return n;
}

/* The parsed launch points into the argv returned: free that after it. */
static char **round_trip(const struct worker_launch *in, struct worker_launch *out)
{
	char err[256] = "", **argv = NULL;

	cr_assert_eq(worker_launch_argv(in, "/x/supermachine-worker", &argv, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(argv[0], "/x/supermachine-worker");
	cr_assert_eq(worker_launch_parse(argc_of(argv), argv, out, err, sizeof(err)), 0, "%s", err);
	return argv;
}

static void expect_str(const char *got, const char *want, const char *what)
{
	if (!want)
		cr_expect_null(got, "%s: '%s'", what, got);
	else
		cr_expect(got && !strcmp(got, want), "%s: '%s', not '%s'", what, got ? got : "(null)", want);
}

static void expect_same_devices(const struct worker_launch *a, const struct worker_launch *b)
{
	cr_assert_eq(a->ndisks, b->ndisks);
	for (unsigned i = 0; i < a->ndisks; i++) {
		expect_str(b->disks[i].path, a->disks[i].path, "disk path");
		expect_str(b->disks[i].id, a->disks[i].id, "disk id");
		cr_expect_eq(b->disks[i].read_only, a->disks[i].read_only, "disk %u read-only", i);
	}
	cr_assert_eq(a->nmounts, b->nmounts);
	for (unsigned i = 0; i < a->nmounts; i++) {
		expect_str(b->mounts[i].tag, a->mounts[i].tag, "mount tag");
		expect_str(b->mounts[i].dir, a->mounts[i].dir, "mount dir");
		cr_expect_eq(b->mounts[i].read_only, a->mounts[i].read_only, "mount %u read-only", i);
		cr_expect_eq(b->mounts[i].symlinks, a->mounts[i].symlinks, "mount %u symlinks", i);
	}
	expect_str(b->vsock, a->vsock, "vsock");
	expect_str(b->control, a->control, "control");
	expect_str(b->console, a->console, "console");
	cr_expect_eq(b->net, a->net);
	cr_expect_eq(b->balloon, a->balloon);
}

Test(worker_launch, boot_round_trips)
{
	struct worker_launch in = {
		.kernel = "/k/vmlinux", .initrd = "/r/initrd.cpio", .cmdline = "quiet loglevel=3",
		.memory_mib = 512, .memory_set = true, .vcpus = 4, .vcpus_set = true,
		.disks = { { .path = "/s/rootfs.ext4", .read_only = true, .id = "rootfs" },
			   { .path = "/v/data.img" } },
		.ndisks = 2, .vsock = "/run/v.sock", .control = "/run/c.sock", .console = "/run/console.log",
		.mounts = { { .tag = "work", .dir = "/home/u/src" },
			    { .tag = "ro-data.1", .dir = "/srv/data", .read_only = true,
			      .symlinks = WORKER_SYMLINKS_DENY },
			    { .tag = "123456789012345678901234567890123456", .dir = "/",
			      .symlinks = WORKER_SYMLINKS_FOLLOW } },
		.nmounts = 3, .net = true, .balloon = true,
	}, out;

	char **argv = round_trip(&in, &out);

	expect_str(out.kernel, in.kernel, "kernel");
	expect_str(out.initrd, in.initrd, "initrd");
	expect_str(out.cmdline, in.cmdline, "cmdline");
	cr_expect_eq(out.memory_mib, 512);
	cr_expect_eq(out.vcpus, 4);
	expect_str(out.restore, NULL, "restore");
	expect_same_devices(&in, &out);
	worker_launch_free(&out);
	worker_argv_free(argv);
}

Test(worker_launch, restore_round_trips_without_boot_options)
{
	struct worker_launch in = {
		.restore = "/snap/dir",
		.disks = { { .path = "/s/rootfs.ext4", .read_only = true, .id = "rootfs" },
			   { .path = "/v/ro.img", .read_only = true } },
		.ndisks = 2, .vsock = "/run/v.sock", .control = "/run/c.sock", .console = "-", .balloon = true,
		.mounts = { { .tag = "w", .dir = "/w", .read_only = true } }, .nmounts = 1,
	}, out;

	char **argv = round_trip(&in, &out);

	expect_str(out.restore, "/snap/dir", "restore");
	expect_str(out.kernel, NULL, "kernel");
	cr_expect_not(out.memory_set);
	cr_expect_not(out.vcpus_set);
	expect_same_devices(&in, &out);
	worker_launch_free(&out);
	worker_argv_free(argv);
}

Test(worker_launch, what_the_command_line_cannot_say_is_refused)
{
	struct worker_launch l = { .kernel = "/k", .disks = { { .path = "/a,b" } }, .ndisks = 1 };
	char err[256] = "", **argv = (char **)1;

	cr_expect_eq(worker_launch_argv(&l, "w", &argv, err, sizeof(err)), -EINVAL);
	cr_expect_null(argv);
	cr_expect(strstr(err, "'/a,b'"), "%s", err);
	l.disks[0] = (struct worker_disk){ .path = "/a", .id = "an-id-much-longer-than-twenty" };
	cr_expect_eq(worker_launch_argv(&l, "w", &argv, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "id"), "%s", err);
	l.disks[0] = (struct worker_disk){ .path = "" };
	cr_expect_eq(worker_launch_argv(&l, "w", &argv, err, sizeof(err)), -EINVAL);
	l.disks[0] = (struct worker_disk){ .path = "/a" };
	l.ndisks = WORKER_MAX_DISKS + 1;
	cr_expect_eq(worker_launch_argv(&l, "w", &argv, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "at most"), "%s", err);
}

Test(worker_launch, mounts_that_cannot_be_said_are_refused)
{
	static const struct {
		struct worker_mount m;
		const char *needle;
	} bad[] = {
		{ { .tag = "", .dir = "/d" }, "1 to 36" },
		{ { .dir = "/d" }, "1 to 36" },
		{ { .tag = "1234567890123456789012345678901234567", .dir = "/d" }, "1 to 36" },
		{ { .tag = "a b", .dir = "/d" }, "printable" },
		{ { .tag = "a,b", .dir = "/d" }, "printable" },
		{ { .tag = "a\x7f", .dir = "/d" }, "printable" },
		{ { .tag = "t", .dir = "rel/d" }, "absolute" },
		{ { .tag = "t" }, "absolute" },
		{ { .tag = "t", .dir = "/a,b" }, "','" },
		{ { .tag = "t", .dir = "/d", .symlinks = (enum worker_symlinks)7 }, "policy" },
	};
	struct worker_launch l = { .kernel = "/k", .nmounts = 1 };
	char err[256] = "", **argv = (char **)1;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		l.mounts[0] = bad[i].m;
		cr_expect_eq(worker_launch_argv(&l, "w", &argv, err, sizeof(err)), -EINVAL, "case %zu", i);
		cr_expect_null(argv);
		cr_expect(strstr(err, bad[i].needle), "case %zu: %s", i, err);
	}
	l.mounts[0] = (struct worker_mount){ .tag = "t", .dir = "/a" };
	l.mounts[1] = (struct worker_mount){ .tag = "t", .dir = "/b" };
	l.nmounts = 2;
	cr_expect_eq(worker_launch_argv(&l, "w", &argv, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "two mounts"), "%s", err);
	l.nmounts = WORKER_MAX_MOUNTS + 1;
	cr_expect_eq(worker_launch_argv(&l, "w", &argv, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "at most"), "%s", err);
}

/* Parses "--kernel k" and the given --fs specs: 0, or -1 with the error in err. */
static int parse_fs(char *err, size_t errlen, const char *spec1, const char *spec2)
{
	char *argv[] = { "w", "--kernel", "k", "--fs", (char *)spec1, "--fs", (char *)spec2, NULL };
	struct worker_launch l;
	int rc = worker_launch_parse(spec2 ? 7 : 5, argv, &l, err, errlen);

	worker_launch_free(&l);
	return rc;
}

Test(worker_launch, bad_fs_specs_are_usage_errors)
{
	static const struct {
		const char *spec, *needle;
	} bad[] = {
		{ "tag", "TAG,DIR" },
		{ ",/d", "1 to 36" },
		{ "1234567890123456789012345678901234567,/d", "1 to 36" },
		{ "t,", "no directory" },
		{ "t,,ro", "no directory" },
		{ "t,rel", "absolute" },
		{ "t,/d,rw", "unknown option 'rw'" },
		{ "t,/d,symlinks=sometimes", "opaque, deny, follow" },
		{ "t,/d,symlinks=deny,symlinks=deny", "symlinks= once" },
		{ "a\tb,/d", "printable" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		cr_expect_eq(parse_fs(err, sizeof(err), bad[i].spec, NULL), -1, "%s", bad[i].spec);
		cr_expect(strstr(err, bad[i].needle), "%s: %s", bad[i].spec, err);
	}
	cr_expect_eq(parse_fs(err, sizeof(err), "t,/a", "t,/b,ro"), -1);
	cr_expect(strstr(err, "tag 't' used by two mounts"), "%s", err);
	cr_expect_eq(parse_fs(err, sizeof(err), "t,/a,ro,symlinks=follow", "u,/a"), 0, "%s", err);
}

/* ---- the control socket's lines ---- */

Test(worker_control, requests_split_into_name_and_args)
{
	struct worker_request r;
	char longname[WORKER_CTL_NAME_MAX + 8];

	cr_assert_eq(worker_request_parse("  balloon   1024 ", &r), 0);
	cr_expect_str_eq(r.name, "balloon");
	cr_expect_str_eq(r.args, "1024 ");
	cr_assert_eq(worker_request_parse("stop", &r), 0);
	cr_expect_str_eq(r.args, "");
	cr_expect_eq(worker_request_parse(" \t", &r), -EINVAL);
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	cr_expect_eq(worker_request_parse(longname, &r), -ENAMETOOLONG);
}

Test(worker_control, replies_are_ok_or_error_with_fields)
{
	struct worker_reply r;
	uint64_t v = 7;

	cr_assert_eq(worker_reply_parse("ok target=1024 actual=512", &r), 0);
	cr_expect(r.ok);
	cr_expect_eq(worker_reply_u64(r.text, "target", &v), 0);
	cr_expect_eq(v, 1024);
	cr_expect_eq(worker_reply_u64(r.text, "actual", &v), 0);
	cr_expect_eq(v, 512);
	cr_expect_eq(worker_reply_u64(r.text, "free", &v), -ENOENT);
	/* whole fields only: "xtarget=" is not "target=" */
	cr_expect_eq(worker_reply_u64("xtarget=5", "target", &v), -ENOENT);
	cr_expect_eq(worker_reply_u64("target=5x", "target", &v), -EINVAL);
	cr_expect_eq(worker_reply_u64("target=-5", "target", &v), -EINVAL);
	cr_expect_eq(worker_reply_u64("target=99999999999999999999999", "target", &v), -EINVAL);
	cr_assert_eq(worker_reply_parse("ok", &r), 0);
	cr_expect(r.ok);
	cr_expect_str_eq(r.text, "");
	cr_assert_eq(worker_reply_parse("error no snapshot here", &r), 0);
	cr_expect_not(r.ok);
	cr_expect_str_eq(r.text, "no snapshot here");
	cr_expect_eq(worker_reply_parse("okay", &r), -EPROTO);
	cr_expect_eq(worker_reply_parse("", &r), -EPROTO);
	cr_expect_eq(worker_reply_parse("errors", &r), -EPROTO);
}

/* A spare's handoff (proto/worker.h): argv in one message, read back as sent. */
Test(worker_launch, handoff_round_trips)
{
	const char *argv[] = { "/w", "--restore", "/s", "--vsock", "", NULL };
	char buf[256], *back[8];
	ssize_t n = worker_handoff_encode(argv, buf, sizeof(buf));

	cr_assert_gt(n, 0);
	cr_assert_eq(worker_handoff_decode(buf, (size_t)n, back, 8), 5);
	for (int i = 0; i < 5; i++)
		cr_assert_str_eq(back[i], argv[i]);
	cr_assert_null(back[5]);
}

Test(worker_launch, a_malformed_handoff_is_refused)
{
	const char *argv[] = { "/w", "--restore", "/s", NULL }, *none[] = { NULL };
	char buf[256], *back[3];
	ssize_t n = worker_handoff_encode(argv, buf, sizeof(buf));

	cr_assert_eq(worker_handoff_encode(none, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(worker_handoff_encode(argv, buf, 16), -E2BIG);
	n = worker_handoff_encode(argv, buf, sizeof(buf));
	cr_assert_eq(worker_handoff_decode(buf, (size_t)n - 1, back, 8), -EPROTO, "not NUL-terminated");
	cr_assert_eq(worker_handoff_decode(buf, (size_t)n, back, 3), -E2BIG, "more arguments than room");
	cr_assert_eq(worker_handoff_decode(buf, sizeof(WORKER_SPARE_MAGIC), back, 3), -EINVAL, "no arguments");
	buf[0] = 'x';
	cr_assert_eq(worker_handoff_decode(buf, (size_t)n, back, 8), -EPROTO, "no magic");
	cr_assert_eq(worker_handoff_decode(buf, 3, back, 8), -EPROTO, "shorter than the magic");
}

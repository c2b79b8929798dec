/*
 * Host-directory mounts (virtio-fs, docs/mounts.md) in a real guest: file
 * operations, the symlink policies, read-only shares, escape attempts
 * (host symlinks out of the share, "..", a directory swapped for a
 * symlink while it is opened through), host-side changes seen by the
 * guest, a share kept across a snapshot and a restore (an open file, a
 * file gone meanwhile, another host directory), and the bad configs
 * refused before any VM starts. The guest side of each check is
 * tests/vm/guest/fs_probe.c (sm-fsprobe), one "ok NAME" line per check.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"

#define EXEC_TIMEOUT_MS 300000 /* a hang guard: readdir of thousands under nested KVM is slow */
#define PROBE "/tmp/sm-fsprobe"
#define SECRET "HOST-SECRET"

static char IMAGE[4200];
static char *tmp;

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

static char *path_of(const char *name)
{
	static char buf[8][4200];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", tmp, name);
	return buf[i];
}

/* A share as a host tenant might leave it: a file, links in and out, and a secret beside it. */
static void make_share(const char *name)
{
	char link[4300];

	cr_assert(mkdir(path_of(name), 0755) == 0);
	snprintf(link, sizeof(link), "%s/file_in", path_of(name));
	put(link, "inside");
	snprintf(link, sizeof(link), "%s/in_link", path_of(name));
	cr_assert(symlink("file_in", link) == 0);
	snprintf(link, sizeof(link), "%s/out_abs", path_of(name));
	cr_assert(symlink(path_of("outside/secret"), link) == 0);
	snprintf(link, sizeof(link), "%s/out_rel", path_of(name));
	cr_assert(symlink("../outside/secret", link) == 0);
}

static void setup(void)
{
	fx_vm_store("mounttest", IMAGE, sizeof(IMAGE));
	tmp = fx_tmpdir();
	cr_assert(mkdir(path_of("outside"), 0755) == 0);
	put(path_of("outside/secret"), SECRET "\n");
	make_share("rw");
	make_share("ro");
	make_share("deny");
	make_share("follow");
	make_share("hand");
}

static void teardown(void)
{
	if (tmp)
		fx_rmrf(tmp);
	free(tmp);
	tmp = NULL;
}

TestSuite(mounts, .init = setup, .fini = teardown, .timeout = 1800);

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	fx_shared_store_remove("mounttest");
}

static const char *s(const char *p)
{
	return p ? p : "";
}

static void ok_or_fail(sm_vm *vm, sm_error *err, const char *what)
{
	if (vm)
		return;
	char msg[2048];
	snprintf(msg, sizeof(msg), "%s: %s", what, err ? sm_error_string(err) : "?");
	sm_error_free(err);
	cr_assert_fail("%s", msg);
}

/* Runs argv in vm; the outcome's status, its stdout in *out (malloc'ed). */
static int run(sm_vm *vm, const char *const *argv, char **out)
{
	sm_exec *x = sm_exec_new(vm);
	sm_outcome o = { 0 };
	sm_error *err = NULL;
	int st;

	sm_exec_argv(x, argv);
	sm_exec_timeout_ms(x, EXEC_TIMEOUT_MS);
	if (sm_exec_output(x, &o, &err) < 0) {
		char msg[2048];
		snprintf(msg, sizeof(msg), "exec %s: %s", argv[0], sm_error_string(err));
		sm_error_free(err);
		sm_exec_free(x);
		cr_assert_fail("%s", msg);
	}
	st = o.status;
	if (st)
		cr_log_info("%s %s: status %d\nstdout:\n%s\nstderr:\n%s", argv[0], s(argv[1]), st, s(o.stdout_data),
			    s(o.stderr_data));
	*out = strdup(s(o.stdout_data));
	sm_outcome_free(&o);
	sm_exec_free(x);
	return st;
}

static void install_probe(sm_vm *vm)
{
	fx_vm_put_file(vm, SM_FS_PROBE, PROBE, 0755);
}

/* sm-fsprobe's checks all passed, and each of want[] was among them. */
static void probe(sm_vm *vm, const char *const *args, const char *const *want)
{
	const char *argv[8] = { PROBE };
	char *out;
	int n = 1, st;

	for (; *args && n < 7; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	st = run(vm, argv, &out);
	cr_expect_eq(st, 0, "sm-fsprobe %s: %d check(s) failed:\n%s", argv[1], st, out);
	for (; want && *want; want++) {
		char line[128];
		snprintf(line, sizeof(line), "ok %s\n", *want);
		cr_expect(strstr(out, line), "sm-fsprobe %s did not pass '%s':\n%s", argv[1], *want, out);
	}
	free(out);
}

static bool host_reads(const char *path, const char *want)
{
	char buf[256] = { 0 };
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	return n >= 0 && strcmp(buf, want) == 0;
}

Test(mounts, operations_policies_and_escapes)
{
	sm_mount ms[] = {
		{ .host_dir = path_of("rw"), .guest_path = "/mnt/rw" },
		{ .host_dir = path_of("ro"), .guest_path = "/mnt/ro", .read_only = true },
		{ .host_dir = path_of("deny"), .guest_path = "/mnt/deny", .symlinks = SM_SYMLINKS_DENY },
		{ .host_dir = path_of("follow"), .guest_path = "/mnt/follow", .symlinks = SM_SYMLINKS_FOLLOW },
		{ .host_dir = path_of("hand"), .tag = "byhand" },
	};
	sm_vm_config cfg = { .size = sizeof(cfg), .mounts = ms, .nmounts = 5 };
	sm_error *err = NULL;
	char target[256] = { 0 }, *out;
	struct stat st;
	sm_vm *vm = sm_vm_start(IMAGE, &cfg, &err);

	ok_or_fail(vm, err, "start with 5 mounts");
	install_probe(vm);
	probe(vm, (const char *[]){ "ops", "/mnt/rw", NULL },
	      (const char *[]){ "readdir-many", "mmap-shared", "sparse-over-4g", "no-setuid", "no-device-nodes", NULL });
	probe(vm, (const char *[]){ "ro", "/mnt/ro", NULL }, (const char *[]){ "ro-create", "ro-read", NULL });
	probe(vm, (const char *[]){ "policy", "/mnt/rw", "opaque", NULL }, (const char *[]){ "no-escape", NULL });
	probe(vm, (const char *[]){ "policy", "/mnt/deny", "deny", NULL }, (const char *[]){ "deny-symlink-create", NULL });
	probe(vm, (const char *[]){ "policy", "/mnt/follow", "follow", NULL }, (const char *[]){ "follow-reaches", NULL });
	probe(vm, (const char *[]){ "race", "/mnt/rw", "5", NULL }, (const char *[]){ "swap-race", NULL });

	/* what the guest did is on the host: data, a verbatim symlink, no set-id bit, no device */
	cr_expect(host_reads(path_of("rw/mm"), "") || stat(path_of("rw/mm"), &st) == 0);
	cr_expect(readlink(path_of("rw/g_abs"), target, sizeof(target) - 1) > 0 && strcmp(target, "/etc/passwd") == 0,
		  "the guest's symlink on the host points to '%s'", target);
	cr_expect(stat(path_of("rw/suid"), &st) == 0 && !(st.st_mode & (S_ISUID | S_ISGID)), "suid mode %o",
		  st.st_mode & 07777);
	cr_expect(lstat(path_of("rw/dev"), &st) < 0, "a device node was made on the host");
	cr_expect(fx_count_files(path_of("rw/many")) == 3000, "the host sees %d files", fx_count_files(path_of("rw/many")));
	cr_expect(host_reads(path_of("outside/secret"), SECRET "\n"), "the secret outside the share changed");

	/* a change on the host shows in the guest (attribute and entry timeouts are short) */
	put(path_of("rw/from-host"), "host wrote this");
	cr_expect_eq(run(vm, (const char *[]){ "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do "
						  "cat /mnt/rw/from-host 2>/dev/null && exit 0; sleep 0.5; done; exit 1",
					 NULL },
			 &out),
		     0);
	cr_expect_str_eq(out, "host wrote this");
	free(out);
	/* a tag without a guest path is the guest's to mount */
	cr_expect_eq(run(vm, (const char *[]){ "sh", "-c", "mkdir -p /mnt/hand && mount -t virtiofs byhand /mnt/hand && "
						  "cat /mnt/hand/file_in", NULL },
			 &out),
		     0);
	cr_expect_str_eq(out, "inside");
	free(out);
	cr_expect_eq(sm_vm_stop(vm, 0, NULL), 0);
	sm_vm_free(vm);
}

Test(mounts, kept_across_snapshot_and_restore)
{
	sm_mount m = { .host_dir = path_of("rw"), .guest_path = "/mnt/rw" };
	sm_mount other = { .host_dir = path_of("ro"), .guest_path = "/mnt/rw" };
	sm_vm_config cfg = { .size = sizeof(cfg), .mounts = &m, .nmounts = 1 },
		     again = { .size = sizeof(again), .mounts = &other, .nmounts = 1 };
	sm_error *err = NULL;
	char snap[4300], *out;
	sm_vm *vm = sm_vm_start(IMAGE, &cfg, &err), *clone;

	ok_or_fail(vm, err, "start with a mount");
	install_probe(vm);
	put(path_of("rw/held"), "held across the restore");
	put(path_of("rw/doomed"), "gone soon");
	cr_assert_eq(run(vm, (const char *[]){ "sh", "-c", "cat /mnt/rw/doomed >/dev/null && " PROBE
						  " hold /mnt/rw/held /mnt/rw/held.out", NULL },
			 &out),
		     0);
	free(out);
	snprintf(snap, sizeof(snap), "%s/snap", tmp);
	cr_assert_eq(sm_vm_snapshot(vm, snap, &err), 0, "%s", err ? sm_error_string(err) : "");
	sm_vm_stop(vm, 0, NULL);
	sm_vm_free(vm);
	cr_assert(unlink(path_of("rw/doomed")) == 0);

	clone = sm_vm_restore(snap, NULL, &err);
	ok_or_fail(clone, err, "restore with the snapshot's mount");
	/* the descriptor opened before the capture reads the same host file */
	cr_expect_eq(run(clone, (const char *[]){ "sh", "-c", "kill -USR1 $(cat /tmp/sm-fsprobe-hold.pid) && "
						     "for i in $(busybox seq 40); do [ -s /mnt/rw/held.out ] && exit 0; "
						     "sleep 0.25; done; exit 1", NULL },
			 &out),
		     0);
	free(out);
	cr_expect(host_reads(path_of("rw/held.out"), "held across the restore"), "held.out on the host");
	/* a file gone while the snapshot slept is simply gone */
	cr_expect_neq(run(clone, (const char *[]){ "cat", "/mnt/rw/doomed", NULL }, &out), 0);
	free(out);
	cr_expect_eq(run(clone, (const char *[]){ "cat", "/mnt/rw/file_in", NULL }, &out), 0);
	cr_expect_str_eq(out, "inside");
	free(out);
	sm_vm_stop(clone, 0, NULL);
	sm_vm_free(clone);

	/* the same guest path served from another host directory */
	put(path_of("ro/only-in-ro"), "other dir");
	clone = sm_vm_restore(snap, &again, &err);
	ok_or_fail(clone, err, "restore with another host directory");
	cr_expect_eq(run(clone, (const char *[]){ "cat", "/mnt/rw/only-in-ro", NULL }, &out), 0);
	cr_expect_str_eq(out, "other dir");
	free(out);
	sm_vm_stop(clone, 0, NULL);
	sm_vm_free(clone);
}

/* `supermachine run` with args: its status, and its stderr in *err. */
static int cli_run(char **err, const char *const *args)
{
	const char *argv[16] = { fx_cli(), "run", "--rm" };
	int n = 3;

	for (; *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	return fx_run((char *const *)argv, NULL, NULL, err);
}

Test(mounts, bad_configs_refused_before_start)
{
	char spec[2][4300], *err = NULL;
	const char *rt = getenv("XDG_RUNTIME_DIR");
	int before = rt ? fx_count_vms(rt) : 0;

	snprintf(spec[0], sizeof(spec[0]), "%s/none:/x", tmp);
	cr_expect_eq(cli_run(&err, (const char *[]){ "--mount", spec[0], IMAGE, "true", NULL }), 125);
	cr_expect(strstr(s(err), "none") && strstr(s(err), "mount 0"), "missing dir: %s", s(err));
	free(err);
	snprintf(spec[0], sizeof(spec[0]), "%s/outside/secret:/x", tmp);
	cr_expect_eq(cli_run(&err, (const char *[]){ "--mount", spec[0], IMAGE, "true", NULL }), 125);
	cr_expect(strstr(s(err), "is not a directory"), "a file: %s", s(err));
	free(err);
	snprintf(spec[0], sizeof(spec[0]), "%s/rw:/w", tmp);
	snprintf(spec[1], sizeof(spec[1]), "%s/ro:/w/inner", tmp);
	cr_expect_eq(cli_run(&err, (const char *[]){ "--mount", spec[0], "--mount", spec[1], IMAGE, "true", NULL }), 125);
	cr_expect(strstr(s(err), "overlaps mount 0's /w"), "nested: %s", s(err));
	free(err);
	cr_expect_eq(cli_run(&err, (const char *[]){ "--mount", "rw:w", IMAGE, "true", NULL }), 125);
	cr_expect(strstr(s(err), "guest path 'w'"), "relative guest path: %s", s(err));
	free(err);

	sm_mount dup[] = { { .host_dir = path_of("rw"), .guest_path = "/a", .tag = "same" },
			   { .host_dir = path_of("ro"), .guest_path = "/b", .tag = "same" } };
	sm_vm_config cfg = { .size = sizeof(cfg), .mounts = dup, .nmounts = 2 };
	sm_error *e = NULL;
	cr_expect_null(sm_vm_start(IMAGE, &cfg, &e));
	cr_expect(e && strstr(sm_error_string(e), "tag 'same' is already mount 0's"), "%s", e ? sm_error_string(e) : "");
	sm_error_free(e);
	if (rt)
		cr_expect_eq(fx_count_vms(rt), before, "a refused config left a VM behind");
}

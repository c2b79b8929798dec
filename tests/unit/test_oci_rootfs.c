/*
 * Layer application into ext4: checked against `umoci unpack` of the same
 * image through debugfs (tests/fixtures/oci/ext4tree.py), with e2fsck, as
 * root and as an unprivileged user, and against hostile layers.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fixtures/oci_fixture.h"
#include "../fixtures/privs.h"
#include "oci/internal.h"

/* Directories the special layer implies without naming them, and the root
 * (whose mtime an unpacker changes when it adds entries): their mtimes
 * are the unpacker's own choice. */
#define ANY_MTIME "--any-mtime / /deep /deep/a /deep/a/b /deep/a/b/c"

static char *ext4tree(void)
{
	char *p = NULL;

	cr_assert(asprintf(&p, "python3 '%s/tests/fixtures/oci/ext4tree.py'", fx_source_root()) > 0);
	return p;
}

static void fsck_clean(const char *img)
{
	char *out = NULL;
	int rc = fx_sh(&out, NULL, "e2fsck -fn '%s' 2>&1", img);

	cr_expect(rc == 0, "e2fsck -fn %s: exit %d\n%s", img, rc, out);
	free(out);
}

static char *debugfs(const char *img, const char *cmd)
{
	char *out = NULL;

	fx_sh(&out, NULL, "debugfs -R '%s' '%s' 2>/dev/null", cmd, img);
	return out;
}

/* Pulls src into a fresh store under dir; returns the rootfs path. */
static char *pull_into(const char *dir, const char *src)
{
	struct oci_store *st;
	struct oci_image *img = NULL;
	sm_error *err = NULL;
	char *path;

	cr_assert(oci_store_open(dir, &st, &err) == 0, "%s", sm_error_string(err));
	cr_assert(oci_pull(st, src, NULL, &img, &err) == 0, "pull %s: %s", src,
		  sm_error_string(err));
	cr_assert(img->rootfs_path);
	path = strdup(img->rootfs_path);
	oci_image_free(img);
	oci_store_close(st);
	return path;
}

static void mktar(const char *kind, const char *out)
{
	cr_assert(fx_sh(NULL, NULL, "python3 '%s/tests/fixtures/oci/mktar.py' %s '%s'",
			fx_source_root(), kind, out) == 0,
		  "mktar.py %s", kind);
}

TestSuite(oci_rootfs, .timeout = 120);

Test(oci_rootfs, matches_umoci_unpack)
{
	char *dir = fx_tmpdir(), *src = NULL, *out = NULL, *tool = ext4tree();
	const char *img = fx_images();
	char *rootfs;
	int rc;

	cr_assert(asprintf(&src, "oci:%s/layout:busybox", img) > 0);
	rootfs = pull_into(dir, src);
	fsck_clean(rootfs);
	rc = fx_sh(&out, NULL, "%s compare '%s' '%s/unpacked/rootfs' %s %s 2>&1", tool, rootfs, img,
		   geteuid() == 0 ? "" : "--rootless", ANY_MTIME);
	cr_expect(rc == 0, "ext4 image differs from umoci unpack:\n%s", out);
	free(out);
	free(rootfs);
	free(src);
	free(tool);
	fx_rmrf(dir);
	free(dir);
}

Test(oci_rootfs, whiteouts_opaque_and_replacements)
{
	char *dir = fx_tmpdir(), *src = NULL, *rootfs, *o;
	const char *img = fx_images();

	cr_assert(asprintf(&src, "oci:%s/layout:busybox", img) > 0);
	rootfs = pull_into(dir, src);
	o = debugfs(rootfs, "ls -p /etc");
	cr_expect(!strstr(o, "/motd/"), "whiteout .wh.motd did not remove /etc/motd:\n%s", o);
	cr_expect(strstr(o, "/passwd/"), "%s", o);
	cr_expect(strstr(o, "/040755/0/0/hostname/"), "file -> dir replacement:\n%s", o);
	free(o);
	o = debugfs(rootfs, "ls -p /var");
	cr_expect(strstr(o, "/new/") && !strstr(o, "/lib/"), "opaque /var:\n%s", o);
	free(o);
	o = debugfs(rootfs, "ls -p /");
	cr_expect(strstr(o, "/100644/0/0/tmp/"), "dir -> file replacement:\n%s", o);
	free(o);
	o = debugfs(rootfs, "stat /special/hardlink-a");
	cr_expect(strstr(o, "Links: 3"), "%s", o);
	free(o);
	free(rootfs);
	free(src);
	fx_rmrf(dir);
	free(dir);
}

Test(oci_rootfs, same_tree_from_zstd_and_docker_archive)
{
	char *d1 = fx_tmpdir(), *d2 = fx_tmpdir(), *d3 = fx_tmpdir();
	char *s1 = NULL, *s2 = NULL, *s3 = NULL, *out = NULL, *tool = ext4tree();
	const char *img = fx_images();
	char *a, *b, *c;
	int rc;

	cr_assert(asprintf(&s1, "oci:%s/layout:busybox", img) > 0);
	cr_assert(asprintf(&s2, "oci:%s/zstd:busybox", img) > 0);
	cr_assert(asprintf(&s3, "docker-archive:%s/busybox.tar:test/busybox:latest", img) > 0);
	a = pull_into(d1, s1);
	b = pull_into(d2, s2);
	c = pull_into(d3, s3);
	fsck_clean(b);
	fsck_clean(c);
	rc = fx_sh(&out, NULL, "%s compare-images '%s' '%s' 2>&1", tool, a, b);
	cr_expect(rc == 0, "gzip vs zstd layers:\n%s", out);
	free(out);
	rc = fx_sh(&out, NULL, "%s compare-images '%s' '%s' 2>&1", tool, a, c);
	cr_expect(rc == 0, "oci layout vs docker-archive:\n%s", out);
	free(out);
	free(a), free(b), free(c), free(s1), free(s2), free(s3), free(tool);
	fx_rmrf(d1), fx_rmrf(d2), fx_rmrf(d3);
	free(d1), free(d2), free(d3);
}

Test(oci_rootfs, unprivileged_user_builds_the_same_image)
{
	char *dir = fx_tmpdir(), *asroot = fx_tmpdir(), *out = NULL, *err = NULL, *tool = ext4tree();
	const char *img = fx_images();
	char *src = NULL, *a;
	int rc;

	if (geteuid() != 0) {
		/* Already unprivileged: every other test here proves it. */
		cr_skip_test("not root: cannot switch users, and the suite already runs unprivileged");
	}
	if (fx_nobody_blocked(fx_cli()))
		cr_skip_test("%s", fx_nobody_blocked(fx_cli()));
	cr_assert(asprintf(&src, "oci:%s/layout:busybox", img) > 0);
	a = pull_into(asroot, src);
	cr_assert(chown(dir, 65534, 65534) == 0);
	rc = fx_sh(&out, &err,
		   "SUPERMACHINE_HOME='%s' setpriv --reuid=65534 --regid=65534 --clear-groups "
		   "'%s' pull -q '%s'",
		   dir, fx_cli(), src);
	cr_assert(rc == 0, "unprivileged pull failed (%d): %s", rc, err);
	free(out);
	free(err);
	rc = fx_sh(&out, NULL, "ls %s/rootfs/*.ext4", dir);
	cr_assert(rc == 0);
	out[strcspn(out, "\n")] = '\0';
	fsck_clean(out);
	char *diff = NULL;
	rc = fx_sh(&diff, NULL, "%s compare-images '%s' '%s' 2>&1", tool, a, out);
	cr_expect(rc == 0, "image built as uid 65534 differs from root's:\n%s", diff);
	struct stat s;
	cr_assert(stat(out, &s) == 0);
	cr_expect_eq(s.st_uid, 65534u, "the image belongs to whoever built it");
	free(diff);
	free(out);
	free(a);
	free(src);
	free(tool);
	fx_rmrf(dir);
	fx_rmrf(asroot);
	free(dir);
	free(asroot);
}

Test(oci_rootfs, sized_to_content)
{
	char *dir = fx_tmpdir(), *src = NULL, *rootfs, *out = NULL;
	unsigned long used, total;

	cr_assert(asprintf(&src, "oci:%s/layout:busybox", fx_images()) > 0);
	rootfs = pull_into(dir, src);
	cr_assert(fx_sh(&out, NULL, "e2fsck -fn '%s' 2>&1 | tail -1", rootfs) == 0);
	cr_assert(sscanf(strstr(out, "files"), "files (%*[^)]), %lu/%lu blocks", &used, &total) == 2,
		  "%s", out);
	/* modest headroom: a few percent plus a little slack */
	cr_expect(total <= used + used / 10 + 256, "%lu of %lu blocks used", used, total);
	free(out);
	free(rootfs);
	free(src);
	fx_rmrf(dir);
	free(dir);
}

/* ---- hostile layers ---- */

static const char *const hostile_kinds[] = {
	"hostile-dotdot", "hostile-dotdot-middle", "hostile-hardlink-outside",
	"hostile-hardlink-missing", "hostile-hardlink-dir", "hostile-whiteout-dotdot",
	"hostile-whiteout-dot", "hostile-symlink-loop", "hostile-through-file",
	"hostile-long-name", "hostile-absolute",
};

/* Writes base.tar and every hostile layer into dir with one python run;
 * the symlink-escape layer points at escape_target. */
static void make_layers(const char *dir, const char *escape_target)
{
	char kinds[2048] = "";

	for (size_t i = 0; i < sizeof(hostile_kinds) / sizeof(hostile_kinds[0]); i++) {
		strcat(kinds, " ");
		strcat(kinds, hostile_kinds[i]);
	}
	cr_assert(fx_sh(NULL, NULL,
			"python3 '%s/tests/fixtures/oci/mktar.py' --batch '%s' base%s "
			"'hostile-symlink-escape=%s'",
			fx_source_root(), dir, kinds, escape_target) == 0);
}

struct built {
	char img[4300];
	sm_error *err;
	int rc;
};

static struct built build_on_base(const char *dir, const char *kind)
{
	struct built b = { .err = NULL };
	char base[4300], layer[4300];
	struct oci_layer_src ls[2] = {
		{ .path = base, .label = "base" },
		{ .path = layer, .label = "hostile" },
	};

	snprintf(base, sizeof(base), "%s/base.tar", dir);
	snprintf(layer, sizeof(layer), "%s/%s.tar", dir, kind);
	snprintf(b.img, sizeof(b.img), "%s/%s.ext4", dir, kind);
	b.rc = oci_rootfs_write(ls, 2, b.img, NULL, NULL, NULL, NULL, &b.err);
	return b;
}

static void expect_refused(const char *dir, const char *kind, const char *entry, const char *why)
{
	struct built b = build_on_base(dir, kind);
	const char *msg = sm_error_string(b.err);
	char glob[4400], *out = NULL;

	cr_expect(b.rc < 0, "%s: accepted", kind);
	cr_expect_eq(sm_error_code(b.err), SM_E_IMAGE, "%s: code %s", kind,
		     sm_code_name(sm_error_code(b.err)));
	cr_expect(strstr(msg, "layer 2 (hostile)"), "%s: error names no layer: %s", kind, msg);
	cr_expect(strstr(msg, entry), "%s: error names no entry '%s': %s", kind, entry, msg);
	cr_expect(strstr(msg, why), "%s: error does not say '%s': %s", kind, why, msg);
	cr_expect(!fx_exists(b.img), "%s: an image was left behind", kind);
	snprintf(glob, sizeof(glob), "ls '%s' | grep -c ext4", dir);
	fx_sh(&out, NULL, "%s", glob);
	cr_expect(atoi(out) == 0, "%s: temporary files left behind", kind);
	free(out);
	sm_error_free(b.err);
}

Test(oci_rootfs, hostile_layers_are_refused_or_confined)
{
	char *dir = fx_tmpdir(), *probe = fx_tmpdir(), target[4200], cmd[4400], *o;
	struct built b;

	/* a host directory path that must not gain a file */
	snprintf(target, sizeof(target), "%s/host-dir", probe);
	make_layers(dir, target);
	expect_refused(dir, "hostile-dotdot", "'../escape'", "'..'");
	expect_refused(dir, "hostile-dotdot-middle", "'etc/../../escape'", "'..'");
	expect_refused(dir, "hostile-hardlink-outside", "'h'", "'..'");
	expect_refused(dir, "hostile-hardlink-missing", "'h'", "does not exist");
	expect_refused(dir, "hostile-hardlink-dir", "'h'", "hardlink to directory");
	expect_refused(dir, "hostile-whiteout-dotdot", "'etc/.wh...'", "not allowed");
	expect_refused(dir, "hostile-whiteout-dot", "'etc/.wh..'", "not allowed");
	expect_refused(dir, "hostile-symlink-loop", "'a/x'", "too many levels of symlinks");
	expect_refused(dir, "hostile-through-file", "'f/x'", "not a directory");
	expect_refused(dir, "hostile-long-name", "'nnnn", "longer than 255");

	/* confined: written inside the image, never on the host */
	b = build_on_base(dir, "hostile-symlink-escape");
	cr_assert(b.rc == 0, "%s", sm_error_string(b.err));
	cr_expect(!fx_exists(target), "a layer wrote to the host at %s", target);
	cr_expect_eq(fx_count_files(probe), 0);
	fsck_clean(b.img);
	snprintf(cmd, sizeof(cmd), "cat %s/pwned", target);
	o = debugfs(b.img, cmd);
	cr_expect(strstr(o, "written through a symlink"), "confined write missing:\n%s", o);
	free(o);
	o = debugfs(b.img, "cat /etc/through-up");
	cr_expect(strstr(o, "still inside"), "'..' past the root not clamped:\n%s", o);
	free(o);

	b = build_on_base(dir, "hostile-absolute");
	cr_assert(b.rc == 0, "%s", sm_error_string(b.err));
	o = debugfs(b.img, "cat /abs/file");
	cr_expect(strstr(o, "confined"), "%s", o);
	free(o);
	fx_rmrf(probe);
	fx_rmrf(dir);
	free(probe);
	free(dir);
}

Test(oci_rootfs, sparse_10g_claim_is_confined)
{
	char *dir = fx_tmpdir(), tar[4200], img[4200], *o;
	struct oci_layer_src ls = { .path = tar, .label = "sparse" };
	struct oci_rootfs_stats st;
	sm_error *err = NULL;
	struct stat s;

	snprintf(tar, sizeof(tar), "%s/sparse.tar", dir);
	snprintf(img, sizeof(img), "%s/out.ext4", dir);
	cr_assert(fx_sh(NULL, NULL,
			"cd '%s' && truncate -s 10G big && printf data | dd of=big bs=1 seek=5G "
			"conv=notrunc status=none && tar --sparse --format=pax -cf '%s' big && rm big",
			dir, tar) == 0);
	cr_assert(oci_rootfs_write(&ls, 1, img, NULL, NULL, NULL, &st, &err) == 0, "%s",
		  sm_error_string(err));
	cr_assert(stat(img, &s) == 0);
	cr_expect(s.st_size < (16 << 20), "a 10 GiB sparse claim made a %jd-byte image",
		  (intmax_t)s.st_size);
	cr_expect(st.data_bytes <= 8192);
	o = debugfs(img, "stat /big");
	cr_expect(strstr(o, "Size: 10737418240"), "%s", o);
	free(o);
	fsck_clean(img);
	fx_rmrf(dir);
	free(dir);
}

Test(oci_rootfs, broken_archives_are_clear_errors)
{
	char *dir = fx_tmpdir(), tar[4200], img[4200];
	struct oci_layer_src ls = { .path = tar, .label = "broken" };
	sm_error *err = NULL;

	snprintf(tar, sizeof(tar), "%s/claim.tar", dir);
	snprintf(img, sizeof(img), "%s/out.ext4", dir);
	mktar("truncated-claim", tar);
	cr_expect(oci_rootfs_write(&ls, 1, img, NULL, NULL, NULL, NULL, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "layer 1 (broken): entry 'huge'"), "%s",
		  sm_error_string(err));
	sm_error_free(err);
	err = NULL;

	/* gzip with its middle overwritten */
	cr_assert(fx_sh(NULL, NULL,
			"python3 '%s/tests/fixtures/oci/mktar.py' special '%s/s.tar' && gzip -c "
			"'%s/s.tar' > '%s' && printf 'XXXXXXXXXXXXXXXXXXXX' | dd of='%s' bs=1 "
			"seek=600 conv=notrunc status=none",
			fx_source_root(), dir, dir, tar, tar) == 0);
	cr_expect(oci_rootfs_write(&ls, 1, img, NULL, NULL, NULL, NULL, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "layer 1 (broken)"), "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;

	cr_assert(fx_sh(NULL, NULL, "head -c 3000 /dev/urandom > '%s'", tar) == 0);
	cr_expect(oci_rootfs_write(&ls, 1, img, NULL, NULL, NULL, NULL, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "layer 1 (broken)"), "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;

	cr_assert(fx_sh(NULL, NULL, ": > '%s'", tar) == 0);
	cr_expect(oci_rootfs_write(&ls, 1, img, NULL, NULL, NULL, NULL, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "layer 1 (broken)"), "%s", sm_error_string(err));
	sm_error_free(err);
	cr_expect(!fx_exists(img));
	fx_rmrf(dir);
	free(dir);
}

Test(oci_rootfs, diff_id_is_verified)
{
	char *dir = fx_tmpdir(), tar[4200], img[4200];
	struct oci_layer_src ls = {
		.path = tar, .label = "x",
		.diff_id = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	};
	sm_error *err = NULL;

	snprintf(tar, sizeof(tar), "%s/base.tar", dir);
	snprintf(img, sizeof(img), "%s/out.ext4", dir);
	mktar("base", tar);
	cr_expect(oci_rootfs_write(&ls, 1, img, NULL, NULL, NULL, NULL, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_DIGEST);
	cr_expect(strstr(sm_error_string(err), "the image config says"), "%s",
		  sm_error_string(err));
	sm_error_free(err);
	cr_expect(!fx_exists(img));
	fx_rmrf(dir);
	free(dir);
}

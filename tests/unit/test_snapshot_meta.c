/*
 * metadata.json (src/lib/snapshot_meta.c) as hostile input: a valid file
 * round-trips; every malformed, oversized, out-of-range or injected field
 * is refused with SM_E_SNAPSHOT naming it; the file checks of a restore
 * (stamps, digests) catch a changed file.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/snapshot.h"

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FILE_OBJ(p)                                                                                    \
	"{\"path\": \"" p "\", \"sha256\": \"" DIGEST "\", \"size\": 10, \"ino\": 1, \"dev\": 2, "   \
	"\"mtime_ns\": 3, \"ctime_ns\": 4}"

static const char valid[] =
	"{\"format\": \"supermachine-snapshot\", \"version\": 1, \"snapshot_id\": "
	"\"00112233445566778899aabbccddeeff\", \"created\": 1700000000, \"memory_mib\": 256, \"vcpus\": 2, "
	"\"network\": true, \"balloon\": false, \"balloon_target_pages\": 0, "
	"\"kernel\": " FILE_OBJ("/k/vmlinux") ", \"initramfs\": " FILE_OBJ("/k/initramfs.cpio") ", "
	"\"rootfs\": " FILE_OBJ("/s/rootfs.ext4") ", "
	"\"volumes\": [{\"host_path\": \"/h/vol\", \"guest_path\": \"/data\", \"read_only\": true}], "
	"\"image\": \"busybox\", \"image_digest\": \"" DIGEST "\", \"label\": \"web\", \"warmup_tag\": \"v1\", "
	"\"image_config\": {\"entrypoint\": [\"sh\"], \"cmd\": [\"-c\", \"echo hi\"], \"env\": [\"A=b\"], "
	"\"working_dir\": \"/tmp\", \"user\": null, \"stop_signal\": \"SIGTERM\"}, "
	"\"workload\": [\"httpd\", \"-f\"], \"bake\": {\"trigger\": \"listener\"}}";

/* valid with the first occurrence of from replaced by to */
static char *patched(const char *from, const char *to)
{
	const char *at = strstr(valid, from);
	char *out;

	cr_assert(at, "'%s' is not in the valid metadata", from);
	cr_assert(asprintf(&out, "%.*s%s%s", (int)(at - valid), valid, to, at + strlen(from)) > 0);
	return out;
}

Test(snapshot_meta, valid_round_trips)
{
	struct snap_meta m, again;
	sm_error *err = NULL;

	cr_assert(snapmeta_parse(valid, strlen(valid), "m.json", false, &m, &err) == 0,
		  "%s", err ? sm_error_string(err) : "");
	cr_expect_eq(m.memory_mib, 256);
	cr_expect_eq(m.vcpus, 2);
	cr_expect(m.network && !m.balloon);
	cr_expect_str_eq(m.id, "00112233445566778899aabbccddeeff");
	cr_expect_str_eq(m.rootfs.path, "/s/rootfs.ext4");
	cr_expect_eq(m.nvolumes, 1);
	cr_expect(m.volumes[0].read_only);
	cr_expect_str_eq(m.volumes[0].guest_path, "/data");
	char **cmd = snapmeta_image_command(&m);
	cr_assert(cmd);
	cr_expect_str_eq(cmd[0], "sh");
	cr_expect_str_eq(cmd[2], "echo hi");
	cr_expect_null(cmd[3]);
	for (char **p = cmd; *p; p++)
		free(*p);
	free(cmd);

	char *text = snapmeta_dump(&m, false);
	cr_assert(text);
	cr_assert(snapmeta_parse(text, strlen(text), "dump", false, &again, &err) == 0,
		  "%s", err ? sm_error_string(err) : "");
	cr_expect_str_eq(again.kernel.sha256, DIGEST);
	cr_expect_eq(again.rootfs.ctime_ns, 4);
	cr_expect(json_equal(again.bake, m.bake));
	/* the argv a restore runs, written for people; never read back as a command */
	cr_expect(strstr(text, "\"worker_argv\"") && strstr(text, "/s/rootfs.ext4,ro,id=rootfs"));
	free(text);
	snapmeta_release(&again);
	snapmeta_release(&m);
}

Test(snapshot_meta, boot_record_needs_no_capture_fields)
{
	static const char boot[] =
		"{\"format\": \"supermachine-snapshot\", \"version\": 1, \"memory_mib\": 128, \"vcpus\": 1, "
		"\"kernel\": {\"path\": \"/k\"}, \"initramfs\": {\"path\": \"/i\"}, \"rootfs\": {\"path\": \"/r\"}}";
	struct snap_meta m;
	sm_error *err = NULL;

	cr_expect(snapmeta_parse(boot, strlen(boot), "boot.json", true, &m, &err) == 0,
		  "%s", err ? sm_error_string(err) : "");
	snapmeta_release(&m);
	/* as a snapshot's metadata it is incomplete */
	cr_expect(snapmeta_parse(boot, strlen(boot), "metadata.json", false, &m, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_SNAPSHOT);
	sm_error_free(err);
}

/* arrays, not pointers: criterion hands parameters to a new process */
struct bad_case {
	char from[200], to[200], needle[48];
};

static struct bad_case bad_cases[] = {
	{ "\"version\": 1", "\"version\": 2", "format version 2" },
	{ "\"version\": 1", "\"version\": \"1\"", "version" },
	{ "supermachine-snapshot", "something-else", "format" },
	{ "\"memory_mib\": 256", "\"memory_mib\": 0", "memory_mib" },
	{ "\"memory_mib\": 256", "\"memory_mib\": 99999999999", "memory_mib" },
	{ "\"memory_mib\": 256", "\"memory_mib\": -256", "memory_mib" },
	{ "\"vcpus\": 2", "\"vcpus\": 33", "vcpus" },
	{ "\"vcpus\": 2", "\"vcpus\": 2.5", "vcpus" },
	{ "\"network\": true", "\"network\": 1", "network" },
	{ "00112233445566778899aabbccddeeff", "0011", "snapshot_id" },
	{ "00112233445566778899aabbccddeeff", "0011223344556677889XAABBCCDDEEFF", "snapshot_id" },
	{ "\"/s/rootfs.ext4\"", "\"relative/rootfs\"", "path" },
	/* a ',' would add options to the worker's --disk */
	{ "\"/s/rootfs.ext4\"", "\"/s/rootfs.ext4,rw\"", "path" },
	{ "\"/s/rootfs.ext4\"", "\"/s/root\\nfs\"", "path" },
	{ "\"/s/rootfs.ext4\"", "\"/s/root\\u0000fs\"", "JSON" },
	{ "\"/s/rootfs.ext4\"", "42", "path" },
	{ "\"rootfs\": {", "\"rootfs_\": {", "rootfs" },
	{ DIGEST "\", \"size\": 10, \"ino\": 1, \"dev\": 2, \"mtime_ns\": 3, \"ctime_ns\": 4}, \"initramfs\"",
	  "sha256:xyz\", \"size\": 10, \"ino\": 1, \"dev\": 2, \"mtime_ns\": 3, \"ctime_ns\": 4}, \"initramfs\"",
	  "digest of 'kernel'" },
	{ "\"size\": 10", "\"size\": -1", "size" },
	{ "\"guest_path\": \"/data\"", "\"guest_path\": \"data\"", "volume 0" },
	{ "[{\"host_path\"", "[1, 2, 3, 4, 5, 6, 7, 8, 9, {\"host_path\"", "volumes" },
	{ "\"volumes\": [", "\"volumes\": \"none\", \"v2\": [", "volumes" },
	{ "\"balloon_target_pages\": 0", "\"balloon_target_pages\": 65537", "balloon_target_pages" },
	{ "\"entrypoint\": [\"sh\"]", "\"entrypoint\": [\"sh\", 3]", "image_config" },
	{ "\"entrypoint\": [\"sh\"]", "\"entrypoint\": \"sh\"", "image_config" },
	{ "\"entrypoint\": [\"sh\"]", "\"evil\": [\"sh\"]", "image_config" },
	{ "\"working_dir\": \"/tmp\"", "\"working_dir\": \"/t\\u001bmp\"", "image_config" },
	{ "\"workload\": [\"httpd\", \"-f\"]", "\"workload\": \"httpd\"", "workload" },
	{ "\"image_digest\": \"" DIGEST "\"", "\"image_digest\": \"md5:abc\"", "image_digest" },
	{ "\"bake\": {", "\"bake\": [{", "JSON" },
	{ "\"label\": \"web\"", "\"label\": \"web\", \"label\": \"dup\"", "JSON" },
	{ "{\"format\"", "[{\"format\"", "JSON" },
};

ParameterizedTestParameters(snapshot_meta, hostile_fields_are_refused)
{
	return cr_make_param_array(struct bad_case, bad_cases, sizeof(bad_cases) / sizeof(bad_cases[0]));
}

ParameterizedTest(struct bad_case *c, snapshot_meta, hostile_fields_are_refused)
{
	char *text = patched(c->from, c->to);
	struct snap_meta m;
	sm_error *err = NULL;

	cr_expect(snapmeta_parse(text, strlen(text), "DIR/metadata.json", false, &m, &err) < 0,
		  "accepted: %s", text);
	cr_expect_eq(sm_error_code(err), SM_E_SNAPSHOT);
	cr_expect(err && strstr(sm_error_string(err), "DIR/metadata.json") &&
			  strstr(sm_error_string(err), c->needle),
		  "error '%s' does not name '%s'", err ? sm_error_string(err) : "", c->needle);
	cr_expect_null(m.image_config);
	sm_error_free(err);
	free(text);
}

Test(snapshot_meta, garbage_and_oversized_input)
{
	static const char *const garbage[] = { "", "{", "null", "[]", "\"x\"", "{\"format\": null}", "\xff\xfe" };
	struct snap_meta m;
	sm_error *err = NULL;

	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		cr_expect(snapmeta_parse(garbage[i], strlen(garbage[i]), "g", false, &m, &err) < 0, "'%s'", garbage[i]);
		cr_expect_eq(sm_error_code(err), SM_E_SNAPSHOT);
		sm_error_free(err), err = NULL;
	}
	size_t big = SNAPMETA_MAX_BYTES + 1;
	char *buf = malloc(big);
	memset(buf, ' ', big);
	cr_expect(snapmeta_parse(buf, big, "big", false, &m, &err) < 0);
	cr_expect(err && strstr(sm_error_string(err), "more than"), "%s", err ? sm_error_string(err) : "");
	sm_error_free(err), err = NULL;
	free(buf);
	/* deep nesting inside a free-form object is jansson's to bound, and it does */
	char *deep = NULL;
	size_t depth = 100000;
	deep = malloc(2 * depth + 1);
	memset(deep, '[', depth);
	memset(deep + depth, ']', depth);
	deep[2 * depth] = 0;
	char *text = patched("{\"trigger\": \"listener\"}", deep);
	cr_expect(snapmeta_parse(text, strlen(text), "deep", false, &m, &err) < 0);
	sm_error_free(err);
	free(text);
	free(deep);
}

Test(snapshot_meta, file_stamps_and_digests)
{
	char path[] = "/tmp/sm-meta-test-XXXXXX";
	struct snap_file rec;
	sm_error *err = NULL;
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	cr_assert(write(fd, "hello", 5) == 5);
	cr_assert(snapfile_record(&rec, path, true, &err) == 0, "%s", err ? sm_error_string(err) : "");
	cr_expect_str_eq(rec.sha256, "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
	cr_expect(snapfile_verify(&rec, path, true, "rootfs", &err) == 0);
	cr_expect(snapfile_verify(&rec, path, false, "rootfs", &err) == 0);

	/* same size, other bytes: the stamp changed, so the digest is checked and differs */
	cr_assert(pwrite(fd, "jello", 5, 0) == 5);
	cr_expect(snapfile_verify(&rec, path, true, "rootfs", &err) < 0);
	cr_expect(err && sm_error_code(err) == SM_E_SNAPSHOT && strstr(sm_error_string(err), "changed"),
		  "%s", err ? sm_error_string(err) : "");
	sm_error_free(err), err = NULL;

	/* the content back: a new stamp, the same digest: accepted */
	cr_assert(pwrite(fd, "hello", 5, 0) == 5);
	cr_expect(snapfile_verify(&rec, path, true, "rootfs", &err) == 0, "%s", err ? sm_error_string(err) : "");

	cr_assert(write(fd, "!", 1) == 1);
	cr_expect(snapfile_verify(&rec, path, true, "rootfs", &err) < 0);
	cr_expect(err && strstr(sm_error_string(err), "6 bytes, was 5"), "%s", err ? sm_error_string(err) : "");
	sm_error_free(err), err = NULL;
	close(fd);
	unlink(path);
	cr_expect(snapfile_verify(&rec, path, true, "rootfs", &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	sm_error_free(err), err = NULL;

	/* a path a disk spec could not carry is refused when recording */
	cr_expect(snapfile_record(&rec, "/tmp/a,b", false, &err) < 0);
	sm_error_free(err);
}

Test(snapshot_meta, names)
{
	cr_expect(snapshot_name_valid("my-nginx"));
	cr_expect(snapshot_name_valid("a.b_c-1"));
	cr_expect(!snapshot_name_valid(""));
	cr_expect(!snapshot_name_valid(".hidden"));
	cr_expect(!snapshot_name_valid("-x"));
	cr_expect(!snapshot_name_valid("a/b"));
	cr_expect(!snapshot_name_valid("a b"));
	cr_expect(!snapshot_name_valid("name.partial-x\n"));
	char longname[200];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	cr_expect(!snapshot_name_valid(longname));
}

/* ---- snapshot_check over a made-up snapshot directory ---- */

struct fake {
	char dir[64];
	struct vm_asset_paths assets;
	struct snap_meta m;
};

static void put_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "w");

	cr_assert(f && fwrite(data, 1, len, f) == len);
	fclose(f);
}

/* A memory file: header (magic, version 1, page 4096, RAM bytes, id) then RAM as a hole. */
static void put_memory(const char *dir, uint64_t ram, const uint8_t id[16], uint64_t cut)
{
	char path[128];
	uint8_t h[4096] = "SMMEMORY";

	h[8] = 1;
	h[13] = 0x10; /* 4096 */
	for (int i = 0; i < 8; i++)
		h[16 + i] = (uint8_t)(ram >> (8 * i));
	memcpy(h + 24, id, 16);
	snprintf(path, sizeof(path), "%s/memory", dir);
	put_file(path, h, sizeof(h));
	cr_assert(truncate(path, (off_t)(4096 + ram - cut)) == 0);
}

static void fake_make(struct fake *f)
{
	static const uint8_t id[16] = { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
					0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff };
	char path[128], state[64] = "SMSTATE";
	sm_error *err = NULL;

	snprintf(f->dir, sizeof(f->dir), "/tmp/sm-snapcheck-XXXXXX");
	cr_assert(mkdtemp(f->dir));
	snprintf(f->assets.kernel, sizeof(f->assets.kernel), "%s/vmlinux", f->dir);
	snprintf(f->assets.initramfs, sizeof(f->assets.initramfs), "%s/initramfs.cpio", f->dir);
	snprintf(path, sizeof(path), "%s/rootfs.ext4", f->dir);
	put_file(f->assets.kernel, "kernel", 6);
	put_file(f->assets.initramfs, "initramfs", 9);
	put_file(path, "rootfs", 6);
	snprintf(path, sizeof(path), "%s/state", f->dir);
	put_file(path, state, sizeof(state));
	put_memory(f->dir, 64u << 20, id, 0);
	memset(&f->m, 0, sizeof(f->m));
	f->m.memory_mib = 64;
	f->m.vcpus = 1;
	snprintf(f->m.id, sizeof(f->m.id), "00112233445566778899aabbccddeeff");
	cr_assert(snapfile_record(&f->m.kernel, f->assets.kernel, true, &err) == 0);
	cr_assert(snapfile_record(&f->m.initramfs, f->assets.initramfs, true, &err) == 0);
	snprintf(path, sizeof(path), "%s/rootfs.ext4", f->dir);
	cr_assert(snapfile_record(&f->m.rootfs, path, true, &err) == 0);
	snprintf(path, sizeof(path), "%s/metadata.json", f->dir);
	cr_assert(snapmeta_write(path, &f->m, false, &err) == 0);
}

static void fake_expect(struct fake *f, const char *needle)
{
	struct snap_meta m;
	sm_error *err = NULL;
	int rc = snapshot_check(f->dir, &f->assets, &m, &err);

	if (!needle) {
		cr_expect(rc == 0, "refused: %s", err ? sm_error_string(err) : "");
		if (rc == 0)
			snapmeta_release(&m);
	} else {
		cr_expect(rc < 0, "accepted (want '%s')", needle);
		cr_expect(err && sm_error_code(err) == SM_E_SNAPSHOT && strstr(sm_error_string(err), needle),
			  "want SM_E_SNAPSHOT '%s', got %s", needle, err ? sm_error_string(err) : "nothing");
	}
	sm_error_free(err);
}

static void fake_remove(struct fake *f)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	cr_assert(system(cmd) == 0);
}

Test(snapshot_check, intact_then_each_file_broken)
{
	static const uint8_t other[16] = { 1 };
	char path[128];
	struct fake f;

	fake_make(&f);
	fake_expect(&f, NULL);

	put_memory(f.dir, 64u << 20, other, 0);
	fake_expect(&f, "has snapshot id 01000000");
	put_memory(f.dir, 32u << 20, (const uint8_t *)"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff", 0);
	fake_expect(&f, "bytes of RAM; the metadata says");
	put_memory(f.dir, 64u << 20, (const uint8_t *)"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff",
		   4096);
	fake_expect(&f, "truncated");
	put_memory(f.dir, 64u << 20, (const uint8_t *)"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff", 0);
	fake_expect(&f, NULL);

	/* another kernel than the one the snapshot was taken with */
	put_file(f.assets.kernel, "kernel2", 7);
	fake_expect(&f, "the kernel");
	put_file(f.assets.kernel, "kernEL", 6); /* same size: caught by the digest */
	fake_expect(&f, "changed since the snapshot was taken (sha256:");
	put_file(f.assets.kernel, "kernel", 6);
	fake_expect(&f, NULL);

	snprintf(path, sizeof(path), "%s/rootfs.ext4", f.dir);
	put_file(path, "rootfs!", 7);
	fake_expect(&f, "root filesystem");
	put_file(path, "rootfs", 6);

	snprintf(path, sizeof(path), "%s/state", f.dir);
	put_file(path, "tiny", 4);
	fake_expect(&f, "not a state file");
	put_file(path, "SMSTATE-and-more-than-thirty-two-bytes", 38);
	fake_expect(&f, NULL);

	/* metadata.json as a symlink is not followed */
	char meta[128], moved[128];
	snprintf(meta, sizeof(meta), "%s/metadata.json", f.dir);
	snprintf(moved, sizeof(moved), "%s/real.json", f.dir);
	cr_assert(rename(meta, moved) == 0 && symlink(moved, meta) == 0);
	struct snap_meta m;
	sm_error *err = NULL;
	cr_expect(snapshot_check(f.dir, &f.assets, &m, &err) < 0, "a symlinked metadata.json was read");
	sm_error_free(err);
	unlink(meta);
	fake_expect(&f, "metadata.json is missing");
	fake_remove(&f);
}

/*
 * The virtio-fs device (src/devices/virtio/fs.c) through the real
 * virtio-mmio transport and rings: its ID and config space (tag, one
 * request queue), requests split over several buffers on the request
 * queue, FORGET on hiprio with no reply buffer, a chain too short for a
 * FUSE header failing the device, and a snapshot that only restores into
 * the same mount (tag, read-only-ness, policy), and a descriptor limit
 * raised for the whole node table.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "devices/virtio/fs.h"
#include "virtio_driver.h"
#include "base/snapshot.h"

#define WAIT_MS 5000
#define HIPRIO 0
#define REQUESTS 1

static struct vdrv v;
static struct virtio_dev *dev;
static char dir[64];

static struct virtio_dev *make(const char *tag, bool ro, enum virtio_fs_symlinks policy)
{
	struct virtio_fs_options o = { .tag = tag, .read_only = ro, .symlinks = policy };
	int fd = virtio_fs_open_root(dir);

	cr_assert_geq(fd, 0);
	return virtio_fs_create(&v.mem, fd, &o);
}

static void setup(void)
{
	strcpy(dir, "/tmp/sm-vfsdev-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	vdrv_mem_init(&v, 8 << 20, true);
	vdrv_loop_start(&v);
	dev = make("work", false, VIRTIO_FS_SYMLINKS_OPAQUE);
	cr_assert_not_null(dev, "%s", strerror(errno));
	cr_assert(vdrv_attach(&v, dev, ~0ULL, 2) & VIRTIO_STATUS_DRIVER_OK);
}

static void teardown(void)
{
	vdrv_loop_stop(&v);
	vdrv_detach(&v);
	virtio_dev_free(dev);
	vdrv_fini(&v);
	rmdir(dir);
}

TestSuite(virtio_fs_dev, .init = setup, .fini = teardown);

/*
 * One request on queue q: header and args in two readable buffers, the
 * reply into two writable ones (16 + rest bytes). Returns the reply's
 * error; the reply body lands in *body (rest bytes).
 */
static int request(unsigned q, uint32_t op, uint64_t node, const void *args, uint32_t alen, uint32_t rest,
		   void **body)
{
	struct fuse_in_header h = { .len = (uint32_t)(sizeof(h) + alen), .opcode = op, .unique = 42, .nodeid = node };
	uint64_t hg = vdrv_alloc(&v, sizeof(h)), ag = vdrv_alloc(&v, alen ? alen : 1);
	uint64_t og = vdrv_alloc(&v, 16), bg = vdrv_alloc(&v, rest ? rest : 1);
	struct vdrv_buf b[4];
	unsigned n = 0;
	struct fuse_out_header oh;
	uint32_t len;

	b[n++] = (struct vdrv_buf){ .gpa = hg, .len = sizeof(h) };
	if (alen)
		b[n++] = (struct vdrv_buf){ .gpa = ag, .len = alen };
	b[n++] = (struct vdrv_buf){ .gpa = og, .len = 16, .write = true };
	b[n++] = (struct vdrv_buf){ .gpa = bg, .len = rest, .write = true };
	memcpy(vdrv_ptr(&v, hg), &h, sizeof(h));
	if (alen)
		memcpy(vdrv_ptr(&v, ag), args, alen);
	cr_assert_geq(vdrv_add(&v, q, b, n), 0);
	vdrv_kick(&v, q);
	cr_assert_geq(vdrv_wait_used(&v, q, &len, NULL, WAIT_MS), 0);
	cr_assert_geq(len, sizeof(oh));
	memcpy(&oh, vdrv_ptr(&v, og), sizeof(oh));
	cr_assert_eq(oh.len, len);
	cr_assert_eq(oh.unique, 42);
	if (body)
		*body = vdrv_ptr(&v, bg);
	return oh.error;
}

static void init(void)
{
	struct fuse_init_in in = { .major = 7, .minor = 38 };
	struct fuse_init_out out;
	void *body;

	cr_assert_eq(request(REQUESTS, FUSE_INIT, 0, &in, sizeof(in), sizeof(out), &body), 0);
	memcpy(&out, body, sizeof(out));
	cr_expect_eq(out.major, 7);
}

Test(virtio_fs_dev, id_and_config_space)
{
	char tag[36];

	cr_expect_eq(vdrv_reg_read(&v, VIRTIO_MMIO_DEVICE_ID), 26);
	for (unsigned i = 0; i < sizeof(tag); i += 4) {
		uint32_t w = vdrv_reg_read(&v, VIRTIO_MMIO_CONFIG + i);
		memcpy(tag + i, &w, 4);
	}
	cr_expect_eq(memcmp(tag, "work\0\0\0\0", 8), 0);
	cr_expect_eq(vdrv_reg_read(&v, VIRTIO_MMIO_CONFIG + 36), 1, "one request queue");
}

Test(virtio_fs_dev, requests_and_forget_over_the_rings)
{
	struct fuse_mkdir_in mk = { .mode = 0755 };
	uint8_t args[sizeof(mk) + 4];
	struct fuse_entry_out e;
	struct virtio_fs_stats st;
	void *body;

	init();
	memcpy(args, &mk, sizeof(mk));
	memcpy(args + sizeof(mk), "sub", 4);
	cr_assert_eq(request(REQUESTS, FUSE_MKDIR, 1, args, sizeof(args), sizeof(e), &body), 0);
	memcpy(&e, body, sizeof(e));
	cr_expect_eq(e.attr.mode & S_IFMT, S_IFDIR);
	virtio_fs_get_stats(dev, &st);
	cr_expect_eq(st.nodes, 2);
	/* FORGET on hiprio: a readable chain only, used with nothing written */
	struct { struct fuse_in_header h; struct fuse_forget_in in; } fg = {
		{ .len = sizeof(fg), .opcode = FUSE_FORGET, .unique = 43, .nodeid = e.nodeid }, { 1 } };
	uint32_t len = 99;
	cr_assert_geq(vdrv_add_outbuf(&v, HIPRIO, &fg, sizeof(fg)), 0);
	vdrv_kick(&v, HIPRIO);
	cr_assert_geq(vdrv_wait_used(&v, HIPRIO, &len, NULL, WAIT_MS), 0);
	cr_expect_eq(len, 0);
	virtio_fs_get_stats(dev, &st);
	cr_expect_eq(st.nodes, 1);
	cr_expect_eq(st.forgets, 1);
	cr_expect_eq(request(REQUESTS, 9999, 1, NULL, 0, 16, NULL), -ENOSYS);
	cr_assert_not(vdrv_needs_reset(&v));
	char path[96];
	snprintf(path, sizeof(path), "%s/sub", dir);
	cr_expect_eq(rmdir(path), 0);
}

Test(virtio_fs_dev, a_chain_shorter_than_a_header_fails_the_device)
{
	uint8_t junk[8] = { 0 };

	cr_assert_geq(vdrv_add_outbuf(&v, REQUESTS, junk, sizeof(junk)), 0);
	vdrv_kick(&v, REQUESTS);
	for (int i = 0; i < 500 && !vdrv_needs_reset(&v); i++)
		usleep(1000);
	cr_expect(vdrv_needs_reset(&v));
}

/* The device's state section, then a restore of it into other, the device of another mount. */
static int restore_into(struct virtio_dev *other, char *msg, size_t len)
{
	struct snap_writer *w = snap_writer_new();
	struct snap_reader *r;
	struct vmm_err err;
	size_t n;

	snap_section_begin(w, SNAP_TAG_VIRTIO, 0, 1);
	virtio_dev_save(dev, w);
	snap_section_end(w);
	const uint8_t *buf = snap_writer_encode(w, &n);
	cr_assert_not_null(buf);
	cr_assert_eq(snap_reader_parse(&r, "t/state", buf, n, &err), 0);
	snap_writer_free(w);
	cr_assert_eq(snap_section_enter(r, SNAP_TAG_VIRTIO, 0), 0);
	int rc = virtio_dev_restore(other, r);
	snap_reader_error(r, &err);
	snprintf(msg, len, "%s", err.msg);
	snap_reader_free(r);
	return rc;
}

Test(virtio_fs_dev, a_snapshot_restores_only_into_the_same_mount)
{
	char msg[512] = "";
	struct virtio_dev *other;

	init();
	other = make("work", false, VIRTIO_FS_SYMLINKS_OPAQUE);
	cr_expect_eq(restore_into(other, msg, sizeof(msg)), 0, "%s", msg);
	virtio_dev_free(other);
	other = make("play", false, VIRTIO_FS_SYMLINKS_OPAQUE);
	cr_expect_lt(restore_into(other, msg, sizeof(msg)), 0);
	cr_expect(strstr(msg, "tag is 'play'; at the capture it was 'work'"), "%s", msg);
	virtio_dev_free(other);
	other = make("work", true, VIRTIO_FS_SYMLINKS_DENY);
	cr_expect_lt(restore_into(other, msg, sizeof(msg)), 0);
	cr_expect(strstr(msg, "symlinks=deny given; at the capture: read-only no, symlinks=opaque"), "%s", msg);
	virtio_dev_free(other);
}

/* A guest caches every file it creates, each an fd here: a low limit is raised for the whole node table. */
Test(virtio_fs_dev, room_for_every_node_where_the_limit_can_be_raised)
{
	struct rlimit low = { 1024, 1024 }, rl;
	struct virtio_dev *more;

	struct rlimit up = { VIRTIO_FS_MAX_NODES + VIRTIO_FS_MAX_HANDLES, VIRTIO_FS_MAX_NODES + VIRTIO_FS_MAX_HANDLES };
	if (setrlimit(RLIMIT_NOFILE, &up) < 0)
		cr_skip_test("raising RLIMIT_NOFILE's hard limit needs CAP_SYS_RESOURCE: %s", strerror(errno));
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	more = make("more", false, VIRTIO_FS_SYMLINKS_OPAQUE);
	cr_assert_not_null(more);
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	cr_expect_geq(rl.rlim_cur, (rlim_t)VIRTIO_FS_MAX_NODES + VIRTIO_FS_MAX_HANDLES,
		      "RLIMIT_NOFILE %llu: the guest would get EMFILE after that many cached files",
		      (unsigned long long)rl.rlim_cur);
	virtio_dev_free(more);
}

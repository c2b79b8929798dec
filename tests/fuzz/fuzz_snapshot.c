/*
 * Snapshot state files are hostile input: a restore parses the file
 * (header, section table, CRCs) and then each device checks every value
 * it reads against itself and guest RAM. Here a valid state file of a
 * live virtio-balloon device (transport registers, ring addresses and
 * indexes, target, actual, the lent stats buffer) is damaged as the
 * input says and restored into the device, which must refuse it with a
 * reason or come up working; then a few chains go through it.
 *
 * Input: u8 mode, then records of u16 offset (little endian, modulo the
 * length) and u8 XOR mask. Mode 0: the records damage the section's
 * payload, which is then framed anew (valid CRCs), so the device's own
 * checks are what is tested. Otherwise the whole file is damaged and cut
 * to mode/255 of its length: the file parser's checks.
 */
#include <stdlib.h>
#include <string.h>

#include "base/snapshot.h"
#include "devices/virtio/balloon.h"
#include "devices/virtio/virtio.h"
#include "fuzz_dev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TAG SNAP_TAG('F', 'U', 'Z', 'Z')

static struct virtio_dev *fuzz_balloon_create(struct fuzz_dev *f, void *arg)
{
	return virtio_balloon_create(&f->drv.mem);
}

/* A state file holding one section with payload p. */
static const uint8_t *fuzz_frame(struct snap_writer **w, const uint8_t *p, size_t n, size_t *len)
{
	const uint8_t *enc;

	snap_writer_free(*w);
	if (!(*w = snap_writer_new()))
		abort();
	snap_section_begin(*w, TAG, 0, 1);
	snap_put_bytes(*w, p, n);
	snap_section_end(*w);
	if (!(enc = snap_writer_encode(*w, len)))
		abort();
	return enc;
}

/* The device's state after some traffic: the section's payload. */
static uint8_t *fuzz_baseline(struct fuzz_dev *f, size_t *len)
{
	static const uint8_t traffic[] = { 0x00, 0x00, 0x08, 0x00, 1, 0, 0, 0, 2, 0, 0, 0,
					   0x82, 0x00, 0x04, 0x00, 1, 0, 0, 0 };
	struct snap_writer *w = snap_writer_new();
	struct vmm_err err = { { 0 } };
	struct snap_reader *r;
	const uint8_t *enc;
	uint8_t *payload;
	size_t n;

	if (!w)
		abort();
	fuzz_dev_run(f, traffic, sizeof(traffic));
	snap_section_begin(w, TAG, 0, 1);
	virtio_dev_save(f->dev, w);
	snap_section_end(w);
	if (!(enc = snap_writer_encode(w, &n)) || snap_reader_parse(&r, "fuzz/state", enc, n, &err) < 0 ||
	    snap_section_enter(r, TAG, 0) < 0)
		abort();
	*len = snap_section_left(r);
	if (!(payload = malloc(*len)) || snap_get_bytes(r, payload, *len) < 0)
		abort();
	snap_reader_free(r);
	snap_writer_free(w);
	return payload;
}

static void fuzz_restore(struct fuzz_dev *f, const uint8_t *buf, size_t len)
{
	struct vmm_err err = { { 0 } };
	struct snap_reader *r;

	if (snap_reader_parse(&r, "fuzz/state", buf, len, &err) < 0)
		return;
	if (snap_section_enter(r, TAG, 0) == 0 && virtio_dev_restore(f->dev, r) == 0 &&
	    snap_section_leave(r) == 0)
		virtio_dev_restored(f->dev);
	snap_reader_free(r);
}

static void fuzz_damage(uint8_t *buf, size_t len, const uint8_t *data, size_t size)
{
	for (size_t i = 1; len && i + 3 <= size; i += 3)
		buf[(size_t)(data[i] | data[i + 1] << 8) % len] ^= data[i + 2];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_dev *f;
	static struct snap_writer *w;
	static uint8_t *base, *buf;
	static size_t base_len;
	const uint8_t *file;
	size_t len;

	if (!f) {
		f = fuzz_dev_new(fuzz_balloon_create, NULL, (1ull << 1) | (1ull << 2), 3);
		base = fuzz_baseline(f, &base_len);
	}
	if (!size)
		return 0;
	/* From a device the driver has up, as a reset in place finds it. */
	fuzz_dev_run(f, NULL, 0);
	if (data[0] == 0) {
		uint8_t payload[base_len];
		memcpy(payload, base, base_len);
		fuzz_damage(payload, base_len, data, size);
		file = fuzz_frame(&w, payload, base_len, &len);
		fuzz_restore(f, file, len);
	} else {
		file = fuzz_frame(&w, base, base_len, &len);
		len = len * data[0] / 255;
		free(buf);
		if (!(buf = malloc(len + 1)))
			abort();
		memcpy(buf, file, len);
		fuzz_damage(buf, len, data, size);
		fuzz_restore(f, buf, len);
	}
	/* Whatever was restored is used at once, as a restored guest would. */
	for (unsigned q = 0; q < f->nqueues; q++)
		f->dev->ops->queue_notify(f->dev, (uint16_t)q);
	return 0;
}

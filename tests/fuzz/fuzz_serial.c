/*
 * libFuzzer target: the 16550 UART (src/devices/serial.c) under a hostile
 * guest's port I/O: register writes and reads in any order and width,
 * host input filling the receive FIFO, and the UART's snapshot section,
 * saved and restored and also restored from arbitrary bytes. After every
 * step the FIFO stays in bounds and the interrupt line the device drove
 * is the one its registers call for.
 *
 * Input: records of u8 op, u8 len, len bytes. op % 32: 0-9 write the bytes
 * at offset op (8 and 9 are past the range), 10-19 read len bytes at
 * offset op - 10, 20 host input, 21 snapshot round trip, 22 restore the
 * bytes as the UART's section into a second UART; others are skipped.
 */
#include <stdlib.h>
#include <string.h>

#include "devices/serial.h"
#include "base/snapshot.h"

#define TAG SNAP_TAG('U', 'A', 'R', 'T')

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct line {
	bool level;
	unsigned edges, out, rx_ready;
};

static void on_output(void *opaque, uint8_t byte) { ((struct line *)opaque)->out++; }

static void on_irq(void *opaque, bool level)
{
	struct line *l = opaque;

	l->edges += level && !l->level;
	l->level = level;
}

static void on_rx_ready(void *opaque) { ((struct line *)opaque)->rx_ready++; }

static const struct serial_ops ops = { on_output, on_irq, on_rx_ready };

/* The FIFO in bounds, and the line up exactly when an enabled cause is pending. */
static void invariants(const struct serial *s, const struct line *l)
{
	bool want = ((s->ier & 0x01) && s->rx_count) || ((s->ier & 0x02) && s->thri_pending);

	if (s->rx_count > SERIAL_RX_FIFO || s->rx_head >= SERIAL_RX_FIFO || s->irq_level != l->level ||
	    want != l->level)
		abort();
}

/* The section payload p framed as a state file, entered by a reader. */
static struct snap_reader *section_reader(const uint8_t *p, size_t n)
{
	struct snap_writer *w = snap_writer_new();
	struct vmm_err err = { { 0 } };
	struct snap_reader *r = NULL;
	const uint8_t *enc;
	size_t len;

	if (!w)
		abort();
	snap_section_begin(w, TAG, 0, 1);
	snap_put_bytes(w, p, n);
	snap_section_end(w);
	if (!(enc = snap_writer_encode(w, &len)) || snap_reader_parse(&r, "fuzz/state", enc, len, &err) < 0 ||
	    snap_section_enter(r, TAG, 0) < 0)
		abort();
	snap_writer_free(w);
	return r;
}

/* Restores payload into a fresh UART (refused or checked). */
static void restore_into(struct serial *s2, struct line *l2, const uint8_t *p, size_t n)
{
	struct snap_reader *r = section_reader(p, n);

	*l2 = (struct line){ 0 };
	serial_init(s2, &ops, l2);
	if (serial_restore(s2, r) == 0)
		invariants(s2, l2);
	snap_reader_free(r);
}

/* Saved and restored, the UART is the same UART. */
static void round_trip(struct serial *s)
{
	struct snap_writer *w = snap_writer_new();
	struct snap_reader *r;
	struct serial s2;
	struct line l2;
	const uint8_t *enc;
	size_t len;

	if (!w)
		abort();
	snap_section_begin(w, TAG, 0, 1);
	serial_save(s, w);
	snap_section_end(w);
	if (!(enc = snap_writer_encode(w, &len)))
		abort();
	/* The payload follows the file's framing: restore through the reader. */
	struct vmm_err err = { { 0 } };
	if (snap_reader_parse(&r, "fuzz/state", enc, len, &err) < 0 || snap_section_enter(r, TAG, 0) < 0)
		abort();
	l2 = (struct line){ 0 };
	serial_init(&s2, &ops, &l2);
	if (serial_restore(&s2, r) < 0)
		abort();
	invariants(&s2, &l2);
	for (unsigned i = 0; i < s->rx_count; i++)
		if (s->rx[(s->rx_head + i) % SERIAL_RX_FIFO] != s2.rx[(s2.rx_head + i) % SERIAL_RX_FIFO])
			abort();
	if (s2.rx_count != s->rx_count || s2.ier != s->ier || s2.lcr != s->lcr || s2.mcr != s->mcr ||
	    s2.dll != s->dll || s2.dlm != s->dlm || s2.scr != s->scr || s2.fcr != s->fcr ||
	    s2.thri_pending != s->thri_pending || s2.irq_level != s->irq_level)
		abort();
	serial_destroy(&s2);
	snap_reader_free(r);
	snap_writer_free(w);
}

static void step(struct serial *s, struct line *l, uint8_t op, const uint8_t *p, size_t n)
{
	uint8_t out[256];
	struct serial s2;
	struct line l2;

	op %= 32;
	if (op < 10) {
		serial_write(s, op, p, (uint32_t)n);
	} else if (op < 20) {
		serial_read(s, op - 10u, out, (uint32_t)n);
	} else if (op == 20) {
		size_t room = serial_rx_space(s);
		if (serial_input(s, p, n) != (n < room ? n : room))
			abort();
	} else if (op == 21) {
		round_trip(s);
	} else if (op == 22) {
		restore_into(&s2, &l2, p, n);
		serial_destroy(&s2);
	}
	invariants(s, l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct serial s;
	struct line l = { 0 };

	serial_init(&s, &ops, &l);
	for (size_t off = 0; off + 2 <= size;) {
		size_t n = data[off + 1];
		if (n > size - off - 2)
			n = size - off - 2;
		step(&s, &l, data[off], data + off + 2, n);
		off += 2 + n;
	}
	serial_destroy(&s);
	return 0;
}

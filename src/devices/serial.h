/*
 * 16550A UART (8250 family) on an x86 I/O port range: enough for Linux's
 * 8250 driver (polled console output, THRE and receive interrupts, FIFO
 * detection, scratch and loopback tests). Bytes the guest transmits go to
 * an output callback; bytes the host types arrive through serial_input().
 * Transmission is instant: THR is always empty again after a write.
 */
#ifndef SM_DEVICES_SERIAL_H
#define SM_DEVICES_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERIAL_PORTS 8
#define SERIAL_RX_FIFO 64

struct serial_ops {
	/* Guest output, called with the UART's lock held (vCPU thread). */
	void (*output)(void *opaque, uint8_t byte);
	/* Raise (true) or lower the interrupt line. */
	void (*irq)(void *opaque, bool level);
	/* The receive FIFO has room again after being full (vCPU thread). */
	void (*rx_ready)(void *opaque);
};

struct serial {
	pthread_mutex_t lock;
	const struct serial_ops *ops;
	void *opaque;

	uint8_t ier, lcr, mcr, msr, scr, dll, dlm, fcr;
	bool thri_pending; /* THR empty and not yet acknowledged through IIR */
	bool irq_level;
	uint8_t rx[SERIAL_RX_FIFO];
	unsigned rx_head, rx_count;
};

void serial_init(struct serial *s, const struct serial_ops *ops, void *opaque);
void serial_destroy(struct serial *s);

/* Register access at offset 0..7 of the port range (1-byte; wider accesses repeat). */
void serial_read(struct serial *s, uint64_t off, void *data, uint32_t len);
void serial_write(struct serial *s, uint64_t off, const void *data, uint32_t len);

/* Host input: queues up to len bytes, returns how many fit. Any thread. */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);
/* Room in the receive FIFO. */
size_t serial_rx_space(struct serial *s);

/*
 * Snapshot (the UART section): registers, pending THRE, line level and the
 * receive FIFO into the writer's open section; restore reads and checks
 * them from the reader's current section (-EINVAL/-EBADMSG, reason in the
 * reader) and drives the interrupt line to the restored level.
 */
struct snap_writer;
struct snap_reader;
void serial_save(struct serial *s, struct snap_writer *w);
int serial_restore(struct serial *s, struct snap_reader *r);

#endif

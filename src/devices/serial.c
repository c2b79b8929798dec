#include "devices/serial.h"

#include <errno.h>
#include <string.h>

#include "base/snapshot.h"

/* registers (offset from the base port) */
#define UART_RBR_THR 0
#define UART_IER 1
#define UART_IIR_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI 0x01  /* receive data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define IER_MASK 0x0f

#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO_ENABLED 0xc0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

void serial_init(struct serial *s, const struct serial_ops *ops, void *opaque)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->ops = ops;
	s->opaque = opaque;
	s->mcr = MCR_OUT2;
	s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
	s->dll = 0x0c; /* 9600 baud until the driver says otherwise */
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->lock);
}

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO_ENABLED : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thri_pending)
		return fifo | IIR_THRI;
	return fifo | IIR_NO_INT;
}

/*
 * The line follows "an interrupt is pending", so every new cause after an
 * acknowledged one is a fresh edge on the (edge-triggered) ISA IRQ.
 */
static void serial_update_irq(struct serial *s)
{
	bool level = !(serial_iir(s) & IIR_NO_INT);

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (s->ops->irq)
		s->ops->irq(s->opaque, level);
}

static uint8_t rx_pop(struct serial *s)
{
	if (!s->rx_count)
		return 0;
	uint8_t b = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_RX_FIFO;
	s->rx_count--;
	return b;
}

static void rx_push(struct serial *s, uint8_t b)
{
	s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_FIFO] = b;
	s->rx_count++;
}

static void transmit(struct serial *s, uint8_t b)
{
	if (s->mcr & MCR_LOOP) {
		/* Loopback: what we send is what we receive. */
		if (s->rx_count < SERIAL_RX_FIFO)
			rx_push(s, b);
	} else if (s->ops->output) {
		s->ops->output(s->opaque, b);
	}
	s->thri_pending = true;
}

static uint8_t msr_value(const struct serial *s)
{
	if (!(s->mcr & MCR_LOOP))
		return s->msr;
	/* In loopback the modem outputs drive the modem inputs. */
	uint8_t v = 0;
	if (s->mcr & MCR_RTS)
		v |= MSR_CTS;
	if (s->mcr & MCR_DTR)
		v |= MSR_DSR;
	if (s->mcr & MCR_OUT1)
		v |= MSR_RI;
	if (s->mcr & MCR_OUT2)
		v |= MSR_DCD;
	return v;
}

static uint8_t reg_read(struct serial *s, uint64_t off, bool *rx_freed)
{
	uint8_t v;

	switch (off) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		*rx_freed = s->rx_count == SERIAL_RX_FIFO;
		return rx_pop(s);
	case UART_IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case UART_IIR_FCR:
		v = serial_iir(s);
		/* Reading IIR acknowledges a THRE interrupt it reports. */
		if ((v & 0x0f) == IIR_THRI)
			s->thri_pending = false;
		return v;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
	case UART_MSR:
		return msr_value(s);
	default:
		return s->scr;
	}
}

static void reg_write(struct serial *s, uint64_t off, uint8_t v)
{
	switch (off) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			transmit(s, v);
		return;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			return;
		}
		/* Enabling THRI while THR is empty raises it at once, as a 16550 does. */
		if ((v & IER_THRI) && !(s->ier & IER_THRI))
			s->thri_pending = true;
		s->ier = v & IER_MASK;
		return;
	case UART_IIR_FCR:
		s->fcr = v & FCR_ENABLE;
		if (v & FCR_CLEAR_RX) {
			s->rx_head = 0;
			s->rx_count = 0;
		}
		return;
	case UART_LCR:
		s->lcr = v;
		return;
	case UART_MCR:
		s->mcr = v & MCR_MASK;
		return;
	case UART_SCR:
		s->scr = v;
		return;
	default:
		return; /* LSR and MSR are read-only */
	}
}

void serial_read(struct serial *s, uint64_t off, void *data, uint32_t len)
{
	uint8_t *out = data;
	bool rx_freed = false;

	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < len; i++)
		out[i] = off < SERIAL_PORTS ? reg_read(s, off, &rx_freed) : 0xff;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	if (rx_freed && s->ops->rx_ready)
		s->ops->rx_ready(s->opaque);
}

void serial_write(struct serial *s, uint64_t off, const void *data, uint32_t len)
{
	const uint8_t *in = data;

	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < len && off < SERIAL_PORTS; i++)
		reg_write(s, off, in[i]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_count < SERIAL_RX_FIFO)
		rx_push(s, buf[n++]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_rx_space(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = SERIAL_RX_FIFO - s->rx_count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- snapshot ------------------------------------------------------------------ */

void serial_save(struct serial *s, struct snap_writer *w)
{
	pthread_mutex_lock(&s->lock);
	const uint8_t regs[] = { s->ier, s->lcr, s->mcr, s->msr, s->scr, s->dll, s->dlm, s->fcr,
				 s->thri_pending, s->irq_level };
	snap_put_bytes(w, regs, sizeof(regs));
	snap_put_u8(w, (uint8_t)s->rx_count);
	/* The FIFO in order, oldest byte first. */
	for (unsigned i = 0; i < s->rx_count; i++)
		snap_put_u8(w, s->rx[(s->rx_head + i) % SERIAL_RX_FIFO]);
	pthread_mutex_unlock(&s->lock);
}

static int serial_load(struct serial *s, struct snap_reader *r)
{
	uint8_t regs[10], count;

	if (snap_get_bytes(r, regs, sizeof(regs)) < 0 || snap_get_u8(r, &count) < 0)
		return -EBADMSG;
	if (count > SERIAL_RX_FIFO || regs[8] > 1 || regs[9] > 1 || (regs[0] & ~IER_MASK) ||
	    (regs[2] & ~MCR_MASK) || (regs[7] & ~FCR_ENABLE))
		return snap_reader_fail(r, "UART registers or receive FIFO (%u bytes) invalid", count);
	if (snap_get_bytes(r, s->rx, count) < 0)
		return -EBADMSG;
	s->ier = regs[0], s->lcr = regs[1], s->mcr = regs[2], s->msr = regs[3];
	s->scr = regs[4], s->dll = regs[5], s->dlm = regs[6], s->fcr = regs[7];
	s->thri_pending = regs[8];
	s->rx_head = 0;
	s->rx_count = count;
	/* The interrupt controllers were restored with the line as the file
	 * says it was; ours follows the registers. Drive the line to what the
	 * registers call for, always, so KVM's view of it and ours agree even
	 * when a hostile file's saved level contradicts its registers (a
	 * raised line is one edge, which the 8250 driver answers by reading
	 * IIR). */
	s->irq_level = !(serial_iir(s) & IIR_NO_INT);
	if (s->ops->irq)
		s->ops->irq(s->opaque, s->irq_level);
	return 0;
}

int serial_restore(struct serial *s, struct snap_reader *r)
{
	pthread_mutex_lock(&s->lock);
	int rc = serial_load(s, r);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/*
 * The 16550A as Linux's 8250 driver probes and drives it, and the console
 * sink behind it (panic banner detection, Ctrl-A x).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/serial.h"
#include "vmm/console.h"
#include "vmm/vm.h"

struct sink {
	char out[256];
	size_t n;
	bool level;
	int edges;
	int rx_ready;
};

static void out(void *o, uint8_t b)
{
	struct sink *s = o;
	if (s->n < sizeof(s->out))
		s->out[s->n++] = (char)b;
}

static void irq(void *o, bool level)
{
	struct sink *s = o;
	if (level && !s->level)
		s->edges++;
	s->level = level;
}

static void rx_ready(void *o) { ((struct sink *)o)->rx_ready++; }

static const struct serial_ops ops = { .output = out, .irq = irq, .rx_ready = rx_ready };
static struct serial uart;
static struct sink sink;

static void setup(void)
{
	memset(&sink, 0, sizeof(sink));
	serial_init(&uart, &ops, &sink);
}

static void teardown(void) { serial_destroy(&uart); }

static uint8_t in8(unsigned reg)
{
	uint8_t v;
	serial_read(&uart, reg, &v, 1);
	return v;
}

static void out8(unsigned reg, uint8_t v) { serial_write(&uart, reg, &v, 1); }

TestSuite(serial, .init = setup, .fini = teardown);

Test(serial, transmit_and_line_status)
{
	cr_assert_eq(in8(5) & 0x60, 0x60, "THRE and TEMT: always ready");
	out8(0, 'h');
	out8(0, 'i');
	cr_assert_eq(sink.n, 2);
	cr_assert_eq(memcmp(sink.out, "hi", 2), 0);
	cr_assert_eq(in8(5) & 1, 0, "no data ready");
	cr_assert_eq(sink.edges, 0, "no interrupt without IER");
}

Test(serial, scratch_divisor_and_fifo_detection)
{
	out8(7, 0xa5);
	cr_assert_eq(in8(7), 0xa5);
	out8(3, 0x80); /* DLAB */
	out8(0, 0x01);
	out8(1, 0x00);
	cr_assert_eq(in8(0), 0x01);
	out8(3, 0x03);
	cr_assert_eq(sink.n, 0, "divisor writes are not output");
	out8(2, 0x07); /* enable and clear FIFOs */
	cr_assert_eq(in8(2) & 0xc0, 0xc0, "16550A: FIFO bits in IIR");
	out8(2, 0);
	cr_assert_eq(in8(2) & 0xc0, 0);
}

Test(serial, thre_interrupt_follows_the_16550)
{
	cr_assert_eq(in8(2) & 0x0f, 0x01, "no interrupt pending");
	out8(1, 0x02); /* enable THRI: THR is empty, so it fires at once */
	cr_assert(sink.level);
	cr_assert_eq(sink.edges, 1);
	cr_assert_eq(in8(2) & 0x0f, 0x02, "IIR reports THRE");
	cr_assert_not(sink.level, "reading IIR acknowledged it");
	cr_assert_eq(in8(2) & 0x0f, 0x01);
	out8(0, 'x');
	cr_assert(sink.level, "THR empty again after the byte went out");
	cr_assert_eq(sink.edges, 2, "a new edge for the new cause");
	out8(1, 0x00);
	cr_assert_not(sink.level, "masking lowers the line");
}

Test(serial, receive_fifo_interrupts_and_backpressure)
{
	uint8_t data[SERIAL_RX_FIFO + 10];
	memset(data, 'a', sizeof(data));
	out8(1, 0x01);
	cr_assert_eq(serial_input(&uart, data, sizeof(data)), SERIAL_RX_FIFO, "FIFO holds 64");
	cr_assert_eq(serial_rx_space(&uart), 0);
	cr_assert(sink.level);
	cr_assert_eq(in8(2) & 0x0f, 0x04, "receive data available");
	cr_assert_eq(in8(5) & 1, 1);
	cr_assert_eq(in8(0), 'a');
	cr_assert_eq(sink.rx_ready, 1, "room again after being full");
	for (int i = 1; i < SERIAL_RX_FIFO; i++)
		in8(0);
	cr_assert_eq(in8(5) & 1, 0);
	cr_assert_not(sink.level);
	cr_assert_eq(in8(0), 0, "empty FIFO reads 0");
}

Test(serial, loopback_reflects_modem_lines)
{
	out8(4, 0x10 | 0x0a); /* loop, RTS, OUT2 */
	cr_assert_eq(in8(6) & 0xf0, 0x90, "CTS and DCD from RTS and OUT2");
	out8(0, 'L');
	cr_assert_eq(sink.n, 0, "loopback output stays inside");
	cr_assert_eq(in8(0), 'L');
	out8(4, 0x08);
	cr_assert_eq(in8(6) & 0xb0, 0xb0, "DCD, DSR, CTS when connected");
}

Test(serial, hostile_offsets_and_widths)
{
	uint8_t buf[8];
	serial_read(&uart, 8, buf, 1);
	cr_assert_eq(buf[0], 0xff);
	serial_write(&uart, 100, buf, 4);
	serial_read(&uart, 5, buf, 4);
	cr_assert_eq(buf[3] & 0x60, 0x60);
	cr_assert_eq(sink.n, 0);
}

/* ---- console sink ------------------------------------------------------------ */

Test(console, panic_banner_is_seen_across_writes)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct console c;
	struct vmm_err err;
	static const char noise[] = "Kernel pa\nKernel panic - not syncin\nKKernel panic - not ";
	static const char rest[] = "syncing: Attempted to kill init!\n";

	cr_assert_eq(console_open(&c, NULL, "/dev/null", &err), 0);
	c.vm = vm;
	for (size_t i = 0; i < sizeof(noise) - 1; i++)
		console_output(&c, (uint8_t)noise[i]);
	cr_assert_not(vm->guest_panicked, "partial banners are not a panic");
	for (size_t i = 0; i < sizeof(rest) - 1; i++)
		console_output(&c, (uint8_t)rest[i]);
	cr_assert(vm->guest_panicked);
	console_close(&c);
	free(vm);
}

/* A console writing to a fresh temp file; returns the file's fd for reading back. */
static int console_on_file(struct console *c, char *path)
{
	struct vmm_err err;
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(console_open(c, NULL, path, &err), 0, "%s", err.msg);
	return fd;
}

Test(console, output_reaches_the_log_file)
{
	char path[] = "/tmp/sm-console-XXXXXX";
	struct console c;
	struct vmm_err err;
	char buf[64] = "";
	int fd = console_on_file(&c, path);

	for (const char *p = "line one\npartial"; *p; p++)
		console_output(&c, (uint8_t)*p);
	cr_assert_eq(pread(fd, buf, sizeof(buf) - 1, 0), 9, "complete lines are written at once");
	console_close(&c);
	cr_assert_eq(pread(fd, buf, sizeof(buf) - 1, 0), 16, "the rest at close");
	cr_assert_str_eq(buf, "line one\npartial");
	close(fd);
	unlink(path);
	cr_assert_lt(console_open(&c, NULL, "/nonexistent/dir/log", &err), 0);
	cr_assert_not_null(strstr(err.msg, "/nonexistent/dir/log"));
}

Test(console, log_file_stops_growing_at_its_limit)
{
	char path[] = "/tmp/sm-console-XXXXXX";
	struct console c;
	char buf[256] = "";
	int fd = console_on_file(&c, path);

	c.log_max = 20;
	for (int i = 0; i < 1000; i++)
		console_output(&c, (uint8_t)(i % 10 == 9 ? '\n' : 'a' + i % 10));
	console_close(&c);
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	cr_assert_gt(n, 20);
	cr_assert_eq(memcmp(buf, "abcdefghi\nabcdefghi\n", 20), 0);
	cr_assert_not_null(strstr(buf + 20, "console log limit reached"), "%s", buf);
	cr_assert_lt(n, 100, "nothing after the note");
	close(fd);
	unlink(path);
}

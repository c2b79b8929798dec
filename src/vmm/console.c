#include "vmm/console.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/arch.h"
#include "vmm/vm.h"

#define CONSOLE_READ_MAX 64

static void write_all(struct console *c, const char *p, size_t len)
{
	while (len && !c->write_failed) {
		ssize_t n = write(c->out_fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* Reader gone or disk full: the guest keeps running, output is dropped. */
			c->write_failed = true;
			vmm_log("console: output stopped: %s", n < 0 ? strerror(errno) : "short write");
			return;
		}
		p += n;
		len -= (size_t)n;
	}
}

static void console_flush_locked(struct console *c)
{
	static const char cut[] = "\n[supermachine: console log limit reached; further output dropped]\n";

	if (!c->len || c->out_fd < 0)
		goto out;
	if (!c->out_own) {
		write_all(c, c->buf, c->len);
		goto out;
	}
	if (c->written >= c->log_max)
		goto out;
	size_t n = c->len;
	if (n > c->log_max - c->written)
		n = (size_t)(c->log_max - c->written);
	write_all(c, c->buf, n);
	c->written += n;
	if (c->written == c->log_max) {
		write_all(c, cut, sizeof(cut) - 1);
		vmm_log("console: log file reached %llu bytes; further guest output is dropped",
			(unsigned long long)c->log_max);
	}
out:
	c->len = 0;
}

/*
 * The banner starts with the only 'K' in it, so on a mismatch the match
 * restarts at 0 (or 1 if this byte is that 'K'): no KMP table needed.
 */
static void panic_scan(struct console *c, uint8_t byte)
{
	static const char banner[] = CONSOLE_PANIC_BANNER;

	if (byte == (uint8_t)banner[c->panic_match])
		c->panic_match++;
	else
		c->panic_match = byte == (uint8_t)banner[0] ? 1 : 0;
	if (c->panic_match == sizeof(banner) - 1) {
		c->panic_match = 0;
		__atomic_store_n(&c->vm->guest_panicked, true, __ATOMIC_RELEASE);
	}
}

void console_output(void *opaque, uint8_t byte)
{
	struct console *c = opaque;

	if (c->vm)
		panic_scan(c, byte);
	if (c->out_fd < 0)
		return;
	c->buf[c->len++] = (char)byte;
	if (c->out_tty || byte == '\n' || c->len == sizeof(c->buf))
		console_flush_locked(c);
}

static void console_irq(void *opaque, bool level)
{
	struct console *c = opaque;

	vm_irq_line(c->vm, arch_console_irq(), level);
}

static void console_rx_ready(void *opaque)
{
	struct console *c = opaque;

	if (c->in_fd >= 0)
		evloop_mod(c->vm->loop, c->in_fd, EPOLLIN);
}

static const struct serial_ops console_uart_ops = {
	.output = console_output,
	.irq = console_irq,
	.rx_ready = console_rx_ready,
};

static void uart_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	serial_read(opaque, off, data, len);
}

static void uart_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	serial_write(opaque, off, data, len);
}

/* Ctrl-A x stops the VM; Ctrl-A Ctrl-A sends one Ctrl-A. Returns bytes kept in buf. */
static size_t console_escape(struct console *c, uint8_t *buf, size_t n)
{
	size_t out = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t b = buf[i];
		if (c->escape) {
			c->escape = false;
			if (b == 'x' || b == 'X') {
				vm_request_exit(c->vm, VM_EXIT_STOP, "stop from the console (Ctrl-A x)");
				return out;
			}
			if (b != CONSOLE_ESCAPE)
				continue;
		} else if (b == CONSOLE_ESCAPE) {
			c->escape = true;
			continue;
		}
		buf[out++] = b;
	}
	return out;
}

static void console_input(void *opaque, uint32_t events)
{
	struct console *c = opaque;
	uint8_t buf[CONSOLE_READ_MAX];
	size_t room = serial_rx_space(&c->uart);

	if (room == 0) {
		/* Full: wait for the guest to read (console_rx_ready re-arms). */
		evloop_mod(c->vm->loop, c->in_fd, 0);
		return;
	}
	ssize_t n = read(c->in_fd, buf, room < sizeof(buf) ? room : sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		evloop_del(c->vm->loop, c->in_fd);
		c->in_fd = -1;
		return;
	}
	size_t keep = c->raw ? console_escape(c, buf, (size_t)n) : (size_t)n;
	serial_input(&c->uart, buf, keep);
}

static int console_terminal(struct console *c)
{
	struct stat st;

	c->out_fd = STDOUT_FILENO;
	c->out_tty = isatty(STDOUT_FILENO);
	if (fstat(STDIN_FILENO, &st) < 0 || !(isatty(STDIN_FILENO) || S_ISFIFO(st.st_mode) ||
					       S_ISSOCK(st.st_mode)))
		return 0;
	c->in_fd = STDIN_FILENO;
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &c->saved) == 0) {
		struct termios raw = c->saved;
		cfmakeraw(&raw);
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
			c->raw = true;
	}
	return 0;
}

int console_open(struct console *c, struct vm *vm, const char *spec, struct vmm_err *err)
{
	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->out_fd = -1;
	c->in_fd = -1;
	c->log_max = CONSOLE_LOG_MAX;
	if (spec && strcmp(spec, "-") == 0) {
		console_terminal(c);
	} else if (spec) {
		c->out_fd = open(spec, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (c->out_fd < 0)
			return vmm_err_set(err, -errno, "console %s: %s", spec, strerror(errno));
		c->out_own = true;
	}
	serial_init(&c->uart, &console_uart_ops, c);
	if (!vm)
		return 0;
	struct vm_io_handler h = {
		.base = arch_console_port(),
		.len = SERIAL_PORTS,
		.read = uart_read,
		.write = uart_write,
		.opaque = &c->uart,
		.name = "serial",
	};
	int rc = vm_add_pio(vm, &h);
	if (rc < 0)
		return vmm_err_set(err, rc, "console UART: %s", strerror(-rc));
	return 0;
}

int console_start(struct console *c)
{
	if (c->in_fd < 0)
		return 0;
	int rc = evloop_add(c->vm->loop, c->in_fd, EPOLLIN, console_input, c);
	if (rc < 0)
		c->in_fd = -1;
	return rc;
}

void console_flush(struct console *c)
{
	pthread_mutex_lock(&c->uart.lock);
	console_flush_locked(c);
	pthread_mutex_unlock(&c->uart.lock);
}

void console_close(struct console *c)
{
	console_flush(c);
	if (c->raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &c->saved);
	c->raw = false;
	if (c->out_own && c->out_fd >= 0)
		close(c->out_fd);
	c->out_fd = -1;
	serial_destroy(&c->uart);
}

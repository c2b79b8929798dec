/*
 * The guest console: the 8250 UART at the architecture's console port,
 * its output sent to a log file or the terminal, its input read from the
 * terminal. It also watches the output for the kernel's panic banner so
 * the VM's end can be told apart from a plain reboot.
 */
#ifndef SM_VMM_CONSOLE_H
#define SM_VMM_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <termios.h>

#include "base/log.h"
#include "devices/serial.h"

struct vm;

#define CONSOLE_PANIC_BANNER "Kernel panic - not syncing"
#define CONSOLE_ESCAPE 0x01 /* Ctrl-A, then x: stop the VM */
/* A console log file stops growing here: a guest must not fill the host's disk. */
#define CONSOLE_LOG_MAX (64ULL << 20)

struct console {
	struct vm *vm;
	struct serial uart;
	int out_fd;    /* -1: output discarded */
	bool out_own;  /* we opened out_fd */
	bool out_tty;  /* unbuffered: someone is watching */
	int in_fd;     /* -1: no input */
	bool raw;      /* the terminal is in raw mode; saved holds the old mode */
	struct termios saved;
	bool escape;   /* the last input byte was CONSOLE_ESCAPE */
	/* Output buffer and panic matcher, under uart.lock (the output hook). */
	char buf[4096];
	size_t len;
	size_t panic_match;
	bool write_failed;
	uint64_t written; /* bytes written to a log file */
	uint64_t log_max; /* CONSOLE_LOG_MAX */
};

/*
 * spec: "-" for the terminal (stdout; input from stdin if it is a terminal
 * or a pipe), a path for a log file (created or truncated; no input), NULL
 * for no console. Registers the UART on the VM's I/O bus.
 */
int console_open(struct console *c, struct vm *vm, const char *spec, struct vmm_err *err);
/* Starts reading input on the VM's event loop. */
int console_start(struct console *c);
/* Writes out buffered output (after the vCPUs stopped). */
void console_flush(struct console *c);
/* Flushes, restores the terminal, closes what it opened. */
void console_close(struct console *c);

/* For tests: feeds guest output through the sink. */
void console_output(void *opaque, uint8_t byte);

#endif

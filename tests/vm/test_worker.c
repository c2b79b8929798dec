/*
 * How a VM ends, as the worker's exit status and final log line: a guest
 * panic (3), a stop on the control socket (4), a host signal (128+N). The
 * stop case also exercises the control socket's queries on a live VM.
 * (A guest reboot, 0, is every other vm test.)
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker_run.h"

static void start_hanging(struct worker_run *w, const char *kernel)
{
	const char *args[] = { "--cmdline", "quiet smtest=hang", NULL };

	wr_init(w);
	wr_start(w, wr_kernel(kernel), args);
	cr_assert(wr_wait_console(w, "SMTEST hang"), "guest never reached init; stderr:\n%s",
		  wr_read_file(w->stderr_path));
}

static void expect_end(struct worker_run *w, int status, const char *log_line)
{
	wr_wait(w);
	char *err = wr_read_file(w->stderr_path);
	cr_assert_eq(w->status, status, "exit %d (signal %d), expected %d; stderr:\n%s", w->status,
		     w->signal, status, err);
	cr_assert_not_null(strstr(err, log_line), "no '%s' in:\n%s", log_line, err);
	free(err);
}

Test(worker, guest_panic_exits_3)
{
	struct worker_run w;
	const char *args[] = { "--cmdline", "quiet smtest=panic", NULL };

	wr_init(&w);
	/* PID 1 exits: "Kernel panic - not syncing: Attempted to kill init!", then panic=-1 */
	wr_start(&w, wr_kernel("bzImage"), args);
	expect_end(&w, 3, "vm ended: panic");
	char *console = wr_read_file(w.console);
	cr_assert_not_null(strstr(console, "Kernel panic - not syncing"), "%s", console);
	free(console);
	wr_cleanup(&w);
}

Test(worker, control_socket_queries_then_stop_exits_4)
{
	struct worker_run w;
	char reply[512], val[64];

	start_hanging(&w, "vmlinux");
	cr_assert(wr_control(&w, "status", reply, sizeof(reply)));
	cr_assert_not_null(strstr(reply, "ok running vcpus=1 memory_mib=256"), "%s", reply);
	cr_assert_not_null(strstr(reply, "booted=yes"), "%s", reply);

	cr_assert(wr_control(&w, "boot-time", reply, sizeof(reply)));
	cr_assert_eq(strncmp(reply, "ok ", 3), 0, "%s", reply);
	cr_assert(wr_field(reply, "process_to_init_ms", val, sizeof(val)), "%s", reply);
	double total = atof(val);
	cr_assert(wr_field(reply, "kvm_run_to_init_ms", val, sizeof(val)), "%s", reply);
	double guest = atof(val);
	cr_assert_gt(guest, 0);
	cr_assert_gt(total, guest, "process start precedes the first KVM_RUN: %s", reply);

	cr_assert(wr_control(&w, "stats", reply, sizeof(reply)));
	cr_assert(wr_field(reply, "exits", val, sizeof(val)), "%s", reply);
	cr_assert_gt(atoll(val), 0, "%s", reply);
	cr_assert(wr_field(reply, "io", val, sizeof(val)), "%s", reply);
	cr_assert_gt(atoll(val), 0, "the console and the marker are port I/O: %s", reply);
	cr_assert(wr_field(reply, "mmio", val, sizeof(val)), "%s", reply);
	cr_assert_gt(atoll(val), 0, "virtio registers are MMIO: %s", reply);

	cr_assert(wr_control(&w, "no-such-command", reply, sizeof(reply)));
	cr_assert_eq(strncmp(reply, "error unknown command", 21), 0, "%s", reply);

	cr_assert(wr_control(&w, "stop", reply, sizeof(reply)));
	cr_assert_str_eq(reply, "ok stopping");
	expect_end(&w, 4, "vm ended: stop");
	cr_assert_neq(access(w.control, F_OK), 0, "control socket removed at exit");
	wr_cleanup(&w);
}

Test(worker, sigterm_exits_143)
{
	struct worker_run w;

	start_hanging(&w, "vmlinux");
	kill(w.pid, SIGTERM);
	expect_end(&w, 128 + SIGTERM, "vm ended: signal (signal TERM)");
	wr_cleanup(&w);
}

/* Host input on the console reaches the guest's tty (UART receive interrupts). */
Test(worker, console_input_reaches_the_guest)
{
	struct worker_run w;
	const char *args[] = { "--cmdline", "quiet smtest=echo,reboot", NULL };
	char line[256];

	wr_init(&w);
	w.console_stdio = true;
	wr_start(&w, wr_kernel("vmlinux"), args);
	cr_assert(wr_wait_console(&w, "SMTEST echo waiting"), "stderr:\n%s", wr_read_file(w.stderr_path));
	cr_assert_eq(write(w.stdin_fd, "hello-serial\n", 13), 13);
	expect_end(&w, 0, "vm ended: reboot");
	cr_assert(wr_smtest_line(&w, "echo got", line, sizeof(line)), "console:\n%s",
		  wr_read_file(w.console));
	cr_assert_str_eq(line, "SMTEST echo got hello-serial");
	wr_cleanup(&w);
}

/*
 * stream: the event-loop form of exec. The command's stdout and stderr
 * are plain descriptors: poll(2) them with whatever else the program
 * waits on (epoll and libuv work the same way), copy what arrives as it
 * arrives, then collect the exit.
 *
 *   stream IMAGE CMD [ARG...]
 *
 * Each chunk is copied to our stdout or stderr; the exit status is the
 * command's (125 when it could not run).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include <supermachine.h>

/* Copies what is readable on fd to out; 0 at EOF, 1 while open, -1 on error. */
static int stream_copy(int fd, int out)
{
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : -1;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(out, buf + off, (size_t)(n - off));

		if (w < 0 && errno != EINTR)
			return -1;
		off += w > 0 ? w : 0;
	}
	return n > 0;
}

/* Polls the command's stdout and stderr until both reach EOF. */
static int stream_pump(sm_child *c)
{
	struct pollfd p[2] = {
		{ .fd = sm_child_stdout(c), .events = POLLIN },
		{ .fd = sm_child_stderr(c), .events = POLLIN },
	};
	const int to[2] = { STDOUT_FILENO, STDERR_FILENO };

	while (p[0].fd >= 0 || p[1].fd >= 0) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (int i = 0; i < 2; i++) {
			int r;

			if (p[i].fd < 0 || !p[i].revents)
				continue;
			r = stream_copy(p[i].fd, to[i]);
			if (r < 0)
				return -1;
			if (r == 0)
				p[i].fd = -1; /* EOF: poll ignores negative descriptors */
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	sm_outcome out = { 0 };
	sm_error *err = NULL;
	sm_child *c = NULL;
	sm_exec *x = NULL;
	sm_vm *vm = NULL;
	int rc = 125;

	if (argc < 3) {
		fprintf(stderr, "usage: %s IMAGE CMD [ARG...]\n", argv[0]);
		return 2;
	}
	sm_set_log(sm_log_stderr, NULL, SM_LOG_WARN);
	vm = sm_vm_start(argv[1], NULL, &err);
	if (!vm)
		goto fail;
	x = sm_exec_new(vm);
	if (!x || sm_exec_argv(x, (const char *const *)argv + 2) < 0)
		goto fail;
	c = sm_exec_spawn(x, &err);
	if (!c || sm_child_close_stdin(c) < 0)
		goto fail;
	if (stream_pump(c) < 0) {
		perror("stream: read");
		goto done;
	}
	if (sm_child_wait(c, &out, &err) < 0)
		goto fail;
	fprintf(stderr, "stream: status %d, signal %d, %llu us\n", out.status, out.signal,
		(unsigned long long)out.duration_us);
	rc = out.status >= 0 ? out.status : 128 + out.signal;
	sm_outcome_free(&out);
	goto done;
fail:
	fprintf(stderr, "stream: %s\n", err ? sm_error_string(err) : "out of memory");
	sm_error_free(err);
done:
	sm_child_free(c);
	sm_exec_free(x);
	sm_vm_free(vm);
	return rc;
}

/*
 * PID 1 for the vsock vm tests. smvsock= on the kernel command line lists
 * what to run, comma separated, each in its own process:
 *
 *   echo:PORT    listen on vsock PORT; echo every connection back until EOF
 *   dial:PORT    connect to the host (CID 2) PORT and echo that connection
 *
 * It reports "SMTEST vsock ready" once every listener is up, then serves
 * until the host stops the VM.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <linux/vm_sockets.h>

#include "devguest.h"

static char buf[256 * 1024];

static void echo_fd(int fd)
{
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));
			if (w <= 0)
				return;
			off += w;
		}
	}
	shutdown(fd, SHUT_WR);
}

static int vsock_listen(unsigned port)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		say("vsock listen port=%u error=%d", port, errno);
		return -1;
	}
	return fd;
}

static void serve(int lfd)
{
	signal(SIGCHLD, SIG_IGN); /* per-connection children reap themselves */
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (fork() == 0) {
			echo_fd(fd);
			_exit(0);
		}
		close(fd);
	}
}

static void dial(unsigned port)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = port };
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

	/* The host test may not be listening yet: retry for a while. */
	for (int i = 0; i < 600; i++) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			say("vsock dialed port=%u", port);
			echo_fd(fd);
			return;
		}
		close(fd);
		fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		usleep(100 * 1000);
	}
	say("vsock dial port=%u error=%d", port, errno);
}

static void start(char *item)
{
	char *colon = strchr(item, ':');
	unsigned port = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
	int lfd = -1;

	if (!colon || !port)
		return;
	*colon = 0;
	if (strcmp(item, "echo") == 0 && (lfd = vsock_listen(port)) < 0)
		return;
	if (fork() != 0) {
		if (lfd >= 0)
			close(lfd);
		return;
	}
	if (lfd >= 0)
		serve(lfd);
	else if (strcmp(item, "dial") == 0)
		dial(port);
	_exit(0);
}

int main(void)
{
	char spec[256];

	guest_mounts();
	signal(SIGPIPE, SIG_IGN);
	if (!guest_param("smvsock", spec, sizeof(spec))) {
		say("vsock error=no-smvsock");
		guest_reboot();
	}
	for (char *save = NULL, *p = strtok_r(spec, ",", &save); p; p = strtok_r(NULL, ",", &save))
		start(p);
	say("vsock ready");
	for (;;)
		if (wait(NULL) < 0 && errno == ECHILD)
			pause();
}

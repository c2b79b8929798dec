/*
 * The host's side of the agent protocol (docs/protocol.md): dialing the
 * agent, the hello, and the one-request connections (files, TCP bridge,
 * ping, clock, entropy, quiesce, listener probe, heartbeat, shutdown,
 * workload signal). Exec is in exec.h.
 *
 * Everything the agent sends is treated as hostile: a malformed frame,
 * a frame of the wrong type or an oversized answer ends the call with
 * SM_E_PROTOCOL and the connection is closed; a connection that closes
 * before the answer is SM_E_VM_DIED.
 */
#ifndef SM_LIB_AGENT_H
#define SM_LIB_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <supermachine.h>

#include "proto/proto.h"

#define AGENT_CONNECT_TIMEOUT_MS 10000

/* Where an agent listens. */
struct agent_target {
	char path[108];  /* a unix socket: a worker's vsock socket, or an --agent-only listener */
	uint32_t port;   /* vsock port for the CONNECT handshake; 0 = the socket is the agent itself */
	int timeout_ms;  /* bound on connecting and the handshake; 0 = AGENT_CONNECT_TIMEOUT_MS */
};

int agent_target_init(struct agent_target *t, const char *path, uint32_t port, sm_error **err);

/*
 * Connects to guest vsock port through a worker's hybrid vsock socket
 * (write "CONNECT <port>\n", read "OK <hostport>\n"); returns the fd, on
 * which bytes then flow to the guest's listener, or -1.
 */
int exec_connect_vsock(const char *uds, uint32_t port, int timeout_ms, sm_error **err);

struct agent_conn {
	int fd;
	struct proto_reader rd;
	struct proto_buf out;
	uint32_t caps;   /* from the agent's HELLO */
	bool hello_seen;
	bool refused;    /* the agent itself answered with an ERROR */
};

/*
 * Dials t and queues our HELLO; the request goes right behind it (one
 * round trip). exact: read nothing past the answer, for a connection that
 * becomes a raw byte stream.
 */
int agent_open(struct agent_conn *c, const struct agent_target *t, bool exact, sm_error **err);
void agent_close(struct agent_conn *c);
/* Sends what is queued; deadline_ns is CLOCK_MONOTONIC, 0 = none. */
int agent_send(struct agent_conn *c, uint64_t deadline_ns, sm_error **err);
/*
 * Reads one frame without blocking: 1 (a frame), 0 (would block), -1 with
 * *err. Checks the agent's HELLO first; an ERROR frame becomes *err.
 */
int agent_recv_nb(struct agent_conn *c, struct proto_frame *f, sm_error **err);
/* Like agent_recv_nb, but waits up to deadline_ns (0 = forever). 1 or -1. */
int agent_recv(struct agent_conn *c, struct proto_frame *f, uint64_t deadline_ns, sm_error **err);

/* CLOCK_MONOTONIC in ns, and that plus ms (0 ms = no deadline = 0). */
uint64_t agent_now_ns(void);
uint64_t agent_deadline(uint32_t ms);
/* A frame that should not be there: SM_E_PROTOCOL naming it. */
int agent_unexpected(sm_error **err, const struct proto_frame *f, const char *during);

int agent_ping(const struct agent_target *t, struct proto_pong *pong, sm_error **err);
int agent_set_time(const struct agent_target *t, uint64_t realtime_ns, sm_error **err);
int agent_add_entropy(const struct agent_target *t, const void *p, size_t n, sm_error **err);
/*
 * RESUME (after a restore or reset, or after a capture of a running VM):
 * sets the guest clock to realtime_ns, adds n bytes of entropy and has
 * the guest reseed its CRNG, then unseals what QUIESCE sealed; *pong
 * gets the guest's clocks after it. -1 on failure, AGENT_REFUSED when
 * the agent answered with an error (asking again cannot help).
 */
#define AGENT_REFUSED (-2)
int agent_resume(const struct agent_target *t, uint64_t realtime_ns, const void *entropy, size_t n,
		 struct proto_pong *pong, sm_error **err);
/*
 * QUIESCE before a capture: syncs, waits settle_ms, and seals the guest
 * (its workload and execs frozen, exec and file requests held) until the
 * next agent_resume: whoever quiesces a VM that keeps running resumes it.
 */
int agent_quiesce(const struct agent_target *t, uint32_t settle_ms, sm_error **err);
/* port 0: any. *found_port: the listening port found. */
int agent_probe_listen(const struct agent_target *t, uint16_t port, bool *found, uint16_t *found_port,
		       sm_error **err);
int agent_heartbeat(const struct agent_target *t, uint64_t *count, sm_error **err);
int agent_shutdown(const struct agent_target *t, uint32_t grace_ms, sm_error **err);
int agent_signal_workload(const struct agent_target *t, int sig, sm_error **err);

/* Streams len bytes (or src_fd to its end) into a guest file with mode. */
int agent_write_file(const struct agent_target *t, const char *path, const void *data, size_t len,
		     uint32_t mode, sm_error **err);
int agent_write_file_fd(const struct agent_target *t, const char *path, int src_fd, uint32_t mode,
			sm_error **err);
/* A whole guest file into memory (NUL-terminated), refusing more than max bytes. */
int agent_read_file(const struct agent_target *t, const char *path, size_t max, void **data, size_t *len,
		    sm_error **err);
int agent_read_file_fd(const struct agent_target *t, const char *path, int dst_fd, sm_error **err);

/* A byte stream to 127.0.0.1:port in the guest: returns its fd, or -1. */
int agent_connect_tcp(const struct agent_target *t, uint16_t port, sm_error **err);

#endif

/*
 * The host <-> guest agent wire protocol (docs/protocol.md).
 *
 * Shared by the host library (glibc) and the guest /init (musl, static):
 * this file and proto.c use nothing but libc. Every decoder treats its
 * input as hostile: lengths, counts and strings are bounded and checked,
 * and a frame that is not exactly what its type says is rejected whole.
 */
#ifndef SM_PROTO_H
#define SM_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC 0x47414d53u /* "SMAG" little-endian */
#define PROTO_VERSION 3u /* 2: RESUME; 3: QUIESCE seals the guest until RESUME, which reseeds its CRNG */
#define PROTO_AGENT_PORT 1028u
/* Where /init finds its configuration: INIT_CONFIG_NAME in the initramfs, "/" + it at run time. */
#define INIT_CONFIG_NAME "sm/config"

#define PROTO_HDR_SIZE 8u
#define PROTO_MAX_PAYLOAD (1u << 20) /* hard limit on any frame's payload */
#define PROTO_CHUNK (64u << 10)      /* what senders put in one data frame */
#define PROTO_MAX_STR (128u << 10)   /* one argument or env entry, like MAX_ARG_STRLEN */
#define PROTO_MAX_PATH 4096u
#define PROTO_MAX_NAME 256u          /* user, hostname, fstype */
#define PROTO_MAX_LIST 4096u         /* argv or env entries */
#define PROTO_MAX_CHAIN 16u          /* chained commands in one exec */
#define PROTO_MAX_STAGED 64u         /* staged files in one exec */
#define PROTO_MAX_VOLUMES 32u       /* ext4 volumes and virtio-fs mounts together */
#define PROTO_MAX_ENTROPY 4096u
#define PROTO_MIN_RESUME_ENTROPY 16u   /* RESUME must carry at least this much */
#define PROTO_RESUME_ENTROPY 64u       /* what the host sends */
#define PROTO_MAX_MESSAGE 4096u      /* an error frame's text */
#define PROTO_MAX_SETTLE_MS 60000u
#define PROTO_MAX_GRACE_MS 600000u

enum proto_type {
	PROTO_HELLO = 1,

	/* requests: the first frame after HELLO picks what the connection does */
	PROTO_EXEC = 16,
	PROTO_WRITE_FILE = 17,
	PROTO_READ_FILE = 18,
	PROTO_TCP_CONNECT = 19,
	PROTO_PING = 20,
	PROTO_SET_TIME = 21,
	PROTO_ADD_ENTROPY = 22,
	PROTO_QUIESCE = 23,
	PROTO_PROBE_LISTEN = 24,
	PROTO_HEARTBEAT = 25,
	PROTO_SHUTDOWN = 26,
	PROTO_SIGNAL_WORKLOAD = 27,
	PROTO_RESUME = 28,          /* after a snapshot restore: clock, entropy, CRNG reseed, thaw (v2, v3) */

	/* streams and controls inside a request */
	PROTO_STDIN = 32,
	PROTO_STDOUT = 33,
	PROTO_STDERR = 34,
	PROTO_RESIZE = 35,
	PROTO_SIGNAL = 36,
	PROTO_FILE = 37,
	PROTO_DATA = 38,

	/* replies */
	PROTO_ERROR = 48,
	PROTO_OK = 49,
	PROTO_PONG = 50,
	PROTO_STARTED = 51,
	PROTO_EXIT = 52,
	PROTO_FILE_INFO = 53,
	PROTO_PROBE_RESULT = 54,
	PROTO_COUNTER = 55,

	/* not on a connection: the guest configuration file /init reads */
	PROTO_GUEST_CONFIG = 64,
};

/* The end of a stream (stdin, stdout, stderr, file data); only on those types. */
#define PROTO_FLAG_EOF 0x01u

/* HELLO capabilities the agent reports */
#define PROTO_CAP_CGROUP 0x01u  /* execs run in their own cgroup v2 (cgroup.kill) */
#define PROTO_CAP_PID1 0x02u    /* the agent is the VM's init, not a host test process */

/* EXEC flags */
#define PROTO_EXEC_TTY 0x01u

/* GUEST_CONFIG flags */
#define PROTO_CFG_SHUTDOWN_ON_EXIT 0x01u /* power off when the workload exits */
#define PROTO_CFG_NETWORK 0x02u          /* configure eth0 */
#define PROTO_CFG_VERBOSE 0x04u

/* volume flags */
#define PROTO_VOL_RO 0x01u

/* EXIT how */
#define PROTO_EXITED 0u
#define PROTO_SIGNALED 1u

struct proto_frame {
	uint8_t type;
	uint8_t flags;
	uint32_t len;
	const uint8_t *payload; /* len bytes; valid until the reader is used again */
};

/* ---- encoding ------------------------------------------------------------ */

/*
 * A growable byte buffer, also used as a send queue: [off, len) is what
 * has not been written yet. Allocation failures are sticky (failed) and
 * reported by proto_frame_end(), so encoders need not check every put.
 */
struct proto_buf {
	uint8_t *data;
	size_t len, cap, off;
	bool failed;
};

void proto_buf_free(struct proto_buf *b);
static inline size_t proto_buf_pending(const struct proto_buf *b) { return b->len - b->off; }
void proto_buf_consume(struct proto_buf *b, size_t n);
/*
 * Sends what is pending without blocking: 0 when all is sent, 1 when it
 * would block, -errno. On a pipe it is a plain write(): the pipe must be
 * non-blocking and SIGPIPE ignored.
 */
int proto_buf_send(struct proto_buf *b, int fd);

/* write() until all of p is written (EINTR retried): 0 or -errno. For blocking fds. */
int proto_write_all(int fd, const void *p, size_t n);

size_t proto_frame_begin(struct proto_buf *b, uint8_t type, uint8_t flags);
/* Patches the length; -E2BIG (frame dropped) past PROTO_MAX_PAYLOAD, -ENOMEM. */
int proto_frame_end(struct proto_buf *b, size_t start);
void proto_put_u8(struct proto_buf *b, uint8_t v);
void proto_put_u16(struct proto_buf *b, uint16_t v);
void proto_put_u32(struct proto_buf *b, uint32_t v);
void proto_put_u64(struct proto_buf *b, uint64_t v);
void proto_put_bytes(struct proto_buf *b, const void *p, size_t n);
/* u32 length (including the NUL) + bytes + NUL; NULL encodes as "". */
void proto_put_str(struct proto_buf *b, const char *s);

/* A frame whose payload is the given bytes (stream data, entropy). */
int proto_encode_data(struct proto_buf *b, uint8_t type, uint8_t flags, const void *p, size_t n);
/* A frame with no payload (PING, HEARTBEAT, OK). */
int proto_encode_empty(struct proto_buf *b, uint8_t type);
/* A frame whose payload is one u32 (SIGNAL, SIGNAL_WORKLOAD, QUIESCE, PROBE_LISTEN, TCP_CONNECT, STARTED). */
int proto_encode_u32(struct proto_buf *b, uint8_t type, uint32_t v);
/* A frame whose payload is one u64 (SET_TIME, COUNTER). */
int proto_encode_u64(struct proto_buf *b, uint8_t type, uint64_t v);

/* ---- decoding ------------------------------------------------------------ */

/*
 * Checks an 8-byte header: known type, flags that type allows, reserved
 * bytes zero, length within PROTO_MAX_PAYLOAD. 0 or -EPROTO.
 */
int proto_hdr_decode(const uint8_t *p, struct proto_frame *f);

/*
 * Finds one frame at the start of p[0, n): 1 and *used set when it is
 * whole, 0 when more bytes are needed, -EPROTO when the header is bad.
 */
int proto_frame_parse(const uint8_t *p, size_t n, struct proto_frame *f, size_t *used);

/* Payload decoders: 0, -EPROTO (malformed or out of bounds) or -ENOMEM. */
int proto_decode_empty(const struct proto_frame *f);
int proto_decode_u32(const struct proto_frame *f, uint32_t *v);
int proto_decode_u64(const struct proto_frame *f, uint64_t *v);

/* ---- messages ------------------------------------------------------------ */

struct proto_hello {
	uint32_t magic, version, caps;
};
int proto_encode_hello(struct proto_buf *b, const struct proto_hello *h);
int proto_decode_hello(const struct proto_frame *f, struct proto_hello *h);

/*
 * An exec request. Strings point into the frame's payload (the wire
 * carries their NUL), arrays into one allocation that
 * proto_exec_release() frees; "" means "the image's default".
 */
struct proto_exec {
	uint32_t flags;            /* PROTO_EXEC_TTY */
	uint16_t rows, cols;       /* window size in tty mode */
	uint32_t timeout_ms;       /* 0 = none */
	const char *cwd;           /* absolute, or "" */
	const char *user;          /* "name", "uid", "name:group", "uid:gid", or "" */
	uint32_t nenv;
	const char **env;          /* "KEY=VALUE", NULL-terminated, added to the image's */
	uint32_t ncmds;            /* 1..PROTO_MAX_CHAIN, run while each exits 0 */
	const char ***cmds;        /* each a NULL-terminated argv */
	uint32_t nfiles;           /* FILE + DATA... frames that follow the request */
	void *mem;
};
int proto_encode_exec(struct proto_buf *b, const struct proto_exec *e);
int proto_decode_exec(const struct proto_frame *f, struct proto_exec *e);
void proto_exec_release(struct proto_exec *e);

/* FILE (a staged file's header) and WRITE_FILE: DATA frames follow, the last with EOF. */
struct proto_file {
	const char *path; /* absolute */
	uint32_t mode;    /* permission bits, <= 07777 */
};
int proto_encode_file(struct proto_buf *b, uint8_t type, const struct proto_file *p);
int proto_decode_file(const struct proto_frame *f, struct proto_file *p);

/* READ_FILE: the path alone. */
int proto_encode_path(struct proto_buf *b, uint8_t type, const char *path);
int proto_decode_path(const struct proto_frame *f, const char **path);

struct proto_resize {
	uint16_t rows, cols;
};
int proto_encode_resize(struct proto_buf *b, const struct proto_resize *r);
int proto_decode_resize(const struct proto_frame *f, struct proto_resize *r);

/* SIGNAL and SIGNAL_WORKLOAD carry a signal number in 1..64. */
int proto_decode_signal(const struct proto_frame *f, int *sig);
/* TCP_CONNECT: a port in 1..65535. */
int proto_decode_port(const struct proto_frame *f, uint16_t *port);
/* PROBE_LISTEN: a port in 0..65535 (0 = any). */
int proto_decode_probe(const struct proto_frame *f, uint16_t *port);
/* QUIESCE: settle time in ms, <= PROTO_MAX_SETTLE_MS. */
int proto_decode_quiesce(const struct proto_frame *f, uint32_t *settle_ms);
/* ADD_ENTROPY: 1..PROTO_MAX_ENTROPY bytes. */
int proto_decode_entropy(const struct proto_frame *f, const uint8_t **p, size_t *n);

/*
 * RESUME: the first request after a restore or reset. The agent sets
 * CLOCK_REALTIME, adds the entropy (credited) and answers PONG with its
 * clocks after the change.
 */
struct proto_resume {
	uint64_t realtime_ns;
	const uint8_t *entropy; /* PROTO_MIN_RESUME_ENTROPY..PROTO_MAX_ENTROPY bytes, into the payload */
	size_t nentropy;
};
int proto_encode_resume(struct proto_buf *b, const struct proto_resume *r);
int proto_decode_resume(const struct proto_frame *f, struct proto_resume *r);

struct proto_shutdown {
	uint32_t grace_ms; /* how long the workload gets after its stop signal */
};
int proto_encode_shutdown(struct proto_buf *b, const struct proto_shutdown *s);
int proto_decode_shutdown(const struct proto_frame *f, struct proto_shutdown *s);

struct proto_error {
	uint32_t err;        /* a positive errno */
	const char *message; /* printable text, into the payload */
};
int proto_encode_error(struct proto_buf *b, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int proto_decode_error(const struct proto_frame *f, struct proto_error *e);

struct proto_exit {
	uint8_t how;          /* PROTO_EXITED or PROTO_SIGNALED */
	uint8_t timed_out;
	int32_t code;         /* exit status 0..255, or the signal 1..64 */
	uint32_t chain_index; /* the command of the chain that ended the exec */
	uint64_t duration_ns;
	uint64_t peak_rss_kib;
};
int proto_encode_exit(struct proto_buf *b, const struct proto_exit *x);
int proto_decode_exit(const struct proto_frame *f, struct proto_exit *x);

struct proto_file_info {
	uint64_t size; /* at open time; the DATA frames are what counts */
	uint32_t mode; /* st_mode */
};
int proto_encode_file_info(struct proto_buf *b, const struct proto_file_info *i);
int proto_decode_file_info(const struct proto_frame *f, struct proto_file_info *i);

struct proto_pong {
	uint64_t realtime_ns, monotonic_ns;
};
int proto_encode_pong(struct proto_buf *b, const struct proto_pong *p);
int proto_decode_pong(const struct proto_frame *f, struct proto_pong *p);

struct proto_probe_result {
	uint8_t found;
	uint16_t port; /* the listening port found (the asked one, or the first) */
};
int proto_encode_probe_result(struct proto_buf *b, const struct proto_probe_result *r);
int proto_decode_probe_result(const struct proto_frame *f, struct proto_probe_result *r);

/* ---- guest configuration (/sm/config in the initramfs) --------------------- */

/* a virtio-fs share: its device is the tag, and there is no block device to wait for */
#define PROTO_FSTYPE_VIRTIOFS "virtiofs"

/* how the guest's init begins each console line it logs: "sm-init[PID]: " */
#define PROTO_INIT_LOG_PREFIX "sm-init["

/* a share's tag: 1..WORKER_MOUNT_TAG_MAX of A-Z a-z 0-9 . _ - */
bool proto_share_tag_ok(const char *tag);

struct proto_volume {
	const char *device; /* "/dev/vdb", or the tag of a PROTO_FSTYPE_VIRTIOFS share */
	const char *path;   /* absolute mount point in the guest */
	const char *fstype; /* "" = ext4 */
	uint32_t flags;     /* PROTO_VOL_RO */
};

struct proto_config {
	uint32_t flags;       /* PROTO_CFG_* */
	const char *hostname;
	const char *root_dev; /* "" = stay on the initramfs */
	const char *root_fstype;
	uint32_t nenv;
	const char **env;     /* the image's Env */
	uint32_t nargv;
	const char **argv;    /* Entrypoint + Cmd; none = no workload */
	const char *workdir;
	const char *user;
	uint32_t stop_signal; /* 0 = SIGTERM */
	uint32_t nvolumes;
	struct proto_volume *volumes;
	uint8_t ip[4], gateway[4], dns[4];
	uint8_t prefix_len;
	uint32_t agent_port;  /* 0 = PROTO_AGENT_PORT */
	void *mem;
};
int proto_encode_config(struct proto_buf *b, const struct proto_config *c);
int proto_decode_config(const struct proto_frame *f, struct proto_config *c);
void proto_config_release(struct proto_config *c);

/* ---- reading frames from a file descriptor -------------------------------- */

struct proto_reader {
	uint8_t *buf;
	size_t cap, start, end; /* buffered bytes are buf[start, end) */
	bool exact;             /* never read past the current frame */
};

/* exact: for a connection that turns into a raw byte stream after a frame. */
void proto_reader_init(struct proto_reader *r, bool exact);
void proto_reader_free(struct proto_reader *r);
/*
 * 1 and *f when a frame is whole (payload valid until the next call), 0
 * when fd would block, -EPIPE at a clean end of stream (between frames),
 * -EPROTO for a bad header or an end inside a frame, -errno for errors.
 */
int proto_reader_next(struct proto_reader *r, int fd, struct proto_frame *f);
/* Bytes read past the last frame (only without exact). */
static inline size_t proto_reader_buffered(const struct proto_reader *r) { return r->end - r->start; }
static inline const uint8_t *proto_reader_data(const struct proto_reader *r) { return r->buf + r->start; }
/*
 * True when a whole frame (or a bad header) is already buffered: poll()
 * on the fd will not report it, so call proto_reader_next() first.
 */
bool proto_reader_ready(const struct proto_reader *r);

/* A short name for a frame type, for log lines ("exec", "stdout"); "?" if unknown. */
const char *proto_type_name(uint8_t type);

#endif

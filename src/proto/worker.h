/*
 * The contract between libsupermachine and supermachine-worker, as
 * src/proto/proto.h is the contract between the library and the guest:
 * what a worker is launched with (its command line, built and parsed by
 * the same code), its control socket's commands and replies as typed
 * values, its exit statuses, the files of a snapshot it writes and
 * reads, and the I/O port the guest's /init marks its progress on.
 * Plain C and libc: the library, the worker, the VMM and the guest's
 * /init all include it. docs/vmm.md describes the same in prose.
 */
#ifndef SM_PROTO_WORKER_H
#define SM_PROTO_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- the launch: the worker's command line, built and parsed here ---- */

#define WORKER_MAX_DISKS 12
#define WORKER_DISK_ID_MAX 20
#define WORKER_MIN_MEMORY_MIB 64
#define WORKER_MAX_MEMORY_MIB (1ull << 24)
#define WORKER_MAX_VCPUS 32
#define WORKER_DEFAULT_MEMORY_MIB 256
#define WORKER_DEFAULT_CMDLINE "quiet"
#define WORKER_MAX_MOUNTS 16
/*
 * virtio devices a VM has room for (one GSI each, 5..23), and those every
 * VM has besides its disks and mounts (rng, net, vsock, balloon): a launch
 * fits when disks + mounts + WORKER_FIXED_DEVICES <= this.
 */
#define WORKER_MAX_VIRTIO_DEVICES 19
#define WORKER_FIXED_DEVICES 4
/* a virtio-fs tag: its config field is 36 bytes, not NUL-terminated when full */
#define WORKER_MOUNT_TAG_MAX 36
/* directories bound into a jail (--jail-path) */
#define WORKER_JAIL_MAX_PATHS 4
/* the most arguments worker_launch_argv() makes: each option twice, disks, mounts and jail paths twice each */
#define WORKER_MAX_ARGS (2 * (20 + WORKER_MAX_DISKS + WORKER_MAX_MOUNTS + WORKER_JAIL_MAX_PATHS) + 2)
/*
 * A jailed worker's default uid and gid (docs/security.md): one per VM,
 * WORKER_JAIL_ID_BASE plus a hash of the VM's id modulo
 * WORKER_JAIL_ID_COUNT; far above login users and the usual subuid ranges.
 */
#define WORKER_JAIL_ID_BASE 0x5e000000u
#define WORKER_JAIL_ID_COUNT 65536u

struct worker_disk {
	const char *path;
	bool read_only;
	const char *id;  /* the guest's serial, 1..WORKER_DISK_ID_MAX bytes; NULL: none */
	char *owned;     /* parsed from a spec: the copy path and id point into */
};

/*
 * What a shared directory's symlinks may do (docs/mounts.md). Opaque:
 * the guest may create symlinks, stored verbatim and never resolved by
 * the host; host symlinks leading outside the root are refused at
 * LOOKUP. Deny: as opaque, and the guest cannot create any (EPERM).
 * Follow: host symlinks leading outside are followed (one trusted tenant).
 */
enum worker_symlinks {
	WORKER_SYMLINKS_OPAQUE = 0,
	WORKER_SYMLINKS_DENY,
	WORKER_SYMLINKS_FOLLOW,
};

/* A host directory shared over virtio-fs: one device each, in the order given. */
struct worker_mount {
	const char *tag;  /* what the guest mounts: 1..WORKER_MOUNT_TAG_MAX printable bytes, no ',' or blank */
	const char *dir;  /* the host directory: an absolute path without ',' */
	bool read_only;
	enum worker_symlinks symlinks;
	char *owned;      /* parsed from a spec: the copy tag and dir point into */
};

/*
 * A jail (docs/security.md): set when root is the directory the worker
 * pivots into. The launcher starts such a worker in the namespaces
 * worker_jail_clone_flags() names; the worker then mounts a tmpfs on root,
 * binds paths into it at the same paths, pivots, drops to uid and gid
 * and sets its rlimits.
 */
struct worker_jail {
	const char *root;
	uint32_t uid, gid;
	const char *paths[WORKER_JAIL_MAX_PATHS]; /* bound read-write at the same path (snapshot dirs) */
	unsigned npaths;
};

/* What a worker runs: a boot (kernel) or a restore (snapshot directory), and its devices. */
struct worker_launch {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	uint64_t memory_mib;
	unsigned vcpus;
	struct worker_disk disks[WORKER_MAX_DISKS];
	unsigned ndisks;
	struct worker_mount mounts[WORKER_MAX_MOUNTS];
	unsigned nmounts;
	bool net;
	const char *vsock;
	bool balloon;
	const char *console;
	const char *control;
	const char *restore; /* snapshot directory: RAM, vCPUs and state come from it */
	struct worker_jail jail;
	bool help;
	/* given on the command line (restore refuses them) */
	bool memory_set, vcpus_set;
};

/*
 * Parses the worker's argv. Returns 0, or -1 with one line in err saying
 * what is wrong. Disk and mount specs are copied; free them with
 * worker_launch_free().
 */
int worker_launch_parse(int argc, char **argv, struct worker_launch *l, char *err, size_t errlen);
void worker_launch_free(struct worker_launch *l);

/*
 * The argv that launches l with the worker binary at exe (argv[0]),
 * NULL-terminated, into *out (free with worker_argv_free()). What
 * worker_launch_parse() reads back is l. 0, or -EINVAL with err saying
 * why (a disk path holding ',', a bad disk id, too many disks, a bad
 * mount tag or directory, a tag used twice, too many mounts), or
 * -ENOMEM.
 */
int worker_launch_argv(const struct worker_launch *l, const char *exe, char ***out, char *err, size_t errlen);
void worker_argv_free(char **argv);

/*
 * The namespaces (CLONE_NEW* flags) a jailed l starts in: mount, PID,
 * IPC, UTS, and a network namespace of its own unless l has a NIC (slirp
 * runs in the worker and needs the host's). 0 when l has no jail.
 */
unsigned long worker_jail_clone_flags(const struct worker_launch *l);

/* The name of a symlink policy as a spec says it: "opaque", "deny", "follow". */
const char *worker_symlinks_name(enum worker_symlinks s);

/* The --help text. */
extern const char worker_usage[];

/*
 * ---- the control socket (docs/vmm.md) ----
 * One request line "NAME [ARGS]", one reply line "ok[ TEXT]" or
 * "error[ TEXT]"; a reply's TEXT may carry KEY=NUMBER fields separated by
 * blanks ("ok target=1024 actual=1024"). The worker side registers
 * handlers by name (src/vmm/control.c); these are the names the library
 * sends.
 */
#define WORKER_CTL_LINE_MAX 512
#define WORKER_CTL_NAME_MAX 64
#define WORKER_CTL_STOP "stop"
#define WORKER_CTL_SNAPSHOT "snapshot" /* ARGS: the directory to write */
/*
 * No ARGS: the directory to write comes with the line as a descriptor
 * (SCM_RIGHTS), so a jailed worker writes where its root has no path.
 */
#define WORKER_CTL_SNAPSHOT_FD "snapshot-fd"
#define WORKER_CTL_RESET "reset"
#define WORKER_CTL_BALLOON "balloon"   /* no ARGS: the target and actual pages; ARGS: a new target */
/*
 * The worker's usage for `supermachine stats`: its CPU time and memory,
 * and the byte counters its devices keep, summed over devices of a kind.
 */
#define WORKER_CTL_USAGE "usage"
#define WORKER_USAGE_CPU_NS "cpu_ns"           /* CLOCK_PROCESS_CPUTIME_ID */
#define WORKER_USAGE_RSS "rss_bytes"           /* resident set (/proc/self/statm) */
#define WORKER_USAGE_MEMORY "memory_bytes"     /* guest RAM */
#define WORKER_USAGE_BLK_READ "blk_read_bytes"
#define WORKER_USAGE_BLK_WRITE "blk_write_bytes"
#define WORKER_USAGE_NET_RX "net_rx_bytes"     /* to the guest */
#define WORKER_USAGE_NET_TX "net_tx_bytes"     /* from the guest */
#define WORKER_USAGE_VSOCK_RX "vsock_rx_bytes" /* to the guest */
#define WORKER_USAGE_VSOCK_TX "vsock_tx_bytes" /* from the guest */
/* what backs guest RAM: enum guest_mem_backing of base/guest_mem.h (1 shmem-thp, 2 hugetlb,
 * 3 anon-thp, 4 memfd, 5 snapshot); the worker's log names it ("guest RAM: ... backing NAME") */
#define WORKER_USAGE_RAM_BACKING "ram_backing"

struct worker_request {
	char name[WORKER_CTL_NAME_MAX];
	const char *args; /* into the line: "" when there are none */
};

struct worker_reply {
	bool ok;
	const char *text; /* into the line, after "ok"/"error" and one blank: "" when there is none */
};

/* Splits a request line (without its newline): 0, -EINVAL when it has no name, -ENAMETOOLONG. */
int worker_request_parse(const char *line, struct worker_request *r);
/* Reads a reply line (without its newline): 0, or -EPROTO when it is neither ok nor error. */
int worker_reply_parse(const char *line, struct worker_reply *r);
/* The number in text's KEY=NUMBER field: 0, -ENOENT (no such field) or -EINVAL (not a number). */
int worker_reply_u64(const char *text, const char *key, uint64_t *v);

/*
 * ---- a spare worker (docs/vmm.md) ----
 * `supermachine-worker --spare FD` execs and links ahead of need, then
 * waits on FD, one end of a SOCK_SEQPACKET socketpair, for its real
 * command line: one message, the magic then argv (argv[0] included), each
 * NUL-terminated, with the log descriptor (SCM_RIGHTS) that becomes its
 * stdout and stderr. It answers with one reply line ("ok", or "error
 * TEXT" and exit status 2) and runs as if started with that argv. It
 * exits on EOF (the library is gone) or after WORKER_SPARE_WAIT_S.
 */
#define WORKER_SPARE_OPTION "--spare"
#define WORKER_SPARE_MAGIC "sm-handoff-1"
#define WORKER_SPARE_MSG_MAX 65536
#define WORKER_SPARE_WAIT_S 600

/*
 * The handoff message for argv (NULL-terminated) into buf: its length, or
 * -E2BIG (more than len bytes or WORKER_MAX_ARGS arguments) or -EINVAL
 * (no arguments).
 */
ssize_t worker_handoff_encode(const char *const argv[], char *buf, size_t len);
/*
 * Splits the n bytes of a received message in buf into argv (at most max
 * entries and a NULL, pointing into buf): the argument count, -EPROTO
 * (no magic, not NUL-terminated) or -E2BIG (more than max - 1 arguments),
 * -EINVAL (no arguments).
 */
int worker_handoff_decode(char *buf, size_t n, char **argv, size_t max);

/* ---- exit statuses (docs/vmm.md). 128+N: ended by host signal N. ---- */
enum worker_status {
	WORKER_EXIT_REBOOT = 0,  /* the guest rebooted (or reset) */
	WORKER_EXIT_ERROR = 1,   /* KVM or the VMM failed */
	WORKER_EXIT_USAGE = 2,   /* bad command line or setup, before any guest code ran */
	WORKER_EXIT_PANIC = 3,   /* the guest kernel panicked */
	WORKER_EXIT_STOP = 4,    /* stopped on request (control socket, console escape) */
	WORKER_EXIT_SANDBOX = 5, /* the worker made a system call its sandbox forbids */
	WORKER_EXIT_SIGNAL_BASE = 128,
};

/* ---- a snapshot directory's files (docs/snapshot-format.md) ---- */
#define WORKER_SNAP_STATE_FILE "state"        /* vCPUs, irqchip, devices: written by the worker */
#define WORKER_SNAP_MEMORY_FILE "memory"      /* a header, then guest RAM (sparse) */
#define WORKER_SNAP_METADATA_FILE "metadata.json" /* written by the library */
#define WORKER_SNAP_MEMORY_HEADER_BYTES 4096u /* RAM starts here in the memory file */

/*
 * ---- boot markers ----
 * /init writes a byte to this I/O port as it starts and once the agent
 * listens; the worker logs the time of each (boot-time on the control
 * socket).
 */
#define WORKER_MARKER_PORT 0x0ff0
#define WORKER_MARKER_INIT 1
#define WORKER_MARKER_AGENT 2

#endif

/*
 * The worker's command line (src/proto/worker.h): parsed by the worker,
 * built by the library, in one file so the two cannot drift apart.
 */
#include "proto/worker.h"

#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


const char worker_usage[] =
	"usage: supermachine-worker --kernel FILE [options]\n"
	"       supermachine-worker --restore DIR [device options]\n"
	"\n"
	"Runs one KVM virtual machine until the guest reboots, panics, is stopped\n"
	"or the worker gets a signal.\n"
	"\n"
	"  --restore DIR         restore the snapshot in DIR (state, memory) instead of\n"
	"                        booting: RAM, vCPUs and kernel come from it, so no\n"
	"                        --kernel/--initrd/--cmdline/--memory/--vcpus; the device\n"
	"                        options must name the captured devices in the same order\n"
	"  --kernel FILE         guest kernel: uncompressed vmlinux (ELF) or bzImage\n"
	"  --initrd FILE         initramfs loaded for the kernel\n"
	"  --cmdline STR         kernel command line (default \"" WORKER_DEFAULT_CMDLINE "\"); the\n"
	"                        worker adds console=ttyS0 reboot=t panic=-1 and one\n"
	"                        virtio_mmio.device= per device\n"
	"  --memory MIB          guest RAM in MiB, at least 64 (default 256)\n"
	"  --vcpus N             virtual CPUs, 1 to 32 (default 1)\n"
	"  --disk FILE[,ro][,id=NAME]\n"
	"                        virtio-blk disk (repeatable, up to 12; /dev/vda first);\n"
	"                        ro: read-only; NAME: up to 20 bytes, the guest's serial\n"
	"  --fs TAG,DIR[,ro][,symlinks=opaque|deny|follow]\n"
	"                        share the host directory DIR over virtio-fs (repeatable,\n"
	"                        up to 16); the guest mounts it with mount -t virtiofs TAG;\n"
	"                        TAG: 1 to 36 printable bytes; DIR: an absolute path;\n"
	"                        ro: every write fails EROFS; symlinks: what symlinks may\n"
	"                        do (default opaque, see docs/mounts.md)\n"
	"  --net                 virtio-net with user-mode NAT (libslirp)\n"
	"  --vsock UDS           virtio-vsock; host side is the unix socket UDS\n"
	"  --balloon             virtio-balloon\n"
	"  --console FILE|-      guest console to FILE, or - for the terminal (default -)\n"
	"  --control UDS         control socket (line protocol: status, stop, boot-time,\n"
	"                        stats, startup, snapshot DIR, reset, help)\n"
	"  --jail-root DIR       jail (as root; docs/security.md): pivot into a tmpfs\n"
	"                        mounted on DIR once set up, in the namespaces the\n"
	"                        library started the worker in\n"
	"  --jail-uid N, --jail-gid N\n"
	"                        the ids the jailed worker runs as (default 0: kept)\n"
	"  --jail-path DIR       bound read-write into the jail at the same path\n"
	"                        (repeatable, up to 4: where snapshots are written)\n"
	"  --help                this text\n"
	"\n"
	"Exit status: 0 guest reboot, 1 VMM or KVM error, 2 bad usage or setup,\n"
	"3 guest panic, 4 stopped, 5 sandbox violation, 128+N host signal N.\n"
	"Environment: SUPERMACHINE_SECCOMP=log|off relaxes the sandbox (debugging).\n";

enum {
	OPT_KERNEL = 256,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_MEMORY,
	OPT_VCPUS,
	OPT_DISK,
	OPT_FS,
	OPT_NET,
	OPT_VSOCK,
	OPT_BALLOON,
	OPT_CONSOLE,
	OPT_CONTROL,
	OPT_RESTORE,
	OPT_JAIL_ROOT,
	OPT_JAIL_UID,
	OPT_JAIL_GID,
	OPT_JAIL_PATH,
	OPT_HELP,
};

static const struct option long_options[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "vcpus", required_argument, NULL, OPT_VCPUS },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "fs", required_argument, NULL, OPT_FS },
	{ "net", no_argument, NULL, OPT_NET },
	{ "vsock", required_argument, NULL, OPT_VSOCK },
	{ "balloon", no_argument, NULL, OPT_BALLOON },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "restore", required_argument, NULL, OPT_RESTORE },
	{ "jail-root", required_argument, NULL, OPT_JAIL_ROOT },
	{ "jail-uid", required_argument, NULL, OPT_JAIL_UID },
	{ "jail-gid", required_argument, NULL, OPT_JAIL_GID },
	{ "jail-path", required_argument, NULL, OPT_JAIL_PATH },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;

	if (!*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Options given once: a second, different value contradicts the first. */
static int set_once(const char **slot, const char *value, const char *name, char *err,
		    size_t errlen)
{
	if (*slot && strcmp(*slot, value) != 0)
		return fail(err, errlen, "--%s given twice with different values ('%s', '%s')", name,
			    *slot, value);
	*slot = value;
	return 0;
}

static int parse_disk(struct worker_launch *o, const char *spec, char *err, size_t errlen)
{
	if (o->ndisks == WORKER_MAX_DISKS)
		return fail(err, errlen, "--disk: at most %d disks", WORKER_MAX_DISKS);
	char *copy = strdup(spec);
	if (!copy)
		return fail(err, errlen, "out of memory");
	struct worker_disk *d = &o->disks[o->ndisks++];
	char *save = NULL;
	char *first = strtok_r(copy, ",", &save);
	d->owned = copy;
	d->path = copy;
	if (first != copy)
		return fail(err, errlen, "--disk '%s': no file name", spec);
	for (char *opt; (opt = strtok_r(NULL, ",", &save));) {
		if (strcmp(opt, "ro") == 0) {
			d->read_only = true;
		} else if (strncmp(opt, "id=", 3) == 0) {
			if (d->id)
				return fail(err, errlen, "--disk '%s': id given twice", spec);
			d->id = opt + 3;
			if (!*d->id || strlen(d->id) > WORKER_DISK_ID_MAX)
				return fail(err, errlen, "--disk '%s': id must be 1 to %d bytes", spec,
					    WORKER_DISK_ID_MAX);
		} else {
			return fail(err, errlen, "--disk '%s': unknown option '%s' (ro, id=NAME)", spec,
				    opt);
		}
	}
	for (unsigned i = 0; i + 1 < o->ndisks; i++) {
		if (strcmp(o->disks[i].path, d->path) == 0 && !(o->disks[i].read_only && d->read_only))
			return fail(err, errlen, "--disk %s given twice, writable at least once", d->path);
		if (d->id && o->disks[i].id && strcmp(o->disks[i].id, d->id) == 0)
			return fail(err, errlen, "--disk id=%s used by two disks", d->id);
	}
	return 0;
}

static const char *const symlinks_names[] = {
	[WORKER_SYMLINKS_OPAQUE] = "opaque",
	[WORKER_SYMLINKS_DENY] = "deny",
	[WORKER_SYMLINKS_FOLLOW] = "follow",
};

const char *worker_symlinks_name(enum worker_symlinks s)
{
	return (unsigned)s < sizeof(symlinks_names) / sizeof(symlinks_names[0]) ? symlinks_names[s] : NULL;
}

/* Tag and directory as both sides check them: NULL, or what is wrong. */
static const char *mount_problem(const struct worker_mount *m)
{
	size_t n = m->tag ? strlen(m->tag) : 0;

	if (n == 0 || n > WORKER_MOUNT_TAG_MAX)
		return "the tag must be 1 to 36 bytes";
	for (size_t i = 0; i < n; i++)
		if (m->tag[i] <= ' ' || m->tag[i] > '~' || m->tag[i] == ',')
			return "the tag must be printable, without ',' or blanks";
	if (!m->dir || m->dir[0] != '/')
		return "the directory must be an absolute path";
	if (strchr(m->dir, ','))
		return "the directory must hold no ','";
	if (!worker_symlinks_name(m->symlinks))
		return "unknown symlink policy";
	return NULL;
}

/* The index of the mount before mounts[n] with the same tag, or -1. */
static int mount_tag_twice(const struct worker_mount *mounts, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (strcmp(mounts[i].tag, mounts[n].tag) == 0)
			return (int)i;
	return -1;
}

static int parse_symlinks(const char *name, enum worker_symlinks *out)
{
	for (unsigned i = 0; i < sizeof(symlinks_names) / sizeof(symlinks_names[0]); i++)
		if (strcmp(name, symlinks_names[i]) == 0)
			return *out = (enum worker_symlinks)i, 0;
	return -1;
}

static int parse_mount_options(struct worker_mount *m, const char *spec, char *save, char *err,
			       size_t errlen)
{
	bool policy_set = false;

	for (char *opt; (opt = strtok_r(NULL, ",", &save));) {
		if (strcmp(opt, "ro") == 0) {
			m->read_only = true;
		} else if (strncmp(opt, "symlinks=", 9) == 0) {
			if (policy_set || parse_symlinks(opt + 9, &m->symlinks) < 0)
				return fail(err, errlen, "--fs '%s': symlinks= once, one of opaque, deny, follow",
					    spec);
			policy_set = true;
		} else {
			return fail(err, errlen, "--fs '%s': unknown option '%s' (ro, symlinks=POLICY)", spec,
				    opt);
		}
	}
	return 0;
}

static int parse_mount(struct worker_launch *o, const char *spec, char *err, size_t errlen)
{
	if (o->nmounts == WORKER_MAX_MOUNTS)
		return fail(err, errlen, "--fs: at most %d mounts", WORKER_MAX_MOUNTS);
	char *copy = strdup(spec);
	if (!copy)
		return fail(err, errlen, "out of memory");
	struct worker_mount *m = &o->mounts[o->nmounts++];
	char *save = NULL;
	*m = (struct worker_mount){ .owned = copy };
	/* strtok_r would skip an empty tag: split the first field by hand */
	char *comma = strchr(copy, ',');
	if (!comma)
		return fail(err, errlen, "--fs '%s': TAG,DIR expected", spec);
	*comma = 0;
	m->tag = copy;
	m->dir = strtok_r(comma + 1, ",", &save);
	if (!m->dir || m->dir != comma + 1)
		return fail(err, errlen, "--fs '%s': no directory", spec);
	if (parse_mount_options(m, spec, save, err, errlen) < 0)
		return -1;
	const char *problem = mount_problem(m);
	if (problem)
		return fail(err, errlen, "--fs '%s': %s", spec, problem);
	if (mount_tag_twice(o->mounts, o->nmounts - 1) >= 0)
		return fail(err, errlen, "--fs tag '%s' used by two mounts", m->tag);
	return 0;
}

static int parse_jail_id(const char *arg, const char *name, uint32_t *out, char *err, size_t errlen)
{
	uint64_t v;

	if (parse_uint(arg, 0, UINT32_MAX - 1, &v) < 0)
		return fail(err, errlen, "--jail-%s '%s': a number below 4294967295", name, arg);
	*out = (uint32_t)v;
	return 0;
}

static int parse_jail_path(struct worker_jail *j, const char *arg, char *err, size_t errlen)
{
	if (j->npaths == WORKER_JAIL_MAX_PATHS)
		return fail(err, errlen, "--jail-path: at most %d paths", WORKER_JAIL_MAX_PATHS);
	if (arg[0] != '/')
		return fail(err, errlen, "--jail-path '%s': an absolute path", arg);
	j->paths[j->npaths++] = arg;
	return 0;
}

static int parse_jail(struct worker_launch *o, int opt, const char *arg, char *err, size_t errlen)
{
	switch (opt) {
	case OPT_JAIL_ROOT:
		if (arg[0] != '/')
			return fail(err, errlen, "--jail-root '%s': an absolute path", arg);
		return set_once(&o->jail.root, arg, "jail-root", err, errlen);
	case OPT_JAIL_UID:
		return parse_jail_id(arg, "uid", &o->jail.uid, err, errlen);
	case OPT_JAIL_GID:
		return parse_jail_id(arg, "gid", &o->jail.gid, err, errlen);
	default:
		return parse_jail_path(&o->jail, arg, err, errlen);
	}
}

static int parse_one(struct worker_launch *o, int opt, const char *arg, char *err, size_t errlen)
{
	uint64_t v;

	switch (opt) {
	case OPT_KERNEL:
		return set_once(&o->kernel, arg, "kernel", err, errlen);
	case OPT_INITRD:
		return set_once(&o->initrd, arg, "initrd", err, errlen);
	case OPT_CMDLINE:
		return set_once(&o->cmdline, arg, "cmdline", err, errlen);
	case OPT_CONSOLE:
		return set_once(&o->console, arg, "console", err, errlen);
	case OPT_CONTROL:
		return set_once(&o->control, arg, "control", err, errlen);
	case OPT_VSOCK:
		return set_once(&o->vsock, arg, "vsock", err, errlen);
	case OPT_RESTORE:
		return set_once(&o->restore, arg, "restore", err, errlen);
	case OPT_MEMORY:
		if (parse_uint(arg, WORKER_MIN_MEMORY_MIB, WORKER_MAX_MEMORY_MIB, &v) < 0)
			return fail(err, errlen, "--memory '%s': a whole number of MiB from %d to %llu",
				    arg, WORKER_MIN_MEMORY_MIB, WORKER_MAX_MEMORY_MIB);
		o->memory_mib = v;
		o->memory_set = true;
		return 0;
	case OPT_VCPUS:
		if (parse_uint(arg, 1, WORKER_MAX_VCPUS, &v) < 0)
			return fail(err, errlen, "--vcpus '%s': a number from 1 to %d", arg,
				    WORKER_MAX_VCPUS);
		o->vcpus = (unsigned)v;
		o->vcpus_set = true;
		return 0;
	case OPT_DISK:
		return parse_disk(o, arg, err, errlen);
	case OPT_FS:
		return parse_mount(o, arg, err, errlen);
	case OPT_NET:
		o->net = true;
		return 0;
	case OPT_BALLOON:
		o->balloon = true;
		return 0;
	case OPT_HELP:
		o->help = true;
		return 0;
	case OPT_JAIL_ROOT:
	case OPT_JAIL_UID:
	case OPT_JAIL_GID:
	case OPT_JAIL_PATH:
		return parse_jail(o, opt, arg, err, errlen);
	default:
		return -1;
	}
}

/* The first boot-only option given along with --restore, or NULL. */
static const char *restore_conflict(const struct worker_launch *o)
{
	if (o->kernel)
		return "kernel";
	if (o->initrd)
		return "initrd";
	if (o->cmdline)
		return "cmdline";
	if (o->memory_set)
		return "memory";
	if (o->vcpus_set)
		return "vcpus";
	return NULL;
}

int worker_launch_parse(int argc, char **argv, struct worker_launch *o, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	o->memory_mib = WORKER_DEFAULT_MEMORY_MIB;
	o->vcpus = 1;
	optind = 0;
	opterr = 0;
	for (;;) {
		int opt = getopt_long(argc, argv, "", long_options, NULL);
		if (opt == -1)
			break;
		if (opt == '?' || opt == ':') {
			const char *bad = argv[optind - 1];
			if (optopt)
				return fail(err, errlen, "option '%s' needs a value (see --help)", bad);
			return fail(err, errlen, "unknown option '%s' (see --help)", bad);
		}
		if (parse_one(o, opt, optarg, err, errlen) < 0)
			return -1;
	}
	if (optind < argc)
		return fail(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
	if (o->help)
		return 0;
	if (o->restore && restore_conflict(o))
		return fail(err, errlen, "--%s cannot be combined with --restore: the snapshot holds "
			    "the kernel, RAM and vCPUs", restore_conflict(o));
	if (o->restore && !*o->restore)
		return fail(err, errlen, "--restore needs a snapshot directory");
	if (!o->kernel && !o->restore)
		return fail(err, errlen, "--kernel is required, or --restore DIR (see --help)");
	if (o->vsock && !*o->vsock)
		return fail(err, errlen, "--vsock needs a socket path");
	if (o->control && !*o->control)
		return fail(err, errlen, "--control needs a socket path");
	if (o->vsock && o->control && strcmp(o->vsock, o->control) == 0)
		return fail(err, errlen, "--vsock and --control cannot share the path %s", o->vsock);
	if ((o->jail.uid || o->jail.gid || o->jail.npaths) && !o->jail.root)
		return fail(err, errlen, "--jail-uid, --jail-gid and --jail-path need --jail-root");
	if (!o->console)
		o->console = "-";
	return 0;
}

void worker_launch_free(struct worker_launch *o)
{
	for (unsigned i = 0; i < o->ndisks; i++)
		free(o->disks[i].owned);
	o->ndisks = 0;
	for (unsigned i = 0; i < o->nmounts; i++)
		free(o->mounts[i].owned);
	o->nmounts = 0;
}

/* ---- building: the library's side ---------------------------------------------- */

/* An argv under construction: every string its own allocation. */
struct argv_build {
	char **v;
	unsigned n;
	bool oom;
};

static void arg_add(struct argv_build *b, const char *s)
{
	if (b->oom || b->n + 1 >= WORKER_MAX_ARGS) {
		b->oom = true;
		return;
	}
	if (!(b->v[b->n] = strdup(s)))
		b->oom = true;
	else
		b->n++;
}

static void arg_opt(struct argv_build *b, const char *name, const char *value)
{
	if (!value)
		return;
	arg_add(b, name);
	arg_add(b, value);
}

static void arg_uint(struct argv_build *b, const char *name, uint64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
	arg_opt(b, name, s);
}

/* "PATH[,ro][,id=NAME]"; -1 when PATH or NAME cannot be said in a spec. */
static int disk_spec(const struct worker_disk *d, char *out, size_t len, char *err, size_t errlen)
{
	if (!d->path || !*d->path || strchr(d->path, ','))
		return fail(err, errlen, "disk '%s': the path must be non-empty and hold no ','",
			    d->path ? d->path : "");
	if (d->id && (!*d->id || strlen(d->id) > WORKER_DISK_ID_MAX || strchr(d->id, ',')))
		return fail(err, errlen, "disk %s: id '%s' must be 1 to %d bytes without ','", d->path,
			    d->id, WORKER_DISK_ID_MAX);
	if ((size_t)snprintf(out, len, "%s%s%s%s", d->path, d->read_only ? ",ro" : "", d->id ? ",id=" : "",
			     d->id ? d->id : "") >= len)
		return fail(err, errlen, "disk %s: path too long", d->path);
	return 0;
}

static int arg_disks(struct argv_build *b, const struct worker_launch *l, char *err, size_t errlen)
{
	char spec[4200];

	if (l->ndisks > WORKER_MAX_DISKS)
		return fail(err, errlen, "%u disks: at most %d", l->ndisks, WORKER_MAX_DISKS);
	for (unsigned i = 0; i < l->ndisks; i++) {
		if (disk_spec(&l->disks[i], spec, sizeof(spec), err, errlen) < 0)
			return -1;
		arg_opt(b, "--disk", spec);
	}
	return 0;
}

static int arg_mounts(struct argv_build *b, const struct worker_launch *l, char *err, size_t errlen)
{
	char spec[4200];

	if (l->nmounts > WORKER_MAX_MOUNTS)
		return fail(err, errlen, "%u mounts: at most %d", l->nmounts, WORKER_MAX_MOUNTS);
	for (unsigned i = 0; i < l->nmounts; i++) {
		const struct worker_mount *m = &l->mounts[i];
		const char *problem = mount_problem(m);
		if (problem)
			return fail(err, errlen, "mount '%s' of %s: %s", m->tag ? m->tag : "",
				    m->dir ? m->dir : "", problem);
		if (mount_tag_twice(l->mounts, i) >= 0)
			return fail(err, errlen, "mount tag '%s' used by two mounts", m->tag);
		if ((size_t)snprintf(spec, sizeof(spec), "%s,%s%s,symlinks=%s", m->tag, m->dir,
				     m->read_only ? ",ro" : "", worker_symlinks_name(m->symlinks)) >= sizeof(spec))
			return fail(err, errlen, "mount '%s': directory path too long", m->tag);
		arg_opt(b, "--fs", spec);
	}
	return 0;
}

static int arg_jail(struct argv_build *b, const struct worker_jail *j, char *err, size_t errlen)
{
	if (!j->root)
		return 0;
	if (j->root[0] != '/' || j->npaths > WORKER_JAIL_MAX_PATHS)
		return fail(err, errlen, "jail %s: an absolute root and at most %d paths", j->root,
			    WORKER_JAIL_MAX_PATHS);
	arg_opt(b, "--jail-root", j->root);
	if (j->uid)
		arg_uint(b, "--jail-uid", j->uid);
	if (j->gid)
		arg_uint(b, "--jail-gid", j->gid);
	for (unsigned i = 0; i < j->npaths; i++) {
		if (!j->paths[i] || j->paths[i][0] != '/')
			return fail(err, errlen, "jail path '%s': an absolute path", j->paths[i] ? j->paths[i] : "");
		arg_opt(b, "--jail-path", j->paths[i]);
	}
	return 0;
}

unsigned long worker_jail_clone_flags(const struct worker_launch *l)
{
	if (!l->jail.root)
		return 0;
	return CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | (l->net ? 0 : CLONE_NEWNET);
}

int worker_launch_argv(const struct worker_launch *l, const char *exe, char ***out, char *err, size_t errlen)
{
	struct argv_build b = { .v = calloc(WORKER_MAX_ARGS, sizeof(char *)) };

	*out = NULL;
	if (!b.v)
		return fail(err, errlen, "out of memory"), -ENOMEM;
	arg_add(&b, exe);
	arg_opt(&b, "--restore", l->restore);
	arg_opt(&b, "--kernel", l->kernel);
	arg_opt(&b, "--initrd", l->initrd);
	arg_opt(&b, "--cmdline", l->cmdline);
	if (l->memory_set)
		arg_uint(&b, "--memory", l->memory_mib);
	if (l->vcpus_set)
		arg_uint(&b, "--vcpus", l->vcpus);
	if (arg_disks(&b, l, err, errlen) < 0 || arg_mounts(&b, l, err, errlen) < 0 ||
	    arg_jail(&b, &l->jail, err, errlen) < 0) {
		worker_argv_free(b.v);
		return -EINVAL;
	}
	arg_opt(&b, "--vsock", l->vsock);
	arg_opt(&b, "--control", l->control);
	arg_opt(&b, "--console", l->console);
	if (l->net)
		arg_add(&b, "--net");
	if (l->balloon)
		arg_add(&b, "--balloon");
	if (b.oom) {
		worker_argv_free(b.v);
		return fail(err, errlen, "out of memory"), -ENOMEM;
	}
	*out = b.v;
	return 0;
}

void worker_argv_free(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

/* ---- the control socket's lines ----------------------------------------------------- */

static const char *skip_blanks(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

int worker_request_parse(const char *line, struct worker_request *r)
{
	const char *p = skip_blanks(line);
	size_t n = strcspn(p, " \t");

	r->name[0] = 0;
	r->args = "";
	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(r->name))
		return -ENAMETOOLONG;
	memcpy(r->name, p, n);
	r->name[n] = 0;
	r->args = skip_blanks(p + n);
	return 0;
}

/* line is WORD alone or WORD followed by a blank: where its text starts, or NULL. */
static const char *after_word(const char *line, const char *word)
{
	size_t n = strlen(word);

	if (strncmp(line, word, n) != 0)
		return NULL;
	if (line[n] == 0)
		return line + n;
	return line[n] == ' ' ? line + n + 1 : NULL;
}

int worker_reply_parse(const char *line, struct worker_reply *r)
{
	const char *t;

	if ((t = after_word(line, "ok")))
		r->ok = true;
	else if ((t = after_word(line, "error")))
		r->ok = false;
	else
		return r->ok = false, r->text = "", -EPROTO;
	r->text = t;
	return 0;
}

int worker_reply_u64(const char *text, const char *key, uint64_t *v)
{
	size_t klen = strlen(key);

	for (const char *p = skip_blanks(text); *p; p = skip_blanks(p + strcspn(p, " \t"))) {
		if (strncmp(p, key, klen) != 0 || p[klen] != '=')
			continue;
		const char *num = p + klen + 1;
		char *end;
		if (*num < '0' || *num > '9')
			return -EINVAL;
		errno = 0;
		unsigned long long x = strtoull(num, &end, 10);
		if (errno || (*end && *end != ' ' && *end != '\t'))
			return -EINVAL;
		*v = x;
		return 0;
	}
	return -ENOENT;
}

/* ---- a spare worker's handoff ---- */

ssize_t worker_handoff_encode(const char *const argv[], char *buf, size_t len)
{
	size_t n = sizeof(WORKER_SPARE_MAGIC), i;

	if (!argv[0])
		return -EINVAL;
	if (n > len)
		return -E2BIG;
	memcpy(buf, WORKER_SPARE_MAGIC, n);
	for (i = 0; argv[i]; i++) {
		size_t a = strlen(argv[i]) + 1;
		if (i >= WORKER_MAX_ARGS || a > len - n)
			return -E2BIG;
		memcpy(buf + n, argv[i], a);
		n += a;
	}
	return (ssize_t)n;
}

int worker_handoff_decode(char *buf, size_t n, char **argv, size_t max)
{
	size_t off = sizeof(WORKER_SPARE_MAGIC);
	int argc = 0;

	if (n < off || memcmp(buf, WORKER_SPARE_MAGIC, off) || buf[n - 1] != 0)
		return -EPROTO;
	for (; off < n; off += strlen(buf + off) + 1) {
		if ((size_t)argc + 1 >= max)
			return -E2BIG;
		argv[argc++] = buf + off;
	}
	if (max)
		argv[argc] = NULL;
	return argc ? argc : -EINVAL;
}

/*
 * sm_vm: boot an image as a microVM in its own supermachine-worker
 * process and talk to its agent. The worker is watched through a pidfd
 * (waitpid for our own children), so a VM whose worker died turns every
 * later call into SM_E_VM_DIED rather than a hang on a socket that
 * nobody serves.
 */
#include "lib/vm.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/config.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "lib/hostcheck.h"
#include "lib/launcher.h"
#include "lib/log.h"
#include "lib/spare.h"
#include "lib/exec.h"
#include "lib/guestcfg.h"
#include "lib/snapshot.h"
#include "lib/vm_cgroup.h"
#include "lib/vm_mount.h"
#include "oci/oci.h"

#define VM_THROUGHPUT_VCPUS 4u

/* What sm_vm_start() gathers before the worker runs. */
struct vm_plan {
	struct vm_asset_paths assets;
	struct oci_image *img;      /* NULL for a bare rootfs path */
	const char *rootfs;
	const char *image_label;
	char **env;                 /* merged image Env + overrides, NULL-terminated */
	struct worker_disk disks[1 + VM_MAX_VOLUMES];
	unsigned ndisks;
	struct vm_mounts mounts;
	char initrd[VM_PATH_MAX + 16];
};

/* ---- the worker's life ---- */

static void vm_reap(struct sm_vm *vm, bool block)
{
	int st;

	if (vm->exited || !vm->owned)
		return;
	if (waitpid(vm->pid, &st, block ? 0 : WNOHANG) == vm->pid) {
		vm->exited = true;
		vm->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
}

bool sm_vm_running(sm_vm *vm)
{
	struct pollfd p;

	if (vm->exited)
		return false;
	if (vm->owned && vm->pidfd < 0) {
		vm_reap(vm, false);
		return !vm->exited;
	}
	if (vm->pidfd >= 0) {
		p = (struct pollfd){ .fd = vm->pidfd, .events = POLLIN };
		if (poll(&p, 1, 0) == 0)
			return true;
		vm_reap(vm, true); /* a readable pidfd: it has exited, reaping will not block */
		vm->exited = true;
		return false;
	}
	vm->exited = !vm_pid_is_worker(vm->pid);
	return !vm->exited;
}

bool vm_wait_exit(struct sm_vm *vm, int ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (!sm_vm_running(vm))
			return true;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = ms - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left <= 0)
			return false;
		if (vm->pidfd >= 0) {
			struct pollfd p = { .fd = vm->pidfd, .events = POLLIN };
			poll(&p, 1, (int)left);
		} else {
			usleep(left < 20 ? (useconds_t)left * 1000 : 20000);
		}
	}
}

ssize_t vm_file_tail(const char *path, char *buf, size_t cap)
{
	ssize_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	off_t end = lseek(fd, 0, SEEK_END);
	if (end > 0)
		n = pread(fd, buf, cap - 1, end > (off_t)cap - 1 ? end - (off_t)cap + 1 : 0);
	close(fd);
	if (n > 0)
		buf[n] = 0;
	return n;
}

/* The last non-empty line of the worker's log, which says why it failed. */
static void vm_worker_last_line(const struct sm_vm *vm, char *out, size_t len)
{
	char path[VM_PATH_MAX + 16], buf[1024];
	ssize_t n;

	out[0] = 0;
	snprintf(path, sizeof(path), "%s/worker.log", vm->dir);
	n = vm_file_tail(path, buf, sizeof(buf));
	if (n <= 0)
		return;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	const char *line = strrchr(buf, '\n'), *src = line ? line + 1 : buf;
	size_t cut = strnlen(src, len - 1);
	memcpy(out, src, cut); /* the line may be longer than out: cut, as -O3 warns of snprintf */
	out[cut] = 0;
}

static int vm_died(struct sm_vm *vm, const char *during, sm_error **err)
{
	char last[256], panic[340];

	vm_worker_last_line(vm, last, sizeof(last));
	vm_console_panic(vm->console, panic, sizeof(panic));
	if (vm->owned)
		sm_error_set(err, SM_E_VM_DIED, 0, "VM %s %s: its worker exited with status %d%s%s%s%s", vm->id, during,
			     vm->exit_status, last[0] ? ": " : "", last, panic[0] ? "; the guest console: " : "", panic);
	else
		sm_error_set(err, SM_E_VM_DIED, 0, "VM %s %s: it is not running", vm->id, during);
	return -1;
}

/* Before a call on the VM: fails fast when the worker is gone. */
int vm_check(struct sm_vm *vm, const char *during, sm_error **err)
{
	return sm_vm_running(vm) ? 0 : vm_died(vm, during, err);
}

/* After a failed call: a worker that died meanwhile is the real cause. */
int vm_failed(struct sm_vm *vm, const char *during, sm_error **err)
{
	if (!sm_vm_running(vm))
		return vm_died(vm, during, err);
	/* Its main thread gone and the vCPU threads still tearing down: the
	 * pidfd is not readable yet, but the VM is no more. */
	if (!vm_pid_is_worker(vm->pid)) {
		sm_error_set(err, SM_E_VM_DIED, 0, "VM %s %s: its worker is exiting", vm->id, during);
		return -1;
	}
	sm_error_wrap(err, "VM %s: %s", vm->id, during);
	return -1;
}

int vm_control(const struct sm_vm *vm, const char *req, char *reply, size_t len, sm_error **err)
{
	return vm_control_timeout(vm, req, reply, len, 5000, err);
}

int vm_control_timeout(const struct sm_vm *vm, const char *req, char *reply, size_t len, int timeout_ms,
		       sm_error **err)
{
	return vm_control_fd(vm, req, -1, reply, len, timeout_ms, err);
}

/* req and its newline in one message, with fd (SCM_RIGHTS) when there is one. */
static int control_send(int sock, const char *req, int fd)
{
	char line[WORKER_CTL_LINE_MAX + 2];
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	int n = snprintf(line, sizeof(line), "%s\n", req);
	struct iovec iov = { line, (size_t)n };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (n < 0 || (size_t)n >= sizeof(line))
		return errno = EMSGSIZE, -1;
	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		m.msg_control = ctl.buf;
		m.msg_controllen = sizeof(ctl.buf);
		CMSG_FIRSTHDR(&m)->cmsg_level = SOL_SOCKET;
		CMSG_FIRSTHDR(&m)->cmsg_type = SCM_RIGHTS;
		CMSG_FIRSTHDR(&m)->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m)), &fd, sizeof(fd));
	}
	return sendmsg(sock, &m, MSG_NOSIGNAL) == n ? 0 : -1;
}

int vm_control_fd(const struct sm_vm *vm, const char *req, int fd_out, char *reply, size_t len, int timeout_ms,
		  sm_error **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	struct worker_reply r;
	size_t got = 0;
	ssize_t n;
	int fd, rc = -1;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vm->control);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return sm_error_set(err, SM_E_IO, errno, "control socket"), -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		sm_error_set(err, SM_E_IO, errno, "connect %s", vm->control);
		goto out;
	}
	if (control_send(fd, req, fd_out) < 0) {
		sm_error_set(err, SM_E_IO, errno, "send '%s' to %s", req, vm->control);
		goto out;
	}
	while (got + 1 < len && (n = read(fd, reply + got, len - 1 - got)) > 0) {
		got += (size_t)n;
		if (memchr(reply, '\n', got))
			break;
	}
	reply[got] = 0;
	reply[strcspn(reply, "\n")] = 0;
	if (worker_reply_parse(reply, &r) < 0 || !r.ok) {
		sm_error_set(err, SM_E_IO, 0, "worker control '%s': %s", req, got ? reply : "no answer");
		goto out;
	}
	memmove(reply, r.text, strlen(r.text) + 1);
	rc = 0;
out:
	close(fd);
	return rc;
}

/* ---- starting ---- */

static char **strv_dup(char *const *a, char *const *b)
{
	size_t na = 0, nb = 0;
	char **v;

	while (a && a[na])
		na++;
	while (b && b[nb])
		nb++;
	v = calloc(na + nb + 1, sizeof(*v));
	for (size_t i = 0; v && i < na + nb; i++)
		if (!(v[i] = strdup(i < na ? a[i] : b[i - na]))) {
			while (i--)
				free(v[i]);
			free(v);
			return NULL;
		}
	return v;
}

static void strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

static size_t strv_len(char *const *v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

/* The image's Env with each override replacing the same KEY. */
static char **vm_env_merge(char *const *image_env, const char *const *over)
{
	char **env = strv_dup(image_env, (char *const *)over);
	size_t n = strv_len(env), nimg = strv_len(image_env);

	for (size_t i = nimg; env && i < n; i++) {
		size_t klen = strcspn(env[i], "=");
		for (size_t j = 0; j < nimg; j++)
			if (env[j] && strncmp(env[j], env[i], klen) == 0 && env[j][klen] == '=') {
				free(env[j]);
				env[j] = NULL; /* compacted below */
			}
	}
	size_t k = 0;
	for (size_t i = 0; env && i < n; i++)
		if (env[i])
			env[k++] = env[i];
	if (env)
		env[k] = NULL;
	return env;
}

#define STRV(v) ((const char *const *)(v))

/* The parts of an image config a restored VM needs, for metadata.json. */
static json_t *vm_image_config_json(const struct oci_image_config *c)
{
	return json_pack("{s:o, s:o, s:o, s:s?, s:s?, s:s?}", "entrypoint", snapmeta_strv(STRV(c->entrypoint)),
			 "cmd", snapmeta_strv(STRV(c->cmd)), "env", snapmeta_strv(STRV(c->env)), "working_dir",
			 c->working_dir, "user", c->user, "stop_signal", c->stop_signal);
}

static int vm_plan_image(struct vm_plan *p, struct sm_vm *vm, const char *image, sm_error **err)
{
	struct oci_store *st = NULL;

	struct stat sb;

	/* an image name can hold '/' too (oci:DIR:TAG): only an existing file is a rootfs */
	if (stat(image, &sb) == 0 && S_ISREG(sb.st_mode)) {
		if (access(image, R_OK) < 0)
			return sm_error_set(err, SM_E_NOT_FOUND, errno, "root filesystem %s", image), -1;
		p->rootfs = image;
		return 0;
	}
	if (oci_store_open(NULL, &st, err) < 0)
		return -1;
	int rc = oci_image_resolve(st, image, &p->img, err);
	oci_store_close(st);
	if (rc < 0)
		return sm_error_wrap(err, "image %s", image), -1;
	if (!p->img->rootfs_path)
		return sm_error_set(err, SM_E_IMAGE, 0, "image %s has no root filesystem (pull it again)", image), -1;
	p->rootfs = p->img->rootfs_path;
	vm->image_cmd = strv_dup(p->img->config.entrypoint, p->img->config.cmd);
	if (!vm->image_cmd)
		return sm_error_set(err, SM_E_NOMEM, 0, "image command"), -1;
	if (!vm->image_cmd[0]) {
		free(vm->image_cmd);
		vm->image_cmd = NULL;
	}
	return 0;
}

static int vm_plan_volumes(struct vm_plan *p, struct sm_vm *vm, const sm_vm_config *cfg, sm_error **err)
{
	if (cfg->nvolumes > VM_MAX_VOLUMES)
		return sm_error_set(err, SM_E_INVALID, 0, "%zu volumes: at most %u", cfg->nvolumes, VM_MAX_VOLUMES),
		       -1;
	/* a root directory is a share, not disk 0 (vm_plan_root) */
	if (!cfg->root_dir)
		p->disks[p->ndisks++] = (struct worker_disk){ .path = p->rootfs, .read_only = true, .id = "rootfs" };
	vm->volumes = calloc(cfg->nvolumes + 1, sizeof(char *));
	if (!vm->volumes)
		return sm_error_set(err, SM_E_NOMEM, 0, "volumes"), -1;
	for (size_t i = 0; i < cfg->nvolumes; i++) {
		const sm_volume *v = &cfg->volumes[i];
		if (!v->host_path || !v->guest_path || v->guest_path[0] != '/')
			return sm_error_set(err, SM_E_INVALID, 0, "volume %zu: needs a host path and an absolute guest path",
					    i), -1;
		if (strchr(v->host_path, ','))
			return sm_error_set(err, SM_E_INVALID, 0, "volume %s: a ',' in the path is not supported",
					    v->host_path), -1;
		if (vm_volume_prepare(v, err) < 0)
			return -1;
		if (!(vm->volumes[vm->nvolumes++] = strdup(v->host_path)))
			return sm_error_set(err, SM_E_NOMEM, 0, "volumes"), -1;
		p->disks[p->ndisks++] = (struct worker_disk){ .path = v->host_path, .read_only = v->read_only };
	}
	if (vm_mounts_plan(cfg, &p->mounts, err) < 0)
		return -1;
	return cfg->root_dir ? vm_mounts_add_root(&p->mounts, cfg->root_dir, cfg->root_read_only, err) : 0;
}

int sm_signal_parse(const char *s)
{
	char *end;
	long n;

	if (!s || !*s)
		return 0;
	n = strtol(s, &end, 10);
	if (end != s && !*end)
		return n > 0 && n < NSIG ? (int)n : 0;
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (int sig = 1; sig < NSIG; sig++) {
		const char *name = sigabbrev_np(sig);
		if (name && strcasecmp(name, s) == 0)
			return sig;
	}
	return 0; /* unknown: the guest's default (SIGTERM) */
}

static int vm_plan_initrd(struct vm_plan *p, struct sm_vm *vm, const sm_vm_config *cfg, sm_error **err)
{
	struct proto_volume vols[VM_MAX_VOLUMES + SM_MAX_MOUNTS];
	char devs[VM_MAX_VOLUMES][16];
	const struct oci_image_config *ic = p->img ? &p->img->config : NULL;
	struct proto_config pc = {
		.flags = (cfg->power_off_on_exit ? PROTO_CFG_SHUTDOWN_ON_EXIT : 0) |
			 (cfg->network ? PROTO_CFG_NETWORK : 0),
		.hostname = cfg->hostname ? cfg->hostname : vm->id,
		.root_dev = cfg->root_dir ? VM_ROOT_TAG : "/dev/vda",
		.root_fstype = cfg->root_dir ? PROTO_FSTYPE_VIRTIOFS : "ext4",
		.workdir = cfg->workdir ? cfg->workdir : (ic && ic->working_dir ? ic->working_dir : ""),
		.user = cfg->user ? cfg->user : (ic && ic->user ? ic->user : ""),
		.stop_signal = ic && ic->stop_signal ? (uint32_t)sm_signal_parse(ic->stop_signal) : 0,
	};

	p->env = vm_env_merge(ic ? ic->env : NULL, cfg->env);
	if (!p->env)
		return sm_error_set(err, SM_E_NOMEM, 0, "environment"), -1;
	pc.nenv = (uint32_t)strv_len(p->env);
	pc.env = (const char **)p->env;
	const char *const *workload = cfg->workload;
	if (!workload && cfg->image_workload)
		workload = (const char *const *)vm->image_cmd;
	pc.nargv = (uint32_t)strv_len((char *const *)workload);
	pc.argv = (const char **)workload;
	for (size_t i = 0; i < cfg->nvolumes; i++) {
		/* disk 0 is the image's root filesystem, unless the root is a directory */
		snprintf(devs[i], sizeof(devs[i]), "/dev/vd%c", (char)((cfg->root_dir ? 'a' : 'b') + i));
		vols[i] = (struct proto_volume){ devs[i], cfg->volumes[i].guest_path, "",
						 cfg->volumes[i].read_only ? PROTO_VOL_RO : 0 };
	}
	pc.nvolumes = (uint32_t)cfg->nvolumes + vm_mounts_guest(&p->mounts, vols + cfg->nvolumes);
	pc.volumes = vols;
	snprintf(p->initrd, sizeof(p->initrd), "%s/initrd.cpio", vm->dir);
	return guestcfg_write_initrd(p->assets.initramfs, &pc, p->initrd, err);
}

static unsigned vm_vcpus(const sm_vm_config *cfg)
{
	return cfg->vcpus ? cfg->vcpus : (cfg->profile == SM_PROFILE_THROUGHPUT ? VM_THROUGHPUT_VCPUS : 1u);
}

static int vm_spawn(struct sm_vm *vm, struct vm_plan *p, const sm_vm_config *cfg, sm_error **err)
{
	struct worker_launch l = {
		.kernel = p->assets.kernel, .initrd = p->initrd,
		.memory_mib = cfg->memory_mib ? cfg->memory_mib : VM_DEFAULT_MEMORY_MIB, .memory_set = true,
		.vcpus = vm_vcpus(cfg), .vcpus_set = true,
		.ndisks = p->ndisks,
		.vsock = vm->vsock, .control = vm->control, .console = vm->console,
		.net = cfg->network,
		.balloon = true, /* for the balloon target a snapshot may carry (sm_bake_config) */
	};

	memcpy(l.disks, p->disks, p->ndisks * sizeof(p->disks[0]));
	vm_mounts_launch(&p->mounts, &l);
	return vm_spawn_launch(vm, &l, p->assets.worker, cfg->detached, err);
}

static int vm_spawn_argv(struct sm_vm *vm, const char *const argv[], bool detached, const struct vm_jail *j,
			 sm_error **err);

int vm_spawn_launch(struct sm_vm *vm, const struct worker_launch *l, const char *exe, bool detached,
		    sm_error **err)
{
	struct worker_launch jailed = *l;
	struct vm_jail j;
	char why[256], **argv;
	int rc;

	if (vm_jail_prepare(vm, &jailed, &j, err) < 0)
		return -1;
	rc = worker_launch_argv(&jailed, exe, &argv, why, sizeof(why));
	if (rc < 0)
		rc = (sm_error_set(err, rc == -ENOMEM ? SM_E_NOMEM : SM_E_INVALID, 0, "worker command line: %s", why), -1);
	else
		rc = vm_spawn_argv(vm, (const char *const *)argv, detached, &j, err);
	worker_argv_free(argv);
	if (j.cgroup_fd >= 0)
		close(j.cgroup_fd);
	return rc;
}

/*
 * DIR/worker.args, for sm_vm_restart(): the namespaces the worker starts
 * in ("ns=HEX", the launch's own reading of its jail), then its command
 * line, NUL-separated.
 */
#define VM_ARGS_NS "ns="

static int vm_args_save(const struct sm_vm *vm, const char *const argv[], unsigned long namespaces, sm_error **err)
{
	char path[VM_PATH_MAX + 16], *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int rc;

	if (f)
		fprintf(f, VM_ARGS_NS "%lx%c", namespaces, 0);
	for (size_t i = 0; f && argv[i]; i++)
		fwrite(argv[i], 1, strlen(argv[i]) + 1, f);
	if (!f || fclose(f) != 0)
		return free(buf), sm_error_set(err, SM_E_NOMEM, 0, "worker arguments"), -1;
	snprintf(path, sizeof(path), "%s/worker.args", vm->dir);
	rc = durable_write(path, buf, len, 0600);
	free(buf);
	if (rc < 0)
		return sm_error_set(err, SM_E_IO, -rc, "write %s", path), -1;
	return 0;
}

/* worker.args's namespaces field: its length, or 0 when it is not one. */
static size_t vm_args_namespaces(const char *buf, unsigned long *namespaces)
{
	char *end;

	if (strncmp(buf, VM_ARGS_NS, strlen(VM_ARGS_NS)) || !isxdigit((unsigned char)buf[strlen(VM_ARGS_NS)]))
		return 0;
	errno = 0;
	*namespaces = strtoul(buf + strlen(VM_ARGS_NS), &end, 16);
	return errno || *end ? 0 : (size_t)(end - buf) + 1;
}

/* worker.args back as a NULL-terminated vector (strv_free()) and the namespaces to start it in. */
static char **vm_args_load(const struct sm_vm *vm, unsigned long *namespaces, sm_error **err)
{
	char path[VM_PATH_MAX + 16], buf[65536];
	ssize_t n;
	char **v;
	size_t k = 0, i;

	snprintf(path, sizeof(path), "%s/worker.args", vm->dir);
	n = vm_file_tail(path, buf, sizeof(buf));
	if (n <= 0 || buf[n - 1] != 0 || !(i = vm_args_namespaces(buf, namespaces)) || (ssize_t)i >= n)
		return sm_error_set(err, SM_E_INVALID, 0, "VM %s cannot be restarted: %s is missing, cut or malformed",
				    vm->id, path), NULL;
	v = calloc((size_t)n + 1, sizeof(*v));
	for (; v && (ssize_t)i < n; i += strlen(buf + i) + 1)
		if (!(v[k++] = strdup(buf + i)))
			return strv_free(v), sm_error_set(err, SM_E_NOMEM, 0, "restart"), NULL;
	if (!v)
		sm_error_set(err, SM_E_NOMEM, 0, "restart");
	return v;
}

/*
 * l through vm->spare: 0 once the spare runs it. Any failure falls back
 * to a fresh worker (it is said in the log): a spare saves time, it
 * never makes a start fail.
 */
static int vm_spawn_spare(struct sm_vm *vm, const struct launch *l)
{
	sm_error *e = NULL;

	if (!vm->spare || l->detached || l->namespaces || !spare_alive(vm->spare))
		return -1;
	if (spare_hand(vm->spare, l->argv, l->log, &vm->pid, &vm->pidfd, &e) < 0) {
		log_warn("VM %s: %s; starting a fresh worker", vm->id, sm_error_string(e));
		sm_error_free(e);
		return -1;
	}
	vm->spare_used = true;
	return 0;
}

/* j: the jail l was read into (vm_jail_prepare); its namespaces are saved with argv for a restart */
static int vm_spawn_argv(struct sm_vm *vm, const char *const argv[], bool detached, const struct vm_jail *j,
			 sm_error **err)
{
	char log[VM_PATH_MAX + 16];
	struct launch l = { .argv = argv, .log = log, .detached = detached, .namespaces = j->namespaces,
			    .cgroup = j->cgroup_fd >= 0, .cgroup_fd = j->cgroup_fd };

	snprintf(log, sizeof(log), "%s/worker.log", vm->dir);
	if (vm_args_save(vm, argv, j->namespaces, err) < 0)
		return -1;
	if (vm_spawn_spare(vm, &l) == 0 || launcher_spawn(&l, &vm->pid, &vm->pidfd, err) == 0)
		return vm->owned = true, 0;
	return -1;
}

static void vm_command_string(const char *const *argv, char *out, size_t len)
{
	size_t n = 0;

	out[0] = 0;
	for (; argv && *argv && n + 1 < len; argv++)
		n += (size_t)snprintf(out + n, len - n, "%s%s", n ? " " : "", *argv);
}

int vm_record_meta(struct sm_vm *vm, const sm_vm_config *cfg, const char *label, const char *const *command,
		   const struct vm_machine *mach, sm_error **err)
{
	struct vm_meta *m = calloc(1, sizeof(*m));
	int rc;

	if (!m)
		return sm_error_set(err, SM_E_NOMEM, 0, "VM metadata"), -1;
	*m = (struct vm_meta){ .pid = vm->pid, .created = time(NULL), .detached = cfg->detached, .keep = vm->keep,
			       .exit_code = -1, .memory_mib = mach->memory_mib, .vcpus = mach->vcpus,
			       .network = mach->network, .restartable = mach->restartable,
			       .stop_timeout_ms = vm->stop_timeout_ms };
	m->started = m->created;
	snprintf(m->id, sizeof(m->id), "%s", vm->id);
	snprintf(m->name, sizeof(m->name), "%s", vm->name);
	snprintf(m->image, sizeof(m->image), "%s", label);
	snprintf(m->console, sizeof(m->console), "%s", vm->console);
	snprintf(m->restart, sizeof(m->restart), "%s", cfg->restart ? cfg->restart : "no");
	vm_command_string(command, m->command, sizeof(m->command));
	for (size_t i = 0; i < cfg->nvolumes && i < VM_MAX_VOLUMES; i++) {
		struct vm_meta_volume *v = &m->volumes[m->nvolumes++];
		snprintf(v->host, sizeof(v->host), "%s", cfg->volumes[i].host_path);
		snprintf(v->guest, sizeof(v->guest), "%s", cfg->volumes[i].guest_path);
		v->read_only = cfg->volumes[i].read_only;
	}
	rc = vm_meta_write(vm, m, err);
	free(m);
	return rc;
}

int vm_take_config(struct sm_vm *vm, const sm_vm_config *cfg, sm_error **err)
{
	vm->keep = cfg->keep;
	if (vm->keep)
		vm->remove = false; /* its record outlives it until sm_vm_remove(), even in the foreground */
	vm->stop_timeout_ms = cfg->stop_timeout_ms;
	if (cfg->restart && sm_restart_parse(cfg->restart, NULL) < 0)
		return sm_error_set(err, SM_E_INVALID, 0, "restart policy '%s': want no, on-failure or on-failure:N",
				    cfg->restart), -1;
	return cfg->name ? vm_runtime_name(vm, cfg->name, err) : 0;
}

static const char *const *vm_workload(const struct sm_vm *vm, const sm_vm_config *cfg)
{
	return cfg->workload ? cfg->workload : (cfg->image_workload ? (const char *const *)vm->image_cmd : NULL);
}

int vm_write_boot_record(const struct sm_vm *vm, const struct snap_meta *m, sm_error **err)
{
	char path[VM_PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/" SNAPMETA_BOOT_FILE, vm->dir);
	return snapmeta_write(path, m, true, err);
}

/* boot.json: what a capture of this VM records (src/lib/snapshot.h). */
static int vm_record_boot(struct sm_vm *vm, const struct vm_plan *p, const sm_vm_config *cfg, sm_error **err)
{
	struct snap_meta *m;
	const char *const *wl = vm_workload(vm, cfg);
	int rc = -1;

	if (cfg->root_dir)
		return 0; /* a live directory is no snapshot's root: no record, so no capture (snapshot.c) */
	m = calloc(1, sizeof(*m));
	if (!m)
		return sm_error_set(err, SM_E_NOMEM, 0, "boot record"), -1;
	m->memory_mib = cfg->memory_mib ? cfg->memory_mib : VM_DEFAULT_MEMORY_MIB;
	m->vcpus = vm_vcpus(cfg);
	m->network = cfg->network;
	m->balloon = true;
	snprintf(m->kernel.path, sizeof(m->kernel.path), "%s", p->assets.kernel);
	snprintf(m->initramfs.path, sizeof(m->initramfs.path), "%s", p->assets.initramfs);
	if (!realpath(p->rootfs, m->rootfs.path))
		snprintf(m->rootfs.path, sizeof(m->rootfs.path), "%s", p->rootfs);
	for (size_t i = 0; i < cfg->nvolumes && i < VM_MAX_VOLUMES; i++) {
		struct snap_volume *v = &m->volumes[m->nvolumes++];
		snprintf(v->host_path, sizeof(v->host_path), "%s", cfg->volumes[i].host_path);
		snprintf(v->guest_path, sizeof(v->guest_path), "%s", cfg->volumes[i].guest_path);
		v->read_only = cfg->volumes[i].read_only;
	}
	snprintf(m->label, sizeof(m->label), "%s", cfg->label ? cfg->label : p->image_label);
	if (p->img) {
		snprintf(m->image_name, sizeof(m->image_name), "%s", p->img->name);
		snprintf(m->image_digest, sizeof(m->image_digest), "%s", p->img->manifest_digest);
		m->image_config = vm_image_config_json(&p->img->config);
	}
	m->workload = wl ? snapmeta_strv(wl) : NULL;
	m->mounts = vm_mounts_json(&p->mounts, true);
	if (m->mounts)
		rc = vm_write_boot_record(vm, m, err);
	else
		sm_error_set(err, SM_E_NOMEM, 0, "boot record");
	snapmeta_release(m);
	free(m);
	return rc;
}

/*
 * Whether the guest's init logged that the workload ended (in the last
 * 8 KiB of the console). Only ever used to tell a VM that powered off
 * after its workload from one that died: a guest that prints the line
 * itself gains nothing but a start that reports an ended VM.
 */
static bool vm_console_says_workload_ended(const struct sm_vm *vm)
{
	return vm_console_workload_status(vm->console) >= 0;
}

/*
 * Pings the agent until it answers, the worker dies, or the timeout. A
 * short workload (`run -d IMAGE true`) can end, and init power the VM
 * off, before the first ping is answered: with power_off_on_exit that is
 * a VM that did its job, not one that failed to boot.
 */
static int vm_wait_agent(struct sm_vm *vm, uint32_t timeout_ms, bool power_off_on_exit, sm_error **err)
{
	uint64_t deadline = agent_now_ns() + (uint64_t)timeout_ms * 1000000u;
	useconds_t pause = 5000;
	struct proto_pong pong;

	for (;;) {
		sm_error *e = NULL;
		if (agent_ping(&vm->target, &pong, &e) == 0)
			return 0;
		if (!sm_vm_running(vm)) {
			sm_error_free(e);
			if (power_off_on_exit && vm->owned && vm->exit_status == 0 && vm_console_says_workload_ended(vm))
				return 0;
			return vm_died(vm, "while booting", err);
		}
		if (agent_now_ns() >= deadline) {
			if (err)
				*err = e;
			else
				sm_error_free(e);
			return sm_error_set(err, SM_E_TIMEOUT, 0,
					    "VM %s: the guest agent did not answer within %u ms (console: %s)", vm->id,
					    timeout_ms, vm->console), -1;
		}
		sm_error_free(e);
		usleep(pause);
		if (pause < 100000)
			pause *= 2;
	}
}

static void vm_plan_free(struct vm_plan *p)
{
	oci_image_free(p->img);
	strv_free(p->env);
	vm_mounts_free(&p->mounts);
}

struct sm_vm *vm_alloc(void)
{
	struct sm_vm *vm = calloc(1, sizeof(*vm));

	if (vm) {
		vm->pidfd = -1;
		vm->kind = &vm_kind_booted;
	}
	return vm;
}

struct sm_vm *vm_boot(const char *image, const sm_vm_config *cfg, sm_error **err)
{
	static const sm_vm_config defaults = { 0 };
	struct vm_plan *p = calloc(1, sizeof(*p));
	struct sm_vm *vm = vm_alloc();
	struct vm_machine mach;

	if (!cfg)
		cfg = &defaults;
	mach = (struct vm_machine){ .memory_mib = cfg->memory_mib ? cfg->memory_mib : VM_DEFAULT_MEMORY_MIB,
				    .vcpus = vm_vcpus(cfg), .network = cfg->network, .restartable = true };
	if (!p || !vm) {
		sm_error_set(err, SM_E_NOMEM, 0, "start VM");
		goto fail;
	}
	if (cfg->root_dir && (!image || !*image))
		image = cfg->root_dir;
	if (!image || !*image) {
		sm_error_set(err, SM_E_INVALID, 0, "start VM: no image given");
		goto fail;
	}
	p->image_label = image;
	vm->kind = cfg->detached ? &vm_kind_detached : &vm_kind_booted;
	vm->remove = !cfg->detached;
	if (vm_assets_find(cfg->assets, &p->assets, err) < 0 || (!cfg->root_dir && vm_plan_image(p, vm, image, err) < 0) ||
	    vm_plan_volumes(p, vm, cfg, err) < 0 || hostcheck_require_kvm(err) < 0 || vm_runtime_create(vm, err) < 0 ||
	    vm_take_config(vm, cfg, err) < 0)
		goto fail;
	if (cfg->console_log)
		snprintf(vm->console, sizeof(vm->console), "%s", cfg->console_log);
	if (agent_target_init(&vm->target, vm->vsock, PROTO_AGENT_PORT, err) < 0 ||
	    vm_plan_initrd(p, vm, cfg, err) < 0 || vm_spawn(vm, p, cfg, err) < 0 ||
	    vm_record_meta(vm, cfg, cfg->label ? cfg->label : p->image_label, vm_workload(vm, cfg), &mach, err) < 0 ||
	    vm_record_boot(vm, p, cfg, err) < 0 ||
	    vm_wait_agent(vm, cfg->boot_timeout_ms ? cfg->boot_timeout_ms : VM_DEFAULT_BOOT_TIMEOUT_MS,
			  cfg->power_off_on_exit, err) < 0)
		goto fail;
	vm_plan_free(p);
	free(p);
	return vm;
fail:
	sm_error_wrap(err, "start %s", image ? image : "VM");
	if (p)
		vm_plan_free(p);
	free(p);
	vm_discard(vm);
	return NULL;
}

void vm_discard(struct sm_vm *vm)
{
	if (!vm)
		return;
	vm->remove = true; /* a VM that never came up is never left behind, detached, kept or not */
	vm->keep = false;
	vm_stop_and_destroy(vm);
}

sm_vm *sm_vm_attach(const char *id, sm_error **err)
{
	struct sm_vm *vm = vm_alloc();
	struct vm_meta m;

	if (!vm)
		return sm_error_set(err, SM_E_NOMEM, 0, "attach"), NULL;
	vm->kind = &vm_kind_detached;
	if (vm_runtime_open(vm, id, err) < 0 || vm_meta_read(vm->dir, &m, err) < 0)
		goto fail;
	vm->pid = m.pid;
	vm->keep = m.keep;
	vm->stop_timeout_ms = m.stop_timeout_ms;
	snprintf(vm->name, sizeof(vm->name), "%s", m.name);
	if (m.console[0])
		snprintf(vm->console, sizeof(vm->console), "%s", m.console);
	if (agent_target_init(&vm->target, vm->vsock, PROTO_AGENT_PORT, err) < 0)
		goto fail;
	if (vm_pid_is_worker(vm->pid)) {
		/* open, then check again: the pidfd then pins this very process */
		vm->pidfd = (int)syscall(SYS_pidfd_open, vm->pid, 0);
		if (!vm_pid_is_worker(vm->pid))
			vm->exited = true;
	} else {
		vm->exited = true;
	}
	return vm;
fail:
	vm->dir[0] = 0; /* never remove what we failed to recognise */
	sm_vm_free(vm);
	return NULL;
}

/* ---- stopping ---- */

static void vm_flush_volumes(const struct sm_vm *vm)
{
	for (unsigned i = 0; i < vm->nvolumes; i++) {
		int fd = open(vm->volumes[i], O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			fsync(fd);
			close(fd);
		}
	}
}

static int vm_record_end(struct vm_meta *m, void *arg)
{
	const struct sm_vm *vm = arg;

	if (m->finished)
		return -1; /* recorded already (a watcher, an earlier stop) */
	m->finished = time(NULL);
	m->exit_code = vm->exit_code_set ? vm->exit_code : vm_console_workload_status(vm->console);
	return 0;
}

/* The worker is gone: a kept VM records how it ended and keeps its record, any other goes. */
static void vm_ended(struct sm_vm *vm)
{
	struct vm_meta m;

	if (!vm->keep) {
		vm->remove = true; /* stopped for good: nothing left to attach to */
		return;
	}
	vm_meta_update(vm, vm_record_end, vm, NULL);
	vm_runtime_prune(vm, vm_meta_read(vm->dir, &m, NULL) == 0 && m.restartable);
}

static int vm_record_stopping(struct vm_meta *m, void *arg)
{
	(void)arg;
	m->stopping = true;
	return 0;
}

void vm_mark_stopping(struct sm_vm *vm)
{
	if (vm->keep && vm->dir[0])
		vm_meta_update(vm, vm_record_stopping, NULL, NULL);
}

void sm_vm_set_exit_code(sm_vm *vm, int code)
{
	vm->exit_code_set = true;
	vm->exit_code = code;
}

const char *sm_vm_name(const sm_vm *vm)
{
	return vm->name;
}

int sm_vm_stop(sm_vm *vm, uint32_t grace_ms, sm_error **err)
{
	char reply[256];
	bool clean = true;

	if (!grace_ms)
		grace_ms = vm->stop_timeout_ms ? vm->stop_timeout_ms : VM_DEFAULT_GRACE_MS;
	if (sm_vm_running(vm)) {
		sm_error *e = NULL;
		vm_mark_stopping(vm); /* whoever watches it must not restart it */
		/* the guest syncs and unmounts its disks before it powers off */
		if (agent_shutdown(&vm->target, grace_ms, &e) < 0)
			sm_error_free(e);
		if (!vm_wait_exit(vm, (int)grace_ms + 5000)) {
			clean = false;
			if (vm_control(vm, WORKER_CTL_STOP, reply, sizeof(reply), NULL) < 0 || !vm_wait_exit(vm, 3000)) {
				kill(vm->pid, SIGKILL);
				vm_wait_exit(vm, 5000);
			}
		}
	}
	vm_flush_volumes(vm);
	vm_ended(vm);
	if (!clean)
		return sm_error_set(err, SM_E_TIMEOUT, 0, "VM %s did not power off within %u ms; it was stopped",
				    vm->id, grace_ms), -1;
	return 0;
}

void vm_destroy(struct sm_vm *vm)
{
	if (vm->remove)
		vm_runtime_remove(vm);
	if (vm->pidfd >= 0)
		close(vm->pidfd);
	strv_free(vm->image_cmd);
	strv_free(vm->volumes);
	free(vm);
}

void vm_stop_and_destroy(struct sm_vm *vm)
{
	if (vm->pid > 0 && sm_vm_running(vm))
		sm_vm_stop(vm, 0, NULL);
	vm_destroy(vm);
}

void sm_vm_free(sm_vm *vm)
{
	if (vm)
		vm->kind->free(vm);
}

int sm_vm_reset(sm_vm *vm, sm_error **err)
{
	return vm->kind->reset(vm, err);
}

/* ---- the kinds vm.c makes ---- */

static int vm_reset_booted(struct sm_vm *vm, sm_error **err)
{
	return sm_error_set(err, SM_E_INVALID, 0, "VM %s was booted, not restored: nothing to reset to", vm->id), -1;
}

const struct vm_kind vm_kind_booted = { .free = vm_stop_and_destroy, .reset = vm_reset_booted };
const struct vm_kind vm_kind_detached = { .free = vm_destroy, .reset = vm_reset_booted };

/* ---- talking to it ---- */

const char *sm_vm_id(const sm_vm *vm)
{
	return vm->id;
}

const char *sm_vm_console_path(const sm_vm *vm)
{
	return vm->console;
}

const char *const *sm_vm_image_command(const sm_vm *vm)
{
	return (const char *const *)vm->image_cmd;
}

sm_exec *sm_exec_new(sm_vm *vm)
{
	return exec_new(&vm->target);
}

int sm_vm_write_file(sm_vm *vm, const char *path, const void *data, size_t len, unsigned mode, sm_error **err)
{
	if (vm_check(vm, "write file", err) < 0)
		return -1;
	if (agent_write_file(&vm->target, path, data, len, mode, err) < 0)
		return vm_failed(vm, "write file", err);
	return 0;
}

int sm_vm_read_file(sm_vm *vm, const char *path, size_t max, void **data, size_t *len, sm_error **err)
{
	if (vm_check(vm, "read file", err) < 0)
		return -1;
	if (agent_read_file(&vm->target, path, max, data, len, err) < 0)
		return vm_failed(vm, "read file", err);
	return 0;
}

int sm_vm_connect(sm_vm *vm, uint16_t guest_port, sm_error **err)
{
	int fd;

	if (vm_check(vm, "connect", err) < 0)
		return -1;
	fd = agent_connect_tcp(&vm->target, guest_port, err);
	if (fd < 0)
		return vm_failed(vm, "connect", err);
	return fd;
}

int sm_vm_workload_signal(sm_vm *vm, int sig, sm_error **err)
{
	if (vm_check(vm, "signal the workload", err) < 0)
		return -1;
	if (sig == SIGKILL || sig == SIGTERM)
		vm_mark_stopping(vm); /* as docker kill: ended on request, not for a restart policy to undo */
	if (agent_signal_workload(&vm->target, sig, err) < 0)
		return vm_failed(vm, "signal the workload", err);
	return 0;
}

/* ---- restarting a kept VM ---- */

int sm_restart_parse(const char *s, unsigned *max_retries)
{
	char *end;
	unsigned long n;

	if (max_retries)
		*max_retries = 0;
	if (!s)
		return -1;
	if (!strcmp(s, "no"))
		return 0;
	if (!strcmp(s, "on-failure"))
		return 1;
	if (strncmp(s, "on-failure:", 11) || !isdigit((unsigned char)s[11]))
		return -1;
	errno = 0;
	n = strtoul(s + 11, &end, 10);
	if (errno || *end || n > 1000000)
		return -1;
	if (max_retries)
		*max_retries = (unsigned)n;
	return 1;
}

static int vm_record_restart(struct vm_meta *m, void *arg)
{
	const struct sm_vm *vm = arg;

	m->pid = vm->pid;
	m->started = time(NULL);
	m->finished = 0;
	m->exit_code = -1;
	m->restarts++;
	m->stopping = false;
	return 0;
}

int sm_vm_restart(sm_vm *vm, sm_error **err)
{
	struct vm_meta m;
	struct vm_jail j = { .namespaces = 0, .cgroup_fd = -1 };
	char **argv;

	if (sm_vm_running(vm))
		return sm_error_set(err, SM_E_INVALID, 0, "restart: VM %s is running", vm->id), -1;
	if (vm_meta_read(vm->dir, &m, err) < 0)
		return -1;
	if (!m.restartable)
		return sm_error_set(err, SM_E_INVALID, 0, "restart: VM %s was restored from a snapshot, not booted",
				    vm->id), -1;
	if (m.stopping)
		return sm_error_set(err, SM_E_INVALID, 0, "restart: VM %s was stopped on request", vm->id), -1;
	argv = vm_args_load(vm, &j.namespaces, err);
	if (!argv)
		return -1;
	vm_runtime_prune(vm, true); /* the sockets of the worker that ended */
	if (vm->pidfd >= 0)
		close(vm->pidfd);
	vm->pidfd = -1;
	vm->exited = false;
	vm->exit_status = 0;
	if (j.namespaces)
		j.cgroup_fd = vm_cgroup_open(vm->id); /* the leaf stays until the VM is removed */
	int rc = vm_spawn_argv(vm, (const char *const *)argv, m.detached, &j, err);
	strv_free(argv);
	if (j.cgroup_fd >= 0)
		close(j.cgroup_fd);
	if (rc < 0 || vm_meta_update(vm, vm_record_restart, vm, err) < 0)
		return sm_error_wrap(err, "restart VM %s", vm->id), -1;
	return vm_wait_agent(vm, VM_DEFAULT_BOOT_TIMEOUT_MS, true, err);
}

/* ---- what the worker reports ---- */

void vm_usage_parse(const char *text, sm_vm_stats_out *out)
{
	static const struct {
		const char *key;
		size_t off;
	} fields[] = {
		{ WORKER_USAGE_CPU_NS, offsetof(sm_vm_stats_out, cpu_ns) },
		{ WORKER_USAGE_RSS, offsetof(sm_vm_stats_out, rss_bytes) },
		{ WORKER_USAGE_MEMORY, offsetof(sm_vm_stats_out, memory_bytes) },
		{ WORKER_USAGE_BLK_READ, offsetof(sm_vm_stats_out, blk_read_bytes) },
		{ WORKER_USAGE_BLK_WRITE, offsetof(sm_vm_stats_out, blk_write_bytes) },
		{ WORKER_USAGE_NET_RX, offsetof(sm_vm_stats_out, net_rx_bytes) },
		{ WORKER_USAGE_NET_TX, offsetof(sm_vm_stats_out, net_tx_bytes) },
		{ WORKER_USAGE_VSOCK_RX, offsetof(sm_vm_stats_out, vsock_rx_bytes) },
		{ WORKER_USAGE_VSOCK_TX, offsetof(sm_vm_stats_out, vsock_tx_bytes) },
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		uint64_t v = 0;
		if (fields[i].off + sizeof(uint64_t) > out->size)
			continue; /* past the caller's struct */
		worker_reply_u64(text, fields[i].key, &v); /* a key the worker lacks stays 0 */
		memcpy((char *)out + fields[i].off, &v, sizeof(v));
	}
}

int sm_vm_stats(sm_vm *vm, sm_vm_stats_out *out, sm_error **err)
{
	char reply[WORKER_CTL_LINE_MAX];

	if (!out || out->size < sizeof(size_t))
		return sm_error_set(err, SM_E_INVALID, 0, "stats: set sm_vm_stats_out.size"), -1;
	if (vm_check(vm, "stats", err) < 0)
		return -1;
	if (vm_control(vm, WORKER_CTL_USAGE, reply, sizeof(reply), err) < 0)
		return vm_failed(vm, "stats", err);
	vm_usage_parse(reply, out);
	return 0;
}

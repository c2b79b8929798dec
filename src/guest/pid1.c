/*
 * PID 1's boot and shutdown: the mounts, the image's root filesystem
 * (read-only ext4 under an overlay whose upper layer is tmpfs, so all
 * writable state lives in guest RAM and a memory snapshot captures it),
 * volumes, hostname and resolver files, and the final reboot (with
 * reboot=t, the triple fault the VMM sees as the end of the VM).
 */
#include "guest/init.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEVICE_WAIT_MS 5000

void boot_marker(uint8_t value)
{
	/* Only meaningful under our VMM; elsewhere the write goes nowhere. */
	if (ioperm(WORKER_MARKER_PORT, 1, 1) == 0)
		outb(value, WORKER_MARKER_PORT);
}

static int mnt(const char *src, const char *dst, const char *type, unsigned long flags, const char *data)
{
	if (init_mkdir_p(dst, 0755) < 0 || mount(src, dst, type, flags, data) < 0) {
		int e = errno;
		agent_log("mount %s on %s (%s): %s", src, dst, type ? type : "move", strerror(e));
		return -e;
	}
	return 0;
}

/* The kernel opens /dev/console for init only if the initramfs has it. */
static bool std_fds_missing(void)
{
	bool missing = false;

	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) < 0) {
			/* Hold the slot so nothing opened later lands on 0-2. */
			if (open("/", O_RDONLY) < 0)
				return true;
			missing = true;
		}
	}
	return missing;
}

static void attach_console(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);

	if (fd < 0)
		return;
	for (int i = 0; i < 3; i++)
		dup2(fd, i);
	if (fd > 2)
		close(fd);
}

static int mount_early(void)
{
	bool no_console = std_fds_missing();
	int rc = 0;

	rc |= mnt("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	rc |= mnt("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	rc |= mnt("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	if (no_console)
		attach_console();
	mnt("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
	/* devtmpfs may already hold a ptmx node; the devpts one is what posix_openpt needs. */
	unlink("/dev/ptmx");
	if (symlink("pts/ptmx", "/dev/ptmx") < 0)
		agent_log("symlink /dev/ptmx: %s", strerror(errno));
	mnt("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	return rc ? -EIO : 0;
}

static int load_config(struct init_state *st)
{
	struct proto_frame f;
	size_t len, used;
	int rc;

	rc = init_read_file(INIT_CONFIG_PATH, PROTO_MAX_PAYLOAD + PROTO_HDR_SIZE, &st->config_raw, &len);
	if (rc == -ENOENT) {
		/* No configuration: an image disk if there is one, no workload. */
		agent_log("no %s: using defaults", INIT_CONFIG_PATH);
		st->cfg.hostname = "supermachine";
		st->cfg.root_dev = access("/dev/vda", F_OK) == 0 ? "/dev/vda" : "";
		st->cfg.root_fstype = "ext4";
		if (access("/sys/class/net/eth0", F_OK) == 0)
			st->cfg.flags |= PROTO_CFG_NETWORK;
		return 0;
	}
	if (rc < 0) {
		agent_log("read %s: %s", INIT_CONFIG_PATH, strerror(-rc));
		return rc;
	}
	if (proto_frame_parse(st->config_raw, len, &f, &used) != 1 || used != len ||
	    proto_decode_config(&f, &st->cfg) < 0) {
		agent_log("%s is not a valid guest configuration", INIT_CONFIG_PATH);
		return -EINVAL;
	}
	return 0;
}

static int wait_device(const char *dev)
{
	struct timespec ms = { 0, 1000000 };

	for (int i = 0; i < DEVICE_WAIT_MS; i++) {
		if (access(dev, F_OK) == 0)
			return 0;
		nanosleep(&ms, NULL);
	}
	agent_log("device %s did not appear", dev);
	return -ENODEV;
}

/* An image's ext4 disk, read-only, under an overlay whose upper layer is guest RAM. */
static int mount_root_disk(const char *dev, const char *fstype)
{
	if (wait_device(dev) < 0)
		return -ENODEV;
	if (mnt(dev, "/sm/lower", fstype, MS_RDONLY, NULL) < 0 ||
	    mnt("tmpfs", "/sm/rw", "tmpfs", 0, "mode=0755") < 0 ||
	    init_mkdir_p("/sm/rw/upper", 0755) < 0 || init_mkdir_p("/sm/rw/work", 0755) < 0 ||
	    mnt("overlay", "/sm/root", "overlay", 0,
		"lowerdir=/sm/lower,upperdir=/sm/rw/upper,workdir=/sm/rw/work") < 0)
		return -EIO;
	return 0;
}

static int switch_root(const struct proto_config *cfg)
{
	static const char *const moved[] = { "/dev", "/proc", "/sys" };
	const char *fstype = cfg->root_fstype && cfg->root_fstype[0] ? cfg->root_fstype : "ext4";
	char dst[64];

	/*
	 * A share (an OCI bundle's rootfs directory) is the root as it is:
	 * its writes belong to the host's directory, as they do under runc.
	 */
	if (strcmp(fstype, PROTO_FSTYPE_VIRTIOFS) == 0 ? mnt(cfg->root_dev, "/sm/root", fstype, 0, NULL) < 0
						       : mount_root_disk(cfg->root_dev, fstype) < 0)
		return -EIO;
	for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
		snprintf(dst, sizeof(dst), "/sm/root%s", moved[i]);
		if (mnt(moved[i], dst, NULL, MS_MOVE, NULL) < 0)
			return -EIO;
	}
	/*
	 * pivot_root(2) refuses the initramfs (rootfs cannot be unmounted), so
	 * move the new root over / and chroot, as switch_root(8) does. The
	 * initramfs holds only /init, so there is nothing to free.
	 */
	if (chdir("/sm/root") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
	    chdir("/") < 0) {
		agent_log("switching to the image's root: %s", strerror(errno));
		return -EIO;
	}
	return 0;
}

static void mount_volumes(const struct proto_config *cfg)
{
	for (uint32_t i = 0; i < cfg->nvolumes; i++) {
		const struct proto_volume *v = &cfg->volumes[i];
		const char *fstype = v->fstype[0] ? v->fstype : "ext4";
		bool share = strcmp(fstype, PROTO_FSTYPE_VIRTIOFS) == 0;
		/* a share's files are the host's: no device nodes, no set-id programs from it */
		unsigned long flags = (v->flags & PROTO_VOL_RO ? MS_RDONLY : 0) | (share ? MS_NODEV | MS_NOSUID : 0);

		if ((share || wait_device(v->device) == 0) && mnt(v->device, v->path, fstype, flags, NULL) == 0)
			continue;
		agent_log("%s %s (%s) IS NOT MOUNTED: writes to it stay in guest RAM", share ? "SHARE" : "VOLUME",
			  v->path, v->device);
	}
}

static void write_etc(const struct proto_config *cfg)
{
	const char *host = cfg->hostname && cfg->hostname[0] ? cfg->hostname : "supermachine";
	char buf[512];

	if (sethostname(host, strlen(host)) < 0)
		agent_log("sethostname: %s", strerror(errno));
	init_mkdir_p("/etc", 0755);
	snprintf(buf, sizeof(buf), "%s\n", host);
	init_write_file("/etc/hostname", buf);
	snprintf(buf, sizeof(buf),
		 "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n", host);
	init_write_file("/etc/hosts", buf);
	if (cfg->flags & PROTO_CFG_NETWORK) {
		static const uint8_t slirp_dns[4] = { 10, 0, 2, 3 };
		const uint8_t *d = cfg->dns[0] ? cfg->dns : slirp_dns;
		/* Often a symlink into /run/systemd in the image: replace it. */
		unlink("/etc/resolv.conf");
		snprintf(buf, sizeof(buf), "nameserver %u.%u.%u.%u\n", d[0], d[1], d[2], d[3]);
		init_write_file("/etc/resolv.conf", buf);
	}
}

static void setup_cgroups(struct init_state *st)
{
	if (access(INIT_CGROUP_ROOT "/cgroup.controllers", F_OK) < 0)
		return;
	/* Lets per-exec cgroups account memory and pids; fine if a controller is missing. */
	init_write_file(INIT_CGROUP_ROOT "/cgroup.subtree_control", "+memory +pids");
	snprintf(st->cgroup_root, sizeof(st->cgroup_root), "%s", INIT_CGROUP_ROOT);
}

int pid1_boot(struct init_state *st)
{
	int rc;

	boot_marker(WORKER_MARKER_INIT);
	if (mount_early() < 0)
		return -EIO;
	rc = load_config(st);
	if (rc < 0)
		return rc;
	if (st->cfg.root_dev[0] && switch_root(&st->cfg) < 0)
		return -EIO;
	mount_volumes(&st->cfg);
	/* Many images have no /tmp, and staged files usually go there. */
	init_mkdir_p("/tmp", 01777);
	init_mkdir_p("/run/supermachine", 0755);
	st->heartbeat_path = INIT_HEARTBEAT_PATH;
	net_loopback_up();
	if (st->cfg.flags & PROTO_CFG_NETWORK)
		net_setup(&st->cfg);
	write_etc(&st->cfg);
	setup_cgroups(st);
	/* Inherited by the agent's per-exec session processes: a guest out of
	 * memory kills what an exec ran, never the process that reports how it
	 * ended (spawn_command puts each command back to 0). */
	init_write_file("/proc/self/oom_score_adj", "-1000");
	/* Ctrl-Alt-Del becomes SIGINT to us (forwarded to the workload), not an instant reboot. */
	reboot(RB_DISABLE_CAD);
	return 0;
}

static void kill_everything(void)
{
	struct timespec ms = { 0, 1000000 };

	kill(-1, SIGKILL);
	/* Bounded: a process stuck in the kernel must not stop the reboot. */
	for (int i = 0; i < 2000; i++) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
			return;
		nanosleep(&ms, NULL);
	}
}

void pid1_poweroff(struct init_state *st)
{
	agent_log("shutting down");
	kill_everything();
	sync();
	for (uint32_t i = st->cfg.nvolumes; i-- > 0;) {
		const char *path = st->cfg.volumes[i].path;
		if (umount2(path, 0) < 0 && umount2(path, MNT_DETACH) < 0)
			agent_log("umount %s: %s", path, strerror(errno));
	}
	sync();
	reboot(RB_AUTOBOOT);
	/* Not reached; if it were, PID 1 exiting panics the kernel, which (panic=-1) also ends the VM. */
	_exit(1);
}

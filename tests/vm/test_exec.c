/*
 * The exec agent inside a real VM: the shipping /init (build/src/guest/
 * initramfs.cpio + a config archive from src/lib/guestcfg.c) boots an ext4
 * image of busybox (test_exec_rootfs.sh) under an overlay, with a volume,
 * and the host client reaches it through the worker's vsock socket. One
 * boot runs the whole exec table (boots are slow under nested KVM); other
 * tests boot for volumes, shutdown and a VM that dies mid-exec.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/exec.h"
#include "lib/guestcfg.h"
#include "../unit/test_agent_fixture.h"
#include "worker_proc.h"

#define BOOT_WAIT_MS 300000 /* nested KVM under TCG boots slowly: a hang guard, not a figure */
#define HEARTBEAT_WORKLOAD                                                                            \
	"trap 'echo SMTEST workload got TERM; exit 0' TERM; echo SMTEST workload up; "                 \
	"while :; do echo -n . > /run/supermachine/heartbeat; sleep 1; done"

struct vmx {
	struct wproc w;
	char dir[64];     /* our files: initrd with config, volume */
	char initrd[128];
	char volume[128];
	struct agent_target t;
};

static struct vmx vm;

#define must(cond, ...)                          \
	do {                                     \
		if (!(cond)) {                   \
			wproc_dump(&vm.w);       \
			cr_assert_fail(__VA_ARGS__); \
		}                                \
	} while (0)

static void make_volume(const char *path)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "truncate -s 64M %s && mke2fs -q -F -t ext4 %s", path, path);
	cr_assert(system(cmd) == 0, "formatting the test volume failed");
}

static void write_initrd(const char *const *argv, uint32_t nargv, uint32_t flags)
{
	static const char *env[] = { "PATH=/bin", "GREETING=hello from the image", NULL };
	struct proto_volume vol = { "/dev/vdb", "/data", "", 0 };
	struct proto_config cfg = {
		.flags = flags, .hostname = "smtest", .root_dev = "/dev/vda", .root_fstype = "ext4",
		.nenv = 2, .env = env, .nargv = nargv, .argv = (const char **)argv, .workdir = "/root", .user = "",
		.stop_signal = SIGTERM, .nvolumes = 1, .volumes = &vol,
	};
	sm_error *err = NULL;

	snprintf(vm.initrd, sizeof(vm.initrd), "%s/initrd.cpio", vm.dir);
	cr_assert(guestcfg_write_initrd(SM_GUEST_INITRAMFS, &cfg, vm.initrd, &err) == 0, "%s", sm_error_string(err));
}

/* Boots; returns once the agent answers a ping. */
static void boot(void)
{
	char disk_root[160], disk_vol[160];
	const char *extra[] = { "--disk", disk_root, "--disk", disk_vol, "--vsock", NULL };
	struct proto_pong pong;
	uint64_t deadline = agent_now_ns() + (uint64_t)BOOT_WAIT_MS * 1000000u;

	snprintf(disk_root, sizeof(disk_root), "%s,ro", SM_EXEC_ROOTFS);
	snprintf(disk_vol, sizeof(disk_vol), "%s", vm.volume);
	if (!wproc_start(&vm.w, vm.initrd, "quiet", 256, extra))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
	cr_assert(agent_target_init(&vm.t, vm.w.vsock, PROTO_AGENT_PORT, NULL) == 0);
	for (;;) {
		sm_error *err = NULL;
		if (agent_ping(&vm.t, &pong, &err) == 0)
			return;
		sm_error_free(err);
		must(agent_now_ns() < deadline && wproc_wait(&vm.w, 0) < 0, "the agent never answered");
		usleep(200000);
	}
}

static void setup_dir(void)
{
	signal(SIGPIPE, SIG_IGN);
	strcpy(vm.dir, "/tmp/sm-vmexec-XXXXXX");
	cr_assert(mkdtemp(vm.dir));
	snprintf(vm.volume, sizeof(vm.volume), "%s/volume.ext4", vm.dir);
	make_volume(vm.volume);
}

static void setup_service(void)
{
	setup_dir();
	write_initrd((const char *[]){ "sh", "-c", HEARTBEAT_WORKLOAD, NULL }, 3, 0);
	boot();
}

static void teardown(void)
{
	char cmd[128];

	wproc_stop(&vm.w);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", vm.dir);
	if (vm.dir[0] && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", vm.dir);
}

TestSuite(vm_exec, .timeout = 1800);

/* ---- helpers ---------------------------------------------------------------------- */

static sm_exec *sh(const char *script)
{
	return fixture_sh(&vm.t, script);
}

/* sm_exec_spawn() leaves the builder to its caller. */
static sm_child *spawn_sh(const char *script, sm_error **err)
{
	sm_exec *x = sh(script);
	sm_child *c = sm_exec_spawn(x, err);

	sm_exec_free(x);
	return c;
}

static void run(sm_exec *x, sm_outcome *out)
{
	sm_error *err = NULL;

	must(sm_exec_output(x, out, &err) == 0, "exec failed: %s", sm_error_string(err));
	sm_exec_free(x);
}

static const char *str(const char *s)
{
	return s ? s : "";
}

/* Runs a script and expects exactly this stdout and status 0. */
static void expect_sh(const char *script, const char *want)
{
	sm_outcome out;

	run(sh(script), &out);
	cr_expect_eq(out.status, 0, "'%s' exited %d, stderr: %s", script, out.status, str(out.stderr_data));
	cr_expect_str_eq(str(out.stdout_data), want, "'%s'", script);
	sm_outcome_free(&out);
}

static uint32_t agent_caps(void)
{
	struct agent_conn c;
	struct proto_frame f;
	sm_error *err = NULL;
	uint32_t caps;

	must(agent_open(&c, &vm.t, false, &err) == 0, "%s", sm_error_string(err));
	proto_encode_empty(&c.out, PROTO_PING);
	must(agent_send(&c, 0, &err) == 0 && agent_recv(&c, &f, 0, &err) == 1, "%s", sm_error_string(err));
	caps = c.caps;
	agent_close(&c);
	return caps;
}

/* ---- the exec table, in one VM ------------------------------------------------------ */

static void check_pid1_and_mounts(void)
{
	cr_expect_eq(agent_caps(), PROTO_CAP_CGROUP | PROTO_CAP_PID1);
	expect_sh("cat /proc/1/cmdline", "/init");
	expect_sh("hostname; cat /etc/hostname", "smtest\nsmtest\n");
	/* / is the overlay (tmpfs over the read-only image); /data is the volume */
	expect_sh("grep -c '^overlay / overlay' /proc/mounts; grep -c ' /data ext4 rw' /proc/mounts; "
		  "grep -c ' /sys/fs/cgroup cgroup2' /proc/mounts; grep -c ' /dev/pts devpts' /proc/mounts",
		  "1\n1\n1\n1\n");
	expect_sh("echo new > /etc/added && cat /etc/added", "new\n");
	expect_sh("ip -o addr show lo | grep -c 127.0.0.1", "1\n");
}

static void check_exit_codes_and_streams(void)
{
	static const int codes[] = { 0, 1, 255 };
	sm_outcome out;

	for (size_t i = 0; i < 3; i++) {
		char script[32];
		snprintf(script, sizeof(script), "exit %d", codes[i]);
		run(sh(script), &out);
		cr_expect_eq(out.status, codes[i]);
		sm_outcome_free(&out);
	}
	run(sh("kill -TERM $$; sleep 5"), &out);
	cr_expect_eq(out.signal, SIGTERM);
	sm_outcome_free(&out);
	run(sh("echo out; echo err >&2"), &out);
	cr_expect_str_eq(str(out.stdout_data), "out\n");
	cr_expect_str_eq(str(out.stderr_data), "err\n");
	cr_expect(out.peak_rss_kib > 0);
	sm_outcome_free(&out);
}

static void check_not_found_and_chain(void)
{
	sm_exec *x = exec_new(&vm.t);
	sm_outcome out;

	sm_exec_argv(x, (const char *[]){ "no-such-command", NULL });
	run(x, &out);
	cr_expect_eq(out.status, 127);
	cr_expect(strstr(str(out.stderr_data), "no-such-command"), "%s", str(out.stderr_data));
	sm_outcome_free(&out);

	x = exec_new(&vm.t);
	sm_exec_stage_file_mode(x, "/tmp/s.sh", "#!/bin/sh\necho staged $1\n", 25, 0755);
	sm_exec_argv(x, (const char *[]){ "/tmp/s.sh", "one", NULL });
	sm_exec_chain(x, (const char *[]){ "false", NULL });
	sm_exec_chain(x, (const char *[]){ "echo", "never", NULL });
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), "staged one\n");
	cr_expect_eq(out.status, 1);
	cr_expect_eq(out.chain_index, 1);
	sm_outcome_free(&out);
}

static void check_env_cwd_user(void)
{
	sm_exec *x = sh("echo \"$GREETING|$EXTRA|$HOME\"; pwd; id -u; id -g; id -G");
	sm_outcome out;

	sm_exec_env(x, "EXTRA", "added");
	sm_exec_cwd(x, "/tmp");
	sm_exec_user(x, "user");
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), "hello from the image|added|/home/user\n/tmp\n1000\n1000\n1000 10 29\n");
	sm_outcome_free(&out);
	/* the image's WorkingDir and the default user */
	expect_sh("pwd; id -u", "/root\n0\n");
	x = sh("id -u; id -g");
	sm_exec_user(x, "65534:29");
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), "65534\n29\n");
	sm_outcome_free(&out);
}

static void check_tty(void)
{
	sm_exec *x = sh("stty size; tty");
	sm_outcome out;

	sm_exec_tty(x, true);
	sm_exec_winsize(x, 33, 101);
	run(x, &out);
	cr_expect(!strncmp(str(out.stdout_data), "33 101\r\n/dev/pts/", 17), "%s", str(out.stdout_data));
	sm_outcome_free(&out);
}

static void check_timeout_kills_tree(void)
{
	sm_exec *x = sh("sleep 100 & setsid sleep 101 & sleep 102");
	sm_outcome out;

	sm_exec_timeout_ms(x, 2000);
	run(x, &out);
	cr_expect(out.timed_out);
	cr_expect_eq(out.signal, SIGKILL);
	sm_outcome_free(&out);
	/* None of the three sleeps is left in the guest. */
	expect_sh("ps | grep -c '[s]leep 10[012]' || true", "0\n");
}

static void check_streaming(void)
{
	const size_t total = 16u << 20;
	sm_error *err = NULL;
	sm_child *c;
	sm_outcome out;
	static char buf[65536];
	size_t got = 0;
	ssize_t n;

	c = spawn_sh("head -c 16777216 /dev/zero", &err);
	must(c, "%s", sm_error_string(err));
	while ((n = read(sm_child_stdout(c), buf, sizeof(buf))) > 0)
		got += (size_t)n;
	cr_expect_eq(got, total);
	must(sm_child_wait(c, &out, &err) == 0, "%s", sm_error_string(err));
	cr_expect_eq(out.status, 0);
	sm_child_free(c);

	/* stdin echoed back */
	sm_exec *x = exec_new(&vm.t);
	char *in = malloc(1 << 20);
	for (size_t i = 0; i < (1u << 20); i++)
		in[i] = (char)('a' + i % 26);
	sm_exec_argv(x, (const char *[]){ "cat", NULL });
	sm_exec_stdin(x, in, 1 << 20);
	run(x, &out);
	cr_expect_eq(out.stdout_len, 1u << 20);
	cr_expect(out.stdout_data && memcmp(out.stdout_data, in, 1 << 20) == 0);
	sm_outcome_free(&out);
	free(in);
}

static void check_concurrent(void)
{
	fixture_concurrent(&vm.t, "/tmp/barrier", 32, 600000);
}

static void check_files(void)
{
	sm_error *err = NULL;
	size_t len, big = 8u << 20;
	char *data = malloc(big);
	void *back;

	for (size_t i = 0; i < big; i++)
		data[i] = (char)(i * 31 + i / 4096);
	must(agent_write_file(&vm.t, "/tmp/big", data, big, 0600, &err) == 0, "%s", sm_error_string(err));
	must(agent_read_file(&vm.t, "/tmp/big", big, &back, &len, &err) == 0, "%s", sm_error_string(err));
	cr_expect_eq(len, big);
	cr_expect(memcmp(back, data, big) == 0);
	free(back);
	free(data);
	expect_sh("stat -c %a /tmp/big", "600\n");
	cr_expect(agent_read_file(&vm.t, "/nope", 10, &back, &len, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND, "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;
	cr_expect(agent_write_file(&vm.t, "/nodir/x", "x", 1, 0644, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND, "%s", sm_error_string(err));
	sm_error_free(err);
}

static void check_service_bridge(void)
{
	sm_error *err = NULL;
	sm_child *httpd;
	sm_outcome out;
	bool found = false;
	uint16_t port = 0;
	char reply[512] = { 0 };
	size_t got = 0;
	ssize_t n;
	int fd;

	httpd = spawn_sh("exec httpd -f -p 8080 -h /www", &err);
	must(httpd, "%s", sm_error_string(err));
	for (int i = 0; i < 300 && !found; i++) {
		must(agent_probe_listen(&vm.t, 8080, &found, &port, &err) == 0, "%s", sm_error_string(err));
		if (!found)
			usleep(100000);
	}
	cr_assert(found, "httpd never listened");
	fd = agent_connect_tcp(&vm.t, 8080, &err);
	must(fd >= 0, "%s", sm_error_string(err));
	cr_assert(write(fd, "GET /index.html HTTP/1.0\r\n\r\n", 28) == 28);
	while (got < sizeof(reply) - 1 && (n = read(fd, reply + got, sizeof(reply) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	cr_expect(strstr(reply, "200 OK"), "%s", reply);
	cr_expect(strstr(reply, "served from the guest"), "%s", reply);
	cr_assert(sm_child_signal(httpd, SIGTERM, &err) == 0);
	must(sm_child_wait(httpd, &out, &err) == 0, "%s", sm_error_string(err));
	cr_expect_eq(out.signal, SIGTERM);
	sm_child_free(httpd);
}

static uint64_t beats_now(void)
{
	sm_error *err = NULL;
	uint64_t beats = 0;

	must(agent_heartbeat(&vm.t, &beats, &err) == 0, "%s", sm_error_string(err));
	return beats;
}

/* QUIESCE freezes the workload (it beats once a second) until RESUME; heartbeat requests are still served. */
static void check_seal(void)
{
	uint8_t rnd[PROTO_RESUME_ENTROPY] = { 9 };
	struct proto_pong pong;
	sm_error *err = NULL;
	struct timespec now;
	uint64_t frozen;

	must(agent_quiesce(&vm.t, 0, &err) == 0, "%s", sm_error_string(err));
	usleep(500 * 1000); /* a beat written just before the freeze is counted by now */
	frozen = beats_now();
	usleep(3500 * 1000);
	cr_expect_eq(beats_now(), frozen, "the workload beat while the VM was sealed");
	clock_gettime(CLOCK_REALTIME, &now);
	must(agent_resume(&vm.t, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec, rnd, sizeof(rnd), &pong,
			  &err) == 0, "%s", sm_error_string(err));
	for (int i = 0; i < 300 && beats_now() == frozen; i++)
		usleep(100000);
	cr_expect_gt(beats_now(), frozen, "the workload did not beat again after the resume");
}

static void check_clock_entropy_quiesce(void)
{
	struct proto_pong pong;
	sm_error *err = NULL;
	uint8_t seed[64] = { 7 };
	uint64_t t2030 = 1893456000ull * 1000000000u;

	must(agent_set_time(&vm.t, t2030, &err) == 0, "%s", sm_error_string(err));
	must(agent_ping(&vm.t, &pong, &err) == 0, "%s", sm_error_string(err));
	cr_expect(pong.realtime_ns >= t2030 && pong.realtime_ns < t2030 + 3600ull * 1000000000u);
	expect_sh("date -u +%Y", "2030\n");
	must(agent_add_entropy(&vm.t, seed, sizeof(seed), &err) == 0, "%s", sm_error_string(err));
	check_seal();
}

static void check_workload(void)
{
	char line[256];
	sm_error *err = NULL;
	uint64_t beats = 0;

	for (int i = 0; i < 600 && beats < 2; i++) {
		must(agent_heartbeat(&vm.t, &beats, &err) == 0, "%s", sm_error_string(err));
		usleep(100000);
	}
	cr_expect(beats >= 2, "heartbeats: %llu", (unsigned long long)beats);
	must(agent_signal_workload(&vm.t, SIGTERM, &err) == 0, "%s", sm_error_string(err));
	must(wproc_wait_line(&vm.w, "SMTEST workload got TERM", line, sizeof(line), 120000), "no TERM seen");
}

Test(vm_exec, exec_table, .init = setup_service, .fini = teardown)
{
	check_pid1_and_mounts();
	check_exit_codes_and_streams();
	check_not_found_and_chain();
	check_env_cwd_user();
	check_tty();
	check_timeout_kills_tree();
	check_streaming();
	check_concurrent();
	check_files();
	check_service_bridge();
	check_clock_entropy_quiesce();
	check_workload();
}

/* ---- volumes across boots, and shutdown ------------------------------------------------- */

static void setup_plain(void)
{
	setup_dir();
	write_initrd(NULL, 0, 0);
}

Test(vm_exec, volume_survives_shutdown, .init = setup_plain, .fini = teardown)
{
	sm_error *err = NULL;
	void *data;
	size_t len;

	boot();
	must(agent_write_file(&vm.t, "/data/kept", "across boots\n", 13, 0644, &err) == 0, "%s", sm_error_string(err));
	must(agent_shutdown(&vm.t, 1000, &err) == 0, "%s", sm_error_string(err));
	/* The guest rebooted (reboot=t: the triple fault): the worker's status for that is 0. */
	cr_expect_eq(wproc_wait(&vm.w, 120000), 0);
	wproc_stop(&vm.w);
	boot();
	must(agent_read_file(&vm.t, "/data/kept", 100, &data, &len, &err) == 0, "%s", sm_error_string(err));
	cr_expect_str_eq(data, "across boots\n");
	free(data);
}

static void setup_exiting_workload(void)
{
	setup_dir();
	write_initrd((const char *[]){ "sh", "-c", "echo SMTEST short workload; sleep 2; exit 3", NULL }, 3,
		     PROTO_CFG_SHUTDOWN_ON_EXIT);
}

Test(vm_exec, workload_exit_powers_off, .init = setup_exiting_workload, .fini = teardown)
{
	char line[256];

	if (!wproc_start(&vm.w, vm.initrd, "quiet", 256,
			 (const char *[]){ "--disk", SM_EXEC_ROOTFS ",ro", "--disk", vm.volume, NULL }))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR");
	must(wproc_wait_line(&vm.w, "SMTEST short workload", line, sizeof(line), BOOT_WAIT_MS), "no workload");
	cr_expect_eq(wproc_wait(&vm.w, 120000), 0, "the VM did not end when its workload did");
}

Test(vm_exec, vm_dying_mid_exec, .init = setup_plain, .fini = teardown)
{
	sm_error *err = NULL;
	sm_outcome out;
	sm_child *c;
	char buf[16];

	boot();
	c = spawn_sh("echo up; sleep 1000", &err);
	must(c, "%s", sm_error_string(err));
	cr_assert(read(sm_child_stdout(c), buf, 3) == 3);
	kill(vm.w.pid, SIGKILL);
	cr_assert(sm_child_wait(c, &out, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_VM_DIED, "%s", sm_error_string(err));
	sm_error_free(err);
	sm_child_free(c);
}

/*
 * supermachine-worker's command line: every mistake a user can make ends
 * with exactly one line on stderr and exit status 2, before any VM exists
 * (so these run without /dev/kvm).
 */
#include <criterion/criterion.h>
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct result {
	int status;
	char out[8192];
	char err[8192];
};

static void slurp(int fd, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t r;

	while (n + 1 < len && (r = read(fd, buf + n, len - n - 1)) > 0)
		n += (size_t)r;
	buf[n] = 0;
}

static void run(struct result *r, const char *const *args)
{
	const char *argv[32] = { SM_TEST_WORKER };
	int n = 1, out[2], err[2];

	for (; args[n - 1]; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(pipe(err), 0);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	slurp(out[0], r->out, sizeof(r->out));
	slurp(err[0], r->err, sizeof(r->err));
	close(out[0]);
	close(err[0]);
	int st;
	waitpid(pid, &st, 0);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void expect_usage_error(const char *needle, const char *const *args)
{
	struct result r;

	run(&r, args);
	cr_assert_eq(r.status, 2, "status %d for '%s'; stderr: %s", r.status, needle, r.err);
	cr_assert_eq(lines(r.err), 1, "one line expected, got: %s", r.err);
	cr_assert_not_null(strstr(r.err, needle), "'%s' not in: %s", needle, r.err);
	cr_assert_eq(strncmp(r.err, "supermachine-worker: ", 21), 0, "%s", r.err);
	cr_assert_eq(r.out[0], 0);
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

Test(worker_cli, help_lists_every_option)
{
	struct result r;
	static const char *const opts[] = { "--kernel", "--initrd", "--cmdline", "--memory",
					    "--vcpus", "--disk", "--fs", "--net", "--vsock", "--balloon",
					    "--console", "--control", "--restore", "--help" };

	run(&r, ARGS("--help"));
	cr_assert_eq(r.status, 0);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		cr_assert_not_null(strstr(r.out, opts[i]), "%s missing from --help", opts[i]);
	cr_assert_not_null(strstr(r.out, "Exit status"));
}

Test(worker_cli, option_errors)
{
	expect_usage_error("--kernel is required", ARGS("--memory", "128"));
	expect_usage_error("unknown option '--frobnicate'", ARGS("--kernel", "k", "--frobnicate"));
	expect_usage_error("needs a value", ARGS("--kernel"));
	expect_usage_error("unexpected argument 'extra'", ARGS("--kernel", "k", "extra"));
	expect_usage_error("--memory '63'", ARGS("--kernel", "k", "--memory", "63"));
	expect_usage_error("--memory '1x'", ARGS("--kernel", "k", "--memory", "1x"));
	expect_usage_error("--memory '-5'", ARGS("--kernel", "k", "--memory", "-5"));
	expect_usage_error("--vcpus '0'", ARGS("--kernel", "k", "--vcpus", "0"));
	expect_usage_error("--vcpus '33'", ARGS("--kernel", "k", "--vcpus", "33"));
	expect_usage_error("--kernel given twice", ARGS("--kernel", "a", "--kernel", "b"));
	expect_usage_error("--console given twice", ARGS("--kernel", "a", "--console", "-",
							  "--console", "f"));
	expect_usage_error("no file name", ARGS("--kernel", "k", "--disk", ",ro"));
	expect_usage_error("unknown option 'rw'", ARGS("--kernel", "k", "--disk", "d,rw"));
	expect_usage_error("id must be 1 to 20 bytes",
			   ARGS("--kernel", "k", "--disk", "d,id=123456789012345678901"));
	expect_usage_error("writable at least once", ARGS("--kernel", "k", "--disk", "d", "--disk", "d,ro"));
	expect_usage_error("used by two disks", ARGS("--kernel", "k", "--disk", "a,id=x", "--disk", "b,id=x"));
	expect_usage_error("--fs 't,rel': the directory must be an absolute path",
			   ARGS("--kernel", "k", "--fs", "t,rel"));
	expect_usage_error("cannot share", ARGS("--kernel", "k", "--vsock", "/tmp/s", "--control", "/tmp/s"));
	expect_usage_error("at most 12 disks",
			   ARGS("--kernel", "k", "--disk", "1", "--disk", "2", "--disk", "3", "--disk", "4",
				"--disk", "5", "--disk", "6", "--disk", "7", "--disk", "8", "--disk", "9",
				"--disk", "10", "--disk", "11", "--disk", "12", "--disk", "13"));
}

Test(worker_cli, mount_directory_errors)
{
	expect_usage_error("--fs t: /nonexistent/dir: No such file or directory",
			   ARGS("--kernel", "k", "--fs", "t,/nonexistent/dir"));
	expect_usage_error("--fs t: /etc/hostname: not a directory",
			   ARGS("--kernel", "k", "--fs", "t,/etc/hostname"));
}

Test(worker_cli, kernel_errors)
{
	expect_usage_error("kernel /nonexistent/vmlinux: No such file",
			   ARGS("--kernel", "/nonexistent/vmlinux"));
	expect_usage_error("not a regular file", ARGS("--kernel", "/tmp"));
	expect_usage_error("neither an ELF vmlinux nor a bzImage", ARGS("--kernel", "/etc/passwd"));
	expect_usage_error("not an x86_64 executable vmlinux", ARGS("--kernel", SM_TEST_WORKER));
}

/* A minimal vmlinux whose only segment needs `mib` MiB from 16 MiB up. */
static void write_fake_vmlinux(const char *path, unsigned mib)
{
	struct {
		Elf64_Ehdr eh;
		Elf64_Phdr ph;
		uint8_t code[16];
	} im = { 0 };
	memcpy(im.eh.e_ident, ELFMAG, SELFMAG);
	im.eh.e_ident[EI_CLASS] = ELFCLASS64;
	im.eh.e_ident[EI_DATA] = ELFDATA2LSB;
	im.eh.e_type = ET_EXEC;
	im.eh.e_machine = EM_X86_64;
	im.eh.e_phoff = sizeof(Elf64_Ehdr);
	im.eh.e_phentsize = sizeof(Elf64_Phdr);
	im.eh.e_phnum = 1;
	im.eh.e_entry = 0x1000000;
	im.ph = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = offsetof(typeof(im), code),
			      .p_paddr = 0x1000000, .p_filesz = 16, .p_memsz = (uint64_t)mib << 20 };
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(&im, sizeof(im), 1, f), 1);
	fclose(f);
}

Test(worker_cli, memory_too_small_for_kernel_and_initrd)
{
	char dir[] = "/tmp/sm-cli-XXXXXX", kernel[64], initrd[64];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
	snprintf(initrd, sizeof(initrd), "%s/initrd", dir);

	write_fake_vmlinux(kernel, 60);
	expect_usage_error("needs 76 MiB of RAM; the VM has 64 MiB", ARGS("--kernel", kernel, "--memory", "64"));
	write_fake_vmlinux(kernel, 20);
	FILE *f = fopen(initrd, "w");
	cr_assert_eq(ftruncate(fileno(f), 40 << 20), 0);
	fclose(f);
	expect_usage_error("kernel and initrd need 76 MiB",
			   ARGS("--kernel", kernel, "--initrd", initrd, "--memory", "64"));
	f = fopen(initrd, "w");
	fclose(f);
	expect_usage_error("empty file", ARGS("--kernel", kernel, "--initrd", initrd));
	expect_usage_error("initrd /nonexistent: No such file",
			   ARGS("--kernel", kernel, "--initrd", "/nonexistent"));
	unlink(kernel);
	unlink(initrd);
	rmdir(dir);
}

/* --restore: the snapshot brings kernel, RAM and vCPUs; its files are checked first. */
Test(worker_cli, restore_errors)
{
	char dir[] = "/tmp/sm-cli-restore-XXXXXX", state[64], want[96];

	expect_usage_error("--kernel cannot be combined with --restore",
			   ARGS("--restore", "/x", "--kernel", "k"));
	expect_usage_error("--initrd cannot be combined", ARGS("--restore", "/x", "--initrd", "i"));
	expect_usage_error("--cmdline cannot be combined", ARGS("--restore", "/x", "--cmdline", "c"));
	expect_usage_error("--memory cannot be combined", ARGS("--memory", "128", "--restore", "/x"));
	expect_usage_error("--vcpus cannot be combined", ARGS("--restore", "/x", "--vcpus", "1"));
	expect_usage_error("/nonexistent-snapshot/state: No such file",
			   ARGS("--restore", "/nonexistent-snapshot"));
	cr_assert_not_null(mkdtemp(dir));
	snprintf(state, sizeof(state), "%s/state", dir);
	FILE *f = fopen(state, "w");
	fputs("not a state file at all, but long enough for a header", f);
	fclose(f);
	snprintf(want, sizeof(want), "%s/state: not a supermachine state file (bad magic)", dir);
	expect_usage_error(want, ARGS("--restore", dir));
	unlink(state);
	rmdir(dir);
}

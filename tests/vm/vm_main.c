/*
 * main() for every vm-suite binary: without /dev/kvm the whole binary
 * reports "skipped" to meson (exit 77) instead of pretending to pass.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char *argv[])
{
	struct criterion_test_set *tests;
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int rc = 0;

	if (fd < 0) {
		printf("SKIP: /dev/kvm is not available here; run this suite through tests/nested/run\n");
		return 77;
	}
	close(fd);
	tests = criterion_initialize();
	if (criterion_handle_args(argc, argv, true))
		rc = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	return rc;
}

/*
 * exec: boot an image as a microVM, run one command in it, print what it
 * wrote and how it ended, stop the VM.
 *
 *   exec IMAGE CMD [ARG...]
 *
 * IMAGE is a pulled image (`supermachine pull busybox`) or an ext4 root
 * filesystem file. The command's stdout and stderr go to ours, then one
 * line on stderr sums up its outcome; the exit status is the command's
 * (125 when it could not run).
 */
#include <stdio.h>

#include <supermachine.h>

static void outcome_print(const sm_outcome *o)
{
	if (o->stdout_data)
		fwrite(o->stdout_data, 1, o->stdout_len, stdout);
	if (o->stderr_data)
		fwrite(o->stderr_data, 1, o->stderr_len, stderr);
	fflush(stdout);
	fprintf(stderr, "exec: status %d, signal %d, timed out %s, %llu us, peak RSS %llu KiB\n", o->status,
		o->signal, o->timed_out ? "yes" : "no", (unsigned long long)o->duration_us,
		(unsigned long long)o->peak_rss_kib);
}

int main(int argc, char **argv)
{
	sm_outcome out = { 0 };
	sm_error *err = NULL;
	sm_exec *x = NULL;
	sm_vm *vm = NULL;
	int rc = 125;

	if (argc < 3) {
		fprintf(stderr, "usage: %s IMAGE CMD [ARG...]\n", argv[0]);
		return 2;
	}
	sm_set_log(sm_log_stderr, NULL, SM_LOG_WARN); /* the library says nothing unless asked */
	vm = sm_vm_start(argv[1], NULL, &err);
	if (!vm)
		goto fail;
	x = sm_exec_new(vm);
	if (!x || sm_exec_argv(x, (const char *const *)argv + 2) < 0 || sm_exec_timeout_ms(x, 60000) < 0 ||
	    sm_exec_output(x, &out, &err) < 0)
		goto fail;
	outcome_print(&out);
	rc = out.status >= 0 ? out.status : 128 + out.signal;
	sm_outcome_free(&out);
	if (sm_vm_stop(vm, 0, &err) < 0)
		goto fail;
	goto done;
fail:
	fprintf(stderr, "exec: %s\n", err ? sm_error_string(err) : "out of memory");
	sm_error_free(err);
done:
	sm_exec_free(x);
	sm_vm_free(vm);
	return rc;
}

#include "bench_sm.h"

#include <stdio.h>

int bench_exec_true(sm_vm *vm, const char *who)
{
	sm_exec *x = sm_exec_new(vm);
	sm_error *err = NULL;
	sm_outcome o = { 0 };
	int rc = -1;

	if (x && sm_exec_argv(x, (const char *[]){ "true", NULL }) == 0 && sm_exec_output(x, &o, &err) == 0 &&
	    o.status == 0)
		rc = 0;
	else
		fprintf(stderr, "%s: exec of true: %s\n", who,
			err ? sm_error_string(err) : x ? "non-zero status" : "out of memory");
	sm_error_free(err);
	sm_outcome_free(&o);
	sm_exec_free(x);
	return rc;
}

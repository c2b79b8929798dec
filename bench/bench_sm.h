/* What the benchmarks over the public API share (they link libsupermachine; bench_util does not). */
#ifndef SM_BENCH_SM_H
#define SM_BENCH_SM_H

#include <supermachine.h>

/* One `true` in vm through sm_exec_output: 0, or -1 said on stderr prefixed with who. */
int bench_exec_true(sm_vm *vm, const char *who);

#endif

/*
 * The worker's control socket: a unix stream socket speaking one line per
 * request, one line per reply ("ok ..." or "error ..."). See docs/vmm.md.
 * Built in: status, stop, boot-time, stats, help; other subsystems add
 * commands with control_register().
 */
#ifndef SM_VMM_CONTROL_H
#define SM_VMM_CONTROL_H

#include <stddef.h>

#include "base/log.h"
#include "proto/worker.h"

struct vm;
struct control;

#define CONTROL_LINE_MAX WORKER_CTL_LINE_MAX
#define CONTROL_MAX_CLIENTS 16
#define CONTROL_MAX_COMMANDS 32
#define CONTROL_MAX_PASSED_FDS 4  /* received with one read; all but the last are closed */

/*
 * Handles `name args`: writes the reply line (without newline) into reply,
 * starting with "ok" or "error". Runs on the event loop thread.
 */
typedef void (*control_fn)(void *opaque, const char *args, char *reply, size_t len);

/*
 * Listens on path (which must not be a live socket; a stale one is
 * replaced). Commands are served from the VM's event loop.
 */
struct control *control_open(struct vm *vm, const char *path, struct vmm_err *err);
/* Closes every client and the listener, and unlinks the path. */
void control_close(struct control *c);

int control_register(struct control *c, const char *name, control_fn fn, void *opaque);

/*
 * For a control_fn: the descriptor the client sent with this request line
 * (SCM_RIGHTS, close-on-exec), now the caller's to close; -1 when none
 * came. One the command does not take is closed after it.
 */
int control_take_fd(struct control *c);

/* Runs one request line and writes the reply (for tests and for the worker). */
void control_dispatch(struct control *c, const char *line, char *reply, size_t len);

#endif

/*
 * The host exec client: sm_exec (include/supermachine.h) over the agent
 * protocol. The VM object supplies the agent_target (its worker's vsock
 * socket and PROTO_AGENT_PORT); tests point one at an --agent-only agent.
 */
#ifndef SM_LIB_EXEC_H
#define SM_LIB_EXEC_H

#include <supermachine.h>

#include "lib/agent.h"

/* Most bytes sm_exec_output() keeps per stream unless told otherwise. */
#define EXEC_DEFAULT_OUTPUT_LIMIT (64u << 20)
/* How long past its own timeout an exec may take before the host gives up on the agent. */
#define EXEC_TIMEOUT_GRACE_MS 30000u

sm_exec *exec_new(const struct agent_target *t);

#endif

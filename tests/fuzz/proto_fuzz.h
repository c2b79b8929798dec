/* The protocol fuzz target's checks, shared with tests/unit/test_proto.c. */
#ifndef SM_PROTO_FUZZ_H
#define SM_PROTO_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

/* Decodes f by its type; aborts if an accepted frame re-encodes differently. 1 if accepted. */
int proto_fuzz_frame(const struct proto_frame *f);
/* Every frame of a byte stream, from memory and through proto_reader; returns how many were accepted. */
int proto_fuzz_one(const uint8_t *data, size_t size);

#endif

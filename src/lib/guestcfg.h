/*
 * How the host hands /init its configuration (docs/protocol.md, "Guest
 * configuration"): the guest config frame as /sm/config in a small newc
 * cpio archive appended to the shared base initramfs. The kernel unpacks
 * concatenated archives, so the base stays one file for every VM.
 */
#ifndef SM_LIB_GUESTCFG_H
#define SM_LIB_GUESTCFG_H

#include <supermachine.h>

#include "proto/proto.h"

/* Appends the archive holding cfg to fd, first padding what is there to 4 bytes. */
int guestcfg_append(int fd, const struct proto_config *cfg, sm_error **err);
/* Writes base followed by cfg's archive to out_path (created 0600, replaced). */
int guestcfg_write_initrd(const char *base, const struct proto_config *cfg, const char *out_path, sm_error **err);

#endif

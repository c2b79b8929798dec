/*
 * supermachine: run OCI/Docker images as KVM microVMs.
 *
 * This is the only installed header. Every public symbol is sm_*.
 *
 * Errors: a function that can fail takes a final `sm_error **err`. On
 * failure it returns NULL or a negative value and, when err is not NULL,
 * stores a new error there that the caller frees with sm_error_free().
 * Errors chain: sm_error_cause() walks from the outermost context ("pull
 * nginx") to the root cause ("connect 127.0.0.1:5000: refused").
 */
#ifndef SUPERMACHINE_H
#define SUPERMACHINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SM_VERSION_MAJOR 0
#define SM_VERSION_MINOR 1
#define SM_VERSION_PATCH 0

/* The library's version as "MAJOR.MINOR.PATCH". */
const char *sm_version(void);

/* ---- errors ------------------------------------------------------------ */

typedef enum sm_code {
	SM_OK = 0,
	SM_E_INVALID,     /* a bad argument or configuration value */
	SM_E_NOT_FOUND,   /* an image, snapshot, file or tag does not exist */
	SM_E_IO,          /* a host file or socket operation failed */
	SM_E_NOMEM,       /* out of host memory */
	SM_E_KVM,         /* /dev/kvm is missing or a KVM call failed */
	SM_E_REGISTRY,    /* a registry answered with an error or garbage */
	SM_E_AUTH,        /* registry credentials were refused or missing */
	SM_E_DIGEST,      /* content did not match its digest */
	SM_E_IMAGE,       /* an image or layer is malformed or hostile */
	SM_E_SNAPSHOT,    /* a snapshot is malformed, stale or incompatible */
	SM_E_TIMEOUT,     /* an operation ran past its deadline */
	SM_E_VM_DIED,     /* the VM stopped while the call needed it */
	SM_E_PROTOCOL,    /* the guest agent sent something invalid */
	SM_E_BUSY,        /* a resource is in use (pool exhausted, lock held) */
	SM_E_UNSUPPORTED, /* valid, but not supported here */
	SM_E_INTERNAL,    /* a bug in supermachine */
} sm_code;

typedef struct sm_error sm_error;

sm_code sm_error_code(const sm_error *e);
/* This level's message, without its causes. */
const char *sm_error_message(const sm_error *e);
/* The errno behind this level, or 0. */
int sm_error_errno(const sm_error *e);
/* The next error down the chain, or NULL. */
const sm_error *sm_error_cause(const sm_error *e);
/* The whole chain as "outer: inner: root". Owned by e. */
const char *sm_error_string(const sm_error *e);
/* Frees e and its causes. NULL is fine. */
void sm_error_free(sm_error *e);
/* A short name for a code ("not-found"). */
const char *sm_code_name(sm_code code);

#ifdef __cplusplus
}
#endif

#endif /* SUPERMACHINE_H */

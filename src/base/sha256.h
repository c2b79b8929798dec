/*
 * SHA-256 as "sha256:<64 lowercase hex>", the form OCI digests and
 * snapshot metadata both use (OpenSSL's EVP underneath).
 */
#ifndef SM_BASE_SHA256_H
#define SM_BASE_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* "sha256:" + 64 hex digits + NUL. */
#define SHA256_DIGEST_SIZE 72

/* True when s is "sha256:" followed by exactly 64 lowercase hex digits. */
bool digest_valid(const char *s);
/* The hex part of a valid digest. */
static inline const char *digest_hex(const char *d) { return d + 7; }

struct sha256 {
	EVP_MD_CTX *ctx;
};
/* -ENOMEM or -EIO when OpenSSL cannot start a digest. */
int sha256_init(struct sha256 *h);
void sha256_update(struct sha256 *h, const void *buf, size_t len);
/* Writes "sha256:<hex>" into out and frees the context. */
void sha256_final(struct sha256 *h, char out[SHA256_DIGEST_SIZE]);
void sha256_free(struct sha256 *h);
void sha256_buf(const void *buf, size_t len, char out[SHA256_DIGEST_SIZE]);
/* Hashes a whole file from its current offset. -errno on failure. */
int sha256_file(int fd, char out[SHA256_DIGEST_SIZE], uint64_t *size);

#endif

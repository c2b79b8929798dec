/* SHA-256 digests in the "sha256:<hex>" form (sha256.h). */
#include "base/sha256.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

bool digest_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64)
		return false;
	for (const char *p = s + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

int sha256_init(struct sha256 *h)
{
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->ctx);
		h->ctx = NULL;
		return -EIO;
	}
	return 0;
}

void sha256_update(struct sha256 *h, const void *buf, size_t len)
{
	if (len)
		EVP_DigestUpdate(h->ctx, buf, len);
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[in[i] >> 4];
		out[2 * i + 1] = hx[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void sha256_final(struct sha256 *h, char out[SHA256_DIGEST_SIZE])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_DigestFinal_ex(h->ctx, md, &n);
	memcpy(out, "sha256:", 7);
	hex_encode(md, n, out + 7);
	sha256_free(h);
}

void sha256_free(struct sha256 *h)
{
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

void sha256_buf(const void *buf, size_t len, char out[SHA256_DIGEST_SIZE])
{
	unsigned char md[32];

	EVP_Digest(buf, len, md, NULL, EVP_sha256(), NULL);
	memcpy(out, "sha256:", 7);
	hex_encode(md, 32, out + 7);
}

int sha256_file(int fd, char out[SHA256_DIGEST_SIZE], uint64_t *size)
{
	struct sha256 h;
	char buf[1 << 16];
	uint64_t total = 0;
	int rc = sha256_init(&h);

	if (rc < 0)
		return rc;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			sha256_free(&h);
			return rc;
		}
		if (n == 0)
			break;
		sha256_update(&h, buf, (size_t)n);
		total += (uint64_t)n;
	}
	sha256_final(&h, out);
	if (size)
		*size = total;
	return 0;
}

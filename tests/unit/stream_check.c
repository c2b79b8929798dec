#include "stream_check.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SC_CHUNK (1 << 16)

static void sc_fill(uint8_t *buf, size_t n, uint64_t *state)
{
	for (size_t i = 0; i < n; i++) {
		*state ^= *state << 13;
		*state ^= *state >> 7;
		*state ^= *state << 17;
		buf[i] = (uint8_t)*state;
	}
}

static bool sc_write_all(int fd, const uint8_t *buf, size_t n)
{
	for (size_t off = 0; off < n;) {
		ssize_t w = write(fd, buf + off, n - off);
		if (w <= 0)
			return false;
		off += (size_t)w;
	}
	return true;
}

static void *sc_writer(void *arg)
{
	struct stream_check *s = arg;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t *buf = malloc(SC_CHUNK);
	uint64_t state = 0x9E3779B97F4A7C15ull;

	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (uint64_t sent = 0; sent < s->len;) {
		size_t n = s->len - sent < SC_CHUNK ? (size_t)(s->len - sent) : SC_CHUNK;
		sc_fill(buf, n, &state);
		EVP_DigestUpdate(md, buf, n);
		if (!sc_write_all(s->fd, buf, n))
			break;
		sent += n;
	}
	EVP_DigestFinal_ex(md, s->md_in, NULL);
	free(buf);
	EVP_MD_CTX_free(md);
	return NULL;
}

static void *sc_reader(void *arg)
{
	struct stream_check *s = arg;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t *buf = malloc(SC_CHUNK);

	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	while (s->got < s->len) {
		ssize_t r = read(s->fd, buf, SC_CHUNK);
		if (r <= 0)
			break;
		EVP_DigestUpdate(md, buf, (size_t)r);
		s->got += (uint64_t)r;
	}
	EVP_DigestFinal_ex(md, s->md_out, NULL);
	__atomic_store_n(&s->done, true, __ATOMIC_RELEASE);
	free(buf);
	EVP_MD_CTX_free(md);
	return NULL;
}

void stream_check_start(struct stream_check *s, int fd, uint64_t len)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->len = len;
	pthread_create(&s->writer, NULL, sc_writer, s);
	pthread_create(&s->reader, NULL, sc_reader, s);
}

bool stream_check_done(void *s)
{
	return __atomic_load_n(&((struct stream_check *)s)->done, __ATOMIC_ACQUIRE);
}

bool stream_check_finish(struct stream_check *s)
{
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->reader, NULL);
	pthread_join(s->writer, NULL);
	return s->got == s->len && memcmp(s->md_in, s->md_out, sizeof(s->md_in)) == 0;
}

/*
 * The registry HTTP API v2 client (libcurl).
 *
 * Authentication follows the registry's 401 challenge: Basic with stored
 * credentials, or Bearer with a token from the challenge's realm (docker's
 * token protocol, credentials sent to the realm as Basic when we have them).
 * curl sends our Authorization only to the registry's own host, never to
 * the storage host a blob request redirects to.
 *
 * Requests are retried with exponential backoff on connection errors, 5xx
 * and 429; blob downloads resume with a Range request when they can. Blobs
 * stream to tmp/ through sha256 and are renamed into the store only after
 * their size and digest match the manifest.
 */
#include "oci/internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ERRBODY_MAX 4096
#define TOKEN_MAX (1u << 20)
#define USER_AGENT "supermachine/0.1"

enum auth_mode { AUTH_NONE, AUTH_BASIC, AUTH_BEARER };

struct registry {
	char *base;   /* "https://host:port" */
	char *host;   /* as dialled */
	char *repo;
	struct auth_creds creds;
	enum auth_mode mode;
	char *token;
	bool insecure;
	unsigned attempts, backoff_ms, max_parallel;
	oci_progress_fn progress;
	void *progress_arg;
	CURL *easy;
};

struct membuf {
	char *data;
	size_t len, max;
	bool overflow;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static unsigned backoff_for(const struct registry *r, unsigned attempt)
{
	unsigned ms = r->backoff_ms;

	for (unsigned i = 1; i < attempt && ms < 30000; i++)
		ms *= 2;
	return ms > 30000 ? 30000 : ms;
}

static size_t membuf_write(char *ptr, size_t size, size_t n, void *arg)
{
	struct membuf *b = arg;
	size_t len = size * n;

	if (b->len + len > b->max) {
		b->overflow = true;
		return 0;
	}
	char *d = realloc(b->data, b->len + len + 1);
	if (!d)
		return 0;
	memcpy(d + b->len, ptr, len);
	b->len += len;
	d[b->len] = '\0';
	b->data = d;
	return len;
}

static void membuf_reset(struct membuf *b, size_t max)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
	b->max = max;
}

/* A transient failure: worth another attempt. */
static bool curl_transient(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

static bool status_transient(long st) { return st == 429 || (st >= 500 && st <= 599); }

/* The registry's own explanation, from its JSON error body. */
static void errbody_describe(const struct membuf *b, char *out, size_t n)
{
	json_t *root = b->data ? json_loadb(b->data, b->len, 0, NULL) : NULL;
	json_t *e0 = json_array_get(json_object_get(root, "errors"), 0);
	const char *code = json_string_value(json_object_get(e0, "code"));
	const char *msg = json_string_value(json_object_get(e0, "message"));

	out[0] = '\0';
	if (code || msg)
		snprintf(out, n, " (%.60s%s%.200s)", code ? code : "", code && msg ? ": " : "",
			 msg ? msg : "");
	json_decref(root);
}

static void easy_common(struct registry *r, CURL *c, char *errbuf)
{
	curl_easy_setopt(c, CURLOPT_USERAGENT, USER_AGENT);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
	/* A stalled transfer is a connection error: retry it. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
	if (r->insecure) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

static void easy_auth(struct registry *r, CURL *c)
{
	if (r->mode == AUTH_BEARER) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, r->token);
	} else if (r->mode == AUTH_BASIC) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, r->creds.user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, r->creds.password);
	}
}

static const char *curl_why(CURLcode cc, const char *errbuf)
{
	return errbuf[0] ? errbuf : curl_easy_strerror(cc);
}

/* One GET into memory, retried on transient failures. */
static int http_get_mem(struct registry *r, CURL *c, const char *url,
			struct curl_slist *headers, bool with_auth, struct membuf *body,
			long *status, const char *what, sm_error **err)
{
	char errbuf[CURL_ERROR_SIZE];
	size_t max = body->max;

	for (unsigned attempt = 1;; attempt++) {
		CURLcode cc;
		curl_easy_reset(c);
		errbuf[0] = '\0';
		easy_common(r, c, errbuf);
		if (with_auth)
			easy_auth(r, c);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, membuf_write);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
		membuf_reset(body, max);
		cc = curl_easy_perform(c);
		*status = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
		if (cc == CURLE_WRITE_ERROR && body->overflow) {
			sm_error_set(err, SM_E_REGISTRY, 0, "%s: response larger than %zu bytes",
				     what, max);
			return -EFBIG;
		}
		bool transient = cc != CURLE_OK ? curl_transient(cc) : status_transient(*status);
		if (!transient || attempt >= r->attempts) {
			if (cc != CURLE_OK) {
				sm_error_set(err, SM_E_REGISTRY, 0, "%s: %s%s", what,
					     curl_why(cc, errbuf),
					     attempt > 1 ? " (gave up after retries)" : "");
				return -EIO;
			}
			return 0;
		}
		sleep_ms(backoff_for(r, attempt));
	}
}

static int registry_fetch_token(struct registry *r, const struct auth_challenge *ch,
				sm_error **err)
{
	struct membuf body = { .max = TOKEN_MAX };
	char *url = NULL, *esc_service = NULL, *esc_scope = NULL, *scope = NULL;
	const char *tok;
	json_t *root = NULL;
	long status = 0;
	int rc = -1;

	if (strncmp(ch->realm, "https://", 8) && strncmp(ch->realm, "http://", 7)) {
		sm_error_set(err, SM_E_REGISTRY, 0, "token realm '%.200s' is not an http(s) URL",
			     ch->realm);
		return -1;
	}
	if (ch->scope && *ch->scope)
		scope = strdup(ch->scope);
	else if (asprintf(&scope, "repository:%s:pull", r->repo) < 0)
		scope = NULL;
	esc_scope = scope ? curl_easy_escape(r->easy, scope, 0) : NULL;
	esc_service = curl_easy_escape(r->easy, ch->service ? ch->service : "", 0);
	if (!esc_scope || !esc_service ||
	    asprintf(&url, "%s%cservice=%s&scope=%s", ch->realm, strchr(ch->realm, '?') ? '&' : '?',
		     esc_service, esc_scope) < 0) {
		url = NULL;
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "token request");
		goto out;
	}
	/* Credentials go to the realm as Basic; anonymous tokens otherwise. */
	enum auth_mode saved = r->mode;
	r->mode = r->creds.user ? AUTH_BASIC : AUTH_NONE;
	rc = http_get_mem(r, r->easy, url, NULL, true, &body, &status, "token request", err);
	r->mode = saved;
	if (rc < 0) {
		sm_error_wrap(err, "get a token from %s", ch->realm);
		goto out;
	}
	rc = -1;
	if ((status == 401 || status == 403) && r->creds.user) {
		sm_error_set(err, SM_E_AUTH, 0,
			     "token server %s refused the credentials of user '%s' (HTTP %ld)",
			     ch->realm, r->creds.user, status);
		goto out;
	}
	if (status == 401 || status == 403) {
		sm_error_set(err, SM_E_AUTH, 0,
			     "token server %s refused anonymous access (HTTP %ld): give credentials "
			     "(SUPERMACHINE_REGISTRY_USER/_PASSWORD or ~/.docker/config.json)",
			     ch->realm, status);
		goto out;
	}
	if (status != 200) {
		sm_error_set(err, SM_E_REGISTRY, 0, "token server %s answered HTTP %ld", ch->realm,
			     status);
		goto out;
	}
	root = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
	tok = json_string_value(json_object_get(root, "token"));
	if (!tok || !*tok)
		tok = json_string_value(json_object_get(root, "access_token"));
	if (!tok || !*tok || strpbrk(tok, "\r\n")) {
		sm_error_set(err, SM_E_REGISTRY, 0, "token server %s sent no usable token",
			     ch->realm);
		goto out;
	}
	free(r->token);
	r->token = strdup(tok);
	r->mode = AUTH_BEARER;
	rc = r->token ? 0 : -1;
out:
	json_decref(root);
	free(body.data);
	free(url);
	free(scope);
	curl_free(esc_scope);
	curl_free(esc_service);
	return rc;
}

/* Answers a 401: learns how the registry wants us to authenticate. */
static int registry_authenticate(struct registry *r, CURL *c, sm_error **err)
{
	struct curl_header *h = NULL;
	struct auth_challenge ch;
	int rc;

	if (curl_easy_header(c, "WWW-Authenticate", 0, CURLH_HEADER, -1, &h) != CURLHE_OK) {
		sm_error_set(err, SM_E_AUTH, 0,
			     "registry %s answered 401 without a WWW-Authenticate challenge",
			     r->host);
		return -1;
	}
	if (auth_challenge_parse(h->value, &ch, err) < 0)
		return -1;
	if (!strcasecmp(ch.scheme, "Basic")) {
		auth_challenge_free(&ch);
		if (!r->creds.user) {
			sm_error_set(err, SM_E_AUTH, 0,
				     "registry %s requires a login and no credentials were found "
				     "(set SUPERMACHINE_REGISTRY_USER and SUPERMACHINE_REGISTRY_PASSWORD,"
				     " or add it to the auths of ~/.docker/config.json)",
				     r->host);
			return -1;
		}
		r->mode = AUTH_BASIC;
		return 0;
	}
	if (strcasecmp(ch.scheme, "Bearer")) {
		sm_error_set(err, SM_E_AUTH, 0, "registry %s wants unsupported authentication '%s'",
			     r->host, ch.scheme);
		auth_challenge_free(&ch);
		return -1;
	}
	rc = registry_fetch_token(r, &ch, err);
	auth_challenge_free(&ch);
	return rc;
}

static int auth_refused(struct registry *r, const struct membuf *body, sm_error **err)
{
	char why[300];

	errbody_describe(body, why, sizeof(why));
	if (r->creds.user)
		sm_error_set(err, SM_E_AUTH, 0, "registry %s refused the credentials of user '%s'%s",
			     r->host, r->creds.user, why);
	else
		sm_error_set(err, SM_E_AUTH, 0,
			     "registry %s refused anonymous access to %s%s: the repository may be "
			     "private (give credentials) or not exist",
			     r->host, r->repo, why);
	return -1;
}

int registry_open(const struct oci_ref *ref, const struct oci_pull_opts *opts,
		  struct registry **out, sm_error **err)
{
	struct registry *r = calloc(1, sizeof(*r));
	const char *host = oci_ref_api_host(ref);
	/* Local registries speak plain HTTP unless --insecure asks for TLS. */
	bool plain = opts->plain_http || (oci_host_is_local(host) && !opts->insecure);

	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!r)
		goto oom;
	r->host = strdup(host);
	r->repo = strdup(ref->path);
	if (!r->host || !r->repo || asprintf(&r->base, "%s://%s", plain ? "http" : "https", host) < 0)
		goto oom;
	r->easy = curl_easy_init();
	if (!r->easy)
		goto oom;
	r->insecure = opts->insecure;
	r->attempts = opts->attempts ? opts->attempts : 5;
	r->backoff_ms = opts->backoff_ms ? opts->backoff_ms : 500;
	r->max_parallel = opts->max_parallel ? opts->max_parallel : 4;
	r->progress = opts->progress;
	r->progress_arg = opts->progress_arg;
	/* Credentials are looked up under the name the user wrote (docker.io). */
	if (auth_creds_find(ref->domain, opts->docker_config, &r->creds, err) < 0) {
		registry_close(r);
		return -1;
	}
	*out = r;
	return 0;
oom:
	sm_error_set(err, SM_E_NOMEM, ENOMEM, "registry client");
	registry_close(r);
	return -1;
}

void registry_close(struct registry *r)
{
	if (!r)
		return;
	if (r->easy)
		curl_easy_cleanup(r->easy);
	auth_creds_free(&r->creds);
	free(r->token);
	free(r->base);
	free(r->host);
	free(r->repo);
	free(r);
}

int registry_get_manifest(struct registry *r, const char *ref, char **body_out, size_t *len,
			  char **content_type, char digest[OCI_DIGEST_SIZE], sm_error **err)
{
	static const char accept[] = "Accept: " MT_OCI_INDEX ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST
				     ", " MT_DOCKER_MANIFEST;
	struct curl_slist *hdrs = curl_slist_append(NULL, accept);
	struct membuf body = { .max = OCI_MANIFEST_MAX };
	char *url = NULL, what[400], why[300];
	struct curl_header *h = NULL;
	char *ct = NULL;
	long status = 0;
	int rc = -1;

	snprintf(what, sizeof(what), "manifest %s/%s:%s", r->host, r->repo, ref);
	if (!hdrs || asprintf(&url, "%s/v2/%s/manifests/%s", r->base, r->repo, ref) < 0) {
		url = NULL;
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "%s", what);
		goto out;
	}
	for (int auth_round = 0;; auth_round++) {
		if (http_get_mem(r, r->easy, url, hdrs, true, &body, &status, what, err) < 0)
			goto out;
		if (status != 401)
			break;
		if (auth_round > 0) {
			auth_refused(r, &body, err);
			goto out;
		}
		if (registry_authenticate(r, r->easy, err) < 0)
			goto out;
	}
	errbody_describe(&body, why, sizeof(why));
	if (status == 404) {
		sm_error_set(err, SM_E_NOT_FOUND, 0, "%s not found%s", what, why);
		goto out;
	}
	if (status == 403) {
		sm_error_set(err, SM_E_AUTH, 0, "%s: access denied%s", what, why);
		goto out;
	}
	if (status != 200) {
		sm_error_set(err, SM_E_REGISTRY, 0, "%s: HTTP %ld%s", what, status, why);
		goto out;
	}
	sha256_buf(body.data ? body.data : "", body.len, digest);
	if (digest_valid(ref) && strcmp(ref, digest)) {
		sm_error_set(err, SM_E_DIGEST, 0, "%s: content has digest %s", what, digest);
		goto out;
	}
	if (curl_easy_header(r->easy, "Docker-Content-Digest", 0, CURLH_HEADER, -1, &h) ==
		    CURLHE_OK &&
	    !strncmp(h->value, "sha256:", 7) && strcmp(h->value, digest)) {
		sm_error_set(err, SM_E_DIGEST, 0,
			     "%s: registry says digest %.80s but the content is %s", what, h->value,
			     digest);
		goto out;
	}
	if (curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
		*content_type = strndup(ct, strcspn(ct, ";"));
	else
		*content_type = strdup("");
	*body_out = body.data ? body.data : strdup("");
	body.data = NULL;
	*len = body.len;
	rc = (*content_type && *body_out) ? 0 : -1;
out:
	free(body.data);
	free(url);
	curl_slist_free_all(hdrs);
	return rc;
}

/* ---- parallel blob downloads ---- */

struct xfer {
	struct registry *r;
	struct oci_store *st;
	const struct oci_desc *d;
	CURL *easy;
	char *url;
	char *tmp;
	int fd;
	struct sha256 h;
	int64_t got;          /* verified-so-far bytes in tmp (hashed) */
	unsigned attempt;
	uint64_t not_before;  /* ms; when a retry may start */
	bool active, done, resumed;
	bool too_big, reauthed;
	int io_error;
	/* what the progress callback was last told of this blob */
	bool reported;
	enum oci_blob_state rep_state;
	int64_t rep_bytes;
	struct membuf errbody; /* non-2xx response body */
	char errbuf[CURL_ERROR_SIZE];
};

static size_t xfer_write(char *ptr, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	long status = 0;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200 && status != 206) {
		size_t room = ERRBODY_MAX - x->errbody.len;
		membuf_write(ptr, 1, len < room ? len : room, &x->errbody);
		return len;
	}
	if (status == 200 && x->resumed) {
		/* The server ignored our Range: start over. */
		x->resumed = false;
		if (ftruncate(x->fd, 0) < 0 || lseek(x->fd, 0, SEEK_SET) < 0) {
			x->io_error = errno;
			return 0;
		}
		sha256_free(&x->h);
		if (sha256_init(&x->h) < 0) {
			x->io_error = ENOMEM;
			return 0;
		}
		x->got = 0;
	}
	if (x->got + (int64_t)len > x->d->size) {
		x->too_big = true;
		return 0;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(x->fd, ptr + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			x->io_error = errno;
			return 0;
		}
		off += (size_t)w;
	}
	sha256_update(&x->h, ptr, len);
	x->got += (int64_t)len;
	return len;
}

static int xfer_start(struct xfer *x, CURLM *multi, sm_error **err)
{
	char range[64];

	if (!x->tmp) {
		x->fd = store_tmp_open(x->st, &x->tmp, err);
		if (x->fd < 0)
			return -1;
		if (sha256_init(&x->h) < 0) {
			sm_error_set(err, SM_E_NOMEM, ENOMEM, "sha256");
			return -1;
		}
	}
	x->easy = curl_easy_init();
	if (!x->easy) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "curl handle");
		return -1;
	}
	x->errbuf[0] = '\0';
	membuf_reset(&x->errbody, ERRBODY_MAX);
	easy_common(x->r, x->easy, x->errbuf);
	easy_auth(x->r, x->easy);
	curl_easy_setopt(x->easy, CURLOPT_URL, x->url);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, xfer_write);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	/* Layers are already compressed; a transfer encoding would only hide
	 * the byte count from us. */
	curl_easy_setopt(x->easy, CURLOPT_ACCEPT_ENCODING, NULL);
	x->resumed = x->got > 0;
	if (x->resumed) {
		snprintf(range, sizeof(range), "%jd-", (intmax_t)x->got);
		curl_easy_setopt(x->easy, CURLOPT_RANGE, range);
	}
	x->active = true;
	if (curl_multi_add_handle(multi, x->easy) != CURLM_OK) {
		sm_error_set(err, SM_E_INTERNAL, 0, "curl_multi_add_handle");
		return -1;
	}
	return 0;
}

static void xfer_stop(struct xfer *x, CURLM *multi)
{
	if (x->easy) {
		curl_multi_remove_handle(multi, x->easy);
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
	}
	x->active = false;
}

static void xfer_free(struct xfer *x, CURLM *multi)
{
	xfer_stop(x, multi);
	if (x->tmp) {
		close(x->fd);
		unlink(x->tmp);
		free(x->tmp);
	}
	if (x->h.ctx)
		sha256_free(&x->h);
	free(x->errbody.data);
	free(x->url);
}

static int xfer_finish_ok(struct xfer *x, sm_error **err)
{
	char got[OCI_DIGEST_SIZE];

	if (x->got != x->d->size) {
		sm_error_set(err, SM_E_DIGEST, 0,
			     "blob %s: got %jd bytes, the manifest says %jd (truncated by the "
			     "registry?)",
			     x->d->digest, (intmax_t)x->got, (intmax_t)x->d->size);
		return -1;
	}
	sha256_final(&x->h, got);
	if (strcmp(got, x->d->digest)) {
		sm_error_set(err, SM_E_DIGEST, 0,
			     "blob %s: content has digest %s (corrupted or tampered); not stored",
			     x->d->digest, got);
		return -1;
	}
	close(x->fd);
	x->fd = -1;
	if (store_blob_commit(x->st, x->tmp, x->d->digest, err) < 0)
		return -1;
	free(x->tmp);
	x->tmp = NULL;
	x->done = true;
	return 0;
}

/* Decides what a finished transfer means: 1 = retry, 0 = done, -1 = fail. */
static int xfer_completed(struct xfer *x, CURLcode cc, bool *reauth, sm_error **err)
{
	long status = 0;
	char why[300];

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (x->too_big) {
		sm_error_set(err, SM_E_DIGEST, 0,
			     "blob %s: registry sent more than the %jd bytes the manifest declares",
			     x->d->digest, (intmax_t)x->d->size);
		return -1;
	}
	if (x->io_error) {
		sm_error_set(err, SM_E_IO, x->io_error, "write %s", x->tmp);
		return -1;
	}
	if (cc == CURLE_OK && (status == 200 || status == 206))
		return xfer_finish_ok(x, err) < 0 ? -1 : 0;
	if (cc == CURLE_OK && status == 401 && !x->reauthed) {
		/* Tokens expire; a long pull may need a fresh one. */
		x->reauthed = true;
		*reauth = true;
		return 1;
	}
	bool transient = cc != CURLE_OK ? curl_transient(cc) : status_transient(status);
	if (transient && x->attempt < x->r->attempts) {
		x->not_before = now_ms() + backoff_for(x->r, x->attempt);
		return 1;
	}
	errbody_describe(&x->errbody, why, sizeof(why));
	if (cc != CURLE_OK)
		sm_error_set(err, SM_E_REGISTRY, 0, "blob %s: %s%s", x->d->digest,
			     curl_why(cc, x->errbuf),
			     x->attempt > 1 ? " (gave up after retries)" : "");
	else if (status == 404)
		sm_error_set(err, SM_E_NOT_FOUND, 0, "blob %s not found on %s%s", x->d->digest,
			     x->r->host, why);
	else if (status == 401 || status == 403)
		sm_error_set(err, SM_E_AUTH, 0, "blob %s: access denied (HTTP %ld)%s", x->d->digest,
			     status, why);
	else
		sm_error_set(err, SM_E_REGISTRY, 0, "blob %s: HTTP %ld%s%s", x->d->digest, status,
			     why, x->attempt > 1 ? " (gave up after retries)" : "");
	return -1;
}

/* One report to the progress callback; -1 (err set) when it asks to cancel. */
static int progress_send(struct registry *r, const struct oci_progress *p, sm_error **err)
{
	if (r->progress(p, r->progress_arg) == 0)
		return 0;
	return sm_error_set(err, SM_E_CANCELED, 0, "download canceled"), -1;
}

/* Blob i of a batch: its state and bytes so far (a cached blob has no transfer, x->d is NULL). */
static enum oci_blob_state blob_state(const struct xfer *x, const struct oci_desc *d, int64_t *bytes)
{
	*bytes = x->d && !x->done ? x->got : d->size;
	if (!x->d)
		return OCI_BLOB_CACHED;
	if (x->done)
		return OCI_BLOB_DONE;
	return x->active ? OCI_BLOB_DOWNLOADING : OCI_BLOB_WAITING;
}

/* Reports each blob whose state or bytes changed since the last report, then the batch. */
static int fetch_progress(struct registry *r, const struct oci_desc *blobs, struct xfer *xs, size_t n,
			  uint64_t *last, bool force, sm_error **err)
{
	struct oci_progress p = { .phase = "downloading", .layers_total = (unsigned)n };
	uint64_t t = now_ms();

	if (!r->progress || (!force && t - *last < 100))
		return 0;
	*last = t;
	for (size_t i = 0; i < n; i++) {
		struct xfer *x = &xs[i];
		int64_t bytes;
		enum oci_blob_state st = blob_state(x, &blobs[i], &bytes);
		p.bytes_total += (uint64_t)blobs[i].size;
		p.bytes_done += (uint64_t)bytes;
		p.layers_done += st == OCI_BLOB_DONE || st == OCI_BLOB_CACHED;
		if (x->reported && x->rep_state == st && x->rep_bytes == bytes)
			continue;
		x->reported = true, x->rep_state = st, x->rep_bytes = bytes;
		struct oci_progress b = { .phase = "downloading", .digest = blobs[i].digest, .state = st,
					  .blob_done = (uint64_t)bytes, .blob_total = (uint64_t)blobs[i].size };
		if (progress_send(r, &b, err) < 0)
			return -1;
	}
	return progress_send(r, &p, err);
}

int registry_fetch_blobs(struct registry *r, struct oci_store *st, const struct oci_desc *blobs,
			 size_t n, sm_error **err)
{
	struct xfer *xs = calloc(n ? n : 1, sizeof(*xs));
	CURLM *multi = curl_multi_init();
	uint64_t last = 0;
	size_t remaining = 0;
	int rc = -1;

	if (!xs || !multi) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "download");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		xs[i].fd = -1;
		if (store_blob_has(st, blobs[i].digest, blobs[i].size))
			continue;
		xs[i].r = r;
		xs[i].st = st;
		xs[i].d = &blobs[i];
		if (asprintf(&xs[i].url, "%s/v2/%s/blobs/%s", r->base, r->repo, blobs[i].digest) <
		    0) {
			xs[i].url = NULL;
			sm_error_set(err, SM_E_NOMEM, ENOMEM, "download");
			goto out;
		}
		remaining++;
	}
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)r->max_parallel);
	while (remaining) {
		unsigned active = 0;
		uint64_t t = now_ms(), wait = 100;
		for (size_t i = 0; i < n; i++)
			active += xs[i].active;
		for (size_t i = 0; i < n && active < r->max_parallel; i++) {
			struct xfer *x = &xs[i];
			if (!x->d || x->done || x->active)
				continue;
			if (x->not_before > t) {
				if (x->not_before - t < wait)
					wait = x->not_before - t;
				continue;
			}
			x->attempt++;
			if (xfer_start(x, multi, err) < 0)
				goto out;
			active++;
		}
		int running = 0;
		curl_multi_perform(multi, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(multi, &left))) {
			struct xfer *x = NULL;
			bool reauth = false;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			int what = xfer_completed(x, msg->data.result, &reauth, err);
			if (what < 0)
				goto out;
			if (reauth && registry_authenticate(r, x->easy, err) < 0)
				goto out;
			xfer_stop(x, multi);
			if (what == 0)
				remaining--;
		}
		if (fetch_progress(r, blobs, xs, n, &last, false, err) < 0)
			goto out;
		if (remaining)
			curl_multi_poll(multi, NULL, 0, (int)wait, NULL);
	}
	if (fetch_progress(r, blobs, xs, n, &last, true, err) < 0)
		goto out;
	rc = 0;
out:
	for (size_t i = 0; xs && i < n; i++)
		xfer_free(&xs[i], multi);
	free(xs);
	if (multi)
		curl_multi_cleanup(multi);
	return rc;
}

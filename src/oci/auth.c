/*
 * Registry credentials and the WWW-Authenticate challenge.
 *
 * Credentials come, in order, from SUPERMACHINE_REGISTRY_USER and
 * SUPERMACHINE_REGISTRY_PASSWORD (limited to SUPERMACHINE_REGISTRY_HOST when
 * that is set), then from the `auths` map of docker's config.json. Docker
 * credential helpers (credsStore/credHelpers) are not run.
 */
#include "oci/internal.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DOCKER_CONFIG_MAX (4u << 20)

void auth_challenge_free(struct auth_challenge *c)
{
	free(c->realm);
	free(c->service);
	free(c->scope);
	memset(c, 0, sizeof(*c));
}

/* Reads a token or a quoted-string (RFC 7235 auth-param value). */
static const char *param_value(const char *p, char **out)
{
	size_t cap = strlen(p) + 1, n = 0;
	char *v = malloc(cap);

	if (!v)
		return NULL;
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			v[n++] = *p;
		}
		if (*p != '"') {
			free(v);
			return NULL;
		}
		p++;
	} else {
		while (*p && *p != ',' && !isspace((unsigned char)*p))
			v[n++] = *p++;
	}
	v[n] = '\0';
	*out = v;
	return p;
}

int auth_challenge_parse(const char *h, struct auth_challenge *out, sm_error **err)
{
	const char *p = h;
	size_t n;

	memset(out, 0, sizeof(*out));
	while (isspace((unsigned char)*p))
		p++;
	n = strcspn(p, " \t");
	if (n == 0 || n >= sizeof(out->scheme))
		goto bad;
	memcpy(out->scheme, p, n);
	p += n;
	while (*p) {
		char key[32];
		char *val = NULL;
		while (isspace((unsigned char)*p) || *p == ',')
			p++;
		if (!*p)
			break;
		n = strcspn(p, "= \t");
		if (n == 0 || n >= sizeof(key) || p[n] != '=')
			goto bad;
		memcpy(key, p, n);
		key[n] = '\0';
		p = param_value(p + n + 1, &val);
		if (!p)
			goto bad;
		char **slot = !strcasecmp(key, "realm")	  ? &out->realm
			      : !strcasecmp(key, "service") ? &out->service
			      : !strcasecmp(key, "scope")   ? &out->scope
							    : NULL;
		if (slot && !*slot)
			*slot = val;
		else
			free(val);
	}
	if (!strcasecmp(out->scheme, "Bearer") && (!out->realm || !*out->realm)) {
		sm_error_set(err, SM_E_REGISTRY, 0, "bearer challenge without a realm: '%.200s'", h);
		auth_challenge_free(out);
		return -EINVAL;
	}
	return 0;
bad:
	sm_error_set(err, SM_E_REGISTRY, 0, "malformed WWW-Authenticate header '%.200s'", h);
	auth_challenge_free(out);
	return -EINVAL;
}

void auth_creds_free(struct auth_creds *c)
{
	if (c->password)
		memset(c->password, 0, strlen(c->password));
	free(c->user);
	free(c->password);
	memset(c, 0, sizeof(*c));
}

static int creds_set(struct auth_creds *c, const char *user, size_t ulen, const char *pass)
{
	c->user = strndup(user, ulen);
	c->password = strdup(pass);
	if (!c->user || !c->password) {
		auth_creds_free(c);
		return -ENOMEM;
	}
	return 0;
}

/* "https://index.docker.io/v1/" -> "index.docker.io" */
static void auths_key_host(const char *key, char *out, size_t n)
{
	const char *p = strstr(key, "://");

	p = p ? p + 3 : key;
	snprintf(out, n, "%.*s", (int)strcspn(p, "/"), p);
}

static bool host_matches(const char *key, const char *host)
{
	char kh[256];

	auths_key_host(key, kh, sizeof(kh));
	if (!strcasecmp(kh, host))
		return true;
	/* Docker Hub is stored under its v1 index name. */
	bool key_hub = !strcasecmp(kh, "index.docker.io") || !strcasecmp(kh, "docker.io") ||
		       !strcasecmp(kh, "registry-1.docker.io");
	bool host_hub = !strcasecmp(host, "docker.io") || !strcasecmp(host, "registry-1.docker.io");
	return key_hub && host_hub;
}

static int creds_from_auth_field(const char *b64, struct auth_creds *out, const char *where,
				 sm_error **err)
{
	size_t len = strlen(b64);
	unsigned char *raw = malloc(len / 4 * 3 + 4);
	int n;
	char *colon;

	if (!raw)
		return -ENOMEM;
	n = len % 4 == 0 ? EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len) : -1;
	if (n < 0) {
		free(raw);
		sm_error_set(err, SM_E_AUTH, 0, "%s: 'auth' is not valid base64", where);
		return -EINVAL;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	while (len && b64[len - 1] == '=' && n > 0) {
		len--;
		n--;
	}
	raw[n] = '\0';
	colon = memchr(raw, ':', (size_t)n);
	if (!colon || strlen((char *)raw) != (size_t)n) {
		free(raw);
		sm_error_set(err, SM_E_AUTH, 0, "%s: 'auth' is not base64 of user:password", where);
		return -EINVAL;
	}
	int rc = creds_set(out, (char *)raw, (size_t)(colon - (char *)raw), colon + 1);
	memset(raw, 0, (size_t)n);
	free(raw);
	return rc;
}

static char *docker_config_path(const char *given)
{
	const char *dir = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
	char *p = NULL;

	if (given)
		return strdup(given);
	if (dir && *dir) {
		if (asprintf(&p, "%s/config.json", dir) < 0)
			return NULL;
		return p;
	}
	if (!home || !*home)
		return NULL;
	if (asprintf(&p, "%s/.docker/config.json", home) < 0)
		return NULL;
	return p;
}

static int creds_from_docker_config(const char *host, const char *given, struct auth_creds *out,
				    sm_error **err)
{
	char *path = docker_config_path(given);
	char *buf = NULL;
	size_t len;
	json_t *root = NULL, *auths, *entry;
	json_error_t jerr;
	const char *key;
	int rc = 0;

	if (!path || access(path, F_OK) != 0) {
		free(path);
		return 0;
	}
	if (file_read_all(path, DOCKER_CONFIG_MAX, &buf, &len, err) < 0) {
		free(path);
		return -1;
	}
	root = json_loadb(buf, len, 0, &jerr);
	free(buf);
	if (!json_is_object(root)) {
		sm_error_set(err, SM_E_AUTH, 0, "%s is not a JSON object (line %d: %s)", path,
			     jerr.line, root ? "not an object" : jerr.text);
		rc = -1;
		goto out;
	}
	auths = json_object_get(root, "auths");
	json_object_foreach(auths, key, entry) {
		const char *a = json_string_value(json_object_get(entry, "auth"));
		const char *u = json_string_value(json_object_get(entry, "username"));
		const char *pw = json_string_value(json_object_get(entry, "password"));
		if (!host_matches(key, host))
			continue;
		if (a && *a)
			rc = creds_from_auth_field(a, out, path, err);
		else if (u && pw)
			rc = creds_set(out, u, strlen(u), pw);
		else
			continue;
		if (rc == -ENOMEM)
			sm_error_set(err, SM_E_NOMEM, ENOMEM, "read %s", path);
		break;
	}
out:
	json_decref(root);
	free(path);
	return rc < 0 ? -1 : 0;
}

int auth_creds_find(const char *host, const char *config_path, struct auth_creds *out,
		    sm_error **err)
{
	const char *u = getenv("SUPERMACHINE_REGISTRY_USER");
	const char *p = getenv("SUPERMACHINE_REGISTRY_PASSWORD");
	const char *only = getenv("SUPERMACHINE_REGISTRY_HOST");

	memset(out, 0, sizeof(*out));
	if (u && *u && p && (!only || !*only || !strcasecmp(only, host))) {
		if (creds_set(out, u, strlen(u), p) < 0) {
			sm_error_set(err, SM_E_NOMEM, ENOMEM, "credentials");
			return -1;
		}
		return 0;
	}
	return creds_from_docker_config(host, config_path, out, err);
}

/*
 * Image references, normalized the way docker does (distribution's
 * ParseNormalizedNamed): "nginx" is docker.io/library/nginx:latest; the
 * first path component is a registry only if it has a '.' or ':', is
 * "localhost", or has an uppercase letter.
 */
#include "oci/internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME_MAX_TOTAL 255
#define TAG_MAX 128

static bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

/* [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static bool path_component_valid(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	while (i < n) {
		if (is_lower_alnum(s[i])) {
			i++;
			continue;
		}
		size_t j = i;
		if (s[i] == '.') {
			j = i + 1;
		} else if (s[i] == '_') {
			j = i + 1;
			if (j < n && s[j] == '_')
				j++;
		} else if (s[i] == '-') {
			while (j < n && s[j] == '-')
				j++;
		} else {
			return false;
		}
		if (j >= n || !is_lower_alnum(s[j]))
			return false;
		i = j;
	}
	return true;
}

/* host components [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])? joined by '.', or
 * a bracketed IPv6 address; then an optional :port. */
static bool domain_valid(const char *s)
{
	const char *colon;
	size_t hostlen;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || end == s + 1)
			return false;
		for (const char *p = s + 1; p < end; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':')
				return false;
		colon = end[1] ? end + 1 : NULL;
		if (colon && *colon != ':')
			return false;
		hostlen = (size_t)(end - s) + 1;
	} else {
		colon = strchr(s, ':');
		hostlen = colon ? (size_t)(colon - s) : strlen(s);
		size_t start = 0;
		if (hostlen == 0)
			return false;
		for (size_t i = 0; i <= hostlen; i++) {
			if (i < hostlen && s[i] != '.')
				continue;
			size_t n = i - start;
			if (n == 0 || !isalnum((unsigned char)s[start]) ||
			    !isalnum((unsigned char)s[i - 1]))
				return false;
			for (size_t k = start; k < i; k++)
				if (!isalnum((unsigned char)s[k]) && s[k] != '-')
					return false;
			start = i + 1;
		}
	}
	(void)hostlen;
	if (colon) {
		const char *p = colon + 1;
		if (!*p || strlen(p) > 5)
			return false;
		for (; *p; p++)
			if (!isdigit((unsigned char)*p))
				return false;
		if (atoi(colon + 1) > 65535 || atoi(colon + 1) == 0)
			return false;
	}
	return true;
}

/* [\w][\w.-]{0,127} */
static bool tag_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > TAG_MAX || !(isalnum((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

static bool is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

static bool has_upper(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (isupper((unsigned char)s[i]))
			return true;
	return false;
}

static int ref_split_domain(const char *name, struct oci_ref *out, sm_error **err)
{
	const char *slash = strchr(name, '/');
	const char *rest = name;

	if (slash) {
		size_t n = (size_t)(slash - name);
		bool is_domain = memchr(name, '.', n) || memchr(name, ':', n) ||
				 (n == 9 && !strncmp(name, "localhost", 9)) || has_upper(name, n);
		if (is_domain) {
			out->domain = strndup(name, n);
			rest = slash + 1;
		}
	}
	if (!out->domain)
		out->domain = strdup("docker.io");
	if (!out->domain)
		return -ENOMEM;
	if (!strcmp(out->domain, "index.docker.io")) {
		free(out->domain);
		out->domain = strdup("docker.io");
		if (!out->domain)
			return -ENOMEM;
	}
	if (!domain_valid(out->domain)) {
		sm_error_set(err, SM_E_INVALID, 0, "invalid registry host '%s'", out->domain);
		return -EINVAL;
	}
	if (!strcmp(out->domain, "docker.io") && !strchr(rest, '/')) {
		if (asprintf(&out->path, "library/%s", rest) < 0)
			out->path = NULL;
	} else {
		out->path = strdup(rest);
	}
	return out->path ? 0 : -ENOMEM;
}

static int ref_check_path(const struct oci_ref *r, sm_error **err)
{
	const char *p = r->path;

	if (has_upper(p, strlen(p))) {
		sm_error_set(err, SM_E_INVALID, 0, "repository name '%s' must be lowercase", p);
		return -EINVAL;
	}
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (!path_component_valid(p, n)) {
			sm_error_set(err, SM_E_INVALID, 0, "invalid repository name '%s'", r->path);
			return -EINVAL;
		}
		if (!slash)
			break;
		p = slash + 1;
	}
	if (strlen(r->domain) + 1 + strlen(r->path) > NAME_MAX_TOTAL) {
		sm_error_set(err, SM_E_INVALID, 0, "repository name longer than %d characters",
			     NAME_MAX_TOTAL);
		return -EINVAL;
	}
	return 0;
}

int oci_ref_parse(const char *s, struct oci_ref *out, sm_error **err)
{
	char *name = NULL, *at, *colon, *slash;
	int rc = -EINVAL;

	memset(out, 0, sizeof(*out));
	if (!s || !*s) {
		sm_error_set(err, SM_E_INVALID, 0, "empty image reference");
		return -EINVAL;
	}
	if (strlen(s) > 1024 || strpbrk(s, " \t\r\n")) {
		sm_error_set(err, SM_E_INVALID, 0, "invalid image reference '%.64s'", s);
		return -EINVAL;
	}
	if (is_hex64(s)) {
		sm_error_set(err, SM_E_INVALID, 0,
			     "invalid image reference '%s': a 64-digit hex string is an ID, not a name",
			     s);
		return -EINVAL;
	}
	name = strdup(s);
	if (!name)
		goto oom;
	at = strchr(name, '@');
	if (at) {
		*at = '\0';
		if (!digest_valid(at + 1)) {
			sm_error_set(err, SM_E_INVALID, 0,
				     "invalid digest '%s' (expected sha256:<64 hex digits>)", at + 1);
			goto fail;
		}
		out->digest = strdup(at + 1);
		if (!out->digest)
			goto oom;
	}
	slash = strrchr(name, '/');
	colon = strrchr(slash ? slash : name, ':');
	if (colon) {
		*colon = '\0';
		if (!tag_valid(colon + 1)) {
			sm_error_set(err, SM_E_INVALID, 0, "invalid tag '%s'", colon + 1);
			goto fail;
		}
		out->tag = strdup(colon + 1);
		if (!out->tag)
			goto oom;
	}
	if (!*name) {
		sm_error_set(err, SM_E_INVALID, 0, "no repository name");
		goto fail;
	}
	rc = ref_split_domain(name, out, err);
	if (rc == -ENOMEM)
		goto oom;
	if (rc < 0 || ref_check_path(out, err) < 0)
		goto fail;
	if (!out->tag && !out->digest) {
		out->tag = strdup("latest");
		if (!out->tag)
			goto oom;
	}
	free(name);
	return 0;
oom:
	sm_error_set(err, SM_E_NOMEM, ENOMEM, "parse reference");
	rc = -ENOMEM;
fail:
	if (rc != -ENOMEM)
		sm_error_wrap(err, "invalid image reference '%s'", s);
	free(name);
	oci_ref_free(out);
	return rc < 0 ? rc : -EINVAL;
}

void oci_ref_free(struct oci_ref *r)
{
	free(r->domain);
	free(r->path);
	free(r->tag);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

char *oci_ref_string(const struct oci_ref *r)
{
	char *s = NULL;

	if (asprintf(&s, "%s/%s%s%s%s%s", r->domain, r->path, r->tag ? ":" : "",
		     r->tag ? r->tag : "", r->digest ? "@" : "", r->digest ? r->digest : "") < 0)
		return NULL;
	return s;
}

const char *oci_ref_api_host(const struct oci_ref *r)
{
	return strcmp(r->domain, "docker.io") ? r->domain : "registry-1.docker.io";
}

bool oci_host_is_local(const char *hostport)
{
	char host[256];
	size_t n;

	if (hostport[0] == '[') {
		const char *end = strchr(hostport, ']');
		if (!end)
			return false;
		n = (size_t)(end - hostport - 1);
		return n == 3 && !strncmp(hostport + 1, "::1", 3);
	}
	n = strcspn(hostport, ":");
	if (n >= sizeof(host))
		return false;
	memcpy(host, hostport, n);
	host[n] = '\0';
	if (!strcmp(host, "localhost"))
		return true;
	/* 127.0.0.0/8, written as a dotted quad */
	unsigned a, b, c, d;
	char tail;
	return sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
	       c < 256 && d < 256;
}

/* ---- sources: registry refs and local paths ---- */

/* PATH[:TAG], where both may contain ':' ("a.tar:busybox:latest"): the
 * whole string if it exists, else the shortest prefix that does. */
static int source_split_local(const char *rest, struct oci_source *out, sm_error **err)
{
	char *copy = strdup(rest);
	char *cut = NULL, *abs;

	if (!copy)
		return -ENOMEM;
	if (access(copy, F_OK) != 0) {
		for (char *p = strchr(copy, ':'); p; p = strchr(p + 1, ':')) {
			*p = '\0';
			bool exists = *copy && access(copy, F_OK) == 0;
			*p = ':';
			if (exists) {
				cut = p;
				break;
			}
		}
	}
	if (cut) {
		*cut = '\0';
		if (cut[1] && !(out->tag = strdup(cut + 1))) {
			free(copy);
			return -ENOMEM;
		}
	}
	if (!*copy) {
		free(copy);
		sm_error_set(err, SM_E_INVALID, 0, "no path in '%s'", rest);
		return -EINVAL;
	}
	abs = realpath(copy, NULL);
	if (!abs) {
		int e = errno;
		sm_error_set(err, e == ENOENT ? SM_E_NOT_FOUND : SM_E_IO, e, "%s", copy);
		free(copy);
		return -e;
	}
	free(copy);
	out->path = abs;
	return 0;
}

int oci_source_parse(const char *s, struct oci_source *out, sm_error **err)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (!strncmp(s, "oci:", 4)) {
		out->kind = SRC_OCI_LAYOUT;
		rc = source_split_local(s + 4, out, err);
	} else if (!strncmp(s, "docker-archive:", 15)) {
		out->kind = SRC_DOCKER_ARCHIVE;
		rc = source_split_local(s + 15, out, err);
	} else {
		out->kind = SRC_REGISTRY;
		if (!strncmp(s, "docker://", 9))
			s += 9;
		rc = oci_ref_parse(s, &out->ref, err);
	}
	if (rc == -ENOMEM)
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "parse source");
	if (rc < 0)
		oci_source_free(out);
	return rc;
}

void oci_source_free(struct oci_source *s)
{
	oci_ref_free(&s->ref);
	free(s->path);
	free(s->tag);
	memset(s, 0, sizeof(*s));
}

char *oci_source_name(const struct oci_source *s)
{
	char *name = NULL;
	const char *prefix = s->kind == SRC_OCI_LAYOUT ? "oci:" : "docker-archive:";

	if (s->kind == SRC_REGISTRY)
		return oci_ref_string(&s->ref);
	if (asprintf(&name, "%s%s%s%s", prefix, s->path, s->tag ? ":" : "", s->tag ? s->tag : "") <
	    0)
		return NULL;
	return name;
}

int oci_name_canonical(const char *source, char **out, sm_error **err)
{
	struct oci_source src;

	if (oci_source_parse(source, &src, err) < 0)
		return -1;
	*out = oci_source_name(&src);
	oci_source_free(&src);
	if (!*out) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "canonical name");
		return -1;
	}
	return 0;
}

/*
 * libFuzzer target: a registry's WWW-Authenticate header (src/oci/auth.c
 * auth_challenge_parse: scheme, auth-params, quoted strings with escapes),
 * and the credentials in a docker config.json (its "auths" map and the
 * base64 "auth" field), read from a temp file emptied after every input.
 *
 * Input: '{' starts a config.json, looked up for a few hosts; anything else
 * is a header value (cut at the first NUL, as a header is).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_host.h"
#include "oci/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dir;

static void dir_remove(void)
{
	fuzz_dir_clear(dir);
	rmdir(dir);
}

static void fuzz_header(const char *h)
{
	struct auth_challenge c;
	sm_error *err = NULL;

	if (auth_challenge_parse(h, &c, &err) == 0) {
		if (!c.scheme[0] || (!strcasecmp(c.scheme, "Bearer") && (!c.realm || !*c.realm)))
			abort();
		auth_challenge_free(&c);
	} else if (!err || c.realm || c.service || c.scope) {
		abort();
	}
	sm_error_free(err);
}

static void fuzz_config(const uint8_t *data, size_t size)
{
	static const char *const hosts[] = { "docker.io", "ghcr.io", "localhost:5000" };
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/config.json", dir);
	if (!(f = fopen(path, "we")) || fwrite(data, 1, size, f) != size || fclose(f) != 0)
		abort();
	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		struct auth_creds c;
		sm_error *err = NULL;
		if (auth_creds_find(hosts[i], path, &c, &err) == 0) {
			if (!c.user != !c.password)
				abort();
			auth_creds_free(&c);
		} else if (!err) {
			abort();
		}
		sm_error_free(err);
	}
	unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *h;

	if (!dir) {
		/* Only the config file counts: never the environment's credentials. */
		unsetenv("SUPERMACHINE_REGISTRY_USER");
		dir = fuzz_tmpdir("fuzz-registry-auth");
		atexit(dir_remove);
	}
	if (size && data[0] == '{') {
		fuzz_config(data, size);
		return 0;
	}
	if (!(h = strndup((const char *)data, size)))
		abort();
	fuzz_header(h);
	free(h);
	return 0;
}

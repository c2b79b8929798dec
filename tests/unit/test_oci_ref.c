/* References, sources, platforms, auth challenges and credentials. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fixtures/oci_fixture.h"
#include "oci/internal.h"

static void check_ref(const char *in, const char *want)
{
	struct oci_ref r;
	sm_error *err = NULL;
	char *s;

	cr_assert(oci_ref_parse(in, &r, &err) == 0, "%s: %s", in, sm_error_string(err));
	s = oci_ref_string(&r);
	cr_expect_str_eq(s, want, "%s -> %s, want %s", in, s, want);
	free(s);
	oci_ref_free(&r);
}

Test(oci_ref, normalizes_like_docker)
{
	check_ref("nginx", "docker.io/library/nginx:latest");
	check_ref("nginx:1.27-alpine", "docker.io/library/nginx:1.27-alpine");
	check_ref("library/nginx", "docker.io/library/nginx:latest");
	check_ref("docker.io/nginx", "docker.io/library/nginx:latest");
	check_ref("index.docker.io/nginx", "docker.io/library/nginx:latest");
	check_ref("bitnami/redis:7", "docker.io/bitnami/redis:7");
	check_ref("ghcr.io/o/r:tag", "ghcr.io/o/r:tag");
	check_ref("localhost/foo", "localhost/foo:latest");
	check_ref("localhost:5000/a/b/c:v1.2", "localhost:5000/a/b/c:v1.2");
	check_ref("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest");
	check_ref("Registry.Example/x", "Registry.Example/x:latest");
	check_ref("my-registry.local:443/team/app__x-y.z:TAG_1",
		  "my-registry.local:443/team/app__x-y.z:TAG_1");
	check_ref("busybox@sha256:"
		  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		  "docker.io/library/busybox@sha256:"
		  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	check_ref("busybox:1@sha256:"
		  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		  "docker.io/library/busybox:1@sha256:"
		  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	check_ref("[::1]:5000/x", "[::1]:5000/x:latest");
}

Test(oci_ref, rejects_bad_references)
{
	static const char *const bad[] = {
		"",
		"UPPER",
		"a:b:c",
		"nginx:",
		"nginx:-tag",
		"nginx@sha256:abc",
		"nginx@md5:0123456789abcdef0123456789abcdef",
		"a//b",
		"-a",
		"a-",
		"a..b",
		"host:99999/x",
		"with space",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"x:" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct oci_ref r;
		sm_error *err = NULL;
		cr_expect(oci_ref_parse(bad[i], &r, &err) < 0, "accepted '%s'", bad[i]);
		cr_expect(err && sm_error_code(err) == SM_E_INVALID, "'%s': no invalid error",
			  bad[i]);
		if (err)
			cr_expect(strstr(sm_error_string(err), "reference") ||
					  strstr(sm_error_string(err), "invalid"),
				  "'%s': unclear error '%s'", bad[i], sm_error_string(err));
		sm_error_free(err);
	}
}

Test(oci_ref, local_hosts_and_api_hosts)
{
	struct oci_ref r;

	cr_assert(oci_host_is_local("localhost:5000"));
	cr_assert(oci_host_is_local("127.0.0.1"));
	cr_assert(oci_host_is_local("127.3.2.1:80"));
	cr_assert(oci_host_is_local("[::1]:5000"));
	cr_assert(!oci_host_is_local("127.0.0.1.evil.com"));
	cr_assert(!oci_host_is_local("localhost.evil.com"));
	cr_assert(!oci_host_is_local("ghcr.io"));
	cr_assert(oci_ref_parse("nginx", &r, NULL) == 0);
	cr_assert_str_eq(oci_ref_api_host(&r), "registry-1.docker.io");
	oci_ref_free(&r);
}

Test(oci_ref, local_sources_split_path_and_tag)
{
	char *dir = fx_tmpdir(), path[4200], *name = NULL;
	struct oci_source s;
	sm_error *err = NULL;

	snprintf(path, sizeof(path), "%s/a:b.tar", dir);
	cr_assert(fx_sh(NULL, NULL, "touch '%s'", path) == 0);
	char src[4300];
	snprintf(src, sizeof(src), "docker-archive:%s:busybox:latest", path);
	cr_assert(oci_source_parse(src, &s, &err) == 0, "%s", sm_error_string(err));
	cr_expect_eq(s.kind, SRC_DOCKER_ARCHIVE);
	cr_expect_str_eq(s.path, path);
	cr_expect_str_eq(s.tag, "busybox:latest");
	oci_source_free(&s);

	snprintf(src, sizeof(src), "oci:%s", dir);
	cr_assert(oci_source_parse(src, &s, &err) == 0);
	cr_expect_null(s.tag);
	oci_source_free(&s);
	cr_assert(oci_name_canonical(src, &name, &err) == 0);
	cr_expect_str_eq(name, src);
	free(name);

	snprintf(src, sizeof(src), "oci:%s/missing:tag", dir);
	cr_expect(oci_source_parse(src, &s, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	cr_expect(strstr(sm_error_string(err), "missing"), "%s", sm_error_string(err));
	sm_error_free(err);
	fx_rmrf(dir);
	free(dir);
}

Test(oci_ref, platforms)
{
	struct oci_platform p;
	sm_error *err = NULL;

	cr_assert(oci_platform_parse("linux/arm64/v8", &p, NULL) == 0);
	cr_expect_str_eq(p.os, "linux");
	cr_expect_str_eq(p.arch, "arm64");
	cr_expect_str_eq(p.variant, "v8");
	cr_assert(oci_platform_parse("linux", &p, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "OS/ARCH"));
	sm_error_free(err);
	cr_expect(oci_platform_parse("linux/amd64/v3/x", &p, NULL) < 0);
	cr_expect(oci_platform_parse("//", &p, NULL) < 0);
}

Test(oci_ref, www_authenticate)
{
	struct auth_challenge c;
	sm_error *err = NULL;

	cr_assert(auth_challenge_parse("Bearer realm=\"https://auth.docker.io/token\","
				       "service=\"registry.docker.io\",scope=\"repository:"
				       "library/busybox:pull\"",
				       &c, &err) == 0);
	cr_expect_str_eq(c.scheme, "Bearer");
	cr_expect_str_eq(c.realm, "https://auth.docker.io/token");
	cr_expect_str_eq(c.service, "registry.docker.io");
	cr_expect_str_eq(c.scope, "repository:library/busybox:pull");
	auth_challenge_free(&c);
	cr_assert(auth_challenge_parse("Basic realm=\"a \\\"quoted\\\" realm\"", &c, NULL) == 0);
	cr_expect_str_eq(c.scheme, "Basic");
	cr_expect_str_eq(c.realm, "a \"quoted\" realm");
	auth_challenge_free(&c);
	cr_expect(auth_challenge_parse("Bearer service=\"x\"", &c, &err) < 0);
	cr_expect(auth_challenge_parse("Bearer realm=\"unterminated", &c, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "WWW-Authenticate"), "%s", sm_error_string(err));
	sm_error_free(err);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert(f);
	fputs(text, f);
	fclose(f);
}

Test(oci_ref, credentials_from_env_and_docker_config)
{
	char *dir = fx_tmpdir(), cfg[4200];
	struct auth_creds c;
	sm_error *err = NULL;

	unsetenv("SUPERMACHINE_REGISTRY_USER");
	unsetenv("SUPERMACHINE_REGISTRY_PASSWORD");
	unsetenv("SUPERMACHINE_REGISTRY_HOST");
	snprintf(cfg, sizeof(cfg), "%s/config.json", dir);
	/* "dXNlcjpwYTpzcw==" is base64("user:pa:ss") */
	write_file(cfg, "{\"auths\": {\"https://index.docker.io/v1/\": {\"auth\": \"dXNlcjpwYTpzcw==\"},"
			"\"http://reg.example:5000\": {\"username\": \"u2\", \"password\": \"p2\"}}}");
	cr_assert(auth_creds_find("docker.io", cfg, &c, &err) == 0);
	cr_expect_str_eq(c.user, "user");
	cr_expect_str_eq(c.password, "pa:ss");
	auth_creds_free(&c);
	cr_assert(auth_creds_find("reg.example:5000", cfg, &c, &err) == 0);
	cr_expect_str_eq(c.user, "u2");
	cr_expect_str_eq(c.password, "p2");
	auth_creds_free(&c);
	cr_assert(auth_creds_find("other.example", cfg, &c, &err) == 0);
	cr_expect_null(c.user);

	setenv("SUPERMACHINE_REGISTRY_USER", "envuser", 1);
	setenv("SUPERMACHINE_REGISTRY_PASSWORD", "envpass", 1);
	cr_assert(auth_creds_find("docker.io", cfg, &c, &err) == 0);
	cr_expect_str_eq(c.user, "envuser");
	auth_creds_free(&c);
	setenv("SUPERMACHINE_REGISTRY_HOST", "ghcr.io", 1);
	cr_assert(auth_creds_find("docker.io", cfg, &c, &err) == 0);
	cr_expect_str_eq(c.user, "user", "env credentials leaked to another host");
	auth_creds_free(&c);
	unsetenv("SUPERMACHINE_REGISTRY_USER");

	write_file(cfg, "{\"auths\": {\"docker.io\": {\"auth\": \"!!notbase64\"}}}");
	cr_expect(auth_creds_find("docker.io", cfg, &c, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "base64"), "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;
	write_file(cfg, "[not json");
	cr_expect(auth_creds_find("docker.io", cfg, &c, &err) < 0);
	cr_expect(strstr(sm_error_string(err), cfg), "%s", sm_error_string(err));
	sm_error_free(err);
	fx_rmrf(dir);
	free(dir);
}

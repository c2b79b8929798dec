/*
 * Users without NSS: the image's /etc/passwd and /etc/group parsed by
 * hand (musl's static getpwnam would do the same, but glibc's would ask
 * NSS modules, and the two builds must behave alike).
 */
#include "guest/init.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USER_MAX_FIELDS 8

/* Splits line at ':' into at most max fields; returns how many. */
static int split_fields(char *line, char **f, int max)
{
	int n = 0;

	line[strcspn(line, "\n")] = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++) {
		if (*p == ':') {
			*p = 0;
			f[n++] = p + 1;
		}
	}
	return n;
}

static bool parse_id(const char *s, unsigned long *out)
{
	char *end;

	if (!*s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return !errno && !*end && *out < UINT_MAX;
}

/*
 * Calls match(fields, n, ctx) for each well-formed line of a colon file
 * until it returns true. Lines too long for the buffer are skipped whole.
 */
static bool scan_file(const char *path, int min_fields,
		      bool (*match)(char **f, int n, void *ctx), void *ctx)
{
	char line[4096];
	bool skipping = false;
	FILE *fp = fopen(path, "re");

	if (!fp)
		return false;
	while (fgets(line, sizeof(line), fp)) {
		char *f[USER_MAX_FIELDS];
		bool whole = strchr(line, '\n') || feof(fp);
		int n;

		if (skipping || !whole) {
			skipping = !whole;
			continue;
		}
		if (line[0] == '#')
			continue;
		n = split_fields(line, f, USER_MAX_FIELDS);
		if (n >= min_fields && match(f, n, ctx)) {
			fclose(fp);
			return true;
		}
	}
	fclose(fp);
	return false;
}

struct pw_query {
	const char *name; /* or NULL: by uid */
	unsigned long uid;
	struct user_ids *ids;
};

static bool pw_match(char **f, int n, void *ctx)
{
	struct pw_query *q = ctx;
	unsigned long uid, gid;

	if (!parse_id(f[2], &uid) || !parse_id(f[3], &gid))
		return false;
	if (q->name ? strcmp(f[0], q->name) != 0 : uid != q->uid)
		return false;
	q->ids->uid = (uid_t)uid;
	q->ids->gid = (gid_t)gid;
	snprintf(q->ids->name, sizeof(q->ids->name), "%s", f[0]);
	snprintf(q->ids->home, sizeof(q->ids->home), "%s", n > 5 && f[5][0] ? f[5] : "/");
	return true;
}

struct gr_query {
	const char *name;
	gid_t gid;
};

static bool gr_match(char **f, int n, void *ctx)
{
	struct gr_query *q = ctx;
	unsigned long gid;

	if (!parse_id(f[2], &gid) || strcmp(f[0], q->name) != 0)
		return false;
	q->gid = (gid_t)gid;
	return true;
}

/* Collects the groups that list ids->name as a member. */
static bool gr_member(char **f, int n, void *ctx)
{
	struct user_ids *ids = ctx;
	unsigned long gid;
	char *save = NULL;

	if (n < 4 || !parse_id(f[2], &gid))
		return false;
	for (char *m = strtok_r(f[3], ",", &save); m; m = strtok_r(NULL, ",", &save)) {
		if (strcmp(m, ids->name) != 0)
			continue;
		if (ids->ngroups < (int)(sizeof(ids->groups) / sizeof(ids->groups[0])) &&
		    (gid_t)gid != ids->gid)
			ids->groups[ids->ngroups++] = (gid_t)gid;
		break;
	}
	return false; /* keep scanning */
}

static int resolve_group(const char *spec, gid_t *gid, char *why, size_t whylen)
{
	unsigned long id;
	struct gr_query q = { .name = spec };

	if (parse_id(spec, &id)) {
		*gid = (gid_t)id;
		return 0;
	}
	if (!scan_file("/etc/group", 3, gr_match, &q)) {
		snprintf(why, whylen, "unknown group '%s' (not in the image's /etc/group)", spec);
		return -ENOENT;
	}
	*gid = q.gid;
	return 0;
}

int user_resolve(const char *spec, struct user_ids *ids, char *why, size_t whylen)
{
	char user[PROTO_MAX_NAME + 1], *group;
	unsigned long id = 0; /* named users leave it unset */
	struct pw_query q = { .ids = ids };
	bool named;

	char self[32];

	*ids = (struct user_ids){ .home = "/root", .name = "root" };
	/* No user: the agent's own (root as PID 1; whoever runs an --agent-only test agent). */
	if (!spec || !*spec) {
		snprintf(self, sizeof(self), "%u:%u", (unsigned)getuid(), (unsigned)getgid());
		spec = self;
	}
	if (strlen(spec) > PROTO_MAX_NAME) {
		snprintf(why, whylen, "user name too long");
		return -EINVAL;
	}
	strcpy(user, spec);
	group = strchr(user, ':');
	if (group)
		*group++ = 0;
	if (!user[0]) {
		snprintf(why, whylen, "invalid user '%s'", spec);
		return -EINVAL;
	}
	named = !parse_id(user, &id);
	q.name = named ? user : NULL;
	q.uid = id;
	if (!scan_file("/etc/passwd", 6, pw_match, &q)) {
		if (named) {
			snprintf(why, whylen, "unknown user '%s' (not in the image's /etc/passwd)", user);
			return -ENOENT;
		}
		/* A numeric uid need not exist, as in docker: group 0, home /. */
		ids->uid = (uid_t)id;
		ids->gid = 0;
		snprintf(ids->name, sizeof(ids->name), "%lu", id);
		snprintf(ids->home, sizeof(ids->home), "%s", id == 0 ? "/root" : "/");
	}
	if (group && resolve_group(group, &ids->gid, why, whylen) < 0)
		return -ENOENT;
	if (!group)
		scan_file("/etc/group", 4, gr_member, ids);
	return 0;
}

static size_t key_len(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* Index of the entry in env[0, n) with the same key as kv, or -1. */
static long env_find(char **env, size_t n, const char *kv)
{
	size_t k = key_len(kv);

	for (size_t i = 0; i < n; i++)
		if (key_len(env[i]) == k && !strncmp(env[i], kv, k))
			return (long)i;
	return -1;
}

static void env_put(char **env, size_t *n, const char *kv, bool override)
{
	long i = env_find(env, *n, kv);

	if (i < 0)
		env[(*n)++] = (char *)kv;
	else if (override)
		env[i] = (char *)kv;
}

char **env_build(const char *const *image, const char *const *req, const struct user_ids *ids, bool tty)
{
	size_t cap = 4, n = 0;
	char **env, *home;

	for (const char *const *p = image; p && *p; p++)
		cap++;
	for (const char *const *p = req; p && *p; p++)
		cap++;
	/* One block: pointers, then "HOME=..." */
	env = malloc(cap * sizeof(*env) + sizeof("HOME=") + strlen(ids->home));
	if (!env)
		return NULL;
	home = (char *)(env + cap);
	sprintf(home, "HOME=%s", ids->home);
	for (const char *const *p = image; p && *p; p++)
		env_put(env, &n, *p, true);
	for (const char *const *p = req; p && *p; p++)
		env_put(env, &n, *p, true);
	env_put(env, &n, home, false);
	if (tty)
		env_put(env, &n, "TERM=xterm", false);
	env[n] = NULL;
	return env;
}

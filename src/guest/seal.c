/*
 * The seal: what keeps the clones of a snapshot from running guest code
 * with the randomness they all inherited from it.
 *
 * QUIESCE (before every capture) sets shared->sealed, then freezes every
 * child cgroup of the agent's cgroup root: the workload's, each exec's,
 * and any the workload made. A task frozen through cgroup.freeze cannot
 * return to user space, so a clone runs none of that code until it is
 * thawed, and RESUME thaws only after the kernel's CRNG was reseeded with
 * the clone's own entropy (session.c). Requests that would run or reach
 * guest code (exec, files, the TCP bridge, a workload signal) wait on the
 * seal instead (a futex on the shared word).
 *
 * A request that passed seal_wait just before a seal began: its exec
 * makes its cgroup and then reads the seal (seal_adopt), while the sealer
 * sets the seal and then lists the cgroups. Whichever comes second sees
 * the other, so the new cgroup is frozen either way.
 */
#include "guest/init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>

/* A task in an uninterruptible sleep freezes when it wakes: wait that long for it at most. */
#define SEAL_FREEZE_TIMEOUT_MS 5000u

static void seal_set(struct init_shared *sh, uint32_t v)
{
	__atomic_store_n(&sh->sealed, v, __ATOMIC_SEQ_CST);
}

static uint32_t seal_get(const struct init_shared *sh)
{
	return __atomic_load_n(&sh->sealed, __ATOMIC_SEQ_CST);
}

/* Not FUTEX_PRIVATE: the word lives in a MAP_SHARED mapping every session process shares. */
static void futex_wake_all(uint32_t *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void futex_wait_ms(uint32_t *word, uint32_t val, uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000u), .tv_nsec = (long)(ms % 1000u) * 1000000 };

	syscall(SYS_futex, word, FUTEX_WAIT, val, &ts, NULL, 0);
}

int seal_wait(const struct init_state *st)
{
	uint64_t deadline = init_now_ns() + (uint64_t)st->seal_wait_ms * 1000000u;

	for (int waited = 0;; waited = 1) {
		uint64_t now = init_now_ns();

		if (!seal_get(st->shared))
			return waited;
		if (now >= deadline)
			return -ETIMEDOUT;
		/* Returns at once if the word is no longer 1: no lost wake-up. */
		futex_wait_ms(&st->shared->sealed, 1, (deadline - now) / 1000000u + 1);
	}
}

void seal_uncontained(const struct init_state *st, const char *what)
{
	__atomic_store_n(&st->shared->uncontained, 1, __ATOMIC_SEQ_CST);
	agent_log("%s runs outside a cgroup: it cannot be frozen, so this VM cannot be snapshotted", what);
}

/* ---- the cgroups ---------------------------------------------------------------- */

enum cg_op { CG_FREEZE, CG_THAW, CG_CHECK };

/* One pass over the child cgroups of the root. */
struct cg_pass {
	enum cg_op op;
	int err;                      /* the first failure, a positive errno */
	unsigned unfrozen;            /* CG_CHECK: how many are not frozen yet */
	char where[PROTO_MAX_PATH + 1]; /* the cgroup that failed, or the first not frozen */
};

static int cg_write_freeze(const char *dir, bool on)
{
	char path[PROTO_MAX_PATH + 32];

	snprintf(path, sizeof(path), "%s/cgroup.freeze", dir);
	return -init_write_file(path, on ? "1" : "0");
}

/* Whether cgroup.events says "frozen 1"; a cgroup that went away counts as frozen. */
static bool cg_frozen(const char *dir)
{
	char path[PROTO_MAX_PATH + 32], buf[256];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/cgroup.events", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return strstr(buf, "frozen 1") != NULL;
}

static void cg_visit(const char *dir, struct cg_pass *p)
{
	int rc;

	if (p->op == CG_CHECK) {
		if (!cg_frozen(dir) && !p->unfrozen++)
			snprintf(p->where, sizeof(p->where), "%s", dir);
		return;
	}
	rc = cg_write_freeze(dir, p->op == CG_FREEZE);
	/* ENOENT: an exec ended and removed its cgroup meanwhile */
	if (rc && rc != ENOENT && !p->err) {
		p->err = rc;
		snprintf(p->where, sizeof(p->where), "%s", dir);
	}
}

static void cg_pass(const char *root, struct cg_pass *p)
{
	DIR *d = opendir(root);
	struct dirent *e;

	if (!d) {
		p->err = errno;
		snprintf(p->where, sizeof(p->where), "%s", root);
		return;
	}
	while ((e = readdir(d))) {
		char dir[PROTO_MAX_PATH + 1];

		if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", root, e->d_name) < sizeof(dir))
			cg_visit(dir, p);
	}
	closedir(d);
}

/* Waits until every child cgroup reports frozen; 0, or ETIMEDOUT naming the first that did not. */
static int freeze_wait(const char *root, char *why, size_t whylen)
{
	uint64_t deadline = init_now_ns() + (uint64_t)SEAL_FREEZE_TIMEOUT_MS * 1000000u;
	struct timespec ms = { 0, 1000000 };

	for (;;) {
		struct cg_pass p = { .op = CG_CHECK };

		cg_pass(root, &p);
		if (p.err) {
			snprintf(why, whylen, "reading %s: %s", p.where, strerror(p.err));
			return p.err;
		}
		if (!p.unfrozen)
			return 0;
		if (init_now_ns() >= deadline) {
			snprintf(why, whylen, "cgroup %s did not freeze within %u ms (a task stuck in the kernel?)",
				 p.where, SEAL_FREEZE_TIMEOUT_MS);
			return ETIMEDOUT;
		}
		nanosleep(&ms, NULL);
	}
}

/* ---- QUIESCE and RESUME ------------------------------------------------------------ */

int seal_release(const struct init_state *st, char *why, size_t whylen)
{
	struct cg_pass p = { .op = CG_THAW };

	if (st->cgroup_root[0])
		cg_pass(st->cgroup_root, &p);
	/* Unsealed even if a thaw failed: what stays frozen cannot leak anything. */
	seal_set(st->shared, 0);
	futex_wake_all(&st->shared->sealed);
	if (p.err) {
		snprintf(why, whylen, "thaw %s: %s", p.where, strerror(p.err));
		return p.err;
	}
	return 0;
}

/* Undoes a seal that could not be completed; why keeps the first error's text. */
static int seal_abort(const struct init_state *st, int err, const char *why)
{
	char ignored[PROTO_MAX_PATH + 64];

	seal_release(st, ignored, sizeof(ignored));
	agent_log("quiesce: %s; left unsealed", why);
	return err;
}

int seal_quiesce(const struct init_state *st, char *why, size_t whylen)
{
	struct cg_pass p = { .op = CG_FREEZE };

	if (__atomic_load_n(&st->shared->uncontained, __ATOMIC_SEQ_CST)) {
		snprintf(why, whylen,
			 "a workload or exec of this VM runs outside a cgroup (see its console): it cannot be frozen, "
			 "so a clone could run it before its randomness is renewed");
		return EBUSY;
	}
	/* Before listing the cgroups: see the ordering note at the top. */
	seal_set(st->shared, 1);
	if (!st->cgroup_root[0])
		return 0; /* --agent-only without --cgroup: only the requests wait */
	cg_pass(st->cgroup_root, &p);
	if (p.err) {
		snprintf(why, whylen, "freeze %s: %s", p.where, strerror(p.err));
		return seal_abort(st, p.err, why);
	}
	p.err = freeze_wait(st->cgroup_root, why, whylen);
	return p.err ? seal_abort(st, p.err, why) : 0;
}

int seal_adopt(const struct init_state *st, const char *cgroup_path)
{
	if (!cgroup_path[0] || !seal_get(st->shared))
		return 0;
	return cg_write_freeze(cgroup_path, true);
}

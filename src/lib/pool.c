/*
 * sm_pool: warm VMs restored from one snapshot (include/supermachine.h).
 *
 * The pool's own threads restore VMs, reset released ones and stop
 * evicted and dead ones, so that none of this runs on a caller's time;
 * one of them (the janitor, thread 0) wakes periodically to evict idle
 * VMs and to notice idle workers that died. Callers only ever pop and
 * push lists under the mutex, so a warm acquire costs a lock, a list pop
 * and one poll() of the worker's pidfd.
 *
 * A pooled VM is of the pool's kind (struct vm_kind, vm.h): sm_vm_free()
 * gives it back, sm_vm_reset() resets it as the restored VM it was. It
 * gets its kind back before the pool stops and frees it.
 *
 * Memory: the pool is reference counted (its owner, each VM handed out,
 * each acquire in progress), so sm_pool_release() of a VM that outlived
 * sm_pool_free() still finds its pool and frees the VM; the last
 * reference frees the pool.
 */
#include "lib/vm.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/config.h"
#include "base/error.h"
#include "lib/log.h"
#include "lib/spare.h"

#define POOL_DEFAULT_MAX 4u
#define POOL_DEFAULT_IDLE_TIMEOUT_MS 60000u
#define POOL_DEFAULT_ACQUIRE_TIMEOUT_MS 30000u
#define POOL_MAX_THREADS 8u
#define POOL_SCAN_MS 250u               /* janitor period: idle deaths and evictions */
#define POOL_RETRY_MIN_MS 1000u          /* after a failed restore, before the next one */
#define POOL_RETRY_MAX_MS 30000u
#define POOL_KILL_WAIT_MS 5000       /* sm_pool_free, for each VM still acquired */
#define POOL_DESTROY_WAIT_MS 30000   /* a pool thread, for a worker it killed */
#define POOL_LATENCY_RING 4096u

/* One VM of the pool, on exactly one of the lists below (or handed out: busy). */
struct pool_slot {
	struct sm_pool *pool;
	struct sm_vm *vm;
	const struct vm_kind *kind; /* the VM's own, while it is of the pool's */
	struct pool_slot *prev, *next;
	uint64_t idle_since_ns;
};

struct pool_list {
	struct pool_slot *head, *tail;
	unsigned n;
};

struct sm_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;   /* the pool's threads: something to do */
	pthread_cond_t ready;  /* acquirers: a VM became idle, a restore failed, or the pool closes */
	char *name;
	sm_pool_config cfg;
	sm_vm_config vm_cfg;   /* cfg.vm points here */
	unsigned refs;

	struct pool_list idle;      /* most recently released first */
	struct pool_list busy;      /* handed out */
	struct pool_list resetting; /* released, waiting for a thread to reset them */
	struct pool_list graveyard; /* to stop and free */
	unsigned starting;          /* restores in progress */
	unsigned resets;            /* resets in progress */
	unsigned stopping;          /* stops in progress */
	unsigned waiting;           /* acquirers blocked */
	bool closing;

	/* the last failed restore, for the acquirers waiting on it */
	uint64_t fail_gen;
	sm_code fail_code;
	char fail_msg[1024];
	uint64_t retry_at_ns;
	uint32_t retry_ms;

	uint64_t spawned, evicted, died, waits, acquires, acquire_timeouts;

	/*
	 * The spare worker the next restore takes (spare.h): started by a
	 * pool thread whenever there is none, so never on an acquire's time.
	 */
	bool spares;           /* SUPERMACHINE_SPARE=1 and workers are not jailed */
	char *spare_exe;       /* the worker binary */
	struct spare spare;    /* pid 0: none */
	bool spare_starting;
	uint64_t spare_restores;
	uint32_t lat_us[POOL_LATENCY_RING];
	uint64_t nlat;

	pthread_t threads[POOL_MAX_THREADS];
	unsigned nthreads;
};

struct pool_thread_arg {
	struct sm_pool *pool;
	unsigned index;
};

static uint64_t pool_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timespec pool_abstime(uint64_t deadline_ns)
{
	return (struct timespec){ .tv_sec = (time_t)(deadline_ns / 1000000000u),
				  .tv_nsec = (long)(deadline_ns % 1000000000u) };
}

/* ---- lists ---- */

static void list_push_head(struct pool_list *l, struct pool_slot *s)
{
	s->prev = NULL;
	s->next = l->head;
	if (l->head)
		l->head->prev = s;
	else
		l->tail = s;
	l->head = s;
	l->n++;
}

static void list_remove(struct pool_list *l, struct pool_slot *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		l->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		l->tail = s->prev;
	s->prev = s->next = NULL;
	l->n--;
}

static struct pool_slot *list_pop_head(struct pool_list *l)
{
	struct pool_slot *s = l->head;

	if (s)
		list_remove(l, s);
	return s;
}

/* ---- the pooled kind of VM ---- */

static int pool_vm_reset(struct sm_vm *vm, sm_error **err)
{
	const struct pool_slot *s = vm->kind_data;

	return s->kind->reset(vm, err);
}

static const struct vm_kind pool_vm_kind = { .free = sm_pool_release, .reset = pool_vm_reset };

static void pool_vm_adopt(struct pool_slot *s, struct sm_vm *vm)
{
	s->vm = vm;
	s->kind = vm->kind;
	vm->kind = &pool_vm_kind;
	vm->kind_data = s;
}

/* The VM is its own kind again: sm_vm_free() frees it. */
static struct sm_vm *pool_vm_disown(struct pool_slot *s)
{
	struct sm_vm *vm = s->vm;

	vm->kind = s->kind;
	vm->kind_data = NULL;
	return vm;
}

/* VMs that exist or are coming: what max bounds. */
static unsigned pool_live(const struct sm_pool *p)
{
	return p->idle.n + p->busy.n + p->resetting.n + p->resets + p->starting;
}

/* ---- the pool's threads ---- */

/* Ready for the next user; the most recently used first, so the oldest idle age out. */
static void pool_make_idle(struct sm_pool *p, struct pool_slot *s)
{
	s->idle_since_ns = pool_now_ns();
	list_push_head(&p->idle, s);
	pthread_cond_signal(&p->ready);
}

static void pool_bury(struct sm_pool *p, struct pool_slot *s)
{
	list_push_head(&p->graveyard, s);
	pthread_cond_signal(&p->work);
}

/*
 * Stops and frees one VM. A pool's guests are disposable copies of the
 * snapshot: without volumes to flush they are killed rather than shut
 * down, which takes no guest time.
 */
static void pool_vm_destroy(struct sm_pool *p, struct pool_slot *s)
{
	struct sm_vm *vm = pool_vm_disown(s);
	bool stuck = false;

	if (p->vm_cfg.nvolumes) {
		sm_vm_stop(vm, 0, NULL);
	} else if (sm_vm_running(vm)) {
		kill(vm->pid, SIGKILL);
		if (vm->pidfd >= 0) {
			struct pollfd pfd = { .fd = vm->pidfd, .events = POLLIN };
			if (poll(&pfd, 1, POOL_DESTROY_WAIT_MS) == 0) {
				log_warn("pool of '%s': VM %s: its worker %d has not exited %d ms after SIGKILL",
					 p->name, vm->id, (int)vm->pid, POOL_DESTROY_WAIT_MS);
				stuck = true;
			}
		}
	}
	if (stuck)
		vm_destroy(vm); /* killed already: sm_vm_free's polite stop would only wait more */
	else
		sm_vm_free(vm); /* reaps the worker and removes its runtime directory */
	free(s);
}

/*
 * Whether the worker is gone or going, for release and the janitor (not
 * the acquire fast path). Its pidfd only turns readable once every thread
 * has exited; a killed worker's leader can sit a zombie long before that
 * while the host kernel tears its VM down (seen for minutes under nested
 * KVM), and such a VM answers nothing: the leader's state says it is dead.
 */
static bool pool_vm_dead(struct sm_vm *vm)
{
	char path[64], buf[256];
	FILE *f;
	size_t n;

	if (!sm_vm_running(vm))
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)vm->pid);
	f = fopen(path, "re");
	if (!f)
		return false; /* no /proc: trust the pidfd */
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *close = strrchr(buf, ')');
	return close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X');
}

static bool pool_wants_spawn(const struct sm_pool *p, uint64_t now)
{
	unsigned live = pool_live(p);

	if (p->closing || live >= p->cfg.max || now < p->retry_at_ns)
		return false;
	if (live < p->cfg.min)
		return true;
	/* acquirers not covered by a VM already idle or on its way */
	return p->waiting > p->idle.n + p->starting + p->resets + p->resetting.n;
}

/* The spare, lock held: moved out of the pool for one restore. */
static struct spare pool_take_spare(struct sm_pool *p)
{
	struct spare s = p->spare;

	p->spare = (struct spare){ .pidfd = -1, .sock = -1 };
	return s;
}

/* A spare a restore did not use, lock held: back if it still waits and none came meanwhile. */
static void pool_return_spare(struct sm_pool *p, struct spare *s)
{
	if (s->pid && !p->spare.pid && !p->closing && spare_alive(s))
		p->spare = *s, *s = (struct spare){ .pidfd = -1, .sock = -1 };
	else
		spare_kill(s); /* killed dead or alive: reaped either way */
}

/* Called with the lock held; returns with it held. */
static void pool_spawn(struct sm_pool *p)
{
	sm_error *err = NULL;
	struct pool_slot *s = calloc(1, sizeof(*s));
	struct spare spare = pool_take_spare(p);
	struct sm_vm *vm = NULL;

	p->starting++;
	pthread_mutex_unlock(&p->lock);
	if (s)
		vm = vm_restore_spare(p->name, &p->vm_cfg, spare.pid ? &spare : NULL, &err);
	else
		sm_error_set(&err, SM_E_NOMEM, 0, "restore %s", p->name);
	/* said before taking the lock: the log callback may call into the pool */
	if (!vm)
		log_warn("pool of '%s': %s", p->name, sm_error_string(err));
	pthread_mutex_lock(&p->lock);
	p->starting--;
	pool_return_spare(p, &spare);
	if (vm && vm->spare_used)
		p->spare_restores++;
	if (!vm) {
		free(s);
		p->fail_gen++;
		p->fail_code = sm_error_code(err);
		snprintf(p->fail_msg, sizeof(p->fail_msg), "%s", sm_error_string(err));
		p->retry_ms = p->retry_ms ? p->retry_ms * 2 : POOL_RETRY_MIN_MS;
		if (p->retry_ms > POOL_RETRY_MAX_MS)
			p->retry_ms = POOL_RETRY_MAX_MS;
		p->retry_at_ns = pool_now_ns() + (uint64_t)p->retry_ms * 1000000u;
		sm_error_free(err);
		pthread_cond_broadcast(&p->ready);
		return;
	}
	p->retry_ms = 0;
	p->retry_at_ns = 0;
	p->spawned++;
	s->pool = p;
	pool_vm_adopt(s, vm);
	if (p->closing)
		pool_bury(p, s);
	else
		pool_make_idle(p, s);
}

/* Called with the lock held; returns with it held. */
static void pool_reset(struct sm_pool *p, struct pool_slot *s)
{
	sm_error *err = NULL;
	int rc;

	p->resets++;
	pthread_mutex_unlock(&p->lock);
	rc = sm_vm_reset(s->vm, &err);
	if (rc < 0)
		log_warn("pool of '%s': VM %s discarded: %s", p->name, s->vm->id, sm_error_string(err));
	sm_error_free(err);
	pthread_mutex_lock(&p->lock);
	p->resets--;
	if (rc < 0) {
		p->died++;
		pool_bury(p, s);
	} else if (p->closing) {
		pool_bury(p, s);
	} else {
		pool_make_idle(p, s);
	}
}

/* Called with the lock held; returns with it held. */
static void pool_stop_one(struct sm_pool *p, struct pool_slot *s)
{
	p->stopping++;
	pthread_mutex_unlock(&p->lock);
	pool_vm_destroy(p, s);
	pthread_mutex_lock(&p->lock);
	p->stopping--;
	/* a stop may have brought the pool below min, or been the last one sm_pool_free() waits for */
	pthread_cond_broadcast(&p->work);
}

/*
 * The janitor's round: idle workers that died are buried (and replaced
 * through min), idle VMs beyond min that waited idle_timeout are evicted,
 * the oldest first. Lock held.
 */
static void pool_scan(struct sm_pool *p, uint64_t now)
{
	uint64_t timeout_ns = (uint64_t)p->cfg.idle_timeout_ms * 1000000u;
	struct pool_slot *s, *prev;

	for (s = p->idle.tail; s; s = prev) {
		prev = s->prev;
		if (pool_vm_dead(s->vm)) {
			list_remove(&p->idle, s);
			p->died++;
			pool_bury(p, s);
		}
	}
	/* a spare that died waiting (killed, or its WORKER_SPARE_WAIT_S ran out): reaped, and pool_step starts another */
	if (p->spare.pid && !spare_alive(&p->spare))
		spare_kill(&p->spare);
	for (s = p->idle.tail; s && pool_live(p) > p->cfg.min; s = prev) {
		prev = s->prev;
		if (now - s->idle_since_ns < timeout_ns)
			break; /* younger ones come after it */
		list_remove(&p->idle, s);
		p->evicted++;
		pool_bury(p, s);
	}
}

static bool pool_wants_spare(const struct sm_pool *p)
{
	return p->spares && !p->closing && !p->spare.pid && !p->spare_starting;
}

/* Lock held; returns with it held. A spare that cannot start turns spares off for the pool. */
static void pool_start_spare(struct sm_pool *p)
{
	struct spare s;
	sm_error *err = NULL;
	int rc;

	p->spare_starting = true;
	pthread_mutex_unlock(&p->lock);
	rc = spare_start(&s, p->spare_exe, &err);
	if (rc < 0)
		log_warn("pool of '%s': %s; restoring without spares", p->name, sm_error_string(err));
	sm_error_free(err);
	pthread_mutex_lock(&p->lock);
	p->spare_starting = false;
	if (rc < 0)
		p->spares = false;
	else if (p->closing || p->spare.pid)
		spare_kill(&s);
	else
		p->spare = s;
}

/* One thing to do, lock held: true when something was done (look again). */
static bool pool_step(struct sm_pool *p, uint64_t now)
{
	struct pool_slot *s;

	if ((s = list_pop_head(&p->graveyard))) {
		pool_stop_one(p, s);
		return true;
	}
	if ((s = list_pop_head(&p->resetting))) {
		if (p->closing)
			pool_bury(p, s);
		else
			pool_reset(p, s);
		return true;
	}
	if (pool_wants_spawn(p, now)) {
		pool_spawn(p);
		return true;
	}
	if (pool_wants_spare(p)) {
		pool_start_spare(p);
		return true;
	}
	return false;
}

static bool pool_thread_done(const struct sm_pool *p)
{
	return p->closing && !p->graveyard.n && !p->resetting.n && !p->starting && !p->resets && !p->stopping &&
	       !p->spare_starting;
}

static void *pool_thread(void *opaque)
{
	struct pool_thread_arg *a = opaque;
	struct sm_pool *p = a->pool;
	bool janitor = a->index == 0;
	uint64_t next_scan = 0;

	free(a);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		uint64_t now = pool_now_ns();
		if (janitor && !p->closing && now >= next_scan) {
			pool_scan(p, now);
			next_scan = now + POOL_SCAN_MS * 1000000ull;
		}
		if (pool_step(p, now))
			continue;
		/*
		 * Leave only once every stop is done: a worker dies with the
		 * thread that spawned it, and a clean stop should not be cut short.
		 */
		if (pool_thread_done(p))
			break;
		if (janitor || p->retry_at_ns > now) {
			uint64_t wake = janitor && !p->closing ? next_scan : UINT64_MAX;
			if (p->retry_at_ns > now && p->retry_at_ns < wake)
				wake = p->retry_at_ns;
			if (wake == UINT64_MAX) {
				pthread_cond_wait(&p->work, &p->lock);
			} else {
				struct timespec ts = pool_abstime(wake);
				pthread_cond_timedwait(&p->work, &p->lock, &ts);
			}
		} else {
			pthread_cond_wait(&p->work, &p->lock);
		}
	}
	pthread_cond_broadcast(&p->work); /* the others may be waiting on the same condition */
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ---- the pool itself ---- */

static void pool_destroy(struct sm_pool *p)
{
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->ready);
	free(p->name);
	free(p->spare_exe);
	free(p);
}

/* Drops one reference, lock held; unlocks, and frees the pool with the last one. */
static void pool_unref_unlock(struct sm_pool *p)
{
	bool last = --p->refs == 0;

	pthread_mutex_unlock(&p->lock);
	if (last)
		pool_destroy(p);
}

/*
 * Spares, unless turned off or jailed (a jailed worker starts in its own
 * namespaces). Without the worker binary there are none: the restore
 * then says what is missing.
 */
static void pool_spares_init(struct sm_pool *p)
{
	struct vm_asset_paths *a = malloc(sizeof(*a));
	sm_error *err = NULL;

	p->spare = (struct spare){ .pidfd = -1, .sock = -1 };
	p->spares = a && spare_wanted() && !vm_jail_wanted() && vm_assets_find(p->vm_cfg.assets, a, &err) == 0 &&
		    (p->spare_exe = strdup(a->worker)) != NULL;
	sm_error_free(err);
	free(a);
}

static int pool_init(struct sm_pool *p, const char *name, const sm_pool_config *cfg, sm_error **err)
{
	pthread_condattr_t ca;

	if (pool_config_copy(&p->cfg, cfg, err) < 0 || vm_config_copy(&p->vm_cfg, p->cfg.vm, err) < 0)
		return -1;
	p->cfg.vm = &p->vm_cfg;
	if (!p->cfg.max)
		p->cfg.max = POOL_DEFAULT_MAX;
	if (!p->cfg.idle_timeout_ms)
		p->cfg.idle_timeout_ms = POOL_DEFAULT_IDLE_TIMEOUT_MS;
	if (!p->cfg.acquire_timeout_ms)
		p->cfg.acquire_timeout_ms = POOL_DEFAULT_ACQUIRE_TIMEOUT_MS;
	p->vm_cfg.detached = false; /* a pool's workers never outlive it */
	p->vm_cfg.name = NULL;      /* nor can they share one name, or be kept */
	p->vm_cfg.keep = false;
	if (p->cfg.min > p->cfg.max)
		return sm_error_set(err, SM_E_INVALID, 0, "pool of '%s': min %u is above max %u", name, p->cfg.min,
				    p->cfg.max), -1;
	if (!(p->name = strdup(name)))
		return sm_error_set(err, SM_E_NOMEM, 0, "pool"), -1;
	pool_spares_init(p);
	p->refs = 1;
	pthread_mutex_init(&p->lock, NULL);
	/* deadlines are CLOCK_MONOTONIC: a wall clock step must not end or stretch a wait */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->work, &ca);
	pthread_cond_init(&p->ready, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

static int pool_start_threads(struct sm_pool *p, sm_error **err)
{
	unsigned want = p->cfg.max < POOL_MAX_THREADS ? p->cfg.max : POOL_MAX_THREADS;

	for (unsigned i = 0; i < want; i++) {
		struct pool_thread_arg *a = malloc(sizeof(*a));
		int rc = a ? 0 : ENOMEM;
		if (a) {
			*a = (struct pool_thread_arg){ p, i };
			rc = pthread_create(&p->threads[i], NULL, pool_thread, a);
		}
		if (rc) {
			free(a);
			if (i == 0)
				return sm_error_set(err, SM_E_NOMEM, rc, "pool of '%s': start its thread", p->name), -1;
			break; /* fewer threads: fewer restores at once, still correct */
		}
		p->nthreads++;
	}
	return 0;
}

/* sm_pool_new: waits for the first min VMs; a failed restore fails the pool. */
static int pool_wait_min(struct sm_pool *p, sm_error **err)
{
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	pthread_cond_broadcast(&p->work);
	while (p->idle.n < p->cfg.min && !p->fail_gen)
		pthread_cond_wait(&p->ready, &p->lock);
	if (p->fail_gen) {
		sm_error_set(err, p->fail_code, 0, "pool of '%s': %s", p->name, p->fail_msg);
		rc = -1;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

sm_pool *sm_pool_new(const char *name_or_dir, const sm_pool_config *cfg, sm_error **err)
{
	struct sm_pool *p;

	if (!name_or_dir || !*name_or_dir)
		return sm_error_set(err, SM_E_INVALID, 0, "pool: no snapshot given"), NULL;
	if (!sm_snapshot_exists(name_or_dir))
		return sm_error_set(err, SM_E_NOT_FOUND, 0, "pool of '%s': no such snapshot", name_or_dir), NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return sm_error_set(err, SM_E_NOMEM, 0, "pool of '%s'", name_or_dir), NULL;
	if (pool_init(p, name_or_dir, cfg, err) < 0) {
		free(p->name);
		free(p);
		return NULL;
	}
	if (pool_start_threads(p, err) < 0) {
		pool_destroy(p);
		return NULL;
	}
	if (pool_wait_min(p, err) < 0) {
		sm_pool_free(p);
		return NULL;
	}
	return p;
}

static void pool_record_latency(struct sm_pool *p, uint64_t t0)
{
	uint64_t us = (pool_now_ns() - t0) / 1000u;

	p->lat_us[p->nlat++ % POOL_LATENCY_RING] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	p->acquires++;
}

/* An idle VM whose worker still runs, lock held; dead ones on the way are buried. */
static struct pool_slot *pool_take_idle(struct sm_pool *p)
{
	struct pool_slot *s;

	while ((s = list_pop_head(&p->idle))) {
		if (sm_vm_running(s->vm))
			return s;
		p->died++;
		pool_bury(p, s);
	}
	return NULL;
}

static void pool_fail_wait(struct sm_pool *p, uint64_t t0, sm_error **err)
{
	unsigned ms = (unsigned)((pool_now_ns() - t0) / 1000000u);

	p->acquire_timeouts++;
	if (pool_live(p) >= p->cfg.max)
		sm_error_set(err, SM_E_BUSY, 0, "pool of '%s': all %u VMs busy for %u ms", p->name, p->cfg.max, ms);
	else
		sm_error_set(err, SM_E_TIMEOUT, 0, "pool of '%s': no VM ready within %u ms (%u busy, %u starting)",
			     p->name, ms, p->busy.n, p->starting + p->resets + p->resetting.n);
}

sm_vm *sm_pool_acquire(sm_pool *p, sm_error **err)
{
	uint64_t t0 = pool_now_ns();
	uint64_t deadline = t0 + (uint64_t)p->cfg.acquire_timeout_ms * 1000000u;
	struct pool_slot *s = NULL;
	uint64_t gen;
	bool waited = false;

	pthread_mutex_lock(&p->lock);
	p->refs++; /* sm_pool_free() may run while we wait */
	gen = p->fail_gen;
	for (;;) {
		if (p->closing) {
			sm_error_set(err, SM_E_INVALID, 0, "pool of '%s': it is being freed", p->name);
			break;
		}
		if ((s = pool_take_idle(p)))
			break;
		if (p->fail_gen != gen || (p->retry_at_ns > pool_now_ns() && pool_live(p) < p->cfg.max &&
					   !p->starting && !p->resets && !p->resetting.n)) {
			/* the restore this acquire waits for failed, or the pool is backing off after one */
			sm_error_set(err, p->fail_code, 0, "pool of '%s': %s", p->name, p->fail_msg);
			break;
		}
		if (pool_now_ns() >= deadline) {
			pool_fail_wait(p, t0, err);
			break;
		}
		if (!waited)
			p->waits++;
		waited = true;
		p->waiting++;
		pthread_cond_signal(&p->work); /* below max: a thread restores one for us */
		struct timespec ts = pool_abstime(deadline);
		pthread_cond_timedwait(&p->ready, &p->lock, &ts);
		p->waiting--;
	}
	if (!s) {
		pool_unref_unlock(p);
		return NULL;
	}
	/* the reference taken above now belongs to the VM until its release */
	list_push_head(&p->busy, s);
	pool_record_latency(p, t0);
	pthread_mutex_unlock(&p->lock);
	return s->vm;
}

void sm_pool_release(sm_vm *vm)
{
	struct pool_slot *s;
	struct sm_pool *p;
	bool alive;

	if (!vm)
		return;
	if (vm->kind != &pool_vm_kind) {
		/* never freed here: the caller may still own it through sm_vm_start() */
		log_warn("sm_pool_release: VM %s does not belong to a pool", vm->id);
		return;
	}
	s = vm->kind_data;
	p = s->pool;
	alive = !pool_vm_dead(vm); /* on the owner's thread: the host's view only, no guest round trip */
	pthread_mutex_lock(&p->lock);
	list_remove(&p->busy, s);
	if (p->closing) {
		/* sm_pool_free() already stopped it (and said so): free it here, it is ours */
		pthread_mutex_unlock(&p->lock);
		sm_vm_free(pool_vm_disown(s));
		free(s);
		pthread_mutex_lock(&p->lock);
	} else if (!alive) {
		p->died++;
		pool_bury(p, s);
	} else if (p->cfg.keep_state_on_release) {
		pool_make_idle(p, s);
	} else {
		list_push_head(&p->resetting, s);
		pthread_cond_signal(&p->work);
	}
	pool_unref_unlock(p);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void sm_pool_get_stats(sm_pool *p, sm_pool_stats *out)
{
	uint32_t *lat = malloc(sizeof(p->lat_us));
	size_t n;

	pthread_mutex_lock(&p->lock);
	*out = (sm_pool_stats){
		.idle = p->idle.n,
		.busy = p->busy.n,
		.starting = p->starting + p->resets + p->resetting.n,
		.spawned = p->spawned,
		.evicted = p->evicted,
		.died = p->died,
		.waits = p->waits,
		.acquires = p->acquires,
		.acquire_timeouts = p->acquire_timeouts,
		.spare_restores = p->spare_restores,
	};
	n = p->nlat < POOL_LATENCY_RING ? (size_t)p->nlat : POOL_LATENCY_RING;
	if (lat)
		memcpy(lat, p->lat_us, n * sizeof(*lat));
	pthread_mutex_unlock(&p->lock);
	/* sorted outside the lock: acquires must not wait for stats */
	if (lat && n) {
		qsort(lat, n, sizeof(*lat), cmp_u32);
		out->acquire_p50_us = lat[(n - 1) / 2];
		out->acquire_p99_us = lat[(n - 1) * 99 / 100];
		out->acquire_max_us = lat[n - 1];
	}
	free(lat);
}

/*
 * Kills the workers still handed out, lock held, listing them in ids.
 * Only a signal: each struct is its owner's, who may be using it now;
 * sm_pool_release() frees it later.
 */
static unsigned pool_kill_busy(struct sm_pool *p, char *ids, size_t size)
{
	size_t len = 0;

	ids[0] = 0;
	for (struct pool_slot *s = p->busy.head; s; s = s->next) {
		if (len + VM_ID_LEN + 2 < size)
			len += (size_t)snprintf(ids + len, size - len, "%s%s", len ? " " : "", s->vm->id);
		kill(s->vm->pid, SIGKILL);
	}
	return p->busy.n;
}

/* Waits until the killed workers handed out have exited (their owners reap them). */
static void pool_wait_busy_exit(struct sm_pool *p)
{
	for (struct pool_slot *s = p->busy.head; s; s = s->next) {
		struct pollfd pfd = { .fd = s->vm->pidfd, .events = POLLIN };
		if (pfd.fd >= 0)
			poll(&pfd, 1, POOL_KILL_WAIT_MS);
	}
}

void sm_pool_free(sm_pool *p)
{
	struct pool_slot *s;
	char ids[1024];
	unsigned nbusy;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->closing = true;
	while ((s = list_pop_head(&p->idle)))
		list_push_head(&p->graveyard, s);
	nbusy = pool_kill_busy(p, ids, sizeof(ids));
	pthread_cond_broadcast(&p->work);
	pthread_cond_broadcast(&p->ready);
	pthread_mutex_unlock(&p->lock);
	if (nbusy)
		log_warn("pool of '%s' freed with %u VMs still acquired (%s): stopped; their owners must still "
			 "sm_pool_release() them", p->name, nbusy, ids);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_lock(&p->lock);
	p->nthreads = 0;
	spare_kill(&p->spare);
	pool_wait_busy_exit(p);
	pool_unref_unlock(p);
}


/*
 * virtio-mmio version 2 transport (virtio 1.1 section 4.2): the register
 * file a driver sees in the device's 4 KiB window, the status state
 * machine, feature negotiation and queue setup. Every value the driver
 * writes is checked here or at QueueReady; a violation fails the device
 * (DEVICE_NEEDS_RESET) instead of reaching the device model.
 */
#include "devices/virtio/virtio.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "base/snapshot.h"

#define STATUS_SETUP_BITS                                                                 \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |   \
	 VIRTIO_STATUS_DRIVER_OK)

static FILE *dev_log(const struct virtio_dev *d)
{
	return d->log ? d->log : stderr;
}

__attribute__((format(printf, 2, 3)))
static void dev_warn_once(struct virtio_dev *d, const char *fmt, ...)
{
	va_list ap;
	FILE *f = dev_log(d);

	if (__atomic_exchange_n(&d->bad_access_logged, true, __ATOMIC_RELAXED))
		return;
	fprintf(f, "virtio-%s: ", d->ops->name);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputs(" (further bad register accesses are not logged)\n", f);
	fflush(f);
}

static uint32_t status_get(const struct virtio_dev *d)
{
	return __atomic_load_n(&d->status, __ATOMIC_ACQUIRE);
}

static void irq_raise(struct virtio_dev *d, uint32_t why)
{
	uint64_t one = 1;

	__atomic_fetch_or(&d->interrupt_status, why, __ATOMIC_ACQ_REL);
	if (d->irq_fd >= 0 && write(d->irq_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, the interrupt is pending anyway. */
	}
}

static uint64_t features_offered(struct virtio_dev *d)
{
	uint64_t f = d->ops->features ? d->ops->features(d) : 0;

	return f | (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_EVENT_IDX) |
	       (1ULL << VIRTIO_F_INDIRECT_DESC);
}

static void queues_clear(struct virtio_dev *d)
{
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		memset(&d->vq[i], 0, sizeof(d->vq[i]));
		d->vq[i].mem = d->mem;
	}
}

void virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, void *priv,
		     const struct guest_mem *mem, uint64_t mmio_base, uint32_t gsi, int irq_fd)
{
	pthread_mutexattr_t attr;

	memset(d, 0, sizeof(*d));
	d->ops = ops;
	d->priv = priv;
	d->mem = mem;
	d->mmio_base = mmio_base;
	d->gsi = gsi;
	d->irq_fd = irq_fd;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		d->notify_fd[i] = -1;
	queues_clear(d);
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&d->lock, &attr);
	pthread_mutexattr_destroy(&attr);
}

void virtio_dev_destroy(struct virtio_dev *d)
{
	pthread_mutex_destroy(&d->lock);
}

static void transport_reset(struct virtio_dev *d)
{
	__atomic_store_n(&d->status, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&d->interrupt_status, 0, __ATOMIC_RELEASE);
	d->dev_features_sel = 0;
	d->drv_features_sel = 0;
	d->drv_features = 0;
	d->queue_sel = 0;
	queues_clear(d);
	if (d->ops->reset)
		d->ops->reset(d);
}

bool virtio_dev_live(const struct virtio_dev *d)
{
	uint32_t s = status_get(d);

	return (s & VIRTIO_STATUS_DRIVER_OK) &&
	       !(s & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

void virtio_dev_fail(struct virtio_dev *d, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&d->lock);
	uint32_t old = __atomic_fetch_or(&d->status, VIRTIO_STATUS_NEEDS_RESET, __ATOMIC_ACQ_REL);
	if (!(old & VIRTIO_STATUS_NEEDS_RESET) &&
	    !__atomic_exchange_n(&d->failed_logged, true, __ATOMIC_RELAXED)) {
		FILE *f = dev_log(d);
		fprintf(f, "virtio-%s: device failed, needs reset: ", d->ops->name);
		va_start(ap, fmt);
		vfprintf(f, fmt, ap);
		va_end(ap);
		fputc('\n', f);
		fflush(f);
	}
	/* The driver learns about NEEDS_RESET through a config interrupt. */
	if (!(old & VIRTIO_STATUS_NEEDS_RESET) && (old & VIRTIO_STATUS_DRIVER_OK))
		irq_raise(d, VIRTIO_INT_CONFIG);
	pthread_mutex_unlock(&d->lock);
}

void virtio_dev_notify_used(struct virtio_dev *d, uint16_t q)
{
	if (q >= d->ops->num_queues || (status_get(d) & VIRTIO_STATUS_NEEDS_RESET))
		return;
	pthread_mutex_lock(&d->lock);
	bool signal = virtq_should_signal(&d->vq[q]);
	pthread_mutex_unlock(&d->lock);
	if (signal)
		irq_raise(d, VIRTIO_INT_VRING);
}

void virtio_dev_config_changed(struct virtio_dev *d)
{
	__atomic_fetch_add(&d->config_generation, 1, __ATOMIC_ACQ_REL);
	irq_raise(d, VIRTIO_INT_CONFIG);
}

int virtio_dev_cmdline(const struct virtio_dev *d, char *buf, size_t len)
{
	int n = snprintf(buf, len, "virtio_mmio.device=4K@%#llx:%u",
			 (unsigned long long)d->mmio_base, d->gsi);

	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return n;
}

/* The queue QueueSel points at, or NULL if it names no queue of this device. */
static struct virtq *queue_selected(struct virtio_dev *d)
{
	if (d->queue_sel >= d->ops->num_queues)
		return NULL;
	return &d->vq[d->queue_sel];
}

static uint32_t reg_read(struct virtio_dev *d, uint64_t off)
{
	struct virtq *q = queue_selected(d);
	uint64_t f;

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return d->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		f = features_offered(d);
		if (d->dev_features_sel == 0)
			return (uint32_t)f;
		if (d->dev_features_sel == 1)
			return (uint32_t)(f >> 32);
		return 0;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return q ? VIRTQ_MAX_SIZE : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return __atomic_load_n(&d->interrupt_status, __ATOMIC_ACQUIRE);
	case VIRTIO_MMIO_STATUS:
		return status_get(d);
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return __atomic_load_n(&d->config_generation, __ATOMIC_ACQUIRE);
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		return 0xffffffff; /* no shared memory regions */
	default:
		dev_warn_once(d, "driver read write-only or unknown register %#llx",
			      (unsigned long long)off);
		return 0;
	}
}

static void features_write(struct virtio_dev *d, uint32_t v)
{
	if (status_get(d) & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK)) {
		dev_warn_once(d, "driver changed features after FEATURES_OK; ignored");
		return;
	}
	if (d->drv_features_sel == 0)
		d->drv_features = (d->drv_features & ~0xffffffffULL) | v;
	else if (d->drv_features_sel == 1)
		d->drv_features = (d->drv_features & 0xffffffffULL) | ((uint64_t)v << 32);
	else if (v)
		/* Nothing is offered there; FEATURES_OK will be refused. */
		d->drv_features |= 1ULL << 63;
}

static bool features_acceptable(struct virtio_dev *d)
{
	uint64_t offered = features_offered(d);

	return !(d->drv_features & ~offered) && (d->drv_features & (1ULL << VIRTIO_F_VERSION_1));
}

static int queue_enable(struct virtio_dev *d, struct virtq *q)
{
	if (!(status_get(d) & VIRTIO_STATUS_FEATURES_OK))
		return -EPROTO;
	q->mem = d->mem;
	q->event_idx = d->drv_features & (1ULL << VIRTIO_F_EVENT_IDX);
	q->indirect = d->drv_features & (1ULL << VIRTIO_F_INDIRECT_DESC);
	q->last_avail = 0;
	q->used_idx = 0;
	q->signalled_used = 0;
	q->signalled_valid = false;
	if (virtq_validate(q) < 0)
		return -EINVAL;
	q->ready = true;
	return 0;
}

static void queue_ready_write(struct virtio_dev *d, uint32_t v)
{
	struct virtq *q = queue_selected(d);

	if (!q) {
		dev_warn_once(d, "driver set QueueReady on queue %u, which does not exist", d->queue_sel);
		return;
	}
	if (v == 0) {
		q->ready = false;
		return;
	}
	if (q->ready)
		return;
	int rc = queue_enable(d, q);
	if (rc == -EPROTO)
		virtio_dev_fail(d, "queue %u enabled before FEATURES_OK", d->queue_sel);
	else if (rc < 0)
		virtio_dev_fail(d, "queue %u: size %u or ring addresses (desc %#llx, driver %#llx, "
				   "device %#llx) invalid",
				d->queue_sel, q->size, (unsigned long long)q->desc_gpa,
				(unsigned long long)q->avail_gpa, (unsigned long long)q->used_gpa);
}

/* Sets the low or high half of a ring address of the selected, not-ready queue. */
static void queue_addr_write(struct virtio_dev *d, uint64_t off, uint32_t v)
{
	struct virtq *q = queue_selected(d);
	uint64_t *field;

	if (!q || q->ready) {
		dev_warn_once(d, "driver wrote ring address %#llx of queue %u while %s",
			      (unsigned long long)off, d->queue_sel, q ? "ready" : "it does not exist");
		return;
	}
	switch (off & ~0xfULL) {
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		field = &q->desc_gpa;
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
		field = &q->avail_gpa;
		break;
	default:
		field = &q->used_gpa;
		break;
	}
	if (off & 4)
		*field = (*field & 0xffffffffULL) | ((uint64_t)v << 32);
	else
		*field = (*field & ~0xffffffffULL) | v;
}

static void queue_num_write(struct virtio_dev *d, uint32_t v)
{
	struct virtq *q = queue_selected(d);

	if (!q || q->ready) {
		dev_warn_once(d, "driver wrote QueueNum of queue %u while %s", d->queue_sel,
			      q ? "ready" : "it does not exist");
		return;
	}
	/* Out-of-range sizes are kept as 0 so QueueReady refuses them. */
	q->size = v <= VIRTQ_MAX_SIZE ? (uint16_t)v : 0;
}

void virtio_dev_requeue(struct virtio_dev *d, uint16_t q)
{
	uint64_t one = 1;

	if (q < VIRTIO_MAX_QUEUES && d->notify_fd[q] >= 0 &&
	    write(d->notify_fd[q], &one, sizeof(one)) < 0) {
		/* Saturated counter: a notification is pending already. */
	}
}

static void queue_notify_write(struct virtio_dev *d, uint32_t v)
{
	if (v >= d->ops->num_queues) {
		dev_warn_once(d, "driver notified queue %u, which does not exist", v);
		return;
	}
	virtio_dev_requeue(d, (uint16_t)v);
}

/*
 * Status only ever gains bits, in order: ACKNOWLEDGE, DRIVER, FEATURES_OK,
 * DRIVER_OK (section 3.1.1). Writing 0 resets. FEATURES_OK is refused
 * (left clear, as the spec asks) when the features are not acceptable.
 */
static void status_write(struct virtio_dev *d, uint32_t v)
{
	uint32_t old = status_get(d);

	if (v == 0) {
		transport_reset(d);
		return;
	}
	if (v & VIRTIO_STATUS_FAILED) {
		__atomic_fetch_or(&d->status, VIRTIO_STATUS_FAILED, __ATOMIC_ACQ_REL);
		return;
	}
	if (old & VIRTIO_STATUS_NEEDS_RESET)
		return;
	v &= STATUS_SETUP_BITS;
	uint32_t gained = v & ~old;
	if ((old & STATUS_SETUP_BITS) & ~v) {
		virtio_dev_fail(d, "driver cleared status bits (%#x -> %#x) without a reset", old, v);
		return;
	}
	if (((v & VIRTIO_STATUS_DRIVER) && !(v & VIRTIO_STATUS_ACKNOWLEDGE)) ||
	    ((v & VIRTIO_STATUS_FEATURES_OK) && !(v & VIRTIO_STATUS_DRIVER)) ||
	    ((v & VIRTIO_STATUS_DRIVER_OK) && !(v & VIRTIO_STATUS_FEATURES_OK))) {
		virtio_dev_fail(d, "driver set status %#x out of order", v);
		return;
	}
	if ((gained & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(d)) {
		dev_warn_once(d, "driver asked for features %#llx; offered %#llx (VERSION_1 required)",
			      (unsigned long long)d->drv_features,
			      (unsigned long long)features_offered(d));
		v &= ~(uint32_t)(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	}
	__atomic_store_n(&d->status, v, __ATOMIC_RELEASE);
	if ((gained & VIRTIO_STATUS_DRIVER_OK) && (v & VIRTIO_STATUS_DRIVER_OK) && d->ops->activate) {
		int rc = d->ops->activate(d);
		if (rc < 0)
			virtio_dev_fail(d, "activation failed: %s", strerror(-rc));
	}
}

static void reg_write(struct virtio_dev *d, uint64_t off, uint32_t v)
{
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		d->dev_features_sel = v;
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		features_write(d, v);
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		d->drv_features_sel = v;
		return;
	case VIRTIO_MMIO_QUEUE_SEL:
		d->queue_sel = v;
		return;
	case VIRTIO_MMIO_QUEUE_NUM:
		queue_num_write(d, v);
		return;
	case VIRTIO_MMIO_QUEUE_READY:
		queue_ready_write(d, v);
		return;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		queue_notify_write(d, v);
		return;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		__atomic_fetch_and(&d->interrupt_status, ~v, __ATOMIC_ACQ_REL);
		return;
	case VIRTIO_MMIO_STATUS:
		status_write(d, v);
		return;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		queue_addr_write(d, off, v);
		return;
	case VIRTIO_MMIO_SHM_SEL:
		return;
	default:
		dev_warn_once(d, "driver wrote read-only or unknown register %#llx",
			      (unsigned long long)off);
	}
}

/* Config space: byte, word, dword or qword accesses inside config_size only. */
static bool config_access_ok(struct virtio_dev *d, uint64_t off, uint32_t len)
{
	if (len != 1 && len != 2 && len != 4 && len != 8)
		return false;
	return off < d->ops->config_size && len <= d->ops->config_size - off;
}

void virtio_mmio_read(struct virtio_dev *d, uint64_t off, void *data, uint32_t len)
{
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t coff = off - VIRTIO_MMIO_CONFIG;
		memset(data, 0, len);
		if (!config_access_ok(d, coff, len) || !d->ops->config_read) {
			dev_warn_once(d, "driver read %u bytes at config offset %#llx", len,
				      (unsigned long long)coff);
			return;
		}
		pthread_mutex_lock(&d->lock);
		d->ops->config_read(d, (uint32_t)coff, data, len);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (len != 4 || (off & 3)) {
		dev_warn_once(d, "driver read register %#llx with width %u", (unsigned long long)off,
			      len);
		memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&d->lock);
	uint32_t v = reg_read(d, off);
	pthread_mutex_unlock(&d->lock);
	memcpy(data, &v, 4);
}

void virtio_mmio_write(struct virtio_dev *d, uint64_t off, const void *data, uint32_t len)
{
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t coff = off - VIRTIO_MMIO_CONFIG;
		if (!config_access_ok(d, coff, len) || !d->ops->config_write) {
			dev_warn_once(d, "driver wrote %u bytes at config offset %#llx", len,
				      (unsigned long long)coff);
			return;
		}
		pthread_mutex_lock(&d->lock);
		d->ops->config_write(d, (uint32_t)coff, data, len);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (len != 4 || (off & 3)) {
		dev_warn_once(d, "driver wrote register %#llx with width %u", (unsigned long long)off,
			      len);
		return;
	}
	uint32_t v;
	memcpy(&v, data, 4);
	pthread_mutex_lock(&d->lock);
	reg_write(d, off, v);
	pthread_mutex_unlock(&d->lock);
}

/* ---- snapshot ------------------------------------------------------------------ */

#define STATUS_KNOWN_BITS (STATUS_SETUP_BITS | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)

static void queue_save(const struct virtq *q, struct snap_writer *w)
{
	snap_put_u16(w, q->size);
	snap_put_u8(w, q->ready);
	snap_put_u64(w, q->desc_gpa);
	snap_put_u64(w, q->avail_gpa);
	snap_put_u64(w, q->used_gpa);
	snap_put_u16(w, q->last_avail);
	snap_put_u16(w, q->used_idx);
	snap_put_u16(w, q->signalled_used);
	snap_put_u8(w, q->signalled_valid);
}

void virtio_dev_save(struct virtio_dev *d, struct snap_writer *w)
{
	pthread_mutex_lock(&d->lock);
	snap_put_u32(w, d->ops->device_id);
	snap_put_u32(w, d->ops->state_version);
	snap_put_u32(w, status_get(d));
	snap_put_u32(w, d->dev_features_sel);
	snap_put_u32(w, d->drv_features_sel);
	snap_put_u64(w, d->drv_features);
	snap_put_u32(w, d->queue_sel);
	snap_put_u32(w, __atomic_load_n(&d->interrupt_status, __ATOMIC_ACQUIRE));
	snap_put_u32(w, __atomic_load_n(&d->config_generation, __ATOMIC_ACQUIRE));
	snap_put_u16(w, d->ops->num_queues);
	for (uint16_t i = 0; i < d->ops->num_queues; i++)
		queue_save(&d->vq[i], w);
	if (d->ops->save) {
		int rc = d->ops->save(d, w);
		if (rc < 0)
			snap_writer_fail(w, rc, "virtio-%s: %s", d->ops->name, strerror(-rc));
	}
	pthread_mutex_unlock(&d->lock);
}

/* One queue's fields into q, checked against guest memory and the features. */
static int queue_load(struct virtio_dev *d, uint16_t i, struct virtq *q, struct snap_reader *r)
{
	uint8_t ready, valid;

	if (snap_get_u16(r, &q->size) < 0 || snap_get_u8(r, &ready) < 0 ||
	    snap_get_u64(r, &q->desc_gpa) < 0 || snap_get_u64(r, &q->avail_gpa) < 0 ||
	    snap_get_u64(r, &q->used_gpa) < 0 || snap_get_u16(r, &q->last_avail) < 0 ||
	    snap_get_u16(r, &q->used_idx) < 0 || snap_get_u16(r, &q->signalled_used) < 0 ||
	    snap_get_u8(r, &valid) < 0)
		return -EBADMSG;
	q->mem = d->mem;
	q->ready = ready != 0;
	q->signalled_valid = valid != 0;
	q->event_idx = d->drv_features & (1ULL << VIRTIO_F_EVENT_IDX);
	q->indirect = d->drv_features & (1ULL << VIRTIO_F_INDIRECT_DESC);
	if (ready > 1 || valid > 1 || q->size > VIRTQ_MAX_SIZE)
		return snap_reader_fail(r, "virtio-%s queue %u: malformed (size %u)", d->ops->name, i,
					q->size);
	if (!q->ready)
		return 0;
	if (!(status_get(d) & VIRTIO_STATUS_FEATURES_OK) || virtq_validate(q) < 0)
		return snap_reader_fail(r, "virtio-%s queue %u: size %u or rings (%#llx, %#llx, %#llx) "
					"do not fit guest RAM", d->ops->name, i, q->size,
					(unsigned long long)q->desc_gpa,
					(unsigned long long)q->avail_gpa,
					(unsigned long long)q->used_gpa);
	/* Chains consumed but not yet returned: never more than the ring holds. */
	if ((uint16_t)(q->last_avail - q->used_idx) > q->size)
		return snap_reader_fail(r, "virtio-%s queue %u: %u chains in flight in a queue of %u",
					d->ops->name, i, (uint16_t)(q->last_avail - q->used_idx),
					q->size);
	return 0;
}

static int transport_load(struct virtio_dev *d, struct snap_reader *r)
{
	uint32_t id, version, status, irq, gen;
	uint16_t nq;

	if (snap_get_u32(r, &id) < 0 || snap_get_u32(r, &version) < 0 || snap_get_u32(r, &status) < 0 ||
	    snap_get_u32(r, &d->dev_features_sel) < 0 || snap_get_u32(r, &d->drv_features_sel) < 0 ||
	    snap_get_u64(r, &d->drv_features) < 0 || snap_get_u32(r, &d->queue_sel) < 0 ||
	    snap_get_u32(r, &irq) < 0 || snap_get_u32(r, &gen) < 0 || snap_get_u16(r, &nq) < 0)
		return -EBADMSG;
	if (id != d->ops->device_id || nq != d->ops->num_queues)
		return snap_reader_fail(r, "holds virtio device %u with %u queues; slot has virtio-%s "
					"(device %u, %u queues)", id, nq, d->ops->name,
					d->ops->device_id, d->ops->num_queues);
	/* The model's data after the queues is laid out for its version only. */
	if (version != d->ops->state_version)
		return snap_reader_fail(r, "virtio-%s: state version %u; this device saves version %u",
					d->ops->name, version, d->ops->state_version);
	if (status & ~STATUS_KNOWN_BITS || irq & ~(VIRTIO_INT_VRING | VIRTIO_INT_CONFIG))
		return snap_reader_fail(r, "virtio-%s: status %#x or interrupt status %#x invalid",
					d->ops->name, status, irq);
	if ((status & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(d))
		return snap_reader_fail(r, "virtio-%s: driver features %#llx; this device offers %#llx",
					d->ops->name, (unsigned long long)d->drv_features,
					(unsigned long long)features_offered(d));
	__atomic_store_n(&d->status, status, __ATOMIC_RELEASE);
	__atomic_store_n(&d->interrupt_status, irq, __ATOMIC_RELEASE);
	__atomic_store_n(&d->config_generation, gen, __ATOMIC_RELEASE);
	for (uint16_t i = 0; i < nq; i++)
		if (queue_load(d, i, &d->vq[i], r) < 0)
			return -EINVAL;
	return 0;
}

int virtio_dev_restore(struct virtio_dev *d, struct snap_reader *r)
{
	int rc;

	pthread_mutex_lock(&d->lock);
	/* Whatever this device did since (a reset in place) is forgotten first. */
	transport_reset(d);
	d->failed_logged = false;
	rc = transport_load(d, r);
	if (rc == 0 && d->ops->restore)
		rc = d->ops->restore(d, r);
	if (rc < 0)
		transport_reset(d);
	pthread_mutex_unlock(&d->lock);
	return rc < 0 ? -EINVAL : 0;
}

void virtio_dev_restored(struct virtio_dev *d)
{
	/* A chain the guest made available just before the capture may have
	 * had its kick still in the ioeventfd: look at every live queue. */
	for (uint16_t q = 0; q < d->ops->num_queues; q++)
		if (d->vq[q].ready)
			virtio_dev_requeue(d, q);
	/* An interrupt raised before the capture and not yet acknowledged:
	 * raise it once more; the driver reads InterruptStatus either way. */
	uint32_t pending = __atomic_load_n(&d->interrupt_status, __ATOMIC_ACQUIRE);
	if (pending)
		irq_raise(d, pending);
}

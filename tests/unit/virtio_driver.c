#include "virtio_driver.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void vdrv_die(const char *what)
{
	fprintf(stderr, "virtio_driver: %s: %s\n", what, strerror(errno));
	abort();
}

static void vdrv_mem_map(struct vdrv *v, uint64_t size, int flags, int fd)
{
	memset(v, 0, sizeof(*v));
	v->irq_fd = -1;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		v->notify_fd[i] = -1;
	v->memfd = fd;
	v->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (v->ram == MAP_FAILED)
		vdrv_die("mmap");
	v->ram_size = size;
	v->mem.nregions = 1;
	v->mem.ram_size = size;
	v->mem.fd = v->memfd;
	v->mem.regions[0] = (struct guest_region){ .gpa = VDRV_RAM_GPA, .size = size, .hva = v->ram };
	v->brk = VDRV_RAM_GPA;
}

void vdrv_mem_init(struct vdrv *v, uint64_t size, bool memfd)
{
	int fd = -1;

	if (!memfd) {
		vdrv_mem_map(v, size, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		return;
	}
	fd = memfd_create("vdrv-ram", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		vdrv_die("memfd");
	vdrv_mem_map(v, size, MAP_SHARED, fd);
}

void vdrv_mem_init_private(struct vdrv *v, int fd, uint64_t size)
{
	vdrv_mem_map(v, size, MAP_PRIVATE, fd);
}

static void *vdrv_loop_main(void *arg)
{
	struct vdrv *v = arg;

	evloop_run(v->loop);
	return NULL;
}

void vdrv_loop_start(struct vdrv *v)
{
	v->loop = evloop_new();
	if (!v->loop)
		vdrv_die("evloop_new");
	if (pthread_create(&v->loop_thread, NULL, vdrv_loop_main, v) != 0)
		vdrv_die("pthread_create");
	v->loop_running = true;
}

void vdrv_loop_stop(struct vdrv *v)
{
	if (!v->loop_running)
		return;
	evloop_stop(v->loop);
	pthread_join(v->loop_thread, NULL);
	v->loop_running = false;
}

void vdrv_fini(struct vdrv *v)
{
	vdrv_loop_stop(v);
	vdrv_detach(v);
	if (v->loop)
		evloop_free(v->loop);
	munmap(v->ram, v->ram_size);
	if (v->memfd >= 0)
		close(v->memfd);
	if (v->irq_fd >= 0)
		close(v->irq_fd);
	v->loop = NULL;
	v->irq_fd = v->memfd = -1;
}

uint32_t vdrv_reg_read(struct vdrv *v, uint64_t off)
{
	uint32_t val;

	virtio_mmio_read(v->dev, off, &val, 4);
	return val;
}

void vdrv_reg_write(struct vdrv *v, uint64_t off, uint32_t val)
{
	virtio_mmio_write(v->dev, off, &val, 4);
}

uint32_t vdrv_status(struct vdrv *v) { return vdrv_reg_read(v, VIRTIO_MMIO_STATUS); }

bool vdrv_needs_reset(struct vdrv *v) { return vdrv_status(v) & VIRTIO_STATUS_NEEDS_RESET; }

uint64_t vdrv_alloc(struct vdrv *v, uint64_t len)
{
	uint64_t gpa = (v->brk + 15) & ~15ull;

	if (gpa + len > VDRV_RAM_GPA + v->ram_size) {
		errno = ENOMEM;
		vdrv_die("guest memory exhausted");
	}
	v->brk = gpa + len;
	return gpa;
}

void vdrv_free_all(struct vdrv *v) { v->brk = VDRV_RAM_GPA; }

uint64_t vdrv_alloc_pages(struct vdrv *v, uint64_t len)
{
	v->brk = (v->brk + 4095) & ~4095ull;
	return vdrv_alloc(v, (len + 4095) & ~4095ull);
}

void *vdrv_ptr(struct vdrv *v, uint64_t gpa) { return v->ram + (gpa - VDRV_RAM_GPA); }

/* Like the VMM: a QueueNotify becomes an eventfd the loop turns into queue_notify. */

static void vdrv_on_notify(void *opaque, uint32_t events)
{
	struct vdrv_notify *n = opaque;
	uint64_t cnt;

	if (read(n->v->notify_fd[n->q], &cnt, sizeof(cnt)) < 0)
		return;
	n->v->dev->ops->queue_notify(n->v->dev, n->q);
}

static void vdrv_wire(struct vdrv *v, struct virtio_dev *dev)
{
	struct vdrv_notify *slots = v->notify;

	v->dev = dev;
	v->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (v->irq_fd < 0)
		vdrv_die("eventfd");
	dev->irq_fd = v->irq_fd;
	for (uint16_t q = 0; q < dev->ops->num_queues; q++) {
		v->notify_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (v->notify_fd[q] < 0)
			vdrv_die("eventfd");
		slots[q] = (struct vdrv_notify){ v, q };
		if (v->loop && evloop_add(v->loop, v->notify_fd[q], EPOLLIN, vdrv_on_notify, &slots[q]) < 0)
			vdrv_die("evloop_add");
		dev->notify_fd[q] = v->notify_fd[q];
	}
}

void vdrv_detach(struct vdrv *v)
{
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (v->notify_fd[q] < 0)
			continue;
		if (v->loop)
			evloop_del(v->loop, v->notify_fd[q]);
		close(v->notify_fd[q]);
		v->notify_fd[q] = -1;
		if (v->dev)
			v->dev->notify_fd[q] = -1;
	}
}

static void vdrv_queue_setup(struct vdrv *v, unsigned qi)
{
	struct vdrv_q *q = &v->q[qi];

	memset(q, 0, sizeof(*q));
	q->size = VDRV_QSIZE;
	q->desc = vdrv_alloc(v, 16ull * q->size);
	q->avail = vdrv_alloc(v, 6 + 2ull * q->size);
	q->used = vdrv_alloc(v, 6 + 8ull * q->size);
	/* A driver starts from zeroed rings, whatever the memory held before. */
	memset(vdrv_ptr(v, q->desc), 0, 16ull * q->size);
	memset(vdrv_ptr(v, q->avail), 0, 6 + 2ull * q->size);
	memset(vdrv_ptr(v, q->used), 0, 6 + 8ull * q->size);
	/* A circular free list starting at a different place on each queue, so
	 * a device that mixes up chains of two queues returns ids that are not
	 * heads here. */
	for (uint16_t i = 0; i < q->size; i++)
		q->next[i] = (uint16_t)((i + 1) % q->size);
	q->free_head = (uint16_t)((qi * 97u) % q->size);
	q->nfree = q->size;
	vdrv_reg_write(v, VIRTIO_MMIO_QUEUE_SEL, qi);
	vdrv_reg_write(v, VIRTIO_MMIO_QUEUE_NUM, q->size);
	vdrv_reg_write(v, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)q->desc);
	vdrv_reg_write(v, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(q->desc >> 32));
	vdrv_reg_write(v, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)q->avail);
	vdrv_reg_write(v, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(q->avail >> 32));
	vdrv_reg_write(v, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)q->used);
	vdrv_reg_write(v, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(q->used >> 32));
	vdrv_reg_write(v, VIRTIO_MMIO_QUEUE_READY, 1);
	q->ready = vdrv_reg_read(v, VIRTIO_MMIO_QUEUE_READY) == 1;
}

#define VDRV_SETUP_STATUS (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK)

uint32_t vdrv_attach_finish(struct vdrv *v)
{
	vdrv_reg_write(v, VIRTIO_MMIO_STATUS, VDRV_SETUP_STATUS | VIRTIO_STATUS_DRIVER_OK);
	return vdrv_status(v);
}

uint32_t vdrv_attach(struct vdrv *v, struct virtio_dev *dev, uint64_t want, unsigned nqueues)
{
	vdrv_attach_begin(v, dev, want, nqueues);
	return vdrv_attach_finish(v);
}

void vdrv_attach_begin(struct vdrv *v, struct virtio_dev *dev, uint64_t want, unsigned nqueues)
{
	uint64_t offered;
	uint32_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	if (v->dev != dev)
		vdrv_wire(v, dev);
	vdrv_reg_write(v, VIRTIO_MMIO_STATUS, 0);
	vdrv_reg_write(v, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	vdrv_reg_write(v, VIRTIO_MMIO_STATUS, st);
	vdrv_reg_write(v, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	offered = vdrv_reg_read(v, VIRTIO_MMIO_DEVICE_FEATURES);
	vdrv_reg_write(v, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	offered |= (uint64_t)vdrv_reg_read(v, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	v->features = (want & offered) | (1ull << VIRTIO_F_VERSION_1);
	vdrv_reg_write(v, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	vdrv_reg_write(v, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)v->features);
	vdrv_reg_write(v, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	vdrv_reg_write(v, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(v->features >> 32));
	vdrv_reg_write(v, VIRTIO_MMIO_STATUS, VDRV_SETUP_STATUS);
	for (unsigned q = 0; q < nqueues; q++)
		vdrv_queue_setup(v, q);
}

static void vdrv_store_desc(struct vdrv *v, struct vdrv_q *q, uint16_t i, uint64_t addr, uint32_t len,
			    uint16_t flags, uint16_t next)
{
	uint8_t *d = vdrv_ptr(v, q->desc + 16ull * i);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

void vdrv_set_desc(struct vdrv *v, unsigned qi, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		   uint16_t next)
{
	vdrv_store_desc(v, &v->q[qi], i, addr, len, flags, next);
}

void vdrv_publish(struct vdrv *v, unsigned qi, uint16_t head)
{
	struct vdrv_q *q = &v->q[qi];
	uint16_t *ring = vdrv_ptr(v, q->avail + 4);
	uint16_t *idx = vdrv_ptr(v, q->avail + 2);

	ring[q->avail_idx % q->size] = head;
	q->avail_idx++;
	/* The ring entry must be visible before the index, as virtio_wmb() does. */
	__atomic_store_n(idx, q->avail_idx, __ATOMIC_RELEASE);
}

int vdrv_add(struct vdrv *v, unsigned qi, const struct vdrv_buf *b, unsigned n)
{
	struct vdrv_q *q = &v->q[qi];
	uint16_t head, i;

	if (n == 0 || q->nfree < n)
		return -1;
	head = i = q->free_head;
	for (unsigned k = 0; k < n; k++) {
		uint16_t next = q->next[i];
		uint16_t flags = (b[k].write ? VIRTQ_DESC_F_WRITE : 0) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
		vdrv_store_desc(v, q, i, b[k].gpa, b[k].len, flags, next);
		i = next;
	}
	q->free_head = i;
	q->nfree = (uint16_t)(q->nfree - n);
	q->chain_len[head] = (uint16_t)n;
	vdrv_publish(v, qi, head);
	return head;
}

uint64_t vdrv_add_inbuf(struct vdrv *v, unsigned qi, uint32_t len)
{
	struct vdrv_buf b = { .gpa = vdrv_alloc(v, len), .len = len, .write = true };

	return vdrv_add(v, qi, &b, 1) < 0 ? 0 : b.gpa;
}

int vdrv_add_outbuf(struct vdrv *v, unsigned qi, const void *data, uint32_t len)
{
	struct vdrv_buf b = { .gpa = vdrv_alloc(v, len), .len = len };

	memcpy(vdrv_ptr(v, b.gpa), data, len);
	return vdrv_add(v, qi, &b, 1);
}

void vdrv_kick(struct vdrv *v, unsigned qi)
{
	struct vdrv_q *q = &v->q[qi];
	uint16_t old = q->kicked_idx, now = q->avail_idx;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (v->features & (1ull << VIRTIO_F_EVENT_IDX)) {
		uint16_t event = __atomic_load_n((uint16_t *)vdrv_ptr(v, q->used + 4 + 8ull * q->size),
						 __ATOMIC_ACQUIRE);
		/* vring_need_event(): kick only if the device asked for this range. */
		if ((uint16_t)(now - event - 1) >= (uint16_t)(now - old))
			return;
	}
	q->kicked_idx = now;
	vdrv_reg_write(v, VIRTIO_MMIO_QUEUE_NOTIFY, qi);
	/* The transport forwards it to notify_fd like KVM's ioeventfd would. */
}

int vdrv_used(struct vdrv *v, unsigned qi, uint32_t *len, uint64_t *gpa)
{
	struct vdrv_q *q = &v->q[qi];
	uint16_t idx = __atomic_load_n((uint16_t *)vdrv_ptr(v, q->used + 2), __ATOMIC_ACQUIRE);
	uint32_t *elem;
	uint16_t head, i;

	if (idx == q->last_used)
		return -1;
	elem = vdrv_ptr(v, q->used + 4 + 8ull * (q->last_used % q->size));
	head = (uint16_t)elem[0];
	if (elem[0] >= q->size || !q->chain_len[head]) {
		if (v->lenient) {
			q->last_used++;
			return -1;
		}
		/* What Linux reports as "id %u is not a head!": a device bug. */
		fprintf(stderr, "virtio_driver: queue %u: used id %u is not an outstanding head\n", qi,
			elem[0]);
		abort();
	}
	if (len)
		*len = elem[1];
	q->last_used++;
	/* Ask for an interrupt at the next one, as Linux does with EVENT_IDX. */
	__atomic_store_n((uint16_t *)vdrv_ptr(v, q->avail + 4 + 2ull * q->size), q->last_used,
			 __ATOMIC_RELEASE);
	if (gpa) {
		uint8_t *d = vdrv_ptr(v, q->desc + 16ull * head);
		memcpy(gpa, d, 8);
	}
	/* Return the chain's descriptors to the free list. */
	i = head;
	for (uint16_t k = 1; k < q->chain_len[head]; k++) {
		uint16_t next;
		memcpy(&next, (uint8_t *)vdrv_ptr(v, q->desc + 16ull * i) + 14, 2);
		i = next;
	}
	q->next[i] = q->free_head;
	q->free_head = head;
	q->nfree = (uint16_t)(q->nfree + q->chain_len[head]);
	q->chain_len[head] = 0;
	return head;
}

static int64_t vdrv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vdrv_wait_used(struct vdrv *v, unsigned qi, uint32_t *len, uint64_t *gpa, int timeout_ms)
{
	struct pollfd p = { .fd = v->irq_fd, .events = POLLIN };
	int64_t deadline = vdrv_now_ms() + timeout_ms;
	uint64_t n;

	for (;;) {
		int head = vdrv_used(v, qi, len, gpa);
		if (head >= 0 || vdrv_now_ms() >= deadline)
			return head;
		/* Sleep until an interrupt (or 5 ms: other queues share it). */
		if (poll(&p, 1, 5) == 1 && read(v->irq_fd, &n, sizeof(n)) < 0) {
			/* EAGAIN: someone else took it */
		}
	}
}

uint64_t vdrv_irqs(struct vdrv *v)
{
	uint64_t n = 0;

	if (read(v->irq_fd, &n, sizeof(n)) < 0)
		return 0;
	return n;
}

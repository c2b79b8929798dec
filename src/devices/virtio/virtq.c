/*
 * Split virtqueue, device side. See virtq.h for the contract.
 *
 * The rings live in guest memory that another vCPU may be rewriting while
 * we read it, so every ring field is loaded exactly once (atomically for
 * the 16-bit indices) and checked in its local copy.
 */
#include "devices/virtio/virtq.h"

#include <errno.h>
#include <string.h>

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

#define VRING_AVAIL_F_NO_INTERRUPT 1

static uint64_t desc_bytes(uint16_t size) { return 16ull * size; }
static uint64_t avail_bytes(uint16_t size) { return 6ull + 2ull * size; }
static uint64_t used_bytes(uint16_t size) { return 6ull + 8ull * size; }

static uint16_t *avail_field(const struct virtq *q, uint64_t off)
{
	return guest_mem_ptr(q->mem, q->avail_gpa + off, 2);
}

static uint16_t load16(const uint16_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static void store16(uint16_t *p, uint16_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

int virtq_validate(const struct virtq *q)
{
	if (!q->mem || q->size == 0 || q->size > VIRTQ_MAX_SIZE || (q->size & (q->size - 1)))
		return -EINVAL;
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return -EINVAL;
	if (!guest_mem_valid(q->mem, q->desc_gpa, desc_bytes(q->size)) ||
	    !guest_mem_valid(q->mem, q->avail_gpa, avail_bytes(q->size)) ||
	    !guest_mem_valid(q->mem, q->used_gpa, used_bytes(q->size)))
		return -EINVAL;
	return 0;
}

/* Number of chains the driver has made available beyond last_avail. */
static int avail_pending(struct virtq *q, uint16_t *pending)
{
	uint16_t *idx_p;
	uint16_t idx;

	if (!q->ready)
		return -EINVAL;
	idx_p = avail_field(q, 2);
	if (!idx_p)
		return -EINVAL;
	idx = load16(idx_p);
	/* Ring entries written before idx must be visible after we read idx. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	*pending = (uint16_t)(idx - q->last_avail);
	if (*pending > q->size)
		return -EINVAL;
	return 0;
}

int virtq_has_avail(struct virtq *q)
{
	uint16_t pending;
	int rc = avail_pending(q, &pending);

	return rc < 0 ? rc : pending != 0;
}

static int read_desc(const struct virtq *q, uint64_t table, uint16_t idx, struct vring_desc *d)
{
	const void *p = guest_mem_ptr(q->mem, table + 16ull * idx, sizeof(*d));

	if (!p)
		return -EINVAL;
	memcpy(d, p, sizeof(*d));
	/* Make sure the copy is a single snapshot the guest cannot alter later. */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	return 0;
}

static int chain_add(const struct virtq *q, struct virtq_chain *c, const struct vring_desc *d)
{
	uint8_t *hva;
	unsigned n = c->n_out + c->n_in;

	if (d->len == 0)
		return 0; /* nothing to read or write; its address is irrelevant */
	if (n >= VIRTQ_MAX_CHAIN)
		return -EINVAL;
	hva = guest_mem_ptr(q->mem, d->addr, d->len);
	if (!hva)
		return -EINVAL;
	if (d->flags & VIRTQ_DESC_F_WRITE) {
		c->n_in++;
		c->in_len += d->len;
	} else {
		if (c->n_in)
			return -EINVAL; /* readable after writable */
		c->n_out++;
		c->out_len += d->len;
	}
	c->seg[n].hva = hva;
	c->seg[n].len = d->len;
	return 0;
}

static int chain_walk(const struct virtq *q, uint16_t head, struct virtq_chain *c)
{
	uint64_t table = q->desc_gpa;
	uint32_t table_size = q->size;
	uint32_t visited = 0, total = 0;
	bool in_indirect = false;
	uint16_t idx = head;
	struct vring_desc d;

	for (;;) {
		if (idx >= table_size || ++visited > table_size || ++total > VIRTQ_MAX_CHAIN)
			return -EINVAL; /* out of range, a loop, or too long */
		if (read_desc(q, table, idx, &d) < 0)
			return -EINVAL;
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!q->indirect || in_indirect || (d.flags & VIRTQ_DESC_F_NEXT))
				return -EINVAL;
			if (d.len == 0 || d.len % 16 || d.len / 16 > VIRTQ_MAX_CHAIN || (d.addr & 15))
				return -EINVAL;
			if (!guest_mem_valid(q->mem, d.addr, d.len))
				return -EINVAL;
			table = d.addr;
			table_size = d.len / 16;
			in_indirect = true;
			visited = 0;
			idx = 0;
			continue;
		}
		if (chain_add(q, c, &d) < 0)
			return -EINVAL;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		idx = d.next;
	}
}

int virtq_pop(struct virtq *q, struct virtq_chain *c)
{
	uint16_t pending, head;
	uint16_t *slot;
	int rc = avail_pending(q, &pending);

	if (rc < 0 || pending == 0)
		return rc;
	slot = avail_field(q, 4 + 2ull * (q->last_avail % q->size));
	if (!slot)
		return -EINVAL;
	head = load16(slot);
	if (head >= q->size)
		return -EINVAL;
	c->head = head;
	c->n_out = c->n_in = 0;
	c->out_len = c->in_len = 0;
	rc = chain_walk(q, head, c);
	if (rc < 0)
		return rc;
	q->last_avail++;
	return 1;
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	uint32_t *elem;
	uint16_t *idx_p;

	if (!q->ready || head >= q->size)
		return -EINVAL;
	elem = guest_mem_ptr(q->mem, q->used_gpa + 4 + 8ull * (q->used_idx % q->size), 8);
	idx_p = guest_mem_ptr(q->mem, q->used_gpa + 2, 2);
	if (!elem || !idx_p)
		return -EINVAL;
	__atomic_store_n(&elem[0], (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n(&elem[1], written, __ATOMIC_RELAXED);
	q->used_idx++;
	/* The element must be visible before the index that publishes it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	store16(idx_p, q->used_idx);
	return 0;
}

bool virtq_should_signal(struct virtq *q)
{
	uint16_t old, used_event, *p;
	bool need;

	if (!q->ready)
		return false;
	/* Our used->idx store must be ordered before reading the driver's hints. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx) {
		p = avail_field(q, 0);
		return p && !(load16(p) & VRING_AVAIL_F_NO_INTERRUPT);
	}
	p = avail_field(q, 4 + 2ull * q->size);
	if (!p)
		return false;
	used_event = load16(p);
	old = q->signalled_used;
	need = !q->signalled_valid ||
	       (uint16_t)(q->used_idx - used_event - 1) < (uint16_t)(q->used_idx - old);
	q->signalled_used = q->used_idx;
	q->signalled_valid = true;
	return need;
}

/* used->avail_event: the driver kicks once it adds past idx. */
static int avail_event_store(struct virtq *q, uint16_t idx)
{
	uint16_t *p;

	if (!q->ready || !q->event_idx)
		return 0;
	p = guest_mem_ptr(q->mem, q->used_gpa + 4 + 8ull * q->size, 2);
	if (!p)
		return -EINVAL;
	store16(p, idx);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return 0;
}

void virtq_set_avail_event(struct virtq *q)
{
	avail_event_store(q, q->last_avail);
}

int virtq_watch_avail(struct virtq *q, uint16_t *idx)
{
	uint16_t pending;
	int rc = avail_pending(q, &pending);

	if (rc < 0)
		return rc;
	*idx = (uint16_t)(q->last_avail + pending);
	return avail_event_store(q, *idx);
}

uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len)
{
	uint8_t *out = dst;
	uint64_t done = 0;

	for (unsigned i = 0; i < c->n_out && done < len; i++) {
		uint64_t seg_len = c->seg[i].len;
		if (off >= seg_len) {
			off -= seg_len;
			continue;
		}
		uint64_t n = seg_len - off;
		if (n > len - done)
			n = len - done;
		memcpy(out + done, c->seg[i].hva + off, n);
		done += n;
		off = 0;
	}
	return done;
}

uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src, uint64_t len)
{
	const uint8_t *in = src;
	uint64_t done = 0;

	for (unsigned i = c->n_out; i < (unsigned)c->n_out + c->n_in && done < len; i++) {
		uint64_t seg_len = c->seg[i].len;
		if (off >= seg_len) {
			off -= seg_len;
			continue;
		}
		uint64_t n = seg_len - off;
		if (n > len - done)
			n = len - done;
		memcpy(c->seg[i].hva + off, in + done, n);
		done += n;
		off = 0;
	}
	return done;
}

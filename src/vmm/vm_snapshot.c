#include "vmm/vm_snapshot.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/arch.h"
#include "vmm/snapshot_memory.h"

#define MCHN_VERSION 1
/* 2: the device model's state version follows the device id */
#define VIRT_VERSION 2
#define UART_VERSION 1

static const char *device_name(uint32_t id)
{
	switch (id) {
	case VIRTIO_ID_NET: return "net";
	case VIRTIO_ID_BLOCK: return "blk";
	case VIRTIO_ID_RNG: return "rng";
	case VIRTIO_ID_BALLOON: return "balloon";
	case VIRTIO_ID_VSOCK: return "vsock";
	default: return "?";
	}
}

/* ---- MCHN: the machine ---------------------------------------------------------- */

static void machine_describe(struct vm *vm, struct vm_snap_machine *m)
{
	memset(m, 0, sizeof(*m));
	m->ram_bytes = vm->mem.ram_size;
	m->nvcpus = vm->nvcpus;
	for (struct virtio_dev *d; (d = vm_virtio_dev(vm, m->ndevices)); m->ndevices++)
		m->dev[m->ndevices] = (struct vm_snap_device){
			.device_id = d->ops->device_id,
			.mmio_base = d->mmio_base,
			.gsi = d->gsi,
			.nqueues = d->ops->num_queues,
		};
}

static void machine_save(const struct vm_snap_machine *m, struct snap_writer *w)
{
	snap_section_begin(w, SNAP_TAG_MACHINE, 0, MCHN_VERSION);
	snap_put_bytes(w, m->id, sizeof(m->id));
	snap_put_u64(w, m->ram_bytes);
	snap_put_u32(w, m->nvcpus);
	snap_put_u32(w, m->ndevices);
	for (uint32_t i = 0; i < m->ndevices; i++) {
		snap_put_u32(w, m->dev[i].device_id);
		snap_put_u64(w, m->dev[i].mmio_base);
		snap_put_u32(w, m->dev[i].gsi);
		snap_put_u16(w, m->dev[i].nqueues);
	}
	snap_section_end(w);
}

static int machine_check(struct snap_reader *r, const struct vm_snap_machine *m)
{
	if (m->ram_bytes % (1ULL << 20) || m->ram_bytes < ((uint64_t)VM_MIN_MEM_MIB << 20) ||
	    m->ram_bytes > (1ULL << 44))
		return snap_reader_fail(r, "RAM of %llu bytes: must be whole MiB from %d MiB to 16 TiB",
					(unsigned long long)m->ram_bytes, VM_MIN_MEM_MIB);
	if (m->nvcpus < 1 || m->nvcpus > VM_MAX_VCPUS)
		return snap_reader_fail(r, "%u vCPUs: must be 1 to %d", m->nvcpus, VM_MAX_VCPUS);
	if (m->ndevices > VM_MAX_VIRTIO)
		return snap_reader_fail(r, "%u virtio devices: at most %d", m->ndevices, VM_MAX_VIRTIO);
	return 0;
}

static int machine_read(struct snap_reader *r, struct vm_snap_machine *m)
{
	memset(m, 0, sizeof(*m));
	if (snap_section_enter(r, SNAP_TAG_MACHINE, 0) < 0)
		return -EBADMSG;
	if (snap_section_version(r) != MCHN_VERSION)
		return snap_reader_fail(r, "section version %u; this supermachine reads %u",
					snap_section_version(r), MCHN_VERSION);
	if (snap_get_bytes(r, m->id, sizeof(m->id)) < 0 || snap_get_u64(r, &m->ram_bytes) < 0 ||
	    snap_get_u32(r, &m->nvcpus) < 0 || snap_get_u32(r, &m->ndevices) < 0)
		return -EBADMSG;
	if (machine_check(r, m) < 0)
		return -EINVAL;
	for (uint32_t i = 0; i < m->ndevices; i++)
		if (snap_get_u32(r, &m->dev[i].device_id) < 0 ||
		    snap_get_u64(r, &m->dev[i].mmio_base) < 0 || snap_get_u32(r, &m->dev[i].gsi) < 0 ||
		    snap_get_u16(r, &m->dev[i].nqueues) < 0)
			return -EBADMSG;
	return snap_section_leave(r);
}

static size_t devices_list(const struct vm_snap_machine *m, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = 0;
	for (uint32_t i = 0; i < m->ndevices && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "",
				      device_name(m->dev[i].device_id));
	return n;
}

/* The VM built from the command line must be the captured machine. */
static int machine_match(struct snap_reader *r, struct vm *vm, const struct vm_snap_machine *want)
{
	struct vm_snap_machine have;
	char a[128], b[128];

	machine_describe(vm, &have);
	snap_section_enter(r, SNAP_TAG_MACHINE, 0);
	if (have.ram_bytes != want->ram_bytes || have.nvcpus != want->nvcpus)
		return snap_reader_fail(r, "internal error: VM built with other RAM or vCPUs");
	bool same = have.ndevices == want->ndevices;
	for (uint32_t i = 0; same && i < have.ndevices; i++)
		same = have.dev[i].device_id == want->dev[i].device_id &&
		       have.dev[i].mmio_base == want->dev[i].mmio_base &&
		       have.dev[i].gsi == want->dev[i].gsi && have.dev[i].nqueues == want->dev[i].nqueues;
	if (same)
		return 0; /* MCHN stays open (read already); the next enter closes it */
	devices_list(want, a, sizeof(a));
	devices_list(&have, b, sizeof(b));
	return snap_reader_fail(r, "the snapshot's devices are [%s]; the command line gives [%s] "
				"(give the same device options, in the same order)", a, b);
}

int vm_snapshot_open(const char *dir, struct snap_reader **r, struct vm_snap_machine *m,
		     int *mem_fd, struct vmm_err *err)
{
	char path[PATH_MAX];
	int rc;

	*mem_fd = -1;
	snprintf(path, sizeof(path), "%s/" WORKER_SNAP_STATE_FILE, dir);
	rc = snap_reader_open(r, path, err);
	if (rc < 0)
		return rc;
	rc = machine_read(*r, m);
	if (rc < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/" WORKER_SNAP_MEMORY_FILE, dir);
	rc = snap_memory_open(path, m->ram_bytes, m->id, err);
	if (rc < 0) {
		snap_reader_free(*r);
		*r = NULL;
		return rc;
	}
	*mem_fd = rc;
	return 0;
fail:
	snap_reader_error(*r, err);
	snap_reader_free(*r);
	*r = NULL;
	return rc;
}

/* ---- load ----------------------------------------------------------------------- */

static int section_open(struct snap_reader *r, uint32_t tag, uint32_t index, uint32_t version)
{
	if (snap_section_enter(r, tag, index) < 0)
		return -EBADMSG;
	if (snap_section_version(r) != version)
		return snap_reader_fail(r, "section version %u; this supermachine reads %u",
					snap_section_version(r), version);
	return 0;
}

static int devices_load(struct vm *vm, struct snap_reader *r)
{
	struct virtio_dev *d;

	for (unsigned i = 0; (d = vm_virtio_dev(vm, i)); i++) {
		if (section_open(r, SNAP_TAG_VIRTIO, i, VIRT_VERSION) < 0 ||
		    virtio_dev_restore(d, r) < 0 || snap_section_leave(r) < 0)
			return -EINVAL;
	}
	return 0;
}

static int uart_load(struct serial *uart, struct snap_reader *r)
{
	if (!uart)
		return 0; /* a UART section left over is reported as not understood */
	if (section_open(r, SNAP_TAG_SERIAL, 0, UART_VERSION) < 0 || serial_restore(uart, r) < 0)
		return -EINVAL;
	return snap_section_leave(r);
}

static int state_load(struct vm_snapshot *s, const struct vm_snap_machine *m, bool first)
{
	struct vm *vm = s->vm;
	struct snap_reader *r = s->st;

	if (first && machine_match(r, vm, m) < 0)
		return -EINVAL;
	if (arch_vm_restore(vm, r) < 0)
		return -EINVAL;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (arch_vcpu_restore(vm, &vm->vcpus[i], r, first) < 0)
			return -EINVAL;
	if (devices_load(vm, r) < 0 || uart_load(s->uart, r) < 0)
		return -EINVAL;
	return snap_reader_check_consumed(r);
}

int vm_snapshot_load(struct vm_snapshot *s, const struct vm_snap_machine *m, bool first,
		     struct vmm_err *err)
{
	struct virtio_dev *d;
	int rc = state_load(s, m, first);

	if (rc < 0) {
		snap_reader_error(s->st, err);
		return rc;
	}
	for (unsigned i = 0; (d = vm_virtio_dev(s->vm, i)); i++)
		virtio_dev_restored(d);
	for (unsigned i = 0; i < s->vm->nvcpus; i++)
		arch_vcpu_paused(&s->vm->vcpus[i]);
	return 0;
}

/* ---- save ----------------------------------------------------------------------- */

static void state_save(struct vm_snapshot *s, const struct vm_snap_machine *m, struct snap_writer *w)
{
	struct vm *vm = s->vm;
	struct virtio_dev *d;

	machine_save(m, w);
	arch_vm_save(vm, w);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		arch_vcpu_save(vm, &vm->vcpus[i], w);
	for (unsigned i = 0; (d = vm_virtio_dev(vm, i)); i++) {
		snap_section_begin(w, SNAP_TAG_VIRTIO, i, VIRT_VERSION);
		virtio_dev_save(d, w);
		snap_section_end(w);
	}
	if (s->uart) {
		snap_section_begin(w, SNAP_TAG_SERIAL, 0, UART_VERSION);
		serial_save(s->uart, w);
		snap_section_end(w);
	}
}

/* Writes both files; the vCPUs are paused. */
static int files_write(struct vm_snapshot *s, const char *dir, struct vm_snap_result *res,
		       struct vmm_err *err)
{
	struct vm_snap_machine m;
	char path[PATH_MAX];
	struct stat st;
	int rc;

	machine_describe(s->vm, &m);
	if (getrandom(m.id, sizeof(m.id), 0) != (ssize_t)sizeof(m.id))
		return vmm_err_set(err, -EIO, "getrandom: %s", strerror(errno));
	struct snap_writer *w = snap_writer_new();
	if (!w)
		return vmm_err_set(err, -ENOMEM, "out of memory");
	/* The state first into memory: a KVM refusal stops us before any file. */
	state_save(s, &m, w);
	size_t len = 0;
	if (!snap_writer_encode(w, &len)) {
		rc = snap_writer_finish(w, dir, err); /* reports the recorded error */
		goto out;
	}
	res->state_bytes = len;
	snprintf(path, sizeof(path), "%s/" WORKER_SNAP_MEMORY_FILE, dir);
	rc = snap_memory_write(path, &s->vm->mem, m.id, err);
	if (rc < 0)
		goto out;
	if (stat(path, &st) == 0)
		res->memory_allocated = (uint64_t)st.st_blocks * 512;
	snprintf(path, sizeof(path), "%s/" WORKER_SNAP_STATE_FILE, dir);
	rc = snap_writer_finish(w, path, err);
out:
	snap_writer_free(w);
	return rc;
}

int vm_snapshot_save(struct vm_snapshot *s, const char *dir, struct vm_snap_result *res,
		     struct vmm_err *err)
{
	uint64_t t0 = vm_now_ns();
	int rc;

	memset(res, 0, sizeof(*res));
	rc = vm_pause(s->vm);
	if (rc < 0)
		return vmm_err_set(err, rc, "the VM is ending");
	uint64_t t1 = vm_now_ns();
	for (unsigned i = 0; i < s->vm->nvcpus; i++)
		arch_vcpu_paused(&s->vm->vcpus[i]);
	rc = files_write(s, dir, res, err);
	vm_resume(s->vm);
	res->paused_ns = vm_now_ns() - t1;
	res->total_ns = vm_now_ns() - t0;
	return rc;
}

/* ---- reset in place ------------------------------------------------------------ */

/* Drops the private copies of every RAM page: the file's pages show again. */
static int memory_drop(struct guest_mem *m)
{
	uint8_t *base = m->regions[0].hva - m->regions[0].file_offset;

	if (madvise(base, m->ram_size, MADV_DONTNEED) < 0)
		return -errno;
	return 0;
}

int vm_snapshot_reset(struct vm_snapshot *s, struct vmm_err *err)
{
	int rc;

	if (!s->st || !s->vm->mem.file_backed)
		return vmm_err_set(err, -ENOTSUP, "not restored");
	rc = vm_pause(s->vm);
	if (rc < 0)
		return vmm_err_set(err, rc, "the VM is ending");
	rc = memory_drop(&s->vm->mem);
	if (rc < 0) {
		vmm_err_set(err, rc, "dropping guest pages: %s", strerror(-rc));
	} else {
		rc = vm_snapshot_load(s, NULL, false, err);
	}
	if (rc < 0) {
		/* Half a state is no VM: end it rather than run garbage. */
		vm_request_exit(s->vm, VM_EXIT_ERROR, "reset failed: %s", err->msg);
	}
	vm_resume(s->vm);
	return rc;
}

/* ---- control commands ------------------------------------------------------------ */

void vm_snapshot_control_save(void *opaque, const char *args, char *reply, size_t len)
{
	struct vm_snapshot *s = opaque;
	struct vm_snap_result res;
	struct vmm_err err = { { 0 } };

	/* The rest of the line is the directory: it may contain spaces. */
	if (!args[0]) {
		snprintf(reply, len, "error usage: snapshot DIR");
		return;
	}
	if (vm_snapshot_save(s, args, &res, &err) < 0) {
		snprintf(reply, len, "error %s", err.msg);
		return;
	}
	snprintf(reply, len,
		 "ok state_bytes=%llu memory_bytes=%llu ram_bytes=%llu paused_ms=%.3f total_ms=%.3f",
		 (unsigned long long)res.state_bytes, (unsigned long long)res.memory_allocated,
		 (unsigned long long)s->vm->mem.ram_size, (double)res.paused_ns / 1e6,
		 (double)res.total_ns / 1e6);
}

void vm_snapshot_control_save_fd(struct vm_snapshot *s, int dirfd, char *reply, size_t len)
{
	char dir[32];
	struct stat st;

	if (dirfd < 0) {
		snprintf(reply, len, "error usage: " WORKER_CTL_SNAPSHOT_FD " with the directory's descriptor");
		return;
	}
	if (fstat(dirfd, &st) < 0 || !S_ISDIR(st.st_mode))
		snprintf(reply, len, "error " WORKER_CTL_SNAPSHOT_FD ": the descriptor is not a directory");
	else if (snprintf(dir, sizeof(dir), "/proc/self/fd/%d", dirfd) > 0)
		vm_snapshot_control_save(s, dir, reply, len);
	close(dirfd);
}

void vm_snapshot_control_reset(void *opaque, const char *args, char *reply, size_t len)
{
	struct vm_snapshot *s = opaque;
	struct vmm_err err = { { 0 } };
	uint64_t t0 = vm_now_ns();

	if (args[0]) {
		snprintf(reply, len, "error usage: reset");
		return;
	}
	if (vm_snapshot_reset(s, &err) < 0) {
		snprintf(reply, len, "error %s", err.msg);
		return;
	}
	snprintf(reply, len, "ok reset_ms=%.3f", (double)(vm_now_ns() - t0) / 1e6);
}

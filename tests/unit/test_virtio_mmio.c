/*
 * The virtio-mmio transport's register file and state machine, driven the
 * way a driver (well-behaved or hostile) drives it, with a small device
 * model that records what the transport asked of it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/virtio/virtio.h"
#include "virtio_driver.h"

#define DUMMY_FEATURE 3

struct dummy {
	struct virtio_dev dev;
	uint8_t config[12];
	int activations, resets, notifies;
	int activate_rc;
};

static uint64_t dummy_features(struct virtio_dev *d) { return 1ULL << DUMMY_FEATURE; }

static void dummy_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	memcpy(data, ((struct dummy *)d->priv)->config + off, len);
}

static void dummy_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	memcpy(((struct dummy *)d->priv)->config + off, data, len);
}

static int dummy_activate(struct virtio_dev *d)
{
	struct dummy *x = d->priv;
	x->activations++;
	return x->activate_rc;
}

static void dummy_reset(struct virtio_dev *d) { ((struct dummy *)d->priv)->resets++; }

static void dummy_notify(struct virtio_dev *d, uint16_t q) { ((struct dummy *)d->priv)->notifies++; }

static const struct virtio_dev_ops dummy_ops = {
	.name = "dummy",
	.device_id = 42,
	.num_queues = 2,
	.features = dummy_features,
	.config_size = sizeof(((struct dummy *)0)->config),
	.config_read = dummy_config_read,
	.config_write = dummy_config_write,
	.activate = dummy_activate,
	.reset = dummy_reset,
	.queue_notify = dummy_notify,
};

static struct vdrv v;
static struct dummy dev;
static int notify_fd[2];

static void setup(void)
{
	vdrv_mem_init(&v, 1 << 20, false);
	memset(&dev, 0, sizeof(dev));
	for (int i = 0; i < 12; i++)
		dev.config[i] = (uint8_t)(0xa0 + i);
	virtio_dev_init(&dev.dev, &dummy_ops, &dev, &v.mem, 0xd0000000, 5, -1);
	v.dev = &dev.dev;
	v.irq_fd = dev.dev.irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	for (int q = 0; q < 2; q++)
		notify_fd[q] = dev.dev.notify_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

static void teardown(void)
{
	for (int q = 0; q < 2; q++)
		close(notify_fd[q]);
	virtio_dev_destroy(&dev.dev);
	vdrv_fini(&v);
}

TestSuite(mmio, .init = setup, .fini = teardown);

static uint32_t rd(uint64_t off) { return vdrv_reg_read(&v, off); }
static void wr(uint64_t off, uint32_t val) { vdrv_reg_write(&v, off, val); }

static void up_to_features_ok(uint64_t features)
{
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				       VIRTIO_STATUS_FEATURES_OK);
}

#define ALL_SETUP (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK)
#define V1 (1ULL << VIRTIO_F_VERSION_1)

static void queue_config(unsigned q, uint32_t num, uint64_t desc, uint64_t avail, uint64_t used)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, q);
	wr(VIRTIO_MMIO_QUEUE_NUM, num);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr(VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
	wr(VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
	wr(VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
	wr(VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
}

static void good_queue(unsigned q)
{
	uint64_t base = VDRV_RAM_GPA + 0x10000 * (q + 1);
	queue_config(q, 64, base, base + 0x1000, base + 0x2000);
}

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

Test(mmio, identification_registers)
{
	cr_assert_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	cr_assert_eq(rd(VIRTIO_MMIO_VERSION), 2);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_ID), 42);
	cr_assert_neq(rd(VIRTIO_MMIO_VENDOR_ID), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff, "no shared memory regions");
	char frag[64];
	cr_assert_gt(virtio_dev_cmdline(&dev.dev, frag, sizeof(frag)), 0);
	cr_assert_str_eq(frag, "virtio_mmio.device=4K@0xd0000000:5");
	cr_assert_lt(virtio_dev_cmdline(&dev.dev, frag, 10), 0);
}

Test(mmio, offered_features)
{
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	uint32_t hi = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 7);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);
	cr_assert(lo & (1u << DUMMY_FEATURE));
	cr_assert(lo & (1u << VIRTIO_F_INDIRECT_DESC));
	cr_assert(lo & (1u << VIRTIO_F_EVENT_IDX));
	cr_assert(hi & 1, "VERSION_1");
}

Test(mmio, negotiation_accepts_a_subset_with_version_1)
{
	up_to_features_ok(V1 | (1ULL << DUMMY_FEATURE));
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), ALL_SETUP);
	/* features are frozen from now on */
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
	cr_assert_eq(dev.dev.drv_features, V1 | (1ULL << DUMMY_FEATURE));
}

Test(mmio, negotiation_refuses_unoffered_bits_and_legacy)
{
	up_to_features_ok(V1 | (1ULL << 40));
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK, 0, "unoffered bit 40");
	wr(VIRTIO_MMIO_STATUS, 0);
	up_to_features_ok(1ULL << DUMMY_FEATURE);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK, 0, "no VERSION_1");
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0,
		     "a refusal is not a failure");
	/* a high selector with any bit set is an unoffered feature too */
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 5);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1);
	wr(VIRTIO_MMIO_STATUS, ALL_SETUP);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK, 0);
}

Test(mmio, full_bring_up_activates_once)
{
	up_to_features_ok(V1 | (1ULL << VIRTIO_F_EVENT_IDX));
	good_queue(0);
	good_queue(1);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	cr_assert(dev.dev.vq[1].event_idx);
	cr_assert_not(dev.dev.vq[1].indirect);
	wr(VIRTIO_MMIO_STATUS, ALL_SETUP | VIRTIO_STATUS_DRIVER_OK);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), ALL_SETUP | VIRTIO_STATUS_DRIVER_OK);
	cr_assert(virtio_dev_live(&dev.dev));
	cr_assert_eq(dev.activations, 1);
	wr(VIRTIO_MMIO_STATUS, ALL_SETUP | VIRTIO_STATUS_DRIVER_OK);
	cr_assert_eq(dev.activations, 1, "re-writing the same status does not re-activate");
	/* reset forgets everything */
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	cr_assert_eq(dev.resets, 1);
	cr_assert_not(dev.dev.vq[0].ready);
	cr_assert_eq(dev.dev.vq[0].desc_gpa, 0);
	cr_assert_eq(dev.dev.drv_features, 0);
	cr_assert_not(virtio_dev_live(&dev.dev));
}

Test(mmio, activation_failure_needs_reset)
{
	dev.activate_rc = -EIO;
	up_to_features_ok(V1);
	wr(VIRTIO_MMIO_STATUS, ALL_SETUP | VIRTIO_STATUS_DRIVER_OK);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_not(virtio_dev_live(&dev.dev));
	cr_assert(readable(v.irq_fd), "config interrupt tells the driver");
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG, VIRTIO_INT_CONFIG);
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0, "reset clears NEEDS_RESET");
}

Test(mmio, status_out_of_order_or_cleared_fails_the_device)
{
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER_OK);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, "DRIVER_OK without FEATURES_OK");
	cr_assert_eq(dev.activations, 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	up_to_features_ok(V1);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, "bits cleared without reset");
	/* once failed, only a reset is heard */
	wr(VIRTIO_MMIO_STATUS, ALL_SETUP | VIRTIO_STATUS_DRIVER_OK);
	cr_assert_eq(dev.activations, 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_DRIVER);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, "DRIVER before ACKNOWLEDGE");
}

Test(mmio, queue_registers_are_checked)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTQ_MAX_SIZE);
	wr(VIRTIO_MMIO_QUEUE_SEL, 2);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "queue 2 does not exist");
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0xffffffff);
	wr(VIRTIO_MMIO_QUEUE_NUM, 8);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0, "writes to a missing queue are ignored");

	/* ready before FEATURES_OK */
	good_queue(0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
}

static void expect_queue_refused(uint32_t num, uint64_t desc, uint64_t avail, uint64_t used)
{
	wr(VIRTIO_MMIO_STATUS, 0);
	up_to_features_ok(V1);
	queue_config(0, num, desc, avail, used);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0, "num %u desc %#llx avail %#llx used %#llx", num,
		     (unsigned long long)desc, (unsigned long long)avail, (unsigned long long)used);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

Test(mmio, bad_queue_geometry_needs_reset)
{
	uint64_t b = VDRV_RAM_GPA + 0x10000, end = VDRV_RAM_GPA + (1 << 20);

	expect_queue_refused(0, b, b + 0x1000, b + 0x2000);
	expect_queue_refused(48, b, b + 0x1000, b + 0x2000);       /* not a power of two */
	expect_queue_refused(2048, b, b + 0x1000, b + 0x2000);     /* above QueueNumMax */
	expect_queue_refused(0x10008, b, b + 0x1000, b + 0x2000);  /* truncates to a valid size */
	expect_queue_refused(64, 0x1000, b + 0x1000, b + 0x2000);  /* below RAM */
	expect_queue_refused(64, b, b + 0x1000, end - 8);          /* used ring runs off RAM */
	expect_queue_refused(64, end - 16 * 63, b, b + 0x1000);    /* table runs off RAM */
	expect_queue_refused(64, b + 8, b + 0x1000, b + 0x2000);   /* misaligned table */
	expect_queue_refused(64, b, b + 0x1000, b + 0x2002);       /* misaligned used ring */
	expect_queue_refused(64, b, (1ULL << 63) + b, b + 0x2000); /* high half outside RAM */
	expect_queue_refused(64, b, b + 0x1000, UINT64_MAX - 3);   /* wraps */
}

Test(mmio, ready_queue_is_frozen)
{
	up_to_features_ok(V1);
	good_queue(0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	uint64_t desc = dev.dev.vq[0].desc_gpa;
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1234);
	wr(VIRTIO_MMIO_QUEUE_NUM, 2);
	cr_assert_eq(dev.dev.vq[0].desc_gpa, desc);
	cr_assert_eq(dev.dev.vq[0].size, 64);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0, "driver may take a queue down");
}

Test(mmio, notify_goes_to_the_queue_eventfd)
{
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	cr_assert(readable(notify_fd[1]));
	cr_assert_not(readable(notify_fd[0]));
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 2);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0xffff);
	cr_assert_not(readable(notify_fd[0]), "bad queue numbers go nowhere");
	cr_assert_eq(dev.notifies, 0, "never called on the vCPU thread");
}

Test(mmio, interrupts_and_acks)
{
	up_to_features_ok(V1);
	good_queue(0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	wr(VIRTIO_MMIO_STATUS, ALL_SETUP | VIRTIO_STATUS_DRIVER_OK);
	virtio_dev_notify_used(&dev.dev, 0);
	cr_assert(readable(v.irq_fd));
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_VRING);
	uint32_t gen = rd(VIRTIO_MMIO_CONFIG_GENERATION);
	virtio_dev_config_changed(&dev.dev);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_VRING | VIRTIO_INT_CONFIG);
	cr_assert_eq(rd(VIRTIO_MMIO_CONFIG_GENERATION), gen + 1);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_VRING);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffff);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	virtio_dev_notify_used(&dev.dev, 7);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0, "queue 7 does not exist");
}

Test(mmio, config_space_bounds_and_widths)
{
	uint8_t b[8];
	uint32_t w;

	virtio_mmio_read(&dev.dev, VIRTIO_MMIO_CONFIG + 1, b, 1);
	cr_assert_eq(b[0], 0xa1);
	virtio_mmio_read(&dev.dev, VIRTIO_MMIO_CONFIG + 4, b, 8);
	cr_assert_eq(b[7], 0xab);
	virtio_mmio_read(&dev.dev, VIRTIO_MMIO_CONFIG + 8, &w, 4);
	cr_assert_eq(w, 0xabaaa9a8);
	memset(b, 0x55, sizeof(b));
	virtio_mmio_read(&dev.dev, VIRTIO_MMIO_CONFIG + 10, b, 4);
	cr_assert_eq(b[0], 0, "crossing the end reads zero");
	virtio_mmio_read(&dev.dev, VIRTIO_MMIO_CONFIG + 0xe00, b, 4);
	cr_assert_eq(b[0], 0);
	virtio_mmio_read(&dev.dev, VIRTIO_MMIO_CONFIG, b, 3);
	cr_assert_eq(b[0], 0, "3-byte access refused");
	w = 0x11223344;
	virtio_mmio_write(&dev.dev, VIRTIO_MMIO_CONFIG + 10, &w, 4);
	cr_assert_eq(dev.config[10], 0xaa, "write crossing the end ignored");
	virtio_mmio_write(&dev.dev, VIRTIO_MMIO_CONFIG + 4, &w, 4);
	cr_assert_eq(dev.config[4], 0x44);
	/* registers: 32-bit aligned only */
	virtio_mmio_read(&dev.dev, VIRTIO_MMIO_MAGIC_VALUE, b, 2);
	cr_assert_eq(b[0], 0);
	virtio_mmio_read(&dev.dev, VIRTIO_MMIO_MAGIC_VALUE + 1, &w, 4);
	cr_assert_eq(w, 0);
	uint16_t s = VIRTIO_STATUS_ACKNOWLEDGE;
	virtio_mmio_write(&dev.dev, VIRTIO_MMIO_STATUS, &s, 2);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0, "16-bit status write ignored");
}

/* Whatever a driver writes, the transport neither crashes nor leaves RAM. */
Test(mmio, random_register_storm)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t off = (x >> 8) % 0x110 & ~3ULL;
		uint32_t val = (uint32_t)(x >> 32);
		switch (x & 7) {
		case 0: val &= 0x7f; off = VIRTIO_MMIO_STATUS; break;
		case 1: val &= 3; off = VIRTIO_MMIO_QUEUE_SEL; break;
		case 2: val = VDRV_RAM_GPA + (val & 0xfffff); break;
		default: break;
		}
		if (x & 0x10000)
			(void)rd(off);
		else
			wr(off, val);
		if ((x & 0xff) == 0)
			virtio_dev_notify_used(&dev.dev, (uint16_t)(x >> 40) & 3);
	}
	/* and the device still comes up after a reset */
	wr(VIRTIO_MMIO_STATUS, 0);
	up_to_features_ok(V1);
	good_queue(0);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	wr(VIRTIO_MMIO_STATUS, ALL_SETUP | VIRTIO_STATUS_DRIVER_OK);
	cr_assert(virtio_dev_live(&dev.dev));
}

/*
 * The smallest real KVM program: a real-mode guest adds two registers the
 * host set, writes the digit to an I/O port and halts. Proves /dev/kvm,
 * memory slots, vCPU state and the exit path work wherever this suite runs.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUEST_MEM 0x10000
#define CODE_ADDR 0x1000
#define OUT_PORT 0x3f8

Test(kvm, real_mode_guest_writes_port_and_halts)
{
	static const unsigned char code[] = {
		0x01, 0xd8,       /* add ax, bx */
		0x04, '0',        /* add al, '0' */
		0xba, 0xf8, 0x03, /* mov dx, 0x3f8 */
		0xee,             /* out dx, al */
		0xf4,             /* hlt */
	};
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	cr_assert_geq(kvm, 0, "open /dev/kvm");
	cr_assert_eq(ioctl(kvm, KVM_GET_API_VERSION, 0), KVM_API_VERSION);

	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	cr_assert_geq(vm, 0, "KVM_CREATE_VM");

	unsigned char *mem = mmap(NULL, GUEST_MEM, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	memcpy(mem + CODE_ADDR, code, sizeof(code));
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = GUEST_MEM,
		.userspace_addr = (unsigned long)mem,
	};
	cr_assert_eq(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region), 0);

	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	cr_assert_geq(vcpu, 0, "KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	cr_assert_gt(run_size, 0);
	struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE,
				   MAP_SHARED, vcpu, 0);
	cr_assert_neq(run, MAP_FAILED);

	struct kvm_sregs sregs;
	cr_assert_eq(ioctl(vcpu, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	cr_assert_eq(ioctl(vcpu, KVM_SET_SREGS, &sregs), 0);

	struct kvm_regs regs = { .rip = CODE_ADDR, .rax = 2, .rbx = 3, .rflags = 0x2 };
	cr_assert_eq(ioctl(vcpu, KVM_SET_REGS, &regs), 0);

	int saw_out = 0;
	for (int i = 0; i < 16; i++) {
		cr_assert_eq(ioctl(vcpu, KVM_RUN, 0), 0, "KVM_RUN");
		if (run->exit_reason == KVM_EXIT_IO) {
			cr_assert_eq(run->io.direction, KVM_EXIT_IO_OUT);
			cr_assert_eq(run->io.port, OUT_PORT);
			cr_assert_eq(run->io.size, 1);
			cr_assert_eq(run->io.count, 1);
			char c = *((char *)run + run->io.data_offset);
			cr_assert_eq(c, '5', "guest wrote '%c', expected '5'", c);
			saw_out = 1;
			continue;
		}
		cr_assert_eq(run->exit_reason, KVM_EXIT_HLT, "unexpected exit reason %u", run->exit_reason);
		break;
	}
	cr_assert(saw_out, "guest never wrote to the port");
	cr_assert_eq(ioctl(vcpu, KVM_GET_REGS, &regs), 0);
	cr_assert_eq(regs.rip, CODE_ADDR + sizeof(code), "guest stopped at %#llx", regs.rip);

	munmap(run, (size_t)run_size);
	munmap(mem, GUEST_MEM);
	close(vcpu);
	close(vm);
	close(kvm);
}

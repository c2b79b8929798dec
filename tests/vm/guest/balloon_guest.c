/*
 * PID 1 for the virtio-balloon vm test. smballoon=MIB: touch MIB of
 * anonymous memory, give it back to the guest kernel (so the host memfd
 * holds it but the guest has it free, ready to balloon), report
 *
 *   SMTEST balloon touched=MIB free_kib=N
 *
 * then every second report what the guest's balloon driver holds:
 *
 *   SMTEST balloon free_kib=N
 *
 * The balloon itself is inflated by the guest kernel when the host raises
 * the target; nothing here takes part in that.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "devguest.h"

static long meminfo_kib(const char *key)
{
	char line[128];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0)
			v = strtol(line + strlen(key), NULL, 10);
	fclose(f);
	return v;
}

int main(void)
{
	char spec[64];
	size_t mib;
	char *p;

	guest_mounts();
	if (!guest_param("smballoon", spec, sizeof(spec))) {
		say("balloon error=no-smballoon");
		guest_reboot();
	}
	mib = strtoul(spec, NULL, 10);
	say("balloon start mib=%zu", mib);
	p = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		say("balloon error=mmap:%d", errno);
		guest_reboot();
	}
	memset(p, 0x5a, mib << 20);
	munmap(p, mib << 20);
	say("balloon touched=%zu free_kib=%ld", mib, meminfo_kib("MemFree:"));
	for (;;) {
		sleep(1);
		say("balloon free_kib=%ld", meminfo_kib("MemFree:"));
	}
}

/*
 * libFuzzer target: a snapshot's metadata.json and a runtime boot.json
 * (src/lib/snapshot_meta.c snapmeta_parse). What parses must be what a
 * restore can use: the image's command comes out of it, and the file the
 * library would write back for it parses again to the same text.
 *
 * Input: u8 (bit 0: boot.json rules), then the JSON document.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void command_check(const struct snap_meta *m)
{
	char **cmd = snapmeta_image_command(m);

	for (size_t i = 0; cmd && cmd[i]; i++)
		free(cmd[i]);
	free(cmd);
}

/* Written back and read again, the metadata says the same. */
static void round_trip(const struct snap_meta *m, bool boot)
{
	char *text = snapmeta_dump(m, boot), *again = NULL;
	struct snap_meta m2;
	sm_error *err = NULL;

	if (!text)
		abort();
	if (snapmeta_parse(text, strlen(text), "dump", boot, &m2, &err) < 0)
		abort();
	again = snapmeta_dump(&m2, boot);
	if (!again || strcmp(text, again))
		abort();
	snapmeta_release(&m2);
	free(again);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_meta m;
	sm_error *err = NULL;
	bool boot;

	if (size < 1)
		return 0;
	boot = data[0] & 1;
	if (snapmeta_parse((const char *)data + 1, size - 1, "fuzz", boot, &m, &err) == 0) {
		command_check(&m);
		round_trip(&m, boot);
		snapmeta_release(&m);
	} else if (!err || sm_error_code(err) != SM_E_SNAPSHOT) {
		abort();
	}
	sm_error_free(err);
	return 0;
}

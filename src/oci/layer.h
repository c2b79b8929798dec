/* Layer tarballs through libarchive, for the rootfs builder. */
#ifndef SM_OCI_LAYER_H
#define SM_OCI_LAYER_H

#include "oci/internal.h"
#include "oci/rootfs.h"

struct archive;
struct archive_entry;

/* ext4 with 4 KiB blocks holds files up to 16 TiB. */
#define LAYER_FILE_MAX ((16ull << 40) - FS_BLOCK)

struct layer_reader {
	struct archive *outer; /* decompression only */
	struct archive *inner; /* tar, fed by outer */
	struct sha256 h;
	bool hashing;
	bool outer_failed;
	uint64_t raw_bytes;    /* uncompressed bytes read */
};

int layer_open(struct layer_reader *r, const char *path, bool hash, struct where *w);
/* Reads to the end and yields the uncompressed stream's digest. */
int layer_finish_hash(struct layer_reader *r, char out[OCI_DIGEST_SIZE], struct where *w);
void layer_close(struct layer_reader *r);
/* The most useful error message of the two readers. */
const char *layer_error(struct layer_reader *r);

/* Storage behind a struct tar_entry's strings. */
struct entry_bufs {
	char display[4096]; /* the path as the tar has it, for messages */
	char path[4096];
	char link[4096];
	struct xattr xattrs[256];
};

/* Converts and validates a header. */
int layer_entry(struct archive_entry *ae, struct tar_entry *e, struct entry_bufs *b,
		struct where *w);

#endif

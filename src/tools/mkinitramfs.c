/*
 * mkinitramfs: writes an initramfs (a cpio archive in the "newc" format the
 * kernel unpacks, uncompressed) from entries given on the command line, so
 * a build can pack a static /init without root, fakeroot or the cpio tool.
 * Every entry is owned by root with mtime 0: the same inputs give the same
 * bytes. Missing parent directories are added (mode 0755).
 *
 *   mkinitramfs -o OUT ENTRY...
 *     file:DEST:SRC[:MODE]        regular file DEST with SRC's contents (mode: SRC's)
 *     dir:DEST[:MODE]             directory (0755)
 *     nod:DEST:MODE:c|b:MAJ:MIN   device node
 *     slink:DEST:TARGET[:MODE]    symbolic link (0777)
 *
 * Modes are octal permission bits.
 */
#include <stdarg.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ENTRIES 4096
#define MAX_PATH 1024

struct cpio {
	FILE *out;
	uint64_t offset;
	uint32_t next_ino;
	char *seen[MAX_ENTRIES]; /* archive paths written so far */
	unsigned nseen;
};

__attribute__((format(printf, 1, 2)))
static int die(const char *fmt, ...);

static int die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mkinitramfs: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static bool cpio_seen(const struct cpio *c, const char *path)
{
	for (unsigned i = 0; i < c->nseen; i++)
		if (strcmp(c->seen[i], path) == 0)
			return true;
	return false;
}

static int cpio_pad(struct cpio *c)
{
	static const char zeros[4];
	size_t pad = (4 - c->offset % 4) % 4;

	if (pad && fwrite(zeros, 1, pad, c->out) != pad)
		return -1;
	c->offset += pad;
	return 0;
}

/* Header + name (archive paths carry no leading slash), padded to 4 bytes. */
static int cpio_header(struct cpio *c, const char *path, uint32_t mode, uint32_t size,
		       uint32_t rmaj, uint32_t rmin)
{
	const char *name = path[0] == '/' ? path + 1 : path;
	size_t namesize = strlen(name) + 1;
	char hdr[128];

	snprintf(hdr, sizeof(hdr),
		 "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", c->next_ino++,
		 mode, 0, 0, (mode & S_IFMT) == S_IFDIR ? 2 : 1, 0, size, 0, 0, rmaj, rmin,
		 (uint32_t)namesize, 0);
	if (fwrite(hdr, 1, 110, c->out) != 110 || fwrite(name, 1, namesize, c->out) != namesize)
		return -1;
	c->offset += 110 + namesize;
	return cpio_pad(c);
}

static int cpio_remember(struct cpio *c, const char *path)
{
	if (c->nseen == MAX_ENTRIES)
		return -1;
	c->seen[c->nseen] = strdup(path);
	return c->seen[c->nseen++] ? 0 : -1;
}

/* Adds every missing ancestor of path as a 0755 directory. */
static int cpio_parents(struct cpio *c, const char *path)
{
	char buf[MAX_PATH];

	if (strlen(path) >= sizeof(buf))
		return -1;
	strcpy(buf, path);
	for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		if (!cpio_seen(c, buf) &&
		    (cpio_header(c, buf, S_IFDIR | 0755, 0, 0, 0) < 0 || cpio_remember(c, buf) < 0))
			return -1;
		*p = '/';
	}
	return 0;
}

static int cpio_entry(struct cpio *c, const char *path, uint32_t mode, const void *data,
		      uint32_t size, uint32_t rmaj, uint32_t rmin)
{
	if (path[0] != '/' || strstr(path, "/../") || strstr(path, "//"))
		return die("'%s': archive paths are absolute and normalized", path);
	if (cpio_seen(c, path))
		return die("'%s' given twice", path);
	if (cpio_parents(c, path) < 0 || cpio_header(c, path, mode, size, rmaj, rmin) < 0 ||
	    cpio_remember(c, path) < 0)
		return die("writing '%s' failed", path);
	if (size && fwrite(data, 1, size, c->out) != size)
		return die("writing '%s' failed", path);
	c->offset += size;
	return cpio_pad(c) < 0 ? die("writing '%s' failed", path) : 0;
}

static char *read_file(const char *path, uint32_t *size, uint32_t *mode)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > INT32_MAX)
		goto out;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		goto out;
	for (off_t done = 0; done < st.st_size;) {
		ssize_t n = read(fd, buf + done, (size_t)(st.st_size - done));
		if (n <= 0) {
			free(buf);
			buf = NULL;
			goto out;
		}
		done += n;
	}
	*size = (uint32_t)st.st_size;
	*mode = st.st_mode & 07777;
out:
	if (fd >= 0)
		close(fd);
	return buf;
}

static int parse_mode(const char *s, uint32_t dflt, uint32_t *mode)
{
	char *end;

	if (!s) {
		*mode = dflt;
		return 0;
	}
	unsigned long v = strtoul(s, &end, 8);
	if (!*s || *end || v > 07777)
		return -1;
	*mode = (uint32_t)v;
	return 0;
}

/* Splits spec at ':' into at most max fields; returns the count. */
static int split(char *spec, char **f, int max)
{
	int n = 0;

	f[n++] = spec;
	for (char *p = spec; *p && n < max; p++)
		if (*p == ':') {
			*p = 0;
			f[n++] = p + 1;
		}
	return n;
}

static int add_file(struct cpio *c, char **f, int n)
{
	uint32_t size, mode;
	char *data;

	if (n < 3 || n > 4)
		return die("%s: use file:DEST:SRC[:MODE]", f[0]);
	data = read_file(f[2], &size, &mode);
	if (!data)
		return die("cannot read '%s' (a regular file)", f[2]);
	if (n == 4 && parse_mode(f[3], 0, &mode) < 0) {
		free(data);
		return die("bad mode '%s'", f[3]);
	}
	int rc = cpio_entry(c, f[1], S_IFREG | mode, data, size, 0, 0);
	free(data);
	return rc;
}

static int add_entry(struct cpio *c, char *spec)
{
	char *f[6];
	int n = split(spec, f, 6);
	uint32_t mode;

	if (strcmp(f[0], "file") == 0)
		return add_file(c, f, n);
	if (strcmp(f[0], "dir") == 0) {
		if (n < 2 || n > 3 || parse_mode(n == 3 ? f[2] : NULL, 0755, &mode) < 0)
			return die("%s: use dir:DEST[:MODE]", spec);
		return cpio_entry(c, f[1], S_IFDIR | mode, NULL, 0, 0, 0);
	}
	if (strcmp(f[0], "nod") == 0) {
		if (n != 6 || parse_mode(f[2], 0, &mode) < 0 || (strcmp(f[3], "c") && strcmp(f[3], "b")))
			return die("%s: use nod:DEST:MODE:c|b:MAJOR:MINOR", spec);
		uint32_t type = f[3][0] == 'c' ? S_IFCHR : S_IFBLK;
		return cpio_entry(c, f[1], type | mode, NULL, 0, (uint32_t)strtoul(f[4], NULL, 10),
				  (uint32_t)strtoul(f[5], NULL, 10));
	}
	if (strcmp(f[0], "slink") == 0) {
		if (n < 3 || n > 4 || parse_mode(n == 4 ? f[3] : NULL, 0777, &mode) < 0)
			return die("%s: use slink:DEST:TARGET[:MODE]", spec);
		return cpio_entry(c, f[1], S_IFLNK | mode, f[2], (uint32_t)strlen(f[2]), 0, 0);
	}
	return die("unknown entry type in '%s' (file, dir, nod, slink)", spec);
}

int main(int argc, char **argv)
{
	struct cpio c = { .next_ino = 1 };
	const char *out = NULL;
	int first = 1, rc = 0;

	if (argc >= 3 && strcmp(argv[1], "-o") == 0) {
		out = argv[2];
		first = 3;
	}
	if (!out || first >= argc) {
		fprintf(stderr, "usage: mkinitramfs -o OUT file:DEST:SRC[:MODE] | dir:DEST[:MODE] | "
				"nod:DEST:MODE:c|b:MAJ:MIN | slink:DEST:TARGET[:MODE] ...\n");
		return 2;
	}
	c.out = fopen(out, "wb");
	if (!c.out)
		return die("cannot create '%s'", out);
	for (int i = first; i < argc && rc == 0; i++)
		rc = add_entry(&c, argv[i]);
	if (rc == 0 && cpio_header(&c, "TRAILER!!!", 0, 0, 0, 0) < 0)
		rc = die("writing '%s' failed", out);
	if (fclose(c.out) != 0 && rc == 0)
		rc = die("writing '%s' failed", out);
	for (unsigned i = 0; i < c.nseen; i++)
		free(c.seen[i]);
	if (rc)
		unlink(out);
	return rc;
}

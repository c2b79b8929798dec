#include "fuzz_host.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

char *fuzz_tmpdir(const char *name)
{
	const char *base = getenv("TMPDIR");
	char *dir = NULL;

	if (!base || !*base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	if (asprintf(&dir, "%s/%s-XXXXXX", base, name) < 0 || !mkdtemp(dir))
		abort();
	return dir;
}

size_t fuzz_dir_clear(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[4096];
	size_t n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode) && unlink(path) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Replays saved fuzzer inputs (files or directories of files) through a
 * fuzz target in the normal test run, without libFuzzer. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay(const char *path)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r = read_file(path, 16 * 1024 * 1024, &buf, &len);

	if (r < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(-r));
		return 1;
	}
	LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
	return 0;
}

int main(int argc, char **argv)
{
	int failed = 0, count = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		struct dirent *de;
		DIR *d;

		if (stat(argv[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
			failed |= replay(argv[i]);
			count++;
			continue;
		}
		d = opendir(argv[i]);
		if (!d)
			return 1;
		while ((de = readdir(d))) {
			_cleanup_free_ char *p = NULL;

			if (de->d_name[0] == '.')
				continue;
			p = path_join(argv[i], de->d_name);
			failed |= replay(p);
			count++;
		}
		closedir(d);
	}
	printf("replayed %d inputs\n", count);
	return failed || count == 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The image init's parser of the fw_cfg entry opt/io.vmd/image (host input
 * to the guest, parsed defensively all the same). The init is one static
 * program with its own main(), so it is included here under another name.
 * Whatever parses must have a non-empty argv[0], a NULL-terminated argv
 * and env, an absolute workdir and a stop signal in 1..64. */
#define main image_init_main
#include "../../images/guest/image-init.c"
#undef main

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct image im;
	char err[256];

	if (image_parse((const char *)data, size, &im, err, sizeof(err)) < 0)
		return 0;
	if (im.n_argv == 0 || !im.argv[0][0] || im.argv[im.n_argv] || im.env[im.n_env] || im.workdir[0] != '/' ||
	    im.stop_signal < 1 || im.stop_signal > 64)
		abort();
	for (size_t i = 0; i < im.n_env; i++)
		if (!strchr(im.env[i], '=') || im.env[i][0] == '=')
			abort();
	image_free(&im);
	return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Container image metadata: an OCI layout's index.json, an image manifest,
 * an image config, a docker-archive's manifest.json; the first byte picks
 * which (and whether a reference is asked for). Whatever parses must hold
 * only valid digests and archive paths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_image(const struct oci_image *img)
{
	if (img->config_digest && !oci_digest_valid(img->config_digest))
		abort();
	for (size_t i = 0; i < img->n_layers; i++) {
		const char *p = img->layers[i].path;

		if (img->layers[i].digest && !oci_digest_valid(img->layers[i].digest))
			abort();
		size_t len = p ? strlen(p) : 0;

		if (p && (p[0] == '/' || strcmp(p, "..") == 0 || strncmp(p, "../", 3) == 0 || strstr(p, "/../") ||
			  strstr(p, "//") || (len >= 3 && strcmp(p + len - 3, "/..") == 0)))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct schema_errors e = {};
	struct oci_image img = {};
	const char *text = (const char *)data + 1, *ref;
	char *digest = NULL;
	size_t n;

	if (size < 1)
		return 0;
	n = size - 1;
	ref = data[0] & 4 ? "web:latest" : NULL;
	switch (data[0] & 3) {
	case 0:
		if (oci_parse_index(text, n, ref, &digest, &e) == 0 && !oci_digest_valid(digest))
			abort();
		free(digest);
		break;
	case 1:
		if (oci_parse_manifest(text, n, &img, &e) == 0)
			check_image(&img);
		break;
	case 2:
		if (oci_parse_config(text, n, &img, &e) == 0)
			for (size_t i = 0; i < img.n_diff_ids; i++)
				if (!oci_digest_valid(img.diff_ids[i]))
					abort();
		break;
	default:
		if (oci_parse_docker_manifest(text, n, ref, &img, &e) == 0)
			check_image(&img);
		break;
	}
	oci_image_clear(&img);
	schema_errors_clear(&e);
	return 0;
}

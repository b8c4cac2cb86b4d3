/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Container images (issue 14), the metadata half: the JSON documents of an
 * OCI image layout (index.json, an image manifest, an image config) and of
 * a docker-archive tarball (manifest.json, as Nix's dockerTools writes),
 * parsed and validated into what vmd needs to run the image. Layers are
 * named, never opened, here. Everything in these files is outside input:
 * every error is "FIELD: reason" (schema.h), and nothing is trusted that
 * is not checked (digests, media types, sizes, paths). */

#include "schema.h"

enum oci_compression { OCI_LAYER_TAR, OCI_LAYER_GZIP, OCI_LAYER_ZSTD };

struct oci_layer {
	/* OCI: "sha256:<64 hex>"; docker-archive: the layer's path inside the
	 * archive, relative, with no ".." (and no digest). */
	char *digest;
	char *path;
	enum oci_compression compression;
	uint64_t size; /* 0: unknown (docker-archive) */
};

/* What the image's config says about running it (OCI image-spec
 * config.md, "config" object). NULL: absent. */
struct oci_run {
	char **entrypoint;
	char **cmd;
	char **env; /* "NAME=value" */
	char *workdir;
	char *user; /* "name", "uid", "name:group", "uid:gid" */
	char *stop_signal;
};

struct oci_image {
	char *manifest_digest; /* OCI layout: the image manifest's (oci_load_layout) */
	char *config_digest; /* OCI: the config blob; docker-archive: NULL */
	uint64_t config_size;
	char *config_path;   /* docker-archive: the config file in the archive */
	struct oci_layer *layers;
	size_t n_layers;
	struct oci_run run;
	/* The config's rootfs.diff_ids: the sha256 of each layer's
	 * uncompressed tar, in order; NULL when the config gives none. */
	char **diff_ids;
	size_t n_diff_ids;
};

#define OCI_MAX_LAYERS 256
#define OCI_MAX_JSON (4 * 1024 * 1024)

void oci_image_clear(struct oci_image *img);
void oci_run_clear(struct oci_run *r);

/* Is s "sha256:" and 64 lowercase hex digits? */
bool oci_digest_valid(const char *s);

/* index.json of an OCI layout: the digest of the image manifest to run,
 * the one whose "org.opencontainers.image.ref.name" is ref (NULL: the only
 * one there is). */
int oci_parse_index(const char *json, size_t n, const char *ref, char **ret_manifest, struct schema_errors *e);
/* An image manifest: the config's digest and the layers, in order. */
int oci_parse_manifest(const char *json, size_t n, struct oci_image *img, struct schema_errors *e);
/* An image config: what to run (img->run), and rootfs.diff_ids
 * (img->diff_ids: type "layers", each a sha256 digest; absent: NULL). */
int oci_parse_config(const char *json, size_t n, struct oci_image *img, struct schema_errors *e);
/* The layers the manifest names against the config's diff_ids: as many
 * of each, when the config gives any (required: the same, or none). */
int oci_check_diff_ids(const struct oci_image *img, bool required, struct schema_errors *e);
/* manifest.json of a docker-archive (docker save, dockerTools): the entry
 * whose RepoTags has ref (NULL: the only one): the config's and the
 * layers' paths inside the archive. */
int oci_parse_docker_manifest(const char *json, size_t n, const char *ref, struct oci_image *img,
			      struct schema_errors *e);

/* Reads the OCI image layout in dir (a symlink to it, such as a Nix
 * result, is fine): oci-layout, index.json, then the manifest and config
 * blobs, each checked against its sha256 digest (and size), each at most
 * OCI_MAX_JSON; every layer blob must be there, a regular file of the
 * size the manifest gives (their content is checked when unpacked).
 * Below dir no symlink is followed. img->manifest_digest is the
 * manifest's digest. Errors: "FILE: reason". */
int oci_load_layout(const char *dir, const char *ref, struct oci_image *img, struct schema_errors *e);

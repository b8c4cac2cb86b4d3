/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Container image metadata (images/oci.c): an OCI layout's index, an image
 * manifest and config, and a docker-archive's manifest.json, valid and
 * hostile. */
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>

#include "oci.h"
#include "test.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static const char *first_error(struct schema_errors *e)
{
	return e->n ? e->lines[0] : "";
}

TEST(index_picks_the_manifest)
{
	static const char two[] =
		"{\"schemaVersion\":2,\"manifests\":["
		"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1 "\",\"size\":10,"
		"\"annotations\":{\"org.opencontainers.image.ref.name\":\"web\"}},"
		"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D2 "\",\"size\":10,"
		"\"annotations\":{\"org.opencontainers.image.ref.name\":\"db\"}}]}";
	struct schema_errors e = {};
	char *d = NULL;

	ASSERT(oci_parse_index(two, strlen(two), "db", &d, &e) == 0);
	ASSERT_STREQ(d, D2);
	free(d);
	ASSERT(oci_parse_index(two, strlen(two), NULL, &d, &e) == -EINVAL);
	ASSERT_STREQ(first_error(&e), "manifests: 2 image manifests; name one");
	schema_errors_clear(&e);
	ASSERT(oci_parse_index(two, strlen(two), "cache", &d, &e) == -ENOENT);
	ASSERT_STREQ(first_error(&e), "manifests: no image manifest named cache");
	schema_errors_clear(&e);

	static const char nested[] = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":"
				     "\"application/vnd.oci.image.index.v1+json\",\"digest\":\"" D1 "\"}]}";
	ASSERT(oci_parse_index(nested, strlen(nested), NULL, &d, &e) == -EINVAL);
	ASSERT(strstr(first_error(&e), "a nested index"));
	schema_errors_clear(&e);

	static const char bad[] = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":"
				  "\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:../../etc\"}]}";
	ASSERT(oci_parse_index(bad, strlen(bad), NULL, &d, &e) == -EINVAL);
	ASSERT_STREQ(first_error(&e), "manifests[0]: digest: must be sha256:<64 lowercase hex digits>");
	schema_errors_clear(&e);

	static const char dup[] = "{\"schemaVersion\":2,\"schemaVersion\":2,\"manifests\":[]}";
	ASSERT(oci_parse_index(dup, strlen(dup), NULL, &d, &e) == -EINVAL);
	ASSERT(strstr(first_error(&e), "index.json: not valid JSON"));
	schema_errors_clear(&e);
}

TEST(manifest_layers)
{
	static const char ok[] =
		"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		"\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" D1 "\",\"size\":5},"
		"\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" D2 "\",\"size\":7},"
		"{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" D3 "\",\"size\":9}]}";
	struct oci_image img = {};
	struct schema_errors e = {};

	ASSERT(oci_parse_manifest(ok, strlen(ok), &img, &e) == 0);
	ASSERT_STREQ(img.config_digest, D1);
	ASSERT_EQ(img.n_layers, (size_t)2);
	ASSERT(img.layers[0].compression == OCI_LAYER_GZIP && img.layers[0].size == 7);
	ASSERT(img.layers[1].compression == OCI_LAYER_ZSTD);
	ASSERT_STREQ(img.layers[1].digest, D3);
	oci_image_clear(&img);

	static const char foreign[] =
		"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
		"\"digest\":\"" D1 "\",\"size\":5},\"layers\":[{\"mediaType\":\"application/x-helm\",\"digest\":\"" D2
		"\",\"size\":7}]}";
	ASSERT(oci_parse_manifest(foreign, strlen(foreign), &img, &e) == -EINVAL);
	ASSERT_STREQ(first_error(&e),
		     "layers[0].mediaType: application/x-helm: not a layer vmd can unpack (tar, tar+gzip, tar+zstd)");
	oci_image_clear(&img);
	schema_errors_clear(&e);

	static const char helm[] = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.cncf.helm.config\","
				   "\"digest\":\"" D1 "\",\"size\":5},\"layers\":[]}";
	ASSERT(oci_parse_manifest(helm, strlen(helm), &img, &e) == -EINVAL);
	ASSERT(strstr(first_error(&e), "(not a container image?)"));
	oci_image_clear(&img);
	schema_errors_clear(&e);

	static const char negative[] =
		"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
		"\"digest\":\"" D1 "\",\"size\":5},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
		"\"digest\":\"" D2 "\",\"size\":-1}]}";
	ASSERT(oci_parse_manifest(negative, strlen(negative), &img, &e) == -EINVAL);
	ASSERT_STREQ(first_error(&e), "layers[0].size: must be a non-negative integer");
	oci_image_clear(&img);
	schema_errors_clear(&e);
}

TEST(config_what_to_run)
{
	static const char ok[] =
		"{\"architecture\":\"amd64\",\"config\":{\"Entrypoint\":[\"/bin/nginx\",\"-g\"],\"Cmd\":[],"
		"\"Env\":[\"PATH=/bin\",\"A=b=c\"],\"WorkingDir\":\"/srv\",\"User\":\"www:www\",\"StopSignal\":\"SIGQUIT\"},"
		"\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
	struct oci_image img = {};
	struct schema_errors e = {};

	ASSERT(oci_parse_config(ok, strlen(ok), &img, &e) == 0);
	ASSERT_STREQ(img.run.entrypoint[0], "/bin/nginx");
	ASSERT_STREQ(img.run.entrypoint[1], "-g");
	ASSERT(img.run.cmd && !img.run.cmd[0]); /* there, and empty */
	ASSERT_STREQ(img.run.env[1], "A=b=c");
	ASSERT_STREQ(img.run.workdir, "/srv");
	ASSERT_STREQ(img.run.user, "www:www");
	ASSERT_STREQ(img.run.stop_signal, "SIGQUIT");
	ASSERT(img.diff_ids && img.n_diff_ids == 0);
	oci_image_clear(&img);

	static const char ids[] = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\",\"" D2 "\"]}}";
	ASSERT(oci_parse_config(ids, strlen(ids), &img, &e) == 0);
	ASSERT_EQ(img.n_diff_ids, (size_t)2);
	ASSERT_STREQ(img.diff_ids[1], D2);
	/* Where they meet the manifest's layers: as many of each. */
	img.n_layers = 2;
	ASSERT(oci_check_diff_ids(&img, true, &e) == 0);
	img.n_layers = 1;
	ASSERT(oci_check_diff_ids(&img, false, &e) == -EINVAL);
	ASSERT_STREQ(first_error(&e), "config.rootfs.diff_ids: 2 digests for 1 layers");
	img.n_layers = 0;
	oci_image_clear(&img);
	schema_errors_clear(&e);
	ASSERT(oci_check_diff_ids(&img, false, &e) == 0);
	ASSERT(oci_check_diff_ids(&img, true, &e) == -EINVAL);
	ASSERT_STREQ(first_error(&e), "config.rootfs.diff_ids: required (one digest per layer)");
	schema_errors_clear(&e);

	static const char *const bad_ids[] = {
		"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:../x\"]}}",
		"{\"rootfs\":{\"type\":\"tarballs\",\"diff_ids\":[]}}",
		"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":\"" D1 "\"}}",
		"{\"rootfs\":[]}",
	};
	static const char *const bad_ids_errors[] = {
		"config.rootfs.diff_ids: [0]: must be sha256:<64 lowercase hex digits>",
		"config.rootfs.type: must be \"layers\"",
		"config.rootfs.diff_ids: must be an array of at most 256 digests",
		"config.rootfs: must be an object",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad_ids); i++) {
		ASSERT(oci_parse_config(bad_ids[i], strlen(bad_ids[i]), &img, &e) == -EINVAL);
		ASSERT_STREQ(first_error(&e), bad_ids_errors[i]);
		oci_image_clear(&img);
		schema_errors_clear(&e);
	}

	static const char none[] = "{\"rootfs\":{}}";
	ASSERT(oci_parse_config(none, strlen(none), &img, &e) == 0);
	ASSERT(!img.run.entrypoint && !img.run.cmd && !img.run.env && !img.run.user);

	static const char bad[] = "{\"config\":{\"Env\":[\"NOEQUALS\"],\"WorkingDir\":\"srv\",\"StopSignal\":\"kill me\"}}";
	ASSERT(oci_parse_config(bad, strlen(bad), &img, &e) == -EINVAL);
	ASSERT_STREQ(first_error(&e), "config.Env[0]: must be NAME=value");
	oci_image_clear(&img);
	schema_errors_clear(&e);

	static const char bad2[] = "{\"config\":{\"WorkingDir\":\"srv\",\"StopSignal\":\"kill me\",\"Cmd\":\"sh\"}}";
	ASSERT(oci_parse_config(bad2, strlen(bad2), &img, &e) == -EINVAL);
	ASSERT_STREQ(first_error(&e), "config.Cmd: must be an array of at most 4096 strings");
	oci_image_clear(&img);
	schema_errors_clear(&e);

	static const char bad3[] = "{\"config\":{\"WorkingDir\":\"srv\",\"StopSignal\":\"kill me\"}}";
	ASSERT(oci_parse_config(bad3, strlen(bad3), &img, &e) == -EINVAL);
	ASSERT_EQ(e.n, (size_t)2);
	ASSERT_STREQ(e.lines[0], "config.WorkingDir: must be an absolute path");
	ASSERT_STREQ(e.lines[1], "config.StopSignal: must be a signal name (SIGTERM) or number");
	oci_image_clear(&img);
	schema_errors_clear(&e);
}

TEST(docker_archive_manifest)
{
	/* What dockerTools.buildLayeredImage writes. */
	static const char ok[] =
		"[{\"Config\":\"abc.json\",\"RepoTags\":[\"web:latest\"],\"Layers\":[\"l1/layer.tar\",\"l2/layer.tar\"]},"
		"{\"Config\":\"def.json\",\"RepoTags\":[\"db:1\"],\"Layers\":[]}]";
	struct oci_image img = {};
	struct schema_errors e = {};

	ASSERT(oci_parse_docker_manifest(ok, strlen(ok), "web:latest", &img, &e) == 0);
	ASSERT_STREQ(img.config_path, "abc.json");
	ASSERT_EQ(img.n_layers, (size_t)2);
	ASSERT_STREQ(img.layers[1].path, "l2/layer.tar");
	oci_image_clear(&img);
	ASSERT(oci_parse_docker_manifest(ok, strlen(ok), NULL, &img, &e) == -EINVAL);
	ASSERT_STREQ(first_error(&e), "manifest.json: 2 images; name one");
	oci_image_clear(&img);
	schema_errors_clear(&e);

	static const char *const hostile[] = {
		"[{\"Config\":\"../../etc/passwd\",\"Layers\":[]}]",
		"[{\"Config\":\"/etc/passwd\",\"Layers\":[]}]",
		"[{\"Config\":\"a.json\",\"Layers\":[\"x/../../y\"]}]",
		"[{\"Config\":\"a.json\",\"Layers\":[\"x//y\"]}]",
		"[{\"Config\":\"a.json\",\"Layers\":[\"./y\"]}]",
		"[{\"Config\":\"a\\u0000b\",\"Layers\":[]}]",
	};
	for (size_t i = 0; i < ELEMENTSOF(hostile); i++) {
		ASSERT(oci_parse_docker_manifest(hostile[i], strlen(hostile[i]), NULL, &img, &e) == -EINVAL);
		ASSERT(e.n == 1);
		oci_image_clear(&img);
		schema_errors_clear(&e);
	}
}

TEST(digests)
{
	ASSERT(oci_digest_valid(D1));
	ASSERT(!oci_digest_valid("sha256:ABCDEF1111111111111111111111111111111111111111111111111111111111"));
	ASSERT(!oci_digest_valid("sha512:1111111111111111111111111111111111111111111111111111111111111111"));
	ASSERT(!oci_digest_valid("sha256:111"));
	ASSERT(!oci_digest_valid(NULL));
}

/* Writes text as a blob of the layout in dir; its digest in out. */
static void put_blob(const char *dir, const char *text, char out[72])
{
	unsigned char h[crypto_hash_sha256_BYTES];
	char hex[65];
	_cleanup_free_ char *path = NULL;

	ASSERT(sodium_init() >= 0);
	crypto_hash_sha256(h, (const unsigned char *)text, strlen(text));
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	snprintf(out, 72, "sha256:%s", hex);
	path = xasprintf("%s/blobs/sha256/%s", dir, hex);
	ASSERT(write_file(path, text, 0644, 0) == 0);
}

TEST(layout_on_disk)
{
	_cleanup_free_ char *dir = tmpdir(), *blobs = xasprintf("%s/blobs/sha256", dir);
	_cleanup_free_ char *manifest = NULL, *index = NULL, *cfgpath = NULL, *lpath = NULL, *p = NULL;
	char layer[72], cfg[72], man[72];
	struct oci_image img = {};
	struct schema_errors e = {};

	ASSERT(mkdir_p(blobs, 0755) == 0);
	put_blob(dir, "layer bytes", layer);
	put_blob(dir, "{\"config\":{\"Cmd\":[\"/bin/sh\"]}}", cfg);
	manifest = xasprintf("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
			     "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
			     "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":11}]}",
			     cfg, strlen("{\"config\":{\"Cmd\":[\"/bin/sh\"]}}"), layer);
	put_blob(dir, manifest, man);
	index = xasprintf("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":"
			  "\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":%zu}]}",
			  man, strlen(manifest));
	p = xasprintf("%s/index.json", dir);
	ASSERT(write_file(p, index, 0644, 0) == 0);
	free(p);
	p = xasprintf("%s/oci-layout", dir);
	ASSERT(write_file(p, "{\"imageLayoutVersion\":\"1.0.0\"}", 0644, 0) == 0);

	ASSERT(oci_load_layout(dir, NULL, &img, &e) == 0);
	ASSERT_EQ(img.n_layers, (size_t)1);
	ASSERT_STREQ(img.run.cmd[0], "/bin/sh");
	ASSERT_STREQ(img.manifest_digest, man);
	ASSERT(!img.diff_ids); /* optional in a layout */
	oci_image_clear(&img);

	/* A config whose content is not its digest's. */
	cfgpath = xasprintf("%s/blobs/sha256/%s", dir, cfg + 7);
	ASSERT(unlink(cfgpath) == 0);
	ASSERT(write_file(cfgpath, "{\"config\":{\"Cmd\":[\"/bin/ev\"]}}", 0644, 0) == 0);
	ASSERT(oci_load_layout(dir, NULL, &img, &e) == -EBADMSG);
	ASSERT(e.n == 1 && strstr(e.lines[0], "its content does not match its digest (sha256)"));
	oci_image_clear(&img);
	schema_errors_clear(&e);

	/* A blob that is a symlink (to what matches, even). */
	ASSERT(unlink(cfgpath) == 0);
	free(p);
	p = xasprintf("%s/elsewhere", dir);
	ASSERT(write_file(p, "{\"config\":{\"Cmd\":[\"/bin/sh\"]}}", 0644, 0) == 0);
	ASSERT(symlink(p, cfgpath) == 0);
	ASSERT(oci_load_layout(dir, NULL, &img, &e) == -ELOOP);
	ASSERT(e.n == 1 && strstr(e.lines[0], "a symlink (refused)"));
	oci_image_clear(&img);
	schema_errors_clear(&e);
	ASSERT(unlink(cfgpath) == 0 && rename(p, cfgpath) == 0);

	/* A layer that is not the size the manifest gives. */
	lpath = xasprintf("%s/blobs/sha256/%s", dir, layer + 7);
	ASSERT(truncate(lpath, 5) == 0);
	ASSERT(oci_load_layout(dir, NULL, &img, &e) == -EBADMSG);
	ASSERT(e.n == 1 && strstr(e.lines[0], "its size is not the one the manifest gives"));
	oci_image_clear(&img);
	schema_errors_clear(&e);
	ASSERT(unlink(lpath) == 0);
	ASSERT(oci_load_layout(dir, NULL, &img, &e) == -ENOENT);
	oci_image_clear(&img);
	schema_errors_clear(&e);
	rm_tree(dir);
}

RUN_TESTS(T(index_picks_the_manifest), T(manifest_layers), T(config_what_to_run), T(docker_archive_manifest),
	  T(digests), T(layout_on_disk))

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sys/stat.h>

#include "disk.h"
#include "keydir.h"
#include "log.h"
#include "test.h"
#include "wgkey.h"

static char *slurp(const char *path)
{
	char *buf = NULL;
	size_t n;

	return read_file(path, 4096, &buf, &n) == 0 ? buf : NULL;
}

static void spit(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ASSERT(fd >= 0);
	ASSERT(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	ASSERT(lstat(path, &st) == 0);
	return st.st_mode & 07777;
}

/* RFC 7748, section 6.1: Alice's key pair. */
TEST(x25519_vector)
{
	static const uint8_t priv[32] = {
		0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2, 0x66, 0x45,
		0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9, 0x2c, 0x2a,
	};
	static const uint8_t want[32] = {
		0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e, 0xf7, 0x5a,
		0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a,
	};
	uint8_t pub[32], back[32];
	char b64[WG_KEY_B64_LEN + 1];

	ASSERT(wg_key_public(priv, pub) == 0);
	ASSERT(memcmp(pub, want, 32) == 0);
	wg_key_to_base64(pub, b64);
	ASSERT_STREQ(b64, "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=");
	ASSERT(wg_key_from_base64("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\n", back) == 0);
	ASSERT(memcmp(back, want, 32) == 0);
	ASSERT(wg_key_from_base64("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTm=", back) == -EBADMSG);
	ASSERT(wg_key_from_base64("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=x", back) == -EBADMSG);
	ASSERT(wg_key_from_base64("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066Spjqqb!mo=", back) == -EBADMSG);
	ASSERT(wg_key_from_base64("", back) == -EBADMSG);
}

TEST(generated_keys_are_clamped_and_differ)
{
	uint8_t a[32], b[32];

	ASSERT(wg_key_generate(a) == 0);
	ASSERT(wg_key_generate(b) == 0);
	ASSERT(memcmp(a, b, 32) != 0);
	ASSERT((a[0] & 7) == 0 && (a[31] & 0xc0) == 0x40);
}

TEST(wireguard_keydir)
{
	_cleanup_free_ char *dir = tmpdir();
	_cleanup_free_ char *priv = xasprintf("%s/privatekey", dir), *pub = xasprintf("%s/publickey", dir);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint8_t k[32], k2[32];
	char b64[WG_KEY_B64_LEN + 1];
	bool created;

	ASSERT(fd >= 0);
	ASSERT(wg_keydir_ensure(fd, &created) == 0);
	ASSERT(created);
	ASSERT_EQ(mode_of(priv), 0600);
	ASSERT_EQ(mode_of(pub), 0644);
	_cleanup_free_ char *p1 = slurp(priv), *q1 = slurp(pub);
	ASSERT(p1 && strlen(p1) == 45 && p1[44] == '\n');
	ASSERT(wg_key_from_base64(p1, k) == 0);
	ASSERT(wg_key_public(k, k2) == 0);
	wg_key_to_base64(k2, b64);
	ASSERT(q1 && strncmp(q1, b64, 44) == 0);

	/* Never overwritten: a second call keeps the key. */
	ASSERT(wg_keydir_ensure(fd, &created) == 0);
	ASSERT(!created);
	_cleanup_free_ char *p2 = slurp(priv);
	ASSERT_STREQ(p1, p2);

	/* A missing or stale public key is rederived from the private one. */
	ASSERT(unlink(pub) == 0);
	ASSERT(wg_keydir_ensure(fd, &created) == 0);
	_cleanup_free_ char *q2 = slurp(pub);
	ASSERT_STREQ(q1, q2);
	spit(pub, "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\n", 0644);
	ASSERT(wg_keydir_ensure(fd, &created) == 0);
	_cleanup_free_ char *q3 = slurp(pub);
	ASSERT_STREQ(q1, q3);

	/* A private key put in place by hand is used as it is. */
	spit(priv, "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n", 0600);
	ASSERT(wg_keydir_ensure(fd, &created) == 0);
	ASSERT(!created);
	_cleanup_free_ char *q4 = slurp(pub);
	ASSERT_STREQ(q4, "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\n");

	/* Garbage in privatekey is an error, and stays as it was. */
	spit(priv, "not a key\n", 0600);
	ASSERT(wg_keydir_ensure(fd, &created) == -EBADMSG);
	_cleanup_free_ char *p3 = slurp(priv);
	ASSERT_STREQ(p3, "not a key\n");
	/* So is a symlink in its place. */
	ASSERT(unlink(priv) == 0);
	ASSERT(symlink("/etc/passwd", priv) == 0);
	ASSERT(wg_keydir_ensure(fd, &created) < 0);
	ASSERT(unlink(priv) == 0);
	close(fd);
	rm_tree(dir);
}

TEST(keydir_prepare)
{
	_cleanup_free_ char *dir = tmpdir();
	_cleanup_free_ char *keys = xasprintf("%s/keys", dir), *src = xasprintf("%s/src", dir);
	_cleanup_free_ char *link = xasprintf("%s/link", dir), *file = xasprintf("%s/file", dir);
	struct keydir_key k = { .name = "wg", .wireguard = true };
	char *path = NULL;

	/* The default place, made 0700 at each level. */
	ASSERT(keydir_prepare(keys, "edge", &k, &path, NULL) == 0);
	_cleanup_free_ char *want = xasprintf("%s/edge/wg", keys), *priv = xasprintf("%s/privatekey", want);
	ASSERT_STREQ(path, want);
	free(path);
	ASSERT_EQ(mode_of(keys), 0700);
	ASSERT_EQ(mode_of(want), 0700);
	ASSERT_EQ(mode_of(priv), 0600);
	_cleanup_free_ char *p1 = slurp(priv);
	ASSERT(keydir_prepare(keys, "edge", &k, &path, NULL) == 0);
	free(path);
	_cleanup_free_ char *p2 = slurp(priv);
	ASSERT_STREQ(p1, p2);

	/* An explicit source is created if missing (its parent must exist). */
	k.wireguard = false;
	k.source = src;
	ASSERT(keydir_prepare(keys, "edge", &k, &path, NULL) == 0);
	ASSERT_STREQ(path, src);
	free(path);
	ASSERT_EQ(mode_of(src), 0700);
	_cleanup_free_ char *deep = xasprintf("%s/no/such", dir);
	k.source = deep;
	ASSERT(keydir_prepare(keys, "edge", &k, &path, NULL) == -ENOENT);

	/* Symlinks and files are refused, at the source and at the default place. */
	ASSERT(symlink(src, link) == 0);
	k.source = link;
	ASSERT(keydir_prepare(keys, "edge", &k, &path, NULL) == -ENOTDIR);
	spit(file, "x", 0600);
	k.source = file;
	ASSERT(keydir_prepare(keys, "edge", &k, &path, NULL) == -ENOTDIR);
	k.source = NULL;
	_cleanup_free_ char *other = xasprintf("%s/other", keys);
	ASSERT(symlink(src, other) == 0);
	ASSERT(keydir_prepare(keys, "other", &k, &path, NULL) == -ENOTDIR);
	rm_tree(dir);
}

RUN_TESTS(T(x25519_vector), T(generated_keys_are_clamped_and_differ), T(wireguard_keydir), T(keydir_prepare))

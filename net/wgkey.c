/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"
#include "wgkey.h"

static int init(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

int wg_key_generate(uint8_t priv[WG_KEY_LEN])
{
	int r = init();

	if (r < 0)
		return r;
	randombytes_buf(priv, WG_KEY_LEN);
	priv[0] &= 248;
	priv[31] = (priv[31] & 127) | 64;
	return 0;
}

int wg_key_public(const uint8_t priv[WG_KEY_LEN], uint8_t pub[WG_KEY_LEN])
{
	int r = init();

	if (r < 0)
		return r;
	return crypto_scalarmult_curve25519_base(pub, priv) == 0 ? 0 : -EINVAL;
}

void wg_key_to_base64(const uint8_t key[WG_KEY_LEN], char out[WG_KEY_B64_LEN + 1])
{
	sodium_bin2base64(out, WG_KEY_B64_LEN + 1, key, WG_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

int wg_key_from_base64(const char *s, uint8_t key[WG_KEY_LEN])
{
	size_t n = 0;

	if (init() < 0)
		return -EIO;
	if (strnlen(s, WG_KEY_B64_LEN + 1) < WG_KEY_B64_LEN || s[WG_KEY_B64_LEN - 1] != '=')
		return -EBADMSG;
	for (const char *p = s + WG_KEY_B64_LEN; *p; p++)
		if (!strchr(" \t\r\n", *p))
			return -EBADMSG;
	if (sodium_base642bin(key, WG_KEY_LEN, s, WG_KEY_B64_LEN, NULL, &n, NULL,
			      sodium_base64_VARIANT_ORIGINAL) < 0 || n != WG_KEY_LEN)
		return -EBADMSG;
	return 0;
}

/* Reads a small key file, refusing anything but a regular file. */
static int read_key_file(int dirfd, const char *name, uint8_t key[WG_KEY_LEN])
{
	char buf[128];
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	ssize_t n;
	int r;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADMSG;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	r = wg_key_from_base64(buf, key);
	sodium_memzero(buf, sizeof(buf));
	return r;
}

/* Writes name as a whole or not at all, and fails with EEXIST rather than
 * replace anything. */
static int write_key_file(int dirfd, const char *name, const uint8_t key[WG_KEY_LEN], mode_t mode)
{
	char text[WG_KEY_B64_LEN + 2];
	int r;

	wg_key_to_base64(key, text);
	text[WG_KEY_B64_LEN] = '\n';
	text[WG_KEY_B64_LEN + 1] = 0;
	r = write_file_at(dirfd, name, text, WG_KEY_B64_LEN + 1, mode, WRITE_FILE_NOREPLACE | WRITE_FILE_SYNC);
	sodium_memzero(text, sizeof(text));
	return r;
}

int wg_keydir_private(int dirfd, uint8_t priv[WG_KEY_LEN])
{
	return read_key_file(dirfd, "privatekey", priv);
}

int wg_keydir_public(int dirfd, uint8_t pub[WG_KEY_LEN])
{
	uint8_t priv[WG_KEY_LEN];
	int r;

	r = wg_keydir_private(dirfd, priv);
	if (r == 0)
		r = wg_key_public(priv, pub);
	sodium_memzero(priv, sizeof(priv));
	return r;
}

int wg_keydir_ensure(int dirfd, bool *ret_created)
{
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN], old[WG_KEY_LEN];
	bool created = false;
	int r;

	r = wg_keydir_public(dirfd, pub);
	if (r == -ENOENT) {
		r = wg_key_generate(priv);
		if (r == 0)
			r = wg_key_public(priv, pub);
		if (r == 0)
			r = write_key_file(dirfd, "privatekey", priv, 0600);
		sodium_memzero(priv, sizeof(priv));
		/* Someone else made one meanwhile: theirs stands. */
		if (r == -EEXIST)
			r = wg_keydir_public(dirfd, pub);
		else if (r == 0)
			created = true;
	}
	if (r < 0)
		return r;

	/* The public half is derived data: rewrite it when it is missing or
	 * does not match (a private key put in place by hand). */
	r = read_key_file(dirfd, "publickey", old);
	if (r == 0 && memcmp(old, pub, WG_KEY_LEN) == 0)
		goto done;
	if (r != -ENOENT && unlinkat(dirfd, "publickey", 0) < 0 && errno != ENOENT)
		return -errno;
	r = write_key_file(dirfd, "publickey", pub, 0644);
	if (r < 0 && r != -EEXIST)
		return r;
done:
	if (ret_created)
		*ret_created = created;
	return 0;
}

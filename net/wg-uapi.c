/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The wireguard-go backend of wg.h: its cross-platform UAPI, text lines
 * on a unix socket. The text format (wg_uapi_format_*, wg_uapi_parse_get)
 * is pure and public, for the tests and the fuzzer; the calls send it
 * and read the reply. */
#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"
#include "wg-internal.h"

#define UAPI_REPLY_MAX (1024 * 1024)

static void hex(const uint8_t key[WG_KEY_LEN], char out[2 * WG_KEY_LEN + 1])
{
	sodium_bin2hex(out, 2 * WG_KEY_LEN + 1, key, WG_KEY_LEN);
}

static int unhex(const char *s, uint8_t key[WG_KEY_LEN])
{
	size_t n = 0;

	if (strlen(s) != 2 * WG_KEY_LEN)
		return -EBADMSG;
	if (sodium_hex2bin(key, WG_KEY_LEN, s, 2 * WG_KEY_LEN, NULL, &n, NULL) < 0 || n != WG_KEY_LEN)
		return -EBADMSG;
	return 0;
}

char *wg_uapi_format_device(const uint8_t private_key[WG_KEY_LEN], uint16_t listen_port)
{
	char k[2 * WG_KEY_LEN + 1];
	char *s;

	hex(private_key, k);
	s = xasprintf("set=1\nprivate_key=%s\nlisten_port=%u\n\n", k, listen_port);
	sodium_memzero(k, sizeof(k));
	return s;
}

/* Endpoints and allowed IPs come from validated configuration, but a
 * newline in one would smuggle a command into the protocol: refuse. */
static bool plain(const char *s)
{
	return !strpbrk(s, "\n=");
}

static bool peer_plain(const struct wg_peer *p)
{
	if (p->endpoint[0] && !plain(p->endpoint))
		return false;
	for (char **a = p->allowed_ips; a && *a; a++)
		if (!plain(*a))
			return false;
	return true;
}

char *wg_uapi_format_peer(const struct wg_peer *p, bool remove)
{
	_cleanup_free_ char *out = NULL;
	char k[2 * WG_KEY_LEN + 1];
	size_t len = 0;
	FILE *f;

	if (!remove && !peer_plain(p)) {
		errno = EINVAL;
		return NULL;
	}
	f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	hex(p->public_key, k);
	fprintf(f, "set=1\npublic_key=%s\n", k);
	if (remove)
		fputs("remove=true\n", f);
	else {
		if (p->endpoint[0])
			fprintf(f, "endpoint=%s\n", p->endpoint);
		fprintf(f, "persistent_keepalive_interval=%u\nreplace_allowed_ips=true\n", p->keepalive);
		for (char **a = p->allowed_ips; a && *a; a++)
			fprintf(f, "allowed_ip=%s\n", *a);
	}
	fputs("\n", f);
	if (fclose(f) != 0)
		return NULL;
	return TAKE_PTR(out);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -EBADMSG;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EBADMSG;
	*ret = v;
	return 0;
}

int wg_uapi_parse_get(const char *text, struct wg_device *ret)
{
	struct wg_device d = {};
	struct wg_peer *peer = NULL;
	const char *line = text;
	int err = -EBADMSG, r = 0;
	bool ended = false;

	while (*line && r == 0) {
		const char *nl = strchr(line, '\n');
		_cleanup_free_ char *l = nl ? strndup(line, (size_t)(nl - line)) : NULL;
		char *eq, *key, *val;
		uint64_t v;

		if (!nl) {
			r = -EBADMSG;
			break;
		}
		if (!l) {
			r = -ENOMEM;
			break;
		}
		line = nl + 1;
		if (!*l) {
			ended = true;
			break;
		}
		eq = strchr(l, '=');
		if (!eq) {
			r = -EBADMSG;
			break;
		}
		*eq = 0;
		key = l;
		val = eq + 1;
		if (streq(key, "errno")) {
			r = parse_u64(val, 4095, &v);
			err = -(int)v;
		} else if (streq(key, "private_key")) {
			r = peer ? -EBADMSG : unhex(val, d.private_key);
			d.has_private_key = r == 0;
		} else if (streq(key, "listen_port")) {
			r = parse_u64(val, 65535, &v);
			d.listen_port = (uint16_t)v;
		} else if (streq(key, "public_key")) {
			struct wg_peer *np;

			if (d.n_peers >= 65536) {
				r = -E2BIG;
				break;
			}
			np = realloc(d.peers, (d.n_peers + 1) * sizeof(*np));
			if (!np) {
				r = -ENOMEM;
				break;
			}
			d.peers = np;
			peer = &d.peers[d.n_peers++];
			*peer = (struct wg_peer){};
			r = unhex(val, peer->public_key);
		} else if (!peer) {
			/* Device-level keys we do not use: fwmark and the like. */
			continue;
		} else if (streq(key, "endpoint")) {
			if (strlen(val) >= sizeof(peer->endpoint))
				r = -EBADMSG;
			else
				snprintf(peer->endpoint, sizeof(peer->endpoint), "%s", val);
		} else if (streq(key, "allowed_ip")) {
			r = strv_extend(&peer->allowed_ips, val);
		} else if (streq(key, "rx_bytes")) {
			r = parse_u64(val, UINT64_MAX, &peer->rx_bytes);
		} else if (streq(key, "tx_bytes")) {
			r = parse_u64(val, UINT64_MAX, &peer->tx_bytes);
		} else if (streq(key, "last_handshake_time_sec")) {
			r = parse_u64(val, INT64_MAX, &v);
			peer->last_handshake_sec = (int64_t)v;
		} else if (streq(key, "persistent_keepalive_interval")) {
			r = parse_u64(val, 65535, &v);
			peer->keepalive = (uint16_t)v;
		}
		/* Anything else (preshared_key, protocol_version, ...) is
		 * skipped: newer daemons may add keys. */
	}
	if (r == 0 && !ended)
		r = -EBADMSG;
	if (r == 0)
		r = err;
	if (r < 0) {
		wg_device_clear(&d);
		return r;
	}
	*ret = d;
	return 0;
}

/* One request, one reply (up to the blank line that ends it). */
static int uapi_call(struct wg *w, const char *request, char **ret_reply)
{
	_cleanup_close_ int fd = unix_connect(w->socket_path);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;
	usec_t deadline = now_usec() + WG_IO_TIMEOUT_USEC;
	int r;

	if (fd < 0)
		return fd;
	r = write_all(fd, request, strlen(request));
	if (r < 0)
		return r;
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		usec_t now = now_usec();
		ssize_t n;

		if (len >= 2 && buf[len - 1] == '\n' && buf[len - 2] == '\n')
			break;
		if (now >= deadline)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)((deadline - now) / 1000) + 1);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r <= 0)
			continue;
		if (len + 4096 + 1 > cap) {
			char *nb;

			if (cap >= UAPI_REPLY_MAX)
				return -E2BIG;
			cap = cap ? cap * 2 : 8192;
			nb = realloc(buf, cap);
			if (!nb)
				return -ENOMEM;
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		len += (size_t)n;
		buf[len] = 0;
	}
	if (ret_reply)
		*ret_reply = TAKE_PTR(buf);
	return 0;
}

/* A "set" reply is just errno=N. */
static int uapi_set(struct wg *w, char *request)
{
	_cleanup_free_ char *reply = NULL;
	struct wg_device d;
	int r;

	if (!request)
		return errno == EINVAL ? -EINVAL : -ENOMEM;
	r = uapi_call(w, request, &reply);
	sodium_memzero(request, strlen(request));
	free(request);
	if (r < 0)
		return r;
	r = wg_uapi_parse_get(reply, &d);
	if (r == 0)
		wg_device_clear(&d);
	return r;
}

int wg_uapi_open(struct wg *w, const char *uapi_dir)
{
	w->socket_path = xasprintf("%s/%s.sock", uapi_dir ? uapi_dir : WG_UAPI_DIR, w->ifname);
	return w->socket_path ? 0 : -ENOMEM;
}

int wg_uapi_device_set(struct wg *w, const uint8_t private_key[WG_KEY_LEN], uint16_t listen_port)
{
	return uapi_set(w, wg_uapi_format_device(private_key, listen_port));
}

int wg_uapi_peer_set(struct wg *w, const struct wg_peer *p, bool remove)
{
	return uapi_set(w, wg_uapi_format_peer(p, remove));
}

int wg_uapi_device_get(struct wg *w, struct wg_device *ret)
{
	_cleanup_free_ char *reply = NULL;
	int r;

	r = uapi_call(w, "get=1\n\n", &reply);
	if (r == 0)
		r = wg_uapi_parse_get(reply, ret);
	if (reply)
		sodium_memzero(reply, strlen(reply));
	return r;
}

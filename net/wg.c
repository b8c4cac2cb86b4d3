/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/time_types.h>
#include <linux/wireguard.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netlink/attr.h>
#include <netlink/errno.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "link.h"
#include "util.h"
#include "wg.h"

#define UAPI_REPLY_MAX (1024 * 1024)
/* The most one SET_DEVICE request carries: a peer with more allowed IPs
 * than fit goes on in further requests, as wireguard-tools does. */
#define KERNEL_REQUEST_SIZE 4096
#define KERNEL_RECV_SIZE (64 * 1024)
/* A dump the device changed under (NLM_F_DUMP_INTR) is read again. */
#define KERNEL_DUMP_TRIES 16
#define PEERS_MAX 65536

struct wg {
	enum wg_backend backend;
	char ifname[LINK_NAME_MAX + 1];
	char *socket_path;      /* UAPI */
	struct nl_sock *genl;   /* kernel */
	int family;
};

static int kernel_open(struct wg *w);

int wg_open(enum wg_backend backend, const char *ifname, const char *uapi_dir, struct wg **ret)
{
	_cleanup_(wg_closep) struct wg *w = NULL;
	int r;

	if (!*ifname || strlen(ifname) > LINK_NAME_MAX || strchr(ifname, '/'))
		return -EINVAL;
	if (backend != WG_BACKEND_UAPI && backend != WG_BACKEND_KERNEL)
		return -EOPNOTSUPP;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->backend = backend;
	snprintf(w->ifname, sizeof(w->ifname), "%s", ifname);
	if (backend == WG_BACKEND_KERNEL)
		r = kernel_open(w);
	else {
		w->socket_path = xasprintf("%s/%s.sock", uapi_dir ? uapi_dir : WG_UAPI_DIR, ifname);
		r = w->socket_path ? 0 : -ENOMEM;
	}
	if (r < 0)
		return r;
	*ret = TAKE_PTR(w);
	return 0;
}

void wg_close(struct wg *w)
{
	if (!w)
		return;
	free(w->socket_path);
	if (w->genl)
		nl_socket_free(w->genl);
	free(w);
}

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

void wg_device_clear(struct wg_device *d)
{
	for (size_t i = 0; i < d->n_peers; i++)
		strv_free(d->peers[i].allowed_ips);
	free(d->peers);
	sodium_memzero(d, sizeof(*d));
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

/* The kernel backend: generic netlink, the "wireguard" family
 * (include/uapi/linux/wireguard.h). */

static int genl_err(int e)
{
	switch (e < 0 ? -e : e) {
	case 0:
		return 0;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_AGAIN:
		return -ETIMEDOUT; /* SO_RCVTIMEO ran out */
	case NLE_PERM:
	case NLE_NOACCESS:
		return -EPERM;
	case NLE_NODEV:
		return -ENODEV;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	case NLE_MSGSIZE:
		return -EMSGSIZE;
	case NLE_DUMP_INTR:
		return -EINTR;
	default:
		return -EIO;
	}
}

static int kernel_open(struct wg *w)
{
	struct timeval tv = {
		.tv_sec = (time_t)(WG_IO_TIMEOUT_USEC / USEC_PER_SEC),
		.tv_usec = (suseconds_t)(WG_IO_TIMEOUT_USEC % USEC_PER_SEC),
	};
	struct nl_sock *rt = NULL;
	int r;

	w->genl = nl_socket_alloc();
	if (!w->genl)
		return -ENOMEM;
	r = genl_connect(w->genl);
	if (r < 0)
		return genl_err(r);
	if (setsockopt(nl_socket_get_fd(w->genl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	/* One read per message into one buffer, wiped after: libnl's default
	 * (peek, then grow) would free a copy of a message holding the
	 * private key unwiped. The kernel caps dump messages at 32 KiB. */
	r = nl_socket_set_msg_buf_size(w->genl, KERNEL_RECV_SIZE);
	if (r < 0)
		return genl_err(r);
	nl_socket_disable_msg_peek(w->genl);
	/* No such family: no module, or one that could not be loaded. */
	w->family = genl_ctrl_resolve(w->genl, WG_GENL_NAME);
	if (w->family < 0)
		return w->family == -NLE_OBJ_NOTFOUND ? -EOPNOTSUPP : genl_err(w->family);
	/* Every request says whether it wants an ACK. */
	nl_socket_disable_auto_ack(w->genl);

	r = netlink_open(&rt);
	if (r < 0)
		return r;
	r = wireguard_link_lookup(rt, w->ifname);
	netlink_close(rt);
	return r < 0 ? r : 0;
}

static void msg_freep(struct nl_msg **m)
{
	if (!*m)
		return;
	/* It may carry a private key. */
	sodium_memzero(nlmsg_hdr(*m), nlmsg_get_max_size(*m));
	nlmsg_free(*m);
}
#define _cleanup_msg_ _cleanup_(msg_freep)

static int kernel_request(struct wg *w, uint8_t cmd, int flags, struct nl_msg **ret)
{
	_cleanup_msg_ struct nl_msg *m = nlmsg_alloc_size(KERNEL_REQUEST_SIZE);

	if (!m)
		return -ENOMEM;
	if (!genlmsg_put(m, NL_AUTO_PORT, NL_AUTO_SEQ, w->family, 0, flags, cmd, WG_GENL_VERSION) ||
	    nla_put_string(m, WGDEVICE_A_IFNAME, w->ifname) < 0)
		return -ENOMEM;
	*ret = TAKE_PTR(m);
	return 0;
}

static bool attr_len_is(const struct nlattr *a, int len)
{
	return nla_len(a) == len;
}

static int format_endpoint(const struct nlattr *a, char out[static 64])
{
	struct sockaddr_storage ss = {};
	char ip[INET6_ADDRSTRLEN], zone[IF_NAMESIZE + 12] = "";
	int len = nla_len(a);

	if (len < (int)sizeof(sa_family_t) || len > (int)sizeof(ss))
		return -EBADMSG;
	memcpy(&ss, nla_data(a), (size_t)len);
	if (ss.ss_family == AF_INET && len == (int)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(out, 64, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (ss.ss_family == AF_INET6 && len == (int)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
		char name[IF_NAMESIZE];

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		if (sin6->sin6_scope_id && if_indextoname(sin6->sin6_scope_id, name))
			snprintf(zone, sizeof(zone), "%%%s", name);
		else if (sin6->sin6_scope_id)
			snprintf(zone, sizeof(zone), "%%%u", sin6->sin6_scope_id);
		snprintf(out, 64, "[%s%s]:%u", ip, zone, ntohs(sin6->sin6_port));
	} else
		return -EBADMSG;
	return 0;
}

static int format_allowed_ip(struct nlattr *nest, char ***list)
{
	struct nlattr *tb[WGALLOWEDIP_A_MAX + 1];
	char ip[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 5];
	uint16_t family;
	unsigned cidr;

	if (nla_parse_nested(tb, WGALLOWEDIP_A_MAX, nest, NULL) < 0)
		return -EBADMSG;
	if (!tb[WGALLOWEDIP_A_FAMILY] || !attr_len_is(tb[WGALLOWEDIP_A_FAMILY], 2) ||
	    !tb[WGALLOWEDIP_A_IPADDR] || !tb[WGALLOWEDIP_A_CIDR_MASK] ||
	    !attr_len_is(tb[WGALLOWEDIP_A_CIDR_MASK], 1))
		return -EBADMSG;
	family = nla_get_u16(tb[WGALLOWEDIP_A_FAMILY]);
	cidr = nla_get_u8(tb[WGALLOWEDIP_A_CIDR_MASK]);
	if (family == AF_INET && attr_len_is(tb[WGALLOWEDIP_A_IPADDR], 4) && cidr <= 32)
		inet_ntop(AF_INET, nla_data(tb[WGALLOWEDIP_A_IPADDR]), ip, sizeof(ip));
	else if (family == AF_INET6 && attr_len_is(tb[WGALLOWEDIP_A_IPADDR], 16) && cidr <= 128)
		inet_ntop(AF_INET6, nla_data(tb[WGALLOWEDIP_A_IPADDR]), ip, sizeof(ip));
	else
		return -EBADMSG;
	snprintf(buf, sizeof(buf), "%s/%u", ip, cidr);
	return strv_extend(list, buf);
}

static int parse_peer(struct nlattr *nest, struct wg_device *d)
{
	struct nlattr *tb[WGPEER_A_MAX + 1], *a;
	struct wg_peer *p;
	int rem, r;

	if (nla_parse_nested(tb, WGPEER_A_MAX, nest, NULL) < 0)
		return -EBADMSG;
	a = tb[WGPEER_A_PUBLIC_KEY];
	if (!a || !attr_len_is(a, WG_KEY_LEN))
		return -EBADMSG;
	/* A peer whose allowed IPs do not fit in one message goes on at the
	 * start of the next one, under its key again: merge. */
	if (d->n_peers > 0 && memcmp(d->peers[d->n_peers - 1].public_key, nla_data(a), WG_KEY_LEN) == 0)
		p = &d->peers[d->n_peers - 1];
	else {
		struct wg_peer *np;

		if (d->n_peers >= PEERS_MAX)
			return -E2BIG;
		np = realloc(d->peers, (d->n_peers + 1) * sizeof(*np));
		if (!np)
			return -ENOMEM;
		d->peers = np;
		p = &d->peers[d->n_peers++];
		*p = (struct wg_peer){};
		memcpy(p->public_key, nla_data(a), WG_KEY_LEN);
	}
	if ((a = tb[WGPEER_A_ENDPOINT])) {
		r = format_endpoint(a, p->endpoint);
		if (r < 0)
			return r;
	}
	if ((a = tb[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL])) {
		if (!attr_len_is(a, 2))
			return -EBADMSG;
		p->keepalive = nla_get_u16(a);
	}
	if ((a = tb[WGPEER_A_LAST_HANDSHAKE_TIME])) {
		struct __kernel_timespec ts;

		if (!attr_len_is(a, sizeof(ts)))
			return -EBADMSG;
		memcpy(&ts, nla_data(a), sizeof(ts));
		if (ts.tv_sec < 0)
			return -EBADMSG;
		p->last_handshake_sec = ts.tv_sec;
	}
	if ((a = tb[WGPEER_A_RX_BYTES])) {
		if (!attr_len_is(a, 8))
			return -EBADMSG;
		p->rx_bytes = nla_get_u64(a);
	}
	if ((a = tb[WGPEER_A_TX_BYTES])) {
		if (!attr_len_is(a, 8))
			return -EBADMSG;
		p->tx_bytes = nla_get_u64(a);
	}
	if (tb[WGPEER_A_ALLOWEDIPS])
		nla_for_each_nested(a, tb[WGPEER_A_ALLOWEDIPS], rem) {
			r = format_allowed_ip(a, &p->allowed_ips);
			if (r < 0)
				return r;
		}
	return 0;
}

/* One message of a GET_DEVICE dump. The device's own attributes come in
 * the first one only; every message may carry peers. */
static int parse_device(struct nlmsghdr *h, struct wg_device *d)
{
	struct nlattr *tb[WGDEVICE_A_MAX + 1], *a;
	int rem, r;

	if (genlmsg_parse(h, 0, tb, WGDEVICE_A_MAX, NULL) < 0)
		return -EBADMSG;
	if ((a = tb[WGDEVICE_A_PRIVATE_KEY])) {
		if (!attr_len_is(a, WG_KEY_LEN))
			return -EBADMSG;
		memcpy(d->private_key, nla_data(a), WG_KEY_LEN);
		d->has_private_key = true;
	}
	if ((a = tb[WGDEVICE_A_LISTEN_PORT])) {
		if (!attr_len_is(a, 2))
			return -EBADMSG;
		d->listen_port = nla_get_u16(a);
	}
	if (tb[WGDEVICE_A_PEERS])
		nla_for_each_nested(a, tb[WGDEVICE_A_PEERS], rem) {
			r = parse_peer(a, d);
			if (r < 0)
				return r;
		}
	return 0;
}

/* Sends m and reads up to its ACK, error or end of dump; a dump's
 * messages are parsed into dump. -EINTR: the dump was interrupted. */
static int kernel_call(struct wg *w, struct nl_msg *m, struct wg_device *dump)
{
	usec_t deadline = now_usec() + WG_IO_TIMEOUT_USEC;
	bool done = false, interrupted = false;
	uint32_t seq;
	int r, err = 0;

	r = nl_send_auto(w->genl, m);
	if (r < 0)
		return genl_err(r);
	seq = nlmsg_hdr(m)->nlmsg_seq;
	while (!done) {
		struct sockaddr_nl sa = {};
		unsigned char *buf = NULL;
		struct nlmsghdr *h;
		int n, rem;

		if (now_usec() >= deadline)
			return -ETIMEDOUT;
		n = nl_recv(w->genl, &sa, &buf, NULL);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return genl_err(n);
		rem = n;
		for (h = (struct nlmsghdr *)buf; !done && nlmsg_ok(h, rem); h = nlmsg_next(h, &rem)) {
			r = 0;
			/* What an earlier call gave up on is still queued. */
			if (sa.nl_pid != 0 || h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_flags & NLM_F_DUMP_INTR)
				interrupted = true;
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr e;

				if (nlmsg_datalen(h) < (int)sizeof(e))
					r = -EBADMSG;
				else {
					memcpy(&e, nlmsg_data(h), sizeof(e));
					r = e.error > 0 ? -EBADMSG : e.error;
				}
				done = true;
			} else if (h->nlmsg_type == NLMSG_DONE) {
				int e = 0;

				/* An error in the middle of a dump comes here. */
				if (nlmsg_datalen(h) >= (int)sizeof(e))
					memcpy(&e, nlmsg_data(h), sizeof(e));
				r = e > 0 ? -EBADMSG : e;
				done = true;
			} else if (h->nlmsg_type == NLMSG_OVERRUN)
				r = -EOVERFLOW;
			else if (h->nlmsg_type == w->family && dump)
				r = parse_device(h, dump);
			/* Keep reading to the end even so: the rest of a dump
			 * must not be left for the next call. */
			if (r < 0 && err == 0)
				err = r;
		}
		sodium_memzero(buf, (size_t)n);
		free(buf);
	}
	if (err < 0)
		return err;
	return interrupted ? -EINTR : 0;
}

static int kernel_device_set(struct wg *w, const uint8_t private_key[WG_KEY_LEN], uint16_t listen_port)
{
	_cleanup_msg_ struct nl_msg *m = NULL;
	int r;

	r = kernel_request(w, WG_CMD_SET_DEVICE, NLM_F_ACK, &m);
	if (r < 0)
		return r;
	if (nla_put(m, WGDEVICE_A_PRIVATE_KEY, WG_KEY_LEN, private_key) < 0 ||
	    nla_put_u16(m, WGDEVICE_A_LISTEN_PORT, listen_port) < 0)
		return -ENOMEM;
	return kernel_call(w, m, NULL);
}

static int kernel_device_get(struct wg *w, struct wg_device *ret)
{
	for (int i = 0; i < KERNEL_DUMP_TRIES; i++) {
		_cleanup_msg_ struct nl_msg *m = NULL;
		struct wg_device d = {};
		int r;

		r = kernel_request(w, WG_CMD_GET_DEVICE, NLM_F_DUMP, &m);
		if (r < 0)
			return r;
		r = kernel_call(w, m, &d);
		if (r == 0) {
			*ret = d;
			return 0;
		}
		wg_device_clear(&d);
		if (r != -EINTR)
			return r;
	}
	return -EAGAIN;
}

struct allowed_ip {
	int family;
	uint8_t cidr;
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} addr;
};

/* Digits only, no sign, no leading zero: what the UAPI side accepts. */
static int parse_number(const char *s, unsigned max, unsigned *ret)
{
	unsigned long v;
	char *end;

	if (!*s || *s < '0' || *s > '9' || (s[0] == '0' && s[1]))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

/* "10.77.0.2/32", "fd00::2/128". */
static int parse_allowed_ip(const char *s, struct allowed_ip *ret)
{
	const char *slash = strchr(s, '/');
	char ip[INET6_ADDRSTRLEN];
	unsigned cidr;

	if (!slash || (size_t)(slash - s) >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = 0;
	if (inet_pton(AF_INET, ip, &ret->addr.v4) == 1)
		ret->family = AF_INET;
	else if (inet_pton(AF_INET6, ip, &ret->addr.v6) == 1)
		ret->family = AF_INET6;
	else
		return -EINVAL;
	if (parse_number(slash + 1, ret->family == AF_INET ? 32 : 128, &cidr) < 0)
		return -EINVAL;
	ret->cidr = (uint8_t)cidr;
	return 0;
}

/* "1.2.3.4:51820", "[fd00::1]:51820", "[fe80::1%eth0]:51820": literals
 * only, as the UAPI side. */
static int parse_endpoint(const char *s, struct sockaddr_storage *ss, size_t *ret_len)
{
	char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 1];
	const char *port, *end;
	bool v6 = s[0] == '[';
	unsigned p;

	*ss = (struct sockaddr_storage){};
	if (v6) {
		end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		s++;
		port = end + 2;
	} else {
		end = strrchr(s, ':');
		if (!end)
			return -EINVAL;
		port = end + 1;
	}
	if ((size_t)(end - s) >= sizeof(host) || parse_number(port, 65535, &p) < 0)
		return -EINVAL;
	memcpy(host, s, (size_t)(end - s));
	host[end - s] = 0;
	if (!v6) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		*ret_len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		char *zone = strchr(host, '%');

		if (zone) {
			*zone++ = 0;
			if (parse_number(zone, UINT32_MAX, &sin6->sin6_scope_id) < 0) {
				sin6->sin6_scope_id = if_nametoindex(zone);
				if (!sin6->sin6_scope_id)
					return -EINVAL;
			}
		}
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		*ret_len = sizeof(*sin6);
	}
	return 0;
}

/* False when m has no room left for it (m is then as before). */
static bool put_allowed_ip(struct nl_msg *m, const struct allowed_ip *a)
{
	struct nlattr *one = nla_nest_start(m, 0);

	if (!one)
		return false;
	if (nla_put_u16(m, WGALLOWEDIP_A_FAMILY, (uint16_t)a->family) < 0 ||
	    nla_put(m, WGALLOWEDIP_A_IPADDR, a->family == AF_INET ? 4 : 16, &a->addr) < 0 ||
	    nla_put_u8(m, WGALLOWEDIP_A_CIDR_MASK, a->cidr) < 0) {
		nla_nest_cancel(m, one);
		return false;
	}
	nla_nest_end(m, one);
	return true;
}

/* Adds or updates the peer (its allowed IPs replaced), or removes it.
 * Everything is parsed before anything is sent: a bad allowed IP must
 * not leave the peer half-configured. */
static int kernel_peer_set(struct wg *w, const struct wg_peer *p, bool remove)
{
	_cleanup_free_ struct allowed_ip *ips = NULL;
	struct sockaddr_storage ep;
	size_t n = remove ? 0 : strv_length(p->allowed_ips), next = 0, ep_len = 0;
	bool first = true;
	int r;

	if (!remove && p->endpoint[0]) {
		r = parse_endpoint(p->endpoint, &ep, &ep_len);
		if (r < 0)
			return r;
	}
	if (n > 0) {
		ips = calloc(n, sizeof(*ips));
		if (!ips)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		r = parse_allowed_ip(p->allowed_ips[i], &ips[i]);
		if (r < 0)
			return r;
	}

	do {
		_cleanup_msg_ struct nl_msg *m = NULL;
		struct nlattr *peers, *peer, *list;
		size_t sent = next;

		r = kernel_request(w, WG_CMD_SET_DEVICE, NLM_F_ACK, &m);
		if (r < 0)
			return r;
		peers = nla_nest_start(m, WGDEVICE_A_PEERS);
		peer = peers ? nla_nest_start(m, 0) : NULL;
		if (!peer || nla_put(m, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, p->public_key) < 0)
			return -ENOMEM;
		/* The flags and settings go with the first request only: a
		 * later one adds the allowed IPs that did not fit. */
		if (first && remove && nla_put_u32(m, WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME) < 0)
			return -ENOMEM;
		if (first && !remove &&
		    (nla_put_u32(m, WGPEER_A_FLAGS, WGPEER_F_REPLACE_ALLOWEDIPS) < 0 ||
		     nla_put_u16(m, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, p->keepalive) < 0 ||
		     (ep_len > 0 && nla_put(m, WGPEER_A_ENDPOINT, (int)ep_len, &ep) < 0)))
			return -ENOMEM;
		if (next < n) {
			list = nla_nest_start(m, WGPEER_A_ALLOWEDIPS);
			if (!list)
				return -ENOMEM;
			while (next < n && put_allowed_ip(m, &ips[next]))
				next++;
			nla_nest_end(m, list);
		}
		nla_nest_end(m, peer);
		nla_nest_end(m, peers);
		/* Not even one allowed IP fitted in a continuation. */
		if (!first && next == sent)
			return -EMSGSIZE;
		r = kernel_call(w, m, NULL);
		first = false;
	} while (r == 0 && next < n);
	return r;
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

int wg_device_set(struct wg *w, const uint8_t private_key[WG_KEY_LEN], uint16_t listen_port)
{
	if (w->backend == WG_BACKEND_KERNEL)
		return kernel_device_set(w, private_key, listen_port);
	return uapi_set(w, wg_uapi_format_device(private_key, listen_port));
}

int wg_peer_add(struct wg *w, const struct wg_peer *peer)
{
	if (w->backend == WG_BACKEND_KERNEL)
		return kernel_peer_set(w, peer, false);
	return uapi_set(w, wg_uapi_format_peer(peer, false));
}

int wg_peer_remove(struct wg *w, const uint8_t public_key[WG_KEY_LEN])
{
	struct wg_peer p = {};

	memcpy(p.public_key, public_key, WG_KEY_LEN);
	if (w->backend == WG_BACKEND_KERNEL)
		return kernel_peer_set(w, &p, true);
	return uapi_set(w, wg_uapi_format_peer(&p, true));
}

int wg_device_get(struct wg *w, struct wg_device *ret)
{
	_cleanup_free_ char *reply = NULL;
	int r;

	if (w->backend == WG_BACKEND_KERNEL)
		return kernel_device_get(w, ret);
	r = uapi_call(w, "get=1\n\n", &reply);
	if (r == 0)
		r = wg_uapi_parse_get(reply, ret);
	if (reply)
		sodium_memzero(reply, strlen(reply));
	return r;
}

const struct wg_peer *wg_device_find_peer(const struct wg_device *d, const uint8_t public_key[WG_KEY_LEN])
{
	for (size_t i = 0; i < d->n_peers; i++)
		if (memcmp(d->peers[i].public_key, public_key, WG_KEY_LEN) == 0)
			return &d->peers[i];
	return NULL;
}

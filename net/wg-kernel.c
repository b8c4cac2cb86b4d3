/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The kernel backend of wg.h: generic netlink, the "wireguard" family
 * (include/uapi/linux/wireguard.h). Setting the device, adding, updating
 * and removing peers (in as many requests as their allowed IPs need), and
 * reading the device back with a dump that is read again if the device
 * changed under it. */
#include <arpa/inet.h>
#include <errno.h>
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
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "util.h"
#include "wg-internal.h"

/* The most one SET_DEVICE request carries: a peer with more allowed IPs
 * than fit goes on in further requests, as wireguard-tools does. */
#define KERNEL_REQUEST_SIZE 4096
#define KERNEL_RECV_SIZE (64 * 1024)
/* A dump the device changed under (NLM_F_DUMP_INTR) is read again. */
#define KERNEL_DUMP_TRIES 16
#define PEERS_MAX 65536

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

int wg_kernel_open(struct wg *w)
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

void wg_kernel_close(struct wg *w)
{
	if (w->genl)
		nl_socket_free(w->genl);
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

int wg_kernel_device_set(struct wg *w, const uint8_t private_key[WG_KEY_LEN], uint16_t listen_port)
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

int wg_kernel_device_get(struct wg *w, struct wg_device *ret)
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
int wg_kernel_peer_set(struct wg *w, const struct wg_peer *p, bool remove)
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

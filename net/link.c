/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "link.h"
#include "util.h"

/* libnl's error codes to errno. */
static int nlerr(int e)
{
	switch (e < 0 ? -e : e) {
	case 0:
		return 0;
	case NLE_EXIST:
		return -EEXIST;
	case NLE_OBJ_NOTFOUND:
	case NLE_NODEV:
		return -ENODEV;
	case NLE_PERM:
		return -EPERM;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_RANGE:
		return -ERANGE;
	case NLE_NOADDR:
		return -EADDRNOTAVAIL;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	case NLE_INVAL:
	case NLE_MSGTYPE_NOSUPPORT:
		return -EINVAL;
	case NLE_AF_NOSUPPORT:
		return -EAFNOSUPPORT;
	default:
		return -EIO;
	}
}

int netlink_open(struct nl_sock **ret)
{
	_cleanup_(netlink_closep) struct nl_sock *sk = nl_socket_alloc();
	int r;

	if (!sk)
		return -ENOMEM;
	r = nl_connect(sk, NETLINK_ROUTE);
	if (r < 0)
		return nlerr(r);
	*ret = TAKE_PTR(sk);
	return 0;
}

void netlink_close(struct nl_sock *sk)
{
	if (sk)
		nl_socket_free(sk);
}

static void link_putp(struct rtnl_link **l)
{
	if (*l)
		rtnl_link_put(*l);
}
#define _cleanup_link_ _cleanup_(link_putp)

static void addr_putp(struct rtnl_addr **a)
{
	if (*a)
		rtnl_addr_put(*a);
}

static void nl_addr_putp(struct nl_addr **a)
{
	if (*a)
		nl_addr_put(*a);
}

static int get_link(struct nl_sock *sk, const char *name, struct rtnl_link **ret)
{
	int r = rtnl_link_get_kernel(sk, 0, name, ret);

	return r < 0 ? nlerr(r) : 0;
}

/* The ifindex of name, and whether it is of kind ("bridge", ...). */
static int lookup_kind(struct nl_sock *sk, const char *name, const char *kind, bool *ret_is)
{
	_cleanup_link_ struct rtnl_link *l = NULL;
	const char *type;
	int r;

	r = get_link(sk, name, &l);
	if (r < 0)
		return r;
	type = rtnl_link_get_type(l);
	if (ret_is)
		*ret_is = type && streq(type, kind);
	return rtnl_link_get_ifindex(l);
}

int link_lookup(struct nl_sock *sk, const char *name, bool *ret_is_bridge)
{
	return lookup_kind(sk, name, "bridge", ret_is_bridge);
}

static int set_up(struct nl_sock *sk, struct rtnl_link *l)
{
	_cleanup_link_ struct rtnl_link *change = rtnl_link_alloc();

	if (!change)
		return -ENOMEM;
	if (rtnl_link_get_flags(l) & IFF_UP)
		return 0;
	rtnl_link_set_flags(change, IFF_UP);
	return nlerr(rtnl_link_change(sk, l, change, 0));
}

static int add_address(struct nl_sock *sk, int ifindex, const char *cidr)
{
	_cleanup_(addr_putp) struct rtnl_addr *a = rtnl_addr_alloc();
	_cleanup_(nl_addr_putp) struct nl_addr *local = NULL;
	int r;

	if (!a)
		return -ENOMEM;
	r = nl_addr_parse(cidr, AF_INET, &local);
	if (r < 0 || nl_addr_get_prefixlen(local) == 0 || nl_addr_get_prefixlen(local) > 32)
		return -EINVAL;
	rtnl_addr_set_ifindex(a, ifindex);
	r = rtnl_addr_set_local(a, local);
	if (r == 0)
		r = rtnl_addr_add(sk, a, 0);
	r = nlerr(r);
	return r == -EEXIST ? 0 : r;
}

/* The ifindex of name if it is of kind; -ENOTTY if of another. */
static int link_kind(struct nl_sock *sk, const char *name, const char *kind)
{
	bool is;
	int r = lookup_kind(sk, name, kind, &is);

	return r >= 0 && !is ? -ENOTTY : r;
}

/* Makes sure a link of kind called name exists (adopting one, refusing a
 * link of another kind), is up and has cidr; undoes only what it did. */
static int link_ensure(struct nl_sock *sk, const char *name, const char *kind, const char *cidr,
		       bool *ret_created)
{
	_cleanup_link_ struct rtnl_link *l = NULL;
	bool created = false;
	int r;

	if (strlen(name) > LINK_NAME_MAX)
		return -ENAMETOOLONG;
	/* Twice: another vmd (two vmd runs on one bridge) may make it
	 * between the lookup and the add; then it is adopted. */
	for (int tries = 0; tries < 2; tries++) {
		_cleanup_link_ struct rtnl_link *want = NULL;

		r = link_kind(sk, name, kind);
		if (r == -ENOTTY)
			return -EEXIST;
		if (r != -ENODEV)
			break;
		want = rtnl_link_alloc();
		if (!want)
			return -ENOMEM;
		rtnl_link_set_name(want, name);
		r = rtnl_link_set_type(want, kind);
		if (r == 0)
			r = rtnl_link_add(sk, want, NLM_F_CREATE | NLM_F_EXCL);
		r = nlerr(r);
		/* A kind this kernel lacks (no wireguard module) is
		 * EOPNOTSUPP ("Unknown device type"), which nlerr() keeps. */
		if (r != -EEXIST) {
			created = r == 0;
			break;
		}
	}
	if (r < 0)
		return r;

	r = get_link(sk, name, &l);
	if (r == 0)
		r = set_up(sk, l);
	if (r == 0 && cidr)
		r = add_address(sk, rtnl_link_get_ifindex(l), cidr);
	if (r < 0) {
		if (created)
			link_delete(sk, name);
		return r;
	}
	if (ret_created)
		*ret_created = created;
	return 0;
}

int bridge_ensure(struct nl_sock *sk, const char *name, const char *cidr, bool *ret_created)
{
	return link_ensure(sk, name, "bridge", cidr, ret_created);
}

int wireguard_link_lookup(struct nl_sock *sk, const char *name)
{
	if (strlen(name) > LINK_NAME_MAX)
		return -ENAMETOOLONG;
	return link_kind(sk, name, "wireguard");
}

int wireguard_link_create(struct nl_sock *sk, const char *name, bool *ret_created)
{
	return link_ensure(sk, name, "wireguard", NULL, ret_created);
}

int link_count_ports(struct nl_sock *sk, const char *name)
{
	struct nl_cache *cache = NULL;
	int master, n = 0, r;

	master = link_lookup(sk, name, NULL);
	if (master < 0)
		return master;
	r = rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache);
	if (r < 0)
		return nlerr(r);
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o))
		n += rtnl_link_get_master((struct rtnl_link *)o) == master;
	nl_cache_free(cache);
	return n;
}

int link_delete(struct nl_sock *sk, const char *name)
{
	_cleanup_link_ struct rtnl_link *l = NULL;
	int r;

	r = get_link(sk, name, &l);
	if (r == -ENODEV)
		return 0;
	if (r < 0)
		return r;
	r = nlerr(rtnl_link_delete(sk, l));
	return r == -ENODEV ? 0 : r;
}

static int tap_open(const char *name, bool multi)
{
	struct ifreq ifr = {};
	_cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi ? IFF_MULTI_QUEUE : 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return -errno;
	return TAKE_FD(fd);
}

/* The queues of a tap opened so far, in the caller's array. */
struct tap_queues {
	int *fds;
	unsigned n;
};

/* Closing every queue destroys the (non-persistent) tap. */
static void tap_queues_close(struct tap_queues *q)
{
	while (q->n > 0) {
		q->n--;
		q->fds[q->n] = safe_close(q->fds[q->n]);
	}
}

int tap_create(struct nl_sock *sk, const char *name, const char *bridge, unsigned queues, int *fds)
{
	_cleanup_link_ struct rtnl_link *l = NULL;
	_cleanup_(tap_queues_close) struct tap_queues opened = { .fds = fds };
	bool is_bridge;
	int master, r;

	if (queues < 1 || queues > TAP_QUEUES_MAX)
		return -EINVAL;
	if (strlen(name) > LINK_NAME_MAX)
		return -ENAMETOOLONG;
	master = link_lookup(sk, bridge, &is_bridge);
	if (master < 0)
		return master;
	if (!is_bridge)
		return -ENOTTY;
	/* A link of that name that is not ours would be reused by TUNSETIFF
	 * if it were a persistent tap: refuse anything that exists. */
	if (link_lookup(sk, name, NULL) >= 0)
		return -EEXIST;

	while (opened.n < queues) {
		int fd = tap_open(name, queues > 1);

		if (fd < 0)
			return fd;
		fds[opened.n++] = fd;
	}
	r = get_link(sk, name, &l);
	if (r == 0)
		r = nlerr(rtnl_link_enslave_ifindex(sk, master, rtnl_link_get_ifindex(l)));
	if (r == 0)
		r = set_up(sk, l);
	if (r < 0)
		return r;
	opened.n = 0; /* the caller's now */
	return 0;
}

int link_configure(struct nl_sock *sk, const char *name, const char *cidr)
{
	_cleanup_link_ struct rtnl_link *l = NULL;
	int r;

	r = get_link(sk, name, &l);
	if (r == 0 && cidr)
		r = add_address(sk, rtnl_link_get_ifindex(l), cidr);
	if (r == 0)
		r = set_up(sk, l);
	return r;
}

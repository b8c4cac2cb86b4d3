/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* net/link.c against the real kernel, in a network namespace of its own
 * (needs root, as the whole suite does): nothing touches the host's links. */
#include <linux/if.h>
#include <netlink/route/link.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "addr.h"
#include "link.h"
#include "netname.h"
#include "test.h"
#include "wgconf.h"

static struct nl_sock *sk;

static unsigned flags_of(const char *name)
{
	struct ifreq ifr = {};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	ASSERT(fd >= 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ASSERT(ioctl(fd, SIOCGIFFLAGS, &ifr) == 0);
	close(fd);
	return (unsigned)ifr.ifr_flags;
}

static int master_of(const char *name)
{
	struct rtnl_link *l = NULL;
	int m;

	ASSERT(rtnl_link_get_kernel(sk, 0, name, &l) == 0);
	m = rtnl_link_get_master(l);
	rtnl_link_put(l);
	return m;
}

static bool has_address(const char *dev, const char *cidr)
{
	char cmd[128], line[512];
	bool found = false;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "ip -o -4 addr show dev %s", dev);
	f = popen(cmd, "r");
	ASSERT(f);
	while (fgets(line, sizeof(line), f))
		found |= strstr(line, cidr) != NULL;
	pclose(f);
	return found;
}

/* The kernel unregisters a closed tap asynchronously. */
static bool gone(const char *name)
{
	for (int i = 0; i < 100; i++) {
		if (link_lookup(sk, name, NULL) == -ENODEV)
			return true;
		usleep(10000);
	}
	return false;
}

TEST(own_namespace)
{
	ASSERT(unshare(CLONE_NEWNET) == 0);
	ASSERT(netlink_open(&sk) == 0);
	ASSERT(link_lookup(sk, "lo", NULL) > 0);
}

TEST(names_and_macs)
{
	char a[LINK_NAME_MAX + 1], b[LINK_NAME_MAX + 1], text[18];
	uint8_t m1[6], m2[6], p[6];

	link_name_for_vm("edge", a);
	ASSERT_STREQ(a, "vm-edge");
	link_name_for_vm("twelve-chars", a);
	ASSERT_STREQ(a, "vm-twelve-chars");
	link_name_for_vm("thirteen-char", a);
	ASSERT_EQ(strlen(a), LINK_NAME_MAX);
	ASSERT(strncmp(a, "vm-thirte-", 10) == 0);
	link_name_for_vm("thirteen-chaz", b);
	ASSERT(strcmp(a, b) != 0);
	link_name_for_vm("thirteen-char", b);
	ASSERT_STREQ(a, b);
	link_name_for_vm("a-name-of-the-full-32-characters", a);
	ASSERT_EQ(strlen(a), LINK_NAME_MAX);

	mac_for_vm("edge", m1);
	mac_for_vm("edge", m2);
	ASSERT(memcmp(m1, m2, 6) == 0);
	ASSERT(m1[0] == 0x52 && m1[1] == 0x54 && m1[2] == 0x00);
	mac_for_vm("edgf", m2);
	ASSERT(memcmp(m1, m2, 6) != 0);
	mac_format(m1, text);
	ASSERT(mac_parse(text, p) == 0 && memcmp(p, m1, 6) == 0);
	ASSERT(mac_parse("52:54:00:AB:cd:0f", p) == 0 && p[3] == 0xab && p[5] == 0x0f);
	ASSERT(mac_parse("01:00:5e:00:00:01", p) == -EINVAL); /* multicast */
	ASSERT(mac_parse("52-54-00-ab-cd-ef", p) == -EINVAL);
	ASSERT(mac_parse("52:54:00:ab:cd:e", p) == -EINVAL);
	ASSERT(mac_parse("52:54:00:ab:cd:efx", p) == -EINVAL);
	ASSERT(mac_parse(" 2:54:00:ab:cd:ef", p) == -EINVAL);
	ASSERT(mac_parse("52:54:00:ab:cd:eg", p) == -EINVAL);
}

TEST(addresses)
{
	char buf[ADDR_STR_MAX];
	struct cidr a, b;
	uint32_t x;

	ASSERT(cidr_parse("10.0.0.2/24", &a) == 0);
	ASSERT_EQ(a.addr, 0x0a000002u);
	ASSERT_EQ(a.prefix, 24);
	cidr_format(&a, false, buf);
	ASSERT_STREQ(buf, "10.0.0.2/24");
	cidr_format(&a, true, buf);
	ASSERT_STREQ(buf, "10.0.0.0/24");
	addr_format(cidr_netmask(a.prefix), buf);
	ASSERT_STREQ(buf, "255.255.255.0");
	ASSERT_EQ(cidr_netmask(0), 0u);
	ASSERT_EQ(cidr_netmask(32), UINT32_MAX);
	ASSERT(addr_parse("255.255.255.255", &x) == 0 && x == UINT32_MAX);
	ASSERT(cidr_parse("0.0.0.0/0", &b) == 0);

	/* Strict: whatever passes is safe on a command line and in a file. */
	static const char *const bad[] = { "", "10.0.0.2", "10.0.0.2/", "10.0.0.2/33", "10.0.0.256/24",
					   "10.0.0/24", "10.0.0.0.1/24", "010.0.0.2/24", "10.0.0.2/024",
					   " 10.0.0.2/24", "10.0.0.2/24 ", "10.0.0.2/+4", "10.0.0.-2/24",
					   "10.0.0.2/24\nx", "0x0a.0.0.2/24", "10.0.0.2/4294967320" };
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		ASSERT(cidr_parse(bad[i], &b) == -EINVAL);
	ASSERT(addr_parse("10.0.0.2/24", &x) == -EINVAL);

	ASSERT(cidr_parse("10.77.0.0/24", &b) == 0);
	ASSERT(cidr_contains(&b, 0x0a4d00feu) && !cidr_contains(&b, 0x0a4e0002u));
	ASSERT(cidr_is_edge(&b, 0x0a4d0000u) && cidr_is_edge(&b, 0x0a4d00ffu) && !cidr_is_edge(&b, 0x0a4d0001u));
	ASSERT(cidr_parse("10.77.0.0/31", &b) == 0 && !cidr_is_edge(&b, 0x0a4d0000u));
	ASSERT(cidr_parse("10.0.0.0/8", &b) == 0 && cidr_overlaps(&a, &b) && cidr_overlaps(&b, &a));
	ASSERT(cidr_parse("10.0.1.0/24", &b) == 0 && !cidr_overlaps(&a, &b));
}

TEST(wg_conf)
{
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	char priv64[WG_KEY_B64_LEN + 1], pub64[WG_KEY_B64_LEN + 1], want[512];
	struct wg_conf c = {
		.vm = "edge", .private_key = priv, .address = "10.77.0.2/32", .hub = "vmwg",
		.hub_public_key = pub, .endpoint = "10.0.0.1", .port = 51820, .allowed_ips = "10.77.0.0/24",
		.keepalive = 25,
	};
	char *text;

	memset(priv, 0x11, sizeof(priv));
	memset(pub, 0x22, sizeof(pub));
	wg_key_to_base64(priv, priv64);
	wg_key_to_base64(pub, pub64);
	text = wg_conf_format(&c);
	ASSERT(text);
	snprintf(want, sizeof(want),
		 "# Written by vmd for VM edge at every start; edits are overwritten.\n"
		 "[Interface]\nPrivateKey = %s\nAddress = 10.77.0.2/32\n\n"
		 "[Peer]\n# The host's WireGuard hub vmwg\nPublicKey = %s\nEndpoint = 10.0.0.1:51820\n"
		 "AllowedIPs = 10.77.0.0/24\nPersistentKeepalive = 25\n",
		 priv64, pub64);
	ASSERT_STREQ(text, want);
	free(text);

	c.keepalive = 0;
	text = wg_conf_format(&c);
	ASSERT(text && !strstr(text, "PersistentKeepalive"));
	free(text);

	/* A value that would add a line of its own is refused. */
	c.endpoint = "10.0.0.1\nPostUp = rm -rf /";
	errno = 0;
	ASSERT(!wg_conf_format(&c) && errno == EINVAL);
}

TEST(bridges)
{
	bool created, is_bridge;
	int fd;

	ASSERT(bridge_ensure(sk, "vmbr0", "10.0.0.1/24", &created) == 0);
	ASSERT(created);
	ASSERT(link_lookup(sk, "vmbr0", &is_bridge) > 0 && is_bridge);
	ASSERT(flags_of("vmbr0") & IFF_UP);
	ASSERT(has_address("vmbr0", "10.0.0.1/24"));
	/* An existing bridge is adopted, its address not added twice. */
	ASSERT(bridge_ensure(sk, "vmbr0", "10.0.0.1/24", &created) == 0);
	ASSERT(!created);
	/* A link of another kind is not a bridge to adopt. */
	ASSERT_EQ(link_count_ports(sk, "vmbr0"), 0);
	ASSERT(tap_create(sk, "notabridge", "vmbr0", 1, &fd) == 0);
	ASSERT(bridge_ensure(sk, "notabridge", NULL, &created) == -EEXIST);
	ASSERT_EQ(link_count_ports(sk, "vmbr0"), 1);
	close(fd);
	ASSERT(gone("notabridge"));
	ASSERT_EQ(link_count_ports(sk, "vmbr0"), 0);
	ASSERT_EQ(link_count_ports(sk, "nosuchlink"), -ENODEV);
	/* 15 characters fit, 16 do not. */
	ASSERT(bridge_ensure(sk, "fifteen-chars-x", NULL, &created) == 0);
	ASSERT(link_delete(sk, "fifteen-chars-x") == 0);
	ASSERT(bridge_ensure(sk, "sixteen-chars-xx", NULL, &created) == -ENAMETOOLONG);
	/* A bad address undoes the bridge it created. */
	ASSERT(bridge_ensure(sk, "vmbr1", "10.0.0.1/99", &created) == -EINVAL);
	ASSERT(link_lookup(sk, "vmbr1", NULL) == -ENODEV);
	ASSERT(link_delete(sk, "vmbr0") == 0);
	ASSERT(link_lookup(sk, "vmbr0", NULL) == -ENODEV);
	ASSERT(link_delete(sk, "vmbr0") == 0);
}

TEST(taps)
{
	int fds[4], one, br;
	bool created;

	ASSERT(bridge_ensure(sk, "vmbr0", NULL, &created) == 0);
	br = link_lookup(sk, "vmbr0", NULL);
	ASSERT(tap_create(sk, "vm-edge", "vmbr0", 1, &one) == 0);
	ASSERT_EQ(master_of("vm-edge"), br);
	ASSERT(flags_of("vm-edge") & IFF_UP);
	/* The name is taken while it lives. */
	ASSERT(tap_create(sk, "vm-edge", "vmbr0", 1, fds) == -EEXIST);
	close(one);
	ASSERT(gone("vm-edge"));

	/* Multiqueue: the tap lives until its last queue is closed. */
	ASSERT(tap_create(sk, "vm-multi", "vmbr0", 4, fds) == 0);
	ASSERT_EQ(master_of("vm-multi"), br);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	usleep(100000);
	ASSERT(link_lookup(sk, "vm-multi", NULL) > 0);
	close(fds[3]);
	ASSERT(gone("vm-multi"));

	ASSERT(tap_create(sk, "vm-x", "nobridge", 1, fds) == -ENODEV);
	ASSERT(tap_create(sk, "vm-x", "lo", 1, fds) == -ENOTTY);
	ASSERT(tap_create(sk, "vm-x", "vmbr0", 0, fds) == -EINVAL);
	ASSERT(tap_create(sk, "vm-x", "vmbr0", TAP_QUEUES_MAX + 1, fds) == -EINVAL);
	ASSERT(tap_create(sk, "vm-sixteen-chars", "vmbr0", 1, fds) == -ENAMETOOLONG);
	ASSERT(link_lookup(sk, "vm-x", NULL) == -ENODEV);
	ASSERT(link_delete(sk, "vmbr0") == 0);
	netlink_close(sk);
}

RUN_TESTS(T_SETUP(own_namespace), T(names_and_macs), T(addresses), T(wg_conf), T(bridges), T(taps))

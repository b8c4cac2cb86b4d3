/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* net/link.c against the real kernel, in a network namespace of its own
 * (needs root, as the whole suite does): nothing touches the host's links. */
#include <linux/if.h>
#include <netlink/route/link.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "link.h"
#include "test.h"

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
	ASSERT(tap_create(sk, "notabridge", "vmbr0", 1, &fd) == 0);
	ASSERT(bridge_ensure(sk, "notabridge", NULL, &created) == -EEXIST);
	close(fd);
	ASSERT(gone("notabridge"));
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

RUN_TESTS(T(own_namespace), T(names_and_macs), T(bridges), T(taps))

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* net/wg-kernel.c (the kernel backend) and net/link.c's
 * wireguard_link_create() against the real WireGuard module, in network
 * namespaces of the test's own. It needs root and a kernel with WireGuard,
 * which the host has not: meson builds it without registering it, and
 * tests/integration/test_wg_kernel.py runs it inside a guest.
 *
 * Usage: test-wg-kernel [WG-COMMAND...]
 *
 * WG-COMMAND runs wg(8) (wireguard-tools), whose "show IF dump" is
 * checked against wg_device_get(); by default $WG, else wg from PATH. In
 * the guest it is "/t/ld-linux-x86-64.so.2 --library-path /t /t/wg".
 *
 * The last test runs the daemon's side (vmd/hostnet.c) on a kernel hub:
 * the code path a host with the module takes, which the build hosts
 * cannot. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <linux/if.h>
#include <netinet/in.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <poll.h>
#include <sched.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hostnet.h"
#include "keydir.h"
#include "link.h"
#include "test.h"
#include "wg.h"

#define N_BIG_V4 1000
#define N_BIG_V6 200

static char **wg_cmd;
static char *wg_found;

/* The device of the API tests, in the first namespace. */
static struct wg *w0;
static uint8_t priv0[WG_KEY_LEN], pub1[WG_KEY_LEN], pub2[WG_KEY_LEN];

static void new_public_key(uint8_t pub[WG_KEY_LEN])
{
	uint8_t priv[WG_KEY_LEN];

	ASSERT(wg_key_generate(priv) == 0);
	ASSERT(wg_key_public(priv, pub) == 0);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The same allowed IPs, in any order (the kernel keeps its own). */
static void assert_same_ips(char **got, char **want)
{
	size_t n = strv_length(want);
	_cleanup_strv_free_ char **g = strv_copy(got), **w = strv_copy(want);

	ASSERT_EQ(strv_length(got), n);
	if (n == 0)
		return;
	ASSERT(g && w);
	qsort(g, n, sizeof(char *), cmp_str);
	qsort(w, n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < n; i++)
		ASSERT_STREQ(g[i], w[i]);
}

static bool link_is_up(struct nl_sock *sk, const char *name)
{
	struct rtnl_link *l = NULL;
	bool up;

	ASSERT(rtnl_link_get_kernel(sk, 0, name, &l) == 0);
	up = rtnl_link_get_flags(l) & IFF_UP;
	rtnl_link_put(l);
	return up;
}

/* Adds cidr (if not NULL) to the link name and brings it up. */
static void configure(struct nl_sock *sk, const char *name, const char *cidr)
{
	struct rtnl_link *l = NULL, *change = rtnl_link_alloc();

	ASSERT(change);
	ASSERT(rtnl_link_get_kernel(sk, 0, name, &l) == 0);
	if (cidr) {
		struct rtnl_addr *a = rtnl_addr_alloc();
		struct nl_addr *local = NULL;

		ASSERT(a);
		ASSERT(nl_addr_parse(cidr, AF_INET, &local) == 0);
		rtnl_addr_set_ifindex(a, rtnl_link_get_ifindex(l));
		ASSERT(rtnl_addr_set_local(a, local) == 0);
		ASSERT(rtnl_addr_add(sk, a, 0) == 0);
		nl_addr_put(local);
		rtnl_addr_put(a);
	}
	rtnl_link_set_flags(change, IFF_UP);
	ASSERT(rtnl_link_change(sk, l, change, 0) == 0);
	rtnl_link_put(change);
	rtnl_link_put(l);
}

static const char *const *wg_argv_prefix(size_t *n)
{
	static const char *one[2];

	if (wg_cmd) {
		*n = strv_length(wg_cmd);
		return (const char *const *)wg_cmd;
	}
	one[0] = getenv("WG");
	if (!one[0] || !*one[0]) {
		if (!wg_found && find_executable("wg", &wg_found) < 0)
			wg_found = NULL;
		one[0] = wg_found;
	}
	*n = one[0] ? 1 : 0;
	return one;
}

/* The output of "wg show IF dump", in the current network namespace. */
static char *wg_show_dump(const char *ifname)
{
	size_t n, len = 0;
	const char *const *prefix = wg_argv_prefix(&n);
	_cleanup_free_ const char **argv = NULL;
	_cleanup_free_ char *out = NULL;
	FILE *f = open_memstream(&out, &len);
	int fds[2], status;
	pid_t pid;
	char buf[4096];
	ssize_t k;

	if (n == 0) {
		fprintf(stderr, "wg (wireguard-tools) not found: give its command line, or set $WG\n");
		ASSERT(n > 0);
	}
	ASSERT(f);
	argv = calloc(n + 4, sizeof(char *));
	ASSERT(argv);
	memcpy(argv, prefix, n * sizeof(char *));
	argv[n] = "show";
	argv[n + 1] = ifname;
	argv[n + 2] = "dump";
	ASSERT(pipe2(fds, O_CLOEXEC) == 0);
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	while ((k = read(fds[0], buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)k, f);
	close(fds[0]);
	ASSERT(fclose(f) == 0);
	ASSERT(waitpid(pid, &status, 0) == pid);
	ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return TAKE_PTR(out);
}

static char **split(const char *s, const char *sep)
{
	_cleanup_free_ char *copy = strdup(s);
	char **l = NULL, *save = NULL;

	ASSERT(copy);
	for (char *t = strtok_r(copy, sep, &save); t; t = strtok_r(NULL, sep, &save))
		ASSERT(strv_extend(&l, t) == 0);
	return l;
}

static void assert_counter(const char *field, uint64_t before, uint64_t after)
{
	char *end;
	unsigned long long v = strtoull(field, &end, 10);

	ASSERT(!*end);
	ASSERT(v >= before && v <= after);
}

/* Everything wg(8) shows of ifname is what wg_device_get() returned:
 * keys, port, and every peer's endpoint, allowed IPs, keepalive, last
 * handshake and counters (these between a get before and one after). */
static void wg_check(struct wg *w, const char *ifname)
{
	struct wg_device before, after;
	_cleanup_free_ char *dump = NULL;
	_cleanup_strv_free_ char **lines = NULL, **dev = NULL;
	char b64[WG_KEY_B64_LEN + 1], num[32];
	uint8_t pub[WG_KEY_LEN];

	ASSERT(wg_device_get(w, &before) == 0);
	dump = wg_show_dump(ifname);
	ASSERT(wg_device_get(w, &after) == 0);
	lines = split(dump, "\n");
	ASSERT(lines && lines[0]);

	/* private-key public-key listen-port fwmark */
	dev = split(lines[0], "\t");
	ASSERT_EQ(strv_length(dev), 4);
	ASSERT(before.has_private_key);
	wg_key_to_base64(before.private_key, b64);
	ASSERT_STREQ(dev[0], b64);
	ASSERT(wg_key_public(before.private_key, pub) == 0);
	wg_key_to_base64(pub, b64);
	ASSERT_STREQ(dev[1], b64);
	snprintf(num, sizeof(num), "%u", before.listen_port);
	ASSERT_STREQ(dev[2], num);
	ASSERT_STREQ(dev[3], "off");

	/* public-key preshared-key endpoint allowed-ips latest-handshake
	 * transfer-rx transfer-tx persistent-keepalive */
	ASSERT_EQ(strv_length(lines) - 1, before.n_peers);
	ASSERT_EQ(after.n_peers, before.n_peers);
	for (size_t i = 1; lines[i]; i++) {
		_cleanup_strv_free_ char **f = split(lines[i], "\t");
		const struct wg_peer *p, *p2;
		_cleanup_free_ char *ips = NULL;

		ASSERT_EQ(strv_length(f), 8);
		ASSERT(wg_key_from_base64(f[0], pub) == 0);
		p = wg_device_find_peer(&before, pub);
		p2 = wg_device_find_peer(&after, pub);
		ASSERT(p && p2);
		ASSERT_STREQ(f[1], "(none)");
		ASSERT_STREQ(f[2], p->endpoint[0] ? p->endpoint : "(none)");
		ips = p->allowed_ips ? strv_join(p->allowed_ips, ",") : strdup("(none)");
		ASSERT_STREQ(f[3], ips);
		ASSERT(p->last_handshake_sec <= p2->last_handshake_sec);
		assert_counter(f[4], (uint64_t)p->last_handshake_sec, (uint64_t)p2->last_handshake_sec);
		assert_counter(f[5], p->rx_bytes, p2->rx_bytes);
		assert_counter(f[6], p->tx_bytes, p2->tx_bytes);
		snprintf(num, sizeof(num), "%u", p->keepalive);
		ASSERT_STREQ(f[7], p->keepalive ? num : "off");
	}
	wg_device_clear(&before);
	wg_device_clear(&after);
	printf("# wg show %s dump: %zu line(s), %zu bytes, all as wg_device_get() says\n", ifname,
	       strv_length(lines), strlen(dump));
}

TEST(link_create)
{
	struct nl_sock *sk = NULL;
	bool created = false;
	struct wg *w;

	ASSERT(unshare(CLONE_NEWNET) == 0);
	ASSERT(netlink_open(&sk) == 0);
	ASSERT(wireguard_link_create(sk, "wgk0", &created) == 0);
	ASSERT(created);
	ASSERT(link_is_up(sk, "wgk0"));
	/* An existing one is adopted; a link of another kind is not. */
	ASSERT(wireguard_link_create(sk, "wgk0", &created) == 0);
	ASSERT(!created);
	ASSERT(wireguard_link_lookup(sk, "wgk0") > 0);
	ASSERT_EQ(wireguard_link_create(sk, "lo", &created), -EEXIST);
	ASSERT_EQ(wireguard_link_lookup(sk, "lo"), -ENOTTY);
	ASSERT_EQ(wireguard_link_lookup(sk, "nosuch"), -ENODEV);
	ASSERT_EQ(wireguard_link_create(sk, "name-is-too-long", &created), -ENAMETOOLONG);

	/* The kernel backend wants the link there, and of its kind. */
	ASSERT_EQ(wg_open(WG_BACKEND_KERNEL, "nosuch", NULL, &w), -ENODEV);
	ASSERT_EQ(wg_open(WG_BACKEND_KERNEL, "lo", NULL, &w), -ENOTTY);
	ASSERT_EQ(wg_open(WG_BACKEND_KERNEL, "../etc", NULL, &w), -EINVAL);
	ASSERT(wg_open(WG_BACKEND_KERNEL, "wgk0", NULL, &w0) == 0);
	netlink_close(sk);
}

TEST(device_set_get)
{
	struct wg_device d;

	ASSERT(wg_device_get(w0, &d) == 0);
	ASSERT(!d.has_private_key);
	ASSERT_EQ(d.n_peers, 0);
	wg_device_clear(&d);

	ASSERT(wg_key_generate(priv0) == 0);
	ASSERT(wg_device_set(w0, priv0, 51830) == 0);
	ASSERT(wg_device_get(w0, &d) == 0);
	ASSERT(d.has_private_key && memcmp(d.private_key, priv0, WG_KEY_LEN) == 0);
	ASSERT_EQ(d.listen_port, 51830);
	ASSERT_EQ(d.n_peers, 0);
	wg_device_clear(&d);

	ASSERT(wg_device_set(w0, priv0, 51820) == 0);
	ASSERT(wg_device_get(w0, &d) == 0);
	ASSERT(memcmp(d.private_key, priv0, WG_KEY_LEN) == 0);
	ASSERT_EQ(d.listen_port, 51820);
	wg_device_clear(&d);
}

TEST(peer_add)
{
	char *ips1[] = { (char *)"10.77.0.2/32", (char *)"fd00:77::2/128", NULL };
	char *ips2[] = { (char *)"10.78.0.0/16", NULL };
	struct wg_peer p1 = { .endpoint = "192.0.2.1:51821", .keepalive = 25, .allowed_ips = ips1 };
	struct wg_peer p2 = { .endpoint = "[2001:db8::1]:51822", .allowed_ips = ips2 };
	const struct wg_peer *got;
	struct wg_device d;

	new_public_key(pub1);
	new_public_key(pub2);
	memcpy(p1.public_key, pub1, WG_KEY_LEN);
	memcpy(p2.public_key, pub2, WG_KEY_LEN);
	ASSERT(wg_peer_add(w0, &p1) == 0);
	ASSERT(wg_peer_add(w0, &p2) == 0);

	ASSERT(wg_device_get(w0, &d) == 0);
	ASSERT(memcmp(d.private_key, priv0, WG_KEY_LEN) == 0);
	ASSERT_EQ(d.n_peers, 2);
	got = wg_device_find_peer(&d, pub1);
	ASSERT(got);
	ASSERT_STREQ(got->endpoint, "192.0.2.1:51821");
	ASSERT_EQ(got->keepalive, 25);
	assert_same_ips(got->allowed_ips, ips1);
	ASSERT_EQ(got->last_handshake_sec, 0);
	ASSERT_EQ(got->rx_bytes, 0);
	got = wg_device_find_peer(&d, pub2);
	ASSERT(got);
	ASSERT_STREQ(got->endpoint, "[2001:db8::1]:51822");
	ASSERT_EQ(got->keepalive, 0);
	assert_same_ips(got->allowed_ips, ips2);
	wg_device_clear(&d);
	wg_check(w0, "wgk0");
}

TEST(peer_update)
{
	char *ips[] = { (char *)"10.77.0.3/32", NULL };
	struct wg_peer p = { .endpoint = "", .keepalive = 0, .allowed_ips = ips };
	const struct wg_peer *got;
	struct wg_device d;

	/* Adding again updates: the allowed IPs are replaced, an empty
	 * endpoint leaves the one the peer has. */
	memcpy(p.public_key, pub1, WG_KEY_LEN);
	ASSERT(wg_peer_add(w0, &p) == 0);
	ASSERT(wg_device_get(w0, &d) == 0);
	ASSERT_EQ(d.n_peers, 2);
	got = wg_device_find_peer(&d, pub1);
	ASSERT(got);
	ASSERT_STREQ(got->endpoint, "192.0.2.1:51821");
	ASSERT_EQ(got->keepalive, 0);
	ASSERT_STREQ(got->allowed_ips[0], "10.77.0.3/32");
	ASSERT(!got->allowed_ips[1]);
	/* The other peer is untouched. */
	got = wg_device_find_peer(&d, pub2);
	ASSERT(got);
	ASSERT_STREQ(got->allowed_ips[0], "10.78.0.0/16");
	wg_device_clear(&d);

	snprintf(p.endpoint, sizeof(p.endpoint), "198.51.100.7:1");
	p.keepalive = 10;
	p.allowed_ips = NULL;
	ASSERT(wg_peer_add(w0, &p) == 0);
	ASSERT(wg_device_get(w0, &d) == 0);
	got = wg_device_find_peer(&d, pub1);
	ASSERT(got);
	ASSERT_STREQ(got->endpoint, "198.51.100.7:1");
	ASSERT_EQ(got->keepalive, 10);
	ASSERT(!got->allowed_ips);
	wg_device_clear(&d);

	p.keepalive = 0;
	p.allowed_ips = ips;
	ASSERT(wg_peer_add(w0, &p) == 0);
	wg_check(w0, "wgk0");
}

TEST(refused)
{
	char *bad_ips[][2] = {
		{ (char *)"10.77.0.300/32", NULL }, { (char *)"10.77.0.0/33", NULL },
		{ (char *)"10.77.0.1", NULL },      { (char *)"fd00::/129", NULL },
		{ (char *)"10.77.0.1/032", NULL },  { (char *)"host/32", NULL },
	};
	static const char *const bad_endpoints[] = {
		"nohost:1", "1.2.3.4", "1.2.3.4:70000", "[::1:1", "::1:51820", "1.2.3.4:-1", "[1.2.3.4]:1",
	};
	struct wg_peer p = {};
	struct wg_device d;
	uint8_t pub[WG_KEY_LEN];

	new_public_key(pub);
	memcpy(p.public_key, pub, WG_KEY_LEN);
	for (size_t i = 0; i < ELEMENTSOF(bad_ips); i++) {
		p.allowed_ips = bad_ips[i];
		ASSERT_EQ(wg_peer_add(w0, &p), -EINVAL);
	}
	p.allowed_ips = NULL;
	for (size_t i = 0; i < ELEMENTSOF(bad_endpoints); i++) {
		snprintf(p.endpoint, sizeof(p.endpoint), "%s", bad_endpoints[i]);
		ASSERT_EQ(wg_peer_add(w0, &p), -EINVAL);
	}
	/* Nothing of it reached the device. */
	ASSERT(wg_device_get(w0, &d) == 0);
	ASSERT_EQ(d.n_peers, 2);
	ASSERT(!wg_device_find_peer(&d, pub));
	wg_device_clear(&d);
}

TEST(peer_remove)
{
	struct wg_device d;

	ASSERT(wg_peer_remove(w0, pub1) == 0);
	ASSERT(wg_device_get(w0, &d) == 0);
	ASSERT_EQ(d.n_peers, 1);
	ASSERT(!wg_device_find_peer(&d, pub1));
	ASSERT(wg_device_find_peer(&d, pub2));
	wg_device_clear(&d);
	/* Removing a peer the device does not have is not an error. */
	ASSERT(wg_peer_remove(w0, pub1) == 0);
	ASSERT(wg_peer_remove(w0, pub2) == 0);
	ASSERT(wg_peer_remove(w0, pub2) == 0);
	ASSERT(wg_device_get(w0, &d) == 0);
	ASSERT_EQ(d.n_peers, 0);
	ASSERT(memcmp(d.private_key, priv0, WG_KEY_LEN) == 0);
	wg_device_clear(&d);
	wg_check(w0, "wgk0");
}

/* More allowed IPs than one request or one dump message carries: the
 * requests are split and the dump's pieces merged back. */
TEST(many_allowed_ips)
{
	_cleanup_strv_free_ char **big = NULL;
	char *small[] = { (char *)"10.200.0.1/32", (char *)"10.200.0.2/32", (char *)"10.200.0.3/32", NULL };
	char *last_ips[] = { (char *)"10.201.0.0/24", NULL };
	struct wg_peer p = { .endpoint = "192.0.2.2:4000", .keepalive = 5 };
	struct wg_peer last = { .endpoint = "192.0.2.3:4001", .allowed_ips = last_ips };
	uint8_t pub[WG_KEY_LEN], pub_last[WG_KEY_LEN];
	const struct wg_peer *got;
	struct wg_device d;
	char buf[64];

	for (unsigned i = 0; i < N_BIG_V4; i++) {
		snprintf(buf, sizeof(buf), "10.100.%u.%u/32", i / 250, i % 250 + 1);
		ASSERT(strv_extend(&big, buf) == 0);
	}
	for (unsigned i = 0; i < N_BIG_V6; i++) {
		snprintf(buf, sizeof(buf), "fd00:100::%x/128", i + 1);
		ASSERT(strv_extend(&big, buf) == 0);
	}
	new_public_key(pub);
	new_public_key(pub_last);
	memcpy(p.public_key, pub, WG_KEY_LEN);
	memcpy(last.public_key, pub_last, WG_KEY_LEN);
	p.allowed_ips = big;
	ASSERT(wg_peer_add(w0, &p) == 0);
	ASSERT(wg_peer_add(w0, &last) == 0);

	ASSERT(wg_device_get(w0, &d) == 0);
	ASSERT_EQ(d.n_peers, 2);
	got = wg_device_find_peer(&d, pub);
	ASSERT(got);
	ASSERT_STREQ(got->endpoint, "192.0.2.2:4000");
	ASSERT_EQ(got->keepalive, 5);
	assert_same_ips(got->allowed_ips, big);
	got = wg_device_find_peer(&d, pub_last);
	ASSERT(got);
	ASSERT_STREQ(got->endpoint, "192.0.2.3:4001");
	assert_same_ips(got->allowed_ips, last_ips);
	wg_device_clear(&d);
	wg_check(w0, "wgk0");

	/* All of them replaced by three. */
	p.allowed_ips = small;
	ASSERT(wg_peer_add(w0, &p) == 0);
	ASSERT(wg_device_get(w0, &d) == 0);
	got = wg_device_find_peer(&d, pub);
	ASSERT(got);
	assert_same_ips(got->allowed_ips, small);
	wg_device_clear(&d);

	ASSERT(wg_peer_remove(w0, pub) == 0);
	ASSERT(wg_peer_remove(w0, pub_last) == 0);
	ASSERT(wg_device_get(w0, &d) == 0);
	ASSERT_EQ(d.n_peers, 0);
	wg_device_clear(&d);
	wg_close(w0);
	w0 = NULL;
}

/* Two WireGuard links, wga in namespace A and wgb in B. Both are made in
 * A and wgb then moved: a WireGuard link keeps its UDP socket in the
 * namespace it was made in, so the tunnel runs over A's loopback (the
 * guest has no veth) and ends in B. A UDP datagram from A to B's tunnel
 * address arrives, and both sides then show the handshake and the bytes. */
TEST(handshake)
{
	char *ips_a[] = { (char *)"10.88.0.2/32", NULL }, *ips_b[] = { (char *)"10.88.0.1/32", NULL };
	struct wg_peer to_b = { .endpoint = "127.0.0.1:51841", .allowed_ips = ips_a };
	struct wg_peer to_a = { .endpoint = "127.0.0.1:51840", .allowed_ips = ips_b };
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(9999) }, src = {};
	uint8_t ka[WG_KEY_LEN], kb[WG_KEY_LEN];
	struct nl_sock *sk_a = NULL, *sk_b = NULL;
	struct rtnl_link *l = NULL, *change;
	struct wg *wa, *wb;
	struct wg_device d;
	const struct wg_peer *got;
	_cleanup_close_ int ns_a = -EBADF, ns_b = -EBADF, rx = -EBADF, tx = -EBADF;
	socklen_t srclen = sizeof(src);
	char msg[64] = "";
	bool created;
	int n = -1;

	ns_a = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	ASSERT(ns_a >= 0);
	ASSERT(unshare(CLONE_NEWNET) == 0);
	ns_b = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	ASSERT(ns_b >= 0);
	ASSERT(setns(ns_a, CLONE_NEWNET) == 0);

	/* A: loopback up (the underlay), both links, wgb moved to B. */
	ASSERT(netlink_open(&sk_a) == 0);
	configure(sk_a, "lo", NULL);
	ASSERT(wireguard_link_create(sk_a, "wga", &created) == 0 && created);
	configure(sk_a, "wga", "10.88.0.1/24");
	ASSERT(wireguard_link_create(sk_a, "wgb", &created) == 0 && created);
	change = rtnl_link_alloc();
	ASSERT(change);
	ASSERT(rtnl_link_get_kernel(sk_a, 0, "wgb", &l) == 0);
	rtnl_link_set_ns_fd(change, ns_b);
	ASSERT(rtnl_link_change(sk_a, l, change, 0) == 0);
	rtnl_link_put(change);
	rtnl_link_put(l);
	ASSERT_EQ(wireguard_link_lookup(sk_a, "wgb"), -ENODEV);

	/* B: the moved link is adopted; its device is reached through a
	 * netlink socket of B's (names resolve there); the receiver. */
	ASSERT(setns(ns_b, CLONE_NEWNET) == 0);
	ASSERT(netlink_open(&sk_b) == 0);
	ASSERT(wireguard_link_create(sk_b, "wgb", &created) == 0 && !created);
	configure(sk_b, "wgb", "10.88.0.2/24");
	ASSERT(wg_open(WG_BACKEND_KERNEL, "wgb", NULL, &wb) == 0);
	ASSERT(wg_key_generate(ka) == 0);
	ASSERT(wg_key_generate(kb) == 0);
	ASSERT(wg_key_public(ka, to_a.public_key) == 0);
	ASSERT(wg_key_public(kb, to_b.public_key) == 0);
	ASSERT(wg_device_set(wb, kb, 51841) == 0);
	ASSERT(wg_peer_add(wb, &to_a) == 0);
	rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT(rx >= 0);
	ASSERT(inet_pton(AF_INET, "10.88.0.2", &dst.sin_addr) == 1);
	ASSERT(bind(rx, (struct sockaddr *)&dst, sizeof(dst)) == 0);

	/* A: its device, and the sender. */
	ASSERT(setns(ns_a, CLONE_NEWNET) == 0);
	ASSERT(wg_open(WG_BACKEND_KERNEL, "wga", NULL, &wa) == 0);
	ASSERT(wg_device_set(wa, ka, 51840) == 0);
	ASSERT(wg_peer_add(wa, &to_b) == 0);
	ASSERT(wg_device_get(wa, &d) == 0);
	ASSERT_EQ(d.n_peers, 1);
	ASSERT_EQ(d.peers[0].last_handshake_sec, 0);
	wg_device_clear(&d);
	tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT(tx >= 0);

	/* The first datagram waits for the handshake; send again now and
	 * then in case it was dropped. */
	for (int i = 0; i < 20 && n < 0; i++) {
		struct pollfd pfd = { rx, POLLIN, 0 };

		ASSERT(sendto(tx, "through the tunnel", 18, 0, (struct sockaddr *)&dst, sizeof(dst)) == 18);
		if (poll(&pfd, 1, 1000) == 1)
			n = (int)recvfrom(rx, msg, sizeof(msg) - 1, 0, (struct sockaddr *)&src, &srclen);
	}
	ASSERT_EQ(n, 18);
	ASSERT_STREQ(msg, "through the tunnel");
	ASSERT_EQ(ntohl(src.sin_addr.s_addr), 0x0a580001); /* 10.88.0.1: from A's tunnel address */

	ASSERT(wg_device_get(wa, &d) == 0);
	ASSERT_EQ(d.n_peers, 1);
	got = &d.peers[0];
	ASSERT(memcmp(got->public_key, to_b.public_key, WG_KEY_LEN) == 0);
	ASSERT(got->rx_bytes > 0 && got->tx_bytes > 0);
	ASSERT(got->last_handshake_sec > 0);
	ASSERT(llabs((long long)(got->last_handshake_sec - time(NULL))) < 60);
	printf("# A: rx %" PRIu64 " tx %" PRIu64 " bytes, handshake %" PRId64 "\n", got->rx_bytes,
	       got->tx_bytes, got->last_handshake_sec);
	wg_device_clear(&d);
	ASSERT(wg_device_get(wb, &d) == 0);
	ASSERT_EQ(d.n_peers, 1);
	got = &d.peers[0];
	ASSERT_STREQ(got->endpoint, "127.0.0.1:51840");
	ASSERT(got->rx_bytes > 0 && got->tx_bytes > 0);
	ASSERT(got->last_handshake_sec > 0);
	printf("# B: rx %" PRIu64 " tx %" PRIu64 " bytes, handshake %" PRId64 "\n", got->rx_bytes,
	       got->tx_bytes, got->last_handshake_sec);
	wg_device_clear(&d);

	wg_check(wa, "wga");
	ASSERT(setns(ns_b, CLONE_NEWNET) == 0);
	wg_check(wb, "wgb");
	ASSERT(setns(ns_a, CLONE_NEWNET) == 0);

	wg_close(wa);
	wg_close(wb);
	netlink_close(sk_a);
	netlink_close(sk_b);
}

static bool file_has(const char *path, const char *text)
{
	_cleanup_free_ char *buf = NULL;

	return read_file(path, 1 << 20, &buf, NULL) == 0 && strstr(buf, text);
}

static bool has_ipv4(struct nl_sock *sk, const char *dev, const char *cidr)
{
	struct nl_cache *cache = NULL;
	int ifindex = wireguard_link_lookup(sk, dev);
	bool found = false;

	ASSERT(ifindex > 0);
	ASSERT(rtnl_addr_alloc_cache(sk, &cache) == 0);
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		char buf[64];

		if (rtnl_addr_get_ifindex(a) == ifindex && rtnl_addr_get_family(a) == AF_INET &&
		    streq(nl_addr2str(rtnl_addr_get_local(a), buf, sizeof(buf)), cidr))
			found = true;
	}
	nl_cache_free(cache);
	return found;
}

/* vmd/hostnet.c as the daemon runs it, on a host with the module: the
 * hub is a kernel link, configured through generic netlink; a VM joins
 * it, a reload without the VM removes its peer, the link goes at exit,
 * and a --keep-running exit hands it to the next daemon. */
TEST(hostnet_kernel_hub)
{
	char root[] = "/tmp/wgk-hostnet-XXXXXX", settings[1024], path[256];
	struct host_config *host = NULL;
	struct schema_errors errors = {};
	struct hostnet *n = NULL;
	struct vm_def *def = NULL;
	struct defset none = {};
	struct nl_sock *sk = NULL;
	struct loop *l = NULL;
	struct wg_device d;
	struct wg *w = NULL;
	uint8_t hub_priv[WG_KEY_LEN], vm_pub[WG_KEY_LEN];
	char *keypath = NULL;
	int keyfd = -EBADF, dirfd;
	const struct wg_peer *p;
	struct stat st;

	ASSERT(unshare(CLONE_NEWNET) == 0);
	ASSERT(netlink_open(&sk) == 0);
	ASSERT(mkdtemp(root));
	snprintf(settings, sizeof(settings),
		 "{\"state_dir\": \"%s/state\", \"run_dir\": \"%s/run\", \"keys_dir\": \"%s/keys\","
		 " \"log_dir\": \"%s/log\", \"definitions_dir\": \"%s/vms.d\","
		 " \"networks\": {\"wgh0\": {\"type\": \"wireguard\", \"address\": \"10.77.0.1/24\", \"listen_port\": 51850,"
		 " \"endpoint\": \"10.0.0.1\", \"implementation\": \"kernel\"}}}",
		 root, root, root, root, root);
	ASSERT(host_config_parse_buffer(settings, strlen(settings), &host, &errors) == 0);
	snprintf(path, sizeof(path), "%s/run", root);
	ASSERT(mkdir(path, 0755) == 0);
	ASSERT(loop_new(&l) == 0);

	ASSERT(hostnet_up(l, host, true, &n) == 0);
	ASSERT(wireguard_link_lookup(sk, "wgh0") > 0 && link_is_up(sk, "wgh0"));
	ASSERT(has_ipv4(sk, "wgh0", "10.77.0.1/24"));
	ASSERT(file_has("/proc/sys/net/ipv4/conf/wgh0/forwarding", "1"));
	/* The hub's key, made once in the state directory, is the device's. */
	snprintf(path, sizeof(path), "%s/state/networks/wgh0", root);
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT(dirfd >= 0);
	ASSERT(fstatat(dirfd, "privatekey", &st, 0) == 0 && (st.st_mode & 0777) == 0600);
	ASSERT(wg_keydir_private(dirfd, hub_priv) == 0);
	close(dirfd);
	ASSERT(wg_open(WG_BACKEND_KERNEL, "wgh0", NULL, &w) == 0);
	ASSERT(wg_device_get(w, &d) == 0);
	ASSERT(d.has_private_key && memcmp(d.private_key, hub_priv, WG_KEY_LEN) == 0);
	ASSERT_EQ(d.listen_port, 51850);
	ASSERT_EQ(d.n_peers, 0);
	wg_device_clear(&d);

	/* A VM joins: its key is made, its wg0.conf written, its peer added. */
	static const char vm[] = "{\"name\": \"edge\", \"system\": \"/nix/store/aaaa-edge\","
				 " \"wireguard\": {\"hub\": \"wgh0\", \"address\": \"10.77.0.2/32\"}}";
	ASSERT(def_parse_buffer(vm, sizeof(vm) - 1, &def, &errors) == 0);
	ASSERT(def->n_keys == 1 && streq(def->keys[0].name, "wireguard"));
	ASSERT(keydir_prepare(host->keys_dir, "edge", &(struct keydir_key){ .name = "wireguard", .wireguard = true },
			      &keypath, &keyfd) == 0);
	ASSERT(hostnet_wg_join(n, def, keyfd) == 0);
	ASSERT(wg_keydir_public(keyfd, vm_pub) == 0);
	ASSERT(fstatat(keyfd, "wg0.conf", &st, 0) == 0 && (st.st_mode & 0777) == 0600);
	snprintf(path, sizeof(path), "%s/wg0.conf", keypath);
	ASSERT(file_has(path, "Address = 10.77.0.2/32\n") && file_has(path, "Endpoint = 10.0.0.1:51850\n") &&
	       file_has(path, "AllowedIPs = 10.77.0.0/24\n"));
	ASSERT(wg_device_get(w, &d) == 0);
	ASSERT_EQ(d.n_peers, 1);
	p = wg_device_find_peer(&d, vm_pub);
	ASSERT(p && p->allowed_ips && streq(p->allowed_ips[0], "10.77.0.2/32") && !p->allowed_ips[1]);
	wg_device_clear(&d);
	wg_check(w, "wgh0");

	/* A reload without the VM takes its peer away. */
	hostnet_sync(n, &none);
	ASSERT(wg_device_get(w, &d) == 0);
	ASSERT_EQ(d.n_peers, 0);
	wg_device_clear(&d);
	wg_close(w);

	/* --keep-running: the link stays for the next daemon, which adopts
	 * it as its own; a plain exit then removes it. (Bridges are
	 * tested on the host: test-net.c, test_net.py.) */
	hostnet_down(n, true);
	ASSERT(wireguard_link_lookup(sk, "wgh0") > 0);
	snprintf(path, sizeof(path), "%s/run/net.json", root);
	ASSERT(file_has(path, "\"wgh0\""));
	ASSERT(hostnet_up(l, host, true, &n) == 0);
	hostnet_down(n, false);
	ASSERT_EQ(wireguard_link_lookup(sk, "wgh0"), -ENODEV);
	ASSERT(access(path, F_OK) < 0 && errno == ENOENT);

	/* A hub vmd did not make is adopted and left behind. */
	bool created;
	ASSERT(wireguard_link_create(sk, "wgh0", &created) == 0 && created);
	ASSERT(hostnet_up(l, host, true, &n) == 0);
	hostnet_down(n, false);
	ASSERT(wireguard_link_lookup(sk, "wgh0") > 0);
	ASSERT(link_delete(sk, "wgh0") == 0);

	sodium_memzero(hub_priv, sizeof(hub_priv));
	safe_close(keyfd);
	free(keypath);
	def_free(def);
	loop_free(l);
	host_config_free(host);
	netlink_close(sk);
	snprintf(settings, sizeof(settings), "rm -rf %s", root);
	ASSERT(system(settings) == 0);
}

int main(int argc, char **argv)
{
	static const struct test tests[] = {
		T_SETUP(link_create), T(device_set_get), T(peer_add),         T(peer_update),
		T(refused),           T(peer_remove),    T(many_allowed_ips), T(handshake),
		T(hostnet_kernel_hub),
	};
	int r;

	if (argc > 1)
		wg_cmd = argv + 1;
	r = run_tests(tests, ELEMENTSOF(tests), NULL);
	free(wg_found);
	return r;
}

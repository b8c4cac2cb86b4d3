/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* net/wg-uapi.c: the UAPI text format, then the real wireguard-go in a network
 * and mount namespace of the test's own (its socket directory is a tmpfs
 * there, so nothing is left on the host). */
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test.h"
#include "wg.h"

static const uint8_t K1[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
				17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

TEST(format)
{
	char *allowed[] = { (char *)"10.77.0.2/32", (char *)"fd00::2/128", NULL };
	struct wg_peer p = { .endpoint = "10.0.0.1:51820", .keepalive = 25, .allowed_ips = allowed };
	_cleanup_free_ char *dev = NULL, *peer = NULL, *rm = NULL;

	memcpy(p.public_key, K1, 32);
	dev = wg_uapi_format_device(K1, 51820);
	ASSERT_STREQ(dev, "set=1\nprivate_key=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n"
			  "listen_port=51820\n\n");
	peer = wg_uapi_format_peer(&p, false);
	ASSERT_STREQ(peer, "set=1\npublic_key=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n"
			   "endpoint=10.0.0.1:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\n"
			   "allowed_ip=10.77.0.2/32\nallowed_ip=fd00::2/128\n\n");
	rm = wg_uapi_format_peer(&p, true);
	ASSERT_STREQ(rm, "set=1\npublic_key=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n"
			 "remove=true\n\n");
	/* A newline in a value would inject a command. */
	allowed[0] = (char *)"10.77.0.2/32\nprivate_key=00";
	ASSERT(!wg_uapi_format_peer(&p, false));
	snprintf(p.endpoint, sizeof(p.endpoint), "1.2.3.4:5\nremove=true");
	allowed[0] = (char *)"10.77.0.2/32";
	ASSERT(!wg_uapi_format_peer(&p, false));
}

TEST(parse)
{
	static const char reply[] =
		"private_key=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n"
		"listen_port=51820\n"
		"fwmark=0\n"
		"public_key=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n"
		"preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n"
		"protocol_version=1\n"
		"endpoint=10.0.0.2:40000\n"
		"last_handshake_time_sec=1700000000\n"
		"last_handshake_time_nsec=5\n"
		"tx_bytes=1234\n"
		"rx_bytes=5678\n"
		"persistent_keepalive_interval=25\n"
		"allowed_ip=10.77.0.2/32\n"
		"public_key=2002030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n"
		"errno=0\n\n";
	struct wg_device d;

	ASSERT(wg_uapi_parse_get(reply, &d) == 0);
	ASSERT(d.has_private_key && memcmp(d.private_key, K1, 32) == 0);
	ASSERT_EQ(d.listen_port, 51820);
	ASSERT_EQ(d.n_peers, 2);
	ASSERT_STREQ(d.peers[0].endpoint, "10.0.0.2:40000");
	ASSERT_EQ(d.peers[0].tx_bytes, 1234);
	ASSERT_EQ(d.peers[0].rx_bytes, 5678);
	ASSERT_EQ(d.peers[0].last_handshake_sec, 1700000000);
	ASSERT_EQ(d.peers[0].keepalive, 25);
	ASSERT_STREQ(d.peers[0].allowed_ips[0], "10.77.0.2/32");
	ASSERT(!d.peers[0].allowed_ips[1]);
	ASSERT(!d.peers[1].allowed_ips);
	ASSERT(wg_device_find_peer(&d, K1) == &d.peers[0]);
	wg_device_clear(&d);

	ASSERT(wg_uapi_parse_get("errno=22\n\n", &d) == -EINVAL);
	ASSERT(wg_uapi_parse_get("errno=0\n", &d) == -EBADMSG);       /* no blank line */
	ASSERT(wg_uapi_parse_get("listen_port=x\nerrno=0\n\n", &d) == -EBADMSG);
	ASSERT(wg_uapi_parse_get("listen_port=70000\nerrno=0\n\n", &d) == -EBADMSG);
	ASSERT(wg_uapi_parse_get("public_key=zz\nerrno=0\n\n", &d) == -EBADMSG);
	ASSERT(wg_uapi_parse_get("garbage\nerrno=0\n\n", &d) == -EBADMSG);
	ASSERT(wg_uapi_parse_get("listen_port=1\n\n", &d) == -EBADMSG); /* no errno */
	ASSERT(wg_uapi_parse_get("", &d) == -EBADMSG);
}

static pid_t wg_go;

static void start_wireguard_go(void)
{
	struct stat st;

	/* Own network and mount namespaces; /run is a fresh tmpfs here. */
	ASSERT(unshare(CLONE_NEWNET | CLONE_NEWNS) == 0);
	ASSERT(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
	ASSERT(mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") == 0);
	wg_go = fork();
	ASSERT(wg_go >= 0);
	if (wg_go == 0) {
		setenv("WG_PROCESS_FOREGROUND", "1", 1);
		execlp("wireguard-go", "wireguard-go", "wgtest", NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && stat("/run/wireguard/wgtest.sock", &st) < 0; i++)
		usleep(10000);
	ASSERT(stat("/run/wireguard/wgtest.sock", &st) == 0);
}

TEST(against_wireguard_go)
{
	char *allowed1[] = { (char *)"10.77.0.2/32", NULL }, *allowed2[] = { (char *)"10.77.0.3/32", NULL };
	uint8_t priv[32], pub[32];
	struct wg_peer p = { .endpoint = "127.0.0.1:51821", .keepalive = 25, .allowed_ips = allowed1 };
	const struct wg_peer *got;
	struct wg_device d;
	struct wg *w;
	int status;

	start_wireguard_go();
	ASSERT(wg_open(WG_BACKEND_UAPI, "wgtest", NULL, &w) == 0);
	ASSERT(wg_key_generate(priv) == 0);
	ASSERT(wg_key_generate(p.public_key) == 0);
	ASSERT(wg_key_public(p.public_key, pub) == 0);
	memcpy(p.public_key, pub, 32);

	ASSERT(wg_device_set(w, priv, 51820) == 0);
	ASSERT(wg_peer_add(w, &p) == 0);
	ASSERT(wg_device_get(w, &d) == 0);
	ASSERT(d.has_private_key && memcmp(d.private_key, priv, 32) == 0);
	ASSERT_EQ(d.listen_port, 51820);
	ASSERT_EQ(d.n_peers, 1);
	got = wg_device_find_peer(&d, pub);
	ASSERT(got);
	ASSERT_STREQ(got->endpoint, "127.0.0.1:51821");
	ASSERT_EQ(got->keepalive, 25);
	ASSERT_STREQ(got->allowed_ips[0], "10.77.0.2/32");
	wg_device_clear(&d);

	/* Adding again updates: the allowed IPs are replaced. */
	p.allowed_ips = allowed2;
	ASSERT(wg_peer_add(w, &p) == 0);
	ASSERT(wg_device_get(w, &d) == 0);
	ASSERT_EQ(d.n_peers, 1);
	ASSERT_STREQ(d.peers[0].allowed_ips[0], "10.77.0.3/32");
	ASSERT(!d.peers[0].allowed_ips[1]);
	wg_device_clear(&d);

	ASSERT(wg_peer_remove(w, pub) == 0);
	ASSERT(wg_peer_remove(w, pub) == 0);
	ASSERT(wg_device_get(w, &d) == 0);
	ASSERT_EQ(d.n_peers, 0);
	wg_device_clear(&d);

	/* What the device refuses comes back as an errno. */
	p.allowed_ips = (char *[]){ (char *)"10.77.0.300/32", NULL };
	ASSERT(wg_peer_add(w, &p) < 0);
	wg_close(w);

	/* A device that is not there. */
	ASSERT(wg_open(WG_BACKEND_UAPI, "nosuch", NULL, &w) == 0);
	ASSERT(wg_device_get(w, &d) == -ENOENT);
	wg_close(w);
	ASSERT(wg_open(WG_BACKEND_UAPI, "../etc", NULL, &w) == -EINVAL);
	ASSERT(wg_open(WG_BACKEND_KERNEL, "wgtest", NULL, &w) == -EOPNOTSUPP);

	kill(wg_go, SIGTERM);
	ASSERT(waitpid(wg_go, &status, 0) == wg_go);
}

RUN_TESTS(T(format), T(parse), T(against_wireguard_go))

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "netname.h"

static void name_hash(const char *vm, uint8_t *out, size_t n)
{
	static const uint8_t key[crypto_generichash_KEYBYTES] = "vmd link names and MAC addrs..";

	crypto_generichash(out, n, (const uint8_t *)vm, strlen(vm), key, sizeof(key));
}

void link_name_for_vm(const char *vm, char *buf)
{
	uint8_t h[16];

	if (strlen(vm) + 3 <= LINK_NAME_MAX) {
		snprintf(buf, LINK_NAME_MAX + 1, "vm-%s", vm);
		return;
	}
	name_hash(vm, h, sizeof(h));
	snprintf(buf, LINK_NAME_MAX + 1, "vm-%.6s-%02x%02x%x", vm, h[0], h[1], h[2] >> 4);
}

void mac_for_vm(const char *vm, uint8_t mac[6])
{
	uint8_t h[16];

	name_hash(vm, h, sizeof(h));
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	memcpy(mac + 3, h, 3);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int mac_parse(const char *s, uint8_t mac[6])
{
	if (strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = hexval(s[i * 3]), lo = hexval(s[i * 3 + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	if (mac[0] & 1)
		return -EINVAL; /* multicast */
	return 0;
}

void mac_format(const uint8_t mac[6], char buf[18])
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

const char *check_ifname(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 15)
		return "must be 1..15 characters (an interface name, IFNAMSIZ)";
	if (s[0] == '-' || s[0] == '.')
		return "must not start with '-' or '.'";
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '_' || *p == '.'))
			return "may only contain letters, digits, '-', '_' and '.'";
	return NULL;
}

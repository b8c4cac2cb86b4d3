/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* IPv4 addresses and prefixes as vmd's settings and definitions write them
 * ("10.0.0.1", "10.0.0.1/24"). Pure functions: parsed strictly (four
 * decimal parts without leading zeros, a prefix 0..32), so a string that
 * passes is also safe on a kernel command line or in a config file. */

#include <stdbool.h>
#include <stdint.h>

struct cidr {
	uint32_t addr; /* host byte order */
	uint8_t prefix;
};

#define ADDR_STR_MAX 19 /* "255.255.255.255/32" + NUL */

int addr_parse(const char *s, uint32_t *ret);
int cidr_parse(const char *s, struct cidr *ret);
uint32_t cidr_netmask(uint8_t prefix);
/* Whether addr lies in c's network. */
bool cidr_contains(const struct cidr *c, uint32_t addr);
/* Whether two networks share an address. */
bool cidr_overlaps(const struct cidr *a, const struct cidr *b);
/* addr is the network's or the broadcast address (prefix < 31). */
bool cidr_is_edge(const struct cidr *c, uint32_t addr);
void addr_format(uint32_t addr, char buf[ADDR_STR_MAX]);
/* "a.b.c.d/n"; network: the network address instead of c's own. */
void cidr_format(const struct cidr *c, bool network, char buf[ADDR_STR_MAX]);

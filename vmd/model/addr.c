/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"

/* A decimal number 0..max without sign, spaces or leading zeros; *p moves
 * past it. */
static int number(const char **p, unsigned max, unsigned *ret)
{
	const char *s = *p;
	unsigned v = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	if (*s == '0' && s[1] >= '0' && s[1] <= '9')
		return -EINVAL;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (unsigned)(*s - '0');
		if (v > max)
			return -EINVAL;
		s++;
	}
	*p = s;
	*ret = v;
	return 0;
}

static int parse_addr(const char **p, uint32_t *ret)
{
	uint32_t a = 0;

	for (int i = 0; i < 4; i++) {
		unsigned part;

		if (i > 0 && *(*p)++ != '.')
			return -EINVAL;
		if (number(p, 255, &part) < 0)
			return -EINVAL;
		a = a << 8 | part;
	}
	*ret = a;
	return 0;
}

int addr_parse(const char *s, uint32_t *ret)
{
	uint32_t a;

	if (parse_addr(&s, &a) < 0 || *s)
		return -EINVAL;
	*ret = a;
	return 0;
}

int cidr_parse(const char *s, struct cidr *ret)
{
	unsigned prefix;
	uint32_t a;

	if (parse_addr(&s, &a) < 0 || *s++ != '/' || number(&s, 32, &prefix) < 0 || *s)
		return -EINVAL;
	*ret = (struct cidr){ a, (uint8_t)prefix };
	return 0;
}

uint32_t cidr_netmask(uint8_t prefix)
{
	return prefix == 0 ? 0 : UINT32_MAX << (32 - prefix);
}

bool cidr_contains(const struct cidr *c, uint32_t addr)
{
	uint32_t m = cidr_netmask(c->prefix);

	return (c->addr & m) == (addr & m);
}

bool cidr_overlaps(const struct cidr *a, const struct cidr *b)
{
	uint32_t m = cidr_netmask(a->prefix < b->prefix ? a->prefix : b->prefix);

	return (a->addr & m) == (b->addr & m);
}

bool cidr_is_edge(const struct cidr *c, uint32_t addr)
{
	uint32_t m = cidr_netmask(c->prefix);

	if (c->prefix >= 31)
		return false;
	return (addr & ~m) == 0 || (addr & ~m) == ~m;
}

void addr_format(uint32_t a, char buf[ADDR_STR_MAX])
{
	snprintf(buf, ADDR_STR_MAX, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

void cidr_format(const struct cidr *c, bool network, char buf[ADDR_STR_MAX])
{
	uint32_t a = network ? c->addr & cidr_netmask(c->prefix) : c->addr;

	snprintf(buf, ADDR_STR_MAX, "%u.%u.%u.%u/%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255,
		 c->prefix > 32 ? 32 : c->prefix);
}

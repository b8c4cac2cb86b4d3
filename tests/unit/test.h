/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A minimal test harness: TEST() functions listed in a table, TAP output,
 * and assertions that abort with the location. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>

#include "util.h"

#define ASSERT(x)                                                                       \
	do {                                                                            \
		if (!(x)) {                                                             \
			fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
				__LINE__, #x);                                          \
			abort();                                                        \
		}                                                                       \
	} while (0)

#define ASSERT_EQ(a, b)                                                                 \
	do {                                                                            \
		long long _a = (long long)(a), _b = (long long)(b);                    \
		if (_a != _b) {                                                         \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n",       \
				__FILE__, __LINE__, #a, #b, _a, _b);                    \
			abort();                                                        \
		}                                                                       \
	} while (0)

#define ASSERT_STREQ(a, b)                                                              \
	do {                                                                            \
		const char *_a = (a), *_b = (b);                                        \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                                \
			fprintf(stderr, "%s:%d: %s == %s failed:\n  \"%s\"\n  \"%s\"\n", \
				__FILE__, __LINE__, #a, #b, _a ? _a : "(null)",         \
				_b ? _b : "(null)");                                    \
			abort();                                                        \
		}                                                                       \
	} while (0)

struct test {
	const char *name;
	void (*fn)(void);
};

#define TEST(name) static void test_##name(void)
#define T(name) { #name, test_##name }

static inline int run_tests(const struct test *tests, size_t n)
{
	printf("1..%zu\n", n);
	for (size_t i = 0; i < n; i++) {
		tests[i].fn();
		printf("ok %zu - %s\n", i + 1, tests[i].name);
		fflush(stdout);
	}
	return 0;
}

/* Helpers for tests that need files (from the core library). */

/* A fresh directory under /tmp; remove it with rm_tree(). */
static inline char *tmpdir(void)
{
	char tmpl[] = "/tmp/vmd-test-XXXXXX";
	return strdup(mkdtemp(tmpl));
}

static inline void rm_tree(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	ASSERT(fd >= 0);
	ASSERT(rm_rf_children(fd) == 0);
	close(fd);
	ASSERT(rmdir(dir) == 0);
}

#define RUN_TESTS(...)                                                                  \
	int main(void)                                                                  \
	{                                                                               \
		static const struct test _tests[] = { __VA_ARGS__ };                   \
		return run_tests(_tests, sizeof(_tests) / sizeof(_tests[0]));          \
	}

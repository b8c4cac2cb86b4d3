/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A minimal test harness: TEST() functions listed in a table, run in order
 * in one process, with TAP output.
 *
 * A failed assertion prints "# file:line: ..." with the values and ends its
 * test: it longjmps back to run_tests(), which prints "not ok N - name" and
 * goes on with the next test. run_tests() ends with "# N passed, M failed"
 * and returns 1 if any test failed. A failed test skips its own cleanup, on
 * purpose: its memory and fds stay, and so does its tmpdir() (at most one
 * directory per tmpdir() call), for a look.
 *
 * The tests share the process because some build on earlier ones (a network
 * namespace, a device). A test listed with T_SETUP() is one the tests after
 * it need: if it fails, the run stops with "Bail out!". A crash, or a
 * sanitizer report, still ends the binary; the missing results and the exit
 * status fail the run, and the sanitizer's report is on stderr.
 *
 * In a process that a test forked, or outside run_tests(), a failed
 * assertion aborts as before: there is no runner there to go back to.
 *
 * Running some tests while debugging: `test-def NAME...` runs the tests
 * whose names match one of the fnmatch(3) patterns, e.g.
 *   build/tests/test-def defaults 'host_*'
 * along with the T_SETUP() tests before them. A pattern that matches no test
 * is an error. */

#include <fcntl.h>
#include <fnmatch.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static jmp_buf test_jmp;
static pid_t test_runner; /* the process in run_tests(), or 0 */

_noreturn_ static inline void test_fail(void)
{
	fflush(stdout);
	if (test_runner != getpid())
		abort();
	longjmp(test_jmp, 1);
}

/* A string as a one-line diagnostic: TAP has no room for raw newlines. */
static inline void test_diag_str(const char *s)
{
	if (!s) {
		printf("#   (null)\n");
		return;
	}
	printf("#   \"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\n')
			printf("\\n");
		else if (c == '\t')
			printf("\\t");
		else if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	printf("\"\n");
}

#define ASSERT(x)                                                                       \
	do {                                                                            \
		if (!(x)) {                                                             \
			printf("# %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x); \
			test_fail();                                                    \
		}                                                                       \
	} while (0)

#define ASSERT_EQ(a, b)                                                                 \
	do {                                                                            \
		long long _a = (long long)(a), _b = (long long)(b);                    \
		if (_a != _b) {                                                         \
			printf("# %s:%d: %s == %s failed: %lld != %lld\n", __FILE__,    \
			       __LINE__, #a, #b, _a, _b);                               \
			test_fail();                                                    \
		}                                                                       \
	} while (0)

#define ASSERT_STREQ(a, b)                                                              \
	do {                                                                            \
		const char *_a = (a), *_b = (b);                                        \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                                \
			printf("# %s:%d: %s == %s failed:\n", __FILE__, __LINE__, #a, #b); \
			test_diag_str(_a);                                              \
			test_diag_str(_b);                                              \
			test_fail();                                                    \
		}                                                                       \
	} while (0)

struct test {
	const char *name;
	void (*fn)(void);
	bool setup;
};

#define TEST(name) static void test_##name(void)
#define T(name) { #name, test_##name, false }
#define T_SETUP(name) { #name, test_##name, true }

static inline bool test_matches(const struct test *t, char *const *patterns)
{
	if (!patterns || !*patterns)
		return true;
	for (; *patterns; patterns++)
		if (fnmatch(*patterns, t->name, 0) == 0)
			return true;
	return false;
}

static inline bool test_selected(const struct test *tests, size_t n, size_t i, char *const *patterns)
{
	if (test_matches(&tests[i], patterns))
		return true;
	for (size_t j = i + 1; tests[i].setup && j < n; j++)
		if (test_matches(&tests[j], patterns))
			return true;
	return false;
}

/* Apart from run_tests(): no local here changes between setjmp and longjmp. */
static inline bool test_run_one(const struct test *t)
{
	if (setjmp(test_jmp) != 0)
		return false;
	t->fn();
	return true;
}

/* Runs the tests that match patterns (NULL-terminated; NULL or empty: all). */
static inline int run_tests(const struct test *tests, size_t n, char *const *patterns)
{
	size_t planned = 0, number = 0, failed = 0;

	/* What a test printed must be out even if it crashes. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (char *const *p = patterns; p && *p; p++) {
		bool any = false;

		for (size_t i = 0; i < n; i++)
			any |= fnmatch(*p, tests[i].name, 0) == 0;
		if (!any) {
			printf("Bail out! no test matches '%s'\n", *p);
			for (size_t i = 0; i < n; i++)
				printf("# %s\n", tests[i].name);
			return 1;
		}
	}
	for (size_t i = 0; i < n; i++)
		planned += test_selected(tests, n, i, patterns);
	printf("1..%zu\n", planned);

	test_runner = getpid();
	for (size_t i = 0; i < n; i++) {
		if (!test_selected(tests, n, i, patterns))
			continue;
		number++;
		if (test_run_one(&tests[i])) {
			printf("ok %zu - %s\n", number, tests[i].name);
			continue;
		}
		printf("not ok %zu - %s\n", number, tests[i].name);
		failed++;
		if (tests[i].setup) {
			printf("Bail out! the tests after %s need it\n", tests[i].name);
			break;
		}
	}
	test_runner = 0;
	printf("# %zu passed, %zu failed\n", number - failed, failed);
	return failed > 0;
}

/* Helpers for tests that need files (from the core library). */

/* A fresh directory under /tmp; remove it with rm_tree(). A test that fails
 * before that leaves it behind (the harness removes nothing). */
static inline char *tmpdir(void)
{
	char tmpl[] = "/tmp/vmd-test-XXXXXX";

	ASSERT(mkdtemp(tmpl));
	return strdup(tmpl);
}

static inline void rm_tree(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	ASSERT(fd >= 0);
	ASSERT(rm_rf_children(fd) == 0);
	close(fd);
	ASSERT(rmdir(dir) == 0);
}

/* main(): argv names the tests to run, as above. */
#define RUN_TESTS(...)                                                                  \
	int main(_unused_ int argc, char **argv)                                        \
	{                                                                               \
		static const struct test _tests[] = { __VA_ARGS__ };                   \
		return run_tests(_tests, ELEMENTSOF(_tests), argv + 1);                \
	}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The harness of test.h, tested: this binary runs itself with tests that
 * fail or crash on purpose (TEST_HARNESS_INNER=failing or crashing) and
 * checks their TAP output and exit status, so the suite stays green. */
#include <limits.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "test.h"

/* The tests that fail, in the child. */

TEST(passes)
{
	ASSERT(true);
}

TEST(assert_fails)
{
	int *p = NULL;

	ASSERT(p);
	*p = 1; /* past a failed assertion: would crash the binary */
}

TEST(eq_fails)
{
	ASSERT_EQ(40 + 2, 41);
}

TEST(streq_fails)
{
	ASSERT_STREQ("two\nlines", NULL);
}

static void helper_fails(void)
{
	ASSERT_EQ(strlen("abc"), 4);
}

TEST(fails_in_helper)
{
	helper_fails();
	printf("# after the helper\n");
}

/* The child must not go on with the runner's next tests. */
TEST(fails_in_forked_child)
{
	pid_t pid = fork();
	int status;

	ASSERT(pid >= 0);
	if (pid == 0) {
		ASSERT(pid != 0);
		_exit(0);
	}
	ASSERT(waitpid(pid, &status, 0) == pid);
	ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

TEST(passes_after_failures)
{
	ASSERT(true);
}

TEST(setup_fails)
{
	ASSERT(false);
}

TEST(needs_setup)
{
	printf("# needs_setup ran\n");
}

/* The tests that crash, each run alone. */

TEST(crashes)
{
	abort();
}

/* In tests/build asan, which has ASan and UBSan (GCC defines the macro). */
#ifdef __SANITIZE_ADDRESS__
TEST(heap_overflow)
{
	char *volatile p = malloc(4); /* volatile: for ASan, not UBSan's object-size */

	ASSERT(p);
	printf("# %d\n", p[4]);
	free(p);
}

TEST(signed_overflow)
{
	volatile int big = INT_MAX;

	ASSERT(big + 1 != 0);
}
#endif

/* The checks, in the parent. */

struct inner {
	int status; /* as from waitpid() */
	char *out, *err;
};

static void inner_free(struct inner *r)
{
	free(r->out);
	free(r->err);
}

static char *read_fd(int fd)
{
	char path[64], *buf;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ASSERT(read_file(path, 1 << 20, &buf, NULL) == 0);
	close(fd);
	return buf;
}

/* Runs this binary on the tests of table ("failing" or "crashing") that
 * names select, with stdout and stderr apart. */
static struct inner inner_run(const char *table, char *const *names)
{
	int out = memfd_create("out", MFD_CLOEXEC), err = memfd_create("err", MFD_CLOEXEC);
	char *argv[8] = { "test-harness" };
	struct inner r;
	pid_t pid;

	ASSERT(out >= 0 && err >= 0);
	for (size_t i = 0; names[i]; i++) {
		ASSERT(i + 2 < ELEMENTSOF(argv));
		argv[i + 1] = names[i];
	}
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		dup2(out, STDOUT_FILENO);
		dup2(err, STDERR_FILENO);
		setenv("TEST_HARNESS_INNER", table, 1);
		/* Its crashes are on purpose: no core files. */
		setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	ASSERT(waitpid(pid, &r.status, 0) == pid);
	r.out = read_fd(out);
	r.err = read_fd(err);
	return r;
}

/* s with "# path/test-harness.c:LINE:" as "# test-harness.c:N:", so that
 * the expected output does not move with the source. */
static char *masked(const char *s)
{
	char *buf = NULL;
	size_t size;
	FILE *f = open_memstream(&buf, &size);

	ASSERT(f);
	while (*s) {
		const char *eol = strchrnul(s, '\n'), *at = strstr(s, "test-harness.c:");

		if (startswith(s, "# ") && at && at < eol) {
			fputs("# test-harness.c:N", f);
			s = at + strlen("test-harness.c:");
			s += strspn(s, "0123456789");
		}
		if (*eol)
			eol++;
		fwrite(s, 1, (size_t)(eol - s), f);
		s = eol;
	}
	ASSERT(fclose(f) == 0);
	return buf;
}

#define ASSERT_EXITED(status, code) ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == (code))

/* Runs the failing tests that names select: their output (masked), nothing
 * on stderr, and the exit status. */
static void check_failing(char *const *names, const char *expected, int code)
{
	struct inner r = inner_run("failing", names);
	_cleanup_free_ char *out = masked(r.out);

	ASSERT_STREQ(out, expected);
	ASSERT_STREQ(r.err, "");
	ASSERT_EXITED(r.status, code);
	inner_free(&r);
}

TEST(failures_are_reported_and_the_run_goes_on)
{
	check_failing((char *[]){ NULL },
		      "1..9\n"
		      "ok 1 - passes\n"
		      "# test-harness.c:N: assertion failed: p\n"
		      "not ok 2 - assert_fails\n"
		      "# test-harness.c:N: 40 + 2 == 41 failed: 42 != 41\n"
		      "not ok 3 - eq_fails\n"
		      "# test-harness.c:N: \"two\\nlines\" == NULL failed:\n"
		      "#   \"two\\nlines\"\n"
		      "#   (null)\n"
		      "not ok 4 - streq_fails\n"
		      "# test-harness.c:N: strlen(\"abc\") == 4 failed: 3 != 4\n"
		      "not ok 5 - fails_in_helper\n"
		      "# test-harness.c:N: assertion failed: pid != 0\n"
		      "ok 6 - fails_in_forked_child\n"
		      "ok 7 - passes_after_failures\n"
		      "# test-harness.c:N: assertion failed: false\n"
		      "not ok 8 - setup_fails\n"
		      "Bail out! the tests after setup_fails need it\n"
		      "# 3 passed, 5 failed\n",
		      1);
}

TEST(selection_by_name)
{
	struct inner r;

	check_failing((char *[]){ "passes*", NULL },
		      "1..2\n"
		      "ok 1 - passes\n"
		      "ok 2 - passes_after_failures\n"
		      "# 2 passed, 0 failed\n",
		      0);
	/* In the table's order, whatever the order of the names. */
	check_failing((char *[]){ "eq_fails", "passes", NULL },
		      "1..2\n"
		      "ok 1 - passes\n"
		      "# test-harness.c:N: 40 + 2 == 41 failed: 42 != 41\n"
		      "not ok 2 - eq_fails\n"
		      "# 1 passed, 1 failed\n",
		      1);

	r = inner_run("failing", (char *[]){ "passes", "nosuch", NULL });
	ASSERT(startswith(r.out, "Bail out! no test matches 'nosuch'\n# passes\n"));
	ASSERT_EXITED(r.status, 1);
	inner_free(&r);
}

TEST(selection_runs_setup_first)
{
	check_failing((char *[]){ "needs_setup", NULL },
		      "1..2\n"
		      "# test-harness.c:N: assertion failed: false\n"
		      "not ok 1 - setup_fails\n"
		      "Bail out! the tests after setup_fails need it\n"
		      "# 0 passed, 1 failed\n",
		      1);
}

/* A crash ends the binary: the plan is out, the results are missing. */
TEST(crash_ends_the_run)
{
	struct inner r = inner_run("crashing", (char *[]){ "crashes", NULL });

	ASSERT_STREQ(r.out, "1..1\n");
	ASSERT(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT);
	inner_free(&r);
}

#ifdef __SANITIZE_ADDRESS__
/* Whether the sanitizer then exits or aborts (ASAN_OPTIONS, UBSAN_OPTIONS),
 * its report is on stderr and the status is not 0: the build has
 * -fno-sanitize-recover. */
static void sanitizer_ends_the_run(const char *test, const char *report)
{
	struct inner r = inner_run("crashing", (char *[]){ (char *)test, NULL });

	ASSERT_STREQ(r.out, "1..1\n");
	if (!strstr(r.err, report)) {
		printf("# stderr:\n");
		test_diag_str(r.err);
		ASSERT(strstr(r.err, report));
	}
	ASSERT(r.status != 0);
	inner_free(&r);
}

TEST(asan_ends_the_run)
{
	sanitizer_ends_the_run("heap_overflow", "ERROR: AddressSanitizer: heap-buffer-overflow");
}

TEST(ubsan_ends_the_run)
{
	sanitizer_ends_the_run("signed_overflow", "runtime error: signed integer overflow");
}
#define SANITIZER_TESTS T(asan_ends_the_run), T(ubsan_ends_the_run)
#define SANITIZER_CRASHES T(heap_overflow), T(signed_overflow)
#else
#define SANITIZER_TESTS
#define SANITIZER_CRASHES
#endif

int main(_unused_ int argc, char **argv)
{
	static const struct test failing[] = {
		T(passes),
		T(assert_fails),
		T(eq_fails),
		T(streq_fails),
		T(fails_in_helper),
		T(fails_in_forked_child),
		T(passes_after_failures),
		T_SETUP(setup_fails),
		T(needs_setup),
	};
	static const struct test crashing[] = { T(crashes), SANITIZER_CRASHES };
	static const struct test checks[] = {
		T(failures_are_reported_and_the_run_goes_on),
		T(selection_by_name),
		T(selection_runs_setup_first),
		T(crash_ends_the_run),
		SANITIZER_TESTS
	};
	const char *inner = getenv("TEST_HARNESS_INNER");

	if (streq_ptr(inner, "failing"))
		return run_tests(failing, ELEMENTSOF(failing), argv + 1);
	if (streq_ptr(inner, "crashing"))
		return run_tests(crashing, ELEMENTSOF(crashing), argv + 1);
	return run_tests(checks, ELEMENTSOF(checks), argv + 1);
}

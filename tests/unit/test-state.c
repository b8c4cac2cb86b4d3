/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sys/stat.h>

#include "defset.h"
#include "test.h"
#include "vmstate.h"

#define STATE_WITH_LAST_EXIT(le) \
	"{\"version\": 1, \"definition\": {\"name\": \"s\", \"system\": \"/x\"}, \"shares\": [], \"last_exit\": " le "}"

TEST(state_roundtrip)
{
	static const char text[] = "{\"name\": \"s\", \"system\": \"/nix/store/x\", \"vcpus\": 2}";
	_cleanup_free_ char *dir = tmpdir(), *path = xasprintf("%s/state.json", dir);
	struct schema_errors errors = {};
	struct proc_id shares[2] = { { 100, 5 }, { 101, 6 } };
	struct vmstate a = { .qemu = { 99, 4 }, .shares = shares, .n_shares = 2, .started_at = 123,
			     .boot_usec = 456, .ready = true, .restarts = 3,
			     .last_exit = (char *)"crashed: QEMU was killed by signal 9 (Killed)" };
	struct vmstate b = {};
	FILE *f;

	ASSERT(def_parse_buffer(text, strlen(text), &a.def, &errors) == 0);
	ASSERT(vmstate_write(dir, &a) == 0);
	ASSERT(vmstate_read(dir, &b) == 0);
	ASSERT(def_equal(a.def, b.def));
	ASSERT_EQ(b.qemu.pid, 99);
	ASSERT_EQ(b.qemu.start_time, 4);
	ASSERT_EQ(b.n_shares, 2);
	ASSERT_EQ(b.shares[1].pid, 101);
	ASSERT_EQ(b.started_at, 123);
	ASSERT_EQ(b.boot_usec, 456);
	ASSERT(b.ready);
	ASSERT_EQ(b.restarts, 3);
	ASSERT_STREQ(b.last_exit, "crashed: QEMU was killed by signal 9 (Killed)");
	vmstate_clear(&b);
	/* One the reader would refuse is left out, not the whole state. */
	a.last_exit = (char *)"crashed: two\nlines";
	ASSERT(vmstate_write(dir, &a) == 0);
	ASSERT(vmstate_read(dir, &b) == 0);
	ASSERT(b.last_exit == NULL);
	vmstate_clear(&b);
	def_free(a.def);

	/* Anything off is refused, not half-trusted. */
	static const char *const bad[] = {
		"not json",
		"{\"version\": 2}",
		"{\"version\": 1, \"definition\": {\"name\": \"Bad\"}}",
		"{\"version\": 1, \"definition\": {\"name\": \"s\", \"system\": \"/x\"}, \"qemu\": {\"pid\": 1, \"start_time\": 1}, \"shares\": []}",
		"{\"version\": 1, \"definition\": {\"name\": \"s\", \"system\": \"/x\"}, \"qemu\": {\"pid\": 5, \"start_time\": -1}, \"shares\": []}",
		"{\"version\": 1, \"definition\": {\"name\": \"s\", \"system\": \"/x\"}, \"qemu\": {\"pid\": 5, \"start_time\": 1}, \"shares\": [{}]}",
		STATE_WITH_LAST_EXIT("5"),
		STATE_WITH_LAST_EXIT("\"\""),
		STATE_WITH_LAST_EXIT("\"crashed: a\\nb\""),
		STATE_WITH_LAST_EXIT("\"crashed: a\\u0000b\""),
		STATE_WITH_LAST_EXIT("\"crashed: \\u001b[31m\""),
	};
	_cleanup_free_ char *longest = calloc(VMSTATE_LAST_EXIT_MAX + 2, 1);
	_cleanup_free_ char *too_long = NULL;

	ASSERT(longest);
	memset(longest, 'x', VMSTATE_LAST_EXIT_MAX + 1);
	too_long = xasprintf(STATE_WITH_LAST_EXIT("\"%s\""), longest);
	for (size_t i = 0; i <= ELEMENTSOF(bad); i++) {
		f = fopen(path, "w");
		ASSERT(f);
		fputs(i < ELEMENTSOF(bad) ? bad[i] : too_long, f);
		fclose(f);
		ASSERT(vmstate_read(dir, &b) == -EINVAL);
	}
	/* The longest allowed is taken. */
	longest[VMSTATE_LAST_EXIT_MAX] = 0;
	f = fopen(path, "w");
	ASSERT(f);
	fprintf(f, STATE_WITH_LAST_EXIT("\"%s\""), longest);
	fclose(f);
	ASSERT(vmstate_read(dir, &b) == 0);
	ASSERT_EQ(strlen(b.last_exit), VMSTATE_LAST_EXIT_MAX);
	vmstate_clear(&b);
	rm_tree(dir);
}

TEST(defset_loading)
{
	_cleanup_free_ char *dir = tmpdir();
	_cleanup_free_ char *a = xasprintf("%s/a.json", dir), *b = xasprintf("%s/b.json", dir);
	_cleanup_free_ char *c = xasprintf("%s/c.txt", dir), *e = NULL;
	char *paths[] = { dir, NULL };
	struct defset set = {};
	struct defset_errors errors = {};
	json_t *j;
	FILE *f;

	f = fopen(a, "w");
	fputs("{\"name\": \"one\", \"system\": \"/nix/store/x\"}", f);
	fclose(f);
	f = fopen(c, "w"); /* not *.json: ignored */
	fputs("garbage", f);
	fclose(f);
	ASSERT(defset_load(paths, NULL, &set, &errors) == 0);
	ASSERT_EQ(set.n, 1);
	ASSERT(defset_find(&set, "one"));
	ASSERT(!defset_find(&set, "two"));
	defset_clear(&set);

	/* The same name twice: the set is unusable, the error names both. */
	f = fopen(b, "w");
	fputs("{\"name\": \"one\", \"system\": \"/nix/store/y\"}", f);
	fclose(f);
	ASSERT(defset_load(paths, NULL, &set, &errors) == -EINVAL);
	j = defset_errors_json(&errors);
	ASSERT(json_array_size(j) == 1);
	e = xasprintf("%s: name: \"one\" is already defined in %s", b, a);
	ASSERT_STREQ(json_string_value(json_array_get(j, 0)), e);
	json_decref(j);
	defset_errors_clear(&errors);
	defset_clear(&set);
	rm_tree(dir);
}

RUN_TESTS(T(state_roundtrip), T(defset_loading))

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What an image VM's init runs (images/guestconf.c): the image's config
 * merged with the definition's overrides, and the fw_cfg entry. */
#include <signal.h>

#include "guestconf.h"
#include "test.h"

TEST(compose_merges)
{
	char *ep[] = { "/bin/entry", NULL }, *cmd[] = { "serve", "--port", "80", NULL };
	char *env[] = { "PATH=/bin", "A=1", "B=2", NULL }, *over[] = { "B=3", "C=x=y", NULL };
	char *mine[] = { "echo", "hi", NULL };
	struct oci_run run = { .entrypoint = ep, .cmd = cmd, .env = env, .workdir = "/srv", .stop_signal = "SIGQUIT" };
	struct image_launch l = {};
	struct schema_errors e = {};

	ASSERT(image_launch_compose(&run, NULL, over, NULL, &l, &e) == 0);
	ASSERT_STREQ(l.argv[0], "/bin/entry");
	ASSERT_STREQ(l.argv[1], "serve");
	ASSERT(strv_length(l.argv) == 4);
	ASSERT(strv_length(l.env) == 4);
	ASSERT_STREQ(l.env[0], "PATH=/bin");
	ASSERT_STREQ(l.env[1], "A=1");
	ASSERT_STREQ(l.env[2], "B=3");
	ASSERT_STREQ(l.env[3], "C=x=y");
	ASSERT_STREQ(l.workdir, "/srv");
	ASSERT(l.stop_signal == SIGQUIT);
	image_launch_clear(&l);

	/* cmd replaces Cmd, not the Entrypoint; docker's PATH when none. */
	run.env = NULL;
	run.stop_signal = NULL;
	ASSERT(image_launch_compose(&run, mine, NULL, "/tmp", &l, &e) == 0);
	ASSERT(strv_length(l.argv) == 3);
	ASSERT_STREQ(l.argv[1], "echo");
	ASSERT_STREQ(l.env[0], IMAGE_DEFAULT_PATH);
	ASSERT_STREQ(l.workdir, "/tmp");
	ASSERT(l.stop_signal == SIGTERM);
	image_launch_clear(&l);

	/* Nothing to run. */
	run.entrypoint = NULL;
	run.cmd = NULL;
	ASSERT(image_launch_compose(&run, NULL, NULL, NULL, &l, &e) == -EINVAL);
	ASSERT(e.n == 1 && startswith(e.lines[0], "cmd: the image has no Entrypoint or Cmd"));
	schema_errors_clear(&e);
	run.cmd = cmd;
	run.stop_signal = "SIGNOPE";
	ASSERT(image_launch_compose(&run, NULL, NULL, NULL, &l, &e) == -EINVAL);
	ASSERT(e.n == 1 && strstr(e.lines[0], "StopSignal"));
	schema_errors_clear(&e);
}

TEST(signals)
{
	ASSERT(image_parse_signal("SIGTERM") == SIGTERM);
	ASSERT(image_parse_signal("TERM") == SIGTERM);
	ASSERT(image_parse_signal("3") == 3);
	ASSERT(image_parse_signal("SIGRTMIN+3") == SIGRTMIN + 3);
	ASSERT(image_parse_signal("0") == -EINVAL);
	ASSERT(image_parse_signal("65") == -EINVAL);
	ASSERT(image_parse_signal("-1") == -EINVAL);
	ASSERT(image_parse_signal("") == -EINVAL);
	ASSERT(image_parse_signal("SIGRTMIN+99") == -EINVAL);
}

TEST(conf_encodes)
{
	char *argv[] = { "/bin/sh", "-c", "echo a,b 100%\n\x01\xc3\xa9", NULL }, *env[] = { "A=1 2", NULL };
	gid_t groups[] = { 10, 20 };
	struct image_launch l = { .argv = argv, .env = env, .workdir = "/w", .uid = 1000, .gid = 100,
				  .groups = groups, .n_groups = 2, .stop_signal = 15 };
	char *s = NULL, *big[300];

	ASSERT(image_conf_format(&l, &s) == 0);
	ASSERT_STREQ(s, "vmd-image 1\n"
			"argv /bin/sh\n"
			"argv -c\n"
			"argv echo%20a%2Cb%20100%25%0A%01%C3%A9\n"
			"env A=1%202\n"
			"workdir /w\n"
			"uid 1000\n"
			"gid 100\n"
			"groups 10%2C20\n"
			"stop-signal 15\n");
	ASSERT(!strchr(s, ','));
	free(s);

	/* 64 KiB at most. */
	for (size_t i = 0; i < 299; i++)
		big[i] = xasprintf("%0300zu", i);
	big[299] = NULL;
	l.argv = big;
	ASSERT(image_conf_format(&l, &s) == -E2BIG);
	for (size_t i = 0; i < 299; i++)
		free(big[i]);
}

RUN_TESTS(T(compose_merges), T(signals), T(conf_encodes))

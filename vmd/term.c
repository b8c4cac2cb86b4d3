/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <signal.h>
#include <termios.h>

#include "term.h"

static struct termios saved;
static int saved_fd = -1;
static volatile sig_atomic_t raw;

void term_restore(void)
{
	if (!raw)
		return;
	raw = 0;
	(void)tcsetattr(saved_fd, TCSAFLUSH, &saved);
}

/* Async-signal-safe: tcsetattr(), then the default action. */
static void on_fatal(int sig)
{
	if (raw) {
		raw = 0;
		(void)tcsetattr(saved_fd, TCSAFLUSH, &saved);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

int term_raw(int fd)
{
	static const int sigs[] = { SIGTERM, SIGHUP, SIGQUIT, SIGINT };
	static bool hooked;
	struct termios t;

	if (!isatty(fd))
		return -ENOTTY;
	if (tcgetattr(fd, &saved) < 0)
		return -errno;
	saved_fd = fd;
	t = saved;
	/* Output too: the guest's serial line sends "\r\n" itself, and our
	 * own notices say "\r\n". */
	cfmakeraw(&t);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (!hooked) {
		struct sigaction sa = { .sa_handler = on_fatal };

		sigemptyset(&sa.sa_mask);
		for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
			(void)sigaction(sigs[i], &sa, NULL);
		atexit(term_restore);
		hooked = true;
	}
	if (tcsetattr(fd, TCSAFLUSH, &t) < 0)
		return -errno;
	raw = 1;
	return 0;
}

int term_parse_escape(const char *s, int *ret)
{
	char c;

	if (!s)
		return -EINVAL;
	if (s[0] == '^' && s[1] && !s[2])
		c = s[1];
	else if (strncasecmp(s, "ctrl-", 5) == 0 && s[5] && !s[6])
		c = s[5];
	else
		return -EINVAL;
	c = (char)toupper((unsigned char)c);
	if (c < '@' || c > '_')
		return -EINVAL;
	*ret = c - '@';
	return 0;
}

void term_format_escape(int c, char buf[3])
{
	buf[0] = '^';
	buf[1] = (char)('@' + (c & 0x1f));
	buf[2] = 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <time.h>

#include "log.h"

static enum log_level max_level = LOG_LEVEL_INFO;
static bool timestamps;

void log_set_level(enum log_level level)
{
	max_level = level;
}

enum log_level log_get_level(void)
{
	return max_level;
}

void log_set_timestamps(bool on)
{
	timestamps = on;
}

int log_full_errno(enum log_level level, int error, const char *fmt, ...)
{
	static const char *const prefix[] = {
		[LOG_LEVEL_ERROR] = "error: ",
		[LOG_LEVEL_WARNING] = "warning: ",
		[LOG_LEVEL_INFO] = "",
		[LOG_LEVEL_DEBUG] = "debug: ",
	};
	int saved = errno;
	char buf[2048];
	va_list ap;

	error = error < 0 ? -error : error;
	if (level > max_level)
		return -error;
	/* %m refers to the error passed in, not to whatever errno is now. */
	errno = error;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (timestamps) {
		struct timespec ts;
		struct tm tm;
		char when[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ld ", when, ts.tv_nsec / 1000000);
	}
	fprintf(stderr, "vmd: %s%s\n", prefix[level], buf);
	errno = saved;
	return -error;
}

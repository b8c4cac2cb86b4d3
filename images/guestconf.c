/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "guestconf.h"

void image_launch_clear(struct image_launch *l)
{
	strv_free(l->argv);
	strv_free(l->env);
	free(l->workdir);
	free(l->groups);
	*l = (struct image_launch){};
}

static const struct {
	const char *name;
	int sig;
} signal_names[] = {
	{ "HUP", SIGHUP },   { "INT", SIGINT },   { "QUIT", SIGQUIT }, { "KILL", SIGKILL },
	{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "TERM", SIGTERM }, { "WINCH", SIGWINCH },
	{ "PWR", SIGPWR },   { "STOP", SIGSTOP }, { "CONT", SIGCONT }, { "ALRM", SIGALRM },
};

int image_parse_signal(const char *s)
{
	char *end;
	unsigned long n;

	if (startswith(s, "SIG"))
		s += 3;
	for (size_t i = 0; i < ELEMENTSOF(signal_names); i++)
		if (streq(s, signal_names[i].name))
			return signal_names[i].sig;
	if (startswith(s, "RTMIN+")) {
		n = strtoul(s + 6, &end, 10);
		return *end || !s[6] || n > (unsigned long)(SIGRTMAX - SIGRTMIN) ? -EINVAL : SIGRTMIN + (int)n;
	}
	if (*s < '1' || *s > '9')
		return -EINVAL;
	n = strtoul(s, &end, 10);
	return *end || n < 1 || n > 64 ? -EINVAL : (int)n;
}

static size_t name_len(const char *entry)
{
	const char *eq = strchr(entry, '=');

	return eq ? (size_t)(eq - entry) : strlen(entry);
}

/* The image's Env, then env over it by NAME. */
static int merge_env(char *const *image, char *const *env, char ***ret)
{
	_cleanup_strv_free_ char **out = NULL;
	bool has_path = false;

	for (size_t i = 0; image && image[i]; i++) {
		bool replaced = false;

		for (size_t j = 0; env && env[j]; j++)
			if (name_len(env[j]) == name_len(image[i]) &&
			    strncmp(env[j], image[i], name_len(image[i])) == 0)
				replaced = true;
		if (!replaced && strv_extend(&out, image[i]) < 0)
			return -ENOMEM;
	}
	for (size_t j = 0; env && env[j]; j++)
		if (strv_extend(&out, env[j]) < 0)
			return -ENOMEM;
	for (size_t i = 0; out && out[i]; i++)
		has_path |= !!startswith(out[i], "PATH=");
	if (!has_path && strv_extend(&out, IMAGE_DEFAULT_PATH) < 0)
		return -ENOMEM;
	*ret = TAKE_PTR(out);
	return 0;
}

int image_launch_compose(const struct oci_run *run, char *const *cmd, char *const *env, const char *workdir,
			 struct image_launch *ret, struct schema_errors *e)
{
	_cleanup_(image_launch_clear) struct image_launch l = {};
	char *const *args = cmd ? cmd : run->cmd;
	int r;

	for (size_t i = 0; run->entrypoint && run->entrypoint[i]; i++)
		if (strv_extend(&l.argv, run->entrypoint[i]) < 0)
			return -ENOMEM;
	for (size_t i = 0; args && args[i]; i++)
		if (strv_extend(&l.argv, args[i]) < 0)
			return -ENOMEM;
	if (!l.argv || !l.argv[0] || !*l.argv[0]) {
		schema_error(e, "cmd", "the image has no Entrypoint or Cmd: nothing to run (give cmd, or a command "
				       "after --)");
		return -EINVAL;
	}
	r = merge_env(run->env, env, &l.env);
	if (r < 0)
		return r;
	l.workdir = strdup(workdir ? workdir : run->workdir && *run->workdir ? run->workdir : "/");
	if (!l.workdir)
		return -ENOMEM;
	l.stop_signal = SIGTERM;
	if (run->stop_signal && *run->stop_signal) {
		r = image_parse_signal(run->stop_signal);
		if (r < 0) {
			schema_error(e, "image", "StopSignal \"%.32s\" is not a signal", run->stop_signal);
			return -EINVAL;
		}
		l.stop_signal = r;
	}
	*ret = l;
	l = (struct image_launch){};
	return 0;
}

struct buf {
	char *s;
	size_t n, cap;
	bool overflow;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->overflow || b->n + n + 1 > IMAGE_CONF_MAX) {
		b->overflow = true;
		return;
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = 0;
}

static void put_value(struct buf *b, const char *key, const char *v)
{
	static const char hex[] = "0123456789ABCDEF";

	put(b, key, strlen(key));
	put(b, " ", 1);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p > 0x20 && *p < 0x7f && *p != '%' && *p != ',')
			put(b, (const char *)p, 1);
		else {
			char esc[3] = { '%', hex[*p >> 4], hex[*p & 15] };

			put(b, esc, 3);
		}
	}
	put(b, "\n", 1);
}

static void put_uint(struct buf *b, const char *key, unsigned long v)
{
	char num[24];

	snprintf(num, sizeof(num), "%lu", v);
	put_value(b, key, num);
}

int image_conf_format(const struct image_launch *l, char **ret)
{
	struct buf b = { .s = malloc(IMAGE_CONF_MAX) };

	if (!b.s)
		return -ENOMEM;
	b.s[0] = 0;
	put(&b, "vmd-image 1\n", 12);
	for (size_t i = 0; l->argv && l->argv[i]; i++)
		put_value(&b, "argv", l->argv[i]);
	for (size_t i = 0; l->env && l->env[i]; i++)
		put_value(&b, "env", l->env[i]);
	put_value(&b, "workdir", l->workdir ? l->workdir : "/");
	put_uint(&b, "uid", l->uid);
	put_uint(&b, "gid", l->gid);
	if (l->n_groups > 0) {
		char groups[IMAGE_CONF_MAX / 2] = "";
		size_t n = 0;

		for (size_t i = 0; i < l->n_groups && n < sizeof(groups) - 24; i++)
			n += (size_t)snprintf(groups + n, sizeof(groups) - n, "%s%lu", i ? "," : "",
					      (unsigned long)l->groups[i]);
		put_value(&b, "groups", groups);
	}
	put_uint(&b, "stop-signal", (unsigned long)l->stop_signal);
	if (b.overflow) {
		free(b.s);
		return -E2BIG;
	}
	*ret = b.s;
	return 0;
}

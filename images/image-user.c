/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The image's User as numbers, from the image's own etc/passwd and
 * etc/group (image.h). */
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/syscall.h>

#include "beneath.h"
#include "image.h"

#define ETC_FILE_MAX (4 * 1024 * 1024)

/* etc/passwd or etc/group of the tree, symlinks resolved inside it. */
static int read_in_root(int rootfd, const char *path, char **ret)
{
	struct open_how how = {
		.flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	_cleanup_close_ int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));

	return read_fd_regular(fd < 0 ? -errno : fd, ETC_FILE_MAX, ret, NULL);
}

static bool parse_id(const char *s, uint32_t *ret)
{
	uint64_t v = 0;

	if (!*s || strlen(s) > 10)
		return false;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v >= UINT32_MAX)
		return false;
	*ret = (uint32_t)v;
	return true;
}

/* The fields of the line of a passwd or group file whose field `key` (0:
 * the name, 2: the id) is value; fields[] point into a copy in *ret_line. */
static bool find_line(const char *text, size_t key, const char *value, char **ret_line, char *fields[static 7])
{
	for (const char *line = text; line && *line;) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		_cleanup_free_ char *copy = strndup(line, len);
		size_t n = 0;

		line = nl ? nl + 1 : NULL;
		if (!copy)
			return false;
		for (char *s = copy, *c; n < 7; s = c + 1) {
			fields[n++] = s;
			c = strchr(s, ':');
			if (!c)
				break;
			*c = 0;
		}
		if (n < 3 || copy[0] == '#' || copy[0] == '+' || copy[0] == '-')
			continue;
		for (size_t i = n; i < 7; i++)
			fields[i] = (char *)"";
		if (streq(fields[key], value)) {
			*ret_line = TAKE_PTR(copy);
			return true;
		}
	}
	return false;
}

static bool member_of(const char *members, const char *name)
{
	size_t len = strlen(name);

	for (const char *m = members; m;) {
		const char *comma = strchr(m, ',');
		size_t ml = comma ? (size_t)(comma - m) : strlen(m);

		if (ml == len && strncmp(m, name, len) == 0)
			return true;
		m = comma ? comma + 1 : NULL;
	}
	return false;
}

/* The gids of the groups that list name, but gid itself. */
static int supplementary(const char *group, const char *name, gid_t gid, gid_t **ret, size_t *ret_n)
{
	for (const char *line = group; line && *line;) {
		const char *nl = strchr(line, '\n');
		_cleanup_free_ char *copy = strndup(line, nl ? (size_t)(nl - line) : strlen(line));
		char *f[4] = {}, *s = copy;
		uint32_t id;
		size_t n = 0;

		line = nl ? nl + 1 : NULL;
		if (!copy)
			return -ENOMEM;
		for (char *c; n < 4; s = c + 1) {
			f[n++] = s;
			c = strchr(s, ':');
			if (!c)
				break;
			*c = 0;
		}
		if (n < 4 || !parse_id(f[2], &id) || id == gid || !member_of(f[3], name))
			continue;
		bool seen = false;
		for (size_t i = 0; i < *ret_n; i++)
			seen |= (*ret)[i] == id;
		if (seen)
			continue;
		gid_t *t = realloc(*ret, (*ret_n + 1) * sizeof(gid_t));
		if (!t)
			return -ENOMEM;
		*ret = t;
		(*ret)[(*ret_n)++] = id;
	}
	return 0;
}

int image_resolve_user(int rootfd, const char *user, uid_t *uid, gid_t *gid, gid_t **groups, size_t *n_groups,
		       struct schema_errors *e)
{
	_cleanup_free_ char *copy = NULL, *passwd = NULL, *group = NULL, *pline = NULL, *gline = NULL;
	const char *uname = NULL, *gname;
	char *colon, *f[7];
	uint32_t id;
	int r;

	*uid = 0;
	*gid = 0;
	*groups = NULL;
	*n_groups = 0;
	if (!user || !*user)
		return 0;
	copy = strdup(user);
	if (!copy)
		return -ENOMEM;
	colon = strchr(copy, ':');
	gname = colon ? colon + 1 : NULL;
	if (colon)
		*colon = 0;
	if (!*copy || (gname && !*gname)) {
		schema_error(e, "user", "%s: must be NAME, UID, NAME:GROUP or UID:GID", user);
		return -EINVAL;
	}
	r = read_in_root(rootfd, "etc/passwd", &passwd);
	if (r < 0 && r != -ENOENT) {
		schema_error(e, "user", "the image's /etc/passwd: %s", strerror(-r));
		return r;
	}
	if (parse_id(copy, &id)) {
		char buf[16];

		*uid = id;
		snprintf(buf, sizeof(buf), "%" PRIu32, id);
		if (passwd && find_line(passwd, 2, buf, &pline, f)) {
			uname = f[0];
			*gid = parse_id(f[3], &id) ? id : 0;
		}
	} else {
		if (!passwd || !find_line(passwd, 0, copy, &pline, f) || !parse_id(f[2], &id)) {
			schema_error(e, "user", "no user %s in the image's /etc/passwd", copy);
			return -ENOENT;
		}
		uname = f[0];
		*uid = id;
		*gid = parse_id(f[3], &id) ? id : 0;
	}
	r = read_in_root(rootfd, "etc/group", &group);
	if (r < 0 && r != -ENOENT) {
		schema_error(e, "user", "the image's /etc/group: %s", strerror(-r));
		return r;
	}
	if (gname) {
		if (parse_id(gname, &id))
			*gid = id;
		else if (group && find_line(group, 0, gname, &gline, f) && parse_id(f[2], &id))
			*gid = id;
		else {
			schema_error(e, "user", "no group %s in the image's /etc/group", gname);
			return -ENOENT;
		}
		return 0;
	}
	if (uname && group)
		return supplementary(group, uname, *gid, groups, n_groups);
	return 0;
}

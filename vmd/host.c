/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "host.h"
#include "virtiofsd.h"

const char *const accel_names[] = { "auto", "kvm", "tcg", NULL };

/* A binary is a bare name looked up in $PATH, or an absolute path. */
static const char *check_binary(const char *s)
{
	if (!*s)
		return "must not be empty";
	if (strchr(s, '/'))
		return check_abs_path(s);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return "must not contain whitespace or control characters";
	return NULL;
}

static const char *check_group(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 32)
		return "must be 1..32 characters";
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '_' || *p == '.'))
			return "must be a group name";
	return NULL;
}

static const char *check_dir(const char *s)
{
	const char *why = check_abs_path(s);

	if (why)
		return why;
	return streq(s, "/") ? "must not be /" : NULL;
}

#define DIR_FIELD(k, member, def) \
	{ .key = k, .type = SCHEMA_STRING, .offset = offsetof(struct host_config, member), .def_string = def, .check = check_dir }

static const struct schema_field host_table[] = {
	DIR_FIELD("definitions_dir", definitions_dir, "/etc/vmd/vms.d"),
	DIR_FIELD("state_dir", state_dir, "/var/lib/vmd"),
	DIR_FIELD("run_dir", run_dir, "/run/vmd"),
	DIR_FIELD("log_dir", log_dir, "/var/log/vmd"),
	DIR_FIELD("keys_dir", keys_dir, "/var/lib/vmd/keys"),
	DIR_FIELD("store_dir", store_dir, "/nix/store"),
	{ .key = "accel", .type = SCHEMA_ENUM, .offset = offsetof(struct host_config, accel), .enum_names = accel_names, .def_enum = ACCEL_AUTO },
	{ .key = "qemu", .type = SCHEMA_STRING, .offset = offsetof(struct host_config, qemu), .def_string = "qemu-system-x86_64", .check = check_binary },
	{ .key = "virtiofsd", .type = SCHEMA_STRING, .offset = offsetof(struct host_config, virtiofsd), .def_string = "/usr/lib/qemu/virtiofsd", .check = check_binary },
	{ .key = "virtiofsd_style", .type = SCHEMA_ENUM, .offset = offsetof(struct host_config, virtiofsd_style), .enum_names = virtiofsd_style_names, .def_enum = VIRTIOFSD_STYLE_AUTO },
	{ .key = "ready_timeout_s", .type = SCHEMA_U32, .offset = offsetof(struct host_config, ready_timeout_s), .min = 1, .max = 3600, .def_uint = 300 },
	{ .key = "stop_timeout_s", .type = SCHEMA_U32, .offset = offsetof(struct host_config, stop_timeout_s), .min = 1, .max = 3600, .def_uint = 30 },
	{ .key = "log_max_bytes", .type = SCHEMA_U64, .offset = offsetof(struct host_config, log_max_bytes), .min = 65536, .max = UINT64_C(1) << 40, .def_uint = 8 * 1024 * 1024 },
	{ .key = "restart_delay_min_ms", .type = SCHEMA_U32, .offset = offsetof(struct host_config, restart_delay_min_ms), .min = 1, .max = 3600000, .def_uint = 100 },
	{ .key = "restart_delay_max_ms", .type = SCHEMA_U32, .offset = offsetof(struct host_config, restart_delay_max_ms), .min = 1, .max = 3600000, .def_uint = 30000 },
	{ .key = "restart_reset_s", .type = SCHEMA_U32, .offset = offsetof(struct host_config, restart_reset_s), .min = 1, .max = 86400, .def_uint = 10 },
	{ .key = "start_limit_burst", .type = SCHEMA_U32, .offset = offsetof(struct host_config, start_limit_burst), .min = 1, .max = 1000, .def_uint = 5 },
	{ .key = "start_limit_interval_s", .type = SCHEMA_U32, .offset = offsetof(struct host_config, start_limit_interval_s), .min = 1, .max = 86400, .def_uint = 60 },
	{ .key = "control_group", .type = SCHEMA_STRING, .offset = offsetof(struct host_config, control_group), .def_string = "vmd", .check = check_group },
	{}
};

static bool at_or_below(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/' || streq(dir, "/"));
}

static bool overlap(const char *a, const char *b)
{
	return at_or_below(a, b) || at_or_below(b, a);
}

/* vmd empties <run_dir>/vms/<vm> and <state_dir>/disks/<vm> on every start
 * and stop. Key directories, volumes, logs and the store must never be
 * reachable that way. */
static void check_dirs(const struct host_config *c, struct schema_errors *errors)
{
	_cleanup_free_ char *vms = path_join(c->run_dir, "vms"), *disks = path_join(c->state_dir, "disks");
	_cleanup_free_ char *volumes = path_join(c->state_dir, "volumes");
	const struct {
		const char *field, *path;
	} kept[] = {
		{ "keys_dir", c->keys_dir },
		{ "log_dir", c->log_dir },
		{ "store_dir", c->store_dir },
		{ "state_dir", volumes },
	};

	if (!vms || !disks || !volumes)
		return;
	if (c->restart_delay_min_ms > c->restart_delay_max_ms)
		schema_error(errors, "restart_delay_min_ms", "must not be more than restart_delay_max_ms");
	for (size_t i = 0; i < ELEMENTSOF(kept); i++) {
		if (overlap(kept[i].path, vms))
			schema_error(errors, kept[i].field, "must not overlap %s, which vmd sweeps", vms);
		else if (overlap(kept[i].path, disks))
			schema_error(errors, kept[i].field, "must not overlap %s, which vmd sweeps", disks);
	}
}

static char *resolved(const char *path)
{
	char *r = realpath(path, NULL);

	return r ? r : strdup(path);
}

char *host_swept_dir(const struct host_config *c, const char *path)
{
	_cleanup_free_ char *vms = path_join(c->run_dir, "vms"), *disks = path_join(c->state_dir, "disks");
	_cleanup_free_ char *real = resolved(path), *rvms = vms ? resolved(vms) : NULL;
	_cleanup_free_ char *rdisks = disks ? resolved(disks) : NULL;

	if (!real || !rvms || !rdisks)
		return NULL;
	if (overlap(real, rvms))
		return TAKE_PTR(vms);
	if (overlap(real, rdisks))
		return TAKE_PTR(disks);
	return NULL;
}

int host_config_parse_buffer(const char *buf, size_t len, struct host_config **ret,
			     struct schema_errors *errors)
{
	struct host_config *c = calloc(1, sizeof(*c));
	size_t before = errors->n, blank = 0;
	json_t *j = NULL;

	if (!c)
		return -ENOMEM;

	while (blank < len && (buf[blank] == ' ' || buf[blank] == '\t' || buf[blank] == '\r' || buf[blank] == '\n'))
		blank++;
	/* An empty file means "all defaults". */
	if (blank == len)
		j = json_object();
	else
		j = schema_load(buf, len, errors);
	if (j && schema_parse(host_table, j, c, "", errors) == 0)
		check_dirs(c, errors);
	json_decref(j);
	if (!j || errors->n != before) {
		host_config_free(c);
		return -EINVAL;
	}
	*ret = c;
	return 0;
}

int host_config_load(const char *path, struct host_config **ret, struct schema_errors *errors)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = read_file(path ? path : HOST_CONFIG_DEFAULT_PATH, 1024 * 1024, &buf, &len);
	if (r == -ENOENT && !path)
		return host_config_parse_buffer("", 0, ret, errors);
	if (r < 0) {
		schema_error(errors, "json", "cannot read: %s", r == -EFBIG ? "file is larger than 1 MiB" : strerror(-r));
		return -EINVAL;
	}
	return host_config_parse_buffer(buf, len, ret, errors);
}

void host_config_free(struct host_config *c)
{
	if (!c)
		return;
	schema_free(host_table, c);
	free(c);
}

json_t *host_config_to_json(const struct host_config *c)
{
	return schema_to_json(host_table, c);
}

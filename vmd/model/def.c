/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

#include "addr.h"
#include "def.h"
#include "netname.h"

const char *const restart_policy_names[] = { "always", "on-failure", "never", NULL };
const char *const key_generate_names[] = { "none", "wireguard", NULL };
const char *const disk_format_names[] = { "raw", "qcow2", NULL };
const char *const driver_names[] = { "qemu", "libvirt", NULL };

static const char *check_disk_name(const char *s)
{
	const char *why = check_name(s);

	if (why)
		return why;
	return strlen(s) > DEF_DISK_NAME_MAX ? "must be at most 20 characters (virtio-blk serial)" : NULL;
}

static const char *check_tag(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > DEF_TAG_MAX)
		return "must be 1..36 characters";
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '_' || *p == '.'))
			return "may only contain letters, digits, '-', '_' and '.'";
	if (streq(s, "nix-store") || startswith(s, "key-"))
		return "is reserved (nix-store and key-* are vmd's own tags)";
	return NULL;
}

static const char *check_kernel_param(const char *s)
{
	if (!*s)
		return "must not be empty";
	if (strlen(s) > 512)
		return "must be at most 512 characters";
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '"')
			return "must not contain whitespace, control characters or '\"'";
	if (startswith(s, "init="))
		return "init= is set by vmd from \"system\"";
	return NULL;
}

static const char *check_host_path(const char *s)
{
	const char *why = check_abs_path(s);

	if (why)
		return why;
	return streq(s, "/") ? "must not be /" : NULL;
}

static const char *check_image_ref(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 255)
		return "must be 1..255 characters";
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return "must be printable ASCII without spaces, like nginx:1.27";
	return NULL;
}

/* One argument or environment entry for the image's entrypoint: anything
 * but control characters (the guest gets it percent-encoded). */
static const char *check_arg(const char *s)
{
	if (strlen(s) > 4096)
		return "must be at most 4096 bytes";
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < ' ' && *p != '\t')
			return "must not contain control characters";
	return NULL;
}

static const char *check_env(const char *s)
{
	const char *eq = strchr(s, '='), *why = check_arg(s);

	if (why)
		return why;
	if (!eq || eq == s)
		return "must be NAME=value";
	for (const char *p = s; p < eq; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
		      (p > s && *p >= '0' && *p <= '9')))
			return "NAME must be letters, digits and '_', not starting with a digit";
	return NULL;
}

static const struct schema_field key_table[] = {
	{ .key = "name", .type = SCHEMA_STRING, .offset = offsetof(struct def_key, name), .required = true, .check = check_name, .format = "name", .doc = "The key directory's name: unique in the VM, virtiofs tag key-NAME, default source <keys_dir>/<vm>/NAME." },
	{ .key = "target", .type = SCHEMA_STRING, .offset = offsetof(struct def_key, target), .required = true, .check = check_guest_path, .format = "guest-path", .doc = "Where the guest mounts it (absolute; not /, not below /nix/store, /proc, /sys or /dev)." },
	{ .key = "source", .type = SCHEMA_STRING, .offset = offsetof(struct def_key, source), .check = check_host_path, .format = "path", .doc = "The host directory; default <keys_dir>/<vm>/<name>. Created with mode 0700 if missing; never a symlink; never deleted." },
	{ .key = "read_only", .type = SCHEMA_BOOL, .offset = offsetof(struct def_key, read_only), .def_bool = true, .doc = "Mount it read-only in the guest." },
	{ .key = "generate", .type = SCHEMA_ENUM, .offset = offsetof(struct def_key, generate), .enum_names = key_generate_names, .def_enum = KEY_GENERATE_NONE, .doc = "Make a secret in it on first use: \"wireguard\" writes privatekey (0600) and publickey." },
	{}
};

static const struct schema_field share_table[] = {
	{ .key = "tag", .type = SCHEMA_STRING, .offset = offsetof(struct def_share, tag), .required = true, .check = check_tag, .format = "tag", .doc = "The virtiofs tag: 1..36 of letters, digits, -_.; not nix-store or key-*; unique in the VM." },
	{ .key = "source", .type = SCHEMA_STRING, .offset = offsetof(struct def_share, source), .required = true, .check = check_host_path, .format = "path", .doc = "The host directory to share; must exist." },
	{ .key = "target", .type = SCHEMA_STRING, .offset = offsetof(struct def_share, target), .required = true, .check = check_guest_path, .format = "guest-path", .doc = "Where the guest mounts it." },
	{ .key = "read_only", .type = SCHEMA_BOOL, .offset = offsetof(struct def_share, read_only), .def_bool = true, .doc = "Share it read-only." },
	{}
};

static const struct schema_field disk_table[] = {
	{ .key = "name", .type = SCHEMA_STRING, .offset = offsetof(struct def_disk, name), .required = true, .check = check_disk_name, .format = "disk-name", .doc = "The disk's name and virtio-blk serial (at most 20 characters); the guest finds it as /dev/disk/by-id/virtio-NAME." },
	/* 0 (or absent) means the base's size; validate() requires it
	 * without a base. */
	{ .key = "size_mib", .type = SCHEMA_U64, .offset = offsetof(struct def_disk, size_mib), .min = 0, .max = 1048576, .doc = "Size in MiB (sparse). Required without base; with base, 0 means the base's size." },
	{ .key = "mount", .type = SCHEMA_STRING, .offset = offsetof(struct def_disk, mount), .required = true, .check = check_guest_path, .format = "guest-path", .doc = "Where the guest mounts it." },
	{ .key = "persistent", .type = SCHEMA_BOOL, .offset = offsetof(struct def_disk, persistent), .doc = "Keep it across boots under <state_dir>/volumes/<vm>/; vmd never deletes it. Otherwise it is fresh on every boot." },
	{ .key = "base", .type = SCHEMA_STRING, .offset = offsetof(struct def_disk, base), .check = check_host_path, .format = "path", .doc = "A read-only base image: the disk is a fresh qcow2 overlay over it on every boot." },
	{ .key = "base_format", .type = SCHEMA_ENUM, .offset = offsetof(struct def_disk, base_format), .enum_names = disk_format_names, .def_enum = DISK_FORMAT_RAW, .doc = "The base image's format (never probed)." },
	{}
};

static const char *check_mac(const char *s)
{
	uint8_t mac[6];

	if (streq(s, "auto"))
		return NULL;
	return mac_parse(s, mac) < 0 ? "must be \"auto\" or a unicast MAC address like 52:54:00:12:34:56" : NULL;
}

static const char *check_cidr(const char *s)
{
	struct cidr c;

	return cidr_parse(s, &c) < 0 ? "must be an IPv4 address with a prefix length, like 10.0.0.2/24" : NULL;
}

static const char *check_host_cidr(const char *s)
{
	struct cidr c;

	if (cidr_parse(s, &c) < 0)
		return "must be an IPv4 address with /32, like 10.77.0.2/32";
	return c.prefix != 32 ? "must be a single address: /32" : NULL;
}

static const char *check_driver(const char *s)
{
	for (size_t i = 0; driver_names[i]; i++)
		if (streq(s, driver_names[i]))
			return NULL;
	return "must be \"qemu\" or \"libvirt\"";
}

static const struct schema_field network_table[] = {
	{ .key = "bridge", .type = SCHEMA_STRING, .offset = offsetof(struct def_network, bridge), .required = true, .check = check_ifname, .format = "ifname", .doc = "A network of type bridge in the host settings; the VM's tap goes on it." },
	{ .key = "mac", .type = SCHEMA_STRING, .offset = offsetof(struct def_network, mac), .def_string = "auto", .check = check_mac, .format = "mac", .doc = "\"auto\" (52:54:00 and a hash of the VM name, stable) or a unicast MAC; unique across definitions." },
	{ .key = "address", .type = SCHEMA_STRING, .offset = offsetof(struct def_network, address), .check = check_cidr, .format = "cidr", .doc = "The guest's IPv4 address with prefix length, inside the bridge's network (passed as ip=)." },
	{}
};

static const struct schema_field wireguard_table[] = {
	{ .key = "hub", .type = SCHEMA_STRING, .offset = offsetof(struct def_wireguard, hub), .required = true, .check = check_ifname, .format = "ifname", .doc = "A network of type wireguard in the host settings." },
	{ .key = "address", .type = SCHEMA_STRING, .offset = offsetof(struct def_wireguard, address), .required = true, .check = check_host_cidr, .format = "host-cidr", .doc = "The VM's address on the hub, /32, inside the hub's network; unique on the hub." },
	{}
};

static const struct schema_field def_table[] = {
	{ .key = "name", .type = SCHEMA_STRING, .offset = offsetof(struct vm_def, name), .required = true, .check = check_name, .format = "name", .doc = "The VM's name: 1..32 of [a-z0-9-], first a letter or digit; unique. Every host path vmd makes for the VM derives from it." },
	{ .key = "system", .type = SCHEMA_STRING, .offset = offsetof(struct vm_def, system), .check = check_host_path, .format = "path", .doc = "The system closure (kernel, initrd, init, optional kernel-params) inside store_dir; a symlink to it is resolved. Exactly one of system and image." },
	{ .key = "image", .type = SCHEMA_STRING, .offset = offsetof(struct vm_def, image), .check = check_host_path, .format = "path", .doc = "A container image to run instead of a system: an OCI image layout directory or a docker-archive tarball (docker save, Nix's dockerTools). It boots the host settings' image_system, with the image as a stateless root." },
	{ .key = "image_ref", .type = SCHEMA_STRING, .offset = offsetof(struct vm_def, image_ref), .check = check_image_ref, .format = "image-ref", .doc = "Which image of a layout (its org.opencontainers.image.ref.name) or of an archive (one of its RepoTags); default: the only one." },
	{ .key = "cmd", .type = SCHEMA_STRV, .offset = offsetof(struct vm_def, cmd), .check = check_arg, .max_items = 256, .format = "arg", .doc = "Replaces the image's Cmd (the arguments after its Entrypoint), as docker run IMAGE CMD does." },
	{ .key = "env", .type = SCHEMA_STRV, .offset = offsetof(struct vm_def, env), .check = check_env, .max_items = 256, .format = "env", .doc = "NAME=value entries set over the image's Env (same NAME: this one wins)." },
	{ .key = "workdir", .type = SCHEMA_STRING, .offset = offsetof(struct vm_def, workdir), .check = check_abs_path, .format = "guest-path", .doc = "Replaces the image's WorkingDir." },
	{ .key = "vcpus", .type = SCHEMA_U32, .offset = offsetof(struct vm_def, vcpus), .min = 1, .max = 255, .def_uint = 1, .doc = "Number of virtual CPUs." },
	{ .key = "memory_mib", .type = SCHEMA_U32, .offset = offsetof(struct vm_def, memory_mib), .min = 64, .max = 1048576, .def_uint = 512, .doc = "Guest memory in MiB (memfd-backed and shared, as virtiofs needs)." },
	{ .key = "ready_timeout_s", .type = SCHEMA_U32, .offset = offsetof(struct vm_def, ready_timeout_s), .min = 1, .max = 86400, .def_none = true, .doc = "No READY=1 by then stops the boot (a failed start); default: the host settings' ready_timeout_s. For a first boot that takes long, or a guest that must fail fast." },
	{ .key = "stop_timeout_s", .type = SCHEMA_U32, .offset = offsetof(struct vm_def, stop_timeout_s), .min = 1, .max = 3600, .def_none = true, .doc = "ACPI powerdown grace before SIGTERM; default: the host settings' stop_timeout_s." },
	{ .key = "autostart", .type = SCHEMA_BOOL, .offset = offsetof(struct vm_def, autostart), .def_bool = true, .doc = "The daemon starts it at start and on reload." },
	{ .key = "restart", .type = SCHEMA_ENUM, .offset = offsetof(struct vm_def, restart), .enum_names = restart_policy_names, .def_enum = RESTART_ALWAYS, .doc = "What the daemon does when the VM ends; restarts back off exponentially up to the start limit." },
	{ .key = "kernel_params", .type = SCHEMA_STRV, .offset = offsetof(struct vm_def, kernel_params), .check = check_kernel_param, .max_items = 64, .format = "kernel-param", .doc = "Extra kernel parameters, appended last (no whitespace or quotes; init= is vmd's)." },
	{ .key = "keys", .type = SCHEMA_ARRAY, .offset = offsetof(struct vm_def, keys), .sub = key_table, .item_size = sizeof(struct def_key), .count_offset = offsetof(struct vm_def, n_keys), .max_items = 32, .doc = "Key directories handed to the guest (WireGuard keys, SSH host keys)." },
	{ .key = "shares", .type = SCHEMA_ARRAY, .offset = offsetof(struct vm_def, shares), .sub = share_table, .item_size = sizeof(struct def_share), .count_offset = offsetof(struct vm_def, n_shares), .max_items = 32, .doc = "Host directories shared with the guest over virtiofs." },
	{ .key = "disks", .type = SCHEMA_ARRAY, .offset = offsetof(struct vm_def, disks), .sub = disk_table, .item_size = sizeof(struct def_disk), .count_offset = offsetof(struct vm_def, n_disks), .max_items = 32, .doc = "virtio-blk disks: ephemeral (fresh every boot), persistent, or overlays on a base image." },
	{ .key = "network", .type = SCHEMA_OBJECT, .offset = offsetof(struct vm_def, network), .sub = network_table, .item_size = sizeof(struct def_network), .doc = "A NIC on a host bridge." },
	{ .key = "wireguard", .type = SCHEMA_OBJECT, .offset = offsetof(struct vm_def, wireguard), .sub = wireguard_table, .item_size = sizeof(struct def_wireguard), .doc = "The VM as a peer of a host WireGuard hub; adds a key directory \"wireguard\" at /etc/wireguard." },
	{ .key = "driver", .type = SCHEMA_STRING, .offset = offsetof(struct vm_def, driver), .check = check_driver, .format = "driver", .doc = "qemu or libvirt; default: the host settings' driver." },
	{ .key = "host", .type = SCHEMA_STRING, .offset = offsetof(struct vm_def, host), .check = check_name, .format = "name", .doc = "One of the host settings' hosts: the VM runs on that host's libvirtd." },
	{}
};

int def_driver(const struct vm_def *def, int host_default)
{
	if (def->host || (def->driver && streq(def->driver, "libvirt")))
		return DRIVER_LIBVIRT;
	return def->driver ? DRIVER_QEMU : host_default;
}

void def_mac(const struct vm_def *def, uint8_t mac[6])
{
	if (!def->network->mac || streq(def->network->mac, "auto") || mac_parse(def->network->mac, mac) < 0)
		mac_for_vm(def->name, mac);
}

char *def_key_tag(const struct def_key *key)
{
	return xasprintf("key-%s", key->name);
}

/* One guest mount point, for the duplicate-target check. */
struct target_use {
	const char *path;
	char field[64];
};

static void check_unique_targets(const struct vm_def *d, struct schema_errors *errors)
{
	size_t n = d->n_keys + d->n_shares + d->n_disks, k = 0;
	_cleanup_free_ struct target_use *t = calloc(n ? n : 1, sizeof(*t));

	if (!t) {
		schema_error(errors, NULL, "out of memory");
		return;
	}
	for (size_t i = 0; i < d->n_keys; i++, k++) {
		t[k].path = d->keys[i].target;
		snprintf(t[k].field, sizeof(t[k].field), "keys[%zu].target", i);
	}
	for (size_t i = 0; i < d->n_shares; i++, k++) {
		t[k].path = d->shares[i].target;
		snprintf(t[k].field, sizeof(t[k].field), "shares[%zu].target", i);
	}
	for (size_t i = 0; i < d->n_disks; i++, k++) {
		t[k].path = d->disks[i].mount;
		snprintf(t[k].field, sizeof(t[k].field), "disks[%zu].mount", i);
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++)
			if (t[i].path && t[j].path && streq(t[i].path, t[j].path)) {
				schema_error(errors, t[i].field, "duplicate target %s, also used by %s", t[i].path,
					     t[j].field);
				break;
			}
}

#define CHECK_UNIQUE(errors, arr, n, member, what)                                                \
	for (size_t _i = 0; _i < (n); _i++)                                                        \
		for (size_t _j = 0; _j < _i; _j++)                                                 \
			if ((arr)[_i].member && (arr)[_j].member &&                                \
			    streq((arr)[_i].member, (arr)[_j].member)) {                           \
				char _f[64];                                                       \
				snprintf(_f, sizeof(_f), what "[%zu]." #member, _i);               \
				schema_error(errors, _f, "duplicate " #member " \"%s\", also " what \
					     "[%zu]", (arr)[_i].member, _j);                       \
				break;                                                             \
			}

/* Field rules that need more than the field itself, checked even when
 * other fields have errors. */
static bool has_error_under(const struct schema_errors *errors, size_t from, const char *prefix)
{
	size_t n = strlen(prefix);

	for (size_t i = from; i < errors->n; i++)
		if (strncmp(errors->lines[i], prefix, n) == 0 && (prefix[n - 1] == ':' || strchr(".:", errors->lines[i][n])))
			return true;
	return false;
}

static void check_disks(const struct vm_def *d, struct schema_errors *errors, size_t from)
{
	for (size_t i = 0; i < d->n_disks; i++) {
		char f[64];

		/* Not on top of errors in what is checked here: a field that
		 * failed to parse looks absent. */
		snprintf(f, sizeof(f), "disks[%zu]:", i);
		if (has_error_under(errors, from, f))
			continue;
		snprintf(f, sizeof(f), "disks[%zu].base", i);
		if (has_error_under(errors, from, f))
			continue;
		snprintf(f, sizeof(f), "disks[%zu].size_mib", i);
		if (has_error_under(errors, from, f))
			continue;

		if (!d->disks[i].base && d->disks[i].size_mib == 0) {
			snprintf(f, sizeof(f), "disks[%zu].size_mib", i);
			schema_error(errors, f, "must be 1..1048576 (required unless the disk has a base image)");
		}
		if (d->disks[i].base && d->disks[i].persistent) {
			snprintf(f, sizeof(f), "disks[%zu].base", i);
			schema_error(errors, f, "an overlay on a base image is thrown away at every stop; "
						"it cannot be persistent");
		}
	}
}

/* A VM on a WireGuard hub gets its identity in the key directory
 * "wireguard", mounted read-only at /etc/wireguard, unless the definition
 * declares that key itself (another target, a source of its own). */
static int add_wireguard_key(struct vm_def *d)
{
	struct def_key *k;

	for (size_t i = 0; i < d->n_keys; i++)
		if (d->keys[i].name && streq(d->keys[i].name, DEF_WIREGUARD_KEY))
			return 0;
	k = reallocarray(d->keys, d->n_keys + 1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	d->keys = k;
	k[d->n_keys] = (struct def_key){
		.name = strdup(DEF_WIREGUARD_KEY),
		.target = strdup(DEF_WIREGUARD_TARGET),
		.read_only = true,
		.generate = KEY_GENERATE_WIREGUARD,
	};
	if (!k[d->n_keys].name || !k[d->n_keys].target) {
		free(k[d->n_keys].name);
		free(k[d->n_keys].target);
		return -ENOMEM;
	}
	d->n_keys++;
	return 0;
}

static void validate(const struct vm_def *d, struct schema_errors *errors)
{
	int r;

	if (!d->system == !d->image)
		schema_error(errors, d->system ? "image" : "system",
			     d->system ? "a definition names a system or an image, not both"
				       : "is required (or image)");
	if (!d->image) {
		if (d->image_ref)
			schema_error(errors, "image_ref", "only for an image");
		if (d->cmd)
			schema_error(errors, "cmd", "only for an image (a system's command is its init)");
		if (d->env)
			schema_error(errors, "env", "only for an image");
		if (d->workdir)
			schema_error(errors, "workdir", "only for an image");
	}

	CHECK_UNIQUE(errors, d->keys, d->n_keys, name, "keys");
	CHECK_UNIQUE(errors, d->shares, d->n_shares, tag, "shares");
	CHECK_UNIQUE(errors, d->disks, d->n_disks, name, "disks");
	check_unique_targets(d, errors);


	/* The kernel command line has a hard limit; the closure's own
	 * kernel-params come on top at boot and are checked then. */
	/* An image's system is the host's: count a store path's length. */
	r = kernel_cmdline(d, d->system ? d->system : "/nix/store/00000000000000000000000000000000-vmd-image-guest", "", NULL);
	if (r == -E2BIG)
		schema_error(errors, "kernel_params",
			     "the kernel command line would exceed %d bytes (mounts and parameters)",
			     KERNEL_CMDLINE_MAX);
}

int def_parse(json_t *json, struct vm_def **ret, struct schema_errors *errors)
{
	struct vm_def *d = calloc(1, sizeof(*d));
	size_t before = errors->n;

	if (!d)
		return -ENOMEM;
	schema_parse(def_table, json, d, "", errors);
	check_disks(d, errors, before);
	if (errors->n == before && d->wireguard) {
		if (d->n_keys >= 32)
			schema_error(errors, "keys", "must have at most 31 entries with wireguard (it adds the "
						     "\"" DEF_WIREGUARD_KEY "\" key)");
		else if (add_wireguard_key(d) < 0)
			schema_error(errors, NULL, "out of memory");
	}
	if (errors->n == before)
		validate(d, errors);
	if (errors->n != before) {
		def_free(d);
		return -EINVAL;
	}
	*ret = d;
	return 0;
}

int def_parse_buffer(const char *buf, size_t len, struct vm_def **ret, struct schema_errors *errors)
{
	json_t *j = schema_load(buf, len, errors);
	int r;

	if (!j)
		return -EINVAL;
	r = def_parse(j, ret, errors);
	json_decref(j);
	return r;
}

int def_load_file(const char *path, struct vm_def **ret, struct schema_errors *errors)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r;

	r = schema_read_file(path, false, &buf, &len, errors);
	if (r < 0)
		return r == -EFBIG || r == -EBADFD ? -EINVAL : r;
	return def_parse_buffer(buf, len, ret, errors);
}

void def_free(struct vm_def *def)
{
	if (!def)
		return;
	schema_free(def_table, def);
	free(def);
}

json_t *def_describe(void)
{
	return schema_describe(def_table);
}

json_t *def_to_json(const struct vm_def *def)
{
	return schema_to_json(def_table, def);
}

bool def_equal(const struct vm_def *a, const struct vm_def *b)
{
	return schema_equal(def_table, a, b);
}

char *def_resolve_store(const char *store_dir)
{
	return realpath(store_dir, NULL);
}

static bool path_is_below(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (n > 0 && dir[n - 1] == '/')
		n--;
	return strncmp(path, dir, n) == 0 && path[n] == '/';
}

const char *def_system(const struct vm_def *def, const char *image_system)
{
	return def->image ? image_system : def->system;
}

int def_check_system(const struct vm_def *def, const char *image_system, const char *store_dir, char **ret,
		     struct schema_errors *errors)
{
	static const char *const parts[] = { "kernel", "initrd", "init" };
	const char *system = def_system(def, image_system), *field = def->image ? "image_system" : "system";
	_cleanup_free_ char *real = NULL;
	const char *store = store_dir;
	struct stat st;
	size_t before = errors->n;
	bool plain;

	/* The usual case, a store path that is itself a directory, needs one
	 * lstat() and no realpath() (which walks every component). */
	if (!system)
		return -ENOENT; /* host_check_def() says why */
	plain = path_is_below(system, store) && !strchr(system + strlen(store) + 1, '/') &&
		lstat(system, &st) == 0 && S_ISDIR(st.st_mode);
	if (!plain) {
		if (stat(system, &st) < 0) {
			schema_error(errors, field, "%s: %s", system, strerror(errno));
			return -ENOENT;
		}
		if (!S_ISDIR(st.st_mode)) {
			schema_error(errors, field, "%s is not a directory (a system closure)", system);
			return -ENOTDIR;
		}
	}
	real = plain ? strdup(system) : realpath(system, NULL);
	if (!real) {
		schema_error(errors, field, "cannot resolve %s: %s", system, strerror(errno));
		return -ENOENT;
	}
	if (!path_is_below(real, store)) {
		schema_error(errors, field, "%s is not inside %s, the only part of the host the guest sees",
			     real, store_dir);
		return -EXDEV;
	}
	/* The resolved path goes on the kernel command line: it must be as
	 * plain as the original. */
	if (check_abs_path(real)) {
		schema_error(errors, field, "%s resolves to %s: %s", system, real, check_abs_path(real));
		return -EINVAL;
	}
	for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
		_cleanup_free_ char *p = path_join(real, parts[i]);

		if (!p)
			return -ENOMEM;
		if (stat(p, &st) < 0)
			schema_error(errors, field, "%s/%s: %s", system, parts[i], strerror(errno));
		else if (!S_ISREG(st.st_mode))
			schema_error(errors, field, "%s/%s is not a regular file", system, parts[i]);
	}
	if (errors->n != before)
		return -ENOENT;
	if (ret)
		*ret = TAKE_PTR(real);
	return 0;
}

/* The guest kernel command line. */

struct mount_entry {
	char what[64]; /* key-NAME or /dev/disk/by-id/virtio-NAME: names are short */
	const char *where, *type, *opts;
};

static int path_depth(const char *p)
{
	int d = 0;

	for (; *p; p++)
		d += *p == '/';
	return d;
}

static int mount_cmp(const void *x, const void *y)
{
	const struct mount_entry *a = x, *b = y;
	int da = path_depth(a->where), db = path_depth(b->where);

	if (da != db)
		return da - db;
	return strcmp(a->where, b->where);
}

/* Built in place: validation computes this for every definition. */
struct cmdline {
	char buf[KERNEL_CMDLINE_MAX];
	size_t len;
	bool overflow;
};

static void cl_add(struct cmdline *c, const char *fmt, ...) _printf_(2, 3);
static void cl_add(struct cmdline *c, const char *fmt, ...)
{
	size_t avail = sizeof(c->buf) - c->len;
	va_list ap;
	int n;

	if (c->overflow)
		return;
	if (c->len > 0) {
		if (avail < 2) {
			c->overflow = true;
			return;
		}
		c->buf[c->len++] = ' ';
		avail--;
	}
	va_start(ap, fmt);
	n = vsnprintf(c->buf + c->len, avail, fmt, ap);
	va_end(ap);
	/* The limit counts the terminating NUL. */
	if (n < 0 || (size_t)n >= avail)
		c->overflow = true;
	else
		c->len += (size_t)n;
}

int kernel_cmdline(const struct vm_def *d, const char *system, const char *closure_params, char **ret)
{
	size_t n = d->n_keys + d->n_shares + d->n_disks, k = 0;
	_cleanup_free_ struct mount_entry *m = calloc(n ? n : 1, sizeof(*m));
	_cleanup_free_ struct cmdline *c = calloc(1, sizeof(*c));

	if (!m || !c)
		return -ENOMEM;
	cl_add(c, "console=ttyS0");
	/* A panic reboots, and -no-reboot turns that into an exit: a crashed
	 * guest is never left hanging. */
	cl_add(c, "panic=-1");
	cl_add(c, "systemd.hostname=%s", d->name);
	if (d->network && d->network->address) {
		struct cidr a;
		char ip[ADDR_STR_MAX], mask[ADDR_STR_MAX];

		if (cidr_parse(d->network->address, &a) == 0) {
			addr_format(a.addr, ip);
			addr_format(cidr_netmask(a.prefix), mask);
			cl_add(c, "ip=%s:::%s:::off", ip, mask);
		}
	}

	for (size_t i = 0; i < d->n_keys; i++, k++) {
		snprintf(m[k].what, sizeof(m[k].what), "key-%s", d->keys[i].name);
		m[k].where = d->keys[i].target;
		m[k].type = "virtiofs";
		m[k].opts = d->keys[i].read_only ? "ro" : "rw";
	}
	for (size_t i = 0; i < d->n_shares; i++, k++) {
		snprintf(m[k].what, sizeof(m[k].what), "%s", d->shares[i].tag);
		m[k].where = d->shares[i].target;
		m[k].type = "virtiofs";
		m[k].opts = d->shares[i].read_only ? "ro" : "rw";
	}
	for (size_t i = 0; i < d->n_disks; i++, k++) {
		snprintf(m[k].what, sizeof(m[k].what), "/dev/disk/by-id/virtio-%s", d->disks[i].name);
		m[k].where = d->disks[i].mount;
		/* A base image may hold any filesystem the guest knows. */
		m[k].type = d->disks[i].base ? "auto" : "ext4";
		m[k].opts = "defaults";
	}
	qsort(m, k, sizeof(*m), mount_cmp);
	for (size_t i = 0; i < k; i++)
		cl_add(c, "systemd.mount-extra=%s:%s:%s:%s", m[i].what, m[i].where, m[i].type, m[i].opts);

	cl_add(c, "init=%s/init", system);
	if (closure_params && *closure_params) {
		size_t len = strlen(closure_params);

		while (len > 0 && (closure_params[len - 1] == '\n' || closure_params[len - 1] == ' '))
			len--;
		if (len > 0)
			cl_add(c, "%.*s", (int)len, closure_params);
	}
	for (size_t i = 0; d->kernel_params && d->kernel_params[i]; i++)
		cl_add(c, "%s", d->kernel_params[i]);

	if (c->overflow)
		return -E2BIG;
	if (ret) {
		*ret = strndup(c->buf, c->len);
		if (!*ret)
			return -ENOMEM;
	}
	return 0;
}

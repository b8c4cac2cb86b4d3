/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <limits.h>
#include <unistd.h>

#include "addr.h"
#include "def.h"
#include "host.h"
#include "netname.h"

const char *const accel_names[] = { "auto", "kvm", "tcg", NULL };
const char *const net_type_names[] = { "bridge", "wireguard", NULL };
const char *const wg_impl_names[] = { "auto", "kernel", "userspace", NULL };
const char *const virtiofsd_style_names[] = { "auto", "qemu", "rust", NULL };

/* libvirt parses it; vmd only keeps it to one printable line. */
const char *check_libvirt_uri(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > LIBVIRT_URI_MAX)
		return "must be 1..512 characters";
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return "must be printable ASCII without spaces";
	if (!strstr(s, ":/"))
		return "must be a libvirt URI, like qemu:///system or qemu+ssh://host/system";
	return NULL;
}

static const char *check_cidr(const char *s)
{
	struct cidr c;

	if (cidr_parse(s, &c) < 0)
		return "must be an IPv4 address with a prefix length, like 10.0.0.1/24";
	if (cidr_is_edge(&c, c.addr))
		return "is the network's or its broadcast address, not a host's";
	return NULL;
}

static const char *check_ipv4(const char *s)
{
	uint32_t a;

	return addr_parse(s, &a) < 0 ? "must be an IPv4 address, like 10.0.0.1" : NULL;
}

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

/* A user name as useradd takes it; never root, whom QEMU must not run as. */
static const char *check_user(const char *s)
{
	const char *why = check_group(s);

	if (why)
		return strlen(s) < 1 || strlen(s) > 32 ? why : "must be a user name";
	return streq(s, "root") ? "must not be root: QEMU runs unprivileged" : NULL;
}

static const char *check_dir(const char *s)
{
	const char *why = check_abs_path(s);

	if (why)
		return why;
	return streq(s, "/") ? "must not be /" : NULL;
}

#define DIR_FIELD(k, member, def, d) \
	{ .key = k, .type = SCHEMA_STRING, .offset = offsetof(struct host_config, member), .def_string = def, .check = check_dir, .format = "dir", .doc = d }

static const struct schema_field network_table[] = {
	{ .key = "type", .type = SCHEMA_ENUM, .offset = offsetof(struct host_network, type), .enum_names = net_type_names, .required = true, .doc = "bridge or wireguard (a hub)." },
	{ .key = "address", .type = SCHEMA_STRING, .offset = offsetof(struct host_network, address), .check = check_cidr, .format = "cidr", .doc = "The host's address on the network, with prefix length: the network the VMs' addresses must be in. Required for wireguard." },
	{ .key = "listen_port", .type = SCHEMA_U32, .offset = offsetof(struct host_network, listen_port), .min = 0, .max = 65535, .doc = "wireguard: the hub's UDP port; 0 means 51820." },
	{ .key = "endpoint", .type = SCHEMA_STRING, .offset = offsetof(struct host_network, endpoint), .check = check_ipv4, .format = "ipv4", .doc = "wireguard: the host address the guests reach the hub at, normally its address on a bridge. Required for wireguard." },
	{ .key = "keepalive_s", .type = SCHEMA_U32, .offset = offsetof(struct host_network, keepalive_s), .min = 0, .max = 3600, .def_uint = WG_DEFAULT_KEEPALIVE, .doc = "wireguard: the guests' PersistentKeepalive in seconds; 0 turns it off." },
	{ .key = "implementation", .type = SCHEMA_ENUM, .offset = offsetof(struct host_network, implementation), .enum_names = wg_impl_names, .def_enum = WG_IMPL_AUTO, .doc = "wireguard: kernel (the module), userspace (wireguard-go) or auto (the kernel where it has the module)." },
	{}
};

static const struct schema_field remote_table[] = {
	{ .key = "libvirt_uri", .type = SCHEMA_STRING, .offset = offsetof(struct host_remote, libvirt_uri), .required = true, .check = check_libvirt_uri, .format = "libvirt-uri", .doc = "That host's libvirtd, like qemu+ssh://b/system." },
	{ .key = "virtiofsd", .type = SCHEMA_STRING, .offset = offsetof(struct host_remote, virtiofsd), .check = check_abs_path, .format = "path", .doc = "virtiofsd's path on that host; default: this host's setting." },
	{ .key = "accel", .type = SCHEMA_ENUM, .offset = offsetof(struct host_remote, accel), .enum_names = accel_names, .def_enum = ACCEL_AUTO, .doc = "auto: KVM if that libvirtd offers it." },
	{}
};

static const struct schema_field host_table[] = {
	DIR_FIELD("definitions_dir", definitions_dir, "/etc/vmd/vms.d", "The daemon's definitions, one NAME.json per VM; a missing directory means none."),
	DIR_FIELD("state_dir", state_dir, "/var/lib/vmd", "Ephemeral disks (disks/<vm>/), persistent volumes (volumes/<vm>/), GC roots of defined VMs (gcroots/)."),
	DIR_FIELD("run_dir", run_dir, "/run/vmd", "The control socket, the daemon lock, and per running VM its sockets, pid files and state."),
	DIR_FIELD("log_dir", log_dir, "/var/log/vmd", "One <vm>.log per VM: console, QEMU and virtiofsd output."),
	DIR_FIELD("keys_dir", keys_dir, "/var/lib/vmd/keys", "Default key directories, <keys_dir>/<vm>/<key>."),
	DIR_FIELD("store_dir", store_dir, "/nix/store", "The Nix store shared read-only with every guest."),
	DIR_FIELD("gcroots_dir", gcroots_dir, "/nix/var/nix/gcroots/auto", "Where vmd registers GC roots for the closures of defined and running VMs (Nix's auto roots); a missing directory means none."),
	{ .key = "accel", .type = SCHEMA_ENUM, .offset = offsetof(struct host_config, accel), .enum_names = accel_names, .def_enum = ACCEL_AUTO, .doc = "auto picks KVM only where it works (not on PVM), else TCG." },
	{ .key = "qemu", .type = SCHEMA_STRING, .offset = offsetof(struct host_config, qemu), .def_string = VMD_DEFAULT_QEMU, .check = check_binary, .format = "binary", .doc = "QEMU: a name looked up in $PATH, or an absolute path." },
	{ .key = "virtiofsd", .type = SCHEMA_STRING, .offset = offsetof(struct host_config, virtiofsd), .def_string = VMD_DEFAULT_VIRTIOFSD, .check = check_binary, .format = "binary", .doc = "virtiofsd, the C one (QEMU <= 7) or the Rust one." },
	{ .key = "virtiofsd_style", .type = SCHEMA_ENUM, .offset = offsetof(struct host_config, virtiofsd_style), .enum_names = virtiofsd_style_names, .def_enum = 0 /* auto */, .doc = "virtiofsd's command-line style; auto probes --help." },
	{ .key = "ready_timeout_s", .type = SCHEMA_U32, .offset = offsetof(struct host_config, ready_timeout_s), .min = 1, .max = 3600, .def_uint = 300, .doc = "A VM with no READY=1 by then is stopped (and counts as a failed start)." },
	{ .key = "start_timeout_s", .type = SCHEMA_U32, .offset = offsetof(struct host_config, start_timeout_s), .min = 1, .max = 3600, .def_uint = 30, .doc = "QEMU must be up by then (QMP answering, every vhost-user handshake with virtiofsd done); otherwise the start fails, naming the virtiofsd that never answered." },
	{ .key = "stop_timeout_s", .type = SCHEMA_U32, .offset = offsetof(struct host_config, stop_timeout_s), .min = 1, .max = 3600, .def_uint = 30, .doc = "ACPI powerdown grace before SIGTERM." },
	{ .key = "log_max_bytes", .type = SCHEMA_U64, .offset = offsetof(struct host_config, log_max_bytes), .min = 65536, .max = UINT64_C(1) << 40, .def_uint = 8 * 1024 * 1024, .doc = "Over this a VM log is moved to <vm>.log.1 and started anew." },
	{ .key = "restart_delay_min_ms", .type = SCHEMA_U32, .offset = offsetof(struct host_config, restart_delay_min_ms), .min = 1, .max = 3600000, .def_uint = 100, .doc = "The first restart delay." },
	{ .key = "restart_delay_max_ms", .type = SCHEMA_U32, .offset = offsetof(struct host_config, restart_delay_max_ms), .min = 1, .max = 3600000, .def_uint = 30000, .doc = "Where the doubling restart delay stops." },
	{ .key = "restart_reset_s", .type = SCHEMA_U32, .offset = offsetof(struct host_config, restart_reset_s), .min = 1, .max = 86400, .def_uint = 10, .doc = "Ready this long, and the restart delay starts over." },
	{ .key = "start_limit_burst", .type = SCHEMA_U32, .offset = offsetof(struct host_config, start_limit_burst), .min = 1, .max = 1000, .def_uint = 5, .doc = "This many starts within start_limit_interval_s make a VM failed." },
	{ .key = "start_limit_interval_s", .type = SCHEMA_U32, .offset = offsetof(struct host_config, start_limit_interval_s), .min = 1, .max = 86400, .def_uint = 60, .doc = "The start-limit window." },
	{ .key = "start_limit_unready", .type = SCHEMA_U32, .offset = offsetof(struct host_config, start_limit_unready), .min = 1, .max = 1000, .def_uint = 5, .doc = "This many starts in a row that never become ready make a VM failed, however far apart (a boot may take ready_timeout_s, longer than the start-limit window)." },
	{ .key = "control_group", .type = SCHEMA_STRING, .offset = offsetof(struct host_config, control_group), .def_string = "vmd", .check = check_group, .format = "group", .doc = "The group allowed on the control socket besides root." },
	{ .key = "control_idle_timeout_s", .type = SCHEMA_U32, .offset = offsetof(struct host_config, control_idle_timeout_s), .min = 1, .max = 86400, .def_uint = CONTROL_IDLE_TIMEOUT_DEFAULT_S, .doc = "A control-socket connection with no request in progress (and no log it follows) is closed after this long; a half-sent request line counts as none." },
	{ .key = "qemu_user", .type = SCHEMA_STRING, .offset = offsetof(struct host_config, qemu_user), .def_string = "vmd-qemu", .check = check_user, .format = "user", .doc = "The unprivileged user QEMU runs as (QEMU driver), with the kvm group as its only supplementary group; it must exist (useradd --system --user-group --groups kvm vmd-qemu)." },
	{ .key = "wireguard_go", .type = SCHEMA_STRING, .offset = offsetof(struct host_config, wireguard_go), .def_string = VMD_DEFAULT_WIREGUARD_GO, .check = check_binary, .format = "binary", .doc = "The userspace WireGuard, for hubs where the kernel has no module." },
	{ .key = "image_system", .type = SCHEMA_STRING, .offset = offsetof(struct host_config, image_system), .check = check_abs_path, .format = "path", .doc = "The closure that boots container images (definitions with image): a kernel, an initrd whose /init is vmd's image init, and the guest agent; built like the tiny guest (README, Images). Unset: images cannot run." },
	{ .key = "image_setuid", .type = SCHEMA_BOOL, .offset = offsetof(struct host_config, image_setuid), .def_bool = false, .doc = "Keep setuid and setgid bits when unpacking image layers (default: stripped)." },
	{ .key = "image_max_mib", .type = SCHEMA_U64, .offset = offsetof(struct host_config, image_max_mib), .min = 1, .max = 1048576, .def_uint = 8192, .doc = "The most an image may unpack to (the sum of its layers' file sizes, sparse ones at full size); a layer that claims more is refused." },
	{ .key = "driver", .type = SCHEMA_ENUM, .offset = offsetof(struct host_config, driver), .enum_names = driver_names, .def_enum = DRIVER_QEMU, .doc = "The default driver for definitions: qemu (vmd runs QEMU and virtiofsd) or libvirt." },
	{ .key = "libvirt_uri", .type = SCHEMA_STRING, .offset = offsetof(struct host_config, libvirt_uri), .def_string = "qemu:///system", .check = check_libvirt_uri, .format = "libvirt-uri", .doc = "This host's libvirtd." },
	{ .key = "hosts", .type = SCHEMA_MAP, .offset = offsetof(struct host_config, hosts), .sub = remote_table, .item_size = sizeof(struct host_remote), .count_offset = offsetof(struct host_config, n_hosts), .map_key_offset = offsetof(struct host_remote, name), .check = check_name, .max_items = 256, .format = "name", .doc = "Other hosts' libvirtd, by name." },
	{ .key = "networks", .type = SCHEMA_MAP, .offset = offsetof(struct host_config, networks), .sub = network_table, .item_size = sizeof(struct host_network), .count_offset = offsetof(struct host_config, n_networks), .map_key_offset = offsetof(struct host_network, name), .check = check_ifname, .max_items = 64, .format = "ifname", .doc = "Host networks (bridges, WireGuard hubs) by interface name." },
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

const struct host_network *host_network_find(const struct host_config *c, const char *name)
{
	for (size_t i = 0; i < c->n_networks; i++)
		if (streq(c->networks[i].name, name))
			return &c->networks[i];
	return NULL;
}

const struct host_remote *host_remote_find(const struct host_config *c, const char *name)
{
	for (size_t i = 0; i < c->n_hosts; i++)
		if (streq(c->hosts[i].name, name))
			return &c->hosts[i];
	return NULL;
}

uint16_t host_network_port(const struct host_network *n)
{
	return n->listen_port ? (uint16_t)n->listen_port : WG_DEFAULT_PORT;
}

/* What one field of a network cannot say alone. */
static void check_networks(const struct host_config *c, struct schema_errors *errors)
{
	for (size_t i = 0; i < c->n_networks; i++) {
		const struct host_network *n = &c->networks[i];
		struct cidr a, b;
		char f[64];

		if (n->type == NET_BRIDGE) {
			snprintf(f, sizeof(f), "networks.%s", n->name);
			if (n->endpoint || n->listen_port)
				schema_error(errors, f, "endpoint and listen_port are for wireguard networks");
		} else {
			snprintf(f, sizeof(f), "networks.%s.address", n->name);
			if (!n->address)
				schema_error(errors, f, "is required for a wireguard hub (its address and network)");
			snprintf(f, sizeof(f), "networks.%s.endpoint", n->name);
			if (!n->endpoint)
				schema_error(errors, f, "is required for a wireguard hub (the host address "
							"the guests reach it at)");
		}
		if (!n->address || cidr_parse(n->address, &a) < 0)
			continue;
		for (size_t j = 0; j < i; j++) {
			if (!c->networks[j].address || cidr_parse(c->networks[j].address, &b) < 0)
				continue;
			if (cidr_overlaps(&a, &b)) {
				snprintf(f, sizeof(f), "networks.%s.address", n->name);
				schema_error(errors, f, "%s overlaps %s of network %s", n->address,
					     c->networks[j].address, c->networks[j].name);
			}
		}
	}
}

/* The host address and network of a named network, if it has one. */
static bool network_cidr(const struct host_network *n, struct cidr *ret)
{
	return n->address && cidr_parse(n->address, ret) == 0;
}

static void check_def_address(const struct host_network *n, const char *field, const char *value, bool host_route,
			      struct schema_errors *errors)
{
	struct cidr net, a;
	char buf[ADDR_STR_MAX];

	if (cidr_parse(value, &a) < 0)
		return; /* the definition's own check says why */
	if (!network_cidr(n, &net)) {
		schema_error(errors, field, "network %s has no address, so guests on it cannot have one", n->name);
		return;
	}
	cidr_format(&net, true, buf);
	if (!cidr_contains(&net, a.addr))
		schema_error(errors, field, "%s is outside %s, the network of %s", value, buf, n->name);
	else if (a.addr == net.addr)
		schema_error(errors, field, "%s is the host's own address on %s", value, n->name);
	else if (cidr_is_edge(&net, a.addr))
		schema_error(errors, field, "%s is the network's or the broadcast address of %s", value, buf);
	else if (!host_route && a.prefix != net.prefix)
		schema_error(errors, field, "the prefix length must be /%u, that of %s (%s)", net.prefix, n->name, buf);
}

void host_check_def(const struct host_config *c, const struct vm_def *def, struct schema_errors *errors)
{
	const struct host_network *n;

	if (def->image && !c->image_system)
		schema_error(errors, "image", "the host settings have no image_system (the closure that boots "
					      "images: README, Images)");
	if (def->image && def_driver(def, c->driver) == DRIVER_LIBVIRT)
		schema_error(errors, "image", "the libvirt driver cannot boot images yet: use driver \"qemu\" "
					      "(and no \"host\")");
	if (def->host) {
		if (!host_remote_find(c, def->host))
			schema_error(errors, "host", "\"%s\" is not in the host settings' hosts", def->host);
		if (def->driver && streq(def->driver, "qemu"))
			schema_error(errors, "driver", "must be \"libvirt\" (or absent) for a VM on another host");
		/* vmd makes disks, key directories and networks on its own
		 * host only; another host's libvirtd cannot be handed them. */
		if (def->n_disks > 0)
			schema_error(errors, "disks", "a VM on another host (\"host\") cannot have disks yet");
		if (def->n_keys > 0)
			schema_error(errors, def->wireguard ? "wireguard" : "keys",
				     "a VM on another host (\"host\") cannot have key directories yet");
		if (def->n_shares > 0)
			schema_error(errors, "shares", "a VM on another host (\"host\") cannot have shares yet");
		if (def->network)
			schema_error(errors, "network", "a VM on another host (\"host\") cannot have a network yet");
		return;
	}

	if (def->network) {
		n = host_network_find(c, def->network->bridge);
		if (!n || n->type != NET_BRIDGE)
			schema_error(errors, "network.bridge", "\"%s\" is not a bridge in the host settings' networks",
				     def->network->bridge);
		else if (def->network->address)
			check_def_address(n, "network.address", def->network->address, false, errors);
	}
	if (def->wireguard) {
		n = host_network_find(c, def->wireguard->hub);
		if (!n || n->type != NET_WIREGUARD)
			schema_error(errors, "wireguard.hub",
				     "\"%s\" is not a wireguard network in the host settings' networks",
				     def->wireguard->hub);
		else
			check_def_address(n, "wireguard.address", def->wireguard->address, true, errors);
	}
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
	if (j && schema_parse(host_table, j, c, "", errors) == 0) {
		check_dirs(c, errors);
		check_networks(c, errors);
		if (host_remote_find(c, "local"))
			schema_error(errors, "hosts.local", "is reserved: \"local\" is this host");
	}
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

	r = schema_read_file(path ? path : HOST_CONFIG_DEFAULT_PATH, !path, &buf, &len, errors);
	if (r == -ENOENT && !path)
		return host_config_parse_buffer("", 0, ret, errors);
	if (r < 0)
		return -EINVAL;
	return host_config_parse_buffer(buf, len, ret, errors);
}

void host_config_free(struct host_config *c)
{
	if (!c)
		return;
	schema_free(host_table, c);
	free(c);
}

json_t *host_config_describe(void)
{
	return schema_describe(host_table);
}

json_t *host_config_to_json(const struct host_config *c)
{
	return schema_to_json(host_table, c);
}

void host_resources_read(struct host_resources *ret)
{
	_cleanup_free_ char *text = NULL;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	const char *line;

	*ret = (struct host_resources){ .cpus = cpus > 0 && cpus <= UINT_MAX ? (unsigned)cpus : 0 };
	if (read_file("/proc/meminfo", 1 << 16, &text, NULL) < 0)
		return;
	line = strstr(text, "MemTotal:");
	if (line) {
		uint64_t kib;
		char unit[4];

		/* "MemTotal:       24562228 kB" */
		if (sscanf(line, "MemTotal: %" SCNu64 " %3s", &kib, unit) == 2 && streq(unit, "kB"))
			ret->memory_mib = kib / 1024;
	}
}

void host_check_fit(const struct host_resources *res, const struct vm_def *def, struct schema_errors *warnings)
{
	if (def->host)
		return;
	if (res->memory_mib && def->memory_mib > res->memory_mib)
		schema_error(warnings, "memory_mib",
			     "warning: %u MiB is more than this host's memory (%" PRIu64
			     " MiB, MemTotal in /proc/meminfo); the guest may be killed when it uses it",
			     def->memory_mib, res->memory_mib);
	if (res->cpus && def->vcpus > res->cpus)
		schema_error(warnings, "vcpus",
			     "warning: %u vCPUs are more than this host's %u CPUs; the guest will be slow, and under "
			     "TCG it may not boot at all",
			     def->vcpus, res->cpus);
}

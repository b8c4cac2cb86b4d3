/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>

#include "def.h"
#include "defset.h"
#include "netname.h"
#include "host.h"
#include "test.h"

/* Every tests/defs/invalid/NAME.json must fail with exactly the lines in
 * NAME.err; VMD_UPDATE_GOLDEN=1 rewrites the .err files instead. */
TEST(invalid_definitions)
{
	const char *dir = TESTS_DIR "/defs/invalid";
	bool update = getenv("VMD_UPDATE_GOLDEN") != NULL;
	struct dirent **list;
	int n, count = 0;

	n = scandir(dir, &list, NULL, alphasort);
	ASSERT(n > 0);
	for (int i = 0; i < n; i++) {
		size_t len = strlen(list[i]->d_name);
		_cleanup_free_ char *path = NULL, *errpath = NULL, *expected = NULL, *got = NULL;
		struct schema_errors errors = {};
		struct vm_def *def = NULL;
		size_t got_len = 0;

		if (len < 6 || !streq(list[i]->d_name + len - 5, ".json")) {
			free(list[i]);
			continue;
		}
		path = xasprintf("%s/%s", dir, list[i]->d_name);
		errpath = xasprintf("%s/%.*s.err", dir, (int)(len - 5), list[i]->d_name);
		ASSERT(def_load_file(path, &def, &errors) == -EINVAL);
		ASSERT(!def);
		ASSERT(errors.n > 0);
		for (size_t j = 0; j < errors.n; j++)
			got_len += strlen(errors.lines[j]) + 1;
		got = calloc(1, got_len + 1);
		for (size_t j = 0; j < errors.n; j++) {
			strcat(got, errors.lines[j]);
			strcat(got, "\n");
		}
		if (update) {
			FILE *f = fopen(errpath, "w");
			ASSERT(f);
			fputs(got, f);
			fclose(f);
		} else {
			ASSERT(read_file(errpath, 65536, &expected, NULL) == 0);
			if (!streq(expected, got))
				fprintf(stderr, "%s: expected:\n%sgot:\n%s", path, expected, got);
			ASSERT_STREQ(expected, got);
		}
		schema_errors_clear(&errors);
		free(list[i]);
		count++;
	}
	free(list);
	/* The issue asks for at least 25; keep the corpus from shrinking. */
	ASSERT(count >= 50);
}

static void roundtrip(const char *path)
{
	struct schema_errors errors = {};
	struct vm_def *a = NULL, *b = NULL;
	_cleanup_free_ char *text = NULL;
	json_t *j;

	ASSERT(def_load_file(path, &a, &errors) == 0);
	ASSERT(errors.n == 0);
	j = def_to_json(a);
	ASSERT(j);
	text = json_dumps(j, JSON_SORT_KEYS);
	json_decref(j);
	ASSERT(def_parse_buffer(text, strlen(text), &b, &errors) == 0);
	ASSERT(def_equal(a, b));
	def_free(a);
	def_free(b);
}

TEST(valid_roundtrip)
{
	roundtrip(TESTS_DIR "/defs/valid/full.json");
	roundtrip(TESTS_DIR "/defs/valid/minimal.json");
}

TEST(defaults)
{
	static const char text[] = "{\"name\": \"a\", \"system\": \"/nix/store/x\"}";
	struct schema_errors errors = {};
	struct vm_def *d = NULL;

	ASSERT(def_parse_buffer(text, strlen(text), &d, &errors) == 0);
	ASSERT_EQ(d->vcpus, 1);
	ASSERT_EQ(d->memory_mib, 512);
	ASSERT(d->autostart);
	ASSERT_EQ(d->restart, RESTART_ALWAYS);
	ASSERT(!d->kernel_params);
	ASSERT_EQ(d->n_disks, 0);
	def_free(d);
}

TEST(full_fields)
{
	struct schema_errors errors = {};
	struct vm_def *d = NULL;

	ASSERT(def_load_file(TESTS_DIR "/defs/valid/full.json", &d, &errors) == 0);
	ASSERT_STREQ(d->name, "edge");
	ASSERT_EQ(d->vcpus, 2);
	ASSERT_EQ(d->restart, RESTART_ON_FAILURE);
	ASSERT(!d->autostart);
	ASSERT_EQ(strv_length(d->kernel_params), 2);
	ASSERT_EQ(d->n_keys, 3);
	ASSERT(d->keys[0].read_only);
	ASSERT(!d->keys[1].read_only);
	ASSERT(d->keys[2].read_only); /* the default */
	ASSERT_STREQ(d->keys[2].source, "/srv/secrets/tls");
	ASSERT(!d->keys[0].source);
	ASSERT_EQ(d->n_shares, 1);
	ASSERT_EQ(d->keys[0].generate, KEY_GENERATE_WIREGUARD);
	ASSERT_EQ(d->keys[1].generate, KEY_GENERATE_NONE);
	ASSERT_EQ(d->n_disks, 4);
	ASSERT(!d->disks[0].persistent);
	ASSERT(d->disks[1].persistent);
	ASSERT_EQ(d->disks[1].size_mib, 4096);
	ASSERT(!d->disks[1].base);
	ASSERT_STREQ(d->disks[2].base, "/var/lib/images/tools.qcow2");
	ASSERT_EQ(d->disks[2].base_format, DISK_FORMAT_QCOW2);
	ASSERT_EQ(d->disks[2].size_mib, 0);
	ASSERT_EQ(d->disks[3].base_format, DISK_FORMAT_RAW);
	def_free(d);
}

TEST(def_equal_detects_changes)
{
	static const char a_text[] = "{\"name\": \"a\", \"system\": \"/nix/store/x\"}";
	static const char b_text[] = "{\"name\": \"a\", \"system\": \"/nix/store/x\", \"vcpus\": 1}";
	static const char c_text[] = "{\"name\": \"a\", \"system\": \"/nix/store/y\"}";
	struct schema_errors errors = {};
	struct vm_def *a, *b, *c;

	ASSERT(def_parse_buffer(a_text, strlen(a_text), &a, &errors) == 0);
	ASSERT(def_parse_buffer(b_text, strlen(b_text), &b, &errors) == 0);
	ASSERT(def_parse_buffer(c_text, strlen(c_text), &c, &errors) == 0);
	/* An explicit default is the same definition. */
	ASSERT(def_equal(a, b));
	ASSERT(!def_equal(a, c));
	def_free(a);
	def_free(b);
	def_free(c);
}

TEST(host_defaults)
{
	struct schema_errors errors = {};
	struct host_config *h = NULL;

	ASSERT(host_config_parse_buffer("", 0, &h, &errors) == 0);
	ASSERT_STREQ(h->run_dir, "/run/vmd");
	ASSERT_STREQ(h->state_dir, "/var/lib/vmd");
	ASSERT_STREQ(h->definitions_dir, "/etc/vmd/vms.d");
	ASSERT_STREQ(h->virtiofsd, "/usr/lib/qemu/virtiofsd");
	ASSERT_STREQ(h->qemu, "qemu-system-x86_64");
	ASSERT_STREQ(h->store_dir, "/nix/store");
	ASSERT_EQ(h->accel, ACCEL_AUTO);
	host_config_free(h);
	/* A missing default file is fine, a missing -c file is not. */
	ASSERT(host_config_load("/nonexistent/vmd.json", &h, &errors) == -EINVAL);
	ASSERT_STREQ(errors.lines[0], "json: cannot read: No such file or directory");
	schema_errors_clear(&errors);
}

TEST(host_invalid)
{
	static const struct {
		const char *text, *error;
	} cases[] = {
		{ "{\"run_dir\": \"run\"}", "run_dir: must be an absolute path" },
		{ "{\"run_dir\": \"/\"}", "run_dir: must not be /" },
		{ "{\"accel\": \"hvf\"}", "accel: must be one of: auto, kvm, tcg" },
		{ "{\"qemu\": \"\"}", "qemu: must not be empty" },
		{ "{\"qemu\": \"bin/qemu\"}", "qemu: must be an absolute path" },
		{ "{\"virtiofsd_style\": \"go\"}", "virtiofsd_style: must be one of: auto, qemu, rust" },
		{ "{\"stop_timeout_s\": 0}", "stop_timeout_s: must be 1..3600" },
		{ "{\"log_max_bytes\": 10}", "log_max_bytes: must be 65536..1099511627776" },
		{ "{\"networks\": {\"vmbr0\": {}}}", "networks.vmbr0.type: is required" },
		{ "{\"networks\": {\"vmbridge-far-too-long\": {\"type\": \"bridge\"}}}",
		  "networks.vmbridge-far-too-long: must be 1..15 characters (an interface name, IFNAMSIZ)" },
		{ "{\"networks\": {\"br/0\": {\"type\": \"bridge\"}}}",
		  "networks.br/0: may only contain letters, digits, '-', '_' and '.'" },
		{ "{\"networks\": {\"vmbr0\": {\"type\": \"switch\"}}}", "networks.vmbr0.type: must be one of: bridge, wireguard" },
		{ "{\"networks\": {\"vmbr0\": {\"type\": \"bridge\", \"address\": \"10.0.0.1\"}}}",
		  "networks.vmbr0.address: must be an IPv4 address with a prefix length, like 10.0.0.1/24" },
		{ "{\"networks\": {\"vmbr0\": {\"type\": \"bridge\", \"address\": \"10.0.0.0/24\"}}}",
		  "networks.vmbr0.address: is the network's or its broadcast address, not a host's" },
		{ "{\"networks\": {\"vmbr0\": {\"type\": \"bridge\", \"address\": \"10.0.0.01/24\"}}}",
		  "networks.vmbr0.address: must be an IPv4 address with a prefix length, like 10.0.0.1/24" },
		{ "{\"networks\": {\"vmbr0\": {\"type\": \"bridge\", \"listen_port\": 51820}}}",
		  "networks.vmbr0: endpoint and listen_port are for wireguard networks" },
		{ "{\"networks\": {\"vmwg\": {\"type\": \"wireguard\", \"endpoint\": \"10.0.0.1\"}}}",
		  "networks.vmwg.address: is required for a wireguard hub (its address and network)" },
		{ "{\"networks\": {\"vmwg\": {\"type\": \"wireguard\", \"address\": \"10.77.0.1/24\"}}}",
		  "networks.vmwg.endpoint: is required for a wireguard hub (the host address the guests reach it at)" },
		{ "{\"networks\": {\"vmwg\": {\"type\": \"wireguard\", \"address\": \"10.77.0.1/24\", \"endpoint\": \"x\"}}}",
		  "networks.vmwg.endpoint: must be an IPv4 address, like 10.0.0.1" },
		{ "{\"networks\": {\"a\": {\"type\": \"bridge\", \"address\": \"10.0.0.1/16\"},"
		  " \"b\": {\"type\": \"bridge\", \"address\": \"10.0.5.1/24\"}}}",
		  "networks.b.address: 10.0.5.1/24 overlaps 10.0.0.1/16 of network a" },
		{ "{\"wireguard_go\": \"wg go\"}", "wireguard_go: must not contain whitespace or control characters" },
		{ "[1]", "(root): must be an object" },
		{ "{\"keys_dir\": \"/run/vmd/vms/edge\"}", "keys_dir: must not overlap /run/vmd/vms, which vmd sweeps" },
		{ "{\"keys_dir\": \"/var/lib/vmd/disks\"}",
		  "keys_dir: must not overlap /var/lib/vmd/disks, which vmd sweeps" },
		{ "{\"state_dir\": \"/run/vmd/vms/x\"}", "state_dir: must not overlap /run/vmd/vms, which vmd sweeps" },
		{ "{\"run_dir\": \"/var/log/vmd\", \"log_dir\": \"/var/log/vmd/vms\"}",
		  "log_dir: must not overlap /var/log/vmd/vms, which vmd sweeps" },
		{ "{\"store_dir\": \"/var/lib/vmd/disks/s\"}",
		  "store_dir: must not overlap /var/lib/vmd/disks, which vmd sweeps" },
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct schema_errors errors = {};
		struct host_config *h = NULL;

		ASSERT(host_config_parse_buffer(cases[i].text, strlen(cases[i].text), &h, &errors) == -EINVAL);
		ASSERT_EQ(errors.n, 1);
		ASSERT_STREQ(errors.lines[0], cases[i].error);
		schema_errors_clear(&errors);
	}
}

/* The two container types the definitions do not use yet. */
struct t_item {
	char *name;
	char *type;
	uint32_t port;
};
struct t_root {
	struct t_item *nets;
	size_t n_nets;
	struct t_item *one;
};
static const struct schema_field t_item_table[] = {
	{ .key = "type", .type = SCHEMA_STRING, .offset = offsetof(struct t_item, type), .required = true },
	{ .key = "port", .type = SCHEMA_U32, .offset = offsetof(struct t_item, port), .min = 1, .max = 65535, .def_uint = 7 },
	{}
};
static const struct schema_field t_root_table[] = {
	{ .key = "nets", .type = SCHEMA_MAP, .offset = offsetof(struct t_root, nets), .sub = t_item_table,
	  .item_size = sizeof(struct t_item), .count_offset = offsetof(struct t_root, n_nets), .max_items = 3,
	  .map_key_offset = offsetof(struct t_item, name), .check = check_name },
	{ .key = "one", .type = SCHEMA_OBJECT, .offset = offsetof(struct t_root, one), .sub = t_item_table,
	  .item_size = sizeof(struct t_item) },
	{}
};

static size_t t_parse(const char *text, struct t_root *r, struct schema_errors *e)
{
	json_t *j = json_loads(text, 0, NULL);
	size_t n;

	ASSERT(j);
	n = schema_parse(t_root_table, j, r, "", e);
	json_decref(j);
	return n;
}

TEST(schema_object_and_map)
{
	struct schema_errors e = {};
	struct t_root a = {}, b = {}, c = {};
	_cleanup_free_ char *text = NULL;
	json_t *j;

	ASSERT(t_parse("{\"nets\": {\"zeta\": {\"type\": \"bridge\"}, \"alpha\": {\"type\": \"wg\", \"port\": 51820}},"
		       " \"one\": {\"type\": \"x\"}}", &a, &e) == 0);
	ASSERT_EQ(a.n_nets, 2);
	ASSERT_STREQ(a.nets[0].name, "alpha"); /* sorted */
	ASSERT_EQ(a.nets[0].port, 51820);
	ASSERT_STREQ(a.nets[1].name, "zeta");
	ASSERT_EQ(a.nets[1].port, 7);
	ASSERT(a.one && streq(a.one->type, "x"));

	/* Canonical JSON parses back equal; key order does not matter. */
	j = schema_to_json(t_root_table, &a);
	text = json_dumps(j, JSON_SORT_KEYS);
	json_decref(j);
	ASSERT_STREQ(text, "{\"nets\": {\"alpha\": {\"port\": 51820, \"type\": \"wg\"}, \"zeta\": {\"port\": 7, \"type\": \"bridge\"}},"
			   " \"one\": {\"port\": 7, \"type\": \"x\"}}");
	ASSERT(t_parse(text, &b, &e) == 0);
	ASSERT(schema_equal(t_root_table, &a, &b));
	ASSERT(t_parse("{\"nets\": {\"alpha\": {\"type\": \"wg\", \"port\": 51820}, \"zeta\": {\"type\": \"bridge\"}}}", &c, &e) == 0);
	ASSERT(!schema_equal(t_root_table, &a, &c)); /* "one" missing */
	schema_free(t_root_table, &b);
	ASSERT(t_parse("{\"nets\": {\"alpha\": {\"type\": \"wg\", \"port\": 51821}, \"zeta\": {\"type\": \"bridge\"}},"
		       " \"one\": {\"type\": \"x\"}}", &b, &e) == 0);
	ASSERT(!schema_equal(t_root_table, &a, &b)); /* a port differs */
	schema_free(t_root_table, &a);
	schema_free(t_root_table, &b);
	schema_free(t_root_table, &c);
	ASSERT(!a.nets && !a.one && a.n_nets == 0);

	/* Errors carry the entry's name in the path. */
	ASSERT(t_parse("{\"nets\": {\"Bad!\": {\"type\": \"x\"}, \"ok\": [], \"z\": {\"port\": 0}}, \"one\": 3}",
		       &a, &e) == 5);
	ASSERT_STREQ(e.lines[0], "nets.Bad!: may only contain a-z, 0-9 and '-'");
	ASSERT_STREQ(e.lines[1], "nets.ok: must be an object");
	ASSERT_STREQ(e.lines[2], "nets.z.port: must be 1..65535");
	ASSERT_STREQ(e.lines[3], "nets.z.type: is required");
	ASSERT_STREQ(e.lines[4], "one: must be an object");
	schema_free(t_root_table, &a);
	schema_errors_clear(&e);
	ASSERT(t_parse("{\"nets\": {\"a\": {\"type\": \"x\"}, \"b\": {\"type\": \"x\"}, \"c\": {\"type\": \"x\"}, \"d\": {\"type\": \"x\"}}}",
		       &a, &e) == 1);
	ASSERT_STREQ(e.lines[0], "nets: must have at most 3 entries");
	schema_free(t_root_table, &a);
	schema_errors_clear(&e);
}

/* A definition of VM edge with fields that host_check_def() refuses with
 * exactly error. */
static void expect_host_error(const struct host_config *h, const char *fields, const char *error)
{
	_cleanup_free_ char *text = xasprintf("{\"name\": \"edge\", \"system\": \"/nix/store/x-sys\", %s}", fields);
	struct schema_errors errors = {};
	struct vm_def *d = NULL;

	ASSERT(def_parse_buffer(text, strlen(text), &d, &errors) == 0);
	host_check_def(h, d, &errors);
	ASSERT_EQ(errors.n, 1);
	ASSERT_STREQ(errors.lines[0], error);
	schema_errors_clear(&errors);
	def_free(d);
}

/* A definition's network against the host's networks, and clashes
 * between definitions of one set. */
TEST(networks_against_host)
{
	static const char host_text[] =
		"{\"networks\": {\"vmbr0\": {\"type\": \"bridge\", \"address\": \"10.0.0.1/24\"},"
		" \"bare\": {\"type\": \"bridge\"},"
		" \"vmwg\": {\"type\": \"wireguard\", \"address\": \"10.77.0.1/24\", \"endpoint\": \"10.0.0.1\"}}}";
	static const struct {
		const char *fields, *error;
	} cases[] = {
		{ "\"network\": {\"bridge\": \"vmbr9\"}", "network.bridge: \"vmbr9\" is not a bridge in the host settings' networks" },
		{ "\"network\": {\"bridge\": \"vmwg\"}", "network.bridge: \"vmwg\" is not a bridge in the host settings' networks" },
		{ "\"network\": {\"bridge\": \"vmbr0\", \"address\": \"10.0.1.2/24\"}",
		  "network.address: 10.0.1.2/24 is outside 10.0.0.0/24, the network of vmbr0" },
		{ "\"network\": {\"bridge\": \"vmbr0\", \"address\": \"10.0.0.1/24\"}",
		  "network.address: 10.0.0.1/24 is the host's own address on vmbr0" },
		{ "\"network\": {\"bridge\": \"vmbr0\", \"address\": \"10.0.0.255/24\"}",
		  "network.address: 10.0.0.255/24 is the network's or the broadcast address of 10.0.0.0/24" },
		{ "\"network\": {\"bridge\": \"vmbr0\", \"address\": \"10.0.0.2/16\"}",
		  "network.address: the prefix length must be /24, that of vmbr0 (10.0.0.0/24)" },
		{ "\"network\": {\"bridge\": \"bare\", \"address\": \"10.0.0.2/24\"}",
		  "network.address: network bare has no address, so guests on it cannot have one" },
		{ "\"wireguard\": {\"hub\": \"vmbr0\", \"address\": \"10.77.0.2/32\"}",
		  "wireguard.hub: \"vmbr0\" is not a wireguard network in the host settings' networks" },
		{ "\"wireguard\": {\"hub\": \"vmwg\", \"address\": \"10.78.0.2/32\"}",
		  "wireguard.address: 10.78.0.2/32 is outside 10.77.0.0/24, the network of vmwg" },
		{ "\"wireguard\": {\"hub\": \"vmwg\", \"address\": \"10.77.0.1/32\"}",
		  "wireguard.address: 10.77.0.1/32 is the host's own address on vmwg" },
	};
	struct schema_errors errors = {};
	struct host_config *h = NULL;

	ASSERT(host_config_parse_buffer(host_text, strlen(host_text), &h, &errors) == 0);
	ASSERT_EQ(h->n_networks, 3);
	ASSERT_STREQ(h->networks[0].name, "bare");
	ASSERT_EQ(host_network_port(host_network_find(h, "vmwg")), 51820);
	ASSERT_EQ(host_network_find(h, "vmwg")->keepalive_s, 25);
	for (size_t i = 0; i < ELEMENTSOF(cases); i++)
		expect_host_error(h, cases[i].fields, cases[i].error);

	/* A wireguard VM gets the key directory "wireguard" at /etc/wireguard. */
	{
		static const char t[] = "{\"name\": \"edge\", \"system\": \"/nix/store/x-sys\","
					" \"network\": {\"bridge\": \"vmbr0\", \"address\": \"10.0.0.2/24\"},"
					" \"wireguard\": {\"hub\": \"vmwg\", \"address\": \"10.77.0.2/32\"}}";
		_cleanup_free_ char *cmdline = NULL;
		struct vm_def *d = NULL;
		uint8_t mac[6], mac2[6];

		ASSERT(def_parse_buffer(t, strlen(t), &d, &errors) == 0);
		host_check_def(h, d, &errors);
		ASSERT_EQ(errors.n, 0);
		ASSERT_EQ(d->n_keys, 1);
		ASSERT_STREQ(d->keys[0].name, "wireguard");
		ASSERT_STREQ(d->keys[0].target, "/etc/wireguard");
		ASSERT(d->keys[0].read_only && d->keys[0].generate == KEY_GENERATE_WIREGUARD);
		ASSERT_STREQ(d->network->mac, "auto");
		def_mac(d, mac);
		mac_for_vm("edge", mac2);
		ASSERT(memcmp(mac, mac2, 6) == 0);
		ASSERT(kernel_cmdline(d, d->system, "", &cmdline) == 0);
		ASSERT(strstr(cmdline, " ip=10.0.0.2:::255.255.255.0:::off "));
		def_free(d);
	}
	host_config_free(h);
}

TEST(drivers_and_hosts)
{
	static const char host_text[] =
		"{\"driver\": \"libvirt\", \"libvirt_uri\": \"qemu+unix:///system?socket=/tmp/s\","
		" \"hosts\": {\"b\": {\"libvirt_uri\": \"qemu+ssh://b.example/system\", \"accel\": \"kvm\"}}}";
	static const struct {
		const char *fields, *error;
	} cases[] = {
		{ "\"host\": \"c\"", "host: \"c\" is not in the host settings' hosts" },
		{ "\"host\": \"b\", \"driver\": \"qemu\"", "driver: must be \"libvirt\" (or absent) for a VM on another host" },
		{ "\"host\": \"b\", \"disks\": [{\"name\": \"d\", \"size_mib\": 1, \"mount\": \"/d\"}]",
		  "disks: a VM on another host (\"host\") cannot have disks yet" },
		{ "\"host\": \"b\", \"shares\": [{\"tag\": \"t\", \"source\": \"/srv\", \"target\": \"/t\"}]",
		  "shares: a VM on another host (\"host\") cannot have shares yet" },
		{ "\"host\": \"b\", \"keys\": [{\"name\": \"ssh\", \"target\": \"/etc/ssh\"}]",
		  "keys: a VM on another host (\"host\") cannot have key directories yet" },
	};
	static const char *const bad_hosts[][2] = {
		{ "{\"driver\": \"xen\"}", "driver: must be one of: qemu, libvirt" },
		{ "{\"libvirt_uri\": \"qemu system\"}", "libvirt_uri: must be printable ASCII without spaces" },
		{ "{\"libvirt_uri\": \"nothing\"}", "libvirt_uri: must be a libvirt URI, like qemu:///system or qemu+ssh://host/system" },
		{ "{\"hosts\": {\"local\": {\"libvirt_uri\": \"qemu:///system\"}}}", "hosts.local: is reserved: \"local\" is this host" },
		{ "{\"hosts\": {\"B\": {\"libvirt_uri\": \"qemu:///system\"}}}", NULL },
		{ "{\"hosts\": {\"b\": {}}}", "hosts.b.libvirt_uri: is required" },
	};
	struct schema_errors errors = {};
	struct host_config *h = NULL;
	struct vm_def *d = NULL;

	ASSERT(host_config_parse_buffer(host_text, strlen(host_text), &h, &errors) == 0);
	ASSERT_EQ(h->driver, DRIVER_LIBVIRT);
	ASSERT_EQ(h->n_hosts, 1);
	ASSERT_EQ(host_remote_find(h, "b")->accel, ACCEL_KVM);
	for (size_t i = 0; i < ELEMENTSOF(cases); i++)
		expect_host_error(h, cases[i].fields, cases[i].error);
	/* Which driver runs a definition. */
	static const struct {
		const char *fields;
		int host_default, want;
	} drivers[] = {
		{ "", DRIVER_QEMU, DRIVER_QEMU },
		{ "", DRIVER_LIBVIRT, DRIVER_LIBVIRT },
		{ ", \"driver\": \"qemu\"", DRIVER_LIBVIRT, DRIVER_QEMU },
		{ ", \"driver\": \"libvirt\"", DRIVER_QEMU, DRIVER_LIBVIRT },
		{ ", \"host\": \"b\"", DRIVER_QEMU, DRIVER_LIBVIRT },
	};
	for (size_t i = 0; i < ELEMENTSOF(drivers); i++) {
		_cleanup_free_ char *text = xasprintf("{\"name\": \"edge\", \"system\": \"/nix/store/x-sys\"%s}",
						      drivers[i].fields);

		ASSERT(def_parse_buffer(text, strlen(text), &d, &errors) == 0);
		ASSERT_EQ(def_driver(d, drivers[i].host_default), drivers[i].want);
		def_free(d);
	}
	host_config_free(h);

	for (size_t i = 0; i < ELEMENTSOF(bad_hosts); i++) {
		h = NULL;
		ASSERT(host_config_parse_buffer(bad_hosts[i][0], strlen(bad_hosts[i][0]), &h, &errors) < 0);
		if (bad_hosts[i][1])
			ASSERT_STREQ(errors.lines[0], bad_hosts[i][1]);
		schema_errors_clear(&errors);
	}
}

TEST(network_clashes_in_a_set)
{
	_cleanup_free_ char *dir = tmpdir();
	static const char *const files[][2] = {
		{ "a.json", "{\"name\": \"a\", \"system\": \"/nix/store/x\", \"network\": {\"bridge\": \"vmbr0\","
			    " \"mac\": \"52:54:00:00:00:01\", \"address\": \"10.0.0.2/24\"},"
			    " \"wireguard\": {\"hub\": \"vmwg\", \"address\": \"10.77.0.2/32\"}}" },
		{ "b.json", "{\"name\": \"b\", \"system\": \"/nix/store/x\", \"network\": {\"bridge\": \"vmbr0\","
			    " \"mac\": \"52:54:00:00:00:01\", \"address\": \"10.0.0.2/24\"},"
			    " \"wireguard\": {\"hub\": \"vmwg\", \"address\": \"10.77.0.2/32\"}}" },
		{ "c.json", "{\"name\": \"c\", \"system\": \"/nix/store/x\", \"network\": {\"bridge\": \"vmbr0\","
			    " \"address\": \"10.0.0.3/24\"}}" },
	};
	char *paths[] = { dir, NULL };
	struct defset set = {};
	struct defset_errors errors = {};

	for (size_t i = 0; i < ELEMENTSOF(files); i++) {
		_cleanup_free_ char *p = path_join(dir, files[i][0]);
		FILE *f = fopen(p, "w");

		ASSERT(f);
		fputs(files[i][1], f);
		fclose(f);
	}
	ASSERT(defset_load(paths, NULL, &set, &errors) == -EINVAL);
	ASSERT_EQ(errors.n, 1);
	ASSERT(strstr(errors.files[0].file, "/b.json"));
	ASSERT_EQ(errors.files[0].errors.n, 3);
	ASSERT(strstr(errors.files[0].errors.lines[0], "network.address: VMs b and a ("));
	ASSERT(strstr(errors.files[0].errors.lines[0], "/a.json) both have address 10.0.0.2 on vmbr0"));
	ASSERT(strstr(errors.files[0].errors.lines[1], "wireguard.address: VMs b and a ("));
	ASSERT(strstr(errors.files[0].errors.lines[1], "both have address 10.77.0.2 on vmwg"));
	ASSERT(strstr(errors.files[0].errors.lines[2], "network.mac: VMs b and a ("));
	ASSERT(strstr(errors.files[0].errors.lines[2], "both have mac 52:54:00:00:00:01"));
	defset_errors_clear(&errors);
	defset_clear(&set);
	rm_tree(dir);
}

RUN_TESTS(T(invalid_definitions), T(schema_object_and_map), T(valid_roundtrip), T(defaults), T(full_fields),
	  T(def_equal_detects_changes), T(host_defaults), T(host_invalid), T(networks_against_host),
	  T(drivers_and_hosts), T(network_clashes_in_a_set))

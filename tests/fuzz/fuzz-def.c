/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Definition loader fuzzer. The first byte picks jansson's decoding flags,
 * the rest is the document. Whatever the validator accepts must survive a
 * round trip (serialise, parse again, compare), pass the checks against a
 * host's networks without crashing, and produce a kernel command line and
 * QEMU argv, NIC included (neither exec nor netlink is touched). */
#include <stdint.h>

#include "def.h"
#include "host.h"
#include "netname.h"
#include "qemu.h"

/* A host with a bridge, a hub and another host, for the checks against
 * the settings. */
static const struct host_config *fuzz_host(void)
{
	static const char settings[] =
		"{\"networks\": {\"vmbr0\": {\"type\": \"bridge\", \"address\": \"10.0.0.1/24\"},"
		" \"br1\": {\"type\": \"bridge\"},"
		" \"vmwg\": {\"type\": \"wireguard\", \"address\": \"10.77.0.1/24\", \"endpoint\": \"10.0.0.1\"}},"
		" \"hosts\": {\"b\": {\"libvirt_uri\": \"qemu+ssh://b/system\"}}}";
	static struct host_config *host;
	struct schema_errors errors = {};

	if (!host && host_config_parse_buffer(settings, sizeof(settings) - 1, &host, &errors) < 0)
		abort();
	return host;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t flag_bits[] = { JSON_REJECT_DUPLICATES, JSON_DISABLE_EOF_CHECK, JSON_DECODE_ANY,
					    JSON_DECODE_INT_AS_REAL, JSON_ALLOW_NUL };
	struct schema_errors errors = {};
	struct vm_def *a = NULL, *b = NULL;
	size_t flags = 0;
	json_error_t err;
	json_t *j;

	if (size < 1)
		return 0;
	for (size_t i = 0; i < ELEMENTSOF(flag_bits); i++)
		if (data[0] & (1u << i))
			flags |= flag_bits[i];
	j = json_loadb((const char *)data + 1, size - 1, flags, &err);
	if (!j)
		return 0;
	if (def_parse(j, &a, &errors) == 0) {
		json_t *canon = def_to_json(a);
		char *text = canon ? json_dumps(canon, JSON_SORT_KEYS) : NULL;
		char *cmdline = NULL, **argv = NULL;
		struct schema_errors host_errors = {};
		static const int tap_fds[] = { 8, 9, 10, 11 };
		char mac[18] = "";
		struct qemu_fs fs = { "nix-store", 9 };
		struct qemu_config qc = {
			.binary = "/usr/bin/qemu-system-x86_64", .name = a->name, .accel = ACCEL_TCG,
			.vcpus = a->vcpus, .memory_mib = a->memory_mib, .kernel = "/k", .initrd = "/i",
			.qmp_fd = 3, .console_fd = 4, .notify_fd = 5, .agent_fd = 6, .fs = &fs, .n_fs = 1,
		};
		if (a->network) {
			uint8_t m[6];

			def_mac(a, m);
			mac_format(m, mac);
			qc.mac = mac;
			qc.tap_fds = tap_fds;
			qc.n_taps = a->vcpus < ELEMENTSOF(tap_fds) ? a->vcpus : ELEMENTSOF(tap_fds);
		}
		host_check_def(fuzz_host(), a, &host_errors);
		schema_errors_clear(&host_errors);

		if (!text || errors.n != 0)
			abort();
		if (def_parse_buffer(text, strlen(text), &b, &errors) != 0 || !def_equal(a, b))
			abort();
		if (kernel_cmdline(a, a->system, "", &cmdline) != 0)
			abort();
		qc.cmdline = cmdline;
		if (qemu_argv(&qc, &argv) != 0)
			abort();
		strv_free(argv);
		free(cmdline);
		free(text);
		json_decref(canon);
		def_free(a);
		def_free(b);
	} else if (errors.n == 0)
		abort(); /* a rejection must say why */
	schema_errors_clear(&errors);
	json_decref(j);
	return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Definition loader fuzzer. The first byte picks jansson's decoding flags,
 * the rest is the document. Whatever the validator accepts must survive a
 * round trip (serialise, parse again, compare) and must produce a kernel
 * command line and QEMU argv (the exec side is not run). */
#include <stdint.h>

#include "def.h"
#include "qemu.h"

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
		struct qemu_fs fs = { "nix-store", "/run/vmd/vms/x/fs0.sock" };
		struct qemu_config qc = {
			.binary = "/usr/bin/qemu-system-x86_64", .name = a->name, .accel = ACCEL_TCG,
			.vcpus = a->vcpus, .memory_mib = a->memory_mib, .kernel = "/k", .initrd = "/i",
			.qmp_fd = 3, .console_fd = 4, .notify_fd = 5, .agent_fd = 6, .fs = &fs, .n_fs = 1,
		};

		if (!text || errors.n != 0)
			abort();
		if (def_parse_buffer(text, strlen(text), &b, &errors) != 0 || !def_equal(a, b))
			abort();
		if (qemu_kernel_cmdline(a, a->system, "", &cmdline) != 0)
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

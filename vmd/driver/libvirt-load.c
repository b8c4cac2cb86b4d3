/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Loading libvirt: libvirt and libvirt-qemu opened with dlopen() when the
 * first connection needs them, the table of their functions (sym_*), and
 * libvirt's errors as vmd's (its message, and -errno). */
#include <dlfcn.h>

#include "libvirt-internal.h"
#include "log.h"

#define DEFINE(name) typeof(name) *sym_##name;
LIBVIRT_SYMBOLS(DEFINE)
LIBVIRT_QEMU_SYMBOLS(DEFINE)
#undef DEFINE

int lv_load(void)
{
	static int loaded; /* 1, or -errno once failed */
	void *lib, *qlib;

	if (loaded)
		return loaded < 0 ? loaded : 0;
	lib = dlopen(VMD_LIBVIRT_LIBRARY, RTLD_NOW | RTLD_LOCAL);
	qlib = lib ? dlopen(VMD_LIBVIRT_QEMU_LIBRARY, RTLD_NOW | RTLD_LOCAL) : NULL;
	if (!lib || !qlib) {
		log_error("cannot load libvirt (Debian: the libvirt0 package): %s", dlerror());
		loaded = -EOPNOTSUPP;
		return loaded;
	}
#define RESOLVE(handle, file, name)                                                  \
	if (!(sym_##name = (typeof(name) *)dlsym(handle, #name))) {                  \
		log_error(file " has no %s: too old a libvirt", #name);              \
		loaded = -EOPNOTSUPP;                                                \
		return loaded;                                                       \
	}
#define RESOLVE_LIBVIRT(name) RESOLVE(lib, VMD_LIBVIRT_LIBRARY, name)
#define RESOLVE_QEMU(name) RESOLVE(qlib, VMD_LIBVIRT_QEMU_LIBRARY, name)
	LIBVIRT_SYMBOLS(RESOLVE_LIBVIRT)
	LIBVIRT_QEMU_SYMBOLS(RESOLVE_QEMU)
#undef RESOLVE_QEMU
#undef RESOLVE_LIBVIRT
#undef RESOLVE
	loaded = 1;
	return 0;
}

const char *lv_error(void)
{
	const char *m;

	if (!lv_event_loop())
		return "libvirt could not be loaded";
	m = sym_virGetLastErrorMessage();

	return m ? m : "unknown libvirt error";
}

int lv_errno(void)
{
	virErrorPtr e = lv_event_loop() ? sym_virGetLastError() : NULL;

	if (!e)
		return -EIO;
	switch (e->code) {
	case VIR_ERR_NO_DOMAIN:
		return -ENOENT;
	case VIR_ERR_OPERATION_INVALID:
		return -EINVAL;
	case VIR_ERR_NO_SUPPORT:
	case VIR_ERR_CONFIG_UNSUPPORTED:
	case VIR_ERR_OPERATION_UNSUPPORTED:
	case VIR_ERR_ARGUMENT_UNSUPPORTED:
		return -EOPNOTSUPP;
	case VIR_ERR_OPERATION_TIMEOUT:
	case VIR_ERR_AGENT_UNRESPONSIVE:
		return -ETIMEDOUT;
	case VIR_ERR_AUTH_FAILED:
	case VIR_ERR_AUTH_CANCELLED:
	case VIR_ERR_ACCESS_DENIED:
		return -EACCES;
	case VIR_ERR_SYSTEM_ERROR:
		return e->int1 > 0 ? -e->int1 : -EIO;
	case VIR_ERR_NO_CONNECT:
	case VIR_ERR_RPC:
		return -ECONNREFUSED;
	default:
		return -EIO;
	}
}

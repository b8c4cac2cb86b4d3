/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "driver.h"
#include "log.h"
#include "qemu.h"

const struct vm_driver *const vm_drivers[] = { &driver_libvirt, &driver_qemu, NULL };

const struct vm_driver *driver_for(int driver)
{
	return driver == DRIVER_LIBVIRT ? &driver_libvirt : &driver_qemu;
}

int vm_tools_resolve(const struct host_config *host, int accel, const char *who, struct vm_tools *ret)
{
	const char *sep = who ? ": " : "";
	int r;

	who = who ? who : "";
	*ret = (struct vm_tools){};
	r = accel_resolve(accel, "/", &ret->accel, &ret->accel_reason);
	if (r < 0)
		return log_error_errno(r, "%s%schoosing the accelerator: %m", who, sep);
	r = find_executable(host->qemu, &ret->qemu);
	if (r < 0)
		return log_error_errno(r, "%s%sQEMU binary %s: %m", who, sep, host->qemu);
	r = find_executable(host->virtiofsd, &ret->virtiofsd);
	if (r < 0)
		return log_error_errno(r, "%s%svirtiofsd binary %s: %m", who, sep, host->virtiofsd);
	r = virtiofsd_probe(ret->virtiofsd, host->virtiofsd_style, &ret->caps);
	if (r < 0)
		return log_error_errno(r, "%s%scannot tell which virtiofsd %s is (set \"virtiofsd_style\"): %m", who,
				       sep, ret->virtiofsd);
	return 0;
}

void vm_tools_done(struct vm_tools *t)
{
	t->qemu = mfree(t->qemu);
	t->virtiofsd = mfree(t->virtiofsd);
}

struct vm_options vm_tools_options(const struct vm_tools *t)
{
	return (struct vm_options){ .accel = t->accel, .caps = &t->caps, .qemu = t->qemu, .virtiofsd = t->virtiofsd };
}

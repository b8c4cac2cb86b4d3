/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "driver.h"

const struct vm_driver *const vm_drivers[] = { &driver_libvirt, &driver_qemu, NULL };

const struct vm_driver *driver_for(int driver)
{
	return driver == DRIVER_LIBVIRT ? &driver_libvirt : &driver_qemu;
}

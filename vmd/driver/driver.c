/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "beneath.h"
#include "disk.h"
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

int vm_image_open(const struct vm_plan *p, size_t i)
{
	const struct vm_image *im = &p->images[i];
	const char *what = im->disk->persistent ? "volume" : "disk";
	int fd = disk_open(im->path, im->root_len);

	if (fd == -ELOOP)
		return log_error_errno(fd, "%s: %s %s: %s: a symlink on the way below %.*s (refused)", p->def->name,
				       what, im->disk->name, im->path, (int)im->root_len, im->path);
	if (fd == -EMLINK)
		return log_error_errno(fd, "%s: %s %s: %s has more than one link (hard links are refused)",
				       p->def->name, what, im->disk->name, im->path);
	if (fd == -EBADFD)
		return log_error_errno(fd, "%s: %s %s: %s is not a regular file", p->def->name, what, im->disk->name,
				       im->path);
	if (fd < 0)
		return log_error_errno(fd, "%s: %s %s: opening %s: %m", p->def->name, what, im->disk->name, im->path);
	return fd;
}

int vm_share_open(const struct vm_plan *p, const struct vm_share *s)
{
	int fd = open_below(s->source, s->root_len, O_RDONLY | O_DIRECTORY);

	if (fd == -ELOOP)
		return log_error_errno(fd, "%s: %s: %s: a symlink on the way below %.*s (refused)", p->def->name,
				       s->tag, s->source, s->root_len ? (int)s->root_len : 1,
				       s->root_len ? s->source : "/");
	if (fd < 0)
		return log_error_errno(fd, "%s: %s: opening %s: %m", p->def->name, s->tag, s->source);
	return fd;
}

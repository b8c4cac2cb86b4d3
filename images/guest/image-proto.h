/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What vmd (images/guestconf.h) and its image init (image-init.c, built
 * on its own, static) agree on; no dependencies, so both include it. The
 * entry's format is described in guestconf.h. */

/* The QEMU fw_cfg entry that says what to run. */
#define IMAGE_FW_CFG_NAME "opt/io.vmd/image"
/* The entry's size limit, on both sides. */
#define IMAGE_CONF_MAX (64 * 1024)
/* The virtio-fs tag of the unpacked image (read-only). */
#define IMAGE_SHARE_TAG "vmd-image"
/* The image init in the initramfs; "--enter -- CMD..." runs CMD in the
 * image's root (vmd exec). */
#define IMAGE_INIT_ENTER_PATH "/init"
/* docker's PATH for an image whose Env has none. */
#define IMAGE_DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

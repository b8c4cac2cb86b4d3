/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "child.h"
#include "virtiofsd.h"

const char *virtiofsd_modcaps(bool read_only, bool world_readable)
{
	if (!read_only)
		return NULL;
	/* Reading files of any owner takes dac_override, and fowner: a
	 * guest's overlayfs opens its lower files with O_NOATIME (an image's
	 * root), which only the owner or CAP_FOWNER may ask for (EPERM). */
	return world_readable ? "-chown:-dac_override:-fowner:-fsetid:-setgid:-setuid:-mknod:-setfcap"
			      : "-chown:-fsetid:-setgid:-setuid:-mknod:-setfcap";
}

static const char *modcaps(const struct virtiofsd_config *c)
{
	return virtiofsd_modcaps(c->read_only, c->world_readable);
}

int virtiofsd_argv(const struct virtiofsd_config *c, const struct virtiofsd_caps *caps, char ***ret)
{
	static const char *const qemu_cache[] = { "always", "auto", "none" };
	static const char *const rust_cache[] = { "always", "auto", "never" };
	_cleanup_strv_free_ char **a = NULL;
	int r;

	r = strv_extend(&a, c->binary);
	if (r == 0)
		r = strv_extendf(&a, "--fd=%d", c->fd);
	if (r < 0)
		return r;

	if (caps->style == VIRTIOFSD_STYLE_RUST) {
		r = strv_extendf(&a, "--shared-dir=%s", c->source);
		if (r == 0)
			r = strv_extendf(&a, "--cache=%s", rust_cache[c->cache]);
		if (r == 0)
			r = strv_extend(&a, "--sandbox=namespace");
		/* Its info level logs every connection step into the VM's log. */
		if (r == 0)
			r = strv_extend(&a, "--log-level=warn");
		/* File handles instead of an O_PATH fd per inode: a guest that
		 * walks the whole store cannot exhaust the fd table. */
		if (r == 0 && caps->inode_file_handles)
			r = strv_extend(&a, "--inode-file-handles=prefer");
		if (r == 0 && c->read_only && caps->readonly)
			r = strv_extend(&a, "--readonly");
		if (r == 0 && modcaps(c) && caps->modcaps)
			r = strv_extendf(&a, "--modcaps=%s", modcaps(c));
	} else {
		/* The C daemon has no read-only switch; spawn() makes the
		 * source a read-only bind mount instead (both styles get it). */
		r = strv_extend(&a, "-o");
		if (r == 0)
			r = strv_extendf(&a, "source=%s", c->source);
		if (r == 0)
			r = strv_extend(&a, "-o");
		if (r == 0)
			r = strv_extendf(&a, "cache=%s", qemu_cache[c->cache]);
		if (r == 0)
			r = strv_extend(&a, "-o");
		if (r == 0)
			r = strv_extend(&a, "sandbox=namespace");
		if (r == 0)
			r = strv_extend(&a, "-o");
		if (r == 0)
			r = strv_extend(&a, "log_level=warn");
		if (r == 0 && modcaps(c))
			r = strv_extend(&a, "-o");
		if (r == 0 && modcaps(c))
			r = strv_extendf(&a, "modcaps=%s", modcaps(c));
	}
	if (r < 0)
		return r;
	*ret = TAKE_PTR(a);
	return 0;
}

int virtiofsd_parse_help(const char *help, enum virtiofsd_style forced, struct virtiofsd_caps *ret)
{
	struct virtiofsd_caps caps = { .style = forced };

	if (caps.style == VIRTIOFSD_STYLE_AUTO) {
		if (strstr(help, "--shared-dir"))
			caps.style = VIRTIOFSD_STYLE_RUST;
		else if (strstr(help, "source=") || strstr(help, "-o cache="))
			caps.style = VIRTIOFSD_STYLE_QEMU;
		else
			return -EPROTONOSUPPORT;
	}
	if (caps.style == VIRTIOFSD_STYLE_RUST) {
		caps.readonly = strstr(help, "--readonly") != NULL;
		caps.inode_file_handles = strstr(help, "--inode-file-handles") != NULL;
		caps.modcaps = strstr(help, "--modcaps") != NULL;
	}
	*ret = caps;
	return 0;
}

int virtiofsd_probe(const char *binary, enum virtiofsd_style forced, struct virtiofsd_caps *ret)
{
	_cleanup_free_ char *help = NULL;
	char *argv[] = { (char *)binary, (char *)"--help", NULL };
	int r;

	r = child_run(argv, SANDBOX_TOOL, NULL, 0, 10 * USEC_PER_SEC, 64 * 1024, &help);
	if (r < 0)
		return r;
	return virtiofsd_parse_help(help, forced, ret);
}

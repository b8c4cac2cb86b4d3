/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "def.h"
#include "disk.h"
#include "gcroot.h"
#include "hostnet.h"
#include "keydir.h"
#include "log.h"
#include "plan.h"

char *vm_run_dir(const struct host_config *host, const char *name)
{
	return xasprintf("%s/vms/%s", host->run_dir, name);
}

char *vm_disk_dir(const struct host_config *host, const char *name)
{
	return xasprintf("%s/disks/%s", host->state_dir, name);
}

char *vm_volume_dir(const struct host_config *host, const char *name)
{
	return xasprintf("%s/volumes/%s", host->state_dir, name);
}

int plan_init(struct vm_plan *p, struct loop *l, const struct host_config *host, const struct vm_options *opts,
	      const struct vm_def *def, struct vmlog *log)
{
	*p = (struct vm_plan){
		.loop = l,
		.def = def,
		.host = host,
		.opts = opts,
		.lock_fd = -EBADF,
		.log = log,
		.dir = vm_run_dir(host, def->name),
		.disk_dir = vm_disk_dir(host, def->name),
	};
	return p->dir && p->disk_dir ? 0 : -ENOMEM;
}

void plan_done(struct vm_plan *p)
{
	plan_clear(p);
	free(p->dir);
	free(p->disk_dir);
	free(p->system);
	free(p->cmdline);
	p->dir = p->disk_dir = p->system = p->cmdline = NULL;
}

int plan_lock(struct vm_plan *p, bool sweep)
{
	usec_t give_up = now_usec() + (p->opts ? p->opts->lock_wait : 0);

	for (int attempt = 0; attempt < 5; attempt++) {
		_cleanup_close_ int fd = -EBADF;
		struct stat a, b;
		int r;

		r = mkdir_p(p->dir, 0700);
		if (r < 0)
			return r;
		fd = open(p->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			continue; /* removed by a predecessor's teardown just now */
		if (fd < 0)
			return -errno;
		while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno != EWOULDBLOCK)
				return -errno;
			if (now_usec() >= give_up)
				return -EBUSY;
			usleep(50 * 1000);
		}
		/* The previous owner may have removed the directory between our
		 * open() and flock(); then lock the new one. */
		if (fstat(fd, &a) < 0)
			return -errno;
		if (stat(p->dir, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev || a.st_nlink == 0)
			continue;
		p->lock_fd = TAKE_FD(fd);
		/* Leftovers of a vmd that died without cleaning up. */
		return sweep ? rm_rf_children(p->lock_fd) : 0;
	}
	return -EBUSY;
}

int plan_sweep_disks(struct vm_plan *p)
{
	_cleanup_close_ int fd = open(p->disk_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	return rm_rf_children(fd);
}

/* The closure of a running VM is a GC root, so that nix-collect-garbage
 * cannot delete what the guest runs from. A host without Nix has no
 * registry; any other failure is worth a warning, not a failed start. */
static void add_gcroot(struct vm_plan *p)
{
	_cleanup_free_ char *link = path_join(p->dir, "system");
	int r = link ? gcroot_add(p->host->gcroots_dir, link, p->system) : -ENOMEM;

	if (r == -ENOENT)
		log_debug("%s: no %s, no GC root for %s", p->def->name, p->host->gcroots_dir, p->system);
	else if (r < 0)
		log_warning_errno(r, "%s: registering %s as a GC root in %s: %m", p->def->name, p->system,
				  p->host->gcroots_dir);
}

static void remove_run_dir(struct vm_plan *p)
{
	_cleanup_free_ char *link = NULL;

	if (p->lock_fd < 0)
		return;
	link = path_join(p->dir, "system");
	if (link)
		(void)gcroot_remove(p->host->gcroots_dir, link);
	rm_rf_children(p->lock_fd);
	if (rmdir(p->dir) < 0 && errno != ENOENT)
		log_warning_errno(errno, "%s: removing %s: %m", p->def->name, p->dir);
	p->lock_fd = safe_close(p->lock_fd);
}

static void free_images(struct vm_plan *p, bool remove)
{
	for (size_t i = 0; i < p->n_images; i++) {
		if (remove && !p->images[i].disk->persistent) {
			int r = disk_remove(p->images[i].path);
			if (r < 0)
				log_warning_errno(r, "%s: removing %s: %m", p->def->name, p->images[i].path);
		}
		free(p->images[i].path);
	}
	p->images = mfree(p->images);
	p->n_images = 0;
	/* Only the lock holder may touch the directory: another start may be
	 * building a disk in it (an O_TMPFILE that looks like nothing). */
	if (remove && p->lock_fd >= 0 && rmdir(p->disk_dir) < 0 && errno != ENOENT && errno != ENOTEMPTY)
		log_warning_errno(errno, "%s: removing %s: %m", p->def->name, p->disk_dir);
}

static void free_shares(struct vm_plan *p)
{
	for (size_t i = 0; i < p->n_shares; i++) {
		struct vm_share *s = &p->shares[i];

		child_done(&s->proc);
		free(s->tag);
		free(s->source);
		free(s->socket);
		free(s->pidfile);
	}
	p->shares = mfree(p->shares);
	p->n_shares = 0;
}

void plan_clear(struct vm_plan *p)
{
	free_shares(p);
	free_images(p, true);
	remove_run_dir(p);
}

void plan_forget(struct vm_plan *p)
{
	free_shares(p);
	free_images(p, false);
	p->lock_fd = safe_close(p->lock_fd);
}

static int add_share(struct vm_plan *p, const char *tag, char *source, enum virtiofsd_cache cache, bool ro)
{
	struct vm_share *s = &p->shares[p->n_shares];
	_cleanup_free_ char *what = xasprintf("virtiofsd for %s", tag);

	s->tag = strdup(tag);
	s->source = source;
	s->socket = xasprintf("%s/fs%zu.sock", p->dir, p->n_shares);
	s->pidfile = xasprintf("%s/fs%zu.pid", p->dir, p->n_shares);
	s->cache = cache;
	s->read_only = ro;
	p->n_shares++;
	if (child_init(&s->proc, what) < 0 || !what || !s->tag || !s->source || !s->socket || !s->pidfile)
		return -ENOMEM;
	return 0;
}

/* vmd empties its run and disk directories at every start and stop:
 * nothing a guest keeps may live there. */
static int refuse_swept(struct vm_plan *p, const char *what, const char *name, const char *path)
{
	_cleanup_free_ char *swept = host_swept_dir(p->host, path);

	if (!swept)
		return 0;
	return log_error_errno(EINVAL, "%s: %s %s: %s is inside %s, which vmd empties at every start and stop",
			       p->def->name, what, name, path, swept);
}

/* The store, then keys, then shares, as the definition names them. */
static int layout_shares(struct vm_plan *p)
{
	const struct vm_def *d = p->def;
	int r;

	p->shares = calloc(1 + d->n_keys + d->n_shares, sizeof(*p->shares));
	if (!p->shares)
		return -ENOMEM;
	/* The store never changes under a path: cache everything. */
	r = add_share(p, "nix-store", strdup(p->host->store_dir), VIRTIOFSD_CACHE_ALWAYS, true);
	for (size_t i = 0; r == 0 && i < d->n_keys; i++) {
		const struct def_key *k = &d->keys[i];
		_cleanup_free_ char *tag = def_key_tag(k);

		/* Keys are small and may be rotated on the host: no caching. */
		r = tag ? add_share(p, tag, k->source ? strdup(k->source) : xasprintf("%s/%s/%s", p->host->keys_dir,
											d->name, k->name),
				    VIRTIOFSD_CACHE_NONE, k->read_only)
			: -ENOMEM;
	}
	for (size_t i = 0; r == 0 && i < d->n_shares; i++)
		r = add_share(p, d->shares[i].tag, strdup(d->shares[i].source), VIRTIOFSD_CACHE_AUTO,
			      d->shares[i].read_only);
	return r;
}

/* The shares' host side: key directories made (and the WireGuard peer
 * joined), shares resolved to the directories themselves. */
static int realize_shares(struct vm_plan *p)
{
	const struct vm_def *d = p->def;
	struct vm_share *s = p->shares + 1;
	int r;

	for (size_t i = 0; i < d->n_keys; i++, s++) {
		_cleanup_close_ int keyfd = -EBADF;
		char *dir = NULL;

		/* The default place, under keys_dir, cannot be swept (the
		 * host settings are checked for that). */
		if (d->keys[i].source) {
			r = refuse_swept(p, "key", d->keys[i].name, d->keys[i].source);
			if (r < 0)
				return r;
		}
		r = keydir_prepare(p->host->keys_dir, d->name,
				   &(struct keydir_key){ .name = d->keys[i].name, .source = d->keys[i].source,
							 .wireguard = d->keys[i].generate == KEY_GENERATE_WIREGUARD },
				   &dir, &keyfd);
		if (r < 0)
			return r;
		free(s->source);
		s->source = dir;
		/* Its wg0.conf is written before the guest can look. */
		if (d->wireguard && streq(d->keys[i].name, DEF_WIREGUARD_KEY)) {
			r = hostnet_wg_join(p->opts->net, d, keyfd);
			if (r < 0)
				return r;
		}
	}
	for (size_t i = 0; i < d->n_shares; i++, s++) {
		_cleanup_free_ char *real = NULL;
		struct stat st;

		/* virtiofsd wants the directory itself, not a symlink to it. */
		real = realpath(d->shares[i].source, NULL);
		if (!real || stat(real, &st) < 0)
			return log_error_errno(errno, "%s: share %s: %s: %m", d->name, d->shares[i].tag,
					       d->shares[i].source);
		if (!S_ISDIR(st.st_mode))
			return log_error_errno(ENOTDIR, "%s: share %s: %s is not a directory", d->name,
					       d->shares[i].tag, d->shares[i].source);
		r = refuse_swept(p, "share", d->shares[i].tag, real);
		if (r < 0)
			return r;
		free(s->source);
		s->source = TAKE_PTR(real);
	}
	return 0;
}

/* Where each disk's image lives. */
static int layout_images(struct vm_plan *p)
{
	const struct vm_def *d = p->def;
	_cleanup_free_ char *voldir = vm_volume_dir(p->host, d->name);

	if (!voldir)
		return -ENOMEM;
	if (d->n_disks == 0)
		return 0;
	p->images = calloc(d->n_disks, sizeof(*p->images));
	if (!p->images)
		return -ENOMEM;
	for (size_t i = 0; i < d->n_disks; i++) {
		const struct def_disk *dk = &d->disks[i];

		p->images[i].disk = dk;
		p->images[i].path = xasprintf("%s/%s.%s", dk->persistent ? voldir : p->disk_dir, dk->name,
					      dk->base ? "qcow2" : "img");
		if (!p->images[i].path)
			return -ENOMEM;
		p->n_images = i + 1;
	}
	return 0;
}

int plan_layout(struct vm_plan *p)
{
	int r = layout_images(p);

	return r < 0 ? r : layout_shares(p);
}

int plan_adopt(struct vm_plan *p)
{
	int r = plan_layout(p);

	return r < 0 ? r : realize_shares(p);
}

static int create_images(struct vm_plan *p)
{
	const struct vm_def *d = p->def;
	int r;

	for (size_t i = 0; i < p->n_images; i++) {
		const struct def_disk *dk = p->images[i].disk;
		_cleanup_free_ char *why = NULL, *dir = strdup(p->images[i].path);
		bool created;

		if (!dir)
			return -ENOMEM;
		*strrchr(dir, '/') = 0;
		r = mkdir_p(dir, 0700);
		if (r < 0)
			return log_error_errno(r, "%s: creating %s: %m", d->name, dir);
		if (dk->base) {
			r = refuse_swept(p, "disk", dk->name, dk->base);
			if (r < 0)
				return r;
			r = disk_create_overlay(p->images[i].path, dk->base, disk_format_names[dk->base_format],
						dk->size_mib, &why);
			if (r < 0)
				return log_error_errno(r, "%s: creating overlay disk %s on %s at %s: %m%s%s",
						       d->name, dk->name, dk->base, p->images[i].path,
						       why ? ": " : "", why ? why : "");
			continue;
		}
		r = disk_create(p->images[i].path, dk->persistent ? DISK_PERSISTENT : DISK_EPHEMERAL,
				dk->size_mib, dk->name, &created, &why);
		if (r < 0)
			return log_error_errno(r, "%s: creating disk %s (%" PRIu64 " MiB) at %s: %m%s%s",
					       d->name, dk->name, dk->size_mib, p->images[i].path,
					       why ? ": " : "", why ? why : "");
		if (created && dk->persistent)
			log_info("%s: created persistent volume %s", d->name, p->images[i].path);
	}
	return 0;
}

static int read_closure_params(struct vm_plan *p, char **ret)
{
	_cleanup_free_ char *path = path_join(p->system, "kernel-params");
	int r;

	if (!path)
		return -ENOMEM;
	r = read_file(path, KERNEL_CMDLINE_MAX, ret, NULL);
	if (r == -ENOENT) {
		*ret = strdup("");
		return *ret ? 0 : -ENOMEM;
	}
	return r;
}

int plan_prepare(struct vm_plan *p)
{
	struct schema_errors errors = {};
	_cleanup_free_ char *params = NULL, *store = NULL;
	int r;

	p->system = mfree(p->system);
	store = def_resolve_store(p->host->store_dir);
	r = store ? def_check_system(p->def, store, &p->system, &errors) : -errno;
	if (!store)
		schema_error(&errors, "store_dir", "%s: %s", p->host->store_dir, strerror(errno));
	if (r < 0) {
		for (size_t i = 0; i < errors.n; i++)
			log_error("%s: %s", p->def->name, errors.lines[i]);
		schema_errors_clear(&errors);
		return r;
	}
	add_gcroot(p);
	r = read_closure_params(p, &params);
	if (r == -EBADFD)
		return log_error_errno(r, "%s: %s/kernel-params: not a regular file", p->def->name, p->def->system);
	if (r < 0)
		return log_error_errno(r, "%s: reading %s/kernel-params: %m", p->def->name, p->def->system);
	p->cmdline = mfree(p->cmdline);
	r = kernel_cmdline(p->def, p->system, params, &p->cmdline);
	if (r == -E2BIG)
		log_error("%s: the kernel command line is longer than %d bytes", p->def->name, KERNEL_CMDLINE_MAX);
	if (r < 0)
		return r;
	r = plan_layout(p);
	if (r == 0)
		r = create_images(p);
	return r < 0 ? r : realize_shares(p);
}

int plan_sweep_stale(const struct host_config *host, const char *name)
{
	struct vm_def def = { .name = (char *)name };
	struct vm_plan p;
	int r;

	r = plan_init(&p, NULL, host, NULL, &def, NULL);
	if (r == 0)
		r = plan_lock(&p, true);
	if (r == 0)
		r = plan_sweep_disks(&p);
	if (p.lock_fd >= 0 && rmdir(p.disk_dir) < 0 && errno != ENOENT)
		r = r ?: -errno;
	plan_done(&p);
	return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <stdio.h>

#include "beneath.h"
#include "def.h"
#include "disk.h"
#include "gcroot.h"
#include "guestconf.h"
#include "hostnet.h"
#include "image.h"
#include "keydir.h"
#include "log.h"
#include "plan.h"
#include "vmlog.h"

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
		.image_lock_fd = -EBADF,
		.log = log,
		.dir = vm_run_dir(host, def->name),
		.disk_dir = vm_disk_dir(host, def->name),
	};
	return p->dir && p->disk_dir ? 0 : -ENOMEM;
}

static void free_paths(struct vm_plan *p)
{
	free(p->dir);
	free(p->disk_dir);
	free(p->system);
	free(p->cmdline);
	p->dir = p->disk_dir = p->system = p->cmdline = NULL;
}

void plan_done(struct vm_plan *p)
{
	plan_clear(p);
	free_paths(p);
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
		free(s->mountpoint);
		free(s->pidfile);
	}
	p->shares = mfree(p->shares);
	p->n_shares = 0;
	p->image_conf = mfree(p->image_conf);
	p->image_lock_fd = safe_close(p->image_lock_fd);
	if (p->image_taken)
		image_cached_clear(p->image_taken);
	p->image_taken = mfree(p->image_taken);
	p->image_unpack_usec = 0;
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

static int add_share(struct vm_plan *p, const char *tag, char *source, size_t root_len, enum virtiofsd_cache cache,
		     bool ro)
{
	struct vm_share *s = &p->shares[p->n_shares];
	_cleanup_free_ char *what = xasprintf("virtiofsd for %s", tag);

	s->tag = strdup(tag);
	s->source = source;
	s->root_len = root_len;
	s->socket = xasprintf("%s/fs%zu.sock", p->dir, p->n_shares);
	s->mountpoint = xasprintf("%s/fs%zu.dir", p->dir, p->n_shares);
	s->pidfile = xasprintf("%s/fs%zu.pid", p->dir, p->n_shares);
	s->cache = cache;
	s->read_only = ro;
	p->n_shares++;
	if (child_init(&s->proc, what) < 0 || !what || !s->tag || !s->source || !s->socket || !s->mountpoint || !s->pidfile)
		return -ENOMEM;
	return 0;
}

/* vmd empties its run and disk directories at every start and stop:
 * nothing a guest keeps may live there. */
static int refuse_swept(struct vm_plan *p, const char *field, const char *path, struct schema_errors *errors)
{
	_cleanup_free_ char *swept = host_swept_dir(p->host, path);

	if (!swept)
		return 0;
	schema_error(errors, field, "%s is inside %s, which vmd empties at every start and stop", path, swept);
	return -EINVAL;
}

/* The store, then keys, then shares, as the definition names them. */
static int layout_shares(struct vm_plan *p)
{
	const struct vm_def *d = p->def;
	int r;

	p->shares = calloc(2 + d->n_keys + d->n_shares, sizeof(*p->shares));
	if (!p->shares)
		return -ENOMEM;
	/* The store never changes under a path: cache everything. */
	r = add_share(p, "nix-store", strdup(p->host->store_dir), strlen(p->host->store_dir), VIRTIOFSD_CACHE_ALWAYS,
		      true);
	for (size_t i = 0; r == 0 && i < d->n_keys; i++) {
		const struct def_key *k = &d->keys[i];
		_cleanup_free_ char *tag = def_key_tag(k);
		/* Below keys_dir, or below the parent of the key's source. */
		size_t root_len = k->source ? (size_t)(strrchr(k->source, '/') - k->source) : strlen(p->host->keys_dir);

		/* Keys are small and may be rotated on the host: no caching. */
		r = tag ? add_share(p, tag, k->source ? strdup(k->source) : xasprintf("%s/%s/%s", p->host->keys_dir,
											d->name, k->name),
				    root_len, VIRTIOFSD_CACHE_NONE, k->read_only)
			: -ENOMEM;
	}
	/* Shares are resolved (realpath()) when the boot is prepared: from
	 * then on, no symlink at all. */
	for (size_t i = 0; r == 0 && i < d->n_shares; i++)
		r = add_share(p, d->shares[i].tag, strdup(d->shares[i].source), 0, VIRTIOFSD_CACHE_AUTO,
			      d->shares[i].read_only);
	/* An image's unpacked root, last: its cache entry is known once the
	 * boot is prepared (prepare_image()); it never changes under a key. */
	if (r == 0 && d->image)
		r = add_share(p, IMAGE_SHARE_TAG, image_cache_dir(p->host), strlen(p->host->state_dir),
			      VIRTIOFSD_CACHE_ALWAYS, true);
	return r;
}

char *image_cache_dir(const struct host_config *host)
{
	return path_join(host->state_dir, "images");
}

/* The image library's "FIELD: reason" lines name the image's own files
 * (index.json, layer 2 ..., user): under the definition's field, image. */
static int image_errors(int r, struct schema_errors *from, struct schema_errors *errors)
{
	for (size_t i = 0; i < from->n; i++)
		schema_error(errors, "image", "%s", from->lines[i]);
	schema_errors_clear(from);
	return r;
}

/* What the image's init runs, as the fw_cfg entry: the image's config, the
 * definition's overrides, the user resolved in the unpacked root. */
static int image_conf(const struct host_config *host, const struct vm_def *d, const struct oci_run *run,
		      const char *rootfs, char **ret, struct schema_errors *errors)
{
	_cleanup_(image_launch_clear) struct image_launch l = {};
	_cleanup_(schema_errors_clear) struct schema_errors ie = {};
	_cleanup_close_ int fd = -EBADF;
	int r;

	r = image_launch_compose(run, d->cmd, d->env, d->workdir, &l, errors);
	if (r < 0 || !rootfs)
		return r;
	/* Below state_dir, as every path of the cache: no symlink followed. */
	fd = open_below(rootfs, strlen(host->state_dir), O_PATH | O_DIRECTORY);
	if (fd < 0) {
		schema_error(errors, "image", "%s: %s", rootfs, strerror(-fd));
		return fd;
	}
	r = image_errors(image_resolve_user(fd, run->user, &l.uid, &l.gid, &l.groups, &l.n_groups, &ie), &ie,
			 errors);
	if (r < 0)
		return r;
	r = image_conf_format(&l, ret);
	if (r == -E2BIG)
		schema_error(errors, "image", "the command, environment and working directory take more than %d "
					      "bytes", IMAGE_CONF_MAX);
	return r;
}

int plan_check_image(const struct host_config *host, const struct vm_def *d, struct schema_errors *errors)
{
	_cleanup_free_ char *cache = image_cache_dir(host), *conf = NULL, *rootfs = NULL;
	_cleanup_(image_info_clear) struct image_info info = {};
	_cleanup_(schema_errors_clear) struct schema_errors ie = {};
	int r;

	if (!cache)
		return -ENOMEM;
	r = image_errors(image_inspect(d->image, d->image_ref, cache, &info, &ie), &ie, errors);
	if (r < 0)
		return r;
	/* The user can only be looked up in an unpacked image. */
	if (info.complete)
		rootfs = xasprintf("%s/%s/rootfs", cache, info.key);
	return image_conf(host, d, &info.run, rootfs, &conf, errors);
}

static void log_errors(struct vm_plan *p, struct schema_errors *errors);

/* The image's cache entry, locked: made here if need be, or (cached_only)
 * only if it is there and the cache free (-EAGAIN otherwise). */
static int get_image(struct vm_plan *p, bool cached_only, struct image_cached *c, struct schema_errors *errors)
{
	_cleanup_free_ char *cache = image_cache_dir(p->host);
	_cleanup_(schema_errors_clear) struct schema_errors ie = {};
	struct image_unpack_opts o = {
		.allow_setuid = p->host->image_setuid,
		.max_bytes = p->host->image_max_mib << 20,
		.cached_only = cached_only,
	};
	int r;

	if (!cache)
		return -ENOMEM;
	r = mkdir_p(p->host->state_dir, 0700);
	if (r < 0)
		return log_error_errno(r, "%s: creating %s: %m", p->def->name, p->host->state_dir);
	return image_errors(image_cache_get(cache, p->def->image, p->def->image_ref, &o, c, &ie), &ie, errors);
}

int plan_take_image(struct vm_plan *p)
{
	_cleanup_free_ struct image_cached *c = calloc(1, sizeof(*c));
	struct schema_errors errors = {};
	int r;

	if (!c)
		return -ENOMEM;
	c->lock_fd = -EBADF;
	r = get_image(p, true, c, &errors);
	log_errors(p, &errors);
	if (r < 0)
		return r;
	if (p->image_taken)
		image_cached_clear(p->image_taken);
	free(p->image_taken);
	p->image_taken = TAKE_PTR(c);
	return 0;
}

int plan_unpack_argv(const struct vm_plan *p, char ***ret)
{
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_free_ char *cache = image_cache_dir(p->host);
	char mib[32];
	int r;

	if (!cache)
		return -ENOMEM;
	snprintf(mib, sizeof(mib), "%" PRIu64, p->host->image_max_mib);
	r = strv_extend(&argv, "/proc/self/exe");
	if (r == 0)
		r = strv_extend(&argv, "image");
	if (r == 0)
		r = strv_extend(&argv, "unpack");
	if (r == 0)
		r = strv_extend(&argv, "--cache-dir");
	if (r == 0)
		r = strv_extend(&argv, cache);
	if (r == 0)
		r = strv_extend(&argv, "--max-mib");
	if (r == 0)
		r = strv_extend(&argv, mib);
	if (r == 0 && p->host->image_setuid)
		r = strv_extend(&argv, "--setuid");
	if (r == 0 && p->def->image_ref)
		r = strv_extend(&argv, "--ref");
	if (r == 0 && p->def->image_ref)
		r = strv_extend(&argv, p->def->image_ref);
	if (r == 0)
		r = strv_extend(&argv, "--");
	if (r == 0)
		r = strv_extend(&argv, p->def->image);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(argv);
	return 0;
}

/* Unpacks the image unless its cache entry is complete (or takes the one
 * plan_take_image() took), locks the entry for this boot and points the
 * vmd-image share at it. */
static int prepare_image(struct vm_plan *p, struct schema_errors *errors)
{
	const struct vm_def *d = p->def;
	_cleanup_free_ char *msg = NULL;
	_cleanup_(image_cached_clear) struct image_cached c = { .lock_fd = -EBADF };
	struct vm_share *s = &p->shares[p->n_shares - 1];
	usec_t t0 = now_usec();
	int r;

	if (p->image_taken) {
		c = *p->image_taken;
		p->image_taken = mfree(p->image_taken);
	} else {
		r = get_image(p, false, &c, errors);
		if (r < 0)
			return r;
	}
	/* Unpacked by this boot: here, or by its helper just before. */
	msg = image_cached_summary(&c, c.unpacked || p->image_unpack_usec,
				   c.unpacked ? now_usec() - t0 : p->image_unpack_usec);
	p->image_unpack_usec = 0;
	if (msg) {
		log_info("%s: %s", d->name, msg);
		if (p->log)
			vmlog_printf(p->log, "%s", msg);
		if (p->opts && p->opts->announce)
			fprintf(stderr, "%s: %s\n", d->name, msg);
	}
	p->image_conf = mfree(p->image_conf);
	r = image_conf(p->host, d, &c.run, c.rootfs, &p->image_conf, errors);
	if (r < 0)
		return r;
	free(s->source);
	s->source = TAKE_PTR(c.rootfs);
	safe_close(p->image_lock_fd);
	p->image_lock_fd = TAKE_FD(c.lock_fd);
	return 0;
}

/* The shares' host side: key directories made (keydir_prepare() is
 * idempotent) and, with join, the WireGuard peer joined; shares resolved to
 * the directories themselves. */
static int realize_shares(struct vm_plan *p, bool join, struct schema_errors *errors)
{
	const struct vm_def *d = p->def;
	struct vm_share *s = p->shares + 1;
	char field[64];
	int r;

	for (size_t i = 0; i < d->n_keys; i++, s++) {
		_cleanup_close_ int keyfd = -EBADF;
		char *dir = NULL;

		snprintf(field, sizeof(field), "keys[%zu].source", i);
		/* The default place, under keys_dir, cannot be swept (the
		 * host settings are checked for that). */
		if (d->keys[i].source) {
			r = refuse_swept(p, field, d->keys[i].source, errors);
			if (r < 0)
				return r;
		}
		r = keydir_prepare(p->host->keys_dir, d->name,
				   &(struct keydir_key){ .name = d->keys[i].name, .source = d->keys[i].source,
							 .wireguard = d->keys[i].generate == KEY_GENERATE_WIREGUARD },
				   &dir, &keyfd);
		if (r < 0) {
			schema_error(errors, field, "the key directory of %s: %s", d->keys[i].name, strerror(-r));
			return r;
		}
		free(s->source);
		s->source = dir;
		/* Its wg0.conf is written before the guest can look. */
		if (join && d->wireguard && streq(d->keys[i].name, DEF_WIREGUARD_KEY)) {
			r = hostnet_wg_join(p->opts->net, d, keyfd);
			if (r < 0)
				return r;
		}
	}
	for (size_t i = 0; i < d->n_shares; i++, s++) {
		_cleanup_free_ char *real = NULL;
		struct stat st;

		snprintf(field, sizeof(field), "shares[%zu].source", i);
		/* virtiofsd wants the directory itself, not a symlink to it. */
		real = realpath(d->shares[i].source, NULL);
		if (!real || stat(real, &st) < 0) {
			r = -errno;
			schema_error(errors, field, "%s: %s", d->shares[i].source, strerror(-r));
			return r;
		}
		if (!S_ISDIR(st.st_mode)) {
			schema_error(errors, field, "%s is not a directory", d->shares[i].source);
			return -ENOTDIR;
		}
		r = refuse_swept(p, field, real, errors);
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
		p->images[i].root_len = strlen(p->host->state_dir);
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

static void log_errors(struct vm_plan *p, struct schema_errors *errors)
{
	for (size_t i = 0; i < errors->n; i++)
		log_error("%s: %s", p->def->name, errors->lines[i]);
	schema_errors_clear(errors);
}

int plan_adopt(struct vm_plan *p)
{
	struct schema_errors errors = {};
	int r = plan_layout(p);

	if (r == 0)
		r = realize_shares(p, true, &errors);
	log_errors(p, &errors);
	return r;
}

/* A persistent volume only grows: a smaller size_mib would cut off data. */
static int check_volume(struct vm_plan *p, size_t i, struct schema_errors *errors)
{
	const struct def_disk *dk = p->images[i].disk;
	uint64_t size;
	char field[64];
	int r;

	r = disk_size(p->images[i].path, p->images[i].root_len, &size);
	if (r == -ENOENT)
		return 0;
	snprintf(field, sizeof(field), "disks[%zu].size_mib", i);
	if (r < 0) {
		schema_error(errors, field, "volume %s: %s", p->images[i].path,
			     r == -EBADFD ? "not a regular file" : strerror(-r));
		return r;
	}
	if (size > dk->size_mib * 1024 * 1024) {
		schema_error(errors, field,
			     "volume %s is %" PRIu64 " MiB; vmd never shrinks a volume (that would cut off data): "
			     "keep size_mib at %" PRIu64 " or more, or move the data off and remove the volume",
			     dk->name, size / (1024 * 1024), (size + 1024 * 1024 - 1) / (1024 * 1024));
		return -EFBIG;
	}
	return 0;
}

/* What can be known of disk i before it is made: an overlay's base is
 * there, outside what vmd empties; a volume is not asked to shrink. */
static int check_image(struct vm_plan *p, size_t i, struct schema_errors *errors)
{
	const struct def_disk *dk = p->images[i].disk;
	const char *missing;
	char field[64];
	struct stat st;
	int r;

	if (disk_check_tools(dk->base, dk->persistent, &missing) < 0) {
		snprintf(field, sizeof(field), "disks[%zu]", i);
		schema_error(errors, field, "%s, needed to make this disk, is not installed (or not in $PATH)",
			     missing);
		return -ENOENT;
	}
	if (dk->persistent)
		return check_volume(p, i, errors);
	if (!dk->base)
		return 0;
	snprintf(field, sizeof(field), "disks[%zu].base", i);
	r = refuse_swept(p, field, dk->base, errors);
	if (r < 0)
		return r;
	if (stat(dk->base, &st) < 0) {
		r = -errno;
		schema_error(errors, field, "%s: %s", dk->base, strerror(-r));
		return r;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		schema_error(errors, field, "%s is not a regular file or a block device", dk->base);
		return -EINVAL;
	}
	p->images[i].base_blockdev = S_ISBLK(st.st_mode);
	return 0;
}

static int check_images(struct vm_plan *p, struct schema_errors *errors)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < p->n_images; i++)
		r = check_image(p, i, errors);
	return r;
}

/* Before the boot, while nothing uses it: a volume grows to a larger size_mib. */
static int grow_volume(struct vm_plan *p, size_t i)
{
	const struct def_disk *dk = p->images[i].disk;
	const char *name = p->def->name, *path = p->images[i].path;
	_cleanup_free_ char *why = NULL;
	uint64_t old_mib;
	bool fs;
	int r = disk_grow(path, p->images[i].root_len, dk->size_mib, &old_mib, &fs, &why);

	if (r == 0)
		return 0;
	if (r == 1) {
		if (fs)
			log_info("%s: volume %s grew from %" PRIu64 " to %" PRIu64 " MiB, its file system with it",
				 name, dk->name, old_mib, dk->size_mib);
		else
			log_warning("%s: volume %s grew from %" PRIu64 " to %" PRIu64 " MiB; it holds no ext4 "
				    "vmd can grow, so grow its file system in the guest", name, dk->name, old_mib,
				    dk->size_mib);
		return 0;
	}
	if (r == -EMLINK)
		return log_error_errno(r, "%s: volume %s: %s has other hard links; refusing it", name, dk->name,
				       path);
	if (r == -EUCLEAN)
		return log_error_errno(r, "%s: volume %s: e2fsck found errors it may not repair alone, so it was "
				       "not grown (nothing changed); run e2fsck -f %s by hand%s%s", name, dk->name,
				       path, why ? ": " : "", why ? why : "");
	return log_error_errno(r, "%s: growing volume %s from %" PRIu64 " to %" PRIu64 " MiB failed and was "
			       "undone: %m%s%s", name, dk->name, old_mib, dk->size_mib, why ? ": " : "",
			       why ? why : "");
}

static int create_images(struct vm_plan *p, struct schema_errors *errors)
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
			r = check_image(p, i, errors);
			if (r < 0)
				return r;
			r = disk_create_overlay(p->images[i].path, p->images[i].root_len, dk->base, disk_format_names[dk->base_format],
						dk->size_mib, &why);
			if (r < 0)
				return log_error_errno(r, "%s: creating overlay disk %s on %s at %s: %m%s%s",
						       d->name, dk->name, dk->base, p->images[i].path,
						       why ? ": " : "", why ? why : "");
			continue;
		}
		if (dk->persistent) {
			r = check_volume(p, i, errors);
			if (r < 0)
				return r;
		}
		r = disk_create(p->images[i].path, p->images[i].root_len, dk->persistent ? DISK_PERSISTENT : DISK_EPHEMERAL,
				dk->size_mib, dk->name, &created, &why);
		if (r < 0)
			return log_error_errno(r, "%s: creating disk %s (%" PRIu64 " MiB) at %s: %m%s%s",
					       d->name, dk->name, dk->size_mib, p->images[i].path,
					       why ? ": " : "", why ? why : "");
		if (created && dk->persistent)
			log_info("%s: created persistent volume %s", d->name, p->images[i].path);
		else if (dk->persistent) {
			r = grow_volume(p, i);
			if (r < 0)
				return r;
		}
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

/* The closure: there, complete, inside the store. */
static int check_closure(struct vm_plan *p, struct schema_errors *errors)
{
	_cleanup_free_ char *store = def_resolve_store(p->host->store_dir);
	int r;

	p->system = mfree(p->system);
	if (!store) {
		r = -errno;
		schema_error(errors, "store_dir", "%s: %s", p->host->store_dir, strerror(-r));
		return r;
	}
	return def_check_system(p->def, p->host->image_system, store, &p->system, errors);
}

static int build_cmdline(struct vm_plan *p, struct schema_errors *errors)
{
	_cleanup_free_ char *params = NULL;
	int r = read_closure_params(p, &params);

	if (r == -EBADFD) {
		schema_error(errors, p->def->image ? "image_system" : "system", "%s/kernel-params: not a regular file", p->system);
		return r;
	}
	if (r < 0) {
		schema_error(errors, p->def->image ? "image_system" : "system", "reading %s/kernel-params: %s", p->system, strerror(-r));
		return r;
	}
	p->cmdline = mfree(p->cmdline);
	r = kernel_cmdline(p->def, p->system, params, &p->cmdline);
	if (r == -E2BIG)
		schema_error(errors, "kernel_params", "the kernel command line is longer than %d bytes",
			     KERNEL_CMDLINE_MAX);
	return r;
}

/* check: only what leaves the VM's run and disk directories, and its GC
 * root, alone; those may belong to a boot that still runs. */
static int prepare(struct vm_plan *p, bool check, struct schema_errors *errors)
{
	int r = check_closure(p, errors);

	if (r == 0 && !check)
		add_gcroot(p);
	if (r == 0)
		r = build_cmdline(p, errors);
	if (r == 0)
		r = plan_layout(p);
	if (r == 0)
		r = check ? check_images(p, errors) : create_images(p, errors);
	if (r == 0)
		r = realize_shares(p, !check, errors);
	if (r == 0 && p->def->image)
		r = check ? plan_check_image(p->host, p->def, errors) : prepare_image(p, errors);
	return r;
}

int plan_prepare(struct vm_plan *p)
{
	struct schema_errors errors = {};
	int r = prepare(p, false, &errors);

	log_errors(p, &errors);
	return r;
}

int plan_check(const struct host_config *host, const struct vm_def *def, struct schema_errors *errors)
{
	struct vm_plan p;
	int r = plan_init(&p, NULL, host, NULL, def, NULL);

	if (r == 0)
		r = prepare(&p, true, errors);
	/* Not plan_clear(): the images' paths are the running boot's. */
	plan_forget(&p);
	free_paths(&p);
	return r;
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

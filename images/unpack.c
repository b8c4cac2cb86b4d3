/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <archive.h>
#include <archive_entry.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "beneath.h"
#include "sandbox.h"
#include "unpack.h"

#define READ_CHUNK (128 * 1024)
#define WHITEOUT ".wh."
#define OPAQUE ".wh..wh..opq"

/* A layer's bytes as libarchive reads them, hashed on the way. */
struct source {
	int fd;
	off_t off;
	crypto_hash_sha256_state hash;
	unsigned char buf[READ_CHUNK];
};

/* What one pass has seen, for the limits. */
struct totals {
	uint64_t bytes, entries;
};

struct layer {
	const struct unpack_layer *in;
	size_t number; /* from 1 */
	const struct unpack_opts *opts;
	struct schema_errors *e;
};

/* A name from the archive as it can go into a one-line message. */
static char *printable(const char *s)
{
	size_t n = strnlen(s, 256);
	char *out = malloc(n * 4 + 4), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '\\')
			o += sprintf(o, "\\x%02x", c);
		else
			*o++ = (char)c;
	}
	if (s[n])
		o += sprintf(o, "...");
	*o = 0;
	return out;
}

_printf_(3, 4) static int refuse(struct layer *l, const char *path, const char *fmt, ...)
{
	_cleanup_free_ char *reason = NULL, *p = printable(path ? path : "");
	char field[128];
	va_list ap;

	va_start(ap, fmt);
	reason = xvasprintf(fmt, ap);
	va_end(ap);
	snprintf(field, sizeof(field), "layer %zu (%s)", l->number, l->in->label);
	if (path)
		schema_error(l->e, field, "%s: %s", p ? p : "?", reason ? reason : "?");
	else
		schema_error(l->e, field, "%s", reason ? reason : "?");
	return -EBADMSG;
}

static ssize_t source_read(struct archive *a, void *data, const void **buf)
{
	struct source *s = data;
	ssize_t k;

	do
		k = pread(s->fd, s->buf, sizeof(s->buf), s->off);
	while (k < 0 && errno == EINTR);
	if (k < 0) {
		if (a)
			archive_set_error(a, errno, "reading the layer: %s", strerror(errno));
		return -1;
	}
	crypto_hash_sha256_update(&s->hash, s->buf, (unsigned long long)k);
	s->off += k;
	*buf = s->buf;
	return k;
}

/* After the archive's end: the rest of the bytes into the hash, then the
 * hash against the digest. */
static int source_verify(struct layer *l, struct source *s)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	char hex[2 * crypto_hash_sha256_BYTES + 1];
	const void *buf;
	ssize_t k;

	while ((k = source_read(NULL, s, &buf)) > 0)
		;
	if (k < 0)
		return refuse(l, NULL, "reading it: %s", strerror(errno));
	if (!l->in->digest)
		return 0;
	crypto_hash_sha256_final(&s->hash, h);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	if (!streq(hex, l->in->digest + 7))
		return refuse(l, NULL, "its content does not match its digest (sha256)");
	return 0;
}

static struct archive *source_open(struct layer *l, struct source *s)
{
	struct archive *a = archive_read_new();

	if (!a)
		return NULL;
	*s = (struct source){ .fd = l->in->fd };
	crypto_hash_sha256_init(&s->hash);
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	if (archive_read_open(a, s, NULL, source_read, NULL) != ARCHIVE_OK) {
		refuse(l, NULL, "not a tar archive (or a tar+gzip or tar+zstd one): %s", archive_error_string(a));
		archive_read_free(a);
		return NULL;
	}
	return a;
}

/* The entry's path checked, into buf: any leading "./" and trailing "/"
 * taken off. Returns 0, 1 for the root itself (nothing to do), or -1
 * with *why set. */
static int clean_path(const char *p, char buf[static PATH_MAX], const char **why)
{
	size_t len;

	if (strlen(p) >= PATH_MAX) {
		*why = "a name longer than PATH_MAX (refused)";
		return -1;
	}
	while (p[0] == '.' && p[1] == '/')
		for (p += 2; *p == '/';)
			p++;
	if (p[0] == '/') {
		*why = "an absolute path (refused)";
		return -1;
	}
	for (const char *c = p; c;) {
		const char *slash = strchr(c, '/');

		len = slash ? (size_t)(slash - c) : strlen(c);
		if (len == 2 && c[0] == '.' && c[1] == '.') {
			*why = "a \"..\" component (refused)";
			return -1;
		}
		c = slash ? slash + 1 : NULL;
	}
	len = strlen(p);
	while (len > 0 && p[len - 1] == '/')
		len--;
	memcpy(buf, p, len);
	buf[len] = 0;
	return !*buf || streq(buf, ".") ? 1 : 0;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

/* Path components: removing a tree keeps an fd per level, so one deeper
 * than the fds allow could never be removed (nor its cache entry). */
static size_t depth(const char *path)
{
	size_t n = 0;

	for (const char *c = path; *c; c++)
		if (*c != '/' && (c == path || c[-1] == '/'))
			n++;
	return n;
}

/* What both passes check of every entry: path, type, link target, sizes,
 * counts. On success path holds the cleaned path, and 1 is returned for
 * the root itself. */
static int check_entry(struct layer *l, struct archive_entry *entry, struct totals *t, char path[static PATH_MAX])
{
	const char *raw = archive_entry_pathname(entry), *link, *why = NULL;
	char target[PATH_MAX];
	const struct unpack_opts *o = l->opts;
	mode_t type = archive_entry_filetype(entry);
	int64_t size = archive_entry_size(entry);
	int r;

	if (!raw)
		return refuse(l, "?", "an entry without a name (refused)");
	if (++t->entries > o->max_entries)
		return refuse(l, raw, "more than %" PRIu64 " entries in the image (refused)", o->max_entries);
	r = clean_path(raw, path, &why);
	if (r < 0)
		return refuse(l, raw, "%s", why);
	if (depth(path) > UNPACK_MAX_DEPTH)
		return refuse(l, raw, "deeper than %d directories (refused)", UNPACK_MAX_DEPTH);
	link = archive_entry_hardlink(entry);
	if (link) {
		if (clean_path(link, target, &why) != 0)
			return refuse(l, raw, "a hardlink to %s: %s", link, why ? why : "the root (refused)");
	} else if (type == AE_IFCHR || type == AE_IFBLK)
		return refuse(l, raw, "a device node (refused)");
	else if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK && type != AE_IFIFO)
		return refuse(l, raw, "an entry of a type vmd does not unpack (0%o, refused)", (unsigned)type);
	if (size < 0)
		size = 0;
	if ((uint64_t)size > o->max_bytes)
		return refuse(l, raw, "%" PRId64 " bytes, over the limit of %" PRIu64 " (refused)", size, o->max_bytes);
	t->bytes += (uint64_t)size;
	if (t->bytes > o->max_bytes)
		return refuse(l, raw, "the image is over the limit of %" PRIu64 " bytes (refused)", o->max_bytes);
	return r;
}

/* The next entry that is not the root, checked: 1, or 0 at the end. */
static int next_entry(struct layer *l, struct archive *a, struct totals *t, struct archive_entry **entry,
		      char path[static PATH_MAX])
{
	for (;;) {
		int k = archive_read_next_header(a, entry), r;

		if (k == ARCHIVE_EOF)
			return 0;
		if (k < ARCHIVE_WARN)
			return refuse(l, NULL, "%s", archive_error_string(a));
		r = check_entry(l, *entry, t, path);
		if (r != 1)
			return r < 0 ? r : 1;
	}
}

/* The directory dfd/name and all below it, no symlink followed (they are
 * removed as they are). */
static int remove_dir_at(int dfd, const char *name)
{
	_cleanup_close_ int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int r = sub < 0 ? -errno : rm_rf_children(sub);

	if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
		r = -errno;
	return r;
}

/* Removes dir/name below the current directory without following a
 * symlink anywhere: name itself, if a symlink, goes as a symlink. */
static int remove_below(struct layer *l, const char *dir, const char *name, const char *shown)
{
	_cleanup_close_ int dfd = open_beneath(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY);
	struct stat st;

	if (dfd == -ENOENT || dfd == -ENOTDIR)
		return 0; /* nothing there to hide */
	if (dfd < 0)
		return refuse(l, shown, "%s", dfd == -ELOOP ? "a whiteout through a symlink (refused)" : strerror(-dfd));
	if (!name) {
		int r = rm_rf_children(dfd);

		return r < 0 ? refuse(l, shown, "emptying the directory: %s", strerror(-r)) : 0;
	}
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : refuse(l, shown, "%s", strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		int r = remove_dir_at(dfd, name);

		return r < 0 ? refuse(l, shown, "removing: %s", strerror(-r)) : 0;
	}
	if (unlinkat(dfd, name, 0) < 0)
		return refuse(l, shown, "removing: %s", strerror(errno));
	return 0;
}

/* A whiteout entry at path (".wh.NAME" or ".wh..wh..opq" in its
 * directory), applied to what the layers below left. */
static int whiteout(struct layer *l, const char *path)
{
	const char *name = base_name(path), *victim = name + strlen(WHITEOUT);
	_cleanup_free_ char *dir = strndup(path, (size_t)(name - path));

	if (!dir)
		return -ENOMEM;
	if (streq(name, OPAQUE))
		return remove_below(l, dir, NULL, path);
	if (startswith(name, WHITEOUT WHITEOUT))
		return 0; /* aufs' own (.wh..wh.plnk): no meaning here */
	if (!*victim || streq(victim, ".") || streq(victim, ".."))
		return refuse(l, path, "a whiteout of nothing (refused)");
	return remove_below(l, dir, victim, path);
}

/* Pass 1: every entry checked, the whiteouts applied (a layer's whiteouts
 * hide what the layers below have, never its own entries), the digest
 * verified. Should it not match, what was removed is of the partial tree
 * the caller throws away. */
static int layer_scan(struct layer *l, struct totals *t)
{
	struct source *s = malloc(sizeof(*s));
	struct archive *a = s ? source_open(l, s) : NULL;
	struct archive_entry *entry;
	int r = a ? 0 : -EBADMSG;

	while (r == 0) {
		char path[PATH_MAX];

		r = next_entry(l, a, t, &entry, path);
		if (r <= 0)
			break;
		r = startswith(base_name(path), WHITEOUT) ? whiteout(l, path) : 0;
	}
	if (r == 0)
		r = source_verify(l, s);
	if (a)
		archive_read_free(a);
	free(s);
	return r;
}

/* What the tree already holds must allow the entry: no symlink on the way
 * to it; a hardlink's target a regular file, reached through no symlink.
 * A symlink at the entry's own name is replaced, never followed. A
 * directory there goes whole when the entry is not one (of a lower layer
 * or of this one): what docker and containerd do, and how an overlay2
 * diff says "rm -rf /app && ln -s /data /app" (the symlink alone). */
static int check_against_tree(struct layer *l, struct archive_entry *entry, const char *path)
{
	const char *link = archive_entry_hardlink(entry), *why;
	char target[PATH_MAX];
	_cleanup_free_ char *parent = strndup(path, (size_t)(base_name(path) - path));
	_cleanup_close_ int pfd = -EBADF;
	struct stat st;

	if (!parent)
		return -ENOMEM;
	pfd = open_beneath(AT_FDCWD, parent, O_PATH | O_DIRECTORY);
	if (pfd == -ELOOP || pfd == -EXDEV)
		return refuse(l, path, "a write through a symlink (refused)");
	if (pfd >= 0 && fstatat(pfd, base_name(path), &st, AT_SYMLINK_NOFOLLOW) == 0) {
		int r = 0;

		if (S_ISLNK(st.st_mode) && unlinkat(pfd, base_name(path), 0) < 0)
			return refuse(l, path, "replacing a symlink: %s", strerror(errno));
		if (S_ISDIR(st.st_mode) && (link || archive_entry_filetype(entry) != AE_IFDIR))
			r = remove_dir_at(pfd, base_name(path));
		if (r < 0)
			return refuse(l, path, "replacing a directory: %s", strerror(-r));
	}
	if (link) {
		_cleanup_close_ int fd = -EBADF;

		if (clean_path(link, target, &why) != 0)
			return refuse(l, path, "a hardlink out of the tree (refused)");
		fd = open_beneath(AT_FDCWD, target, O_PATH);
		if (fd == -ELOOP || fd == -EXDEV)
			return refuse(l, path, "a hardlink to a symlink or through one (refused)");
		if (fd < 0)
			return refuse(l, path, "a hardlink to %s, which is not a file extracted before (refused)", target);
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
			return refuse(l, path, "a hardlink to %s, which is not a regular file (refused)", target);
		archive_entry_set_hardlink(entry, target);
	}
	return 0;
}

static int copy_data(struct layer *l, struct archive *a, struct archive *disk, const char *path)
{
	for (;;) {
		const void *buf;
		size_t size;
		la_int64_t off;
		int k = archive_read_data_block(a, &buf, &size, &off);

		if (k == ARCHIVE_EOF)
			return 0;
		if (k < ARCHIVE_WARN)
			return refuse(l, path, "%s", archive_error_string(a));
		if (archive_write_data_block(disk, buf, size, off) < ARCHIVE_WARN)
			return refuse(l, path, "%s", archive_error_string(disk));
	}
}

static int extract_entry(struct layer *l, struct archive *a, struct archive *disk, struct archive_entry *entry,
			 const char *clean)
{
	mode_t mode = archive_entry_mode(entry);
	int r;

	r = check_against_tree(l, entry, clean);
	if (r < 0)
		return r;
	archive_entry_set_pathname(entry, clean);
	if (!l->opts->allow_setuid)
		archive_entry_set_mode(entry, mode & ~(mode_t)(S_ISUID | S_ISGID));
	if (archive_write_header(disk, entry) < ARCHIVE_WARN)
		return refuse(l, clean, "%s", archive_error_string(disk));
	if (archive_entry_size(entry) > 0) {
		r = copy_data(l, a, disk, clean);
		if (r < 0)
			return r;
	}
	if (archive_write_finish_entry(disk) < ARCHIVE_WARN)
		return refuse(l, clean, "%s", archive_error_string(disk));
	return 0;
}

/* Pass 2: the entries written, checked again (the bytes are read again,
 * and hashed again: a blob changed since pass 1 fails at the end). */
static int layer_extract(struct layer *l, struct totals *t)
{
	struct source *s = malloc(sizeof(*s));
	struct archive *a = s ? source_open(l, s) : NULL, *disk = archive_write_disk_new();
	struct archive_entry *entry;
	int r = a && disk ? 0 : -EBADMSG;

	if (disk)
		archive_write_disk_set_options(disk, ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
						     ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_OWNER |
						     ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME);
	while (r == 0) {
		char path[PATH_MAX];

		r = next_entry(l, a, t, &entry, path);
		if (r <= 0)
			break;
		/* Whiteouts were applied before this pass. */
		r = startswith(base_name(path), WHITEOUT) ? 0 : extract_entry(l, a, disk, entry, path);
	}
	/* Directories' modes and times are set here, last. */
	if (disk && archive_write_close(disk) < ARCHIVE_WARN && r == 0)
		r = refuse(l, NULL, "%s", archive_error_string(disk));
	if (r == 0)
		r = source_verify(l, s);
	if (disk)
		archive_write_free(disk);
	if (a)
		archive_read_free(a);
	free(s);
	return r;
}

static int apply_layers(const struct unpack_layer *layers, size_t n, const struct unpack_opts *opts,
			uint64_t *ret_bytes, struct schema_errors *e)
{
	struct totals scanned = {}, written = {};
	int r = 0;

	for (size_t i = 0; r == 0 && i < n; i++) {
		struct layer l = { .in = &layers[i], .number = i + 1, .opts = opts, .e = e };

		r = layer_scan(&l, &scanned);
		if (r == 0)
			r = layer_extract(&l, &written);
	}
	*ret_bytes = written.bytes;
	return r;
}

static int cmp_int(const void *a, const void *b)
{
	return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

/* Closes every fd of a forked child but stdio and keep[] (sorted here):
 * it inherits all its parent's, O_CLOEXEC or not, as it does not exec. */
static void close_range_from(unsigned from, unsigned last)
{
	if (from <= last && syscall(SYS_close_range, from, last, 0) < 0)
		for (unsigned fd = from; fd <= last && fd < 65536; fd++)
			close((int)fd);
}

static void close_others(int *keep, size_t n)
{
	unsigned from = 3;

	qsort(keep, n, sizeof(*keep), cmp_int);
	for (size_t i = 0; i < n; i++) {
		if (keep[i] < 0 || (unsigned)keep[i] < from)
			continue; /* stdio, or kept already */
		if ((unsigned)keep[i] > from)
			close_range_from(from, (unsigned)keep[i] - 1);
		from = (unsigned)keep[i] + 1;
	}
	close_range_from(from, ~0U);
}

/* The child: chrooted into the tree, applies the layers, reports on the
 * pipe: "bytes N" or error lines. */
_noreturn_ static void child(pid_t parent, int rootfd, int out, const struct unpack_layer *layers, size_t n,
			     const struct unpack_opts *opts)
{
	const struct sock_fprog *filter = NULL;
	struct schema_errors e = {};
	uint64_t bytes = 0;
	FILE *f = fdopen(out, "w");
	int r;

	if (!f)
		_exit(2);
	/* It holds the cache's lock (an inherited fd) and writes into the
	 * partial entry: it must not outlive whoever waits for it (a daemon's
	 * unpack helper that was killed by a stop). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(2);
	/* Only the tree, the pipe and the layers: not the cache's directory,
	 * other entries' locks, the caller's sockets. */
	{
		int *keep = calloc(n + 2, sizeof(int));

		if (!keep)
			_exit(2);
		keep[0] = rootfd;
		keep[1] = out;
		for (size_t i = 0; i < n; i++)
			keep[2 + i] = layers[i].fd;
		close_others(keep, n + 2);
		free(keep);
	}
	/* vmd run blocks SIGINT and SIGTERM (it reads them from a signalfd):
	 * inherited, they would hold this child through a ^C. */
	{
		static const int stops[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE };
		sigset_t none;

		for (size_t i = 0; i < ELEMENTSOF(stops); i++)
			signal(stops[i], SIG_DFL);
		sigemptyset(&none);
		if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
			_exit(2);
	}
	if (fchdir(rootfd) < 0) {
		fprintf(f, "unpacking: entering the tree: %s\n", strerror(errno));
		_exit(1);
	}
	/* Defence in depth: root can chroot, and must; others rely on the
	 * checks. */
	if (chroot(".") < 0 && (errno != EPERM || geteuid() == 0)) {
		fprintf(f, "unpacking: chroot: %s\n", strerror(errno));
		_exit(1);
	}
	/* Like every child of vmd, a seccomp filter: the tools' (no mount,
	 * namespace, chroot, ptrace ...), from here on. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    sandbox_filter(SANDBOX_TOOL, &filter) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, filter) < 0) {
		fprintf(f, "unpacking: the seccomp filter: %s\n", strerror(errno));
		_exit(1);
	}
	r = apply_layers(layers, n, opts, &bytes, &e);
	for (size_t i = 0; i < e.n; i++)
		fprintf(f, "%s\n", e.lines[i]);
	if (r == 0)
		fprintf(f, "bytes %" PRIu64 "\n", bytes);
	else if (e.n == 0)
		fprintf(f, "unpacking: %s\n", strerror(-r));
	if (fclose(f) != 0)
		_exit(2);
	_exit(r == 0 ? 0 : 1);
}

int unpack_layers(int rootfd, const struct unpack_layer *layers, size_t n, const struct unpack_opts *opts_in,
		  uint64_t *ret_bytes, struct schema_errors *e)
{
	struct unpack_opts opts = *opts_in;
	_cleanup_free_ char *text = NULL;
	size_t len = 0, cap = 0;
	bool ok = false;
	int p[2], status;
	pid_t pid, parent;

	if (!opts.max_bytes)
		opts.max_bytes = UNPACK_DEFAULT_MAX_BYTES;
	if (!opts.max_entries)
		opts.max_entries = UNPACK_MAX_ENTRIES;
	if (sodium_init() < 0)
		return -EIO;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	parent = getpid();
	pid = fork();
	if (pid < 0) {
		safe_close(p[0]);
		safe_close(p[1]);
		return -errno;
	}
	if (pid == 0) {
		safe_close(p[0]);
		child(parent, rootfd, p[1], layers, n, &opts);
	}
	safe_close(p[1]);
	for (;;) {
		ssize_t k;

		if (cap - len < 4096) {
			char *t = cap < (1 << 20) ? realloc(text, cap + 65536) : NULL;

			if (!t)
				break; /* the rest is not read: the child is killed below if it waits */
			text = t;
			cap += 65536;
		}
		k = read(p[0], text + len, cap - len - 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	safe_close(p[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (text)
		text[len] = 0;
	for (char *line = text, *nl; line && *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = 0;
		if (startswith(line, "bytes ")) {
			*ret_bytes = strtoull(line + 6, NULL, 10);
			ok = true;
		} else
			schema_error_file(e, "%s", line);
	}
	if (WIFSIGNALED(status)) {
		schema_error_file(e, "unpacking: the unpacker died (%s)", strsignal(WTERMSIG(status)));
		return -EIO;
	}
	if (WEXITSTATUS(status) != 0 || !ok) {
		if (!e->n)
			schema_error_file(e, "unpacking: failed (status %d)", WEXITSTATUS(status));
		return -EBADMSG;
	}
	return 0;
}

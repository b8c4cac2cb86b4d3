/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <seccomp.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "beneath.h"
#include "def.h"
#include "disk.h"
#include "gcroot.h"
#include "schema.h"
#include "test.h"
#include "vmlog.h"

TEST(log_bounded)
{
	_cleanup_free_ char *dir = tmpdir();
	_cleanup_free_ char *path = xasprintf("%s/vm.log", dir), *old = xasprintf("%s/vm.log.1", dir);
	struct vmlog log = { .fd = -1 };
	char chunk[4096];
	struct stat st;

	memset(chunk, 'c', sizeof(chunk));
	ASSERT(vmlog_open(&log, path, 65536) == 0);
	/* A flooding guest: 1 MiB through a 64 KiB bound. */
	for (int i = 0; i < 256; i++)
		ASSERT(vmlog_write(&log, chunk, sizeof(chunk)) == 0);
	ASSERT(stat(path, &st) == 0);
	ASSERT(st.st_size <= 65536 + 4096);
	ASSERT(stat(old, &st) == 0);
	ASSERT(st.st_size <= 65536 + 4096);
	vmlog_printf(&log, "marker %d", 42);
	vmlog_close(&log);
	_cleanup_free_ char *tail = vmlog_tail(path, 1, 0);
	ASSERT(tail && strstr(tail, "marker 42"));
	rm_tree(dir);
}

TEST(disks)
{
	_cleanup_free_ char *dir = tmpdir();
	_cleanup_free_ char *eph = xasprintf("%s/scratch.img", dir), *per = xasprintf("%s/db.img", dir);
	struct stat st, st2;
	bool created;
	char *why = NULL;

	ASSERT(disk_create(eph, DISK_EPHEMERAL, 64, "scratch", &created, &why) == 0);
	ASSERT(created);
	ASSERT(stat(eph, &st) == 0);
	ASSERT_EQ(st.st_size, 64 * 1024 * 1024);
	/* Sparse: far less allocated than its size. */
	ASSERT(st.st_blocks * 512 < 8 * 1024 * 1024);
	/* An ephemeral disk is replaced by a fresh one. */
	ASSERT(disk_create(eph, DISK_EPHEMERAL, 64, "scratch", &created, &why) == 0);
	ASSERT(stat(eph, &st2) == 0);
	ASSERT(st.st_ino != st2.st_ino);

	/* A persistent volume is created once, then kept as it is. */
	ASSERT(disk_create(per, DISK_PERSISTENT, 64, "db", &created, &why) == 0);
	ASSERT(created);
	ASSERT(stat(per, &st) == 0);
	ASSERT(disk_create(per, DISK_PERSISTENT, 128, "db", &created, &why) == 0);
	ASSERT(!created);
	ASSERT(stat(per, &st2) == 0);
	ASSERT(st.st_ino == st2.st_ino && st2.st_size == 64 * 1024 * 1024);

	ASSERT(disk_remove(eph) == 0);
	ASSERT(stat(eph, &st) < 0);
	/* disk_remove refuses what is not a regular file. */
	ASSERT(symlink(per, eph) == 0);
	ASSERT(disk_remove(eph) == -EPERM);
	/* What QEMU gets: the volume itself, never a symlink or a hard link. */
	{
		int fd = disk_open(per, strlen(dir));

		ASSERT(fd >= 0);
		ASSERT((fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == O_RDWR);
		safe_close(fd);
		ASSERT_EQ(disk_open(eph, strlen(dir)), -ELOOP);
		ASSERT(unlink(eph) == 0);
		ASSERT(link(per, eph) == 0);
		ASSERT_EQ(disk_open(per, strlen(dir)), -EMLINK);
		ASSERT(unlink(eph) == 0 && mkdir(eph, 0700) == 0);
		ASSERT_EQ(disk_open(eph, strlen(dir)), -EBADFD);
		ASSERT(rmdir(eph) == 0);
	}
	/* Nothing else (no temporary files) was left in the directory. */
	ASSERT(unlink(per) == 0);
	ASSERT(rmdir(dir) == 0);
}

TEST(read_file_limits)
{
	_cleanup_free_ char *dir = tmpdir(), *path = xasprintf("%s/f", dir);
	char *buf = NULL;
	size_t n;
	FILE *f = fopen(path, "w");

	ASSERT(f);
	for (int i = 0; i < 5000; i++)
		fputc('x', f);
	fclose(f);
	ASSERT(read_file(path, 5000, &buf, &n) == 0);
	ASSERT_EQ(n, 5000);
	ASSERT_EQ(buf[5000], 0);
	free(buf);
	ASSERT(read_file(path, 4999, &buf, &n) == -EFBIG);
	ASSERT(read_file(path, 4096, &buf, &n) == -EFBIG);
	ASSERT(read_file(path, 1 << 20, &buf, &n) == 0);
	free(buf);
	unlink(path);
	rmdir(dir);
}

/* A FIFO, a device or a directory in place of a file must not block
 * (alarm: a blocking open would hang the test) and is refused; a link to a
 * regular file is followed. */
TEST(read_file_regular_only)
{
	_cleanup_free_ char *dir = tmpdir(), *fifo = xasprintf("%s/x.json", dir),
			       *link = xasprintf("%s/link.json", dir), *file = xasprintf("%s/f", dir);
	struct schema_errors errors = {};
	struct vm_def *def = NULL;
	char *buf = NULL;
	size_t n;

	ASSERT(mkfifo(fifo, 0600) == 0);
	ASSERT(write_file(file, "{}", 0600, 0) == 0);
	ASSERT(symlink(file, link) == 0);
	alarm(10);
	ASSERT(read_file(fifo, 4096, &buf, &n) == -EBADFD);
	ASSERT(read_file(dir, 4096, &buf, &n) == -EBADFD);
	ASSERT(read_file("/dev/zero", 4096, &buf, &n) == -EBADFD);
	ASSERT(read_file(link, 4096, &buf, &n) == 0);
	ASSERT_STREQ(buf, "{}");
	free(buf);
	ASSERT(def_load_file(fifo, &def, &errors) == -EINVAL);
	ASSERT_EQ(errors.n, 1);
	ASSERT_STREQ(errors.lines[0], "not a regular file");
	schema_errors_clear(&errors);
	alarm(0);
	unlink(link);
	unlink(file);
	unlink(fifo);
	rmdir(dir);
}

TEST(path_checks)
{
	ASSERT(!check_abs_path("/nix/store/abc-system"));
	ASSERT(!check_abs_path("/"));
	ASSERT(check_abs_path("relative"));
	ASSERT(check_abs_path("/a//b"));
	ASSERT(check_abs_path("/a/./b"));
	ASSERT(check_abs_path("/a/.."));
	ASSERT(!check_abs_path("/a/..b"));
	ASSERT(!check_abs_path("/a/.hidden"));
	ASSERT(check_abs_path("/a/b/"));
	ASSERT(check_abs_path("/a\tb"));
	ASSERT(check_abs_path("/a,b"));
	ASSERT(check_abs_path("/a:b"));
	ASSERT(check_guest_path("/"));
	ASSERT(check_guest_path("/nix/store"));
	ASSERT(check_guest_path("/nix"));
	ASSERT(!check_guest_path("/nixos"));
	ASSERT(check_guest_path("/dev/x"));
	ASSERT(!check_guest_path("/devices"));
	ASSERT(!check_guest_path("/run/secrets"));
	ASSERT(!check_name("a"));
	ASSERT(!check_name("0-edge"));
	ASSERT(check_name("-a"));
	ASSERT(check_name("a_b"));
	ASSERT(check_name("A"));
}

/* Both ways of opening below a directory: no symlink anywhere, no way out. */
TEST(open_beneath)
{
	_cleanup_free_ char *dir = tmpdir(), *out = tmpdir();
	int (*const ways[])(int, const char *, int) = { open_beneath, open_beneath_walk };

	_cleanup_close_ int d = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC), o = open(out, O_PATH | O_DIRECTORY | O_CLOEXEC);

	ASSERT(d >= 0 && o >= 0);
	ASSERT(mkdirat(d, "a", 0700) == 0 && mkdirat(d, "a/b", 0700) == 0);
	ASSERT(write_file_at(d, "a/b/f", "x", 1, 0600, 0) == 0);
	ASSERT(write_file_at(o, "secret", "s", 1, 0600, 0) == 0);
	ASSERT(symlinkat(out, d, "a/out") == 0);
	ASSERT(symlinkat("b", d, "a/inside") == 0);
	ASSERT(symlinkat("b/f", d, "a/flink") == 0);

	for (size_t i = 0; i < ELEMENTSOF(ways); i++) {
		_cleanup_close_ int root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		int fd;

		fd = ways[i](root, "a/b/f", O_RDONLY);
		ASSERT(fd >= 0);
		ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		safe_close(fd);
		fd = ways[i](root, "./a//b/", O_RDONLY | O_DIRECTORY);
		ASSERT(fd >= 0);
		safe_close(fd);
		fd = ways[i](root, "", O_RDONLY | O_DIRECTORY);
		ASSERT(fd >= 0);
		safe_close(fd);
		/* A symlink as the last component, on the way, or inside only. */
		ASSERT_EQ(ways[i](root, "a/flink", O_RDONLY), -ELOOP);
		ASSERT_EQ(ways[i](root, "a/out/secret", O_RDONLY), -ELOOP);
		ASSERT_EQ(ways[i](root, "a/out", O_RDONLY | O_DIRECTORY), -ELOOP);
		ASSERT_EQ(ways[i](root, "a/inside/f", O_RDONLY), -ELOOP);
		/* Out by "..", or by an absolute path. */
		ASSERT_EQ(ways[i](root, "../x", O_RDONLY), -EXDEV);
		ASSERT_EQ(ways[i](root, out, O_RDONLY | O_DIRECTORY), -EXDEV);
		ASSERT_EQ(ways[i](root, "a/missing", O_RDONLY), -ENOENT);
		ASSERT_EQ(ways[i](root, "a/b/f", O_RDONLY | O_DIRECTORY), -ENOTDIR);
		ASSERT_EQ(ways[i](root, "a/new", O_RDWR | O_CREAT), -EINVAL);
	}
	/* The root itself may be reached through a symlink: it is the host's. */
	_cleanup_free_ char *alias = xasprintf("%s/alias", out), *f = xasprintf("%s/a/b/f", alias),
			    *secret = xasprintf("%s/a/out/secret", alias);
	ASSERT(symlink(dir, alias) == 0);
	int fd = open_below(f, strlen(alias), O_RDONLY);
	ASSERT(fd >= 0);
	safe_close(fd);
	ASSERT_EQ(open_below(secret, strlen(alias), O_RDONLY), -ELOOP);
	/* From "/": no symlink in any component. */
	ASSERT_EQ(open_below(f, 0, O_RDONLY), -ELOOP);
	rm_tree(dir);
	rm_tree(out);
}

TEST(rm_rf_keeps_symlink_targets)
{
	_cleanup_free_ char *dir = tmpdir(), *keep = tmpdir();
	_cleanup_free_ char *link = xasprintf("%s/link", dir), *sub = xasprintf("%s/sub/deeper", dir);
	_cleanup_free_ char *precious = xasprintf("%s/precious", keep);
	int fd;

	ASSERT(mkdir_p(sub, 0700) == 0);
	fd = open(precious, O_WRONLY | O_CREAT, 0600);
	ASSERT(fd >= 0);
	close(fd);
	ASSERT(symlink(keep, link) == 0);
	rm_tree(dir);
	ASSERT(access(precious, F_OK) == 0);
	rm_tree(keep);
}

static char *link_target(const char *path)
{
	char buf[4096];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);

	if (n < 0)
		return NULL;
	buf[n] = 0;
	return strdup(buf);
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	ASSERT(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* The registration is the only entry of the registry; returns its path. */
static char *only_registration(const char *reg)
{
	DIR *d = opendir(reg);
	struct dirent *de;
	char *found = NULL;

	ASSERT(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			ASSERT(!found);
			ASSERT(strncmp(de->d_name, "vmd-", 4) == 0 && strlen(de->d_name) == 36);
			found = xasprintf("%s/%s", reg, de->d_name);
		}
	closedir(d);
	return found;
}

TEST(gcroots)
{
	_cleanup_free_ char *top = tmpdir();
	_cleanup_free_ char *reg = xasprintf("%s/auto", top), *roots = xasprintf("%s/roots", top);
	_cleanup_free_ char *link = xasprintf("%s/run-system", top), *missing = xasprintf("%s/none", top);
	_cleanup_free_ char *a = xasprintf("%s/roots/a", top), *b = xasprintf("%s/roots/b", top);
	_cleanup_free_ char *keep = xasprintf("%s/roots/not-a-root", top);
	char *r1, *t;
	char *names[] = { "a", "b" }, *targets[] = { "/nix/store/aaa-sys", "/nix/store/bbb-sys" };
	int fd;

	ASSERT(mkdir(reg, 0755) == 0);
	/* No registry (no Nix on this host): nothing is made. */
	ASSERT_EQ(gcroot_add(missing, link, "/nix/store/aaa-sys"), -ENOENT);
	ASSERT(access(link, F_OK) < 0);
	ASSERT_EQ(gcroot_sync_dir(missing, roots, names, targets, 2), -ENOENT);
	ASSERT(access(roots, F_OK) < 0);

	/* One link, one registration pointing at it; a second add replaces
	 * the target and keeps the one registration. */
	ASSERT_EQ(gcroot_add(reg, link, "/nix/store/aaa-sys"), 0);
	ASSERT_STREQ(t = link_target(link), "/nix/store/aaa-sys");
	free(t);
	r1 = only_registration(reg);
	ASSERT_STREQ(t = link_target(r1), link);
	free(t);
	ASSERT_EQ(gcroot_add(reg, link, "/nix/store/ccc-sys"), 0);
	ASSERT_STREQ(t = link_target(link), "/nix/store/ccc-sys");
	free(t);
	free(only_registration(reg));
	ASSERT_EQ(gcroot_remove(reg, link), 0);
	ASSERT(access(r1, F_OK) < 0 && errno == ENOENT);
	ASSERT_EQ(count_entries(reg), 0);
	/* Already gone is fine. */
	ASSERT_EQ(gcroot_remove(reg, link), 0);
	/* A file where the link would go is not vmd's: left alone. */
	fd = open(link, O_WRONLY | O_CREAT, 0600);
	ASSERT(fd >= 0);
	close(fd);
	ASSERT_EQ(gcroot_add(reg, link, "/nix/store/aaa-sys"), -EEXIST);
	ASSERT_EQ(gcroot_remove(reg, link), -EEXIST);
	ASSERT(access(link, F_OK) == 0);
	unlink(link);

	/* A directory of roots follows the set it is given. */
	ASSERT_EQ(gcroot_sync_dir(reg, roots, names, targets, 2), 0);
	ASSERT_STREQ(t = link_target(a), "/nix/store/aaa-sys");
	free(t);
	ASSERT_STREQ(t = link_target(b), "/nix/store/bbb-sys");
	free(t);
	ASSERT_EQ(count_entries(reg), 2);
	fd = open(keep, O_WRONLY | O_CREAT, 0600);
	ASSERT(fd >= 0);
	close(fd);
	ASSERT_EQ(gcroot_sync_dir(reg, roots, names + 1, targets + 1, 1), 0);
	ASSERT(access(a, F_OK) < 0 && errno == ENOENT);
	ASSERT_STREQ(t = link_target(b), "/nix/store/bbb-sys");
	free(t);
	ASSERT_EQ(count_entries(reg), 1);
	ASSERT(access(keep, F_OK) == 0);
	ASSERT_EQ(gcroot_sync_dir(reg, roots, NULL, NULL, 0), 0);
	ASSERT_EQ(count_entries(reg), 0);
	ASSERT_EQ(count_entries(roots), 1);
	free(r1);
	rm_tree(top);
}

/* Every name in dir but "." and "..", dot files too, sorted and joined
 * with spaces: a temporary left behind shows up here. */
static void assert_listing(const char *dir, const char *expected)
{
	_cleanup_free_ char *s = NULL;
	struct dirent **de;
	int n = scandir(dir, &de, NULL, alphasort);
	char **names = NULL;

	ASSERT(n >= 0);
	for (int i = 0; i < n; i++) {
		if (!streq(de[i]->d_name, ".") && !streq(de[i]->d_name, ".."))
			ASSERT(strv_extend(&names, de[i]->d_name) == 0);
		free(de[i]);
	}
	free(de);
	s = names ? strv_join(names, " ") : strdup("");
	strv_free(names);
	ASSERT_STREQ(s, expected);
}

static void assert_file(const char *path, const char *text, mode_t mode)
{
	_cleanup_free_ char *buf = NULL;
	struct stat st;

	ASSERT(lstat(path, &st) == 0);
	ASSERT(S_ISREG(st.st_mode));
	ASSERT_EQ(st.st_mode & 07777, mode);
	ASSERT(read_file(path, 4096, &buf, NULL) == 0);
	ASSERT_STREQ(buf, text);
}

/* The cases that do not depend on how the temporary is made; run with
 * O_TMPFILE and without. */
static void write_file_cases(void)
{
	_cleanup_free_ char *dir = tmpdir(), *keep = tmpdir();
	_cleanup_free_ char *f = xasprintf("%s/f", dir), *g = xasprintf("%s/g", dir), *link = xasprintf("%s/link", dir);
	_cleanup_free_ char *dangling = xasprintf("%s/dangling", dir), *sub = xasprintf("%s/sub", dir);
	_cleanup_free_ char *target = xasprintf("%s/target", keep), *absent = xasprintf("%s/absent", keep);
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	mode_t old_umask = umask(077);
	struct stat st, st2;

	ASSERT(dfd >= 0);
	/* The mode as given, not as the umask leaves it. */
	ASSERT_EQ(write_file(f, "one\n", 0644, 0), 0);
	assert_file(f, "one\n", 0644);
	ASSERT(stat(f, &st) == 0);
	/* Replaced by a new file (a reader holding the old one keeps it
	 * whole), with the new mode. */
	ASSERT_EQ(write_file(f, "two, longer\n", 0600, WRITE_FILE_SYNC), 0);
	assert_file(f, "two, longer\n", 0600);
	ASSERT(stat(f, &st2) == 0);
	ASSERT(st.st_ino != st2.st_ino);
	ASSERT_EQ(write_file_at(dfd, "f", "3", 1, 0640, 0), 0);
	assert_file(f, "3", 0640);
	assert_listing(dir, "f");

	/* NOREPLACE: the file there wins, untouched; a new one is made. */
	ASSERT_EQ(write_file(f, "four\n", 0600, WRITE_FILE_NOREPLACE), -EEXIST);
	assert_file(f, "3", 0640);
	ASSERT_EQ(write_file_at(dfd, "g", "", 0, 0604, WRITE_FILE_NOREPLACE | WRITE_FILE_SYNC), 0);
	assert_file(g, "", 0604);
	ASSERT_EQ(write_file_at(dfd, "g", "x", 1, 0600, WRITE_FILE_NOREPLACE), -EEXIST);
	assert_listing(dir, "f g");

	/* A symlink at the name is never followed: replacing replaces the
	 * link; NOREPLACE counts it as there, dangling or not. */
	ASSERT_EQ(write_file(target, "precious\n", 0600, 0), 0);
	ASSERT(symlink(target, link) == 0);
	ASSERT(symlink(absent, dangling) == 0);
	ASSERT_EQ(write_file(link, "evil\n", 0644, WRITE_FILE_NOREPLACE), -EEXIST);
	ASSERT_EQ(write_file(dangling, "evil\n", 0644, WRITE_FILE_NOREPLACE), -EEXIST);
	ASSERT(access(absent, F_OK) < 0 && errno == ENOENT);
	ASSERT_EQ(write_file(link, "mine\n", 0644, 0), 0);
	assert_file(link, "mine\n", 0644);
	assert_file(target, "precious\n", 0600);
	assert_listing(keep, "target");

	/* Failing to put the file in place (a directory holds the name)
	 * leaves no temporary either. */
	ASSERT(mkdir(sub, 0755) == 0);
	ASSERT(write_file(sub, "x", 0644, 0) < 0);
	ASSERT_EQ(write_file(sub, "x", 0644, WRITE_FILE_NOREPLACE), -EEXIST);
	assert_listing(dir, "dangling f g link sub");
	ASSERT_EQ(write_file_at(dfd, "sub/", "x", 1, 0644, 0), -EINVAL);
	ASSERT_EQ(write_file_at(dfd, "sub/..", "x", 1, 0644, 0), -EINVAL);
	ASSERT_EQ(write_file_at(dfd, "", "x", 1, 0644, 0), -EINVAL);
	/* A relative name with a directory in it, from dirfd. */
	ASSERT_EQ(write_file_at(dfd, "sub/h", "h", 1, 0600, 0), 0);
	assert_listing(sub, "h");
	ASSERT_EQ(write_file_at(dfd, "none/h", "h", 1, 0600, 0), -ENOENT);

	umask(old_umask);
	rm_tree(dir);
	rm_tree(keep);
}

TEST(write_file)
{
	write_file_cases();
}

/* Where the file system has no O_TMPFILE (NFS, older overlayfs): the same
 * promises through a named temporary. A seccomp filter in a child refuses
 * O_TMPFILE the way such a file system does. */
TEST(write_file_without_o_tmpfile)
{
	pid_t pid = fork();
	int status;

	ASSERT(pid >= 0);
	if (pid == 0) {
		scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
		const unsigned long tmpfile_bit = O_TMPFILE & ~O_DIRECTORY;

		ASSERT(ctx);
		ASSERT(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EOPNOTSUPP), SCMP_SYS(openat), 1,
					SCMP_A2(SCMP_CMP_MASKED_EQ, tmpfile_bit, tmpfile_bit)) == 0);
		ASSERT(seccomp_load(ctx) == 0);
		seccomp_release(ctx);
		ASSERT(openat(AT_FDCWD, "/tmp", O_TMPFILE | O_WRONLY, 0600) < 0 && errno == EOPNOTSUPP);
		write_file_cases();
		_exit(0);
	}
	ASSERT(waitpid(pid, &status, 0) == pid);
	ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Writers in several processes at once: every read sees one whole file,
 * and their temporaries never meet. */
TEST(write_file_concurrent)
{
	_cleanup_free_ char *dir = tmpdir(), *f = xasprintf("%s/f", dir);
	char text[3][2048];
	pid_t pids[2];
	int status;

	for (int i = 0; i < 3; i++) {
		memset(text[i], 'a' + i, sizeof(text[i]) - 1);
		text[i][sizeof(text[i]) - 1] = 0;
	}
	ASSERT_EQ(write_file(f, text[2], 0644, 0), 0);
	for (int w = 0; w < 2; w++) {
		pids[w] = fork();
		ASSERT(pids[w] >= 0);
		if (pids[w] == 0) {
			for (int i = 0; i < 300; i++)
				if (write_file(f, text[w], 0644, 0) < 0)
					_exit(1);
			_exit(0);
		}
	}
	for (int i = 0; i < 300; i++) {
		_cleanup_free_ char *buf = NULL;

		ASSERT(read_file(f, 4096, &buf, NULL) == 0);
		ASSERT(streq(buf, text[0]) || streq(buf, text[1]) || streq(buf, text[2]));
	}
	for (int w = 0; w < 2; w++) {
		ASSERT(waitpid(pids[w], &status, 0) == pids[w]);
		ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_listing(dir, "f");
	rm_tree(dir);
}

RUN_TESTS(T(log_bounded), T(disks), T(read_file_limits), T(read_file_regular_only), T(path_checks), T(open_beneath),
	  T(rm_rf_keeps_symlink_targets), T(gcroots), T(write_file), T(write_file_without_o_tmpfile), T(write_file_concurrent))

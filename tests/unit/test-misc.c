/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

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
	ASSERT(unlink(eph) == 0);
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

RUN_TESTS(T(log_bounded), T(disks), T(read_file_limits), T(path_checks), T(rm_rf_keeps_symlink_targets),
	  T(gcroots))

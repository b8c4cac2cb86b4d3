/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "child.h"
#include "spawn.h"
#include "test.h"

static int run(char **argv, enum sandbox_profile p, const struct spawn_fd *fds, size_t n, char **out)
{
	return child_run(argv, p, fds, n, 10 * USEC_PER_SEC, 65536, out);
}

TEST(exit_status)
{
	char *t[] = { "/bin/sh", "-c", "exit 7", NULL };
	char *k[] = { "/bin/sh", "-c", "kill -9 $$", NULL };

	ASSERT_EQ(run(t, SANDBOX_TOOL, NULL, 0, NULL), 7);
	ASSERT_EQ(run(k, SANDBOX_TOOL, NULL, 0, NULL), 128 + SIGKILL);
}

TEST(exec_errors)
{
	char *missing[] = { "/nonexistent/binary", NULL };
	char tmpl[] = "/tmp/vmd-noexec-XXXXXX";
	int tfd = mkstemp(tmpl);
	char *notexec[] = { tmpl, NULL };
	char *relative[] = { "sh", NULL };
	pid_t pid;
	int pidfd;
	struct spawn_opts o = { .argv = missing, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1 };

	/* The exec error comes back from spawn() itself. */
	ASSERT_EQ(spawn(&o, &pid, &pidfd), -ENOENT);
	/* Not a binary nor a script. */
	ASSERT(tfd >= 0 && write(tfd, "garbage\n", 8) == 8 && fchmod(tfd, 0755) == 0);
	close(tfd);
	o.argv = notexec;
	ASSERT_EQ(spawn(&o, &pid, &pidfd), -ENOEXEC);
	unlink(tmpl);
	o.argv = relative;
	ASSERT_EQ(spawn(&o, &pid, &pidfd), -EINVAL);
}

TEST(fds_and_environment)
{
	_cleanup_free_ char *out = NULL;
	int p[2], leak;
	char buf[64] = {};
	char *argv[] = { "/bin/sh", "-c", "echo hi >&5; ls /proc/self/fd | tr '\\n' ' '; env", NULL };

	ASSERT(pipe2(p, O_CLOEXEC) == 0);
	/* An fd without O_CLOEXEC must still not reach the child. */
	leak = open("/dev/null", O_RDONLY);
	ASSERT(leak >= 0);
	struct spawn_fd fds[] = { { p[1], 5 } };
	ASSERT_EQ(run(argv, SANDBOX_TOOL, fds, 1, &out), 0);
	close(p[1]);
	ASSERT(read(p[0], buf, sizeof(buf) - 1) == 3);
	ASSERT_STREQ(buf, "hi\n");
	close(p[0]);
	close(leak);
	/* 0, 1, 2, 5 and ls's own directory fd: nothing else. */
	ASSERT(strstr(out, "0 1 2 3 5 ") == out);
	ASSERT(strstr(out, "PATH=/usr/local/sbin"));
	ASSERT(!strstr(out, "HOME="));
}

static char *probe(enum sandbox_profile p, const char *call)
{
	char *argv[] = { SYS_PROBE, (char *)call, NULL };
	char *out = NULL;

	run(argv, p, NULL, 0, &out);
	return out;
}

TEST(seccomp_profiles)
{
	static const char *const always_blocked[] = { "reboot", "kexec_load", "init_module", "bpf", "ptrace", "keyctl" };
	static const enum sandbox_profile all[] = { SANDBOX_QEMU, SANDBOX_VIRTIOFSD, SANDBOX_VIRTIOFSD_FH, SANDBOX_TOOL,
						    SANDBOX_UNPACK };
	char *plain[] = { SYS_PROBE, "reboot", "mount", "getpid", NULL };
	_cleanup_free_ char *out = NULL;
	pid_t pid;

	for (size_t p = 0; p < ELEMENTSOF(all); p++) {
		for (size_t i = 0; i < ELEMENTSOF(always_blocked); i++) {
			_cleanup_free_ char *o = probe(all[p], always_blocked[i]);
			_cleanup_free_ char *want = xasprintf("%s=EPERM\n", always_blocked[i]);

			ASSERT_STREQ(o, want);
		}
		_cleanup_free_ char *g = probe(all[p], "getpid");
		ASSERT_STREQ(g, "getpid=ok\n");
	}

	/* Mount and namespaces: virtiofsd builds its sandbox with them,
	 * QEMU and tools may not. */
	_cleanup_free_ char *q = probe(SANDBOX_QEMU, "unshare");
	_cleanup_free_ char *v = probe(SANDBOX_VIRTIOFSD, "unshare");
	ASSERT_STREQ(q, "unshare=EPERM\n");
	ASSERT_STREQ(v, "unshare=ok\n");
	_cleanup_free_ char *qm = probe(SANDBOX_QEMU, "mount");
	_cleanup_free_ char *vm = probe(SANDBOX_VIRTIOFSD, "mount");
	ASSERT_STREQ(qm, "mount=EPERM\n");
	ASSERT_STREQ(vm, "mount=other\n");
	/* The unpacker may chroot (into its tree), but mount nothing. */
	_cleanup_free_ char *tc = probe(SANDBOX_TOOL, "chroot");
	_cleanup_free_ char *uc = probe(SANDBOX_UNPACK, "chroot");
	_cleanup_free_ char *um = probe(SANDBOX_UNPACK, "mount");
	_cleanup_free_ char *un = probe(SANDBOX_UNPACK, "clone-newns");
	ASSERT_STREQ(tc, "chroot=EPERM\n");
	ASSERT_STREQ(uc, "chroot=other\n");
	ASSERT_STREQ(um, "mount=EPERM\n");
	ASSERT_STREQ(un, "clone-newns=EPERM\n");
	/* Namespaces through clone() too; clone3() falls back to clone(). */
	_cleanup_free_ char *c1 = probe(SANDBOX_QEMU, "clone-newns");
	_cleanup_free_ char *c2 = probe(SANDBOX_VIRTIOFSD, "clone-newns");
	_cleanup_free_ char *c3 = probe(SANDBOX_TOOL, "clone3");
	ASSERT_STREQ(c1, "clone-newns=EPERM\n");
	ASSERT_STREQ(c2, "clone-newns=ok\n");
	ASSERT_STREQ(c3, "clone3=ENOSYS\n");
	/* File handles only for virtiofsd that asked for them. */
	_cleanup_free_ char *h1 = probe(SANDBOX_VIRTIOFSD, "open_by_handle_at");
	_cleanup_free_ char *h2 = probe(SANDBOX_VIRTIOFSD_FH, "open_by_handle_at");
	ASSERT_STREQ(h1, "open_by_handle_at=EPERM\n");
	ASSERT_STREQ(h2, "open_by_handle_at=other\n");

	/* Without any filter the probe sees real errors, so EPERM above
	 * really comes from the filter. */
	{
		int p[2];
		char buf[256] = {};
		ssize_t n;

		ASSERT(pipe2(p, O_CLOEXEC) == 0);
		pid = fork();
		ASSERT(pid >= 0);
		if (pid == 0) {
			dup2(p[1], 1);
			execv(SYS_PROBE, plain);
			_exit(127);
		}
		close(p[1]);
		size_t len = 0;
		while ((n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0)
			len += (size_t)n;
		ASSERT(len > 0);
		waitpid(pid, NULL, 0);
		close(p[0]);
		ASSERT_STREQ(buf, "reboot=other\nmount=other\ngetpid=ok\n");
	}

	/* The i386 entry point kills the process instead of bypassing the
	 * filter (where the kernel has IA32 emulation at all). */
	{
		char *i386[] = { SYS_PROBE, "i386", NULL };
		struct spawn_opts o = { .argv = i386, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
					.profile = SANDBOX_QEMU };
		struct stat st;

		struct child c = { .pidfd = -EBADF };

		ASSERT(child_start(&c, &o) == 0);
		int status = child_wait(&c, 10 * USEC_PER_SEC);
		if (stat("/proc/sys/abi/vsyscall32", &st) == 0 || status != 0)
			ASSERT_EQ(status, 128 + SIGSYS);
	}
	(void)out;
}

TEST(dir)
{
	char tmpl[] = "/tmp/vmd-ro-XXXXXX";
	char *dir = mkdtemp(tmpl);
	_cleanup_free_ char *file = xasprintf("%s/x", dir), *moved = xasprintf("%s.moved", dir),
			    *at = xasprintf("%s.at", dir), *cmd = xasprintf("echo a > %s/x", at);
	char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	struct spawn_dir d = { .fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), .at = at, .read_only = true };
	struct spawn_opts o = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
				.profile = SANDBOX_VIRTIOFSD, .dir = &d };
	struct stat st;
	struct child c = { .pidfd = -EBADF };

	ASSERT(dir);
	ASSERT(d.fd >= 0);
	ASSERT(mkdir(at, 0700) == 0);
	ASSERT(child_start(&c, &o) == 0);
	ASSERT(child_wait(&c, 10 * USEC_PER_SEC) != 0);
	ASSERT(stat(file, &st) < 0 && errno == ENOENT);
	/* The mount was private to the child: the host still writes, and the
	 * child writes where the fd is, wherever the path now leads. */
	ASSERT(rename(dir, moved) == 0);
	ASSERT(symlink("/nonexistent", dir) == 0);
	d.read_only = false;
	ASSERT(child_start(&c, &o) == 0);
	ASSERT_EQ(child_wait(&c, 10 * USEC_PER_SEC), 0);
	free(file);
	file = xasprintf("%s/x", moved);
	ASSERT(stat(file, &st) == 0);
	ASSERT(stat(at, &st) == 0 && st.st_nlink == 2);
	safe_close(d.fd);
	unlink(file);
	unlink(dir);
	rmdir(moved);
	rmdir(at);
}

/* A private root with only the listed paths, an empty network namespace
 * (only lo: two header lines and one), and an unprivileged user with no
 * capabilities left, not even in the bounding set. */
TEST(user_and_root)
{
	static const char *const root[] = { "/usr", "/lib", "/lib64", "/proc", "/dev/null", "/nonexistent", NULL };
	static const gid_t groups[] = { 4243 };
	const struct spawn_user user = { .uid = 4242, .gid = 4242, .groups = groups, .n_groups = 1 };
	char *argv[] = { "/usr/bin/sh", "-c",
			 "ls /; ls /dev; id -u; id -g; id -G; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; "
			 "echo x > /usr/x || echo read-only; cat /proc/self/net/dev | wc -l",
			 NULL };
	char buf[4096] = "";
	size_t n = 0;
	ssize_t k;
	int p[2];
	struct child c = { .pidfd = -EBADF };

	ASSERT(pipe2(p, O_CLOEXEC) == 0);
	struct spawn_opts o = { .argv = argv, .stdin_fd = -1, .stdout_fd = p[1], .stderr_fd = -1,
				.profile = SANDBOX_QEMU, .root_paths = root, .no_network = true, .user = &user };
	ASSERT(child_start(&c, &o) == 0);
	close(p[1]);
	while ((k = read(p[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)k;
	close(p[0]);
	ASSERT_EQ(child_wait(&c, 10 * USEC_PER_SEC), 0);
	ASSERT_STREQ(buf, "dev\nlib\nlib64\nproc\nusr\nnull\n4242\n4242\n4242 4243\n"
			  "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
			  "CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nread-only\n3\n");

	/* Root is refused, not run as. */
	const struct spawn_user root_user = { .uid = 0 };
	o = (struct spawn_opts){ .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
				 .profile = SANDBOX_QEMU, .user = &root_user };
	ASSERT(child_start(&c, &o) == -EPERM);
}

TEST(die_with_parent)
{
	int p[2];
	pid_t middle, child = 0;

	ASSERT(pipe(p) == 0);
	middle = fork();
	ASSERT(middle >= 0);
	if (middle == 0) {
		char *argv[] = { "/bin/sleep", "100", NULL };
		struct spawn_opts o = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
					.profile = SANDBOX_TOOL, .die_with_parent = true };
		pid_t pid;
		int pidfd;

		if (spawn(&o, &pid, &pidfd) < 0)
			_exit(1);
		(void)!write(p[1], &pid, sizeof(pid));
		_exit(0);
	}
	close(p[1]);
	ASSERT(read(p[0], &child, sizeof(child)) == sizeof(child));
	close(p[0]);
	waitpid(middle, NULL, 0);
	/* The grandchild was reparented and must die promptly. */
	for (int i = 0; i < 200 && kill(child, 0) == 0; i++) {
		char path[64], state = 0;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)child);
		f = fopen(path, "r");
		if (f) {
			if (fscanf(f, "%*d %*s %c", &state) != 1)
				state = 0;
			fclose(f);
		}
		if (state == 'Z')
			break;
		usleep(10000);
	}
	char path[64], state = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)child);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%*d %*s %c", &state) != 1)
			state = 0;
		fclose(f);
	}
	ASSERT(!f || state == 'Z');
}

TEST(timeout_kills)
{
	char *argv[] = { "/bin/sleep", "100", NULL };

	ASSERT_EQ(child_run(argv, SANDBOX_TOOL, NULL, 0, 200 * USEC_PER_MSEC, 100, NULL), -ETIMEDOUT);
}

RUN_TESTS(T(exit_status), T(exec_errors), T(fds_and_environment), T(seccomp_profiles), T(dir),
	  T(user_and_root), T(die_with_parent), T(timeout_kills))

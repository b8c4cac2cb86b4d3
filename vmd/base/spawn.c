/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/seccomp.h>

#include "log.h"
#include "spawn.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

enum child_stage {
	STAGE_FDS = 1,
	STAGE_SIGNALS,
	STAGE_SESSION,
	STAGE_RLIMIT,
	STAGE_CHDIR,
	STAGE_MOUNT,
	STAGE_PDEATHSIG,
	STAGE_SECCOMP,
	STAGE_EXEC,
};

static const char *const stage_names[] = {
	[STAGE_FDS] = "setting up file descriptors",
	[STAGE_SIGNALS] = "resetting signals",
	[STAGE_SESSION] = "creating a session",
	[STAGE_RLIMIT] = "setting RLIMIT_NOFILE",
	[STAGE_CHDIR] = "entering the shared directory",
	[STAGE_MOUNT] = "mounting the shared directory",
	[STAGE_PDEATHSIG] = "setting the parent-death signal",
	[STAGE_SECCOMP] = "installing the seccomp filter",
	[STAGE_EXEC] = "executing",
};

struct child_error {
	int stage;
	int error;
};

_noreturn_ static void child_fail(int errfd, int stage)
{
	struct child_error e = { stage, errno };

	(void)!write(errfd, &e, sizeof(e));
	_exit(127);
}

/* The last steps before exec, shared by a forked child and spawn_exec():
 * limits, the read-only path, the parent-death signal, no new privileges
 * and the seccomp filter. Async-signal-safe; returns the failed stage
 * (errno set) or 0. */
static int confine(const struct spawn_opts *o, const struct sock_fprog *filter, pid_t parent)
{
	if (o->nofile > 0) {
		struct rlimit rl = { o->nofile, o->nofile };

		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			/* Without CAP_SYS_RESOURCE: as high as the hard limit. */
			if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
				return STAGE_RLIMIT;
			rl.rlim_cur = rl.rlim_max;
			if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
				return STAGE_RLIMIT;
		}
	}

	if (o->dir) {
		struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };
		int tree, r;

		/* The working directory (o->dir, entered before: the fd's
		 * mount is not in the new namespace) moves into the new
		 * namespace with it, so it can be cloned there. */
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			return STAGE_MOUNT;
		tree = (int)syscall(SYS_open_tree, AT_FDCWD, ".", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
		if (tree < 0)
			return STAGE_MOUNT;
		/* Recursive where the kernel can (5.12+), else the top mount. */
		r = o->dir->read_only ? (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
						     sizeof(attr))
				      : 0;
		if (syscall(SYS_move_mount, tree, "", AT_FDCWD, o->dir->at, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
			close(tree);
			return STAGE_MOUNT;
		}
		close(tree);
		if (r < 0 && mount(NULL, o->dir->at, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
			return STAGE_MOUNT;
		if (chdir("/") < 0)
			return STAGE_MOUNT;
	}

	if (o->die_with_parent) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			return STAGE_PDEATHSIG;
		/* The parent may have died before prctl(). */
		if (getppid() != parent) {
			errno = ESRCH;
			return STAGE_PDEATHSIG;
		}
	}

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter) < 0)
		return STAGE_SECCOMP;
	return 0;
}

/* Runs between fork() and exec(): async-signal-safe calls only. */
_noreturn_ static void child(const struct spawn_opts *o, const struct sock_fprog *filter, int errfd,
			     int devnull, pid_t parent)
{
	static const char *const default_env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	int stdio[3] = { o->stdin_fd, o->stdout_fd, o->stderr_fd };
	int high = 3, moved[3 + 64];
	sigset_t all;

	if (o->n_fds > 64)
		child_fail(errfd, STAGE_FDS);
	/* Before the fds move: o->dir->fd may be one a dup2() replaces. */
	if (o->dir && fchdir(o->dir->fd) < 0)
		child_fail(errfd, STAGE_CHDIR);

	/* Leave the session first: from here on a Ctrl-C at vmd's terminal
	 * cannot reach this child, whatever happens to the signal mask. */
	if (setsid() < 0)
		child_fail(errfd, STAGE_SESSION);

	/* Move the error pipe and every source fd above all target numbers
	 * first, so a dup2() below cannot overwrite one that is still needed. */
	for (size_t i = 0; i < o->n_fds; i++)
		if (o->fds[i].child_fd >= high)
			high = o->fds[i].child_fd + 1;
	{
		int e = fcntl(errfd, F_DUPFD_CLOEXEC, high);

		if (e < 0)
			child_fail(errfd, STAGE_FDS);
		errfd = e;
		high = errfd + 1;
	}
	for (int i = 0; i < 3; i++) {
		moved[i] = fcntl(stdio[i] >= 0 ? stdio[i] : devnull, F_DUPFD_CLOEXEC, high);
		if (moved[i] < 0)
			child_fail(errfd, STAGE_FDS);
	}
	for (size_t i = 0; i < o->n_fds; i++) {
		moved[3 + i] = fcntl(o->fds[i].fd, F_DUPFD_CLOEXEC, high);
		if (moved[3 + i] < 0)
			child_fail(errfd, STAGE_FDS);
	}
	for (int i = 0; i < 3; i++)
		if (dup2(moved[i], i) < 0)
			child_fail(errfd, STAGE_FDS);
	for (size_t i = 0; i < o->n_fds; i++)
		if (dup2(moved[3 + i], o->fds[i].child_fd) < 0)
			child_fail(errfd, STAGE_FDS);
	/* Everything else closes at exec, including errfd, which is how the
	 * parent learns that exec succeeded. */
	for (int fd = 3; fd < high; fd++) {
		bool keep = false;

		for (size_t i = 0; i < o->n_fds; i++)
			keep = keep || o->fds[i].child_fd == fd;
		if (!keep && fd != errfd)
			close(fd);
	}
	if (syscall(SYS_close_range, (unsigned)high, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		for (int fd = high; fd < 65536; fd++)
			if (fd != errfd)
				fcntl(fd, F_SETFD, FD_CLOEXEC);

	for (int sig = 1; sig < _NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&all);
	if (sigprocmask(SIG_SETMASK, &all, NULL) < 0)
		child_fail(errfd, STAGE_SIGNALS);

	{
		int stage = confine(o, filter, parent);

		if (stage)
			child_fail(errfd, stage);
	}

	execve(o->argv[0], o->argv, o->envp ? o->envp : (char *const *)default_env);
	child_fail(errfd, STAGE_EXEC);
}

int spawn_exec(const struct spawn_opts *o)
{
	const struct sock_fprog *filter;
	int r, stage;

	r = sandbox_filter(o->profile, &filter);
	if (r < 0)
		return r;
	stage = o->dir && fchdir(o->dir->fd) < 0 ? STAGE_CHDIR : confine(o, filter, getppid());
	if (stage == 0) {
		execve(o->argv[0], o->argv, o->envp ? o->envp : environ);
		stage = STAGE_EXEC;
	}
	r = -errno;
	log_error_errno(r, "%s: %s: %m", o->argv[0], stage_names[stage]);
	return r;
}

int spawn(const struct spawn_opts *o, pid_t *ret_pid, int *ret_pidfd)
{
	const struct sock_fprog *filter;
	_cleanup_close_ int devnull = -EBADF, pidfd = -EBADF;
	int pipefd[2], r;
	struct child_error e = {};
	pid_t parent = getpid(), pid;
	ssize_t n;

	if (!o->argv || !o->argv[0] || o->argv[0][0] != '/')
		return -EINVAL;
	r = sandbox_filter(o->profile, &filter);
	if (r < 0)
		return r;
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0)
		return -errno;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;

	pid = fork();
	if (pid < 0) {
		r = -errno;
		safe_close(pipefd[0]);
		safe_close(pipefd[1]);
		return r;
	}
	if (pid == 0) {
		close(pipefd[0]);
		child(o, filter, pipefd[1], devnull, parent);
	}
	safe_close(pipefd[1]);

	/* pidfd_open() on our own unreaped child cannot race with pid reuse. */
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		r = -errno;

	do
		n = read(pipefd[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	if (n < 0 && pidfd >= 0) {
		r = -errno;
		pidfd = safe_close(pidfd);
	}
	safe_close(pipefd[0]);

	if (n == sizeof(e) || pidfd < 0) {
		/* The child failed before or at exec, or we cannot supervise it:
		 * it is still unreaped, so kill() by pid cannot hit another
		 * process. */
		int status;

		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (n == sizeof(e)) {
			log_debug("spawn %s: %s: %s", o->argv[0],
				  e.stage > 0 && e.stage <= STAGE_EXEC ? stage_names[e.stage] : "?",
				  strerror(e.error));
			return e.error > 0 ? -e.error : -EIO;
		}
		return r;
	}

	*ret_pid = pid;
	*ret_pidfd = TAKE_FD(pidfd);
	return 0;
}

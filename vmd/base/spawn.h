/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one way vmd starts a child process.
 *
 * In the child, before exec: the listed fds are moved to their numbers and
 * every other fd is closed on exec; signal dispositions and the mask are
 * reset; the child gets its own session (so a Ctrl-C at the terminal reaches
 * vmd, which then shuts down in order); limits are set; optionally one path
 * is mounted in a private mount namespace, or the child gets a
 * private root holding only the listed paths; optionally it becomes an
 * unprivileged user; and the seccomp filter of the chosen profile is
 * installed last. Exec failures come back to the
 * parent through a close-on-exec pipe, so spawn() itself reports "No such
 * file or directory" instead of a child that dies silently. */

#include <sys/resource.h>
#include <sys/types.h>

#include "sandbox.h"

/* QEMU's: its channels, a tap's queues and their vhost-net fds, a
 * virtiofsd connection per share, its disks. */
#define SPAWN_FDS_MAX 256

struct spawn_fd {
	int fd;       /* in the parent */
	int child_fd; /* its number in the child (>= 3) */
};

/* Who the child runs as: not root, with no capabilities at all (permitted,
 * effective, inheritable, ambient and the bounding set emptied) and only
 * these supplementary groups. */
struct spawn_user {
	uid_t uid; /* not 0 */
	gid_t gid;
	const gid_t *groups;
	size_t n_groups;
};

/* A directory handed to the child by fd rather than by a path of the
 * host's, which could be swapped for a symlink before the child resolves
 * it. Both virtiofsd daemons take only a path, and resolve it again inside
 * their own sandbox (/proc/self/fd/N is no help: the C one refuses a
 * symlink, and both have replaced /proc by then; "." is none either: the C
 * one does chdir("/") first). So the child gets a private mount namespace
 * in which a clone of the directory is mounted at `at`, an empty directory
 * vmd made where only it writes (the VM's run directory), and is told
 * `at`. */
struct spawn_dir {
	int fd; /* in the parent (spawn_exec: in this process) */
	const char *at;
	bool read_only; /* the mount is read-only, whatever the child's options */
};

struct spawn_opts {
	char *const *argv; /* argv[0]: an absolute path */
	char *const *envp; /* NULL: PATH only */
	const struct spawn_fd *fds;
	size_t n_fds;
	int stdin_fd, stdout_fd, stderr_fd; /* < 0: /dev/null */
	enum sandbox_profile profile;
	/* SIGKILL the child when vmd dies (throwaway runs); daemon children
	 * must outlive a daemon restart and leave this off. */
	bool die_with_parent;
	rlim_t nofile; /* 0: inherit */
	/* If set, mounted in the child's own mount namespace (above). */
	const struct spawn_dir *dir;
	/* If set, the child's root is a fresh read-only tmpfs in a private
	 * mount namespace holding only these host paths (NULL-terminated,
	 * absolute), each bound read-only (symlinks followed; missing ones
	 * skipped). Character devices among them stay usable, everything else
	 * is nosuid and nodev. */
	const char *const *root_paths;
	/* New, empty network and IPC namespaces: the child reaches no socket,
	 * no host address, no abstract unix socket and no System V IPC
	 * object but what its fds give it. */
	bool no_network;
	/* If set, drop to this user after the mounts, before exec. */
	const struct spawn_user *user;
};

/* Starts the child. On success returns 0 with its pid and a pidfd
 * (O_CLOEXEC). On failure nothing is left running. */
int spawn(const struct spawn_opts *o, pid_t *ret_pid, int *ret_pidfd);

/* The same confinement for this process, then exec (the fds and signals
 * stay as they are; envp NULL: this process's environment). Only returns
 * on failure, logged. For a wrapper that another program starts, such as
 * the virtiofsd that libvirt runs. */
int spawn_exec(const struct spawn_opts *o);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "sandbox.h"

/* Never needed by QEMU, virtiofsd, mkfs or the unpacker. */
static const char *const blocked_common[] = {
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"reboot", "swapon", "swapoff", "acct", "iopl", "ioperm",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"syslog", "uselib", "lookup_dcookie", "perf_event_open", "bpf", "userfaultfd",
	"quotactl", "vhangup", "keyctl", "add_key", "request_key",
	"ptrace", "process_vm_readv", "process_vm_writev", "fanotify_init",
	"sethostname", "setdomainname",
	/* The new mount API, but for what virtiofsd needs (below). */
	"fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
};

/* virtiofsd builds its sandbox with these (recent Rust ones clone their
 * shared directory with open_tree() and move_mount()); nobody else may. */
static const char *const blocked_mount[] = {
	"mount", "umount2", "pivot_root", "unshare", "setns", "open_tree", "move_mount",
};

/* The unpacker confines its writer to the tree it fills with chroot(). */
static const char *const blocked_chroot[] = {
	"chroot",
};

/* The "shocker" escape needs these; only virtiofsd with file handles uses them. */
static const char *const blocked_handles[] = {
	"name_to_handle_at", "open_by_handle_at",
};

static struct sock_fprog filters[_SANDBOX_MAX];
static const char **names[_SANDBOX_MAX];
static size_t n_names[_SANDBOX_MAX];

static int add_names(enum sandbox_profile p, const char *const *list, size_t n)
{
	const char **m = realloc(names[p], (n_names[p] + n) * sizeof(char *));

	if (!m)
		return -ENOMEM;
	memcpy(m + n_names[p], list, n * sizeof(char *));
	names[p] = m;
	n_names[p] += n;
	return 0;
}

static int collect(enum sandbox_profile p)
{
	int r;

	if (names[p])
		return 0;
	r = add_names(p, blocked_common, ELEMENTSOF(blocked_common));
	if (r == 0 && p != SANDBOX_VIRTIOFSD && p != SANDBOX_VIRTIOFSD_FH)
		r = add_names(p, blocked_mount, ELEMENTSOF(blocked_mount));
	if (r == 0 && p != SANDBOX_VIRTIOFSD && p != SANDBOX_VIRTIOFSD_FH && p != SANDBOX_UNPACK)
		r = add_names(p, blocked_chroot, ELEMENTSOF(blocked_chroot));
	if (r == 0 && p != SANDBOX_VIRTIOFSD_FH)
		r = add_names(p, blocked_handles, ELEMENTSOF(blocked_handles));
	return r;
}

const char *const *sandbox_blocked(enum sandbox_profile profile, size_t *n)
{
	if (profile >= _SANDBOX_MAX || collect(profile) < 0)
		return NULL;
	*n = n_names[profile];
	return names[profile];
}

static void seccomp_releasep(scmp_filter_ctx *ctx)
{
	if (*ctx)
		seccomp_release(*ctx);
	*ctx = NULL;
}

static int build(enum sandbox_profile p, struct sock_fprog *out)
{
	_cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ void *buf = NULL;
	struct stat st;
	int r;

	r = collect(p);
	if (r < 0)
		return r;
	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return -ENOMEM;
	/* Foreign architectures are not added: their syscalls hit the default
	 * bad-arch action, which kills the process. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (r < 0)
		return r;
	/* unshare() and setns() alone do not stop a process from entering new
	 * namespaces: clone() takes the same flags, one rule per flag. clone3()
	 * hides its flags in memory a filter cannot read, so it answers ENOSYS
	 * and libc falls back to clone(), which is checked. */
	if (p != SANDBOX_VIRTIOFSD && p != SANDBOX_VIRTIOFSD_FH) {
		static const uint64_t ns_flags[] = { CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
						     CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP };

		for (size_t i = 0; i < ELEMENTSOF(ns_flags); i++) {
			r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
					     SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
			if (r < 0)
				return r;
		}
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < n_names[p]; i++) {
		int nr = seccomp_syscall_resolve_name(names[p][i]);

		/* An old libseccomp may not know a new syscall: skip it rather
		 * than refuse to start anything. */
		if (nr == __NR_SCMP_ERROR)
			continue;
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
		if (r < 0)
			return r;
	}
	/* libseccomp 2.5 can only export to an fd. */
	fd = memfd_create("vmd-seccomp", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = seccomp_export_bpf(ctx, fd);
	if (r < 0)
		return r;
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0)
		return -EIO;
	buf = malloc((size_t)st.st_size);
	if (!buf)
		return -ENOMEM;
	if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size)
		return -EIO;
	out->filter = TAKE_PTR(buf);
	out->len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
	return 0;
}

int sandbox_filter(enum sandbox_profile profile, const struct sock_fprog **ret)
{
	int r;

	if (profile >= _SANDBOX_MAX)
		return -EINVAL;
	if (!filters[profile].filter) {
		r = build(profile, &filters[profile]);
		if (r < 0)
			return r;
	}
	*ret = &filters[profile];
	return 0;
}

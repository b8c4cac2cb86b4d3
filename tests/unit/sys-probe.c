/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Calls syscalls with harmless arguments and prints what each returned, so
 * tests can see which ones a seccomp profile refuses. "i386" makes a 32-bit
 * int 0x80 call, which a filter must kill rather than let through. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Under ASan, LeakSanitizer needs ptrace, which the filters refuse. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "detect_leaks=0";
}

static long call(const char *name)
{
	if (!strcmp(name, "reboot"))
		return syscall(SYS_reboot, 0, 0, 0, NULL); /* bad magic: EINVAL */
	if (!strcmp(name, "kexec_load"))
		return syscall(SYS_kexec_load, 0, 1000, NULL, 0xdead0000);
	if (!strcmp(name, "init_module"))
		return syscall(SYS_init_module, NULL, 0, "");
	if (!strcmp(name, "bpf"))
		return syscall(SYS_bpf, -1, NULL, 0);
	if (!strcmp(name, "ptrace"))
		return syscall(SYS_ptrace, 0xdead, 0, 0, 0);
	if (!strcmp(name, "mount"))
		return syscall(SYS_mount, NULL, NULL, NULL, 0, NULL);
	if (!strcmp(name, "unshare"))
		return syscall(SYS_unshare, 0);
	if (!strcmp(name, "chroot"))
		return syscall(SYS_chroot, ""); /* ENOENT */
	if (!strcmp(name, "open_by_handle_at"))
		return syscall(SYS_open_by_handle_at, -1, NULL, 0);
	if (!strcmp(name, "keyctl"))
		return syscall(SYS_keyctl, -1, 0, 0, 0, 0);
	if (!strcmp(name, "clone-newns")) {
		/* A raw clone into a new mount namespace; the child exits at once. */
		long pid = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, NULL, NULL, 0);
		if (pid == 0)
			_exit(0);
		if (pid > 0)
			waitpid((pid_t)pid, NULL, 0);
		return pid;
	}
	if (!strcmp(name, "clone3"))
		return syscall(SYS_clone3, NULL, 0);
	if (!strcmp(name, "getpid"))
		return syscall(SYS_getpid);
	if (!strcmp(name, "i386")) {
		long ret;
		/* getpid through the 32-bit entry point. */
		__asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
		return ret < 0 ? (errno = (int)-ret, -1) : ret;
	}
	errno = ENOSYS;
	return -1;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		long r;

		errno = 0;
		r = call(argv[i]);
		printf("%s=%s\n", argv[i],
		       r < 0 ? (errno == EPERM ? "EPERM" : errno == ENOSYS ? "ENOSYS" : "other") : "ok");
		fflush(stdout);
	}
	return 0;
}

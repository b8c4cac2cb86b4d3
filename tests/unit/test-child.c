/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Process identity and the supervised child: spawned and adopted
 * processes, their exit on the loop, and the synchronous teardown. */
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "child.h"
#include "test.h"

struct seen {
	int calls;
	bool had_si;
	siginfo_t si;
	/* What the callback saw of the child: forgotten already? */
	bool running;
	int pidfd;
	pid_t pid;
	bool src;
	/* If set, the callback starts the child again with these. */
	struct loop *respawn_loop;
	const struct spawn_opts *respawn;
};

static void on_exit_cb(struct child *c, const siginfo_t *si, void *userdata)
{
	struct seen *s = userdata;

	s->calls++;
	s->had_si = si;
	if (si)
		s->si = *si;
	s->running = c->running;
	s->pidfd = c->pidfd;
	s->pid = c->pid;
	s->src = c->src;
	if (s->respawn) {
		const struct spawn_opts *o = s->respawn;

		s->respawn = NULL;
		ASSERT(child_spawn(c, s->respawn_loop, o, on_exit_cb, s) == 0);
	}
}

/* Pumps the loop until the callback ran n times (10 s at most). */
static void pump_until(struct loop *l, const struct seen *s, int n)
{
	usec_t end = now_usec() + 10 * USEC_PER_SEC;

	while (s->calls < n && now_usec() < end)
		ASSERT(loop_iterate(l, 10 * USEC_PER_MSEC) >= 0);
	ASSERT_EQ(s->calls, n);
}

static void pump(struct loop *l, usec_t duration)
{
	usec_t end = now_usec() + duration;

	while (now_usec() < end)
		ASSERT(loop_iterate(l, 10 * USEC_PER_MSEC) >= 0);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	ASSERT(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* 'R', 'S', 'Z'...; 0 if there is no such process. */
static char proc_state(pid_t pid)
{
	char path[64], state = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%*d %*s %c", &state) != 1)
		state = 0;
	fclose(f);
	return state;
}

static struct spawn_opts sh(char **argv)
{
	return (struct spawn_opts){ .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
				    .profile = SANDBOX_TOOL, .die_with_parent = true };
}

/* A new loop, and c started on it (named after its program). */
static pid_t start(struct loop **l, struct child *c, const struct spawn_opts *o, struct seen *s)
{
	ASSERT(loop_new(l) == 0);
	ASSERT(child_init(c, o->argv[0]) == 0);
	ASSERT(child_spawn(c, *l, o, on_exit_cb, s) == 0);
	ASSERT(c->running && c->pid > 0 && c->pidfd >= 0 && c->src);
	return c->pid;
}

/* A process that is not our child (its parent exits; it is reparented),
 * as a hub or a QEMU a previous daemon left. Runs until killed. */
static pid_t orphan(void)
{
	int p[2];
	pid_t middle, pid = 0;

	ASSERT(pipe2(p, O_CLOEXEC) == 0);
	middle = fork();
	ASSERT(middle >= 0);
	if (middle == 0) {
		pid_t g = fork();

		if (g == 0) {
			close(p[1]);
			for (;;)
				pause();
		}
		(void)!write(p[1], &g, sizeof(g));
		_exit(0);
	}
	close(p[1]);
	ASSERT(read(p[0], &pid, sizeof(pid)) == sizeof(pid));
	close(p[0]);
	ASSERT(waitpid(middle, NULL, 0) == middle);
	ASSERT(pid > 0);
	return pid;
}

TEST(proc_identity)
{
	struct proc_id me, other;
	int fd;

	ASSERT(proc_id_get(getpid(), &me) == 0);
	ASSERT_EQ(me.pid, getpid());
	ASSERT(me.start_time > 0);
	ASSERT(proc_id_open(&me, &fd) == 0);
	close(fd);
	/* The same pid with another start time is another process. */
	other = me;
	other.start_time++;
	ASSERT(proc_id_open(&other, &fd) == -ESRCH);
	other.pid = 1;
	ASSERT(proc_id_open(&other, &fd) == -ESRCH);
	other.pid = 0x3ffffff0;
	ASSERT(proc_id_get(other.pid, &other) == -ESRCH);
}

TEST(init_and_done)
{
	struct child c;

	ASSERT(child_init(&c, "QEMU") == 0);
	ASSERT_STREQ(c.what, "QEMU");
	ASSERT_EQ(c.pidfd, -EBADF);
	ASSERT(!c.running && c.pid == 0 && !c.src);
	/* Nothing runs: these do nothing. */
	child_signal(&c, SIGKILL);
	child_kill_wait(&c, SIGTERM, USEC_PER_SEC);
	ASSERT(child_identity(&c, &(struct proc_id){}) == -ESRCH);
	child_done(&c);
	ASSERT(!c.what);
	child_done(&c);
	ASSERT(child_init(&c, NULL) == 0);
	ASSERT(!c.what);
	child_done(&c);
}

TEST(exit_status)
{
	char *three[] = { "/bin/sh", "-c", "exit 3", NULL };
	char *killed[] = { "/bin/sh", "-c", "kill -9 $$", NULL };
	struct spawn_opts o = sh(three), k = sh(killed);
	struct seen s = {};
	struct loop *l;
	struct child c;
	int fds = count_fds();

	start(&l, &c, &o, &s);
	/* A second start of a running child is refused. */
	ASSERT_EQ(child_spawn(&c, l, &o, on_exit_cb, &s), -EBUSY);
	pump_until(l, &s, 1);
	/* The callback saw the status, and the child already forgotten. */
	ASSERT(s.had_si);
	ASSERT_EQ(s.si.si_code, CLD_EXITED);
	ASSERT_EQ(s.si.si_status, 3);
	ASSERT(!s.running && s.pidfd == -EBADF && s.pid == 0 && !s.src);

	/* The callback may start it again; this one is killed by a signal. */
	s.respawn_loop = l;
	s.respawn = &k;
	ASSERT(child_spawn(&c, l, &o, on_exit_cb, &s) == 0);
	pump_until(l, &s, 3);
	ASSERT(s.had_si);
	ASSERT_EQ(s.si.si_code, CLD_KILLED);
	ASSERT_EQ(s.si.si_status, SIGKILL);
	/* Once, and only once per run. */
	pump(l, 100 * USEC_PER_MSEC);
	ASSERT_EQ(s.calls, 3);
	ASSERT(!c.running);
	child_done(&c);
	loop_free(l);
	ASSERT_EQ(count_fds(), fds);
}

TEST(spawn_failure)
{
	char *missing[] = { "/nonexistent/binary", NULL };
	struct spawn_opts o = sh(missing);
	struct seen s = {};
	struct loop *l;
	struct child c;

	ASSERT(loop_new(&l) == 0);
	ASSERT(child_init(&c, "missing") == 0);
	ASSERT_EQ(child_spawn(&c, l, &o, on_exit_cb, &s), -ENOENT);
	ASSERT(!c.running && c.pid == 0 && c.pidfd == -EBADF && !c.src);
	pump(l, 50 * USEC_PER_MSEC);
	ASSERT_EQ(s.calls, 0);
	child_done(&c);
	loop_free(l);
}

TEST(signal_after_exit)
{
	char *argv[] = { "/bin/sh", "-c", "exit 0", NULL };
	struct spawn_opts o = sh(argv);
	struct seen s = {};
	struct pollfd p;
	struct proc_id id;
	struct loop *l;
	struct child c;
	pid_t pid;

	pid = start(&l, &c, &o, &s);
	/* Exited, not yet seen by the loop: a zombie, no identity to save. */
	p = (struct pollfd){ .fd = c.pidfd, .events = POLLIN };
	ASSERT(poll(&p, 1, 10000) == 1);
	ASSERT_EQ(proc_state(pid), 'Z');
	ASSERT_EQ(child_identity(&c, &id), -ESRCH);
	pump_until(l, &s, 1);
	/* Reaped by the loop, forgotten: signals go nowhere, and a pid
	 * that comes back is not taken for it. */
	ASSERT_EQ(proc_state(pid), 0);
	child_signal(&c, SIGKILL);
	child_signal(&c, SIGTERM);
	ASSERT(!c.running && c.pidfd == -EBADF && c.pid == 0);
	/* The loop does not call back again, nor does a teardown wait. */
	usec_t t = now_usec();
	child_kill_wait(&c, SIGTERM, 5 * USEC_PER_SEC);
	ASSERT(now_usec() - t < USEC_PER_SEC);
	pump(l, 50 * USEC_PER_MSEC);
	ASSERT_EQ(s.calls, 1);
	child_done(&c);
	loop_free(l);
}

TEST(kill_wait)
{
	char *sleeper[] = { "/bin/sleep", "100", NULL };
	/* Ignored signals stay ignored across exec. */
	char *stubborn[] = { "/bin/sh", "-c", "trap '' TERM; exec /bin/sleep 100", NULL };
	struct spawn_opts o = sh(sleeper), st = sh(stubborn);
	struct seen s = {};
	struct proc_id id, want;
	struct loop *l;
	struct child c;
	pid_t pid;
	usec_t t;
	int fds = count_fds();

	/* SIGTERM is enough: no need to wait out the grace. */
	pid = start(&l, &c, &o, &s);
	ASSERT(child_identity(&c, &id) == 0);
	ASSERT(proc_id_get(pid, &want) == 0);
	ASSERT(id.pid == want.pid && id.start_time == want.start_time);
	t = now_usec();
	child_kill_wait(&c, SIGTERM, 5 * USEC_PER_SEC);
	ASSERT(now_usec() - t < 4 * USEC_PER_SEC);
	ASSERT(!c.running && c.pidfd == -EBADF && c.pid == 0 && !c.src);
	/* Reaped, not left as a zombie. */
	ASSERT_EQ(proc_state(pid), 0);

	/* One that ignores SIGTERM gets SIGKILL after the grace. */
	ASSERT(child_spawn(&c, l, &st, on_exit_cb, &s) == 0);
	pid = c.pid;
	/* Until sh has exec'd sleep, SIGTERM would still kill it. */
	for (int i = 0; i < 500; i++) {
		_cleanup_free_ char *comm = NULL, *path = xasprintf("/proc/%d/comm", (int)pid);

		if (read_file(path, 64, &comm, NULL) == 0 && startswith(comm, "sleep"))
			break;
		usleep(10000);
	}
	t = now_usec();
	child_kill_wait(&c, SIGTERM, 300 * USEC_PER_MSEC);
	ASSERT(now_usec() - t >= 300 * USEC_PER_MSEC);
	ASSERT(now_usec() - t < 4 * USEC_PER_SEC);
	ASSERT_EQ(proc_state(pid), 0);

	/* Straight SIGKILL. */
	ASSERT(child_spawn(&c, l, &o, on_exit_cb, &s) == 0);
	pid = c.pid;
	child_kill_wait(&c, SIGKILL, 0);
	ASSERT_EQ(proc_state(pid), 0);

	/* Synchronous: the loop has nothing left to report. */
	pump(l, 50 * USEC_PER_MSEC);
	ASSERT_EQ(s.calls, 0);
	child_done(&c);
	loop_free(l);
	ASSERT_EQ(count_fds(), fds);
}

TEST(forget)
{
	char *sleeper[] = { "/bin/sleep", "100", NULL };
	struct spawn_opts o = sh(sleeper);
	struct seen s = {};
	struct loop *l;
	struct child c;
	pid_t pid;

	pid = start(&l, &c, &o, &s);
	/* Forgotten, as in an upgrade: it runs on and is not watched. */
	child_done(&c);
	ASSERT(!c.what && !c.running && c.pidfd == -EBADF && !c.src);
	ASSERT(kill(pid, 0) == 0);
	ASSERT(kill(pid, SIGKILL) == 0);
	ASSERT(waitpid(pid, NULL, 0) == pid);
	pump(l, 50 * USEC_PER_MSEC);
	ASSERT_EQ(s.calls, 0);
	loop_free(l);
}

TEST(adopt)
{
	struct seen s = {};
	struct proc_id id, wrong, got;
	struct loop *l;
	struct child c;
	pid_t pid = orphan();
	usec_t t;
	int fds = count_fds();

	ASSERT(loop_new(&l) == 0);
	ASSERT(child_init(&c, "orphan") == 0);
	ASSERT(proc_id_get(pid, &id) == 0);

	/* The pid with another start time is another process: refused. */
	wrong = id;
	wrong.start_time++;
	ASSERT_EQ(child_adopt(&c, l, &wrong, on_exit_cb, &s), -ESRCH);
	ASSERT(!c.running && c.pid == 0 && c.pidfd == -EBADF && !c.src);
	wrong = (struct proc_id){ .pid = 0x3ffffff0, .start_time = id.start_time };
	ASSERT_EQ(child_adopt(&c, l, &wrong, on_exit_cb, &s), -ESRCH);

	ASSERT(child_adopt(&c, l, &id, on_exit_cb, &s) == 0);
	ASSERT(c.running && c.pid == pid && c.pidfd >= 0 && c.src);
	ASSERT_EQ(child_adopt(&c, l, &id, on_exit_cb, &s), -EBUSY);
	ASSERT(child_identity(&c, &got) == 0);
	ASSERT(got.pid == id.pid && got.start_time == id.start_time);

	/* Its exit is seen, without a status: it is not our child. */
	child_signal(&c, SIGKILL);
	pump_until(l, &s, 1);
	ASSERT(!s.had_si);
	ASSERT(!s.running && s.pidfd == -EBADF && s.pid == 0 && !s.src);
	child_done(&c);

	/* A teardown of one that is not our child waits on its pidfd. */
	pid = orphan();
	ASSERT(proc_id_get(pid, &id) == 0);
	ASSERT(child_init(&c, "orphan") == 0);
	ASSERT(child_adopt(&c, l, &id, on_exit_cb, &s) == 0);
	t = now_usec();
	child_kill_wait(&c, SIGTERM, 5 * USEC_PER_SEC);
	ASSERT(now_usec() - t < 4 * USEC_PER_SEC);
	ASSERT(!c.running && c.pidfd == -EBADF);
	/* Gone, or a zombie its new parent has yet to reap. */
	ASSERT(proc_state(pid) == 0 || proc_state(pid) == 'Z');
	pump(l, 50 * USEC_PER_MSEC);
	ASSERT_EQ(s.calls, 1);
	child_done(&c);
	loop_free(l);
	ASSERT_EQ(count_fds(), fds);
}

RUN_TESTS(T(proc_identity), T(init_and_done), T(exit_status), T(spawn_failure), T(signal_after_exit),
	  T(kill_wait), T(forget), T(adopt))

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The restart policy: its pure functions with a fake clock, then the
 * manager against a fake driver (no QEMU, no VM): restarts with backoff,
 * the start limit and "failed", each exit's decision, and reload diffs.
 * Everything runs in milliseconds. */
#include <fcntl.h>
#include <sys/stat.h>

#include "defset.h"
#include "manager.h"
#include "restart.h"
#include "test.h"

#define MS USEC_PER_MSEC
#define S USEC_PER_SEC

static struct host_config policy_host = {
	.restart_delay_min_ms = 100,
	.restart_delay_max_ms = 800,
	.restart_reset_s = 10,
	.start_limit_burst = 3,
	.start_limit_interval_s = 60,
	.start_limit_unready = 2,
};

TEST(policy_decisions)
{
	static const struct {
		int policy;
		enum vm_exit_reason reason;
		bool restart;
	} cases[] = {
		{ RESTART_NEVER, VM_EXIT_CRASHED, false },
		{ RESTART_NEVER, VM_EXIT_POWEROFF, false },
		{ RESTART_ON_FAILURE, VM_EXIT_POWEROFF, false },
		{ RESTART_ON_FAILURE, VM_EXIT_REBOOT, true },
		{ RESTART_ON_FAILURE, VM_EXIT_CRASHED, true },
		{ RESTART_ON_FAILURE, VM_EXIT_SHARE_FAILED, true },
		{ RESTART_ON_FAILURE, VM_EXIT_READY_TIMEOUT, true },
		{ RESTART_ON_FAILURE, VM_EXIT_START_FAILED, true },
		{ RESTART_ALWAYS, VM_EXIT_POWEROFF, true },
		{ RESTART_ALWAYS, VM_EXIT_CRASHED, true },
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++)
		ASSERT_EQ(restart_wanted(cases[i].policy, cases[i].reason), cases[i].restart);
}

TEST(policy_backoff)
{
	struct restart_history h = {};
	usec_t now = 1000 * S;

	restart_reset(&h, &policy_host);
	/* Doubling from the minimum, up to the maximum. */
	ASSERT_EQ(restart_next_delay(&h, &policy_host, 0, now), 100 * MS);
	ASSERT_EQ(restart_next_delay(&h, &policy_host, 0, now), 200 * MS);
	ASSERT_EQ(restart_next_delay(&h, &policy_host, 0, now), 400 * MS);
	ASSERT_EQ(restart_next_delay(&h, &policy_host, 0, now), 800 * MS);
	ASSERT_EQ(restart_next_delay(&h, &policy_host, 0, now), 800 * MS);
	/* Ready for less than restart_reset_s: no reset. */
	ASSERT_EQ(restart_next_delay(&h, &policy_host, now - 9 * S, now), 800 * MS);
	/* Ready long enough: the shortest delay again, then doubling. */
	ASSERT_EQ(restart_next_delay(&h, &policy_host, now - 10 * S, now), 100 * MS);
	ASSERT_EQ(restart_next_delay(&h, &policy_host, 0, now), 200 * MS);
	restart_reset(&h, &policy_host);
	ASSERT_EQ(restart_next_delay(&h, &policy_host, 0, now), 100 * MS);
	restart_history_done(&h);
}

TEST(policy_start_limit)
{
	struct restart_history h = {};
	usec_t t = 1000 * S;

	restart_reset(&h, &policy_host);
	/* Boots that became ready: only the window counts. */
	for (int i = 0; i < 3; i++) {
		ASSERT(restart_start_allowed(&h, &policy_host, t + (usec_t)i * S));
		ASSERT(restart_note_start(&h, t + (usec_t)i * S) == 0);
		restart_note_ready(&h);
	}
	/* The fourth within the minute is refused, and stays so. */
	ASSERT(!restart_start_allowed(&h, &policy_host, t + 3 * S));
	ASSERT(!restart_start_allowed(&h, &policy_host, t + 59 * S));
	/* The window slides: the first start leaves it at t + 60 s. */
	ASSERT(restart_start_allowed(&h, &policy_host, t + 60 * S));
	ASSERT_EQ(h.n_starts, 2);
	/* A reset (vmd start, a changed definition) forgets them all. */
	ASSERT(restart_note_start(&h, t + 60 * S) == 0);
	ASSERT(!restart_start_allowed(&h, &policy_host, t + 60 * S));
	restart_reset(&h, &policy_host);
	ASSERT(restart_start_allowed(&h, &policy_host, t + 60 * S));
	restart_history_done(&h);
}

/* Boots that never become ready fail the VM however far apart they are: a
 * boot may take ready_timeout_s (300 s), five never fit into the window. */
TEST(policy_never_ready)
{
	struct restart_history h = {};
	usec_t t = 1000 * S;
	_cleanup_free_ char *why = NULL;

	restart_reset(&h, &policy_host);
	ASSERT(restart_start_allowed(&h, &policy_host, t));
	ASSERT(restart_note_start(&h, t) == 0);
	/* One that became ready resets the count. */
	restart_note_ready(&h);
	for (int i = 1; i <= 2; i++) {
		ASSERT(restart_start_allowed(&h, &policy_host, t + (usec_t)i * 300 * S));
		ASSERT(restart_note_start(&h, t + (usec_t)i * 300 * S) == 0);
	}
	ASSERT(!restart_start_allowed(&h, &policy_host, t + 900 * S));
	ASSERT_EQ(h.n_starts, 0); /* the window alone would allow it */
	why = restart_refusal(&h, &policy_host);
	ASSERT_STREQ(why, "2 starts in a row never became ready");
	restart_reset(&h, &policy_host);
	ASSERT(restart_start_allowed(&h, &policy_host, t + 900 * S));
	restart_history_done(&h);
}

/* The fake driver: a boot is a flag. Its ends come from the loop, as a
 * real hypervisor's would: stop() powers off, destroy() kills. */
struct drv_vm {
	struct vm_plan *p;
	const struct drv_events *ev;
	bool running;
	enum drv_end pending;
	struct loop_source *end_timer;
	struct drv_vm *next;
};

static struct {
	struct drv_vm *live;
	unsigned starts, readies;
	int fail_start; /* start() returns this */
} fake;

static struct drv_vm *boot_of(const char *name)
{
	for (struct drv_vm *d = fake.live; d; d = d->next)
		if (streq(d->p->def->name, name))
			return d;
	return NULL;
}

static void on_end_timer(struct loop_source *s, void *userdata)
{
	struct drv_vm *d = userdata;

	(void)s;
	if (!d->running)
		return;
	d->running = false;
	d->ev->ended(d->ev->userdata, d->pending, "the fake ended", "the fake ended early");
}

static int fake_new(struct vm_plan *p, const struct drv_events *ev, struct drv_vm **ret)
{
	struct drv_vm *d = calloc(1, sizeof(*d));

	ASSERT(d);
	*d = (struct drv_vm){ .p = p, .ev = ev, .next = fake.live };
	ASSERT(loop_add_timer(p->loop, 0, on_end_timer, d, &d->end_timer) == 0);
	fake.live = d;
	*ret = d;
	return 0;
}

static void fake_release(struct drv_vm *d)
{
	struct drv_vm **pp = &fake.live;

	while (*pp != d)
		pp = &(*pp)->next;
	*pp = d->next;
	loop_source_freep(&d->end_timer);
	free(d);
}

static int fake_start(struct drv_vm *d)
{
	if (fake.fail_start)
		return fake.fail_start;
	d->running = true;
	fake.starts++;
	return 0;
}

static void end_soon(struct drv_vm *d, enum drv_end how)
{
	d->pending = how;
	loop_timer_set(d->end_timer, now_usec());
}

static int fake_stop(struct drv_vm *d)
{
	end_soon(d, DRV_END_POWEROFF);
	return 0;
}

static void fake_destroy(struct drv_vm *d, enum drv_kill how)
{
	if (how == DRV_KILL_WAIT)
		d->running = false;
	else if (d->running)
		end_soon(d, DRV_END_EXITED);
}

static bool fake_running(const struct drv_vm *d)
{
	return d->running;
}

static void fake_ready(struct drv_vm *d)
{
	(void)d;
	fake.readies++;
}

static void fake_disconnect(struct drv_vm *d)
{
	(void)d;
}

static struct qga *fake_agent(struct drv_vm *d)
{
	(void)d;
	return NULL;
}

static const struct vm_driver fake_driver = {
	.name = "fake",
	.term_action = "ending the fake",
	.new = fake_new,
	.release = fake_release,
	.start = fake_start,
	.stop = fake_stop,
	.destroy = fake_destroy,
	.running = fake_running,
	.ready = fake_ready,
	.disconnect = fake_disconnect,
	.agent = fake_agent,
};

/* A host of its own under a temporary directory, with one closure. */
struct world {
	char *dir;
	struct host_config *host;
	struct loop *loop;
	struct manager *m;
	char *system;
};

static void world_init_with(struct world *w, const char *policy);

static void world_init(struct world *w)
{
	world_init_with(w, "\"restart_delay_min_ms\": 1, \"restart_delay_max_ms\": 4, \"start_limit_burst\": 3");
}

/* policy: the restart settings, as JSON members. */
static void world_init_with(struct world *w, const char *policy)
{
	_cleanup_free_ char *json = NULL, *store = NULL;
	struct schema_errors errors = {};
	struct vm_options opts = { .driver = &fake_driver, .lock_wait = 0 };

	memset(&fake, 0, sizeof(fake));
	w->dir = tmpdir();
	store = xasprintf("%s/store", w->dir);
	w->system = xasprintf("%s/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-sys", store);
	ASSERT(mkdir_p(w->system, 0755) == 0);
	for (const char *const *f = (const char *const[]){ "kernel", "initrd", "init", NULL }; *f; f++) {
		_cleanup_free_ char *path = path_join(w->system, *f);
		ASSERT(write_file(path, "", 0644, 0) == 0);
	}
	json = xasprintf("{\"run_dir\": \"%1$s/run\", \"state_dir\": \"%1$s/state\", \"log_dir\": \"%1$s/log\", "
			 "\"keys_dir\": \"%1$s/keys\", \"store_dir\": \"%1$s/store\", \"gcroots_dir\": \"%1$s/none\", "
			 "\"start_limit_interval_s\": 60, %2$s}",
			 w->dir, policy);
	ASSERT(host_config_parse_buffer(json, strlen(json), &w->host, &errors) == 0);
	ASSERT(loop_new(&w->loop) == 0);
	ASSERT(manager_new(w->loop, w->host, &opts, &w->m) == 0);
}

static void world_done(struct world *w)
{
	manager_free(w->m);
	ASSERT(fake.live == NULL);
	loop_free(w->loop);
	host_config_free(w->host);
	rm_tree(w->dir);
	free(w->dir);
	free(w->system);
}

static struct vm_def *def(const struct world *w, const char *name, const char *restart, const char *extra)
{
	_cleanup_free_ char *json = xasprintf("{\"name\": \"%s\", \"system\": \"%s\", \"restart\": \"%s\"%s}", name,
					      w->system, restart, extra ? extra : "");
	struct schema_errors errors = {};
	struct vm_def *d = NULL;

	ASSERT(def_parse_buffer(json, strlen(json), &d, &errors) == 0);
	return d;
}

/* Applies the definitions (taken) and returns the summary. */
static json_t *apply(struct world *w, struct vm_def **defs, size_t n)
{
	struct defset set = { calloc(n + 1, sizeof(*set.entries)), n };
	json_t *summary = NULL;

	for (size_t i = 0; i < n; i++)
		set.entries[i].def = defs[i];
	ASSERT(manager_apply(w->m, &set, &summary) == 0);
	defset_clear(&set);
	return summary;
}

static char *names(json_t *summary, const char *key)
{
	json_t *a = json_object_get(summary, key), *v;
	_cleanup_strv_free_ char **l = NULL;
	size_t i;

	json_array_foreach(a, i, v)
		ASSERT(strv_extend(&l, json_string_value(v)) == 0);
	return l ? strv_join(l, ",") : strdup("");
}

static json_t *status(struct world *w, const char *name)
{
	json_t *a = manager_status(w->m, name);

	ASSERT(a && json_array_size(a) == 1);
	return a;
}

static const char *state(struct world *w, const char *name)
{
	static char buf[32];
	json_t *a = status(w, name);

	snprintf(buf, sizeof(buf), "%s", json_string_value(json_object_get(json_array_get(a, 0), "state")));
	json_decref(a);
	return buf;
}

/* Runs the loop until cond holds (or a second passes: a failure). */
#define SPIN_UNTIL(w, cond)                                                   \
	do {                                                                  \
		usec_t _end = now_usec() + S;                                 \
		while (!(cond) && now_usec() < _end)                          \
			loop_iterate((w)->loop, 10 * MS);                    \
		ASSERT(cond);                                                 \
	} while (0)

static void ready(const char *name)
{
	struct drv_vm *d = boot_of(name);

	ASSERT(d && d->running);
	d->ev->notify(d->ev->userdata, "READY=1\n", 8);
}

static void crash(const char *name)
{
	struct drv_vm *d = boot_of(name);

	ASSERT(d && d->running);
	d->running = false;
	d->ev->ended(d->ev->userdata, DRV_END_EXITED, "QEMU was killed by signal 9 (Killed)",
		     "QEMU was killed by signal 9 (Killed) before the guest was ready");
}

TEST(manager_restarts_until_failed)
{
	struct world w = {};
	struct vm_def *defs[1];
	json_t *summary, *st;

	world_init(&w);
	defs[0] = def(&w, "a", "on-failure", NULL);
	summary = apply(&w, defs, 1);
	json_decref(summary);
	ASSERT_EQ(fake.starts, 1);
	ASSERT_STREQ(state(&w, "a"), "booting");
	ready("a");
	ASSERT_EQ(fake.readies, 1);
	ASSERT_STREQ(state(&w, "a"), "running");

	/* A crash: backoff, then a restart counted as one. */
	crash("a");
	ASSERT_STREQ(state(&w, "a"), "backoff");
	SPIN_UNTIL(&w, fake.starts == 2);
	st = status(&w, "a");
	ASSERT_EQ(json_integer_value(json_object_get(json_array_get(st, 0), "restarts")), 1);
	ASSERT(strstr(json_string_value(json_object_get(json_array_get(st, 0), "last_exit")), "crashed: QEMU was killed"));
	json_decref(st);

	/* Crashes before READY: the third start in the window is the last. */
	crash("a");
	SPIN_UNTIL(&w, fake.starts == 3);
	ASSERT_STREQ(state(&w, "a"), "booting");
	crash("a");
	SPIN_UNTIL(&w, streq(state(&w, "a"), "failed"));
	ASSERT_EQ(fake.starts, 3);
	/* And it stays failed. */
	for (int i = 0; i < 5; i++)
		loop_iterate(w.loop, 5 * MS);
	ASSERT_STREQ(state(&w, "a"), "failed");
	ASSERT_EQ(fake.starts, 3);

	/* vmd start clears the limit. */
	ASSERT(manager_start(w.m, "a", NULL, NULL) == 0);
	ASSERT_EQ(fake.starts, 4);
	ASSERT_STREQ(state(&w, "a"), "booting");
	world_done(&w);
}

/* Never ready, whatever the window: start_limit_unready starts in a row
 * that did not become ready make it failed; one that did starts the count
 * over. */
TEST(manager_never_ready_fails)
{
	struct world w = {};
	struct vm_def *defs[1];
	json_t *st;

	world_init_with(&w, "\"restart_delay_min_ms\": 1, \"restart_delay_max_ms\": 4, \"start_limit_burst\": 100, "
			    "\"start_limit_unready\": 3");
	defs[0] = def(&w, "a", "always", NULL);
	json_decref(apply(&w, defs, 1));
	crash("a");
	SPIN_UNTIL(&w, fake.starts == 2);
	ready("a");
	for (unsigned i = 3; i <= 5; i++) {
		crash("a");
		SPIN_UNTIL(&w, fake.starts == i);
	}
	crash("a");
	SPIN_UNTIL(&w, streq(state(&w, "a"), "failed"));
	for (int i = 0; i < 5; i++)
		loop_iterate(w.loop, 5 * MS);
	ASSERT_EQ(fake.starts, 5);
	st = status(&w, "a");
	ASSERT(strstr(json_string_value(json_object_get(json_array_get(st, 0), "last_exit")),
		      "QEMU was killed by signal 9 (Killed) before the guest was ready"));
	json_decref(st);
	world_done(&w);
}

struct reply {
	unsigned n;
	int error;
	char *message;
};

static void on_reply(void *userdata, int error, const char *message)
{
	struct reply *r = userdata;

	r->n++;
	r->error = error;
	free(r->message);
	r->message = message ? strdup(message) : NULL;
}

/* "vmd restart" is asked for: it starts afresh instead of using up the
 * start limit, and whoever waits learns why a start still failed. */
TEST(manager_manual_starts_reset_the_limit)
{
	struct world w = {};
	struct vm_def *defs[1];
	struct reply rep = {};

	world_init(&w);
	defs[0] = def(&w, "a", "always", NULL);
	json_decref(apply(&w, defs, 1));
	ready("a");
	/* Twice the burst, each within the window. */
	for (unsigned i = 1; i <= 6; i++) {
		ASSERT(manager_restart(w.m, "a", on_reply, &rep) == 0);
		SPIN_UNTIL(&w, fake.starts == i + 1 || rep.n == i);
		ASSERT_EQ(rep.n, i - 1);
		ready("a");
		ASSERT_EQ(rep.n, i);
		ASSERT_EQ(rep.error, 0);
		ASSERT(startswith(rep.message, "ready in"));
	}

	/* A restart whose boot fails: the client is told how, not "stopped
	 * by request"; the automatic restarts after it use up the limit. */
	fake.fail_start = -EIO;
	ASSERT(manager_restart(w.m, "a", on_reply, &rep) == 0);
	SPIN_UNTIL(&w, rep.n == 7);
	ASSERT_EQ(rep.error, -EIO);
	ASSERT_STREQ(rep.message, "start-failed: Input/output error");
	SPIN_UNTIL(&w, streq(state(&w, "a"), "failed"));
	free(rep.message);
	world_done(&w);
}

/* The delay doubles up to the maximum, counted from the crash: a restart
 * never comes sooner (later is the machine's business). */
TEST(manager_backoff_doubles)
{
	static const usec_t want[] = { 20 * MS, 40 * MS, 80 * MS, 80 * MS };
	struct world w = {};
	struct vm_def *defs[1];

	world_init_with(&w, "\"restart_delay_min_ms\": 20, \"restart_delay_max_ms\": 80, \"start_limit_burst\": 10");
	defs[0] = def(&w, "a", "always", NULL);
	json_decref(apply(&w, defs, 1));
	for (size_t i = 0; i < ELEMENTSOF(want); i++) {
		unsigned before = fake.starts;
		usec_t t = now_usec();

		crash("a");
		SPIN_UNTIL(&w, fake.starts == before + 1);
		ASSERT(now_usec() - t >= want[i]);
	}
	world_done(&w);
}

TEST(manager_exit_decisions)
{
	struct world w = {};
	struct vm_def *defs[3];

	world_init(&w);
	defs[0] = def(&w, "always", "always", NULL);
	defs[1] = def(&w, "never", "never", NULL);
	defs[2] = def(&w, "onfail", "on-failure", NULL);
	json_decref(apply(&w, defs, 3));
	ASSERT_EQ(fake.starts, 3);
	ready("always");
	ready("never");
	ready("onfail");

	/* A stop asked for is never restarted. */
	ASSERT(manager_stop(w.m, "always", NULL, NULL) == 0);
	SPIN_UNTIL(&w, streq(state(&w, "always"), "stopped"));
	/* A poweroff: only "always" comes back. */
	ASSERT(manager_start(w.m, "always", NULL, NULL) == 0);
	ready("always");
	boot_of("always")->running = false;
	boot_of("always")->ev->ended(boot_of("always")->ev->userdata, DRV_END_POWEROFF, "", "");
	SPIN_UNTIL(&w, streq(state(&w, "always"), "booting"));
	boot_of("onfail")->running = false;
	boot_of("onfail")->ev->ended(boot_of("onfail")->ev->userdata, DRV_END_POWEROFF, "", "");
	ASSERT_STREQ(state(&w, "onfail"), "stopped");
	/* A crash: "no" stays down. */
	crash("never");
	ASSERT_STREQ(state(&w, "never"), "stopped");
	for (int i = 0; i < 5; i++)
		loop_iterate(w.loop, 5 * MS);
	ASSERT_STREQ(state(&w, "never"), "stopped");
	ASSERT_STREQ(state(&w, "onfail"), "stopped");
	world_done(&w);
}

TEST(manager_start_failures_count)
{
	struct world w = {};
	struct vm_def *defs[1];

	world_init(&w);
	fake.fail_start = -EIO;
	defs[0] = def(&w, "b", "always", NULL);
	json_decref(apply(&w, defs, 1));
	SPIN_UNTIL(&w, streq(state(&w, "b"), "failed"));
	ASSERT_EQ(fake.starts, 0);
	ASSERT(fake.live == NULL);
	world_done(&w);
}

TEST(manager_reload_diff)
{
	struct world w = {};
	struct vm_def *defs[3];
	json_t *summary;
	_cleanup_free_ char *added = NULL, *removed = NULL, *changed = NULL, *unchanged = NULL;

	world_init(&w);
	defs[0] = def(&w, "a", "on-failure", NULL);
	defs[1] = def(&w, "b", "on-failure", NULL);
	defs[2] = def(&w, "c", "on-failure", ", \"autostart\": false");
	summary = apply(&w, defs, 3);
	added = names(summary, "added");
	ASSERT_STREQ(added, "a,b,c");
	json_decref(summary);
	ASSERT_EQ(fake.starts, 2); /* c does not start by itself */
	ready("a");
	ready("b");

	/* a goes, b changes, c stays, d comes. */
	defs[0] = def(&w, "b", "on-failure", ", \"vcpus\": 2");
	defs[1] = def(&w, "c", "on-failure", ", \"autostart\": false");
	defs[2] = def(&w, "d", "on-failure", NULL);
	summary = apply(&w, defs, 3);
	free(added);
	added = names(summary, "added");
	removed = names(summary, "removed");
	changed = names(summary, "changed");
	unchanged = names(summary, "unchanged");
	ASSERT_STREQ(added, "d");
	ASSERT_STREQ(removed, "a");
	ASSERT_STREQ(changed, "b");
	ASSERT_STREQ(unchanged, "c");
	json_decref(summary);
	/* a is stopped and forgotten; b restarts with its new definition. */
	SPIN_UNTIL(&w, !boot_of("a") && boot_of("b") && boot_of("b")->p->def->vcpus == 2);
	ASSERT(manager_status(w.m, "a") == NULL);
	ASSERT_STREQ(state(&w, "b"), "booting");
	ASSERT_STREQ(state(&w, "c"), "stopped");
	ASSERT_STREQ(state(&w, "d"), "booting");
	ASSERT_EQ(fake.starts, 4);
	world_done(&w);
}

RUN_TESTS(T(policy_decisions), T(policy_backoff), T(policy_start_limit), T(policy_never_ready),
	  T(manager_restarts_until_failed), T(manager_never_ready_fails), T(manager_manual_starts_reset_the_limit),
	  T(manager_backoff_doubles), T(manager_exit_decisions), T(manager_start_failures_count), T(manager_reload_diff))

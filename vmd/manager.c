/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <stdio.h>

#include "console.h"
#include "log.h"
#include "manager.h"
#include "plan.h"
#include "restart.h"
#include "vmlog.h"

enum waiter_kind { WAIT_READY, WAIT_STOPPED };

struct waiter {
	enum waiter_kind kind;
	manager_done_cb cb;
	void *userdata;
	struct waiter *next;
};

/* Commands run in the guest at once per VM; more wait their turn (their
 * timeout counts from the request). */
#define EXECS_AT_ONCE 16

struct exec_req {
	struct mvm *v;
	char **argv;
	usec_t deadline; /* UINT64_MAX: none */
	bool running;
	qga_exec_cb cb; /* NULL once cancelled */
	void *userdata;
	struct exec_req *next;
};

struct mvm {
	struct manager *m;
	struct vm *vm;
	char *name;
	bool want;            /* should be running */
	bool removed;         /* left the config: freed once stopped */
	bool restart_pending; /* start again as soon as it has stopped */
	bool dead;            /* waiting to be freed */
	struct vm_def *next_def;
	uint32_t restarts;
	struct restart_history history;
	usec_t ready_at;
	struct loop_source *timer;
	char *last_exit;
	struct waiter *waiters;
	struct exec_req *execs; /* running ones and, after them, waiting ones */
	unsigned execs_running;
	/* The serial console as clients share it; lives across boots. */
	struct console_hub console;
	struct mvm *next;
};

struct manager {
	struct loop *loop;
	const struct host_config *host;
	struct vm_options opts;
	struct mvm *vms;
	size_t launched;
	bool shutting_down;
	manager_done_cb shutdown_cb;
	void *shutdown_userdata;
	struct loop_source *reaper;
};

static void on_ready(struct vm *vm, void *userdata);
static void on_exited(struct vm *vm, enum vm_exit_reason reason, const char *detail, void *userdata);

static void on_console(struct vm *vm, const char *buf, size_t n, void *userdata);

static const struct vm_callbacks callbacks = {
	.ready = on_ready,
	.exited = on_exited,
	.console = on_console,
};

static struct mvm *find(struct manager *m, const char *name)
{
	for (struct mvm *v = m->vms; v; v = v->next)
		if (!v->dead && streq(v->name, name))
			return v;
	return NULL;
}

static bool is_active(const struct mvm *v)
{
	enum vm_state s = vm_get_state(v->vm);

	return s != VM_STOPPED && s != VM_BACKOFF && s != VM_FAILED;
}

static void complete(struct mvm *v, enum waiter_kind kind, int error, const char *message)
{
	struct waiter **pp = &v->waiters;

	while (*pp) {
		struct waiter *w = *pp;

		if (w->kind != kind) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		if (w->cb)
			w->cb(w->userdata, error, message);
		free(w);
	}
}

static int add_waiter(struct mvm *v, enum waiter_kind kind, manager_done_cb cb, void *userdata)
{
	struct waiter *w;

	if (!cb)
		return 0;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct waiter){ kind, cb, userdata, v->waiters };
	v->waiters = w;
	return 0;
}

static void exec_done(struct exec_req *e, const struct qga_result *res)
{
	struct mvm *v = e->v;

	for (struct exec_req **pp = &v->execs; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	if (e->running) {
		/* Whatever the agent still says about it reaches nobody. */
		vm_exec_cancel(v->vm, e);
		v->execs_running--;
	}
	if (e->cb)
		e->cb(NULL, res, e->userdata);
	strv_free(e->argv);
	free(e);
}

static void fail_execs(struct mvm *v, int error)
{
	struct qga_result res = { .error = error };

	while (v->execs)
		exec_done(v->execs, &res);
}

static void mvm_free(struct mvm *v)
{
	console_hub_end(&v->console, "the VM is gone");
	vm_free(v->vm);
	loop_source_freep(&v->timer);
	def_free(v->next_def);
	restart_history_done(&v->history);
	free(v->last_exit);
	free(v->name);
	free(v);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct mvm *, mvm_free);

static void on_reap(struct loop_source *s, void *userdata)
{
	struct manager *m = userdata;
	struct mvm **pp = &m->vms;

	(void)s;
	while (*pp) {
		struct mvm *v = *pp;

		if (!v->dead) {
			pp = &v->next;
			continue;
		}
		*pp = v->next;
		mvm_free(v);
	}
}

/* Tells those at the console that the VM went down: it comes back
 * (again), or it does not and their session ends. */
static void console_went_down(struct mvm *v, bool again, const char *what)
{
	_cleanup_free_ char *text = NULL;

	if (!v->console.clients)
		return;
	text = xasprintf("%s %s%s%s%s", v->name, what, v->last_exit ? " (" : "", v->last_exit ? v->last_exit : "",
			 v->last_exit ? ")" : "");
	if (again)
		console_hub_event(&v->console, "restarted", text ? text : what);
	else
		console_hub_end(&v->console, text ? text : what);
}

/* Freed from the loop, never under a callback that still uses it. */
static void mvm_release(struct mvm *v)
{
	console_went_down(v, false, "was removed from the configuration");
	complete(v, WAIT_READY, -ENOENT, "removed from the configuration");
	complete(v, WAIT_STOPPED, 0, NULL);
	fail_execs(v, -ENOENT);
	v->dead = true;
	loop_timer_set(v->m->reaper, now_usec());
}

static void check_shutdown(struct manager *m)
{
	manager_done_cb cb = m->shutdown_cb;

	if (!m->shutting_down || !cb)
		return;
	for (struct mvm *v = m->vms; v; v = v->next)
		if (!v->dead && is_active(v))
			return;
	m->shutdown_cb = NULL;
	cb(m->shutdown_userdata, 0, NULL);
}

static void launch(struct mvm *v, bool restart);

static void on_backoff(struct loop_source *s, void *userdata)
{
	struct mvm *v = userdata;

	(void)s;
	if (!v->want || is_active(v))
		return;
	launch(v, true);
}

static void after_exit(struct mvm *v, enum vm_exit_reason reason);

/* restart: counts as an automatic restart (not a start asked for). */
static void launch(struct mvm *v, bool restart)
{
	int r;

	if (!restart_start_allowed(&v->history, v->m->host, now_usec())) {
		_cleanup_free_ char *why = restart_refusal(&v->history, v->m->host);
		_cleanup_free_ char *msg = xasprintf("%s (last exit: %s); giving up (failed) until \"vmd start\", "
						     "\"vmd restart\" or a changed definition",
						     why ? why : "start limit reached",
						     v->last_exit ? v->last_exit : "none");

		log_error("%s: %s", v->name, msg ? msg : "start limit reached");
		vm_set_idle_state(v->vm, VM_FAILED);
		console_went_down(v, false, "failed: the start limit was reached");
		complete(v, WAIT_READY, -EIO, msg ? msg : "start limit reached");
		return;
	}
	if (restart)
		v->restarts++;
	(void)restart_note_start(&v->history, now_usec());
	v->ready_at = 0;
	vm_set_history(v->vm, v->restarts, v->last_exit);
	r = vm_start(v->vm);
	if (r < 0) {
		free(v->last_exit);
		v->last_exit = xasprintf("start-failed: %s", strerror(-r));
		after_exit(v, VM_EXIT_START_FAILED);
	}
}

static void after_exit(struct mvm *v, enum vm_exit_reason reason)
{
	struct manager *m = v->m;
	usec_t delay;

	complete(v, WAIT_STOPPED, 0, NULL);
	/* Who waits for "ready" across a restart or a changed definition
	 * waits for the next boot. */
	if (v->removed || m->shutting_down || !v->want || (!v->next_def && !v->restart_pending))
		complete(v, WAIT_READY, -EIO, v->last_exit ? v->last_exit : "the VM stopped");
	fail_execs(v, -ECONNRESET);

	if (v->removed) {
		mvm_release(v);
		check_shutdown(m);
		return;
	}
	if (m->shutting_down) {
		console_went_down(v, false, "stopped: the daemon is shutting down");
		check_shutdown(m);
		return;
	}
	if (v->next_def || v->restart_pending)
		console_went_down(v, v->want, v->want ? "went down and starts again" : "stopped");
	if (v->next_def) {
		/* A changed definition: the new one starts right away. */
		vm_set_def(v->vm, TAKE_PTR(v->next_def));
		restart_reset(&v->history, v->m->host);
		if (v->want)
			launch(v, false);
		return;
	}
	if (v->restart_pending) {
		/* Asked for (vmd restart, or vmd start while it stopped): a
		 * fresh start, not one more towards the limit. */
		v->restart_pending = false;
		restart_reset(&v->history, v->m->host);
		if (v->want)
			launch(v, false);
		return;
	}
	if (reason == VM_EXIT_STOPPED || !v->want) {
		console_went_down(v, false, "stopped");
		return;
	}
	if (!restart_wanted(vm_def(v->vm)->restart, reason)) {
		v->want = false;
		log_info("%s: not restarting (restart: %s)", v->name, restart_policy_names[vm_def(v->vm)->restart]);
		console_went_down(v, false, "went down and is not restarted");
		return;
	}
	delay = restart_next_delay(&v->history, m->host, v->ready_at, now_usec());
	log_info("%s: restarting in %llu ms", v->name, (unsigned long long)(delay / USEC_PER_MSEC));
	console_went_down(v, true, "went down; vmd restarts it");
	vm_set_idle_state(v->vm, VM_BACKOFF);
	/* Disks and checks now, so the restart itself only starts processes;
	 * a failure here shows again, and is counted, when it starts. */
	if (restart_start_allowed(&v->history, m->host, now_usec()))
		vm_prepare(v->vm);
	/* The delay counts from the crash: waiting for the rest of the unit
	 * to go down (virtiofsd, after SIGTERM) already took part of it. */
	{
		usec_t from = vm_down_usec(v->vm) ? vm_down_usec(v->vm) : now_usec();

		loop_timer_set(v->timer, from + delay > now_usec() ? from + delay : now_usec());
	}
}

static void on_ready(struct vm *vm, void *userdata)
{
	struct mvm *v = userdata;
	char msg[64];

	(void)vm;
	v->ready_at = now_usec();
	restart_note_ready(&v->history);
	snprintf(msg, sizeof(msg), "ready in %.2f s", (double)vm_ready_usec(v->vm) / USEC_PER_SEC);
	complete(v, WAIT_READY, 0, msg);
}

static void on_console(struct vm *vm, const char *buf, size_t n, void *userdata)
{
	struct mvm *v = userdata;

	(void)vm;
	console_hub_output(&v->console, buf, n);
}

static void on_exited(struct vm *vm, enum vm_exit_reason reason, const char *detail, void *userdata)
{
	struct mvm *v = userdata;

	(void)vm;
	free(v->last_exit);
	v->last_exit = xasprintf("%s%s%s", vm_exit_reason_names[reason], detail ? ": " : "", detail ? detail : "");
	after_exit(v, reason);
}

/* Takes def, also when it fails. */
static struct mvm *mvm_new(struct manager *m, struct vm_def *def)
{
	_cleanup_def_ struct vm_def *d = def;
	_cleanup_(mvm_freep) struct mvm *v = calloc(1, sizeof(*v));
	struct mvm **pp;

	if (!v)
		return NULL;
	v->m = m;
	v->name = strdup(d->name);
	if (!v->name || loop_add_timer(m->loop, 0, on_backoff, v, &v->timer) < 0)
		return NULL;
	/* vm_new() takes the definition, also when it fails. */
	if (vm_new(m->loop, m->host, &m->opts, TAKE_PTR(d), &callbacks, v, &v->vm) < 0)
		return NULL;
	restart_reset(&v->history, m->host);
	/* Kept sorted by name: status lists them that way. */
	pp = &m->vms;
	while (*pp && strcmp((*pp)->name, v->name) < 0)
		pp = &(*pp)->next;
	v->next = *pp;
	*pp = v;
	return TAKE_PTR(v);
}

int manager_new(struct loop *l, const struct host_config *host, const struct vm_options *opts,
		struct manager **ret)
{
	_cleanup_free_ struct manager *m = calloc(1, sizeof(*m));
	int r;

	if (!m)
		return -ENOMEM;
	m->loop = l;
	m->host = host;
	m->opts = *opts;
	r = loop_add_timer(l, 0, on_reap, m, &m->reaper);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(m);
	return 0;
}

void manager_free(struct manager *m)
{
	if (!m)
		return;
	for (struct mvm *v = m->vms; v; v = v->next) {
		/* Whatever still runs was meant to (--keep-running). */
		vm_detach(v->vm);
		for (struct waiter *w = v->waiters; w; w = w->next)
			w->cb = NULL;
		for (struct exec_req *e = v->execs; e; e = e->next)
			e->cb = NULL;
		mvm_release(v);
	}
	on_reap(NULL, m);
	loop_source_freep(&m->reaper);
	free(m);
}

/* A running VM a driver found: at start, the configuration is not loaded
 * yet, so the VM's own definition is taken; later (a reconnect), a VM not
 * configured goes, and one that runs another definition than its VM's is
 * replaced. */
/* A daemon that adopts a VM has seen none of its console: the backlog
 * starts from the tail of its log (console output, and vmd's own lines). */
static void seed_console(struct mvm *v)
{
	_cleanup_free_ char *tail = vmlog_tail(vm_log_path(v->vm), 200, 0);

	if (tail && *tail) {
		console_hub_output(&v->console, tail, strlen(tail));
		console_hub_output(&v->console, "\r\n", 2);
	}
}

static void on_found(struct drv_found *f, bool at_start, void *userdata)
{
	struct manager *m = userdata;
	struct mvm *v = find(m, f->st.def->name);
	bool created = false;
	int r;

	if (v && is_active(v))
		return; /* followed already (a reconnect) */
	if (!v && !at_start) {
		log_info("%s: %s is running but the VM is not configured; destroying it", f->st.def->name, f->where);
		f->driver->discard(f);
		return;
	}
	if (v && !def_equal(vm_def(v->vm), f->st.def)) {
		log_info("%s: %s runs an older definition; destroying it", v->name, f->where);
		f->driver->discard(f);
		return;
	}
	if (!v) {
		v = mvm_new(m, TAKE_PTR(f->st.def));
		if (!v)
			return;
		created = true;
	}
	r = vm_adopt(v->vm, f);
	if (r == 0) {
		loop_timer_set(v->timer, 0);
		v->want = true;
		v->restarts = f->st.restarts;
		free(v->last_exit);
		v->last_exit = TAKE_PTR(f->st.last_exit);
		v->ready_at = now_usec();
		seed_console(v);
	} else if (r == -EBUSY) {
		log_warning("%s: %s is in the hands of another vmd (its run directory is locked); leaving it", v->name,
			    f->where);
	}
	/* Ended and cleaned: the configuration decides anew. */
	if (r < 0 && created) {
		v->removed = true;
		mvm_release(v);
	}
}

int manager_adopt_all(struct manager *m)
{
	_cleanup_free_ char *vms = path_join(m->host->run_dir, "vms");
	_cleanup_free_ char *disks = path_join(m->host->state_dir, "disks");
	const char *dirs[] = { vms, disks };
	struct dirent *de;
	DIR *d;

	if (!vms || !disks)
		return -ENOMEM;
	for (size_t i = 0; vm_drivers[i]; i++) {
		int r = vm_drivers[i]->discover(m->host, &m->opts, on_found, m);

		if (r < 0)
			log_warning_errno(r, "looking for VMs of the %s driver that a previous daemon left: %m",
					  vm_drivers[i]->name);
	}
	/* What is left of VMs no one adopted. */
	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		d = opendir(dirs[i]);
		if (!d)
			continue;
		while ((de = readdir(d))) {
			int r;

			if (de->d_name[0] == '.' || check_name(de->d_name) || find(m, de->d_name))
				continue;
			r = plan_sweep_stale(m->host, de->d_name);
			if (r == 0)
				log_info("%s: removed what a dead VM left behind", de->d_name);
			else if (r == -EBUSY && i == 0)
				log_warning("%s: %s/%s is in use by something other than a vmd daemon (vmd run?); "
					    "leaving it alone",
					    de->d_name, vms, de->d_name);
		}
		closedir(d);
	}
	return 0;
}

static int add_name(json_t *summary, const char *key, const char *name)
{
	return json_array_append_new(json_object_get(summary, key), json_string(name));
}

static int cmp_def(const void *a, const void *b)
{
	return strcmp((*(struct vm_def *const *)a)->name, (*(struct vm_def *const *)b)->name);
}

static void apply_one(struct manager *m, struct mvm *v, struct vm_def *nd, json_t *summary)
{
	if (!nd) {
		log_info("%s: removed from the configuration; stopping it", v->name);
		add_name(summary, "removed", v->name);
		v->removed = true;
		v->want = false;
		loop_timer_set(v->timer, 0);
		if (is_active(v))
			vm_stop(v->vm, false);
		else
			mvm_release(v);
		return;
	}
	if (def_equal(vm_def(v->vm), nd)) {
		add_name(summary, "unchanged", v->name);
		def_free(nd);
		return;
	}
	add_name(summary, "changed", v->name);
	if (is_active(v)) {
		log_info("%s: definition changed; restarting it", v->name);
		def_free(v->next_def);
		v->next_def = nd;
		v->want = true;
		vm_stop(v->vm, false);
		return;
	}
	/* Stopped, failed or backing off: the new definition starts afresh,
	 * if it is to start at all. */
	loop_timer_set(v->timer, 0);
	vm_set_def(v->vm, nd);
	vm_set_idle_state(v->vm, VM_STOPPED);
	restart_reset(&v->history, v->m->host);
	v->want = vm_def(v->vm)->autostart;
	if (v->want) {
		m->launched++;
		launch(v, false);
	}
}

int manager_apply(struct manager *m, struct defset *set, json_t **ret)
{
	json_t *summary = json_pack("{s:[], s:[], s:[], s:[]}", "added", "removed", "changed", "unchanged");
	_cleanup_free_ struct vm_def **defs = calloc(set->n + 1, sizeof(*defs));
	size_t n = 0, i = 0;

	if (!summary || !defs) {
		json_decref(summary);
		return -ENOMEM;
	}
	for (size_t k = 0; k < set->n; k++)
		if (set->entries[k].def)
			defs[n++] = TAKE_PTR(set->entries[k].def);
	/* Both sides sorted by name: one merge pass, however many VMs. */
	qsort(defs, n, sizeof(*defs), cmp_def);
	m->launched = 0;
	for (struct mvm *v = m->vms; v; v = v->next) {
		if (v->dead || v->removed)
			continue;
		while (i < n && strcmp(defs[i]->name, v->name) < 0)
			i++;
		if (i < n && streq(defs[i]->name, v->name))
			apply_one(m, v, TAKE_PTR(defs[i++]), summary);
		else
			apply_one(m, v, NULL, summary);
	}
	for (size_t k = 0; k < n; k++) {
		struct mvm *v;

		if (!defs[k])
			continue;
		add_name(summary, "added", defs[k]->name);
		v = mvm_new(m, TAKE_PTR(defs[k]));
		if (!v) {
			for (size_t j = k + 1; j < n; j++)
				def_free(defs[j]);
			json_decref(summary);
			return -ENOMEM;
		}
		v->want = vm_def(v->vm)->autostart;
		if (v->want) {
			m->launched++;
			launch(v, false);
		}
	}
	if (ret)
		*ret = summary;
	else
		json_decref(summary);
	return 0;
}

static struct mvm *lookup(struct manager *m, const char *name, manager_done_cb cb, void *userdata)
{
	struct mvm *v = name ? find(m, name) : NULL;

	if ((!v || v->removed) && cb)
		cb(userdata, -ENOENT, "no such VM");
	return v && !v->removed ? v : NULL;
}

int manager_start(struct manager *m, const char *name, manager_done_cb cb, void *userdata)
{
	struct mvm *v = lookup(m, name, cb, userdata);

	if (!v)
		return -ENOENT;
	v->want = true;
	if (vm_is_ready(v->vm)) {
		if (cb)
			cb(userdata, 0, "already running");
		return 0;
	}
	if (add_waiter(v, WAIT_READY, cb, userdata) < 0)
		return -ENOMEM;
	if (vm_get_state(v->vm) == VM_STOPPING) {
		v->restart_pending = true;
		return 0;
	}
	if (is_active(v))
		return 0; /* on its way up */
	/* An explicit start forgives earlier failures. */
	loop_timer_set(v->timer, 0);
	restart_reset(&v->history, v->m->host);
	launch(v, false);
	return 0;
}

int manager_stop(struct manager *m, const char *name, manager_done_cb cb, void *userdata)
{
	struct mvm *v = lookup(m, name, cb, userdata);

	if (!v)
		return -ENOENT;
	v->want = false;
	v->restart_pending = false;
	loop_timer_set(v->timer, 0);
	if (!is_active(v)) {
		vm_set_idle_state(v->vm, VM_STOPPED);
		if (cb)
			cb(userdata, 0, "not running");
		return 0;
	}
	if (add_waiter(v, WAIT_STOPPED, cb, userdata) < 0)
		return -ENOMEM;
	return vm_stop(v->vm, false);
}

/* A boot that runs is stopped only for one that can start: whether the
 * next boot's closure, disks, keys and shares are there is checked first
 * (what the running boot holds aside). */
static bool can_replace(struct mvm *v, const struct vm_def *def, struct schema_errors *errors)
{
	int r;

	if (!is_active(v) || vm_get_state(v->vm) == VM_STOPPING)
		return true;
	r = plan_check(v->m->host, def, errors);
	if (r < 0 && errors->n == 0)
		schema_error(errors, NULL, "checking the next boot: %s", strerror(-r));
	return r == 0;
}

int manager_check(struct manager *m, const struct defset *set, struct defset_errors *errors)
{
	size_t before = errors->n;

	for (size_t i = 0; i < set->n; i++) {
		const struct vm_def *d = set->entries[i].def;
		struct mvm *v = d ? find(m, d->name) : NULL;
		struct schema_errors e = {};

		if (!v || v->removed || def_equal(vm_def(v->vm), d))
			continue;
		if (!can_replace(v, d, &e))
			defset_errors_add(errors, set->entries[i].file, &e);
		schema_errors_clear(&e);
	}
	return errors->n == before ? 0 : -EINVAL;
}

int manager_restart(struct manager *m, const char *name, manager_done_cb cb, void *userdata)
{
	struct mvm *v = lookup(m, name, cb, userdata);
	struct schema_errors errors = {};

	if (!v)
		return -ENOENT;
	if (!is_active(v))
		return manager_start(m, name, cb, userdata);
	if (!can_replace(v, v->next_def ? v->next_def : vm_def(v->vm), &errors)) {
		_cleanup_free_ char *why = strv_join(errors.lines, "; ");
		_cleanup_free_ char *msg = xasprintf("not restarted, the running boot goes on: %s", why ? why : "");

		schema_errors_clear(&errors);
		log_error("%s: %s", v->name, msg ? msg : "not restarted");
		if (cb)
			cb(userdata, -EINVAL, msg ? msg : "not restarted");
		return -EINVAL;
	}
	v->want = true;
	v->restart_pending = true;
	if (add_waiter(v, WAIT_READY, cb, userdata) < 0)
		return -ENOMEM;
	return vm_stop(v->vm, false);
}

static void exec_next(struct mvm *v);

static void on_exec_done(struct qga *g, const struct qga_result *res, void *userdata)
{
	struct exec_req *e = userdata;
	struct mvm *v = e->v;

	(void)g;
	exec_done(e, res);
	exec_next(v);
}

/* Starts waiting commands while there is room. */
static void exec_next(struct mvm *v)
{
	struct exec_req *e;
	usec_t now;
	int r;

	while (v->execs_running < EXECS_AT_ONCE) {
		for (e = v->execs; e && e->running; e = e->next)
			;
		if (!e)
			return;
		now = now_usec();
		if (now >= e->deadline) {
			struct qga_result res = { .error = -ETIMEDOUT };

			exec_done(e, &res);
			continue;
		}
		e->running = true;
		v->execs_running++;
		r = vm_exec(v->vm, e->argv, e->deadline == UINT64_MAX ? 0 : e->deadline - now, on_exec_done, e);
		if (r < 0) {
			struct qga_result res = { .error = r };

			exec_done(e, &res);
		}
	}
}

int manager_exec(struct manager *m, const char *name, char **argv, usec_t timeout, qga_exec_cb cb,
		 void *userdata)
{
	struct mvm *v = name ? find(m, name) : NULL;
	struct exec_req *e, **t;

	if (!v || v->removed)
		return -ENOENT;
	if (!vm_is_ready(v->vm))
		return -ENOTCONN;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->argv = strv_copy(argv);
	if (!e->argv) {
		free(e);
		return -ENOMEM;
	}
	e->v = v;
	e->deadline = timeout ? now_usec() + timeout : UINT64_MAX;
	e->cb = cb;
	e->userdata = userdata;
	for (t = &v->execs; *t; t = &(*t)->next)
		;
	*t = e;
	exec_next(v);
	return 0;
}

void manager_cancel(struct manager *m, void *userdata)
{
	for (struct mvm *v = m->vms; v; v = v->next) {
		for (struct waiter *w = v->waiters; w; w = w->next)
			if (w->userdata == userdata)
				w->cb = NULL;
		for (struct exec_req *e = v->execs; e; e = e->next)
			if (e->userdata == userdata)
				e->cb = NULL;
	}
}

static json_t *status_of(struct mvm *v)
{
	const struct vm_def *d = vm_def(v->vm);
	usec_t started = vm_started_usec(v->vm), boot = vm_ready_usec(v->vm);
	pid_t pid = vm_pid(v->vm);
	const char *domain = vm_domain(v->vm);

	return json_pack("{s:s, s:s, s:b, s:o, s:i, s:f, s:o, s:o, s:s, s:s, s:o, s:b, s:s, s:s?, s:s?}", "name", v->name,
			 "state", vm_state_names[vm_get_state(v->vm)], "ready", vm_is_ready(v->vm), "pid",
			 pid ? json_integer(pid) : json_null(), "restarts", (int)v->restarts, "uptime_s",
			 started ? (double)(now_usec() - started) / USEC_PER_SEC : 0.0, "last_exit",
			 v->last_exit ? json_string(v->last_exit) : json_null(), "boot_time_s",
			 boot ? json_real((double)boot / USEC_PER_SEC) : json_null(), "host", vm_host(v->vm),
			 "driver", vm_driver_name(v->vm), "domain", domain ? json_string(domain) : json_null(),
			 "autostart", d->autostart, "restart", restart_policy_names[d->restart], "system", d->system, "image", d->image);
}

json_t *manager_status(struct manager *m, const char *name)
{
	json_t *a = json_array();
	size_t n = 0;

	if (!a)
		return NULL;
	for (struct mvm *v = m->vms; v; v = v->next) {
		if (v->dead || v->removed || (name && !streq(name, v->name)))
			continue;
		json_array_append_new(a, status_of(v));
		n++;
	}
	if (name && n == 0) {
		json_decref(a);
		return NULL;
	}
	return a;
}

int manager_console_attach(struct manager *m, const char *name, struct console_client *cc, bool writer, bool force,
			   char **ret_error)
{
	struct mvm *v = find(m, name);
	_cleanup_free_ char *holder = NULL;
	enum vm_state st;
	int r;

	*ret_error = NULL;
	if (!v || v->removed) {
		*ret_error = xasprintf("no such VM: %s", name);
		return -ENOENT;
	}
	st = vm_get_state(v->vm);
	if (st == VM_STOPPED || st == VM_FAILED) {
		*ret_error = xasprintf("%s is not running (%s); start it first", name, vm_state_names[st]);
		return -ESRCH;
	}
	r = console_hub_attach(&v->console, cc, writer, force, &holder);
	if (r == -EBUSY)
		*ret_error = xasprintf("%s's console is held by %s; --read-only watches along, --force takes it over",
				       name, holder ? holder : "someone");
	return r;
}

static struct mvm *console_of(struct manager *m, struct console_client *cc)
{
	for (struct mvm *v = m->vms; v; v = v->next)
		for (struct console_client *c = v->console.clients; c; c = c->next)
			if (c == cc)
				return v;
	return NULL;
}

void manager_console_replay(struct manager *m, struct console_client *cc)
{
	struct mvm *v = console_of(m, cc);

	if (v)
		console_hub_replay(&v->console, cc);
}

void manager_console_detach(struct manager *m, struct console_client *cc)
{
	struct mvm *v = console_of(m, cc);

	if (v)
		console_hub_detach(&v->console, cc);
}

int manager_console_input(struct manager *m, struct console_client *cc, const char *buf, size_t n)
{
	for (struct mvm *v = m->vms; v; v = v->next)
		if (v->console.writer == cc)
			return vm_console_write(v->vm, buf, n);
	return -EPERM;
}

const char *manager_log_path(struct manager *m, const char *name)
{
	struct mvm *v = find(m, name);

	return v && !v->removed ? vm_log_path(v->vm) : NULL;
}

size_t manager_launched(struct manager *m)
{
	return m->launched;
}

void manager_shutdown(struct manager *m, bool keep_running, manager_done_cb cb, void *userdata)
{
	m->shutting_down = true;
	m->shutdown_cb = cb;
	m->shutdown_userdata = userdata;
	for (struct mvm *v = m->vms; v; v = v->next) {
		if (v->dead)
			continue;
		loop_timer_set(v->timer, 0);
		if (keep_running)
			continue;
		v->want = false;
		if (is_active(v))
			vm_stop(v->vm, false);
	}
	if (keep_running) {
		m->shutdown_cb = NULL;
		if (cb)
			cb(userdata, 0, NULL);
		return;
	}
	check_shutdown(m);
}

void manager_kill_all(struct manager *m)
{
	for (struct mvm *v = m->vms; v; v = v->next)
		if (!v->dead && is_active(v))
			vm_stop(v->vm, true);
}

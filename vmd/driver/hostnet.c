/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>

#include "addr.h"
#include "child.h"
#include "hostnet.h"
#include "keydir.h"
#include "link.h"
#include "log.h"
#include "spawn.h"
#include "wg.h"
#include "wgconf.h"

#define HUB_START_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define HUB_RESTART_DELAY_USEC (1 * USEC_PER_SEC)
#define HUB_STOP_TIMEOUT_USEC (3 * USEC_PER_SEC)

/* A VM that should be a peer of a hub. */
struct hub_peer {
	char *vm;
	uint8_t public_key[WG_KEY_LEN];
	char *address;
};

struct hub {
	struct hostnet *net;
	const struct host_network *cfg;
	bool kernel;  /* a kernel link; else wireguard-go */
	bool created; /* vmd made the link (kernel) or started the process */
	uint8_t public_key[WG_KEY_LEN];
	struct wg *wg;
	/* wireguard-go */
	struct child proc;
	struct loop_source *restart_timer;
	struct hub_peer *peers;
	size_t n_peers;
};

struct hostnet {
	struct loop *loop;
	const struct host_config *host;
	bool daemon;
	struct nl_sock *sk;
	char **created; /* bridges vmd made */
	struct hub *hubs;
	size_t n_hubs;
};

static char *state_path(const struct host_config *host)
{
	return path_join(host->run_dir, "net.json");
}

static struct hub *find_hub(struct hostnet *n, const char *name)
{
	for (size_t i = 0; i < n->n_hubs; i++)
		if (streq(n->hubs[i].cfg->name, name))
			return &n->hubs[i];
	return NULL;
}

static void peers_clear(struct hub *h)
{
	for (size_t i = 0; i < h->n_peers; i++) {
		free(h->peers[i].vm);
		free(h->peers[i].address);
	}
	free(h->peers);
	h->peers = NULL;
	h->n_peers = 0;
}

static int hub_add_peer(struct hub *h, const uint8_t pub[WG_KEY_LEN], const char *address)
{
	char *ips[] = { (char *)address, NULL };
	struct wg_peer p = { .allowed_ips = ips };

	memcpy(p.public_key, pub, WG_KEY_LEN);
	return wg_peer_add(h->wg, &p);
}

/* The hub's own key: generated once into <state_dir>/networks/<name>. */
static int hub_key(const struct host_config *host, const char *name, uint8_t priv[WG_KEY_LEN],
		   uint8_t pub[WG_KEY_LEN])
{
	_cleanup_free_ char *dir = xasprintf("%s/networks/%s", host->state_dir, name);
	_cleanup_close_ int fd = -EBADF;
	bool created;
	int r;

	if (!dir)
		return -ENOMEM;
	r = mkdir_p(dir, 0700);
	if (r < 0)
		return r;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = wg_keydir_ensure(fd, &created);
	if (r < 0)
		return r;
	if (created)
		log_info("network %s: generated the hub's WireGuard key in %s", name, dir);
	r = wg_keydir_private(fd, priv);
	if (r < 0)
		return r;
	return wg_key_public(priv, pub);
}

static void on_hub_exit(struct child *c, const siginfo_t *si, void *userdata);
static void save_state_or_warn(struct hostnet *n);

static int wait_for_uapi(struct hub *h)
{
	_cleanup_free_ char *sock = xasprintf("%s/%s.sock", WG_UAPI_DIR, h->cfg->name);
	usec_t deadline = now_usec() + HUB_START_TIMEOUT_USEC;
	struct wg_device dev;
	struct pollfd p = { .fd = h->proc.pidfd, .events = POLLIN };

	if (!sock)
		return -ENOMEM;
	for (;;) {
		if (access(sock, F_OK) == 0 && wg_device_get(h->wg, &dev) == 0) {
			wg_device_clear(&dev);
			return 0;
		}
		if (poll(&p, 1, 20) > 0)
			return -ECHILD; /* it exited */
		if (now_usec() > deadline)
			return -ETIMEDOUT;
	}
}

static int spawn_hub(struct hub *h)
{
	const struct host_config *host = h->net->host;
	_cleanup_free_ char *bin = NULL;
	char *argv[] = { NULL, (char *)"-f", (char *)h->cfg->name, NULL };
	/* wireguard-go logs errors to stdout; LOG_LEVEL=error is its default. */
	char *envp[] = { (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LOG_LEVEL=error", NULL };
	int r;

	r = find_executable(host->wireguard_go, &bin);
	if (r < 0)
		return log_error_errno(r, "network %s: wireguard-go binary %s: %m", h->cfg->name, host->wireguard_go);
	argv[0] = bin;
	struct spawn_opts o = {
		.argv = argv,
		.envp = envp,
		.stdin_fd = -1,
		.stdout_fd = STDERR_FILENO,
		.stderr_fd = STDERR_FILENO,
		.profile = SANDBOX_TOOL,
		/* The hub outlives a daemon restart, as the VMs do. */
		.die_with_parent = false,
	};
	r = child_spawn(&h->proc, h->net->loop, &o, on_hub_exit, h);
	if (r < 0)
		return log_error_errno(r, "network %s: cannot start %s: %m", h->cfg->name, bin);
	r = wait_for_uapi(h);
	if (r < 0) {
		child_kill_wait(&h->proc, SIGKILL, 0);
		return log_error_errno(r, "network %s: %s did not come up (%s)", h->cfg->name, bin,
				       r == -ECHILD ? "it exited; see its message above" : "no UAPI socket in time");
	}
	return 0;
}

/* Guests on one hub reach each other through it: packets that arrive on
 * the hub may be forwarded (back out of it). Only this interface; the
 * host's other interfaces keep their setting. */
static int hub_forwarding(const char *name)
{
	_cleanup_free_ char *path = xasprintf("/proc/sys/net/ipv4/conf/%s/forwarding", name);
	_cleanup_close_ int fd = -EBADF;

	if (!path)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return write_all(fd, "1\n", 2);
}

/* Key, port and address; then every known peer again. */
static int hub_configure(struct hub *h, const uint8_t priv[WG_KEY_LEN])
{
	int r;

	r = wg_device_set(h->wg, priv, host_network_port(h->cfg));
	if (r < 0)
		return log_error_errno(r, "network %s: setting the hub's key and port %u: %m", h->cfg->name,
				       host_network_port(h->cfg));
	r = link_configure(h->net->sk, h->cfg->name, h->cfg->address);
	if (r < 0)
		return log_error_errno(r, "network %s: setting address %s and bringing it up: %m", h->cfg->name,
				       h->cfg->address);
	r = hub_forwarding(h->cfg->name);
	if (r < 0)
		return log_error_errno(r, "network %s: enabling forwarding on it: %m", h->cfg->name);
	for (size_t i = 0; i < h->n_peers; i++) {
		r = hub_add_peer(h, h->peers[i].public_key, h->peers[i].address);
		if (r < 0)
			log_error_errno(r, "network %s: adding VM %s as a peer: %m", h->cfg->name, h->peers[i].vm);
	}
	return 0;
}

static int hub_restart(struct hub *h)
{
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	int r;

	r = hub_key(h->net->host, h->cfg->name, priv, pub);
	if (r == 0)
		r = spawn_hub(h);
	if (r == 0) {
		r = hub_configure(h, priv);
		/* Half configured it is of no use, and it would keep the
		 * next attempt from starting another. */
		if (r < 0)
			child_kill_wait(&h->proc, SIGTERM, HUB_STOP_TIMEOUT_USEC);
	}
	sodium_memzero(priv, sizeof(priv));
	return r;
}

static void on_hub_timer(struct loop_source *s, void *userdata)
{
	struct hub *h = userdata;

	(void)s;
	if (hub_restart(h) == 0) {
		log_info("network %s: wireguard-go restarted (pid %d), %zu peers restored", h->cfg->name,
			 (int)h->proc.pid, h->n_peers);
		save_state_or_warn(h->net);
		return;
	}
	loop_timer_set(h->restart_timer, now_usec() + 5 * HUB_RESTART_DELAY_USEC);
}

static void on_hub_exit(struct child *c, const siginfo_t *si, void *userdata)
{
	struct hub *h = userdata;

	(void)c;
	/* No status, nor pid, for a hub a previous daemon started: not our
	 * child, and forgotten by now. */
	if (si)
		log_error("network %s: wireguard-go (pid %d) exited (%s %d); restarting it", h->cfg->name,
			  (int)si->si_pid, si->si_code == CLD_EXITED ? "status" : "signal", si->si_status);
	else
		log_error("network %s: wireguard-go exited; restarting it", h->cfg->name);
	if (!h->restart_timer)
		loop_add_timer(h->net->loop, 0, on_hub_timer, h, &h->restart_timer);
	loop_timer_set(h->restart_timer, now_usec() + HUB_RESTART_DELAY_USEC);
}

/* What a previous daemon left in net.json. */
struct prev_state {
	json_t *j;
};

static void prev_state_done(struct prev_state *p)
{
	json_decrefp(&p->j);
}

static bool prev_created(const struct prev_state *p, const char *name)
{
	json_t *a = p->j ? json_object_get(p->j, "created") : NULL, *v;
	size_t i;

	json_array_foreach(a, i, v)
		if (json_is_string(v) && streq(json_string_value(v), name))
			return true;
	return false;
}

static bool prev_hub(const struct prev_state *p, const char *name, struct proc_id *ret)
{
	json_t *h = p->j ? json_object_get(json_object_get(p->j, "hubs"), name) : NULL;
	json_t *pid = json_object_get(h, "pid"), *st = json_object_get(h, "start_time");

	if (!json_is_integer(pid) || !json_is_integer(st) || json_integer_value(pid) <= 1 ||
	    json_integer_value(pid) > INT32_MAX || json_integer_value(st) < 0)
		return false;
	*ret = (struct proc_id){ (pid_t)json_integer_value(pid), (uint64_t)json_integer_value(st) };
	return true;
}

/* A wireguard-go a previous daemon left: same process, and it answers. */
static int adopt_hub(struct hub *h, const struct proc_id *id)
{
	struct wg_device dev;
	int r;

	r = child_adopt(&h->proc, h->net->loop, id, on_hub_exit, h);
	if (r < 0)
		return r;
	if (wg_device_get(h->wg, &dev) < 0) {
		child_signal(&h->proc, SIGKILL);
		child_forget(&h->proc);
		return -ESTALE;
	}
	wg_device_clear(&dev);
	return 0;
}

static int hub_up(struct hub *h, const struct prev_state *prev)
{
	struct hostnet *n = h->net;
	const char *name = h->cfg->name;
	uint8_t priv[WG_KEY_LEN];
	struct proc_id id;
	bool is_bridge;
	int r;

	r = hub_key(n->host, name, priv, h->public_key);
	if (r < 0)
		return log_error_errno(r, "network %s: the hub's key in %s/networks/%s: %m", name, n->host->state_dir,
				       name);
	if (h->cfg->implementation != WG_IMPL_USERSPACE) {
		r = wireguard_link_create(n->sk, name, &h->created);
		if (r == 0) {
			h->kernel = true;
			h->created = h->created || prev_created(prev, name);
		} else if (h->cfg->implementation == WG_IMPL_KERNEL || (r != -EOPNOTSUPP && r != -EEXIST)) {
			/* auto: no module, or a tun of that name (a wireguard-go
			 * a previous daemon left, adopted below). */
			sodium_memzero(priv, sizeof(priv));
			return log_error_errno(r, "network %s: creating a kernel WireGuard link: %m%s", name,
					       r == -EOPNOTSUPP ? " (no wireguard module; use \"userspace\")" :
					       r == -EEXIST ? " (a link of another kind has that name)" : "");
		}
	}
	if (h->kernel) {
		r = wg_open(WG_BACKEND_KERNEL, name, NULL, &h->wg);
		log_info("network %s: kernel WireGuard hub%s", name, h->created ? "" : " (adopted)");
	} else {
		r = wg_open(WG_BACKEND_UAPI, name, NULL, &h->wg);
		if (r == 0 && prev_hub(prev, name, &id) && adopt_hub(h, &id) == 0) {
			h->created = true;
			log_info("network %s: adopted wireguard-go (pid %d)", name, (int)id.pid);
			sodium_memzero(priv, sizeof(priv));
			return 0;
		}
		if (r == 0 && link_lookup(n->sk, name, &is_bridge) >= 0) {
			r = -EEXIST;
			log_error("network %s: a link of that name exists and vmd does not run it", name);
		}
		if (r == 0) {
			r = spawn_hub(h);
			h->created = r == 0;
		}
		if (r == 0)
			log_info("network %s: wireguard-go hub (pid %d)", name, (int)h->proc.pid);
	}
	if (r == 0)
		r = hub_configure(h, priv);
	sodium_memzero(priv, sizeof(priv));
	return r;
}

static void hub_down(struct hub *h, bool keep)
{
	loop_source_freep(&h->restart_timer);
	/* wireguard-go removes its link and socket on SIGTERM. */
	if (!keep)
		child_kill_wait(&h->proc, SIGTERM, HUB_STOP_TIMEOUT_USEC);
	if (!keep && h->kernel && h->created)
		link_delete(h->net->sk, h->cfg->name);
	child_done(&h->proc);
	wg_close(h->wg);
	h->wg = NULL;
	peers_clear(h);
}

static int save_state(struct hostnet *n)
{
	_cleanup_free_ char *path = state_path(n->host), *text = NULL;
	_cleanup_(json_decrefp) json_t *j = json_object(), *created = json_array(), *hubs = json_object();

	if (!path || !j || !created || !hubs)
		return -ENOMEM;
	for (size_t i = 0; n->created && n->created[i]; i++)
		json_array_append_new(created, json_string(n->created[i]));
	for (size_t i = 0; i < n->n_hubs; i++) {
		struct proc_id id;

		if (n->hubs[i].kernel && n->hubs[i].created)
			json_array_append_new(created, json_string(n->hubs[i].cfg->name));
		if (child_identity(&n->hubs[i].proc, &id) == 0)
			json_object_set_new(hubs, n->hubs[i].cfg->name,
					    json_pack("{sI sI}", "pid", (json_int_t)id.pid, "start_time",
						      (json_int_t)id.start_time));
	}
	json_object_set_new(j, "created", TAKE_PTR(created));
	json_object_set_new(j, "hubs", TAKE_PTR(hubs));
	text = json_dumps(j, JSON_SORT_KEYS);
	return text ? write_file(path, text, 0644, 0) : -ENOMEM;
}

static void save_state_or_warn(struct hostnet *n)
{
	int r = save_state(n);

	if (r < 0)
		log_error_errno(r, "saving %s/net.json for the next daemon: %m", n->host->run_dir);
}

void hostnet_down(struct hostnet *n, bool keep)
{
	_cleanup_free_ char *path = NULL;

	if (!n)
		return;
	if (n->daemon && keep)
		save_state_or_warn(n);
	for (size_t i = 0; i < n->n_hubs; i++)
		hub_down(&n->hubs[i], keep);
	for (size_t i = 0; !keep && n->created && n->created[i]; i++) {
		/* Our own taps are gone with their QEMUs; a port left is
		 * someone else's, such as another vmd run's VM. */
		int r = link_count_ports(n->sk, n->created[i]);

		if (r > 0) {
			log_warning("network %s: bridge left in place: %d other port(s) still on it", n->created[i], r);
			continue;
		}
		r = r < 0 && r != -ENODEV ? r : link_delete(n->sk, n->created[i]);
		if (r < 0)
			log_error_errno(r, "network %s: deleting the bridge: %m", n->created[i]);
		else
			log_info("network %s: bridge deleted", n->created[i]);
	}
	if (n->daemon && !keep) {
		path = state_path(n->host);
		if (path)
			(void)unlink(path);
	}
	free(n->hubs);
	strv_free(n->created);
	netlink_close(n->sk);
	free(n);
}

/* A start that fails undoes what it did. */
static void hostnet_downp(struct hostnet **n)
{
	hostnet_down(*n, false);
	*n = NULL;
}

int hostnet_up(struct loop *l, const struct host_config *host, bool daemon, struct hostnet **ret)
{
	_cleanup_(hostnet_downp) struct hostnet *n = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_(prev_state_done) struct prev_state prev = {};
	int r = 0;

	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->loop = l;
	n->host = host;
	n->hubs = calloc(host->n_networks + 1, sizeof(*n->hubs));
	if (!n->hubs)
		return -ENOMEM;
	/* Set after the allocation: running out of memory there leaves
	 * net.json alone, which hostnet_down() of a daemon's hostnet removes. */
	n->daemon = daemon;
	if (host->n_networks == 0) {
		*ret = TAKE_PTR(n);
		return 0;
	}
	r = netlink_open(&n->sk);
	if (r < 0)
		return log_error_errno(r, "opening rtnetlink: %m");
	if (daemon) {
		path = state_path(host);
		if (path)
			prev.j = json_load_file(path, 0, NULL);
		if (prev.j && !json_is_object(prev.j))
			json_decrefp(&prev.j);
	}
	for (size_t i = 0; i < host->n_networks; i++) {
		const struct host_network *c = &host->networks[i];
		bool created = false;

		if (c->type != NET_BRIDGE)
			continue;
		r = bridge_ensure(n->sk, c->name, c->address, &created);
		if (r < 0) {
			log_error_errno(r, "network %s: setting up the bridge%s%s: %m%s", c->name, c->address ? " with " : "",
					c->address ? c->address : "",
					r == -EEXIST ? " (a link of another kind has that name)" : "");
			return r;
		}
		log_info("network %s: bridge %s", c->name, created ? "created" : "adopted");
		if ((created || prev_created(&prev, c->name)) && (r = strv_extend(&n->created, c->name)) < 0)
			return r;
	}
	for (size_t i = 0; daemon && i < host->n_networks; i++) {
		struct hub *h = &n->hubs[n->n_hubs];

		if (host->networks[i].type != NET_WIREGUARD)
			continue;
		*h = (struct hub){ .net = n, .cfg = &host->networks[i] };
		n->n_hubs++;
		r = child_init(&h->proc, "wireguard-go");
		if (r < 0)
			return log_error_errno(r, "network %s: %m", h->cfg->name);
		r = hub_up(h, &prev);
		if (r < 0)
			return r;
	}
	/* Kept current from now on, so that a daemon that crashed is
	 * succeeded by one that adopts its hubs and knows its bridges. */
	if (daemon)
		save_state_or_warn(n);
	*ret = TAKE_PTR(n);
	return 0;
}

int hostnet_tap(struct hostnet *n, const struct vm_def *def, unsigned queues, int *fds)
{
	char name[LINK_NAME_MAX + 1];
	int r;

	link_name_for_vm(def->name, name);
	r = tap_create(n->sk, name, def->network->bridge, queues, fds);
	if (r < 0)
		return log_error_errno(r, "%s: creating tap %s on bridge %s: %m%s", def->name, name,
				       def->network->bridge,
				       r == -EBUSY ? " (the name is in use)" :
				       r == -ENODEV ? " (no such bridge; it is created at daemon start)" : "");
	return 0;
}

static const struct def_key *wireguard_key(const struct vm_def *def)
{
	for (size_t i = 0; i < def->n_keys; i++)
		if (streq(def->keys[i].name, DEF_WIREGUARD_KEY))
			return &def->keys[i];
	return NULL;
}

/* Records (or updates) vm as a peer the hub should have. */
static int remember_peer(struct hub *h, const char *vm, const uint8_t pub[WG_KEY_LEN], const char *address)
{
	struct hub_peer *p = NULL;

	for (size_t i = 0; i < h->n_peers; i++)
		if (streq(h->peers[i].vm, vm))
			p = &h->peers[i];
	if (!p) {
		p = reallocarray(h->peers, h->n_peers + 1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		h->peers = p;
		p = &h->peers[h->n_peers++];
		*p = (struct hub_peer){};
		p->vm = strdup(vm);
	}
	free(p->address);
	p->address = strdup(address);
	memcpy(p->public_key, pub, WG_KEY_LEN);
	return p->vm && p->address ? 0 : -ENOMEM;
}

int hostnet_wg_join(struct hostnet *n, const struct vm_def *def, int keyfd)
{
	const struct def_wireguard *w = def->wireguard;
	struct hub *h = n ? find_hub(n, w->hub) : NULL;
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	char *text;
	char allowed[ADDR_STR_MAX];
	struct cidr net;
	int r;

	if (!h)
		return log_error_errno(ENOENT, "%s: WireGuard hub %s is not up%s", def->name, w->hub,
				       n && n->daemon ? "" : " (hubs are run by vmd daemon; vmd run cannot join one)");
	if (!h->wg)
		return log_error_errno(EAGAIN, "%s: WireGuard hub %s is restarting", def->name, w->hub);
	r = wg_keydir_private(keyfd, priv);
	if (r == -ENOENT)
		return log_error_errno(r, "%s: key %s: no privatekey; with \"generate\": \"none\" it must be put "
					  "there by hand", def->name, DEF_WIREGUARD_KEY);
	if (r < 0)
		return log_error_errno(r, "%s: key %s: reading privatekey: %m%s", def->name, DEF_WIREGUARD_KEY,
				       r == -EBADMSG ? " (not a WireGuard private key)" : "");
	wg_key_public(priv, pub);
	(void)cidr_parse(h->cfg->address, &net); /* validated */
	cidr_format(&net, true, allowed);
	struct wg_conf c = {
		.vm = def->name,
		.private_key = priv,
		.address = w->address,
		.hub = h->cfg->name,
		.hub_public_key = h->public_key,
		.endpoint = h->cfg->endpoint,
		.port = host_network_port(h->cfg),
		.allowed_ips = allowed,
		.keepalive = (uint16_t)h->cfg->keepalive_s,
	};
	text = wg_conf_format(&c);
	sodium_memzero(priv, sizeof(priv));
	if (!text)
		return log_error_errno(errno, "%s: formatting %s: %m", def->name, WG_CONF_NAME);
	/* vmd's own file in the key directory, replaced whole; never a key. */
	r = write_file_at(keyfd, WG_CONF_NAME, text, strlen(text), 0600, WRITE_FILE_SYNC);
	sodium_memzero(text, strlen(text));
	free(text);
	if (r < 0)
		return log_error_errno(r, "%s: writing %s into its key directory: %m", def->name, WG_CONF_NAME);
	r = remember_peer(h, def->name, pub, w->address);
	if (r == 0)
		r = hub_add_peer(h, pub, w->address);
	if (r < 0)
		return log_error_errno(r, "%s: adding it as a peer of hub %s: %m", def->name, w->hub);
	return 0;
}

void hostnet_sync(struct hostnet *n, const struct defset *set)
{
	for (size_t i = 0; n && i < n->n_hubs; i++) {
		struct hub *h = &n->hubs[i];
		struct wg_device dev = {};

		peers_clear(h);
		for (size_t j = 0; j < set->n; j++) {
			const struct vm_def *d = set->entries[j].def;
			const struct def_key *k;
			uint8_t pub[WG_KEY_LEN];

			if (!d || !d->wireguard || !streq(d->wireguard->hub, h->cfg->name))
				continue;
			k = wireguard_key(d);
			/* No key yet: the VM never started; its first start adds it. */
			if (!k || keydir_wg_public(n->host->keys_dir, d->name,
						   &(struct keydir_key){ .name = k->name, .source = k->source }, pub) < 0)
				continue;
			if (remember_peer(h, d->name, pub, d->wireguard->address) < 0)
				log_error("network %s: out of memory", h->cfg->name);
		}
		if (!h->wg || wg_device_get(h->wg, &dev) < 0)
			continue;
		for (size_t j = 0; j < dev.n_peers; j++) {
			bool wanted = false;

			for (size_t k = 0; k < h->n_peers && !wanted; k++)
				wanted = memcmp(h->peers[k].public_key, dev.peers[j].public_key, WG_KEY_LEN) == 0;
			if (!wanted) {
				int r = wg_peer_remove(h->wg, dev.peers[j].public_key);

				if (r < 0)
					log_error_errno(r, "network %s: removing a peer no VM has any more: %m",
							h->cfg->name);
				else
					log_info("network %s: removed the peer of a VM that left the configuration",
						 h->cfg->name);
			}
		}
		/* Peers the hub lost (it restarted) or whose address changed. */
		for (size_t k = 0; k < h->n_peers; k++) {
			const struct wg_peer *p = wg_device_find_peer(&dev, h->peers[k].public_key);

			if (!p || !p->allowed_ips || !p->allowed_ips[0] || !streq(p->allowed_ips[0], h->peers[k].address) ||
			    p->allowed_ips[1])
				hub_add_peer(h, h->peers[k].public_key, h->peers[k].address);
		}
		wg_device_clear(&dev);
	}
}

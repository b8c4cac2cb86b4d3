/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Host settings (/etc/vmd/vmd.json): every field has a built-in default,
 * so a missing or empty file works. */

#include "schema.h"

enum accel { ACCEL_AUTO, ACCEL_KVM, ACCEL_TCG };
extern const char *const accel_names[];
enum net_type { NET_BRIDGE, NET_WIREGUARD };
extern const char *const net_type_names[];
enum wg_impl { WG_IMPL_AUTO, WG_IMPL_KERNEL, WG_IMPL_USERSPACE };
extern const char *const wg_impl_names[];
/* How a VM is run: vmd's own QEMU and virtiofsd, or a libvirt domain. */
/* virtiofsd's command-line style as the settings spell it, indexed by
 * enum virtiofsd_style (share/virtiofsd.h, which the model does not see;
 * test-argv checks that the two agree). */
extern const char *const virtiofsd_style_names[];

#define LIBVIRT_URI_MAX 512

#define WG_DEFAULT_PORT 51820
#define WG_DEFAULT_KEEPALIVE 25

#define CONTROL_IDLE_TIMEOUT_DEFAULT_S 30

/* One entry of "networks": a bridge the VMs' taps join, or a WireGuard hub
 * the VMs are peers of. Its name is the host interface's name. */
struct host_network {
	char *name;
	int type;           /* enum net_type */
	char *address;      /* "10.0.0.1/24": the host's address and the network;
	                     * optional for a bridge, required for a hub */
	/* WireGuard only: */
	uint32_t listen_port;   /* 0: WG_DEFAULT_PORT */
	char *endpoint;         /* the host address guests reach the hub at */
	uint32_t keepalive_s;   /* the guests' PersistentKeepalive; 0: off */
	int implementation;     /* enum wg_impl */
};

/* One entry of "hosts": another machine's libvirtd, for VMs placed there
 * with "host". Its name is what definitions and status call it. */
struct host_remote {
	char *name;
	char *libvirt_uri;
	char *virtiofsd; /* the path on that host; NULL: the local setting */
	int accel;       /* enum accel; auto: what that libvirtd offers */
};

struct host_config {
	char *definitions_dir;
	char *state_dir;
	char *run_dir;
	char *log_dir;
	char *keys_dir;
	char *store_dir;
	/* Nix's registry of indirect GC roots; missing: no roots. */
	char *gcroots_dir;
	int accel; /* enum accel */
	char *qemu;
	char *virtiofsd;
	int virtiofsd_style; /* enum virtiofsd_style (share/virtiofsd.h) */
	uint32_t ready_timeout_s;
	uint32_t start_timeout_s;
	uint32_t stop_timeout_s;
	uint64_t log_max_bytes;
	/* The daemon's restart policy. */
	uint32_t restart_delay_min_ms;
	uint32_t restart_delay_max_ms;
	uint32_t restart_reset_s;
	uint32_t start_limit_burst;
	uint32_t start_limit_interval_s;
	uint32_t start_limit_unready;
	/* Who may use the control socket besides root. */
	char *control_group;
	/* A control connection with nothing in progress is closed after this. */
	uint32_t control_idle_timeout_s;
	/* Who QEMU runs as (the QEMU driver): never root. */
	char *qemu_user;
	char *wireguard_go;
	/* Container images: the closure that boots them (NULL: none), and
	 * how they are unpacked. */
	char *image_system;
	bool image_setuid;
	uint64_t image_max_mib;
	struct host_network *networks; /* sorted by name */
	size_t n_networks;
	int driver; /* enum driver: the default for definitions */
	char *libvirt_uri;
	struct host_remote *hosts; /* sorted by name */
	size_t n_hosts;
};
const struct host_network *host_network_find(const struct host_config *c, const char *name);
const struct host_remote *host_remote_find(const struct host_config *c, const char *name);
const char *check_libvirt_uri(const char *s);
/* The hub's port (listen_port or its default). */
uint16_t host_network_port(const struct host_network *n);

struct vm_def;
/* Checks a definition's network and wireguard fields against the host's
 * networks: the bridge and hub exist and are of that type, the addresses
 * lie inside them and are not the host's own. */
void host_check_def(const struct host_config *c, const struct vm_def *def, struct schema_errors *errors);

#define HOST_CONFIG_DEFAULT_PATH "/etc/vmd/vmd.json"

/* Loads path; path == NULL means the default path, which may be missing.
 * Errors go to errors ("FIELD: reason"), and -EINVAL is returned. */
int host_config_load(const char *path, struct host_config **ret, struct schema_errors *errors);
int host_config_parse_buffer(const char *buf, size_t len, struct host_config **ret,
			     struct schema_errors *errors);
void host_config_free(struct host_config *c);
static inline void host_config_freep(struct host_config **c)
{
	host_config_free(*c);
}
#define _cleanup_host_config_ _cleanup_(host_config_freep)
json_t *host_config_to_json(const struct host_config *c);
/* The settings' schema (schema_describe()). */
json_t *host_config_describe(void);

/* Whether path (resolved through symlinks where it exists) overlaps one of
 * the directories vmd empties at every start and stop: <run_dir>/vms and
 * <state_dir>/disks. A definition must not hand those to a guest as keys or
 * shares, nor use them for base images. Returns the directory it overlaps
 * (free it) or NULL. */
char *host_swept_dir(const struct host_config *c, const char *path);

/* What this host has, for the checks that depend on it: MemTotal from
 * /proc/meminfo and the online CPUs; 0 where unknown. */
struct host_resources {
	uint64_t memory_mib;
	unsigned cpus;
};
void host_resources_read(struct host_resources *ret);
/* Warnings ("FIELD: warning: reason") for what this host cannot give a
 * VM it runs: more memory than it has, more vCPUs than it has CPUs. They
 * are warnings because they depend on the host (a definition may be
 * checked on another one), and such a VM may still run: its memory is
 * taken as the guest touches it, its vCPUs share the CPUs. A VM of another
 * host is not checked. */
void host_check_fit(const struct host_resources *res, const struct vm_def *def, struct schema_errors *warnings);

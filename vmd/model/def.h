/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* VM definitions: one JSON file per VM, parsed into plain structs and
 * validated against every rule in the definition reference (README.md). */

#include "schema.h"

enum restart_policy { RESTART_ALWAYS, RESTART_ON_FAILURE, RESTART_NEVER };
enum key_generate { KEY_GENERATE_NONE, KEY_GENERATE_WIREGUARD };
enum disk_format { DISK_FORMAT_RAW, DISK_FORMAT_QCOW2 };
/* What runs a VM (vmd/driver/): a definition's "driver", the settings' default. */
enum driver { DRIVER_QEMU, DRIVER_LIBVIRT };

struct def_key {
	char *name;
	char *target;
	char *source; /* NULL: <keys_dir>/<vm>/<name> */
	bool read_only;
	int generate; /* enum key_generate */
};

struct def_share {
	char *tag;
	char *source;
	char *target;
	bool read_only;
};

struct def_disk {
	char *name;
	uint64_t size_mib; /* 0 with a base: the base's size */
	char *mount;
	bool persistent;
	char *base;      /* read-only base image: the disk is a qcow2 overlay per boot */
	int base_format; /* enum disk_format */
};

struct def_network {
	char *bridge;  /* a bridge in the host settings' networks */
	char *mac;     /* "auto" (stable, from the name) or "52:54:00:12:34:56" */
	char *address; /* optional "10.0.0.2/24", inside the bridge's network */
};

struct def_wireguard {
	char *hub;     /* a wireguard network in the host settings */
	char *address; /* "10.77.0.2/32", inside the hub's network */
};

struct vm_def {
	char *name;
	char *system; /* exactly one of system and image */
	char *image;  /* an OCI layout directory or a docker-archive */
	char *image_ref;
	char **cmd; /* image overrides; NULL: the image's */
	char **env;
	char *workdir;
	uint32_t vcpus;
	uint32_t memory_mib;
	uint32_t ready_timeout_s; /* 0: the host's */
	uint32_t stop_timeout_s;  /* 0: the host's */
	bool autostart;
	int restart; /* enum restart_policy */
	char **kernel_params;
	struct def_key *keys;
	size_t n_keys;
	struct def_share *shares;
	size_t n_shares;
	struct def_disk *disks;
	size_t n_disks;
	struct def_network *network;     /* NULL: no network */
	struct def_wireguard *wireguard; /* NULL: not on a hub */
	char *driver; /* "qemu", "libvirt" or NULL: the host settings' */
	char *host;   /* one of the host settings' hosts, or NULL: this one */
};

/* The key directory that holds a VM's WireGuard identity and wg0.conf. */
#define DEF_WIREGUARD_KEY "wireguard"
#define DEF_WIREGUARD_TARGET "/etc/wireguard"

#define DEF_NAME_MAX 32
#define DEF_DISK_NAME_MAX 20 /* virtio-blk serial: 20 bytes */
#define DEF_TAG_MAX 36       /* virtio-fs tag: 36 bytes */

extern const char *const restart_policy_names[];
extern const char *const key_generate_names[];
extern const char *const disk_format_names[];
extern const char *const driver_names[];

/* Parses and validates one definition. Returns 0, -EINVAL with errors
 * filled in, or another -errno. *ret is set only on success. */
int def_parse(json_t *json, struct vm_def **ret, struct schema_errors *errors);
int def_parse_buffer(const char *buf, size_t len, struct vm_def **ret, struct schema_errors *errors);
int def_load_file(const char *path, struct vm_def **ret, struct schema_errors *errors);
void def_free(struct vm_def *def);
static inline void def_freep(struct vm_def **d)
{
	def_free(*d);
}
#define _cleanup_def_ _cleanup_(def_freep)

/* Canonical JSON (all fields, defaults filled in). Two definitions are
 * equal when their canonical JSON is. */
json_t *def_to_json(const struct vm_def *def);
/* The definitions' schema (schema_describe()). */
json_t *def_describe(void);
bool def_equal(const struct vm_def *a, const struct vm_def *b);

/* The driver that runs def (enum driver): its own, or the settings'
 * default; a VM on another host always runs through libvirt. */
int def_driver(const struct vm_def *def, int host_default);

/* The VM's MAC address (auto or given); def must have a network. */
void def_mac(const struct vm_def *def, uint8_t mac[6]);

/* The virtiofs tag under which a key directory is exported. */
char *def_key_tag(const struct def_key *key);

/* Checks what can only be checked on the host that runs the VM: the
 * closure exists, resolves (through symlinks such as a nix-build result
 * link) to a directory inside store_dir, which is all the guest sees, and
 * has kernel, initrd and init (for an image: the host's image_system). The resolved path goes to *ret if given.
 * store_dir must be resolved already (def_resolve_store(), once for many
 * checks). */
int def_check_system(const struct vm_def *def, const char *image_system, const char *store_dir, char **ret,
		     struct schema_errors *errors);
/* The closure a definition boots: its system, or for an image the host
 * settings' image_system (NULL if unset). */
const char *def_system(const struct vm_def *def, const char *image_system);
char *def_resolve_store(const char *store_dir);


/* The guest kernel command line, built by a pure function: at boot for
 * QEMU or libvirt, and at load time to check a definition against the
 * limit. Tests compare it with a golden file. */
#define KERNEL_CMDLINE_MAX 2048
/* The guest kernel command line: console, panic, hostname, the guest's
 * address on its bridge as the kernel's ip= (ip=ADDR:::NETMASK:::off), the
 * systemd.mount-extra= entries for keys, shares and disks (parents before
 * children), init=<system>/init, the closure's kernel-params, then the definition's
 * kernel_params. Returns -E2BIG beyond KERNEL_CMDLINE_MAX. ret may be NULL
 * (only the length is checked). */
int kernel_cmdline(const struct vm_def *d, const char *system, const char *closure_params, char **ret);

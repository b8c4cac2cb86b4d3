/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Host settings (/etc/vmd/vmd.json): every field has a built-in default,
 * so a missing or empty file works. */

#include "schema.h"

enum accel { ACCEL_AUTO, ACCEL_KVM, ACCEL_TCG };
extern const char *const accel_names[];

struct host_config {
	char *definitions_dir;
	char *state_dir;
	char *run_dir;
	char *log_dir;
	char *keys_dir;
	char *store_dir;
	int accel; /* enum accel */
	char *qemu;
	char *virtiofsd;
	int virtiofsd_style; /* enum virtiofsd_style */
	uint32_t ready_timeout_s;
	uint32_t stop_timeout_s;
	uint64_t log_max_bytes;
	/* The daemon's restart policy. */
	uint32_t restart_delay_min_ms;
	uint32_t restart_delay_max_ms;
	uint32_t restart_reset_s;
	uint32_t start_limit_burst;
	uint32_t start_limit_interval_s;
	/* Who may use the control socket besides root. */
	char *control_group;
};

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

/* Whether path (resolved through symlinks where it exists) overlaps one of
 * the directories vmd empties at every start and stop: <run_dir>/vms and
 * <state_dir>/disks. A definition must not hand those to a guest as keys or
 * shares, nor use them for base images. Returns the directory it overlaps
 * (free it) or NULL. */
char *host_swept_dir(const struct host_config *c, const char *path);

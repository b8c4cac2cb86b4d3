/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A set of definitions: every *.json in a directory (or the files given),
 * validated one by one and against each other (unique names), and the
 * difference between two sets. A set with any error is unusable whole:
 * nothing is started from it. */

#include "def.h"
#include "host.h"

struct defset_entry {
	char *file;
	struct vm_def *def;
};

struct defset {
	struct defset_entry *entries;
	size_t n;
};

/* Errors for one file, as "FIELD: reason" lines. */
struct defset_error {
	char *file;
	struct schema_errors errors;
};

struct defset_errors {
	struct defset_error *files;
	size_t n;
};

/* Loads paths (files, or directories of *.json, sorted). host, if not
 * NULL, also checks each closure on this host and each network against
 * its settings. Across the set, names, MACs, addresses and host interface
 * names must be unique. Returns 0, or -EINVAL with errors filled in (the
 * set then holds whatever parsed). */
int defset_load(char *const *paths, const struct host_config *host, struct defset *set,
		struct defset_errors *errors);
/* host_check_fit() for every definition: warnings, per file, that do not
 * make the set unusable. */
void defset_check_fit(const struct defset *set, const struct host_resources *res, struct defset_errors *warnings);
void defset_clear(struct defset *set);
void defset_errors_clear(struct defset_errors *errors);
/* Moves src's lines to errors, under file. */
void defset_errors_add(struct defset_errors *errors, const char *file, struct schema_errors *src);
/* Prints "FILE: FIELD: reason" lines. */
void defset_errors_print(const struct defset_errors *errors, FILE *f);
/* The same lines as a JSON array of strings. */
json_t *defset_errors_json(const struct defset_errors *errors);

const struct vm_def *defset_find(const struct defset *set, const char *name);
/* Removes the entry and returns its definition (owned by the caller). */
struct vm_def *defset_take(struct defset *set, const char *name);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Benchmark: what "vmd reload" does with 1000 definitions, in one run:
 * load every file, validate it (closure checks included), and diff the
 * set against what the daemon runs, here 1000 VMs of which 10 % change.
 * No VM is started (autostart is off), so only vmd's own work is timed.
 * Target: under 50 ms. Usage: bench-reconcile CLOSURE [N] */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "defset.h"
#include "host.h"
#include "manager.h"

static void write_defs(const char *dir, const char *closure, int n, int generation)
{
	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *p = xasprintf("%s/vm%04d.json", dir, i);
		/* Every tenth VM changes from one generation to the next. */
		unsigned mem = 256 + (i % 10 == 0 ? 64u * (unsigned)generation : 0);
		FILE *f = fopen(p, "w");

		if (!f)
			abort();
		fprintf(f,
			"{\"name\": \"vm%04d\", \"system\": \"%s\", \"memory_mib\": %u, \"autostart\": false,"
			" \"vcpus\": %d, \"kernel_params\": [\"quiet\"],"
			" \"keys\": [{\"name\": \"ssh\", \"target\": \"/etc/ssh\", \"read_only\": false}],"
			" \"disks\": [{\"name\": \"scratch\", \"size_mib\": 512, \"mount\": \"/var\"},"
			" {\"name\": \"db\", \"size_mib\": 1024, \"mount\": \"/var/lib/db\", \"persistent\": true}]}\n",
			i, closure, mem, 1 + i % 4);
		fclose(f);
	}
}

static double reload_once(struct manager *m, char *dir, const struct host_config *host, json_t **summary)
{
	char *paths[] = { dir, NULL };
	struct defset set = {};
	struct defset_errors errors = {};
	usec_t t0 = now_usec();

	if (defset_load(paths, host, &set, &errors) < 0) {
		defset_errors_print(&errors, stderr);
		exit(1);
	}
	if (manager_apply(m, &set, summary) < 0)
		abort();
	defset_clear(&set);
	return (double)(now_usec() - t0) / USEC_PER_MSEC;
}

int main(int argc, char **argv)
{
	char tmpl[] = "/tmp/vmd-bench-reconcile-XXXXXX";
	char *dir = mkdtemp(tmpl);
	int n = argc > 2 ? atoi(argv[2]) : 1000;
	struct schema_errors errors = {};
	struct host_config *host;
	struct virtiofsd_caps caps = {};
	struct vm_options opts = { .caps = &caps, .qemu = "/bin/false", .virtiofsd = "/bin/false" };
	struct manager *m;
	struct loop *l;
	json_t *summary = NULL;
	double first, best = 1e9;

	if (argc < 2 || !dir) {
		fprintf(stderr, "usage: bench-reconcile CLOSURE [N]\n");
		return 1;
	}
	if (loop_new(&l) < 0 || host_config_parse_buffer("", 0, &host, &errors) < 0 ||
	    manager_new(l, host, &opts, &m) < 0)
		return 1;
	write_defs(dir, argv[1], n, 0);
	first = reload_once(m, dir, host, &summary);
	json_decref(summary);
	/* Steady state: 10 % changed, the rest unchanged. Best of 5. */
	for (int g = 1; g <= 5; g++) {
		double t;

		write_defs(dir, argv[1], n, g);
		t = reload_once(m, dir, host, &summary);
		if (g == 1)
			printf("second reload: %zu changed, %zu unchanged\n",
			       json_array_size(json_object_get(summary, "changed")),
			       json_array_size(json_object_get(summary, "unchanged")));
		json_decref(summary);
		if (t < best)
			best = t;
	}
	printf("first load of %d definitions: %.1f ms\n", n, first);
	printf("reload (load + validate + diff) of %d definitions: %.1f ms (target < 50 ms)\n", n, best);
	manager_free(m);
	host_config_free(host);
	loop_free(l);
	{
		int fd = open(dir, O_RDONLY | O_DIRECTORY);
		rm_rf_children(fd);
		close(fd);
		rmdir(dir);
	}
	return best < 50 ? 0 : 3;
}

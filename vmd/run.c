/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "hostnet.h"
#include "libvirt.h"
#include "log.h"
#include "qemu.h"
#include "term.h"
#include "vm.h"
#include "vmlog.h"

struct run {
	struct loop *loop;
	struct vm *vm;
	char **cmd;
	usec_t cmd_timeout;
	bool show_console;
	int exit_code; /* -1 until decided */
	int signal;    /* the first SIGINT/SIGTERM received */
	bool cmd_done;
	bool was_ready;
	bool signal_after_cmd;
	bool image; /* an image: its entrypoint's status is the run's */
	struct hostnet *net;
	struct lv *lv;
	struct loop_source *sigs;
	/* Interactive (a terminal on stdin, no CMD): typing goes to the
	 * guest, the escape key powers it off. */
	struct loop_source *keys;
	int escape;
};

/* Everything the run created goes, VM first. */
static void run_done(struct run *run)
{
	loop_source_freep(&run->keys);
	term_restore();
	vm_free(run->vm);
	lv_free(run->lv);
	hostnet_down(run->net, false);
	loop_source_freep(&run->sigs);
	loop_free(run->loop);
}

static void on_ready(struct vm *vm, void *userdata);
static void on_exited(struct vm *vm, enum vm_exit_reason reason, const char *detail, void *userdata);
static void on_console(struct vm *vm, const char *buf, size_t n, void *userdata);

static const struct vm_callbacks run_callbacks = {
	.ready = on_ready,
	.exited = on_exited,
	.console = on_console,
};

static void on_console(struct vm *vm, const char *buf, size_t n, void *userdata)
{
	struct run *run = userdata;

	(void)vm;
	if (run->show_console) {
		fwrite(buf, 1, n, stdout);
		fflush(stdout);
	}
}

static void print_output(const struct qga_result *res)
{
	if (res->out_len)
		fwrite(res->out, 1, res->out_len, stdout);
	fflush(stdout);
	if (res->err_len)
		fwrite(res->err, 1, res->err_len, stderr);
	fflush(stderr);
}

static void on_exec_done(struct qga *g, const struct qga_result *res, void *userdata)
{
	struct run *run = userdata;

	(void)g;
	if (res->error == -ECONNRESET) {
		/* The agent went away with the VM; on_exited() says why. */
		return;
	}
	run->cmd_done = true;
	if (run->signal) {
		/* Interrupted: what the command did once we had started shutting
		 * the guest down is a consequence of that; on_exited() makes the
		 * status 128+signal. */
		if (!res->error)
			print_output(res);
		return;
	}
	if (res->error == -ENOEXEC) {
		/* Like a shell: 127 for a command that could not be run. */
		log_error("%s: cannot run %s in the guest: %s", vm_name(run->vm), run->cmd[0],
			  res->error_text ? res->error_text : "guest-exec failed");
		run->exit_code = EXIT_NOT_FOUND;
	} else if (res->error == -ETIMEDOUT && !res->error_text) {
		/* Like timeout(1): the command was killed in the guest, and the VM
		 * goes down too. */
		log_error("%s: the command did not finish within --timeout", vm_name(run->vm));
		run->exit_code = EXIT_TIMEOUT;
	} else if (res->error) {
		log_error_errno(res->error, "%s: running the command in the guest: %s%s%m",
				vm_name(run->vm), res->error_text ? res->error_text : "",
				res->error_text ? ": " : "");
		run->exit_code = EXIT_RUNTIME;
	} else {
		print_output(res);
		if (res->truncated)
			log_warning("%s: the guest agent truncated the command's output", vm_name(run->vm));
		if (run->exit_code < 0)
			run->exit_code = res->status;
	}
	vm_stop(run->vm, false);
}

static void on_ready(struct vm *vm, void *userdata)
{
	struct run *run = userdata;
	usec_t t = vm_ready_usec(vm);
	int r;

	run->was_ready = true;
	fprintf(stderr, "%s: ready in %llu.%02llu s\n", vm_name(vm), (unsigned long long)(t / USEC_PER_SEC),
		(unsigned long long)(t % USEC_PER_SEC / 10000));
	fflush(stderr);
	if (!run->cmd || run->signal)
		return;
	r = vm_exec(vm, run->cmd, run->cmd_timeout, on_exec_done, run);
	if (r < 0) {
		log_error_errno(r, "%s: cannot run the command: %m", vm_name(vm));
		run->exit_code = EXIT_RUNTIME;
		vm_stop(vm, false);
	}
}

static void on_exited(struct vm *vm, enum vm_exit_reason reason, const char *detail, void *userdata)
{
	struct run *run = userdata;
	bool expected;

	/* What ends a run normally: our own stop (after the command, or on a
	 * signal), or the guest powering off by itself once it was up. */
	expected = reason == VM_EXIT_STOPPED || (reason == VM_EXIT_POWEROFF && run->was_ready);
	/* An image's entrypoint ended, whatever its status: like docker run. */
	if (run->image && vm_exit_status(vm) >= 0 && (reason == VM_EXIT_POWEROFF || reason == VM_EXIT_FAILURE)) {
		expected = true;
		if (run->exit_code < 0)
			run->exit_code = vm_exit_status(vm);
	}
	if (reason == VM_EXIT_STOPPED && !run->cmd_done && !run->signal && run->cmd)
		expected = false;
	if (!expected && !run->was_ready && reason == VM_EXIT_POWEROFF)
		detail = "the guest powered off before it was ready";
	if (!expected) {
		_cleanup_free_ char *tail = vm_log_tail(vm, 12);

		log_error("%s: %s", vm_name(vm), detail ? detail : vm_exit_reason_names[reason]);
		if (tail && *tail)
			fprintf(stderr, "vmd: last lines of %s:\n%s\n", vm_log_path(vm), tail);
		if (run->exit_code < 0 || !run->cmd_done)
			run->exit_code = EXIT_RUNTIME;
	} else if (run->cmd && !run->cmd_done && !run->signal) {
		log_error("%s: the guest powered off before the command finished", vm_name(vm));
		run->exit_code = EXIT_RUNTIME;
	}
	/* A signal that came after the command finished does not change its
	 * status; one that interrupted the run does. */
	if (run->signal && !run->signal_after_cmd)
		run->exit_code = 128 + run->signal;
	if (run->exit_code < 0)
		run->exit_code = EXIT_OK;
	loop_exit(run->loop, run->exit_code);
}

static void on_signal(struct loop_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct run *run = userdata;

	(void)s;
	if (!run->signal) {
		run->signal = (int)si->ssi_signo;
		run->signal_after_cmd = run->cmd && run->cmd_done;
		fprintf(stderr, "%s: %s: shutting the VM down (again to kill it)\n", vm_name(run->vm),
			strsignal((int)si->ssi_signo));
		vm_stop(run->vm, false);
	} else {
		fprintf(stderr, "%s: killing the VM\n", vm_name(run->vm));
		vm_stop(run->vm, true);
	}
}

static void on_keys(struct loop_source *s, int fd, uint32_t revents, void *userdata)
{
	struct run *run = userdata;
	char buf[4096], *e;
	ssize_t n = read(fd, buf, sizeof(buf));

	(void)revents;
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		loop_source_freep(&run->keys);
		return;
	}
	(void)s;
	e = memchr(buf, run->escape, (size_t)n);
	if ((e ? e - buf : n) > 0)
		(void)vm_console_write(run->vm, buf, (size_t)(e ? e - buf : n));
	if (!e)
		return;
	/* Asked for: the run ends with status 0 once the VM is down. */
	loop_source_freep(&run->keys);
	if (!run->signal) {
		char esc[3];

		term_format_escape(run->escape, esc);
		fprintf(stderr, "\r\n%s: %s: shutting the VM down\r\n", vm_name(run->vm), esc);
		vm_stop(run->vm, false);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vmd run [-c SETTINGS] [--accel auto|kvm|tcg] [--timeout SEC] [-q] DEF [-- CMD ARG...]\n\n"
		"Boots the VM in DEF in the foreground with fresh ephemeral disks.\n"
		"Without CMD, prints the console until the guest powers off or Ctrl-C;\n"
		"at a terminal, the run is interactive: what you type goes to the guest's\n"
		"serial console (Ctrl-C too), and Ctrl-] (--escape) powers the VM off.\n"
		"With CMD, waits for READY, runs CMD in the guest through the guest agent,\n"
		"prints its stdout and stderr, powers the VM off and exits with CMD's status.\n"
		"For an image (a definition with \"image\"), like docker run: the image's\n"
		"entrypoint runs, CMD replaces its Cmd, the console (its output) is printed,\n"
		"and vmd exits with the entrypoint's status once the guest powered off.\n"
		"Everything the run created (processes, sockets, disks) is gone when it exits.\n\n"
		"  -c, --config FILE   host settings (default %s)\n"
		"      --accel MODE    override the accelerator (auto: KVM only where it works)\n"
		"      --timeout SEC   give up on CMD after SEC seconds (default: no limit)\n"
		"  -q, --quiet         do not print the console\n"
		"      --escape ^X     the key that powers an interactive run off (default ^])\n"
		"  -v, --verbose       debug output\n",
		HOST_CONFIG_DEFAULT_PATH);
}

int cmd_run(int argc, char **argv, const char *config)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "accel", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 't' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "escape", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	_cleanup_host_config_ struct host_config *host = NULL;
	_cleanup_(schema_errors_clear) struct schema_errors errors = {};
	_cleanup_def_ struct vm_def *def = NULL;
	_cleanup_(vm_tools_done) struct vm_tools tools = {};
	_cleanup_(run_done) struct run run = { .exit_code = -1, .escape = TERM_ESCAPE_DEFAULT };
	const char *accel_arg = NULL;
	int accel = -1, c, r;
	bool quiet = false;

	/* State transitions are the daemon's business; a run shows them
	 * with -v. */
	log_set_level(LOG_LEVEL_WARNING);
	optind = 1;
	while ((c = getopt_long(argc, argv, "+c:qvh", options, NULL)) >= 0)
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'a':
			accel_arg = optarg;
			break;
		case 't': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (!*optarg || *end || v == 0 || v > 86400 * 365) {
				fprintf(stderr, "vmd run: --timeout: expected seconds, got \"%s\"\n", optarg);
				return EXIT_BAD_INPUT;
			}
			run.cmd_timeout = (usec_t)v * USEC_PER_SEC;
			break;
		}
		case 'q':
			quiet = true;
			break;
		case 'e':
			if (term_parse_escape(optarg, &run.escape) < 0) {
				fprintf(stderr, "vmd run: --escape: expected ^X or ctrl-X (a control key), got \"%s\"\n",
					optarg);
				return EXIT_BAD_INPUT;
			}
			break;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_BAD_INPUT;
		}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_BAD_INPUT;
	}
	if (accel_arg) {
		for (int i = 0; accel_names[i]; i++)
			if (streq(accel_arg, accel_names[i]))
				accel = i;
		if (accel < 0) {
			fprintf(stderr, "vmd run: --accel must be auto, kvm or tcg\n");
			return EXIT_BAD_INPUT;
		}
	}
	if (optind + 1 < argc) {
		if (!streq(argv[optind + 1], "--") || optind + 2 >= argc) {
			fprintf(stderr, "vmd run: expected \"-- CMD [ARG...]\" after %s\n", argv[optind]);
			return EXIT_BAD_INPUT;
		}
		run.cmd = argv + optind + 2;
	}
	run.show_console = !quiet && !run.cmd;
	/* The guest agent speaks JSON: only UTF-8 arguments can be passed. */
	for (char **a = run.cmd; a && *a; a++) {
		json_t *t = json_string(*a);

		if (!t) {
			fprintf(stderr, "vmd run: argument \"%s\" is not valid UTF-8\n", *a);
			return EXIT_BAD_INPUT;
		}
		json_decref(t);
	}

	if (cli_load_host(config, &host) < 0)
		return EXIT_BAD_INPUT;
	if (def_load_file(argv[optind], &def, &errors) == 0) {
		host_check_def(host, def, &errors);
		if (def->wireguard)
			schema_error(&errors, "wireguard", "a VM on a WireGuard hub needs vmd daemon, which runs the "
							   "hub and its peer list; vmd run cannot join one");
	}
	if (errors.n == 0 && def->image) {
		/* CMD replaces the image's Cmd; nothing runs through the agent. */
		run.image = true;
		if (run.cmd) {
			strv_free(def->cmd);
			def->cmd = strv_copy(run.cmd);
			if (!def->cmd) {
				log_error_errno(-ENOMEM, "%m");
				return EXIT_RUNTIME;
			}
			run.cmd = NULL;
		}
		run.show_console = !quiet;
	}
	if (errors.n > 0) {
		cli_print_errors(argv[optind], &errors);
		return EXIT_BAD_INPUT;
	}

	if (vm_tools_resolve(host, accel >= 0 ? accel : host->accel, def->name, &tools) < 0)
		return EXIT_RUNTIME;
	log_debug("accelerator: %s (%s)", accel_names[tools.accel], tools.accel_reason);

	static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
	r = loop_new(&run.loop);
	if (r == 0)
		r = loop_add_signals(run.loop, signals, ELEMENTSOF(signals), on_signal, &run, &run.sigs);
	if (r < 0) {
		log_error_errno(r, "setting up the event loop: %m");
		return EXIT_RUNTIME;
	}

	/* The bridges (created if missing, and then deleted again). */
	if (def->network) {
		r = hostnet_up(run.loop, host, false, &run.net);
		if (r < 0)
			return EXIT_RUNTIME;
	}

	if (def_driver(def, host->driver) == DRIVER_LIBVIRT) {
		r = lv_new(run.loop, &run.lv);
		if (r < 0) {
			log_error_errno(r, "setting up libvirt: %m");
			return EXIT_RUNTIME;
		}
	}

	struct vm_options opts = vm_tools_options(&tools);
	/* A throwaway run must not outlive vmd, even after kill -9 (with
	 * libvirt: its domain dies with vmd's connection). */
	opts.die_with_parent = true;
	opts.lock_wait = 3 * USEC_PER_SEC;
	opts.net = run.net;
	opts.lv = run.lv;
	opts.announce = true;
	r = vm_new(run.loop, host, &opts, TAKE_PTR(def), &run_callbacks, &run, &run.vm);
	if (r < 0) {
		log_error_errno(r, "%m");
		return EXIT_RUNTIME;
	}
	r = vm_start(run.vm);
	if (r < 0)
		return EXIT_RUNTIME;
	if (run.show_console && !run.image && isatty(STDIN_FILENO) && term_raw(STDIN_FILENO) == 0) {
		char esc[3];

		term_format_escape(run.escape, esc);
		fprintf(stderr, "%s: interactive console; %s powers the VM off\r\n", vm_name(run.vm), esc);
		r = loop_add_io(run.loop, STDIN_FILENO, EPOLLIN, on_keys, &run, &run.keys);
		if (r < 0) {
			log_error_errno(r, "watching the terminal: %m");
			vm_stop(run.vm, true);
		}
	}
	run.exit_code = -1;
	loop_run(run.loop);
	return run.exit_code < 0 ? EXIT_RUNTIME : run.exit_code;
}

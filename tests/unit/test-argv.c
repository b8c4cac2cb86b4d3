/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>

#include "def.h"
#include "domxml.h"
#include "link.h"
#include "plan.h"
#include "qemu.h"
#include "test.h"
#include "virtiofsd.h"

/* Compares argv with tests/golden/NAME.args (one argument per line), or
 * rewrites the file with VMD_UPDATE_GOLDEN=1. A command-line change shows
 * up as a readable diff of that file. */
static void golden_text(const char *file, const char *got_nl)
{
	_cleanup_free_ char *path = xasprintf("%s/golden/%s", TESTS_DIR, file), *want = NULL;

	if (getenv("VMD_UPDATE_GOLDEN")) {
		FILE *f = fopen(path, "w");
		ASSERT(f);
		fputs(got_nl, f);
		fclose(f);
		return;
	}
	ASSERT(read_file(path, 1 << 20, &want, NULL) == 0);
	if (!streq(want, got_nl))
		fprintf(stderr, "%s differs; got:\n%s", path, got_nl);
	ASSERT_STREQ(want, got_nl);
}

static void golden(const char *name, char **argv)
{
	_cleanup_free_ char *file = xasprintf("%s.args", name);
	_cleanup_free_ char *got = strv_join(argv, "\n");
	_cleanup_free_ char *got_nl = xasprintf("%s\n", got);

	golden_text(file, got_nl);
}

static struct vm_def *load(const char *file)
{
	_cleanup_free_ char *path = xasprintf("%s/defs/valid/%s", TESTS_DIR, file);
	struct schema_errors errors = {};
	struct vm_def *d = NULL;

	ASSERT(def_load_file(path, &d, &errors) == 0);
	return d;
}

/* The settings every golden plan is made with: the defaults, with fixed
 * programs (the defaults' paths differ between builds). */
static const char golden_settings[] = "{\"qemu\": \"/usr/bin/true\", \"virtiofsd\": \"/usr/bin/true\"}";

/* The plan vmd would make for d on a host with the default settings,
 * without looking at the host: paths from the layout only. */
static void make_plan(const struct vm_def *d, const struct vm_options *opts, const char *closure_params,
		      struct host_config **host, struct vm_plan *p)
{
	struct schema_errors errors = {};

	ASSERT(host_config_parse_buffer(golden_settings, strlen(golden_settings), host, &errors) == 0);
	ASSERT(plan_init(p, NULL, *host, opts, d, NULL) == 0);
	p->system = strdup(d->system);
	ASSERT(kernel_cmdline(d, p->system, closure_params, &p->cmdline) == 0);
	ASSERT(plan_layout(p) == 0);
}

static void golden_plan(const char *name)
{
	_cleanup_free_ char *json = xasprintf("%s.json", name), *qfile = xasprintf("%s.qemu.args", name);
	_cleanup_free_ char *xfile = xasprintf("%s.domain.xml", name), *xml = NULL, *joined = NULL, *args = NULL;
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_host_config_ struct host_config *host = NULL;
	_cleanup_def_ struct vm_def *d = load(json);
	struct vm_options opts = {
		.accel = ACCEL_TCG,
		.qemu = "/usr/bin/qemu-system-x86_64",
		.virtiofsd = "/usr/libexec/virtiofsd",
	};
	struct vm_plan p;

	make_plan(d, &opts, "loglevel=4\n", &host, &p);
	/* As many tap queues as vCPUs, as far as a tap allows. */
	ASSERT(qemu_plan_argv(&p, d->network ? (d->vcpus < TAP_QUEUES_MAX ? d->vcpus : TAP_QUEUES_MAX) : 0, false,
			      &argv) == 0);
	joined = strv_join(argv, "\n");
	args = xasprintf("%s\n", joined);
	golden_text(qfile, args);
	ASSERT(libvirt_plan_xml(&p, false, "eyJ2ZXJzaW9uIjogMX0=", &xml) == 0);
	golden_text(xfile, xml);
	plan_done(&p);
}

/* Every valid definition, as QEMU's argv and as a libvirt domain:
 * tests/golden/NAME.qemu.args and NAME.domain.xml. */
TEST(golden_plans)
{
	_cleanup_free_ char *dir = xasprintf("%s/defs/valid", TESTS_DIR);
	struct dirent **list = NULL;
	int n = scandir(dir, &list, NULL, alphasort);

	ASSERT(n > 0);
	for (int i = 0; i < n; i++) {
		size_t len = strlen(list[i]->d_name);

		if (len > 5 && streq(list[i]->d_name + len - 5, ".json")) {
			list[i]->d_name[len - 5] = 0;
			golden_plan(list[i]->d_name);
		}
		free(list[i]);
	}
	free(list);
}

/* The daemon's image unpack helper: this binary, with the settings that
 * matter on its command line, the image after "--". */
TEST(unpack_helper_argv)
{
	static const char settings[] = "{\"qemu\": \"/usr/bin/true\", \"virtiofsd\": \"/usr/bin/true\", "
				       "\"image_max_mib\": 1024, \"image_setuid\": true}";
	struct schema_errors errors = {};
	_cleanup_host_config_ struct host_config *host = NULL;
	_cleanup_strv_free_ char **argv = NULL, **plain = NULL;
	struct vm_def d = { .name = (char *)"img", .image = (char *)"/srv/images/app.tar", .image_ref = (char *)"app:1" };
	struct vm_plan p;

	ASSERT(host_config_parse_buffer(settings, strlen(settings), &host, &errors) == 0);
	ASSERT(plan_init(&p, NULL, host, NULL, &d, NULL) == 0);
	ASSERT(plan_unpack_argv(&p, &argv) == 0);
	golden("unpack-helper", argv);
	/* No ref, the default settings: neither --ref nor --setuid. */
	d.image_ref = NULL;
	host->image_setuid = false;
	ASSERT(plan_unpack_argv(&p, &plain) == 0);
	ASSERT(!strv_contains(plain, "--ref") && !strv_contains(plain, "--setuid"));
	ASSERT_STREQ(plain[strv_length(plain) - 1], "/srv/images/app.tar");
	plan_done(&p);
}

/* What the data-driven files cannot show: KVM, a single queue, vhost. */
TEST(qemu_options)
{
	_cleanup_host_config_ struct host_config *host = NULL;
	_cleanup_def_ struct vm_def *d = load("network.json");
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_free_ char *all = NULL, *xml = NULL;
	struct vm_options opts = { .accel = ACCEL_KVM, .qemu = "/usr/bin/qemu-system-x86_64" };
	struct vm_plan p;

	make_plan(d, &opts, "", &host, &p);
	ASSERT(qemu_plan_argv(&p, 1, true, &argv) == 0);
	all = strv_join(argv, " ");
	ASSERT(strstr(all, " pc,accel=kvm,memory-backend=mem -cpu host "));
	/* vhost-net as an fd vmd opened, after the disks and the two virtiofsd
	 * connections (the store, the wireguard key). */
	ASSERT_STREQ(argv[strv_length(argv) - 4], "tap,id=net0,fd=8,vhost=on,vhostfd=26");
	ASSERT_STREQ(argv[strv_length(argv) - 2], "virtio-net-pci,netdev=net0,mac=52:54:00:ab:cd:ef");
	ASSERT(libvirt_plan_xml(&p, true, "", &xml) == 0);
	ASSERT(strstr(xml, "<domain type='kvm'>") && strstr(xml, "<cpu mode='host-passthrough'/>"));
	plan_done(&p);

	/* Settings cannot name a directory with a comma, but should a path
	 * ever have one, QEMU's option syntax needs it doubled. */
	struct qemu_fs fs[] = { { "nix-store", 9 } };
	struct qemu_config c = { .binary = "/usr/bin/qemu-system-x86_64", .name = "edge", .vcpus = 1,
				 .memory_mib = 512, .kernel = "/nix/st,ore/k", .initrd = "/i", .cmdline = "",
				 .qmp_fd = 3, .console_fd = 4, .notify_fd = 5, .agent_fd = 6, .fs = fs, .n_fs = 1 };
	strv_free(argv);
	ASSERT(qemu_argv(&c, &argv) == 0);
	ASSERT(strv_contains(argv, "/nix/st,,ore/k"));
	/* The virtiofsd connection is an fd vmd connected: QEMU needs no path. */
	ASSERT(strv_contains(argv, "socket,id=fs0,fd=9"));
}

/* The metadata element as virDomainGetMetadata() gives it back. */
TEST(domain_metadata)
{
	_cleanup_free_ char *text = NULL;

	ASSERT(domxml_metadata_text("<vmd:vm xmlns:vmd=\"urn:x-vmd:domain:1\">eyJ2ZXJzaW9uIjogMX0=</vmd:vm>", &text) == 0);
	ASSERT_STREQ(text, "eyJ2ZXJzaW9uIjogMX0=");
	text = mfree(text);
	ASSERT(domxml_metadata_text("<vm>abc</vm>", &text) == 0);
	ASSERT_STREQ(text, "abc");
	ASSERT(domxml_metadata_text("<vmd:vm xmlns:vmd=\"urn:x-vmd:domain:1\"/>", &text) == -EBADMSG);
	ASSERT(domxml_metadata_text("no element", &text) == -EBADMSG);
	ASSERT(domxml_metadata_text("<a>x<b", &text) == -EBADMSG);
	ASSERT(domxml_metadata_text(">x</vm>", &text) == -EBADMSG); /* found by fuzz-state */
}

TEST(kernel_cmdline)
{
	struct vm_def *d = load("full.json");
	_cleanup_free_ char *cmdline = NULL;
	_cleanup_strv_free_ char **argv = NULL;

	ASSERT(kernel_cmdline(d, d->system, "loglevel=4 quiet\n\n", &cmdline) == 0);
	/* Parents mount before children: /var before /var/lib/db. */
	ASSERT(strstr(cmdline, ":/var:") < strstr(cmdline, ":/var/lib/db:"));
	ASSERT(strstr(cmdline, "init=/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-edge-system/init"));
	ASSERT(strv_extend(&argv, cmdline) == 0);
	golden("cmdline-full", argv);
	def_free(d);
}

TEST(kernel_cmdline_limit)
{
	struct vm_def *d = load("minimal.json");
	char params[2100];
	_cleanup_free_ char *cmdline = NULL;

	memset(params, 'x', sizeof(params) - 1);
	params[sizeof(params) - 1] = 0;
	ASSERT(kernel_cmdline(d, d->system, params, &cmdline) == -E2BIG);
	def_free(d);
}

TEST(virtiofsd_styles)
{
	struct virtiofsd_config c = {
		.binary = "/usr/lib/qemu/virtiofsd",
		.source = "/nix/store",
		.fd = 3,
		.cache = VIRTIOFSD_CACHE_ALWAYS,
		.read_only = true,
		.world_readable = true,
	};
	struct virtiofsd_caps qemu = { .style = VIRTIOFSD_STYLE_QEMU };
	struct virtiofsd_caps rust = { .style = VIRTIOFSD_STYLE_RUST, .readonly = true, .inode_file_handles = true,
				       .modcaps = true };
	struct virtiofsd_caps rust_old = { .style = VIRTIOFSD_STYLE_RUST };
	char **argv = NULL;

	ASSERT(virtiofsd_argv(&c, &qemu, &argv) == 0);
	golden("virtiofsd-qemu-store", argv);
	strv_free(argv);

	c.binary = "/usr/libexec/virtiofsd";
	ASSERT(virtiofsd_argv(&c, &rust, &argv) == 0);
	golden("virtiofsd-rust-store", argv);
	strv_free(argv);

	c.source = "/var/lib/vmd/keys/edge/ssh";
	c.cache = VIRTIOFSD_CACHE_NONE;
	c.read_only = false;
	ASSERT(virtiofsd_argv(&c, &rust_old, &argv) == 0);
	golden("virtiofsd-rust-old-key", argv);
	strv_free(argv);

	c.binary = "/usr/lib/qemu/virtiofsd";
	ASSERT(virtiofsd_argv(&c, &qemu, &argv) == 0);
	golden("virtiofsd-qemu-key", argv);
	strv_free(argv);
}

TEST(virtiofsd_help_parsing)
{
	struct virtiofsd_caps caps;

	ASSERT(virtiofsd_parse_help("usage: virtiofsd [options]\n    -o source=PATH  shared directory tree\n",
				    VIRTIOFSD_STYLE_AUTO, &caps) == 0);
	ASSERT_EQ(caps.style, VIRTIOFSD_STYLE_QEMU);
	ASSERT(!caps.readonly);
	ASSERT(virtiofsd_parse_help("Usage: virtiofsd [OPTIONS] --shared-dir <SHARED_DIR>\n"
				    "      --readonly\n      --inode-file-handles <FH>\n      --modcaps <MODCAPS>\n",
				    VIRTIOFSD_STYLE_AUTO, &caps) == 0);
	ASSERT_EQ(caps.style, VIRTIOFSD_STYLE_RUST);
	ASSERT(caps.readonly);
	ASSERT(caps.inode_file_handles);
	ASSERT(caps.modcaps);
	ASSERT(virtiofsd_parse_help("Usage: virtiofsd --shared-dir <DIR>\n", VIRTIOFSD_STYLE_AUTO, &caps) == 0);
	ASSERT(!caps.readonly);
	ASSERT(!caps.inode_file_handles);
	ASSERT(!caps.modcaps);
	ASSERT(virtiofsd_parse_help("something else entirely", VIRTIOFSD_STYLE_AUTO, &caps) == -EPROTONOSUPPORT);
	ASSERT(virtiofsd_parse_help("something else entirely", VIRTIOFSD_STYLE_QEMU, &caps) == 0);

	/* The settings (host.c) name the styles in this enum's order. */
	ASSERT(streq(virtiofsd_style_names[VIRTIOFSD_STYLE_AUTO], "auto"));
	ASSERT(streq(virtiofsd_style_names[VIRTIOFSD_STYLE_QEMU], "qemu"));
	ASSERT(streq(virtiofsd_style_names[VIRTIOFSD_STYLE_RUST], "rust"));
	ASSERT(!virtiofsd_style_names[VIRTIOFSD_STYLE_RUST + 1]);
}

TEST(accel)
{
	_cleanup_free_ char *root = NULL;
	char tmpl[] = "/tmp/vmd-accel-XXXXXX";
	const char *reason;
	int accel;
	FILE *f;

	root = strdup(mkdtemp(tmpl));
	ASSERT(root);
	/* No /dev/kvm: TCG. */
	ASSERT(accel_resolve(ACCEL_AUTO, root, &accel, &reason) == 0);
	ASSERT_EQ(accel, ACCEL_TCG);
	/* A usable /dev/kvm from kvm_intel: KVM. */
	_cleanup_free_ char *dev = xasprintf("%s/dev", root), *kvm = xasprintf("%s/dev/kvm", root);
	_cleanup_free_ char *mod = xasprintf("%s/sys/module/kvm_intel", root);
	_cleanup_free_ char *pvm = xasprintf("%s/sys/module/kvm_pvm", root);
	ASSERT(mkdir_p(dev, 0755) == 0 && mkdir_p(mod, 0755) == 0);
	f = fopen(kvm, "w");
	ASSERT(f);
	fclose(f);
	ASSERT(accel_resolve(ACCEL_AUTO, root, &accel, &reason) == 0);
	ASSERT_EQ(accel, ACCEL_KVM);
	/* PVM: never KVM, whatever else looks fine. */
	ASSERT(mkdir_p(pvm, 0755) == 0);
	ASSERT(accel_resolve(ACCEL_AUTO, root, &accel, &reason) == 0);
	ASSERT_EQ(accel, ACCEL_TCG);
	ASSERT(strstr(reason, "PVM"));
	/* An explicit choice is taken as it is. */
	ASSERT(accel_resolve(ACCEL_KVM, root, &accel, &reason) == 0);
	ASSERT_EQ(accel, ACCEL_KVM);
	rmdir(pvm);
	rmdir(mod);
	_cleanup_free_ char *m1 = xasprintf("%s/sys/module", root), *m2 = xasprintf("%s/sys", root);
	rmdir(m1);
	rmdir(m2);
	unlink(kvm);
	rmdir(dev);
	rmdir(root);
}

RUN_TESTS(T(golden_plans), T(qemu_options), T(domain_metadata), T(kernel_cmdline), T(kernel_cmdline_limit), T(virtiofsd_styles),
	  T(virtiofsd_help_parsing), T(accel), T(unpack_helper_argv))

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cmdline.h"
#include "def.h"
#include "domxml.h"
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

/* A QEMU config for d as vmd would build it, with fixed fds. */
static struct qemu_config config_for(const struct vm_def *d, int accel, const char *cmdline)
{
	return (struct qemu_config){
		.binary = "/usr/bin/qemu-system-x86_64",
		.name = d->name,
		.accel = accel,
		.vcpus = d->vcpus,
		.memory_mib = d->memory_mib,
		.kernel = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-edge-system/kernel",
		.initrd = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-edge-system/initrd",
		.cmdline = cmdline,
		.qmp_fd = 3, .console_fd = 4, .notify_fd = 5, .agent_fd = 6,
	};
}

TEST(qemu_minimal)
{
	struct vm_def *d = load("minimal.json");
	_cleanup_free_ char *cmdline = NULL;
	_cleanup_strv_free_ char **argv = NULL;
	struct qemu_fs fs[] = { { "nix-store", "/run/vmd/vms/edge/fs0.sock" } };

	ASSERT(kernel_cmdline(d, d->system, "loglevel=4\n", &cmdline) == 0);
	struct qemu_config c = config_for(d, ACCEL_TCG, cmdline);
	c.fs = fs;
	c.n_fs = 1;
	ASSERT(qemu_argv(&c, &argv) == 0);
	golden("qemu-minimal", argv);
	def_free(d);
}

TEST(qemu_full)
{
	struct vm_def *d = load("full.json");
	_cleanup_free_ char *cmdline = NULL;
	_cleanup_strv_free_ char **argv = NULL;
	/* A settings directory with a comma must be escaped for QEMU. */
	struct qemu_fs fs[] = {
		{ "nix-store", "/run/vm,d/vms/edge/fs0.sock" },
		{ "key-wireguard", "/run/vm,d/vms/edge/fs1.sock" },
		{ "key-ssh", "/run/vm,d/vms/edge/fs2.sock" },
		{ "key-tls", "/run/vm,d/vms/edge/fs3.sock" },
		{ "data", "/run/vm,d/vms/edge/fs4.sock" },
	};
	struct qemu_disk disks[] = {
		{ "scratch", "/var/lib/vmd/disks/edge/scratch.img", true, false },
		{ "db", "/var/lib/vmd/volumes/edge/db.img", false, false },
		{ "base", "/var/lib/vmd/disks/edge/base.qcow2", true, true },
		{ "big", "/var/lib/vmd/disks/edge/big.qcow2", true, true },
	};

	ASSERT(kernel_cmdline(d, d->system, "", &cmdline) == 0);
	struct qemu_config c = config_for(d, ACCEL_KVM, cmdline);
	c.fs = fs;
	c.n_fs = ELEMENTSOF(fs);
	c.disks = disks;
	c.n_disks = ELEMENTSOF(disks);
	ASSERT(qemu_argv(&c, &argv) == 0);
	golden("qemu-full", argv);
	def_free(d);
}

/* A multiqueue tap (4 vCPUs, 4 queues) and a single-queue one, with the
 * implicit WireGuard key mount and ip= on the kernel command line. */
TEST(qemu_network)
{
	struct vm_def *d = load("network.json");
	_cleanup_free_ char *cmdline = NULL;
	_cleanup_strv_free_ char **argv = NULL, **argv1 = NULL;
	struct qemu_fs fs[] = {
		{ "nix-store", "/run/vmd/vms/web/fs0.sock" },
		{ "key-wireguard", "/run/vmd/vms/web/fs1.sock" },
	};
	const int taps[] = { 8, 9, 10, 11 };

	ASSERT(kernel_cmdline(d, d->system, "", &cmdline) == 0);
	struct qemu_config c = config_for(d, ACCEL_TCG, cmdline);
	c.fs = fs;
	c.n_fs = ELEMENTSOF(fs);
	c.mac = d->network->mac;
	c.tap_fds = taps;
	c.n_taps = 4;
	ASSERT(qemu_argv(&c, &argv) == 0);
	golden("qemu-network", argv);
	c.n_taps = 1;
	c.vhost = true;
	ASSERT(qemu_argv(&c, &argv1) == 0);
	ASSERT_STREQ(argv1[strv_length(argv1) - 4], "tap,id=net0,fd=8,vhost=on");
	ASSERT_STREQ(argv1[strv_length(argv1) - 2], "virtio-net-pci,netdev=net0,mac=52:54:00:ab:cd:ef");
	def_free(d);
}

/* The libvirt domain for the same VMs; <binary path> is vmd's wrapper. */
TEST(domain_minimal)
{
	struct domxml_fs fs[] = { { "nix-store", "/nix/store", "/run/vmd/vms/edge/fs0-virtiofsd", VIRTIOFSD_CACHE_ALWAYS } };
	struct domxml_config c = {
		.name = "vmd-edge",
		.vcpus = 1,
		.memory_mib = 512,
		.kernel = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-edge-system/kernel",
		.initrd = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-edge-system/initrd",
		.cmdline = "console=ttyS0 panic=-1 systemd.hostname=edge init=/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-edge-system/init",
		.fs = fs,
		.n_fs = ELEMENTSOF(fs),
	};
	_cleanup_free_ char *xml = NULL;

	ASSERT(domxml_build(&c, &xml) == 0);
	golden_text("domain-minimal.xml", xml);
}

TEST(domain_full)
{
	struct domxml_fs fs[] = {
		{ "nix-store", "/nix/store", "/run/vmd/vms/web/fs0-virtiofsd", VIRTIOFSD_CACHE_ALWAYS },
		{ "key-wireguard", "/var/lib/vmd/keys/web/wireguard", "/run/vmd/vms/web/fs1-virtiofsd", VIRTIOFSD_CACHE_NONE },
		{ "data", "/srv/a&b'<c>", "/run/vmd/vms/web/fs2-virtiofsd", VIRTIOFSD_CACHE_AUTO },
	};
	struct domxml_disk disks[] = {
		{ "scratch", "/var/lib/vmd/disks/web/scratch.img", false, true },
		{ "db", "/var/lib/vmd/volumes/web/db.img", false, false },
		{ "base", "/var/lib/vmd/disks/web/base.qcow2", true, true },
	};
	struct domxml_config c = {
		.name = "vmd-web",
		.kvm = true,
		.vcpus = 4,
		.memory_mib = 2048,
		.kernel = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-edge-system/kernel",
		.initrd = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-edge-system/initrd",
		.cmdline = "console=ttyS0 panic=-1 systemd.hostname=web ip=10.0.0.2:::255.255.255.0:::off "
			   "systemd.mount-extra=key-wireguard:/etc/wireguard:virtiofs:ro init=/nix/store/x/init",
		.fs = fs,
		.n_fs = ELEMENTSOF(fs),
		.disks = disks,
		.n_disks = ELEMENTSOF(disks),
		.bridge = "vmbr0",
		.mac = "52:54:00:ab:cd:ef",
		.tap = "vm-web",
		.queues = 4,
		.metadata = "eyJ2ZXJzaW9uIjogMX0=",
	};
	_cleanup_free_ char *xml = NULL, *text = NULL;

	ASSERT(domxml_build(&c, &xml) == 0);
	golden_text("domain-full.xml", xml);

	/* The metadata element as virDomainGetMetadata() gives it back. */
	ASSERT(domxml_metadata_text("<vmd:vm xmlns:vmd=\"urn:x-vmd:domain:1\">eyJ2ZXJzaW9uIjogMX0=</vmd:vm>", &text) == 0);
	ASSERT_STREQ(text, "eyJ2ZXJzaW9uIjogMX0=");
	free(text);
	text = NULL;
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
	};
	struct virtiofsd_caps qemu = { .style = VIRTIOFSD_STYLE_QEMU };
	struct virtiofsd_caps rust = { .style = VIRTIOFSD_STYLE_RUST, .readonly = true, .inode_file_handles = true };
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
				    "      --readonly\n      --inode-file-handles <FH>\n",
				    VIRTIOFSD_STYLE_AUTO, &caps) == 0);
	ASSERT_EQ(caps.style, VIRTIOFSD_STYLE_RUST);
	ASSERT(caps.readonly);
	ASSERT(caps.inode_file_handles);
	ASSERT(virtiofsd_parse_help("Usage: virtiofsd --shared-dir <DIR>\n", VIRTIOFSD_STYLE_AUTO, &caps) == 0);
	ASSERT(!caps.readonly);
	ASSERT(!caps.inode_file_handles);
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

RUN_TESTS(T(qemu_minimal), T(qemu_full), T(qemu_network), T(domain_minimal), T(domain_full), T(kernel_cmdline), T(kernel_cmdline_limit), T(virtiofsd_styles),
	  T(virtiofsd_help_parsing), T(accel))

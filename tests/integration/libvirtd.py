# SPDX-License-Identifier: LGPL-2.1-or-later
"""A libvirtd of a test's own: a "host" that vmd reaches through a unix
socket URI, and that the test may stop and start again.

It lives in a mount namespace of its own, held by a sleeping process, with
fresh tmpfs over libvirt's state, run, log and config directories, so it
shares nothing with the system's libvirtd or with another test's (only the
QEMU capabilities cache in /var/cache/libvirt, which libvirt writes
atomically). libvirtd itself can then be killed and started again in the
same namespace, finding its running domains as a restarted daemon does.
Its domains' QEMU processes run in that namespace too; hide= paths are
covered there by empty tmpfs, so the host "lacks" them. netns= runs it in
that network namespace (its taps and bridges are there)."""

import os
import shutil
import signal
import subprocess
import time

LIBVIRT_DIRS = ["/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/etc/libvirt"]


class PrivateLibvirtd:
    def __init__(self, root, name="libvirt", hide=(), netns=None):
        self.dir = os.path.join(root, name)
        self.sock_dir = os.path.join(self.dir, "sock")
        os.makedirs(self.sock_dir)
        self.uri = f"qemu+unix:///system?socket={self.sock_dir}/libvirt-sock"
        self.log = os.path.join(self.dir, "libvirtd.log")
        self.pidfile = os.path.join(self.dir, "libvirtd.pid")
        for d in LIBVIRT_DIRS:
            os.makedirs(d, exist_ok=True)
        mounts = " && ".join([f"mount -t tmpfs tmpfs {d}" for d in LIBVIRT_DIRS] +
                             [f"mount -t tmpfs tmpfs '{h}'" for h in hide])
        conf = (f"unix_sock_dir = \\\"{self.sock_dir}\\\"\\n"
                f"log_outputs = \\\"3:file:{self.log}\\\"\\n")
        # No virtlogd (QEMU's output straight to a file) and no cgroups of
        # their own: nothing to clash with the system's libvirtd.
        qconf = "stdio_handler = \\\"file\\\"\\ncgroup_controllers = [ ]\\n"
        script = (f"{mounts} && mkdir -p /var/log/libvirt/qemu && "
                  f"printf \"{conf}\" > /etc/libvirt/libvirtd.conf && "
                  f"printf \"{qconf}\" > /etc/libvirt/qemu.conf && "
                  f"touch {self.dir}/ready && exec sleep infinity")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.holder = subprocess.Popen([*prefix, "unshare", "--mount", "--propagation", "private", "sh", "-c",
                                        script])
        self._wait(lambda: os.path.exists(os.path.join(self.dir, "ready")), "the namespace")
        self.daemon = None
        self.start()

    def _wait(self, pred, what, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            if self.holder.poll() is not None:
                raise AssertionError(f"the namespace of {self.dir} is gone ({self.holder.returncode})")
            if pred():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what} of {self.dir}")

    def virsh(self, *args, check=True):
        return subprocess.run(["virsh", "-q", "-c", self.uri, *args], capture_output=True, text=True, check=check,
                              timeout=120)

    def answers(self):
        return subprocess.run(["virsh", "-c", self.uri, "version"], capture_output=True,
                              timeout=60).returncode == 0

    def start(self):
        assert self.daemon is None
        # The holder's mount and network namespaces.
        self.daemon = subprocess.Popen(["nsenter", "-t", str(self.holder.pid), "-m", "-n", "libvirtd", "-f",
                                        "/etc/libvirt/libvirtd.conf", "-p", self.pidfile],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait(self.answers, "libvirtd to answer")

    def stop(self):
        """libvirtd goes (SIGTERM); its domains keep running."""
        if self.daemon is None:
            return
        self.daemon.send_signal(signal.SIGTERM)
        self.daemon.wait(timeout=60)
        self.daemon = None

    def domains(self, all_=False):
        out = self.virsh("list", "--name", *(["--all"] if all_ else [])).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def close(self):
        try:
            if self.daemon is None:
                self.start()
            for dom in self.domains():
                self.virsh("destroy", dom, check=False)
        finally:
            self.stop()
            # What is left in the namespace (a QEMU libvirtd did not get
            # to) dies with it.
            for pid in os.listdir("/proc"):
                if pid.isdigit() and int(pid) != self.holder.pid:
                    try:
                        if os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink(f"/proc/{self.holder.pid}/ns/mnt"):
                            os.kill(int(pid), signal.SIGKILL)
                    except OSError:
                        pass
            self.holder.kill()
            self.holder.wait(timeout=30)
            shutil.rmtree(self.dir, ignore_errors=True)

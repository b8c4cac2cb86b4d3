# SPDX-License-Identifier: LGPL-2.1-or-later
"""A throwaway daemon for the benchmarks: its own settings and directories
under /tmp, definitions written by the caller, everything removed after."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VMD = os.path.join(TOP, "build", "vmd")


def prepare():
    subprocess.run([os.path.join(TOP, "tests", "install-deps")], check=True)
    subprocess.run([os.path.join(TOP, "tests", "build")], check=True)
    return subprocess.run([os.path.join(TOP, "tests", "guest", "build"), "--quiet"], check=True,
                          capture_output=True, text=True).stdout.strip()


class BenchDaemon:
    def __init__(self, netns=None, **settings):
        self.netns = netns
        self.root = tempfile.mkdtemp(prefix="vmd-bench-", dir="/tmp")
        self.conf = os.path.join(self.root, "vmd.json")
        self.defs = os.path.join(self.root, "vms.d")
        os.makedirs(self.defs)
        s = {"state_dir": f"{self.root}/state", "run_dir": f"{self.root}/run", "log_dir": f"{self.root}/log",
             "keys_dir": f"{self.root}/keys", "definitions_dir": self.defs, "accel": "tcg"}
        s.update(settings)
        with open(self.conf, "w") as f:
            json.dump(s, f)
        self.proc = None

    def define(self, name, **fields):
        with open(os.path.join(self.defs, f"{name}.json"), "w") as f:
            json.dump({"name": name, **fields}, f)

    def start(self):
        self.log = open(os.path.join(self.root, "daemon.log"), "w")
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen([*prefix, VMD, "daemon", "-c", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        sock = os.path.join(self.root, "run", "vmd.sock")
        while not os.path.exists(sock):
            if self.proc.poll() is not None:
                raise SystemExit("the daemon exited: " + open(self.log.name).read())
            time.sleep(0.02)

    def status(self):
        p = subprocess.run([VMD, "-c", self.conf, "status", "--json"], check=True, capture_output=True, text=True)
        return {v["name"]: v for v in json.loads(p.stdout)}

    def wait_ready(self, names, timeout=600, pid_not=None):
        end = time.time() + timeout
        while time.time() < end:
            s = self.status()
            if all(n in s and s[n]["ready"] and s[n]["pid"] != pid_not for n in names):
                return s
            time.sleep(0.2)
        raise SystemExit(f"not ready in {timeout} s: {self.status()}")

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=300)
        shutil.rmtree(self.root, ignore_errors=True)

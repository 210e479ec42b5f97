#!/usr/bin/env python3
"""Converge time of the profiles role for N users, against the naive way (a loop of per-user tasks).

Two places to run it:
  this machine (default): connection local, cgroupfs backend under its own parent cgroup,
      test users it creates (uids 50000+) and removes;
  --guest: a throw-away systemd guest of the test bed (testbed/fsguest.py, QEMU TCG here, so
      absolute times are slow and the ratio is what counts), systemd backend, over ssh.
Prints one line per measurement:
  <where> N=<users> first=<s> rerun=<s>
  <where> naive N=<users> first=<s> ratio=<naive/role>
Usage: sudo .venv/bin/python benchmarks/converge.py [--guest] [--naive-at N,N] [N ...]
       (sizes default 10 100 1000; the naive loop runs at N=100 unless --naive-at says where)
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "testbed"))
import fsguest  # noqa: E402  (testbed/fsguest.py: the guest's inventory)
BIN = os.path.dirname(sys.executable)
PYTHON = os.path.realpath(sys.executable)
PARENT = "fairshare-bench"
BASE_UID = 50000
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), ANSIBLE_NOCOLOR="1",
           ANSIBLE_HOST_KEY_CHECKING="False")
POLICY = {"fairshare_policy": {"min_uid": BASE_UID, "max_uid": BASE_UID + 1999,
                               "defaults": {"cpu": {"max": "200%", "weight": 100}, "memory": {"max": "2G", "high": "90%"},
                                            "pids": {"max": 4096}}}}
EXTRA = {"profiles_network": False, "profiles_install_packages": False, "profiles_quotas": False, "profiles_gpu": False,
         "profiles_cgroup_parent": PARENT,
         # the session script is written (cgroupfs), but this machine's own PAM files are left alone
         "profiles_pam_session_files": [], "profiles_pam_config": ""}
# What the role leaves on a host besides cgroups; removed at the end where the run made them.
HOST_FILES = ["/etc/fairshare/profiles.json", "/usr/local/bin/fairshare-usage", "/etc/profile.d/fairshare-usage.sh"]
NAIVE = """---
- name: The naive way - one task per user
  hosts: all
  gather_facts: false
  tasks:
    - name: Limits, one user at a time
      fairshare.resources.cgroup_limit:
        backend: "{{ bench_backend }}"
        parent: %s
        limits: [{user: "{{ item }}", cpu_max: 200%%, cpu_weight: 100, memory_max: 2G, memory_high: 90%%, pids_max: 4096}]
      loop: "{{ bench_users }}"
""" % PARENT


def users(n):
    return ["fsbench%d" % i for i in range(n)]


class Local(object):
    """This machine: connection local, the cgroupfs backend."""
    name, backend = "host", "cgroupfs"

    def __init__(self):
        self.inventory = ["-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + PYTHON]
        self.had = [p for p in HOST_FILES if os.path.exists(p)]

    def shell(self, script):
        subprocess.run(["sh", "-c", script], check=True, capture_output=True)

    def close(self):
        for path in HOST_FILES:
            if path not in self.had and os.path.exists(path):
                os.unlink(path)
        if os.path.isdir("/etc/fairshare") and not os.listdir("/etc/fairshare"):
            os.rmdir("/etc/fairshare")


class Guest(Local):
    """A throw-away systemd guest over ssh, the systemd backend."""
    name, backend = "guest", "auto"

    def __init__(self):
        self.guest = "bench%d" % os.getpid()
        boot = subprocess.run([sys.executable, os.path.join(ROOT, "testbed", "fsguest.py"), "start", self.guest],
                              capture_output=True, text=True, check=True)
        self.inventory = ["-i", fsguest.write_inventory(json.loads(boot.stdout))]

    def shell(self, script):
        subprocess.run([sys.executable, os.path.join(ROOT, "testbed", "fsguest.py"), "ssh", self.guest, "--",
                        "sh", "-c", "'%s'" % script], check=True, capture_output=True)

    def close(self):
        subprocess.run([sys.executable, os.path.join(ROOT, "testbed", "fsguest.py"), "stop", self.guest], check=False)


def make_users(target, n):
    target.shell("i=0; while [ $i -lt %d ]; do useradd -M -u $((%d + i)) fsbench$i; i=$((i + 1)); done" % (n, BASE_UID))


def drop_users(target, n):
    target.shell("i=0; while [ $i -lt %d ]; do userdel fsbench$i 2>/dev/null; i=$((i + 1)); done; true" % n)


def playbook(target, path, extra):
    argv = [os.path.join(BIN, "ansible-playbook")] + target.inventory + ["-e", json.dumps(extra), path]
    start = time.time()
    out = subprocess.run(argv, env=ENV, capture_output=True, text=True, check=False)
    took = time.time() - start
    if out.returncode != 0:
        raise SystemExit(out.stdout[-3000:])
    return took


def clean_cgroups(target):
    argv = [os.path.join(BIN, "ansible"), "all"] + target.inventory + [
        "-m", "fairshare.resources.cgroup_limit", "-a",
        json.dumps({"backend": target.backend, "parent": PARENT, "exclusive": True, "limits": []})]
    subprocess.run(argv, env=ENV, capture_output=True, check=True)


def main():
    args = sys.argv[1:]
    naive_at = [100]
    if "--naive-at" in args:
        at = args.index("--naive-at")
        naive_at = [int(n) for n in args[at + 1].split(",")]
        del args[at:at + 2]
    target = Guest() if "--guest" in args else Local()
    sizes = [int(a) for a in args if a != "--guest"] or [10, 100, 1000]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            site = os.path.join(ROOT, "playbooks", "site.yml")
            extra = dict(EXTRA, profiles_cgroup_backend=target.backend, **POLICY)
            for n in sizes:
                make_users(target, n)
                try:
                    first = playbook(target, site, extra)
                    rerun = playbook(target, site, extra)
                    print("%s N=%d first=%.2fs rerun=%.2fs" % (target.name, n, first, rerun), flush=True)
                    if n in naive_at:
                        clean_cgroups(target)
                        naive_path = os.path.join(tmp, "naive.yml")
                        with open(naive_path, "w") as fh:
                            fh.write(NAIVE)
                        naive = playbook(target, naive_path, {"bench_users": users(n), "bench_backend": target.backend})
                        print("%s naive N=%d first=%.2fs ratio=%.1fx" % (target.name, n, naive, naive / first), flush=True)
                finally:
                    clean_cgroups(target)
                    drop_users(target, n)
    finally:
        target.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Converge time of the profiles role for N users, against the naive way (a loop of per-user tasks).

Runs on this machine (connection local, cgroupfs backend, its own parent cgroup) with
test users it creates (uids 50000+) and removes. Prints one line per measurement:
  N=<users> first=<s> rerun=<s>
  naive N=100 first=<s>  ratio=<naive/role>
Usage: sudo .venv/bin/python benchmarks/converge.py [N ...]   (default 10 100 1000)
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
PYTHON = os.path.realpath(sys.executable)
PARENT = "fairshare-bench"
BASE_UID = 50000
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), ANSIBLE_NOCOLOR="1")
POLICY = {"fairshare_policy": {"min_uid": BASE_UID, "max_uid": BASE_UID + 1999,
                               "defaults": {"cpu": {"max": "200%", "weight": 100}, "memory": {"max": "2G", "high": "90%"},
                                            "pids": {"max": 4096}}}}
EXTRA = {"profiles_network": False, "profiles_install_packages": False, "profiles_quotas": False, "profiles_gpu": False,
         "profiles_cgroup_backend": "cgroupfs", "profiles_cgroup_parent": PARENT}
NAIVE = """---
- name: The naive way - one task per user
  hosts: all
  gather_facts: false
  tasks:
    - name: Limits, one user at a time
      fairshare.resources.cgroup_limit:
        backend: cgroupfs
        parent: %s
        limits: [{user: "{{ item }}", cpu_max: 200%%, cpu_weight: 100, memory_max: 2G, memory_high: 90%%, pids_max: 4096}]
      loop: "{{ bench_users }}"
""" % PARENT


def users(n):
    return ["fsbench%d" % i for i in range(n)]


def make_users(n):
    for i, name in enumerate(users(n)):
        subprocess.run(["useradd", "-M", "-u", str(BASE_UID + i), name], check=True)


def drop_users(n):
    for name in users(n):
        subprocess.run(["userdel", name], check=False, capture_output=True)


def clean_cgroups():
    subprocess.run([os.path.join(BIN, "ansible"), "localhost", "-c", "local", "-e", "ansible_python_interpreter=" + PYTHON,
                    "-m", "fairshare.resources.cgroup_limit", "-a",
                    json.dumps({"backend": "cgroupfs", "parent": PARENT, "exclusive": True, "limits": []})],
                   env=ENV, capture_output=True, check=True)


def playbook(path, extra):
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=" + PYTHON, "-e", json.dumps(extra), path]
    start = time.time()
    out = subprocess.run(argv, env=ENV, capture_output=True, text=True, check=False)
    took = time.time() - start
    if out.returncode != 0:
        raise SystemExit(out.stdout[-3000:])
    return took


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [10, 100, 1000]
    with tempfile.TemporaryDirectory() as tmp:
        policy = os.path.join(tmp, "policy.json")
        with open(policy, "w") as fh:
            json.dump(POLICY, fh)
        site = os.path.join(ROOT, "playbooks", "site.yml")
        role_100 = None
        for n in sizes:
            make_users(n)
            try:
                extra = dict(EXTRA)
                extra.update(json.load(open(policy)))
                first = playbook(site, extra)
                rerun = playbook(site, extra)
                print("N=%d first=%.2fs rerun=%.2fs" % (n, first, rerun), flush=True)
                if n == 100:
                    role_100 = first
                    clean_cgroups()
                    naive_path = os.path.join(tmp, "naive.yml")
                    with open(naive_path, "w") as fh:
                        fh.write(NAIVE)
                    naive = playbook(naive_path, {"bench_users": users(n)})
                    print("naive N=100 first=%.2fs ratio=%.1fx" % (naive, naive / role_100), flush=True)
            finally:
                clean_cgroups()
                drop_users(n)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Converge time of the profiles role for N users, against the naive way (a loop of per-user tasks).

Two places to run it:
  this machine (default): connection local, cgroupfs backend under its own parent cgroup; the
      users (uids 50000+) exist only in a private mount namespace (bind-mounted copies of
      /etc/passwd and /etc/group) in which the playbook runs, so that 10,000 users cost nothing
      to make and nothing on this machine changes but the cgroups (removed at the end);
  --guest: a throw-away systemd guest of the test bed (testbed/fsguest.py, QEMU TCG here, so
      absolute times are slow and the ratio is what counts), systemd backend, over ssh.
Prints one line per measurement:
  <where> N=<users> first=<s> rerun=<s>
  host floor N=<users> make+write=<s> read=<s> user-files write=<s> read=<s> ratio_first=<x> ratio_rerun=<x>
  <where> naive N=<users> first=<s> ratio=<naive/role>
  <where> ansible-core floor: no module=<s> three modules (ansible.builtin.ping)=<s>
The last: ansible-core's own cost on that connection, before any work of ours - a playbook of one debug
task, and one that adds three round trips of the smallest module (the role makes three: facts, cgroup_limit,
profile_host). No run of the role can be faster than the second.
The floor (this machine): a bare Python loop that makes the same cgroup directories (one per
user and controller) and writes the same values, then one that reads them back - after the
role's cgroups are removed again, so that both start from the same tree; and one that writes
the N per-user files profile_host keeps in /etc/fairshare/users (atomically, as it does), then
reads them back. The ratios are against both together.
Usage: sudo .venv/bin/python benchmarks/converge.py [--guest] [--naive-at N,N] [--users N] [N ...]
       (sizes default 10 100 1000; --users N adds N; the naive loop runs at N=100 unless --naive-at says where)
"""
import json
import os
import shutil
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
POLICY = {"fairshare_policy": {"min_uid": BASE_UID, "max_uid": BASE_UID + 99999,
                               "defaults": {"cpu": {"max": "200%", "weight": 100}, "memory": {"max": "2G", "high": "90%"},
                                            "pids": {"max": 4096}}}}
# the policy's defaults as one cgroup_limit entry, for the guest floor (the naive loop names the same values)
BENCH_LIMITS = {"cpu_max": "200%", "cpu_weight": 100, "memory_max": "2G", "memory_high": "90%", "pids_max": 4096}
EXTRA = {"profiles_network": False, "profiles_install_packages": False, "profiles_quotas": False, "profiles_gpu": False,
         "profiles_cgroup_parent": PARENT,
         # the session script is written (cgroupfs), but this machine's own PAM files are left alone
         "profiles_pam_session_files": [], "profiles_pam_config": ""}
# What the role leaves on a host besides cgroups; removed at the end where the run made them.
HOST_FILES = ["/etc/fairshare/profiles.json", "/usr/local/bin/fairshare-usage", "/etc/profile.d/fairshare-usage.sh",
              "/etc/fairshare/login.json", "/etc/fairshare/login-defaults.json", "/etc/fairshare/login-users.tsv",
              "/usr/local/sbin/fairshare-login"]
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

# ansible-core's own cost on the same connection: a playbook that runs no module, and one that makes the three
# module round trips the role makes (facts, cgroup_limit, profile_host), with the smallest module there is
ANSIBLE_FLOOR = """---
- name: ansible-core alone - %d module round trips
  hosts: all
  gather_facts: false
  tasks:
    - name: No module
      ansible.builtin.debug:
        msg: start
%s"""
PING = """    - name: A round trip
      ansible.builtin.ping:
"""


def users(n):
    return ["fsbench%d" % i for i in range(n)]


class Local(object):
    """This machine: connection local, the cgroupfs backend, users in a private mount namespace."""
    name, backend = "host", "cgroupfs"

    def __init__(self):
        self.inventory = ["-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + PYTHON]
        self.had = [p for p in HOST_FILES + ["/etc/fairshare/users", "/usr/local/lib/fairshare"] if os.path.exists(p)]
        self.tmp = tempfile.mkdtemp(prefix="fairshare-bench-")

    def make_users(self, n):
        for name in ("passwd", "group"):
            with open("/etc/" + name) as fh:
                text = fh.read()
            if name == "passwd":
                text += "".join("fsbench%d:x:%d:%d::/nonexistent:/usr/sbin/nologin\n" % (i, BASE_UID + i, BASE_UID + i)
                                for i in range(n))
            else:
                text += "".join("fsbench%d:x:%d:\n" % (i, BASE_UID + i) for i in range(n))
            with open(os.path.join(self.tmp, name), "w") as fh:
                fh.write(text)

    def drop_users(self, n):
        pass  # they never existed outside the namespace

    def wrap(self, argv):
        """argv run in a private mount namespace that sees the bench users."""
        script = 'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
                os.path.join(self.tmp, "passwd"), os.path.join(self.tmp, "group")] + argv

    def close(self):
        for path in HOST_FILES:
            if path not in self.had and os.path.exists(path):
                os.unlink(path)
        for tree in ("/etc/fairshare/users", "/usr/local/lib/fairshare"):  # per-user profiles, the login resolver
            if tree not in self.had:
                shutil.rmtree(tree, ignore_errors=True)
        if os.path.isdir("/etc/fairshare") and not os.listdir("/etc/fairshare"):
            os.rmdir("/etc/fairshare")
        shutil.rmtree(self.tmp, ignore_errors=True)


class Guest(Local):
    """A throw-away systemd guest over ssh, the systemd backend. Its users are lines added to its own
    /etc/passwd and /etc/group (a copy of each is put back afterwards): useradd costs a TCG guest about
    0.1 s a user, 17 minutes for 10,000."""
    name, backend = "guest", "auto"

    def __init__(self):
        self.guest = "bench%d" % os.getpid()
        boot = subprocess.run([sys.executable, os.path.join(ROOT, "testbed", "fsguest.py"), "start", self.guest],
                              capture_output=True, text=True, check=True)
        self.facts = json.loads(boot.stdout)
        self.inventory = ["-i", fsguest.write_inventory(self.facts)]

    def python(self, script, *args):
        """Run a Python script in the guest (its stdin) -> its stdout."""
        done = subprocess.run(fsguest.ssh_base(self.facts) + ["python3", "-"] + [str(a) for a in args],
                              input=script, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit("in the guest: %s" % done.stderr[-2000:])
        return done.stdout

    def make_users(self, n):
        self.python(GUEST_USERS, n, BASE_UID)

    def drop_users(self, n):
        self.python(GUEST_USERS, 0, BASE_UID)

    def wrap(self, argv):
        return argv

    def floor(self, n):
        """The guest's own floor (systemd): N drop-ins written as cgroup_limit writes them (render_dropin of
        the bench policy's limits) and one daemon-reload, then a daemon-reload with nothing changed; and a
        daemon-reload with none of them. -> {write, reload, reload_again, reload_without} in seconds."""
        sys.path.insert(0, os.path.join(ROOT, "build"))
        from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import (
            DROPIN_NAME, normalize_limits, render_dropin,
        )
        text, _warnings = render_dropin(normalize_limits(BENCH_LIMITS, "bench"), "v2")
        return json.loads(self.python("text, name = %r, %r\n" % (text, DROPIN_NAME) + GUEST_FLOOR, n, BASE_UID))

    def close(self):
        subprocess.run([sys.executable, os.path.join(ROOT, "testbed", "fsguest.py"), "stop", self.guest], check=False)


# argv[1] users fsbench0.. from uid argv[2] in the guest's passwd and group (0: the copies of the first call back)
GUEST_USERS = r"""import os, shutil, sys
n, base = map(int, sys.argv[1:3])
for name in ("passwd", "group"):
    path, keep = "/etc/" + name, "/etc/%s.fsbench" % name
    if not os.path.exists(keep):
        shutil.copy2(path, keep)
    text = open(keep).read()
    if name == "passwd":
        text += "".join("fsbench%d:x:%d:%d::/nonexistent:/usr/sbin/nologin\n" % (i, base + i, base + i) for i in range(n))
    else:
        text += "".join("fsbench%d:x:%d:\n" % (i, base + i) for i in range(n))
    with open(path + ".new", "w") as fh:
        fh.write(text)
    os.rename(path + ".new", path)
    if not n:
        os.unlink(keep)
"""

# N drop-ins `name` holding `text` (both put before it by Guest.floor), timed with daemon-reload (argv[1], argv[2]:
# N, the first uid)
GUEST_FLOOR = r"""import json, os, shutil, subprocess, sys, time
n, base = map(int, sys.argv[1:3])
def reload():
    t = time.time()
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    return time.time() - t
out = {"reload_without": reload()}
t = time.time()
for i in range(n):
    d = "/etc/systemd/system/user-%d.slice.d" % (base + i)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name + ".tmp"), "w") as fh:
        fh.write(text)
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))
out["write"] = time.time() - t
out["reload"] = reload()
out["reload_again"] = reload()
for i in range(n):
    shutil.rmtree("/etc/systemd/system/user-%d.slice.d" % (base + i))
reload()
print(json.dumps(out))
"""


def floor(n):
    """This machine's own floor for N users: make the same cgroups (one per user and controller of
    the policy: cpu, memory, pids; and cpuacct where it is mounted apart from cpu, as cgroup_limit
    makes it for the users' CPU time) and write the same values in a bare loop, then read them back.
    -> (seconds to make and write, seconds to read)."""
    sys.path.insert(0, os.path.join(ROOT, "build"))
    from ansible_collections.fairshare.resources.plugins.module_utils.platform import (
        controller_home, read_cgroup_layout,
    )
    layout = read_cgroup_layout()
    values = {"v1": {"cpu": [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "200000"), ("cpu.shares", "1024")],
                     "memory": [("memory.limit_in_bytes", str(2 << 30))], "pids": [("pids.max", "4096")]},
              "v2": {"cpu": [("cpu.max", "200000 100000"), ("cpu.weight", "100")],
                     "memory": [("memory.max", str(2 << 30)), ("memory.high", str(int(1.8 * (1 << 30)) // 4096 * 4096))],
                     "pids": [("pids.max", "4096")]}}
    roots = []
    for ctrl in ("cpu", "memory", "pids"):
        version, root = controller_home(layout, ctrl)
        if (version, root) not in [(v, r) for v, r, _f in roots]:
            roots.append((version, root, list(values[version][ctrl])))
        else:  # v2: one tree for all controllers
            roots[-1][2].extend(values[version][ctrl])
    v1 = layout.get("v1") or {}
    if "cpuacct" in v1 and v1.get("cpu") != v1["cpuacct"]:  # mounted apart: each user gets a cgroup there too (CPU time)
        roots.append(("v1", controller_home(layout, "cpuacct")[1], []))
    tops = [os.path.join(root, "fairshare-floor") for _v, root, _f in roots]
    start = time.time()
    for top in tops:
        os.mkdir(top)
    for (version, root, files), top in zip(roots, tops):
        if version == "v2":
            with open(os.path.join(top, "cgroup.subtree_control"), "w") as fh:
                fh.write("+cpu +memory +pids")
        for i in range(n):
            cdir = os.path.join(top, "user-%d" % (BASE_UID + i))
            os.mkdir(cdir)
            for fname, value in files:
                with open(os.path.join(cdir, fname), "w") as fh:
                    fh.write(value)
    made = time.time() - start
    start = time.time()
    for (_version, _root, files), top in zip(roots, tops):
        for i in range(n):
            cdir = os.path.join(top, "user-%d" % (BASE_UID + i))
            for fname, _value in files:
                with open(os.path.join(cdir, fname)) as fh:
                    fh.read()
    read = time.time() - start
    for top in tops:
        for i in range(n):
            os.rmdir(os.path.join(top, "user-%d" % (BASE_UID + i)))
        os.rmdir(top)
    return made, read


def files_floor(n):
    """The floor of profile_host's per-user files (/etc/fairshare/users/UID.json, 0400, owned by the user): a
    bare loop that writes N files of that size atomically (a temporary file, its owner, a rename) in a new
    directory beside /etc/fairshare, on the same filesystem, then one that reads them back.
    -> (seconds to write, seconds to read)."""
    text = json.dumps({"user": "fsbench0", "profiles": {"fsbench0": {"tier": None, "values": POLICY}}}, indent=2)
    top = tempfile.mkdtemp(prefix="fairshare-floor-", dir="/etc")
    try:
        start = time.time()
        for i in range(n):
            fd, tmp = tempfile.mkstemp(dir=top, prefix=".fairshare-")
            os.write(fd, text.encode())
            os.fchmod(fd, 0o400)
            os.fchown(fd, BASE_UID + i, BASE_UID + i)
            os.close(fd)
            os.rename(tmp, os.path.join(top, "%d.json" % (BASE_UID + i)))
        wrote = time.time() - start
        start = time.time()
        for i in range(n):
            with open(os.path.join(top, "%d.json" % (BASE_UID + i))) as fh:
                fh.read()
        return wrote, time.time() - start
    finally:
        shutil.rmtree(top)


def playbook(target, path, extra):
    argv = target.wrap([os.path.join(BIN, "ansible-playbook")] + target.inventory + ["-e", json.dumps(extra), path])
    start = time.time()
    out = subprocess.run(argv, env=ENV, capture_output=True, text=True, check=False)
    took = time.time() - start
    if out.returncode != 0:
        raise SystemExit(out.stdout[-3000:])
    return took


def clean_cgroups(target):
    argv = target.wrap([os.path.join(BIN, "ansible"), "all"] + target.inventory + [
        "-m", "fairshare.resources.cgroup_limit", "-a",
        json.dumps({"backend": target.backend, "parent": PARENT, "exclusive": True, "limits": []})])
    subprocess.run(argv, env=ENV, capture_output=True, check=True)


def main():
    args = sys.argv[1:]
    naive_at = [100]
    if "--naive-at" in args:
        at = args.index("--naive-at")
        naive_at = [int(n) for n in args[at + 1].split(",")]
        del args[at:at + 2]
    extra_sizes = []
    if "--users" in args:
        at = args.index("--users")
        extra_sizes = [int(args[at + 1])]
        del args[at:at + 2]
    target = Guest() if "--guest" in args else Local()
    sizes = [int(a) for a in args if a != "--guest"] or ([] if extra_sizes else [10, 100, 1000])
    sizes += extra_sizes
    try:
        with tempfile.TemporaryDirectory() as tmp:
            took = []
            target.make_users(0)
            for trips in (0, 3):
                path = os.path.join(tmp, "ansible-floor-%d.yml" % trips)
                with open(path, "w") as fh:
                    fh.write(ANSIBLE_FLOOR % (trips, PING * trips))
                took.append(playbook(target, path, {}))
            print("%s ansible-core floor: no module=%.2fs three modules (ansible.builtin.ping)=%.2fs"
                  % (target.name, took[0], took[1]), flush=True)
            site = os.path.join(ROOT, "playbooks", "site.yml")
            extra = dict(EXTRA, profiles_cgroup_backend=target.backend, **POLICY)
            for n in sizes:
                target.make_users(n)
                try:
                    first = playbook(target, site, extra)
                    rerun = playbook(target, site, extra)
                    print("%s N=%d first=%.2fs rerun=%.2fs" % (target.name, n, first, rerun), flush=True)
                    if isinstance(target, Guest):
                        clean_cgroups(target)
                        fl = target.floor(n)
                        print("guest floor N=%d write=%.2fs daemon-reload=%.2fs again=%.2fs without=%.2fs "
                              "ratio_first=%.1fx ratio_rerun=%.1fx"
                              % (n, fl["write"], fl["reload"], fl["reload_again"], fl["reload_without"],
                                 first / (fl["write"] + fl["reload"]), rerun / fl["reload_again"]), flush=True)
                    else:
                        # on a tree without the role's cgroups: cgroup v1's mkdir here takes longer the more
                        # cgroups exist (30,000 made beside the role's took 15-18 s, against N from clean)
                        clean_cgroups(target)
                        made, read = floor(n)
                        wrote, looked = files_floor(n)
                        print("host floor N=%d make+write=%.2fs read=%.2fs user-files write=%.2fs read=%.2fs "
                              "ratio_first=%.1fx ratio_rerun=%.1fx"
                              % (n, made, read, wrote, looked, first / (made + wrote), rerun / (read + looked)),
                              flush=True)
                    if n in naive_at:
                        clean_cgroups(target)
                        naive_path = os.path.join(tmp, "naive.yml")
                        with open(naive_path, "w") as fh:
                            fh.write(NAIVE)
                        naive = playbook(target, naive_path, {"bench_users": users(n), "bench_backend": target.backend})
                        print("%s naive N=%d first=%.2fs ratio=%.1fx" % (target.name, n, naive, naive / first), flush=True)
                finally:
                    clean_cgroups(target)
                    target.drop_users(n)
    finally:
        target.close()


if __name__ == "__main__":
    main()

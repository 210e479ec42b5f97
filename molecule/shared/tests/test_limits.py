"""Verify cgroup_limit by effect on the scenario's host (guest or this machine).

Works on systemd with cgroup v2 or v1 (processes started in the user's slice by
systemd-run) and without systemd (processes written into the cgroupfs backend's
cgroups). Every test prints what it measured.
"""
import os
import subprocess
import time

import pytest

from guestlib import CPU_SHARE, quote as _quote, size, with_rc as _with_rc

GUEST_TOOL = os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "testbed", "fsguest.py")


@pytest.fixture(scope="module")
def ctx(host):
    hv = host.ansible.get_variables()
    users = dict((u["name"], u["uid"]) for u in hv["fairshare_test_users"])
    limits = dict((entry["user"], entry) for entry in hv["fairshare_test_limits"])
    is_systemd = host.file("/run/systemd/system").is_directory
    mounts = host.check_output("findmnt -rn -o TARGET,FSTYPE,OPTIONS").splitlines()
    v1 = {}
    v2_root = None
    for line in mounts:
        target, fstype, options = line.split(" ")
        if fstype == "cgroup":
            for opt in options.split(","):
                v1.setdefault(opt, target)
        elif fstype == "cgroup2" and (v2_root is None or len(target) < len(v2_root)):
            v2_root = target
    return dict(host=host, hv=hv, users=users, limits=limits, systemd=is_systemd, v1=v1, v2_root=v2_root,
                python=hv.get("fairshare_test_python", "/usr/bin/python3"),
                parent=hv.get("fairshare_test_parent", "fairshare"))


def cgdir(ctx, uid, ctrl):
    """The directory of a user's cgroup for a controller."""
    rel = ("user.slice/user-%d.slice" % uid) if ctx["systemd"] else ("%s/user-%d" % (ctx["parent"], uid))
    root = ctx["v1"].get(ctrl) or ctx["v2_root"]
    return os.path.join(root, rel)


@pytest.fixture
def hold_slice(ctx):
    """systemd stops an empty slice and its cgroup (and counters) go: keep one task in it."""
    if not ctx["systemd"]:
        yield
        return
    uid = ctx["users"][first_user(ctx)]
    ctx["host"].run_test("systemd-run --quiet --collect --slice=user-%d.slice --unit=fairshare-verify-hold sleep 600" % uid)
    yield
    ctx["host"].run("systemctl stop fairshare-verify-hold")


def version(ctx, ctrl):
    return "v1" if ctrl in ctx["v1"] else "v2"


def run_limited(ctx, user, code, as_root=False, ctrls=("memory", "cpu", "pids", "cpuset", "blkio")):
    """Run python code in the user's cgroup, as that user (or root); returns the testinfra result."""
    host, uid = ctx["host"], ctx["users"][user]
    if ctx["systemd"]:
        uid_arg = "" if as_root else "--uid=%d " % uid
        return _with_rc(host, "systemd-run --quiet --wait --pipe --collect --slice=user-%d.slice %s%s -c %s"
                        % (uid, uid_arg, ctx["python"], _quote(code)))
    procs = " ".join(os.path.join(cgdir(ctx, uid, c), "cgroup.procs") for c in ctrls
                     if c in ctx["v1"] and host.file(cgdir(ctx, uid, c)).is_directory)
    drop = "" if as_root else "setpriv --reuid=%d --regid=%d --clear-groups " % (uid, uid)
    script = 'for f in %s; do echo $$ > "$f"; done; exec %s%s -c "$1"' % (procs, drop, ctx["python"])
    return host.run("sh -c %s sh %s" % (_quote(script), _quote(code)))


def first_user(ctx):
    return list(ctx["users"])[0]


def test_limits_exist_for_a_user_who_never_logged_in(ctx):
    user = list(ctx["users"])[-1]
    uid, want = ctx["users"][user], size(ctx["limits"][user]["memory_max"])
    host = ctx["host"]
    if ctx["systemd"]:
        assert host.run("loginctl show-user %s" % user).rc != 0, "%s must not have logged in yet" % user
        dropin = host.file("/etc/systemd/system/user-%d.slice.d/50-fairshare.conf" % uid)
        assert dropin.content_string.startswith("# managed by fairshare.resources")
        prop = "MemoryMax" if version(ctx, "memory") == "v2" else "MemoryLimit"
        shown = host.check_output("systemctl show -p %s --value user-%d.slice" % (prop, uid))
        print("never-logged-in %s: systemd %s=%s (wanted %d)" % (user, prop, shown, want))
        assert int(shown) == want
    else:
        live = host.file(os.path.join(cgdir(ctx, uid, "memory"), "memory.limit_in_bytes")).content_string
        print("never-logged-in %s: memory.limit_in_bytes=%s" % (user, live.strip()))
        assert int(live) == want


def test_memory_max_kills_the_allocator(ctx, hold_slice):
    user = first_user(ctx)
    uid, limit = ctx["users"][user], size(ctx["limits"][user]["memory_max"])
    res = run_limited(ctx, user, "b = bytearray(%d); print('survived')" % (limit * 3))
    mdir = cgdir(ctx, uid, "memory")
    if version(ctx, "memory") == "v2":
        events = dict(line.split() for line in ctx["host"].file(mdir + "/memory.events").content_string.splitlines())
    else:
        # v1 counts oom_kill in the victim's own cgroup (gone with its transient service);
        # the slice that hit its limit counts failcnt, and the kernel log names the kill.
        events = dict(line.split() for line in ctx["host"].file(mdir + "/memory.oom_control").content_string.splitlines())
        events["failcnt"] = ctx["host"].file(mdir + "/memory.failcnt").content_string.strip()
        if ctx["systemd"]:
            events["oom_kill"] = ctx["host"].check_output("dmesg | grep -c 'Memory cgroup out of memory: Killed process' || true")
    print("memory: %d MiB allocator under memory_max %d MiB -> rc=%d, %s"
          % (limit * 3 >> 20, limit >> 20, res.rc, events))
    assert res.rc != 0 and "survived" not in res.stdout
    assert int(events["oom_kill"]) >= 1
    small = run_limited(ctx, user, "b = bytearray(%d); print('survived')" % (limit // 4))
    assert small.rc == 0 and "survived" in small.stdout


def test_cpu_max_holds_a_busy_loop(ctx):
    user = first_user(ctx)
    want = float(str(ctx["limits"][user]["cpu_max"]).rstrip("%")) / 100
    res = run_limited(ctx, user, CPU_SHARE % 5)
    share = float(res.stdout.strip().splitlines()[-1])
    print("cpu: busy loop under cpu_max %d%% used %.1f%% of one CPU" % (want * 100, share * 100))
    assert res.rc == 0 and abs(share - want) <= want * 0.10


def test_pids_max_refuses_forks(ctx):
    user = first_user(ctx)
    limit = int(ctx["limits"][user]["pids_max"])
    code = ("import os, time\nkids = []\nerr = None\n"
            "for i in range(%d):\n"
            "    try:\n        pid = os.fork()\n    except OSError as e:\n        err = e.errno; break\n"
            "    if pid == 0:\n        time.sleep(5); os._exit(0)\n    kids.append(pid)\n"
            "print(len(kids), err)\nfor k in kids: os.kill(k, 9); os.waitpid(k, 0)") % (limit + 20)
    res = run_limited(ctx, user, code)
    forked, err = res.stdout.strip().splitlines()[-1].split()
    print("pids: pids_max %d allowed %s forks, then errno %s" % (limit, forked, err))
    assert res.rc == 0 and err == "11" and limit - 5 <= int(forked) < limit


def test_io_max_throttles_direct_writes(ctx):
    user = first_user(ctx)
    rules = ctx["limits"][user].get("io_max") or []
    if not rules or not ctx["host"].file(rules[0]["device"]).exists:
        pytest.skip("no io_max on a device of this host in this scenario")
    dev, wbps = rules[0]["device"], size(rules[0]["wbps"])
    # dd's own count of bytes and seconds: the start of dd and python under TCG is not I/O
    code = ("import re, subprocess\n"
            "out = subprocess.run(['dd', 'if=/dev/zero', 'of=%s', 'bs=256k', 'count=16', 'oflag=direct'],"
            " check=True, capture_output=True, text=True).stderr\n"
            "m = re.search(r'^(\\d+) bytes .* copied, ([0-9.]+) s', out, re.M)\n"
            "print(int(m.group(1)) / float(m.group(2)))") % dev
    res = run_limited(ctx, user, code, as_root=True)
    rate = float(res.stdout.strip().splitlines()[-1])
    print("io: 4 MiB direct write to %s under wbps %d B/s ran at %.0f B/s (dd's own timing)" % (dev, wbps, rate))
    assert res.rc == 0 and 0.8 * wbps <= rate <= 1.2 * wbps


def test_cpuset_pins_the_user(ctx):
    user = first_user(ctx)
    cpus = ctx["limits"][user].get("cpuset_cpus")
    if cpus is None or (ctx["systemd"] and version(ctx, "cpuset") == "v1"):
        pytest.skip("no cpuset here (systemd on cgroup v1 cannot set it; the module warns)")
    res = run_limited(ctx, user, "import os; print(sorted(os.sched_getaffinity(0)))")
    print("cpuset: cpuset_cpus %s -> affinity %s" % (cpus, res.stdout.strip()))
    assert res.rc == 0 and res.stdout.strip() == str([int(c) for c in str(cpus).split(",")])


def _ssh_as(ctx, user, command):
    hv = ctx["hv"]
    argv = ["ssh", "-i", hv["ansible_private_key_file"], "-p", str(hv["ansible_port"]), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
            "%s@%s" % (user, hv["ansible_host"]), command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _login_check(ctx, label):
    user = first_user(ctx)
    uid, want = ctx["users"][user], size(ctx["limits"][user]["memory_max"])
    mfile = "memory.max" if version(ctx, "memory") == "v2" else "memory.limit_in_bytes"
    out = _ssh_as(ctx, user, "grep -E '(^0::|memory)' /proc/self/cgroup; cat %s/%s" % (cgdir(ctx, uid, "memory"), mfile))
    print("%s: ssh login as %s -> rc=%d %s" % (label, user, out.returncode, " | ".join(out.stdout.split("\n"))))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "user-%d.slice/session-" % uid in lines[0]
    assert int(lines[-1]) == want


def test_login_over_ssh_lands_in_the_limited_slice(ctx):
    if not ctx["hv"].get("fairshare_test_login"):
        pytest.skip("no ssh login in this scenario")
    _login_check(ctx, "login")


def test_limits_survive_a_reboot(ctx):
    if not ctx["hv"].get("fairshare_test_login"):
        pytest.skip("no reboot in this scenario (it runs on this machine itself)")
    name = ctx["hv"]["inventory_hostname"]
    t0 = time.time()
    subprocess.run(["python3", GUEST_TOOL, "reboot", name], check=True, timeout=400)
    print("reboot: guest back in %.0f s" % (time.time() - t0))
    test_limits_exist_for_a_user_who_never_logged_in(ctx)
    _login_check(ctx, "after reboot")

"""cgroup_limit, cgroupfs backend, on this host's real kernel (no systemd, cgroup v1 hybrid).

Every limit is proven by effect: an allocator past memory.limit is OOM-killed, a busy
loop stays at its CPU quota, forks past pids.max fail, direct writes run at the
blkio throttle. Everything made here is removed afterwards.
"""
import json
import os
import pwd
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import PYTHON, pam_session, run_module
from ansible_collections.fairshare.resources.plugins.module_utils.cgroupfs_persist import LOGIN_TOOL
from ansible_collections.fairshare.resources.plugins.module_utils.login import DEFAULTS_JSON, LOGIN_JSON, USERS_TSV
from ansible_collections.fairshare.resources.plugins.module_utils.platform import read_cgroup_layout

LAYOUT = read_cgroup_layout()
PARENT = "fairshare-itest%d" % os.getpid()
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or "memory" not in LAYOUT["v1"],
                                reason="needs root on a cgroup v1 host without systemd")


def cg(ctrl, uid, *rest):
    return os.path.join(LAYOUT["v1"][ctrl], PARENT, "user-%d" % uid, *rest)


def apply(limits, **kw):
    args = dict(backend="cgroupfs", parent=PARENT, limits=limits)
    args.update(kw)
    return run_module("cgroup_limit", args)


@pytest.fixture
def limited(test_user):
    yield test_user
    out = run_module("cgroup_limit", dict(backend="cgroupfs", parent=PARENT, exclusive=True, limits=[]))
    assert out["_status"] in ("CHANGED", "SUCCESS"), out
    for ctrl in LAYOUT["v1"]:
        assert not os.path.exists(os.path.join(LAYOUT["v1"][ctrl], PARENT)), "cleanup left %s" % ctrl
    assert not os.path.exists("/etc/fairshare/cgroupfs-%s.sh" % PARENT)
    if os.path.isdir("/etc/fairshare") and not os.listdir("/etc/fairshare"):
        os.rmdir("/etc/fairshare")


def in_cgroup(ctrls, uid, code, timeout=60):
    """Run python code as uid inside the user's cgroups; returns (rc, stdout)."""
    procs = " ".join(cg(c, uid, "cgroup.procs") for c in ctrls)
    script = 'for f in %s; do echo $$ > "$f"; done; exec setpriv --reuid=%d --regid=%d --clear-groups %s -c "$1"' % (
        procs, uid, uid, PYTHON)
    proc = subprocess.run(["sh", "-c", script, "sh", code], capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_check_mode_apply_idempotence_and_memory_oom(limited):
    uid = limited.pw_uid
    wanted = [{"user": limited.pw_name, "memory_max": "64M", "pids_max": 500}]
    check = run_module("cgroup_limit", dict(backend="cgroupfs", parent=PARENT, limits=wanted), check=True)
    assert check["changed"] and not os.path.exists(cg("memory", uid))
    first = run_module("cgroup_limit", dict(backend="cgroupfs", parent=PARENT, limits=wanted), diff=True)
    assert first["changed"] and first["targets"][0]["verified"]["memory.limit_in_bytes"] == str(64 << 20)
    second = run_module("cgroup_limit", dict(backend="cgroupfs", parent=PARENT, limits=wanted))
    assert second["changed"] is False
    rc, out = in_cgroup(["memory"], uid, "b = bytearray(200 * 1024 * 1024); print('survived')")
    with open(cg("memory", uid, "memory.oom_control")) as fh:
        oom = dict(line.split() for line in fh)
    print("memory: 200 MB allocator under 64M -> rc=%d oom_kill=%s" % (rc, oom.get("oom_kill")))
    assert rc in (-9, 137) and "survived" not in out
    assert int(oom["oom_kill"]) >= 1
    seen = run_module("resource_usage", dict(users=[limited.pw_name], parent=PARENT))["usage"][0]
    print("resource_usage after the kill: %s" % seen)
    assert seen["active"] and seen["oom_kills"] == int(oom["oom_kill"])
    rc, out = in_cgroup(["memory"], uid, "b = bytearray(16 * 1024 * 1024); print('survived')")
    assert rc == 0 and "survived" in out  # below the limit: allowed


def test_cpu_quota_holds_busy_loop(limited):
    uid = limited.pw_uid
    out = apply([{"user": limited.pw_name, "cpu_max": "20%"}])
    assert out["targets"][0]["verified"]["cpu.cfs_quota_us"] == "20000"
    code = ("import time, os\nt0 = time.time(); c0 = time.process_time()\n"
            "while time.time() - t0 < 4: pass\nprint((time.process_time() - c0) / (time.time() - t0))")
    rc, text = in_cgroup(["cpu"], uid, code)
    share = float(text.strip().splitlines()[-1])
    print("cpu: busy loop under cpu_max 20%% used %.1f%% of one CPU" % (share * 100))
    assert rc == 0 and abs(share - 0.20) <= 0.01  # within 5 % of the quota


def test_v1_quotas_go_down_children_first_and_a_child_above_its_parent_is_refused(limited):
    """cgroup v1 refuses a parent's CPU quota below its children's. Lowering a user and the workload
    in it together failed with EINVAL on every run (the user's file was written first); now the
    child goes first, raising goes parents first, and a child above its parent is refused before
    any write, in check mode too."""
    user = limited.pw_name
    work = "user-%d/jobs" % limited.pw_uid

    def run(mine, jobs, check=False):
        args = dict(backend="cgroupfs", parent=PARENT,
                    limits=[{"user": user, "cpu_max": mine}, {"path": work, "cpu_max": jobs}])
        return run_module("cgroup_limit", args, check=check)
    assert run("100%", "50%")["changed"]
    down = run("25%", "10%")
    assert down["_status"] == "CHANGED", down
    with open(cg("cpu", limited.pw_uid, "jobs", "cpu.cfs_quota_us")) as fh:
        assert fh.read().strip() == "10000"
    up = run("150%", "120%")
    assert up["_status"] == "CHANGED", up
    for check in (True, False):
        bad = run("25%", "50%", check=check)
        assert bad["_status"].startswith("FAILED") and "above the 25% of the cgroup it is in" in bad["msg"], bad
    with open(cg("cpu", limited.pw_uid, "cpu.cfs_quota_us")) as fh:
        assert fh.read().strip() == "150000"  # the refused run changed nothing
    print("v1 quotas: 100%/50% -> 25%/10% and -> 150%/120% applied; 25% over a 50% child refused: " + bad["msg"])


def test_pids_max_refuses_forks(limited):
    uid = limited.pw_uid
    apply([{"user": limited.pw_name, "pids_max": 32}])
    code = ("import os, time, errno\nkids = []\nerr = None\n"
            "for i in range(60):\n"
            "    try:\n        pid = os.fork()\n    except OSError as e:\n        err = e.errno; break\n"
            "    if pid == 0:\n        time.sleep(5); os._exit(0)\n    kids.append(pid)\n"
            "print(len(kids), err)\nfor k in kids: os.kill(k, 9); os.waitpid(k, 0)")
    rc, text = in_cgroup(["pids"], uid, code)
    forked, err = text.strip().splitlines()[-1].split()
    print("pids: pids.max 32 allowed %s forks, then errno %s" % (forked, err))
    assert rc == 0 and int(forked) == 31 and err == "11"  # 31 children + the parent = 32; EAGAIN


def test_blkio_throttle_holds_direct_writes(limited):
    uid = limited.pw_uid
    with tempfile.NamedTemporaryFile(dir="/var/tmp") as backing:
        backing.truncate(64 << 20)
        loop = subprocess.run(["losetup", "-f", "--show", backing.name], capture_output=True, text=True, check=False)
        if loop.returncode != 0:
            pytest.skip("no loop device: %s" % loop.stderr)
        dev = loop.stdout.strip()
        try:
            os.chmod(dev, 0o666)
            apply([{"user": limited.pw_name, "io_max": [{"device": dev, "wbps": "1M"}]}])
            t0 = time.time()
            rc, text = in_cgroup(["blkio"], uid, "import subprocess; subprocess.run(['dd', 'if=/dev/zero', 'of=%s', "
                                 "'bs=256k', 'count=12', 'oflag=direct', 'status=none'], check=True)" % dev)
            rate = 3.0 / (time.time() - t0)
            print("io: 3 MiB direct write under wbps 1M ran at %.2f MiB/s" % rate)
            assert rc == 0, text
            assert 0.8 <= rate <= 1.2
            # the rule dropped from the policy is lifted in the kernel (it stayed in force before)
            out = apply([{"user": limited.pw_name, "pids_max": 500}])
            assert out["changed"], out
            t0 = time.time()
            rc, text = in_cgroup(["blkio"], uid, "import subprocess; subprocess.run(['dd', 'if=/dev/zero', 'of=%s', "
                                 "'bs=256k', 'count=12', 'oflag=direct', 'status=none'], check=True)" % dev)
            rate = 3.0 / (time.time() - t0)
            print("io: the same write after wbps was dropped ran at %.2f MiB/s" % rate)
            assert rc == 0 and rate > 3.0, text
        finally:
            subprocess.run(["losetup", "-d", dev], check=False)


def test_dropped_cpuset_and_io_weight_are_lifted(limited):
    """A cpuset left out of the policy gives the user's processes every CPU again; io_weight
    lands in the weight file this kernel has (BFQ's here: there is no blkio.weight)."""
    uid = limited.pw_uid
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    out = apply([{"user": limited.pw_name, "cpuset_cpus": "0", "io_weight": 300}])
    assert out["_status"] == "CHANGED", out
    rc, text = in_cgroup(["cpuset"], uid, code)
    assert rc == 0 and text.strip().splitlines()[-1] == "[0]", text
    weight = [f for f in ("blkio.bfq.weight", "blkio.weight") if os.path.exists(cg("blkio", uid, f))]
    print("io_weight 300 went to %s: %s" % (weight, out["targets"][0]["verified"]))
    out = apply([{"user": limited.pw_name, "pids_max": 500}])
    assert out["changed"], out
    rc, text = in_cgroup(["cpuset"], uid, code)
    every = sorted(os.sched_getaffinity(0))
    print("cpuset: affinity with cpuset_cpus 0, then after it was dropped: [0], %s (host %s)"
          % (text.strip(), every))
    assert rc == 0 and text.strip().splitlines()[-1] == str(every)
    assert apply([{"user": limited.pw_name, "pids_max": 500}])["changed"] is False


def test_a_run_that_fails_half_way_says_what_it_changed(limited):
    """The kernel refuses a value after an earlier target was written: the task fails with
    changed true and lists what it wrote (it said changed: false before)."""
    cpus = len(os.sched_getaffinity(0))
    out = apply([{"path": "halfway", "memory_max": "64M"},
                 {"user": limited.pw_name, "cpuset_cpus": str(cpus + 8)}])
    print("half-way failure: %s; changes_made_count %s" % (out.get("msg"), out.get("changes_made_count")))
    assert out["_status"].startswith("FAILED"), out
    assert out["changed"] is True and out["changes_made_count"] >= 1
    assert any(c.endswith("/halfway/memory.limit_in_bytes") for c in out["changes_made"]), out["changes_made"]


def test_bad_input_changes_nothing(limited):
    for limits, fragment in [
        ([{"user": limited.pw_name, "memory_max": "12 GB"}], "limits[0].memory_max: '12 GB' is not a size"),
        ([{"user": limited.pw_name, "memory_max": "1G"}, {"user": "no-such-user-x", "memory_max": "1G"}],
         "limits[1].user: 'no-such-user-x' is not a user"),
        ([{"user": "root", "memory_max": "1G"}], "root is never limited unless force: true"),
        ([{"user": limited.pw_name, "pids_max": 8}], "limits[0].pids_max: 8 is below the safe minimum 32"),
    ]:
        out = apply(limits)
        assert out["_status"].startswith("FAILED") and fragment in out["msg"], out
    assert not os.path.exists(cg("memory", limited.pw_uid))


def test_no_target_outside_the_managed_parent_and_no_system_user_without_force(limited, tmp_path):
    """A parent that climbs out of the hierarchy (it wrote plain files in /tmp before), the root
    itself, a slice name of dots (it removed the whole managed tree before) and a system user
    are refused, and nothing is written or removed."""
    uid = limited.pw_uid
    assert apply([{"user": limited.pw_name, "memory_max": "64M"}])["changed"]
    escape = str(tmp_path / "escape")
    climb = "../../../.." + escape
    for parent in (climb, "", "/", "/" + PARENT, PARENT + "/../x"):
        out = run_module("cgroup_limit", dict(backend="cgroupfs", parent=parent, exclusive=True,
                                              limits=[{"user": limited.pw_name, "memory_max": "64M"}]))
        assert out["_status"].startswith("FAILED") and "is not a relative cgroup name" in out["msg"], (parent, out)
    assert not os.path.exists(escape)
    daemon = pwd.getpwnam("daemon")
    for limits, fragment in [
        ([{"slice": "...slice", "state": "absent"}], "limits[0].slice: '...slice' is not a slice unit name"),
        ([{"slice": "a-..slice", "memory_max": "1G"}], "is not a slice unit name"),
        ([{"user": "daemon", "memory_max": "1G"}], "(uid %d) is a system user" % daemon.pw_uid),
    ]:
        out = apply(limits)
        assert out["_status"].startswith("FAILED") and fragment in out["msg"], out
    with open(cg("memory", uid, "memory.limit_in_bytes")) as fh:  # the managed tree is all there
        assert int(fh.read()) == 64 << 20
    assert not os.path.exists(cg("memory", daemon.pw_uid))
    forced = apply([{"user": "daemon", "memory_max": "1G"}], force=True)
    assert forced["changed"] and os.path.isdir(cg("memory", daemon.pw_uid)), forced


def test_persist_restores_after_reboot_and_pam_puts_the_login_in_the_cgroup(limited):
    """persist=true: the tree comes back after it is gone (a reboot), and a real PAM session
    (libpam, our own service file with pam_exec) lands the login in the user's cgroup."""
    uid = limited.pw_uid
    wanted = [{"user": limited.pw_name, "memory_max": "64M", "cpu_max": "50%"}]
    first = apply(wanted, persist=True)
    script = first["persist_script"]
    assert first["changed"] and script == "/etc/fairshare/cgroupfs-%s.sh" % PARENT and os.access(script, os.X_OK)
    assert apply(wanted, persist=True)["changed"] is False
    # cpuacct apart from cpu (this machine): the user's cgroup there too, for CPU time
    ctrls = [c for c in ("memory", "cpu", "cpuacct") if c in LAYOUT["v1"] and os.path.isdir(cg(c, uid))]
    for ctrl in ctrls:  # what a reboot does to cgroupfs (our cgroups only, no processes in them)
        os.rmdir(cg(ctrl, uid))
        os.rmdir(os.path.dirname(cg(ctrl, uid)))
    restore = subprocess.run([script, "restore"], capture_output=True, text=True, check=False)
    assert restore.returncode == 0, restore.stderr
    with open(cg("memory", uid, "memory.limit_in_bytes")) as fh:
        assert fh.read().strip() == str(64 << 20)
    assert apply(wanted, persist=True)["changed"] is False  # the restored tree is exactly what the module wants
    for ctrl in ctrls:
        os.rmdir(cg(ctrl, uid))
        os.rmdir(os.path.dirname(cg(ctrl, uid)))
    service = "fairshare-itest%d" % os.getpid()
    pam_file = "/etc/pam.d/" + service
    with open(pam_file, "w") as fh:
        fh.write("session optional pam_exec.so quiet %s session\n" % script)
    try:
        seen = pam_session(service, limited, 200)
        other = pam_session(service, pwd.getpwnam("nobody"), 1)  # a user not managed here is left where it is
    finally:
        os.unlink(pam_file)
    print("pam session: %s; the user's 200 MB allocator ended by signal %s" % (seen, seen["signal"]))
    assert seen["start"] == 0 and seen["open"] == 0
    assert seen["cgroups"]["cpu"] == seen["cgroups"]["memory"] == "/%s/user-%d" % (PARENT, uid)  # restored at login, session in
    assert seen["signal"] == 9 and not seen["survived"]
    assert PARENT not in other["cgroup"] and other["survived"]
    # the CPU time of that login (its allocator) is the user's: cpuacct is joined too, where v1 has it apart
    assert seen["cgroups"].get("cpuacct") == "/%s/user-%d" % (PARENT, uid), seen["cgroups"]
    usage = run_module("resource_usage", dict(users=[limited.pw_name], parent=PARENT))["usage"][0]
    print("resource_usage after the login (hierarchies %s): %s" % (ctrls, usage))
    assert usage["cpu_usec"] and usage["cpu_usec"] > 0, usage


def test_suse_pam_config_link_becomes_an_include_that_pam_config_still_feeds(limited, tmp_path):
    """SUSE's way (pam_pc_include), with real libpam: a link NAME -> NAME-pc in /etc/pam.d (as pam-config makes
    common-session) becomes our file that includes NAME-pc and adds the hook; a login through a service that
    includes NAME lands in the user's cgroup (killed at 64M), and a line "pam-config" writes into NAME-pc afterwards
    (an atomic rewrite, as pam-config does) still runs. With no hook the link is back and the login is not limited.
    Checked to fail with pam_pc_include off: the link becomes a frozen copy and the later -pc line never runs."""
    script = apply([{"user": limited.pw_name, "memory_max": "64M"}], persist=True)["persist_script"]
    name = "fs-pc%d" % os.getpid()
    link, pc, service = "/etc/pam.d/" + name, "/etc/pam.d/%s-pc" % name, "fairshare-itest-pc%d" % os.getpid()
    marker = tmp_path / "pc-line-ran"
    args = dict(session_hook=script, pam_files=[link], pam_pc_include=True)
    try:
        with open(pc, "w") as fh:
            fh.write("#%PAM-1.0\n# This file is autogenerated by pam-config. All changes\n# will be overwritten.\n"
                     "session required pam_permit.so\n")
        os.symlink(name + "-pc", link)
        with open("/etc/pam.d/" + service, "w") as fh:
            fh.write("session include %s\n" % name)
        first = run_module("profile_host", args)
        again = run_module("profile_host", args)
        made = open(link).read()
        with open(pc + ".new", "w") as fh:  # what pam-config does next: a new -pc, renamed into place
            fh.write(open(pc).read() + "session optional pam_exec.so /bin/touch %s\n" % marker)
        os.rename(pc + ".new", pc)
        seen = pam_session(service, limited, 200)
        fed = marker.exists()
        off = run_module("profile_host", dict(args, session_hook=""))
        back = os.readlink(link) if os.path.islink(link) else None
        after = pam_session(service, limited, 200)
    finally:
        for path in (link, pc, pc + ".new", "/etc/pam.d/" + service):
            if os.path.lexists(path):
                os.unlink(path)
    print("pam-config's link %s -> %s-pc: changed %s, again %s; our file:\n%s"
          "login 200 MiB under 64M: signal %s in %s; the line pam-config added later ran: %s; hook off: link %s, "
          "login in %s, survived %s" % (name, name, first["changed"], again["changed"], made, seen["signal"],
                                        seen["cgroups"].get("memory"), fed, back, after["cgroups"].get("memory"),
                                        after["survived"]))
    assert first["changed"] and not again["changed"]
    assert "session include %s-pc\n" % name in made and script in made
    assert seen["open"] == 0 and seen["signal"] == 9 and seen["cgroups"]["memory"] == "/%s/user-%d" % (PARENT, limited.pw_uid)
    assert fed
    assert off["changed"] and back == name + "-pc"
    assert after["open"] == 0 and after["survived"] and PARENT not in after["cgroups"].get("memory", "")


def test_a_call_for_other_users_or_without_persist_keeps_logins_limited(limited):
    """The hook covers every target a call gave it: a later persist call for another user, and a call
    without persist (the README's example, the thin cgroups role), leave this user's logins limited."""
    other = "fsother%d" % os.getpid()
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", other], check=True)
    service = "fairshare-itest-keep%d" % os.getpid()
    try:
        script = apply([{"user": limited.pw_name, "memory_max": "64M"}], persist=True)["persist_script"]
        later = apply([{"user": other, "memory_max": "128M"}], persist=True)
        assert later["changed"] and later["persist_script"] == script
        plain = run_module("cgroup_limit", dict(backend="cgroupfs", parent=PARENT,
                                                limits=[{"user": other, "memory_max": "96M"}]))
        assert plain["changed"] and plain["persist_script"] == script, plain
        with open("/etc/pam.d/" + service, "w") as fh:
            fh.write("session optional pam_exec.so quiet %s session\n" % script)
        seen = pam_session(service, limited, 200)
        print("after calls for another user (persist, then without): %s's login in %s, 200 MiB under 64M -> signal %s"
              % (limited.pw_name, seen["cgroups"].get("memory"), seen["signal"]))
        assert seen["cgroups"]["memory"] == "/%s/user-%d" % (PARENT, limited.pw_uid) and seen["signal"] == 9, seen
        gone = apply([{"user": other, "state": "absent"}])
        assert gone["persist_script"] == script  # the other user leaves the hook, this one stays
        with open(script) as fh:
            text = fh.read()
        assert "        %d) echo" % limited.pw_uid in text and "        %d) echo" % pwd.getpwnam(other).pw_uid not in text
    finally:
        if os.path.exists("/etc/pam.d/" + service):
            os.unlink("/etc/pam.d/" + service)
        subprocess.run(["userdel", other], check=False)


def test_pam_files_edits_only_pam_files(tmp_path):
    """profile_host writes its session line only into files of /etc/pam.d: another file, or a link
    there that leads elsewhere, fails the task and stays as it was."""
    target = tmp_path / "not-pam"
    target.write_text("important\n")
    link = "/etc/pam.d/fairshare-itest-link%d" % os.getpid()
    os.symlink(str(target), link)
    try:
        for path in (str(target), link, "/etc/pam.d/../fairshare-x"):
            out = run_module("profile_host", {"session_hook": "/etc/fairshare/cgroupfs-fairshare.sh",
                                              "pam_files": [path]})
            assert out["_status"].startswith("FAILED") and "is not a PAM configuration file" in out["msg"], out
    finally:
        os.unlink(link)
    assert target.read_text() == "important\n"


def test_exclusive_leaves_a_containers_cgroup_and_its_process_where_they_are(limited):
    """A container engine given the user's cgroup as cgroup_parent makes a child there; exclusive (and
    state absent) used to remove it and move its process to the root, out of every limit. Now the
    container's cgroup, its process and the levels above it stay, and the task names it."""
    uid = limited.pw_uid
    assert apply([{"user": limited.pw_name, "memory_max": "64M"}])["changed"]
    container = cg("memory", uid, "c" * 64)  # where docker --cgroup-parent /<parent>/user-UID puts one
    os.mkdir(container)
    held = subprocess.Popen(["sleep", "300"])
    try:
        with open(os.path.join(container, "cgroup.procs"), "w") as fh:
            fh.write(str(held.pid))
        for args in (dict(exclusive=True, limits=[]), dict(limits=[{"user": limited.pw_name, "state": "absent"}])):
            out = run_module("cgroup_limit", dict(backend="cgroupfs", parent=PARENT, **args))
            with open("/proc/%d/cgroup" % held.pid) as fh:
                where = [ln for ln in fh.read().splitlines() if ":memory:" in ln]
            print("%s: the container's process is in %s; left %s" % (args, where, out.get("left")))
            assert where == ["%s:memory:/%s/user-%d/%s" % (where[0].split(":")[0], PARENT, uid, "c" * 64)], where
            assert os.path.isdir(container) and os.path.isdir(cg("memory", uid))
        assert out["_status"] == "SUCCESS" and out["changed"] is False, out
    finally:
        held.kill()
        held.wait()
        os.rmdir(container)


def test_session_hook_takes_nothing_from_the_users_environment(limited, tmp_path):
    """The hook runs as root with the PAM environment, which a user can set (pam_env user_readenv):
    a PATH, IFS or ENV of theirs must not choose what it runs. Fake id, mkdir, cat, grep, env, sh
    and python3 first in PATH record that they ran; none may, and the session still lands."""
    script = apply([{"user": limited.pw_name, "memory_max": "64M"}], persist=True)["persist_script"]
    evil, marker = tmp_path / "evil", tmp_path / "ran"
    evil.mkdir()
    for tool in ("id", "mkdir", "cat", "grep", "env", "sh", "python3", "printf"):
        (evil / tool).write_text("#!/bin/sh\necho %s >> %s\n" % (tool, marker))
        (evil / tool).chmod(0o755)
    (evil / "rc").write_text("echo ENV >> %s\n" % marker)
    hostile = {"PAM_TYPE": "open_session", "PAM_USER": limited.pw_name, "PATH": str(evil), "ENV": str(evil / "rc"),
               "IFS": "/", "PYTHONPATH": str(evil), "BASH_ENV": str(evil / "rc")}
    # the process opening the session is this /bin/sh (the hook moves its parent), not pytest
    out = subprocess.run(["/bin/sh", "-c", '"$0" session; /bin/cat /proc/$$/cgroup', script], env=hostile,
                         capture_output=True, text=True, timeout=60, check=False)
    ran = marker.read_text() if marker.exists() else ""
    print("hostile PAM environment: the user's programs ran: %r; session in %s"
          % (ran, [ln for ln in out.stdout.splitlines() if ":memory:" in ln]))
    assert ran == "", ran
    assert "memory:/%s/user-%d" % (PARENT, limited.pw_uid) in out.stdout, out


ALLOC_ON_SIGNAL = "import sys; sys.stdin.readline(); b = bytearray(200 << 20); print('survived', flush=True)"


def test_processes_running_before_the_run_are_moved_into_their_cgroup(limited):
    """A process the user started before the limits existed is held to them after a run (adopt_processes)."""
    uid = limited.pw_uid
    before = subprocess.Popen(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", PYTHON, "-c",
                               ALLOC_ON_SIGNAL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    kept = subprocess.Popen(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", PYTHON, "-c",
                             ALLOC_ON_SIGNAL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        wanted = [{"user": limited.pw_name, "memory_max": "64M"}]
        # adopt_processes: false leaves running processes alone
        off = apply(wanted, adopt_processes=False)
        assert off["changed"] and "adopted" not in off["targets"][0], off
        check = run_module("cgroup_limit", dict(backend="cgroupfs", parent=PARENT, limits=wanted), check=True)
        assert check["targets"][0]["adopted"] == 2, check  # would move both, moves nothing
        with open("/proc/%d/cgroup" % before.pid) as fh:
            assert "memory:/%s/" % PARENT not in fh.read()
        kept.stdin.write("go\n")  # the second one allocates before the run, outside the limits: it survives
        kept.stdin.flush()
        assert kept.stdout.readline().strip() == "survived"
        kept.wait(timeout=30)
        out = apply(wanted)
        assert out["changed"] and out["targets"][0]["adopted"] == 1, out
        with open("/proc/%d/cgroup" % before.pid) as fh:
            cgroup = fh.read()
        print("after the run: %s" % " ".join(ln for ln in cgroup.splitlines() if ":memory:" in ln))
        assert "memory:/%s/user-%d\n" % (PARENT, uid) in cgroup
        assert apply(wanted)["changed"] is False  # nothing left to move
        before.stdin.write("go\n")
        before.stdin.flush()
        rc = before.wait(timeout=60)
        print("the process started before the run, 200 MiB under 64M: rc %d" % rc)
        assert rc == -9 and before.stdout.read() == ""
    finally:
        for proc in (before, kept):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def syslog_messages():
    """What is sent to /dev/log during the test, on a host with no syslog of its own (this one):
    the test binds the socket, reads it in a thread (useradd and every module log there too, and
    block once the queue is full) and removes it afterwards. None where a syslog daemon owns it."""
    if os.path.exists("/dev/log"):
        yield None
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/dev/log")
    sock.settimeout(0.2)
    got, done = [], threading.Event()

    def drain():
        while not done.is_set():
            try:
                got.append(sock.recv(65536).decode("utf-8", "replace"))
            except socket.timeout:
                pass
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield lambda: "\n".join(got)
    finally:
        done.set()
        reader.join(5)
        sock.close()
        os.unlink("/dev/log")


def test_users_the_run_never_listed_are_resolved_at_their_first_login(limited, syslog_messages):
    """profile_host login: a user created after the run gets the defaults at their first login, a member
    of a tier's group gets the tier, a cron-style PAM service lands there too, and a broken policy
    never blocks a login (defaults, then nothing; the reason in syslog)."""
    pid = os.getpid()
    group = "fstier%d" % pid
    policy = {"defaults": {"memory": {"max": "64M"}},
              "tiers": {"big": {"match": {"groups": [group]}, "memory": {"max": "320M"}}}}
    services = ["fairshare-itest%d" % pid, "fairshare-itest-cron%d" % pid]
    created = []

    def new_user(name, groups=()):
        subprocess.run(["useradd", "-M", "-s", "/bin/sh"] + (["-G", ",".join(groups)] if groups else []) + [name],
                       check=True)
        created.append(name)
        return pwd.getpwnam(name)

    subprocess.run(["groupadd", group], check=True)
    try:
        script = apply([{"user": limited.pw_name, "memory_max": "64M"}], persist=True)["persist_script"]
        for service in services:
            with open("/etc/pam.d/" + service, "w") as fh:
                fh.write("session optional pam_exec.so quiet %s session\n" % script)
        bad = run_module("profile_host", {"login": {"policy": {"defaults": {"memory": {"max": "64 M"}}}}})
        assert bad["_status"].startswith("FAILED") and "login.policy: defaults.memory.max" in bad["msg"], bad
        assert not os.path.exists(LOGIN_TOOL) and not os.path.exists(LOGIN_JSON)
        args = {"login": {"policy": policy, "parent": PARENT}}
        check = run_module("profile_host", args, check=True)
        assert check["changed"] and not os.path.exists(LOGIN_TOOL)
        first = run_module("profile_host", args, diff=True)
        assert first["changed"] and os.access(LOGIN_TOOL, os.X_OK), first
        assert run_module("profile_host", args)["changed"] is False

        fresh = new_user("fsnew%d" % pid)  # both made after the run: it listed neither
        member = new_user("fsbig%d" % pid, [group])
        seen = pam_session(services[0], fresh, 200)
        assert seen["open"] == 0 and seen["cgroups"]["memory"] == "/%s/user-%d" % (PARENT, fresh.pw_uid), seen
        assert seen["signal"] == 9 and not seen["survived"]
        cron = pam_session(services[1], fresh, 1)
        assert cron["cgroups"]["memory"] == "/%s/user-%d" % (PARENT, fresh.pw_uid) and cron["survived"], cron
        within = pam_session(services[0], member, 150)  # over the defaults' 64M, within the tier's 320M
        over = pam_session(services[0], member, 400)
        print("new user, 200 MiB under the defaults' 64M: signal %s; tier member, 150 MiB under 320M: survived %s, "
              "400 MiB: signal %s" % (seen["signal"], within["survived"], over["signal"]))
        assert within["survived"] and within["cgroups"]["memory"] == "/%s/user-%d" % (PARENT, member.pw_uid)
        assert over["signal"] == 9 and not over["survived"]
        resolved = json.loads(subprocess.run([LOGIN_TOOL, "resolve", member.pw_name], capture_output=True, text=True,
                                             check=True).stdout)
        assert resolved["limits"] == [{"user": member.pw_name, "memory_max": "320M"}], resolved
        assert resolved["profile"]["tier"] == "big" and resolved["problems"] == []
        saved = os.stat("/run/fairshare/login/%d.json" % member.pw_uid)  # for fairshare-usage: the user's own
        assert (saved.st_uid, saved.st_mode & 0o777) == (member.pw_uid, 0o400)

        with open(LOGIN_JSON, "w") as fh:  # a policy that cannot be read: the defaults, and the reason logged
            fh.write("{broken")
        late = new_user("fslate%d" % pid)
        fallback = pam_session(services[0], late, 200)
        assert fallback["open"] == 0 and fallback["signal"] == 9, fallback
        os.unlink(DEFAULTS_JSON)  # nothing readable at all: the session opens where it was
        last = new_user("fslast%d" % pid)
        untouched = pam_session(services[0], last, 200)
        assert untouched["open"] == 0 and untouched["survived"] and PARENT not in untouched["cgroup"], untouched
        if syslog_messages is not None:
            logged = syslog_messages()
            print("syslog:\n" + logged)
            assert "fairshare-login" in logged and "%s: Expecting property name" % LOGIN_JSON in logged
            assert "fslast%d (uid %d): no profile could be read" % (pid, last.pw_uid) in logged
            assert "fsbig%d (uid %d): tier big" % (pid, member.pw_uid) in logged
    finally:
        for service in services:
            if os.path.exists("/etc/pam.d/" + service):
                os.unlink("/etc/pam.d/" + service)
        gone = run_module("profile_host", {"login": {}})
        for name in created:
            saved = "/run/fairshare/login/%d.json" % pwd.getpwnam(name).pw_uid
            if os.path.exists(saved):  # what the resolver left for this test's users
                os.unlink(saved)
            subprocess.run(["userdel", name], check=False)
        for directory in ("/run/fairshare/login", "/run/fairshare"):
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)
        subprocess.run(["groupdel", group], check=False)
    # the login.json the test broke no longer reads as ours: left where it is, and said
    assert gone["foreign"] == [LOGIN_JSON] and os.path.exists(LOGIN_JSON), gone
    os.unlink(LOGIN_JSON)
    assert gone["changed"] and not any(os.path.exists(p) for p in (LOGIN_TOOL, LOGIN_JSON, USERS_TSV)), gone


def test_after_a_reboot_a_directory_users_first_login_finds_the_total_restored(limited):
    """A reboot empties cgroupfs; the first login afterwards may be a user the run never listed (a
    directory user), whom the host-side resolver places. The managed parent's total (aggregate.all, the
    reserve) must be back before that: the session hook restores the levels first. Proven by effect: the
    new user's own limit (the defaults, 400M) lets a 200 MiB allocation through, the parent's 150M total
    does not."""
    pid = os.getpid()
    service = "fairshare-itest-boot%d" % pid
    name = "fsboot%d" % pid
    made = []
    try:
        wanted = [{"path": ".", "memory_max": "150M"}, {"user": limited.pw_name, "memory_max": "64M"}]
        script = apply(wanted, persist=True)["persist_script"]
        policy = {"defaults": {"memory": {"max": "400M"}}}
        login = run_module("profile_host", {"login": {"policy": policy, "parent": PARENT}})
        assert login["changed"] and os.access(LOGIN_TOOL, os.X_OK), login
        with open("/etc/pam.d/" + service, "w") as fh:
            fh.write("session optional pam_exec.so quiet %s session\n" % script)
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], check=True)
        fresh = pwd.getpwnam(name)
        made.append(fresh.pw_uid)
        for root in LAYOUT["v1"].values():  # what a reboot does to cgroupfs (our cgroups, no process in them)
            top = os.path.join(root, PARENT)
            for path in sorted((d for d, _s, _f in os.walk(top)), key=len, reverse=True):
                os.rmdir(path)
        seen = pam_session(service, fresh, 200)
        with open(os.path.join(LAYOUT["v1"]["memory"], PARENT, "memory.limit_in_bytes")) as fh:
            total = int(fh.read())
        with open(os.path.join(LAYOUT["v1"]["memory"], PARENT, "user-%d" % fresh.pw_uid, "memory.limit_in_bytes")) as fh:
            own = int(fh.read())
        print("after the reboot: %s's first login in %s (own limit %d MiB, the parent's %d MiB); 200 MiB -> signal %s"
              % (name, seen["cgroups"].get("memory"), own >> 20, total >> 20, seen["signal"]))
        assert seen["open"] == 0 and seen["cgroups"]["memory"] == "/%s/user-%d" % (PARENT, fresh.pw_uid), seen
        assert own == 400 << 20 and total == 150 << 20
        assert seen["signal"] == 9 and not seen["survived"], seen
        assert apply(wanted, persist=True)["changed"] is False  # the restored tree is what the module wants
    finally:
        if os.path.exists("/etc/pam.d/" + service):
            os.unlink("/etc/pam.d/" + service)
        run_module("profile_host", {"login": {}})
        for saved in made:  # what the resolver left for this test's user
            if os.path.exists("/run/fairshare/login/%d.json" % saved):
                os.unlink("/run/fairshare/login/%d.json" % saved)
        subprocess.run(["userdel", name], check=False)
        for directory in ("/run/fairshare/login", "/run/fairshare"):
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)

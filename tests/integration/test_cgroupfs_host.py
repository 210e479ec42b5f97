"""cgroup_limit, cgroupfs backend, on this host's real kernel (no systemd, cgroup v1 hybrid).

Every limit is proven by effect: an allocator past memory.limit is OOM-killed, a busy
loop stays at its CPU quota, forks past pids.max fail, direct writes run at the
blkio throttle. Everything made here is removed afterwards.
"""
import os
import pwd
import subprocess
import tempfile
import time

import pytest

from conftest import PYTHON, pam_session, run_module
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
        finally:
            subprocess.run(["losetup", "-d", dev], check=False)


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


def test_persist_restores_after_reboot_and_pam_puts_the_login_in_the_cgroup(limited):
    """persist=true: the tree comes back after it is gone (a reboot), and a real PAM session
    (libpam, our own service file with pam_exec) lands the login in the user's cgroup."""
    uid = limited.pw_uid
    wanted = [{"user": limited.pw_name, "memory_max": "64M", "cpu_max": "50%"}]
    first = apply(wanted, persist=True)
    script = first["persist_script"]
    assert first["changed"] and script == "/etc/fairshare/cgroupfs-%s.sh" % PARENT and os.access(script, os.X_OK)
    assert apply(wanted, persist=True)["changed"] is False
    for ctrl in ("memory", "cpu"):  # what a reboot does to cgroupfs (our cgroups only, no processes in them)
        os.rmdir(cg(ctrl, uid))
        os.rmdir(os.path.dirname(cg(ctrl, uid)))
    restore = subprocess.run([script, "restore"], capture_output=True, text=True, check=False)
    assert restore.returncode == 0, restore.stderr
    with open(cg("memory", uid, "memory.limit_in_bytes")) as fh:
        assert fh.read().strip() == str(64 << 20)
    assert apply(wanted, persist=True)["changed"] is False  # the restored tree is exactly what the module wants
    for ctrl in ("memory", "cpu"):
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

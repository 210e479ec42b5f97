"""gpu_access without a GPU: character devices with the NVIDIA major (195) made by mknod.

A user granted GPU 0 gets past the device cgroup (the open then fails with ENXIO: no
driver behind the node); a user not granted gets EPERM from the device cgroup. Proven
on this host (no systemd, cgroup v1 devices controller) and in the systemd guest
(DeviceAllow in the user's slice, cgroup v2 BPF).
"""
import os
import pwd
import subprocess

import pytest

from conftest import PYTHON, pam_session, remove_gpu_traces, run_module, warnings_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
NODES = [("/dev/nvidia0", 0), ("/dev/nvidia1", 1), ("/dev/nvidiactl", 255)]
PARENT = "fairshare-gputest%d" % os.getpid()
OPEN = ("import errno, os, sys\nfor path in sys.argv[1:]:\n    try:\n        os.close(os.open(path, os.O_RDWR))\n"
        "        print(path, 'OK')\n    except OSError as exc:\n        print(path, errno.errorcode[exc.errno])")


def opened(lines):
    return dict(line.split() for line in lines.strip().splitlines())


@pytest.fixture
def host_gpus(test_user):
    if any(os.path.exists(path) for path, _m in NODES):
        pytest.skip("this host has NVIDIA device files of its own")
    other = "fsgpu%d" % os.getpid()
    subprocess.run(["useradd", "-M", other], check=True)
    for path, minor in NODES:
        subprocess.run(["mknod", "-m", "0666", path, "c", "195", str(minor)], check=True)
    try:
        yield test_user, pwd.getpwnam(other)
    finally:
        run_module("gpu_access", dict(parent=PARENT, policy="open", users=[
            {"name": test_user.pw_name, "gpus": "all"}, {"name": other, "gpus": "all"}]))
        remove_gpu_traces([path for path, _m in NODES], PARENT, [test_user.pw_name, other])
        subprocess.run(["userdel", other], check=False)


def host_open(uid, paths):
    cgroup = os.path.join("/sys/fs/cgroup/devices", PARENT, "user-%d" % uid, "cgroup.procs")
    script = 'echo $$ > %s; exec setpriv --reuid=%d --regid=%d --clear-groups %s -c "$1" %s' % (
        cgroup, uid, uid, PYTHON, " ".join(paths))
    out = subprocess.run(["sh", "-c", script, "sh", OPEN], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return opened(out.stdout)


def test_device_cgroup_on_this_host(host_gpus):
    alice, bob = host_gpus
    args = dict(parent=PARENT, policy="open", users=[{"name": alice.pw_name, "gpus": [0]},
                                                     {"name": bob.pw_name, "gpus": "none"}])
    check = run_module("gpu_access", args, check=True)
    assert check["changed"] and [g["index"] for g in check["gpus"]] == [0, 1]
    assert not os.path.exists(os.path.join("/sys/fs/cgroup/devices", PARENT))
    first = run_module("gpu_access", args)
    assert first["changed"] and first["backend"] == "cgroupfs-v1", first
    assert run_module("gpu_access", args)["changed"] is False
    paths = ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/null"]
    seen_a, seen_b = host_open(alice.pw_uid, paths), host_open(bob.pw_uid, paths)
    print("host, granted GPU 0: %s\nhost, granted none: %s" % (seen_a, seen_b))
    assert seen_a == {"/dev/nvidia0": "ENXIO", "/dev/nvidia1": "EPERM", "/dev/nvidiactl": "ENXIO", "/dev/null": "OK"}
    assert seen_b == {"/dev/nvidia0": "EPERM", "/dev/nvidia1": "EPERM", "/dev/nvidiactl": "EPERM", "/dev/null": "OK"}
    revoke = run_module("gpu_access", dict(args, users=[{"name": alice.pw_name, "gpus": "none"}]))
    assert revoke["changed"]
    assert host_open(alice.pw_uid, ["/dev/nvidia0"]) == {"/dev/nvidia0": "EPERM"}
    bad = run_module("gpu_access", dict(args, users=[{"name": alice.pw_name, "gpus": [7]}]))
    assert bad["_status"].startswith("FAILED") and "users[0].gpus: '7' is not a GPU of this host" in bad["msg"]
    bad = run_module("gpu_access", dict(args, users=[{"name": "no-such-user-g", "gpus": [0]}]))
    assert "users[0].name: 'no-such-user-g' is not a user" in bad["msg"]


@pytest.fixture
def four_gpus(host_gpus):
    """Four fake GPUs (the fixture's two and two more) and a third user."""
    extra = [("/dev/nvidia2", 2), ("/dev/nvidia3", 3)]
    third = "fsgpc%d" % os.getpid()
    subprocess.run(["useradd", "-M", third], check=True)
    for path, minor in extra:
        subprocess.run(["mknod", "-m", "0666", path, "c", "195", str(minor)], check=True)
    try:
        yield host_gpus + (pwd.getpwnam(third),)
    finally:
        run_module("gpu_access", dict(parent=PARENT, policy="open", users=[{"name": third, "gpus": "all"}]))
        for path, _m in extra:
            os.unlink(path)
        subprocess.run(["userdel", third], check=False)


def test_gpu_counts_give_each_user_their_own_gpus_on_this_host(four_gpus):
    """count: 1 for two users on four GPUs: different GPUs, each opens its own (ENXIO: no driver behind
    the node) and gets EPERM on the other three; a rerun keeps them; count: 3 beside them is refused
    with the numbers and changes nothing."""
    alice, bob, carol = four_gpus
    args = dict(parent=PARENT, policy="open", users=[{"name": alice.pw_name, "count": 1},
                                                     {"name": bob.pw_name, "count": 1}])
    first = run_module("gpu_access", args)
    assert first["changed"], first
    granted = dict((u["name"], u["gpus"]) for u in first["users"])
    assert len(granted[alice.pw_name]) == 1 and len(granted[bob.pw_name]) == 1
    assert granted[alice.pw_name] != granted[bob.pw_name]
    again = run_module("gpu_access", args)
    assert again["changed"] is False and dict((u["name"], u["gpus"]) for u in again["users"]) == granted
    paths = ["/dev/nvidia%d" % i for i in range(4)]
    seen = {}
    for pw in (alice, bob):
        seen[pw.pw_name] = host_open(pw.pw_uid, paths)
        own = "/dev/nvidia%d" % granted[pw.pw_name][0]
        assert seen[pw.pw_name] == dict((p, "ENXIO" if p == own else "EPERM") for p in paths), seen
    refused = run_module("gpu_access", dict(args, users=args["users"] + [{"name": carol.pw_name, "count": 3}]))
    print("GPU counts: %s; opens %s; count 3 beside them: %s" % (granted, seen, refused.get("msg")))
    assert refused["_status"].startswith("FAILED") and "add up to 5 GPUs; this host has 4 GPU(s)" in refused["msg"]
    assert refused["changed"] is False
    assert not os.path.exists(os.path.join("/sys/fs/cgroup/devices", PARENT, "user-%d" % carol.pw_uid))
    assert host_open(alice.pw_uid, paths) == seen[alice.pw_name]


def test_a_login_on_this_host_is_held_to_the_gpu_allowlist(host_gpus):
    """No systemd: a login (a real PAM session through cgroup_limit's session hook) joins the user's
    devices cgroup that gpu_access made under the same parent, so GPU 1 stays closed to a user granted
    GPU 0 (the hook used to join only cgroup_limit's own hierarchies, and GPU 1 opened)."""
    alice, bob = host_gpus
    service = "fairshare-gputest%d" % os.getpid()
    limits = run_module("cgroup_limit", dict(backend="cgroupfs", parent=PARENT, persist=True,
                                             limits=[{"user": alice.pw_name, "memory_max": "512M"}]))
    try:
        assert run_module("gpu_access", dict(parent=PARENT, policy="open", users=[
            {"name": alice.pw_name, "gpus": [0]}, {"name": bob.pw_name, "gpus": "none"}]))["changed"]
        with open("/etc/pam.d/" + service, "w") as fh:
            fh.write("session optional pam_exec.so quiet %s session\n" % limits["persist_script"])
        seen = pam_session(service, alice, 1, ["/dev/nvidia0", "/dev/nvidia1"])
        print("PAM login of the user granted GPU 0: devices cgroup %s, opened %s"
              % (seen["cgroups"].get("devices"), seen["opened"]))
        assert seen["open"] == 0 and seen["cgroups"]["devices"] == "/%s/user-%d" % (PARENT, alice.pw_uid)
        assert seen["opened"] == {"/dev/nvidia0": "ENXIO", "/dev/nvidia1": "EPERM"}
        # a reboot empties cgroupfs: the user's device cgroup is gone (removed here, as the kernel's tree
        # starts empty), and the next login puts it back with its allowlist (GPU 1 opened before)
        gone = os.path.join("/sys/fs/cgroup/devices", PARENT, "user-%d" % alice.pw_uid)
        os.rmdir(gone)
        again = pam_session(service, alice, 1, ["/dev/nvidia0", "/dev/nvidia1"])
        print("after the device cgroup was gone: login in %s, opened %s"
              % (again["cgroups"].get("devices"), again["opened"]))
        assert again["cgroups"]["devices"] == "/%s/user-%d" % (PARENT, alice.pw_uid)
        assert again["opened"] == {"/dev/nvidia0": "ENXIO", "/dev/nvidia1": "EPERM"}
    finally:
        if os.path.exists("/etc/pam.d/" + service):
            os.unlink("/etc/pam.d/" + service)
        run_module("cgroup_limit", dict(backend="cgroupfs", parent=PARENT, exclusive=True, limits=[]))


def test_no_gpu_means_no_change():
    if any(os.path.exists(path) for path, _m in NODES) or os.path.exists("/proc/driver/nvidia"):
        pytest.skip("this host has NVIDIA devices")
    out = run_module("gpu_access", dict(users=[{"name": "root", "gpus": "all"}]))
    assert out["changed"] is False and out["gpus"] == []
    assert out["users"][0]["note"] == "no GPU on this host"
    out = run_module("gpu_access", dict(require=True))
    assert out["_status"].startswith("FAILED") and "no GPU found" in out["msg"]
    # the input is checked on a host without GPUs too, before anything (it exited unchecked before)
    for users, fragment in (([{"name": "fs-no-such-user", "gpus": "all"}], "users[0].name: 'fs-no-such-user'"),
                            ([{"name": "root", "gpus": ["first"]}], "users[0].gpus: 'first' is not a GPU"),
                            ([{"name": "root", "gpus": "all", "mig": -1}], "users[0].mig: -1")):
        out = run_module("gpu_access", dict(users=users))
        assert out["_status"].startswith("FAILED") and fragment in out["msg"], out
    assert run_module("gpu_access", dict(group="fs-no-such-group", users=[]))["msg"].startswith("group:")


def test_device_cgroup_in_the_systemd_guest(guest):
    guest["ssh"]("id fsga || useradd fsga; id fsgb || useradd fsgb; "
                 "mknod -m 0666 /dev/nvidia0 c 195 0; mknod -m 0666 /dev/nvidia1 c 195 1; "
                 "mknod -m 0666 /dev/nvidiactl c 195 255")
    args = dict(policy="open", users=[{"name": "fsga", "gpus": [0]}, {"name": "fsgb", "gpus": "none"}])
    first = run_module("gpu_access", args, guest=guest)
    assert first["changed"] and first["backend"] == "systemd", first
    assert run_module("gpu_access", args, guest=guest)["changed"] is False
    seen = {}
    for user in ("fsga", "fsgb"):
        out = guest["ssh"]("uid=$(id -u %s); systemd-run --quiet --wait --pipe --collect --slice=user-$uid.slice "
                           "--uid=%s /usr/bin/python3 -c %s /dev/nvidia0 /dev/nvidia1 /dev/nvidiactl /dev/null"
                           % (user, user, "'" + OPEN.replace("'", "'\"'\"'") + "'"))
        seen[user] = opened(out.stdout)
    print("guest, granted GPU 0: %s\nguest, granted none: %s" % (seen["fsga"], seen["fsgb"]))
    assert seen["fsga"] == {"/dev/nvidia0": "ENXIO", "/dev/nvidia1": "EPERM", "/dev/nvidiactl": "ENXIO",
                            "/dev/null": "OK"}
    assert seen["fsgb"] == {"/dev/nvidia0": "EPERM", "/dev/nvidia1": "EPERM", "/dev/nvidiactl": "EPERM",
                            "/dev/null": "OK"}


MIG_CAPS = {"mig/config": 1, "gpu0/mig/gi1/access": 12, "gpu0/mig/gi1/ci0/access": 13,
            "gpu1/mig/gi1/access": 147, "gpu1/mig/gi1/ci0/access": 148}
# the GPU, control and caps nodes each instance's user opens, and all of them (config cap included)
MIG_OPENS = {"gpu0/gi1/ci0": ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-caps/nvidia-cap12", "/dev/nvidia-caps/nvidia-cap13"],
             "gpu1/gi1/ci0": ["/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-caps/nvidia-cap147", "/dev/nvidia-caps/nvidia-cap148"]}
MIG_NODES = ["/dev/nvidia-caps/nvidia-cap%d" % m for m in sorted(MIG_CAPS.values())]


def free_char_major(devices):
    """A character major no driver has (the text of /proc/devices), from the dynamic range."""
    text = devices.split("Block devices:")[0]
    taken = set(int(f.split()[0]) for f in text.splitlines() if f.split() and f.split()[0].isdigit())
    return [m for m in range(234, 255) if m not in taken][0]


def caps_files():
    """The driver's capability access files of MIG_CAPS: {path under /proc/driver: text}."""
    return dict(("nvidia/capabilities/" + rel, "DeviceFileMinor: %d\nDeviceFileMode: 292\nDeviceFileModify: 1\n" % minor)
                for rel, minor in MIG_CAPS.items())


@pytest.fixture
def mig_host(host_gpus, tmp_path):
    """Two fake GPUs with one MIG instance each: the driver's capability files in a directory that each module
    call sees as /proc/driver (a bind mount in its own mount namespace; this host's /proc is untouched), and the
    nvidia-caps nodes made by mknod with a major no driver has (an allowed open gets ENXIO)."""
    for rel, text in caps_files().items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if os.path.exists("/dev/nvidia-caps"):
        pytest.skip("this host has /dev/nvidia-caps of its own")
    os.mkdir("/dev/nvidia-caps")
    with open("/proc/devices") as fh:
        major = free_char_major(fh.read())
    nodes = MIG_NODES
    for node in nodes:
        subprocess.run(["mknod", "-m", "0666", node, "c", str(major), node.rsplit("cap", 1)[1]], check=True)
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              'mount --bind "$0" /proc/driver && exec "$@"', str(tmp_path)]
    try:
        yield host_gpus + (prefix, nodes)
    finally:
        for node in nodes:
            os.unlink(node)
        os.rmdir("/dev/nvidia-caps")


def test_mig_counts_give_each_user_the_caps_of_their_own_instance_on_this_host(mig_host):
    """mig: 1 for two users on two MIG GPUs with one instance each: each gets their own instance and opens its
    GPU and its two caps nodes (ENXIO: no driver behind them), and gets EPERM on the other user's GPU and caps
    and on the config cap; a rerun keeps them; mig 2 + 1 on two instances is refused with the numbers, and
    nothing changes. Without MIG on the host the module says so and grants nothing for it."""
    alice, bob, prefix, nodes = mig_host
    args = dict(parent=PARENT, policy="open", users=[{"name": alice.pw_name, "mig": 1}, {"name": bob.pw_name, "mig": 1}])
    first = run_module("gpu_access", args, prefix=prefix)
    assert first["changed"] and [i["key"] for i in first["mig_instances"]] == ["gpu0/gi1/ci0", "gpu1/gi1/ci0"], first
    mine = dict((u["name"], u["mig_instances"]) for u in first["users"])
    assert sorted(mine.values()) == [["gpu0/gi1/ci0"], ["gpu1/gi1/ci0"]], mine  # one each, different ones
    again = run_module("gpu_access", args, prefix=prefix)
    assert again["changed"] is False and dict((u["name"], u["mig_instances"]) for u in again["users"]) == mine
    paths = ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl"] + nodes
    own = dict((name, MIG_OPENS[keys[0]]) for name, keys in mine.items())
    seen = {}
    for pw in (alice, bob):
        seen[pw.pw_name] = host_open(pw.pw_uid, paths)
        assert seen[pw.pw_name] == dict((p, "ENXIO" if p in own[pw.pw_name] else "EPERM") for p in paths), seen
    refused = run_module("gpu_access", dict(args, users=[{"name": alice.pw_name, "mig": 2}, {"name": bob.pw_name, "mig": 1}]),
                         prefix=prefix)
    print("MIG instances: %s; opens %s; mig 2 + 1: %s" % (mine, seen, refused.get("msg")))
    assert refused["_status"].startswith("FAILED") and refused["changed"] is False
    assert "gpu.mig: the users' counts add up to 3 MIG instances; this host has 2 MIG instance(s)" in refused["msg"]
    assert host_open(alice.pw_uid, paths) == seen[alice.pw_name]
    plain = run_module("gpu_access", args)  # this host's own /proc/driver: no MIG
    assert plain["mig_instances"] == [] and all(u["mig_instances"] == [] for u in plain["users"]), plain
    warned = [w for w in warnings_of("gpu_access", args) if w.startswith("gpu.mig:")]
    assert warned and "no GPU of this host has any (MIG not enabled, or no instance made): none granted" in warned[0], warned
    assert host_open(alice.pw_uid, ["/dev/nvidia-caps/nvidia-cap12"]) == {"/dev/nvidia-caps/nvidia-cap12": "EPERM"}


def test_mig_counts_in_the_systemd_guest(guest):
    """The same two instances in the systemd guest (DeviceAllow by caps node path, cgroup v2 BPF): each user
    opens the GPU and caps nodes of their own instance and gets EPERM on the other's and on the config cap.
    The capability files are a bind mount over the guest's /proc/driver (the guest is the test's own)."""
    major = free_char_major(guest["ssh"]("cat /proc/devices").stdout)
    setup = ["id fsma || useradd fsma", "id fsmb || useradd fsmb", "mkdir -p /dev/nvidia-caps",
             "test -e /dev/nvidia0 || mknod -m 0666 /dev/nvidia0 c 195 0",
             "test -e /dev/nvidia1 || mknod -m 0666 /dev/nvidia1 c 195 1",
             "test -e /dev/nvidiactl || mknod -m 0666 /dev/nvidiactl c 195 255"]
    setup += ["mknod -m 0666 %s c %d %s" % (node, major, node.rsplit("cap", 1)[1]) for node in MIG_NODES]
    for rel, text in caps_files().items():
        setup.append("mkdir -p /root/fsmig/%s && printf '%s' > /root/fsmig/%s" % (
            os.path.dirname(rel), text.replace("\n", "\\n"), rel))
    setup.append("mountpoint -q /proc/driver && umount /proc/driver; mount --bind /root/fsmig /proc/driver")
    guest["ssh"]("; ".join(setup))
    args = dict(policy="open", users=[{"name": "fsma", "mig": 1}, {"name": "fsmb", "mig": 1}])
    first = run_module("gpu_access", args, guest=guest)
    assert first["changed"] and first["backend"] == "systemd", first
    mine = dict((u["name"], u["mig_instances"]) for u in first["users"])
    assert sorted(mine.values()) == [["gpu0/gi1/ci0"], ["gpu1/gi1/ci0"]], first
    assert run_module("gpu_access", args, guest=guest)["changed"] is False
    paths = ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl"] + MIG_NODES
    seen = {}
    for user in ("fsma", "fsmb"):
        out = guest["ssh"]("uid=$(id -u %s); systemd-run --quiet --wait --pipe --collect --slice=user-$uid.slice "
                           "--uid=%s /usr/bin/python3 -c %s %s" % (user, user, "'" + OPEN.replace("'", "'\"'\"'") + "'",
                                                                   " ".join(paths)))
        seen[user] = opened(out.stdout)
    print("guest, MIG instances %s: opens %s" % (mine, seen))
    guest["ssh"]("umount /proc/driver; rm -r /root/fsmig " + " ".join(MIG_NODES))
    for user in ("fsma", "fsmb"):
        own = MIG_OPENS[mine[user][0]]
        assert seen[user] == dict((p, "ENXIO" if p in own else "EPERM") for p in paths), seen

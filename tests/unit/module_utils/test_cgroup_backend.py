"""Backends against a scratch directory tree standing in for cgroupfs and /etc."""
import glob
import json
import os

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import cgroup_backend as b
from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import MANAGED_HEADER, normalize_limits
from ansible_collections.fairshare.resources.plugins.module_utils.host import Host


class FakeModule(object):
    def __init__(self, check_mode=False, outputs=None):
        self.check_mode = check_mode
        self.outputs = outputs or {}
        self.calls = []

    def run_command(self, argv, data=None, environ_update=None):
        self.calls.append(argv)
        return 0, self.outputs.get(argv[1], ""), ""

    @staticmethod
    def atomic_move(src, dst):
        os.rename(src, dst)


class FakeKernel(Host):
    """Directories act as cgroups: mkdir makes the files a kernel would show."""

    def mkdir(self, path):
        os.mkdir(path)
        for name in ("cgroup.procs", "cgroup.subtree_control", "cpuset.cpus", "cpuset.mems"):
            open(os.path.join(path, name), "w").close()

    def write_kernel(self, path, value):
        # per-device files keep one line per device, as the kernel does
        name = os.path.basename(path)
        if name == "io.max" or name.startswith("blkio.throttle."):
            lines = dict((line.split(" ", 1)[0], line) for line in open(path).read().splitlines() if line) \
                if os.path.exists(path) else {}
            lines[value.split(" ", 1)[0]] = value
            value = "\n".join(lines[dev] for dev in sorted(lines)) + "\n"
        Host.write_kernel(self, path, value)

    def rmdir(self, path):
        # a cgroup directory holds only kernel files; a real rmdir fails on child cgroups
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)


def v1_layout(root):
    layout = {"version": "v1", "v2_root": None, "v2_controllers": [], "v1": {}}
    for ctrl in ("cpu", "memory", "pids", "cpuset"):
        os.makedirs(os.path.join(root, ctrl))
        layout["v1"][ctrl] = os.path.join(root, ctrl)
    with open(os.path.join(root, "cpuset", "cpuset.cpus"), "w") as fh:
        fh.write("0-1\n")
    with open(os.path.join(root, "cpuset", "cpuset.mems"), "w") as fh:
        fh.write("0\n")
    return layout


def plan(i, kind, name, limits, uid=None, state="present"):
    return b.Target(i, kind, name, uid, state, normalize_limits(limits, "limits[%d]" % i, force=True) if limits else {},
                    "fairshare")


def test_cgroupfs_v1_creates_writes_and_is_idempotent(tmp_path):
    layout = v1_layout(str(tmp_path))
    host = FakeKernel(FakeModule())
    plans = [plan(0, "user", "a", {"memory_max": "100M", "cpu_max": "50%", "cpuset_cpus": "1"}, uid=2000)]
    out = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(plans, False)
    assert out["changed"] and out["targets"][0]["changed"]
    mem = tmp_path / "memory" / "fairshare" / "user-2000" / "memory.limit_in_bytes"
    assert mem.read_text() == str(100 << 20)
    cs = tmp_path / "cpuset" / "fairshare"
    assert (cs / "cpuset.mems").read_text() == "0" and (cs / "cpuset.cpus").read_text() == "0-1"
    assert (cs / "user-2000" / "cpuset.cpus").read_text() == "1"
    assert out["targets"][0]["verified"]["cpu.cfs_quota_us"] == "50000"
    again = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(plans, False)
    assert not again["changed"] and again["diff"] == []


def test_cgroupfs_check_mode_changes_nothing(tmp_path):
    layout = v1_layout(str(tmp_path))
    host = FakeKernel(FakeModule(check_mode=True))
    out = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply([plan(0, "user", "a", {"memory_max": "100M"}, uid=2000)], False)
    assert out["changed"] and out["diff"]
    assert not (tmp_path / "memory" / "fairshare").exists()


def test_cgroupfs_dropped_limit_is_reset_and_exclusive_removes(tmp_path):
    layout = v1_layout(str(tmp_path))
    host = FakeKernel(FakeModule())
    backend = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path))
    backend.apply([plan(0, "user", "a", {"memory_max": "100M", "pids_max": 100}, uid=2000),
                   plan(1, "path", "w/x", {"pids_max": 50})], False)
    out = backend.apply([plan(0, "user", "a", {"memory_max": "100M"}, uid=2000)], True)
    assert (tmp_path / "pids" / "fairshare" / "user-2000" / "pids.max").read_text() == "max"
    assert [r["target"] for r in out["removed"]] == ["fairshare/w"]
    assert not (tmp_path / "pids" / "fairshare" / "w").exists()
    assert (tmp_path / "memory" / "fairshare" / "user-2000").exists()


def _v2_tree(root, *marks):
    root.mkdir()
    for name in ("cgroup.subtree_control", "cpuset.cpus", "cpuset.mems") + marks:
        (root / name).write_text("")
    return {"version": "v2", "v2_root": str(root), "v2_controllers": ["cpu", "cpuset", "memory", "pids", "io"], "v1": {}}


def test_cgroupfs_every_dropped_limit_goes_back_to_no_limit_v2(tmp_path):
    """swap, cpuset, io weight, an io_max rule and a key dropped from a kept rule are all lifted."""
    layout = _v2_tree(tmp_path / "cg", "io.cost.qos")
    host = FakeKernel(FakeModule())
    first = {"memory_max": "100M", "memory_swap_max": "10M", "cpuset_cpus": "1", "io_weight": 300,
             "io_max": [{"device": "8:0", "rbps": "1M", "wbps": "2M"}, {"device": "8:16", "riops": 50}]}
    b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply([plan(0, "user", "a", first, uid=2000)], False)
    user = tmp_path / "cg" / "fairshare" / "user-2000"
    assert (user / "memory.swap.max").read_text() == str(10 << 20) and (user / "io.weight").read_text() == "default 300"
    out = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(
        [plan(0, "user", "a", {"memory_max": "100M", "io_max": [{"device": "8:0", "rbps": "1M"}]}, uid=2000)], False)
    assert out["changed"]
    assert (user / "memory.swap.max").read_text() == "max"
    assert (user / "cpuset.cpus").read_text() == "\n"  # empty: the parent's CPUs
    assert (user / "io.weight").read_text() == "default 100"
    assert (user / "io.max").read_text() == ("8:0 rbps=1048576 wbps=max riops=max wiops=max\n"
                                             "8:16 rbps=max wbps=max riops=max wiops=max\n")
    kept = {"memory_max": "100M", "io_max": [{"device": "8:0", "rbps": "1M"}]}
    out = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply([plan(0, "user", "a", kept, uid=2000)], False)
    assert not out["changed"], out["diff"]


def test_cgroupfs_v1_cpuset_goes_back_to_the_parents_and_bfq_weight_is_used(tmp_path):
    layout = v1_layout(str(tmp_path))
    os.makedirs(str(tmp_path / "blkio"))
    (tmp_path / "blkio" / "blkio.bfq.io_service_bytes").write_text("")  # the kernel has BFQ, not CFQ
    layout["v1"]["blkio"] = str(tmp_path / "blkio")
    host = FakeKernel(FakeModule())
    b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(
        [plan(0, "user", "a", {"cpuset_cpus": "1", "io_weight": 300}, uid=2000)], False)
    assert (tmp_path / "blkio" / "fairshare" / "user-2000" / "blkio.bfq.weight").read_text() == "118"
    assert not (tmp_path / "blkio" / "fairshare" / "user-2000" / "blkio.weight").exists()
    out = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(
        [plan(0, "user", "a", {"pids_max": 20}, uid=2000)], False)
    assert (tmp_path / "cpuset" / "fairshare" / "user-2000" / "cpuset.cpus").read_text() == "0-1"
    assert (tmp_path / "blkio" / "fairshare" / "user-2000" / "blkio.bfq.weight").read_text() == "100"
    assert out["targets"][0]["after"] == {"pids_max": 20}


def test_cgroupfs_io_weight_without_a_weight_file_is_a_warning(tmp_path):
    layout = v1_layout(str(tmp_path))
    os.makedirs(str(tmp_path / "blkio"))
    layout["v1"]["blkio"] = str(tmp_path / "blkio")
    out = b.CgroupfsBackend(FakeKernel(FakeModule()), layout, script_dir=str(tmp_path)).apply(
        [plan(0, "user", "a", {"io_weight": 300, "pids_max": 20}, uid=2000)], False)
    assert any("io_weight" in w for w in out["targets"][0]["warnings"])
    assert (tmp_path / "pids" / "fairshare" / "user-2000" / "pids.max").read_text() == "20"


def test_systemd_backend_writes_dropin_reload_once_and_exclusive(tmp_path):
    units = tmp_path / "units"
    stale = units / "user-3000.slice.d"
    stale.mkdir(parents=True)
    (stale / "50-fairshare.conf").write_text(MANAGED_HEADER + "\n[Slice]\nMemoryMax=1\n")
    foreign = units / "user-3001.slice.d"
    foreign.mkdir()
    (foreign / "50-fairshare.conf").write_text("[Slice]\nMemoryMax=1\n")
    module = FakeModule(outputs={"show": "Id=user-1000.slice\nActiveState=inactive\nControlGroup=\n\n"
                                         "Id=user-1001.slice\nActiveState=inactive\nControlGroup=\n"})
    layout = {"version": "v2", "v2_root": str(tmp_path), "v2_controllers": ["cpu", "memory", "pids"], "v1": {}}
    backend = b.SystemdBackend(Host(module), layout, unit_dir=str(units))
    plans = [plan(0, "user", "a", {"memory_max": "1G"}, uid=1000), plan(1, "user", "b", {"pids_max": 100}, uid=1001)]
    out = backend.apply(plans, True)
    assert out["changed"] and out["daemon_reload"]
    assert [c for c in module.calls if c[1] == "daemon-reload"] == [["systemctl", "daemon-reload"]]
    assert "MemoryMax=1073741824" in (units / "user-1000.slice.d" / "50-fairshare.conf").read_text()
    assert not stale.exists()  # ours, not listed: removed
    assert (foreign / "50-fairshare.conf").exists()  # not ours: left alone
    module.calls = []
    again = backend.apply(plans, True)
    assert not again["changed"] and not [c for c in module.calls if c[1] == "daemon-reload"]


def test_systemd_backend_absent_and_check_mode(tmp_path):
    units = tmp_path / "units"
    layout = {"version": "v2", "v2_root": str(tmp_path), "v2_controllers": ["memory"], "v1": {}}
    Host(FakeModule())
    b.SystemdBackend(Host(FakeModule()), layout, unit_dir=str(units)).apply(
        [plan(0, "user", "a", {"memory_max": "1G"}, uid=1000)], False)
    dropin = units / "user-1000.slice.d" / "50-fairshare.conf"
    check = b.SystemdBackend(Host(FakeModule(check_mode=True)), layout, unit_dir=str(units)).apply(
        [plan(0, "user", "a", None, uid=1000, state="absent")], False)
    assert check["changed"] and dropin.exists()
    b.SystemdBackend(Host(FakeModule()), layout, unit_dir=str(units)).apply(
        [plan(0, "user", "a", None, uid=1000, state="absent")], False)
    assert not dropin.exists() and not dropin.parent.exists()


def test_systemd_backend_takes_the_login_resolvers_runtime_dropin_of_users_it_lists(tmp_path):
    units, run = tmp_path / "units", tmp_path / "run"
    for uid, text in ((1000, MANAGED_HEADER + "\n[Slice]\nMemoryMax=1\n"), (1001, "[Slice]\nMemoryMax=1\n")):
        (run / ("user-%d.slice.d" % uid)).mkdir(parents=True)
        (run / ("user-%d.slice.d" % uid) / b.LOGIN_RUNTIME_DROPIN).write_text(text)
    layout = {"version": "v2", "v2_root": str(tmp_path), "v2_controllers": ["memory"], "v1": {}}
    module = FakeModule()
    plans = [plan(0, "user", "a", {"memory_max": "1G"}, uid=1000), plan(1, "user", "b", {"memory_max": "1G"}, uid=1001)]
    check = b.SystemdBackend(Host(FakeModule(check_mode=True)), layout, unit_dir=str(units), runtime_dir=str(run))
    assert check.apply(plans, False)["changed"] and (run / "user-1000.slice.d").exists()
    out = b.SystemdBackend(Host(module), layout, unit_dir=str(units), runtime_dir=str(run)).apply(plans, False)
    assert out["changed"] and out["daemon_reload"]
    assert not (run / "user-1000.slice.d").exists()  # ours: gone with its directory, in the same reload
    assert (run / "user-1001.slice.d" / b.LOGIN_RUNTIME_DROPIN).exists()  # not ours: left alone
    assert [d["before_header"] for d in out["diff"]][-2] == str(run / "user-1000.slice.d" / b.LOGIN_RUNTIME_DROPIN)
    again = b.SystemdBackend(Host(module), layout, unit_dir=str(units), runtime_dir=str(run)).apply(plans, False)
    assert not again["changed"]
    # a user without a runtime drop-in directory costs no read there (one listing of the runtime dir for all)
    host = Host(module)
    reads = []
    host.read = lambda path, _read=host.read: reads.append(path) or _read(path)
    many = plans + [plan(i, "user", "u%d" % i, {"memory_max": "1G"}, uid=2000 + i) for i in range(2, 50)]
    b.SystemdBackend(host, layout, unit_dir=str(units), runtime_dir=str(run)).apply(many, False)
    assert [p for p in reads if p.startswith(str(run))] == [str(run / "user-1001.slice.d" / b.LOGIN_RUNTIME_DROPIN)]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_systemd_version_from_layout(version):
    layout = {"version": version, "v2_root": "/x", "v2_controllers": [], "v1": {"memory": "/m"} if version == "v1" else {}}
    assert b.SystemdBackend(None, layout).version == version


def _sh(script, *args, **env):
    import subprocess
    return subprocess.run(["sh", str(script)] + list(args), env=dict(os.environ, **env), capture_output=True, text=True,
                          check=False)


def test_cgroupfs_persist_script_restores_the_tree_and_moves_a_session(tmp_path):
    import shutil
    layout = v1_layout(str(tmp_path / "cg"))
    host = FakeKernel(FakeModule())
    backend = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path / "etc"))
    plans = [plan(0, "path", "user-0/jobs", {"memory_max": "50M", "cpuset_cpus": "1"}),
             plan(1, "user", "root", {"memory_max": "100M", "cpu_max": "50%", "cpuset_cpus": "0-1"}, uid=0),
             plan(2, "path", "other", {"pids_max": 7})]
    backend.apply(plans, False)
    out = backend.persist(True)
    script = tmp_path / "etc" / "cgroupfs-fairshare.sh"
    assert out["changed"] and out["path"] == str(script) and os.stat(str(script)).st_mode & 0o777 == 0o755
    assert b.CgroupfsBackend(host, layout, script_dir=str(tmp_path / "etc")).apply(plans, False)["changed"] is False
    again = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path / "etc"))
    again.apply(plans, False)
    assert again.persist(True)["changed"] is False
    before = dict((str(p.relative_to(tmp_path)), p.read_text().strip()) for p in (tmp_path / "cg").rglob("*")
                  if p.is_file() and "fairshare" in str(p) and p.read_text().strip()
                  and p.name not in ("cgroup.procs", "cgroup.subtree_control"))  # the fake kernel's empty files aside
    jobs = sorted(k.split("/", 2)[2] for k in before if "/jobs/" in k)
    assert jobs == ["fairshare/user-0/jobs/cpuset.cpus", "fairshare/user-0/jobs/cpuset.mems",
                    "fairshare/user-0/jobs/memory.limit_in_bytes"]
    assert len(before) == 11
    for ctrl in ("cpu", "memory", "pids", "cpuset"):
        shutil.rmtree(str(tmp_path / "cg" / ctrl / "fairshare"))  # what a reboot does to cgroupfs
    res = _sh(script, "restore")
    assert res.returncode == 0, res.stderr
    after = dict((k, (tmp_path / k).read_text().strip()) for k in before)
    assert after == before  # same files, same values (cpuset.mems copied down, user before its workload)
    # a login of the user whose cgroup is gone again: restored, then the PAM caller ($PPID) moved in
    shutil.rmtree(str(tmp_path / "cg" / "memory" / "fairshare"))
    res = _sh(script, "session", PAM_TYPE="open_session", PAM_USER="root")
    assert res.returncode == 0
    for ctrl in ("cpu", "memory", "cpuset"):
        assert (tmp_path / "cg" / ctrl / "fairshare" / "user-0" / "cgroup.procs").read_text().strip() == str(os.getpid())
    assert not (tmp_path / "cg" / "pids" / "fairshare" / "user-0").exists()  # no pids limit: not in that hierarchy
    assert (tmp_path / "cg" / "memory" / "fairshare" / "user-0" / "memory.limit_in_bytes").read_text().strip() \
        == str(100 << 20)
    # close_session, unknown users and a user not managed here: nothing, and still exit 0
    (tmp_path / "cg" / "memory" / "fairshare" / "user-0" / "cgroup.procs").write_text("")
    for env in ({"PAM_TYPE": "close_session", "PAM_USER": "root"}, {"PAM_TYPE": "open_session", "PAM_USER": "nosuchuser-x"},
                {"PAM_TYPE": "open_session", "PAM_USER": "nobody"}):
        assert _sh(script, "session", **env).returncode == 0
    assert (tmp_path / "cg" / "memory" / "fairshare" / "user-0" / "cgroup.procs").read_text() == ""
    assert _sh(script, "bogus").returncode == 2
    gone = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path / "etc"))
    assert gone.persist(False)["changed"] and not script.exists()


@pytest.mark.parametrize("total", [True, False])
def test_a_login_the_script_does_not_list_restores_the_levels_above_users_first(tmp_path, total):
    """After a reboot, the login of a user the last run did not list (a directory user, one made later) goes to
    the host-side resolver, which makes a missing level without its limits: where the parent or a tier has a
    total, the script runs restore first, so that the level is back with its limits. Without a total nothing is
    restored for such a login (the listed users' own logins do that)."""
    import shutil
    layout = v1_layout(str(tmp_path / "cg"))
    host = FakeKernel(FakeModule())
    backend = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path / "etc"))
    plans = [plan(1, "user", "root", {"memory_max": "100M"}, uid=0),
             plan(2, "path", "user-0/jobs", {"memory_max": "50M"})]
    if total:
        plans += [plan(0, "path", ".", {"memory_max": "300M"}), plan(3, "path", "tier-lab", {"pids_max": 64})]
    backend.apply(plans, False)
    script = backend.persist(True)["path"]
    levels = [line for line in open(script).read().splitlines() if line.startswith("LEVELS=")]
    want = " ".join(str(tmp_path / "cg" / c / r) for c, r in (("memory", "fairshare"), ("pids", "fairshare/tier-lab")))
    assert levels == (["LEVELS='%s'" % want] if total else ["LEVELS=''"])  # no user's cgroup, no workload
    for ctrl in ("memory", "pids"):
        shutil.rmtree(str(tmp_path / "cg" / ctrl / "fairshare"), ignore_errors=not total)  # what a reboot does
    assert _sh(script, "session", PAM_TYPE="open_session", PAM_USER="nobody").returncode == 0
    parent = tmp_path / "cg" / "memory" / "fairshare"
    if total:
        assert (parent / "memory.limit_in_bytes").read_text().strip() == str(300 << 20)
        assert (tmp_path / "cg" / "pids" / "fairshare" / "tier-lab" / "pids.max").read_text().strip() == "64"
    else:
        assert not parent.exists()


def test_cgroupfs_persist_v2_session_goes_into_a_leaf(tmp_path):
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.subtree_control").write_text("")
    layout = {"version": "v2", "v2_root": str(root), "v2_controllers": ["cpu", "memory", "pids"], "v1": {}}
    host = FakeKernel(FakeModule())
    backend = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path))
    backend.apply([plan(0, "user", "root", {"memory_max": "100M", "pids_max": 10}, uid=0)], False)
    script = backend.persist(True)["path"]
    assert _sh(script, "session", PAM_TYPE="open_session", PAM_USER="root").returncode == 0
    leaf = root / "fairshare" / "user-0" / "login-sessions"
    assert (leaf / "cgroup.procs").read_text().strip() == str(os.getpid())
    # the leaf is ours: exclusive keeps it while the user is listed
    again = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path))
    out = again.apply([plan(0, "user", "root", {"memory_max": "100M", "pids_max": 10}, uid=0)], True)
    assert out["removed"] == [] and leaf.exists()


def test_cgroupfs_persist_leaves_a_foreign_file_alone(tmp_path):
    layout = v1_layout(str(tmp_path / "cg"))
    (tmp_path / "cgroupfs-fairshare.sh").write_text("#!/bin/sh\necho mine\n")
    backend = b.CgroupfsBackend(FakeKernel(FakeModule()), layout, script_dir=str(tmp_path))
    assert backend.persist(False)["changed"] is False
    assert (tmp_path / "cgroupfs-fairshare.sh").read_text() == "#!/bin/sh\necho mine\n"


def test_proc_cgroup_and_which_processes_move():
    from ansible_collections.fairshare.resources.plugins.module_utils import cgroup_backend as cb
    v1 = cb.parse_proc_cgroup("9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/openrc.sshd\n0::/\n")
    assert v1 == {"name=systemd": "/", "memory": "/process_api/abc", "cpu": "/openrc.sshd", "cpuacct": "/openrc.sshd",
                  "": "/"}
    users = {1000: [("memory", "/m/fs/user-1000/"), ("cpu", "/c/fs/user-1000/")],
             2000: [("", "/u/fs/user-2000/login-sessions")]}
    processes = [
        (10, 1000, v1),  # a login before the limits: both hierarchies move
        (11, 1000, {"memory": "/fs/user-1000", "cpu": "/fs/user-1000/jobs"}),  # ours already: stays
        (12, 1000, {"memory": "/docker/0123abcd", "cpu": "/docker/0123abcd"}),  # a container's: left, counted
        (13, 2000, {"": "/system.slice/cron.service"}),  # v2: into the session leaf
        (14, 2000, {"": "/user.slice/user-2000.slice/user@2000.service/user.slice/libpod-4f2a.scope"}),
        (15, 3000, {"": "/"}),  # not a listed user
    ]
    moves, left = cb.adoption_moves(processes, users, "fs")
    assert moves == [(10, 1000, "/m/fs/user-1000/"), (10, 1000, "/c/fs/user-1000/"),
                     (13, 2000, "/u/fs/user-2000/login-sessions")]
    assert left == {1000: 1, 2000: 1}
    assert cb.in_container_cgroup("/kubepods/burstable/pod1/abc") and not cb.in_container_cgroup("/openrc.sshd")


def test_cgroupfs_persist_covers_every_target_of_the_parent_across_calls(tmp_path):
    """A call for some users keeps the others in the hook; a call without persist keeps the hook;
    a removed target leaves it; only persist=false removes the script."""
    layout = v1_layout(str(tmp_path / "cg"))
    host = FakeKernel(FakeModule())
    etc = str(tmp_path / "etc")
    script = tmp_path / "etc" / "cgroupfs-fairshare.sh"

    def call(plans, mode, exclusive=False):
        backend = b.CgroupfsBackend(host, layout, script_dir=etc)
        backend.apply(plans, exclusive)
        return backend.persist(mode)

    def cases():
        return sorted(ln.split(")")[0].strip() for ln in script.read_text().splitlines() if ln.strip()[:1].isdigit())
    alice = plan(0, "user", "alice", {"memory_max": "1G"}, uid=1000)
    bob = plan(0, "user", "bob", {"memory_max": "2G"}, uid=1001)
    assert call([alice], None)["path"] is None and not script.exists()  # unset: none is made
    assert call([alice], True)["changed"] and cases() == ["1000"]
    assert call([bob], True)["changed"] and cases() == ["1000", "1001"]  # alice stays covered
    assert call([plan(0, "user", "bob", {"memory_max": "3G"}, uid=1001)], None)["changed"]  # kept up to date
    assert "3221225472" in script.read_text() and "2147483648" not in script.read_text() and cases() == ["1000", "1001"]
    assert call([], None)["changed"] is False and cases() == ["1000", "1001"]  # a call without persist keeps it
    assert call([plan(0, "user", "alice", None, uid=1000, state="absent")], None)["changed"] and cases() == ["1001"]
    assert call([alice], True, exclusive=True)["changed"] and cases() == ["1000"]  # exclusive dropped bob
    assert call([], None, exclusive=True)["path"] is None and not script.exists()  # nothing left under the parent
    assert call([alice], True)["path"] == str(script)
    assert call([], False)["changed"] and not script.exists()  # only false removes it


def test_exclusive_and_absent_remove_only_what_our_calls_made(tmp_path):
    """A container's cgroup under a user's cgroup and another program's cgroup under the parent stay,
    with the levels above them; ours go once nothing foreign is below them."""
    layout = v1_layout(str(tmp_path / "cg"))
    host = FakeKernel(FakeModule())
    etc = tmp_path / "etc"

    def backend():
        return b.CgroupfsBackend(host, layout, script_dir=str(etc))
    backend().apply([plan(0, "user", "a", {"memory_max": "100M"}, uid=2000),
                     plan(1, "user", "c", {"memory_max": "100M"}, uid=2002)], False)
    registry = json.loads((etc / "cgroupfs-fairshare.json").read_text())["made"]
    assert registry == ["fairshare", "fairshare/user-2000", "fairshare/user-2002"]
    mem = tmp_path / "cg" / "memory" / "fairshare"
    container = mem / "user-2000" / ("ab" * 32)
    host.mkdir(str(container))
    host.mkdir(str(mem / "docker-other"))
    out = backend().apply([], True)  # nothing wanted: only user-2002 can go
    assert [r["target"] for r in out["removed"]] == ["fairshare/user-2002"]
    assert container.exists() and (mem / "docker-other").exists()
    assert sorted(out["left"]) == ["fairshare/docker-other", "fairshare/user-2000/" + "ab" * 32]
    gone = backend().apply([plan(0, "user", "a", None, uid=2000, state="absent")], False)
    assert gone["changed"] is False and container.exists() and "did not make" in gone["targets"][0]["warnings"][0]
    host.rmdir(str(container))
    host.rmdir(str(mem / "docker-other"))
    out = backend().apply([], True)
    assert [r["target"] for r in out["removed"]] == ["fairshare"] and not mem.exists()
    assert not (etc / "cgroupfs-fairshare.json").exists()


def test_systemd_version():
    from ansible_collections.fairshare.resources.plugins.module_utils.platform import systemd_version
    assert systemd_version("systemd 252 (252.30-1~deb12u2)\n+PAM +AUDIT") == 252
    assert systemd_version("systemd 239 (239-78.el8)\n") == 239
    assert systemd_version("") is None and systemd_version("bash: systemctl: not found") is None


class _Pw(object):
    def __init__(self, name, uid):
        self.pw_name, self.pw_uid = name, uid


def test_template_plans_mask_root_system_exempt_and_unlimited_users():
    passwd = [_Pw("root", 0), _Pw("daemon", 1), _Pw("postgres", 115), _Pw("alice", 1000), _Pw("nobody", 65534)]
    plans = [plan(0, "user", "alice", {"memory_max": "1G"}, uid=1000), plan(1, "user", "boss", None, uid=1001,
                                                                            state="absent")]
    out, extra = b.template_targets(plans, {"memory_max": 2 << 30}, ["0"], 999, "fairshare", passwd=passwd)
    assert extra[0].unit == b.TEMPLATE_UNIT and extra[0].state == "present"
    # a mask: the user's own drop-in, present and without limits
    assert sorted((p.unit, p.state, p.limits) for p in extra[1:]) == [
        ("user-0.slice", "present", {}), ("user-1.slice", "present", {}), ("user-115.slice", "present", {})]
    assert out[0] is plans[0] and out[1].state == "present" and out[1].limits == {}
    assert all(p.limits == {} and p.index < 0 for p in extra[1:])
    _out, extra = b.template_targets(plans, {"memory_max": 1}, [], 999, "fairshare", passwd=passwd,
                                     has_own=lambda unit: unit == "user-115.slice")  # limits of its own stay
    assert "user-115.slice" not in [p.unit for p in extra]
    out, extra = b.template_targets(plans, {}, [], 999, "fairshare", passwd=passwd)
    assert out == plans and [(p.unit, p.state) for p in extra] == [(b.TEMPLATE_UNIT, "absent")]


def test_masks_render_as_an_empty_dropin_of_the_templates_name(tmp_path):
    layout = {"version": "v2", "v2_root": str(tmp_path), "v2_controllers": ["memory"], "v1": {}}
    units = tmp_path / "units"
    backend = b.SystemdBackend(Host(FakeModule()), layout, unit_dir=str(units))
    masked = b.Target(-2, "user", "root", 0, "present", {}, "fairshare")
    backend.apply([b.Target(-1, "slice", b.TEMPLATE_UNIT, None, "present", {"memory_max": 2 << 30}, "fairshare"),
                   masked], False)
    assert (units / "user-.slice.d" / "50-fairshare.conf").read_text().endswith("[Slice]\nMemoryMax=2147483648\n")
    assert (units / "user-0.slice.d" / "50-fairshare.conf").read_text() == b.MASK_TEXT
    assert backend.mask_units() == ["user-0.slice"]


def test_site_dropins_that_override_ours_are_found(tmp_path):
    etc, ctl = tmp_path / "etc", tmp_path / "ctl"
    files = {etc / "user-.slice.d" / "90-site.conf": "[Slice]\nMemoryMax=64G\nCPUWeight=10\n",
             etc / "user-.slice.d" / "10-early.conf": "[Slice]\nMemoryMax=1G\n",  # before ours: ours wins
             etc / "user-1000.slice.d" / "60-x.conf": "[Slice]\n# MemoryMax=1\nTasksMax=5\n",
             etc / "user-1001.slice.d" / "70-ours.conf": b.MASK_TEXT + "MemoryMax=1\n",
             ctl / "user-1002.slice.d" / "50-fairshare.conf": "[Slice]\nCPUQuota=10%\n"}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    own = {"user-1000.slice": {"MemoryMax", "TasksMax"}}
    found = b.dropin_overrides(Host.read, lambda unit: own.get(unit, {"MemoryMax", "CPUQuota"}),
                               roots=(str(ctl), str(etc)), ours_root=str(etc))
    assert [(os.path.basename(os.path.dirname(f["path"])), f["properties"]) for f in found] == [
        ("user-1002.slice.d", ["CPUQuota", "MemoryMax"]), ("user-.slice.d", ["MemoryMax"]),
        ("user-1000.slice.d", ["TasksMax"])]
    # the listings find what glob finds, in its order (a hidden file, a file where a directory would be, no .conf)
    (etc / "user-1000.slice.d" / ".hidden.conf").write_text("[Slice]\n")
    (etc / "user-1000.slice.d" / "notes.txt").write_text("")
    (etc / "user-9.slice.d").write_text("")
    (etc / "other.slice.d").mkdir()
    (etc / "other.slice.d" / "80-x.conf").write_text("")
    for root in (ctl, etc, tmp_path / "missing"):
        want = sorted(glob.glob(os.path.join(str(root), "user-*.slice.d", "*.conf")))
        assert [path for _unit, _name, path in b._user_slice_dropins(str(root))] == want
    assert sorted(set(u for u, _n, _p in b._user_slice_dropins(str(etc)))) == ["user-.slice", "user-1000.slice", "user-1001.slice"]


def test_the_managed_parent_itself_takes_the_total_of_all_users(tmp_path):
    """path "." (aggregate.all on cgroupfs hosts): the limits go to the managed parent, above every user."""
    layout = v1_layout(str(tmp_path))
    host = FakeKernel(FakeModule())
    out = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(
        [plan(0, "path", ".", {"memory_max": "300M"}), plan(1, "user", "a", {"memory_max": "200M"}, uid=2000)], False)
    assert out["changed"] and out["targets"][0]["path"] == "fairshare"
    assert (tmp_path / "memory" / "fairshare" / "memory.limit_in_bytes").read_text() == str(300 << 20)
    assert (tmp_path / "memory" / "fairshare" / "user-2000" / "memory.limit_in_bytes").read_text() == str(200 << 20)


def test_cgroupfs_registry_says_which_files_to_lift_and_reads_no_others(tmp_path):
    """The registry records the files each target has from us; a later call lifts those it drops
    and leaves a limit it never set (another program's) alone. A registry of an older version
    (no "set") still lifts everything - every file is read then."""
    layout = v1_layout(str(tmp_path))
    host = FakeKernel(FakeModule())
    user = tmp_path / "pids" / "fairshare" / "user-2000"
    b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(
        [plan(0, "user", "a", {"memory_max": "100M", "pids_max": 100}, uid=2000)], False)
    registry = json.loads((tmp_path / "cgroupfs-fairshare.json").read_text())
    assert registry["set"] == {"fairshare/user-2000": ["memory.limit_in_bytes", "pids.max"]}
    cpu = tmp_path / "cpu" / "fairshare" / "user-2000"
    cpu.mkdir(parents=True)
    (cpu / "cpu.shares").write_text("512\n")  # not ours: no call of ours wrote it
    reads = []
    host.read_kernel = lambda path, _read=host.read_kernel: reads.append(os.path.basename(path)) or _read(path)
    out = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(
        [plan(0, "user", "a", {"memory_max": "100M"}, uid=2000)], False)
    assert out["changed"] and (user / "pids.max").read_text() == "max"
    assert (cpu / "cpu.shares").read_text() == "512\n" and "cpu.shares" not in reads
    registry = json.loads((tmp_path / "cgroupfs-fairshare.json").read_text())
    assert registry["set"] == {"fairshare/user-2000": ["memory.limit_in_bytes"]}
    # an older registry: only "made"; the dropped memory limit is found by reading every file
    (tmp_path / "cgroupfs-fairshare.json").write_text(json.dumps({"made": registry["made"]}))
    out = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(
        [plan(0, "user", "a", {"pids_max": 10}, uid=2000)], False)
    assert (tmp_path / "memory" / "fairshare" / "user-2000" / "memory.limit_in_bytes").read_text() == "-1"
    assert (cpu / "cpu.shares").read_text() == "1024"  # the old way lifts every limit there
    assert json.loads((tmp_path / "cgroupfs-fairshare.json").read_text())["set"] == {
        "fairshare/user-2000": ["pids.max"]}


def test_cgroupfs_first_call_reads_no_file_to_lift_and_a_tree_without_registry_is_still_lifted(tmp_path):
    """Where no call of ours has been (no registry, no persist script, no managed parent) there is no limit of
    ours to lift: a first call reads only the files it sets (a first run at 10,000 users read 140,000). A tree
    of 0.1.0 (the parent there, neither registry nor script) is still read whole and its dropped limits lifted."""
    layout = v1_layout(str(tmp_path))
    host = FakeKernel(FakeModule())
    reads = []
    host.read_kernel = lambda path, _read=host.read_kernel: reads.append(os.path.basename(path)) or _read(path)
    b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(
        [plan(0, "user", "a", {"memory_max": "100M"}, uid=2000)], False)
    # the cgroup was not there: nothing was read before the write, only the read-back after it
    assert reads == ["memory.limit_in_bytes"]
    # 0.1.0 left this: a limit it set, no registry and no script; the next call drops the limit
    os.unlink(str(tmp_path / "cgroupfs-fairshare.json"))
    del reads[:]
    b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(
        [plan(0, "user", "a", {"pids_max": 10}, uid=2000)], False)
    assert (tmp_path / "memory" / "fairshare" / "user-2000" / "memory.limit_in_bytes").read_text() == "-1"
    assert "memory.limit_in_bytes" in reads and "pids.max" in reads
    assert "cpu.shares" not in reads  # no cpu cgroup was ever made for the user: no file there to read


def test_cgroupfs_verified_values_read_back_only_what_was_written(tmp_path):
    layout = v1_layout(str(tmp_path))
    host = FakeKernel(FakeModule())
    plans = [plan(0, "user", "a", {"memory_max": "100M", "pids_max": 100}, uid=2000)]
    b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(plans, False)
    reads = []
    host.read_kernel = lambda path, _read=host.read_kernel: reads.append(os.path.basename(path)) or _read(path)
    out = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(plans, False)
    assert not out["changed"]
    assert out["targets"][0]["verified"] == {"memory.limit_in_bytes": str(100 << 20), "pids.max": "100"}
    assert sorted(reads) == ["memory.limit_in_bytes", "pids.max"]


def test_many_user_lookups_read_the_passwd_database_once():
    from ansible_collections.fairshare.resources.plugins.module_utils.accounts import Accounts, NotFound
    import pwd
    local = [pwd.struct_passwd(("u%d" % i, "x", 5000 + i, 5000 + i, "", "/", "/bin/sh")) for i in range(40)]
    directory = pwd.struct_passwd(("ldapuser", "x", 900000, 900000, "", "/", "/bin/sh"))
    calls = []

    def getpwnam(name):
        calls.append(name)
        if name == "ldapuser":
            return directory
        raise KeyError(name)

    accounts = Accounts(expected=41, getpwall=lambda: local, getpwnam=getpwnam, getpwuid=lambda uid: getpwnam(str(uid)))
    assert [accounts.user("u%d" % i).pw_uid for i in range(40)] == list(range(5000, 5040))
    assert accounts.user("5003").pw_name == "u3" and calls == []
    assert accounts.user("ldapuser").pw_uid == 900000 and calls == ["ldapuser"]  # not listed: asked by itself
    with pytest.raises(NotFound):
        accounts.user("nobody-here")
    few = Accounts(expected=2, getpwall=lambda: pytest.fail("a few names need no full read"), getpwnam=getpwnam)
    assert few.user("ldapuser").pw_name == "ldapuser"


def test_cgroupfs_persist_script_is_not_rendered_again_when_nothing_changed(tmp_path, monkeypatch):
    layout = v1_layout(str(tmp_path))
    host = FakeKernel(FakeModule())
    plans = [plan(0, "user", "a", {"memory_max": "100M"}, uid=2000)]
    backend = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path))
    backend.apply(plans, False)
    assert backend.persist(True)["changed"]
    script = tmp_path / "cgroupfs-fairshare.sh"
    text = script.read_text()
    rendered = []
    real = b.render_targets
    monkeypatch.setattr(b, "render_targets", lambda *a: rendered.append(a) or real(*a))
    backend = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path))
    backend.apply(plans, False)
    assert not backend.persist(True)["changed"] and rendered == [] and script.read_text() == text
    # a script of another version of the module (its render key differs) is rendered again
    script.write_text(text.replace("# fairshare-render: ", "# fairshare-render: 0"))
    backend = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path))
    backend.apply(plans, False)
    backend.persist(True)
    assert len(rendered) == 1 and script.read_text() == text
    # a changed limit is rendered again
    backend = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path))
    backend.apply([plan(0, "user", "a", {"memory_max": "200M"}, uid=2000)], False)
    assert backend.persist(True)["changed"] and str(200 << 20) in script.read_text() and len(rendered) == 2


class ClampingKernel(FakeKernel):
    """A kernel that takes a write and keeps another value (as one that rounds or ignores a limit)."""

    def write_kernel(self, path, value):
        FakeKernel.write_kernel(self, path, "42" if os.path.basename(path) == "pids.max" else value)


def test_each_failure_has_its_kind(tmp_path):
    """input (nothing changed), host (a command failed), verification (the kernel kept another value):
    the three kinds of module_utils/errors.py that modules report."""
    from ansible_collections.fairshare.resources.plugins.module_utils import errors
    from ansible_collections.fairshare.resources.plugins.module_utils.host import CommandError
    with pytest.raises(errors.InputError) as bad:
        normalize_limits({"memory_max": "lots"}, "limits[0]")
    layout = v1_layout(str(tmp_path))
    host = ClampingKernel(FakeModule())
    with pytest.raises(errors.VerificationError) as kept:
        b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(
            [plan(0, "user", "a", {"pids_max": 100}, uid=2000)], False)
    failing = FakeModule()
    failing.run_command = lambda argv, data=None, environ_update=None: (1, "", "no such unit")
    with pytest.raises(errors.HostError) as cmd:
        Host(failing).run(["systemctl", "daemon-reload"])
    assert isinstance(cmd.value, CommandError) and not isinstance(cmd.value, errors.VerificationError)
    assert [e.value.kind for e in (bad, cmd, kept)] == ["input", "host", "verification"]
    assert "wrote '100' to pids.max but the kernel reads back '42'" in str(kept.value)


def test_cgroupfs_v1_a_separate_cpuacct_gets_the_users_cgroup_for_cpu_time(tmp_path):
    """Where v1 mounts cpuacct apart from cpu (this project's own machine), a user's CPU time is only in cpuacct:
    a user target gets a cgroup there too (no limits), made once, joined at login (persist) and by adoption, and
    removed with the target. A workload (path) gets none; co-mounted cpu,cpuacct gets nothing extra."""
    layout = v1_layout(str(tmp_path))
    os.makedirs(os.path.join(str(tmp_path), "cpuacct"))
    layout["v1"]["cpuacct"] = os.path.join(str(tmp_path), "cpuacct")
    acct = os.path.join(str(tmp_path), "cpuacct", "fairshare", "user-2000")
    plans = [plan(0, "user", "a", {"memory_max": "100M"}, uid=2000), plan(1, "path", "fairshare/user-2000/jobs",
                                                                          {"memory_max": "50M"})]
    check = b.CgroupfsBackend(FakeKernel(FakeModule(check_mode=True)), layout, script_dir=str(tmp_path))
    out = check.apply(plans, False)
    assert out["changed"] and not os.path.exists(acct)
    backend = b.CgroupfsBackend(FakeKernel(FakeModule()), layout, script_dir=str(tmp_path))
    out = backend.apply(plans, False)
    assert out["targets"][0]["changed"] and os.path.isdir(acct)
    assert not os.path.exists(os.path.join(str(tmp_path), "cpuacct", "fairshare", "user-2000", "jobs"))
    assert ("cpuacct", acct + "/") in backend._session_dirs()[2000]
    assert "mk v1 cpuacct" in open(backend.persist(True)["path"]).read()
    again = b.CgroupfsBackend(FakeKernel(FakeModule()), layout, script_dir=str(tmp_path)).apply(plans, False)
    assert not again["changed"]
    gone = b.CgroupfsBackend(FakeKernel(FakeModule()), layout, script_dir=str(tmp_path)).apply([], True)
    assert gone["changed"] and not os.path.exists(os.path.join(str(tmp_path), "cpuacct", "fairshare", "user-2000"))
    layout["v1"]["cpuacct"] = layout["v1"]["cpu"]  # cpu,cpuacct mounted together
    assert b.CgroupfsBackend(FakeKernel(FakeModule()), layout, script_dir=str(tmp_path)).accounting() is None


def test_systemd_239_gets_no_property_it_would_ignore_and_the_call_says_so(tmp_path):
    """RHEL 8's systemd 239 on cgroup v2 knows neither MemoryMin= (240) nor AllowedCPUs= (244): not written,
    not reported as applied, not verified, one warning each naming the release and the property."""
    units = tmp_path / "units"
    layout = {"version": "v2", "v2_root": str(tmp_path), "v2_controllers": ["cpu", "cpuset", "memory"], "v1": {}}
    limits = normalize_limits({"memory_max": "1G", "memory_min": "64M", "cpuset_cpus": "0",
                               "io_max": [{"device": "8:0", "wbps": "1M"}]}, "limits[0]")
    out = b.SystemdBackend(Host(FakeModule()), layout, unit_dir=str(units), systemd=239).apply(
        [plan(0, "user", "a", limits, uid=1000)], False)
    text = (units / "user-1000.slice.d" / "50-fairshare.conf").read_text()
    res = out["targets"][0]
    assert "MemoryMax=1073741824" in text and "IOWriteBandwidthMax=8:0 1048576" in text
    assert "MemoryMin" not in text and "AllowedCPUs" not in text
    assert sorted(res["after"]) == ["io_max", "memory_max"]
    assert sorted(res["warnings"]) == ["cpuset_cpus: systemd 239 does not know AllowedCPUs= (added in 244); not applied",
                                       "memory_min: systemd 239 does not know MemoryMin= (added in 240); not applied"]
    same = b.SystemdBackend(Host(FakeModule()), layout, unit_dir=str(units), systemd=252).apply(
        [plan(0, "user", "a", limits, uid=1000)], False)
    assert same["changed"] and not same["targets"][0]["warnings"]  # 252 takes them all: written now
    assert "MemoryMin=67108864" in (units / "user-1000.slice.d" / "50-fairshare.conf").read_text()


def test_systemd_supported_by_release():
    from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import systemd_supported
    limits = normalize_limits({"cpu_weight": 200, "memory_max": "1G", "memory_swap_max": "0",
                               "io_max": [{"device": "8:0", "riops": 100, "rbps": "1M"}]}, "limits[0]")
    assert systemd_supported(limits, "v2", None) == (limits, [])  # release not known: all of them
    assert systemd_supported(limits, "v2", 252) == (limits, [])
    kept, warnings = systemd_supported(limits, "v2", 231)  # Debian 9's: no CPUWeight=, MemorySwapMax= yet
    assert sorted(kept) == ["io_max", "memory_max"]
    assert sorted(warnings) == ["cpu_weight: systemd 231 does not know CPUWeight= (added in 232); not applied",
                                "memory_swap_max: systemd 231 does not know MemorySwapMax= (added in 232); not applied"]
    # the cgroup v1 properties went with cgroup v1; what v1 cannot enforce at all (riops, swap) is
    # render_dropin's to say, as on every release
    kept, warnings = systemd_supported(limits, "v1", 258)
    assert sorted(kept) == ["io_max", "memory_swap_max"] and kept["io_max"] == [{"device": "8:0", "riops": 100}]
    assert sorted(warnings) == [
        "cpu_weight: systemd 258 no longer has CPUShares= (gone in 258 with cgroup v1); not applied",
        "io_max rbps on 8:0: systemd 258 no longer has BlockIOReadBandwidth= (gone in 258 with cgroup v1); not applied",
        "memory_max: systemd 258 no longer has MemoryLimit= (gone in 258 with cgroup v1); not applied"]


def test_systemd_verify_shows_only_the_units_list_units_says_are_active(tmp_path):
    """systemctl show loads every unit it is asked about (14 s for 1,000 users' slices in a TCG guest): only
    the active ones list-units names are shown and verified; the others are reported inactive, unread."""
    (tmp_path / "user.slice" / "user-1000.slice").mkdir(parents=True)
    (tmp_path / "user.slice" / "user-1000.slice" / "memory.max").write_text("1073741824\n")
    module = FakeModule(outputs={
        "list-units": "user-1000.slice loaded active active User Slice of UID 1000\n",
        "show": "Id=user-1000.slice\nActiveState=active\nControlGroup=/user.slice/user-1000.slice\n"})
    layout = {"version": "v2", "v2_root": str(tmp_path), "v2_controllers": ["memory"], "v1": {}}
    backend = b.SystemdBackend(Host(module), layout, unit_dir=str(tmp_path / "units"))
    plans = [plan(0, "user", "a", {"memory_max": "1G"}, uid=1000), plan(1, "user", "b", {"memory_max": "1G"}, uid=1001)]
    out = backend.apply(plans, False)
    listed = [c for c in module.calls if c[1] == "list-units"]
    shown = [c for c in module.calls if c[1] == "show"]
    assert listed and listed[0][-2:] == ["user-1000.slice", "user-1001.slice"]
    assert len(shown) == 1 and shown[0][-1] == "user-1000.slice" and "user-1001.slice" not in shown[0]
    assert out["targets"][0]["active"] and out["targets"][0]["verified"] == {"memory.max": "1073741824"}
    assert not out["targets"][1]["active"] and out["targets"][1]["verified"] == {}
    module.outputs["list-units"] = ""
    module.calls = []
    backend.apply(plans, False)
    assert not [c for c in module.calls if c[1] == "show"]  # nobody active: no show at all


def test_unit_names_with_pattern_characters_are_shown_without_list_units():
    from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import active_candidates, plain_unit_name
    assert plain_unit_name("user-1000.slice") and not plain_unit_name("lab\\x2dgpu.slice")
    assert active_candidates(["a.slice", "lab\\x2dgpu.slice", "b.slice"], "b.slice loaded active active B\n") == [
        "lab\\x2dgpu.slice", "b.slice"]


def _procs(tmp_path, *parts):
    path = tmp_path.joinpath(*parts) / "cgroup.procs"
    return path.read_text().split() if path.exists() else None


def test_cgroupfs_a_user_put_under_a_level_keeps_one_cgroup_and_its_processes(tmp_path):
    """limits[].under (a tier's total): the user's cgroup moves under the level. The one an earlier call made is
    removed, and its processes go into the new one (the same workload there), never to the hierarchy's root where
    no limit holds them. v1: the user gets a cgroup in the hierarchy of a limit only the level has (pids here)."""
    layout = v1_layout(str(tmp_path))
    host = FakeKernel(FakeModule())

    def call(plans, exclusive=False):
        return b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(plans, exclusive)

    call([plan(0, "user", "a", {"memory_max": "100M"}, uid=2000), plan(1, "path", "user-2000/build", {"pids_max": 50})])
    (tmp_path / "memory" / "fairshare" / "user-2000" / "cgroup.procs").write_text("4242\n")
    (tmp_path / "pids" / "fairshare" / "user-2000" / "build" / "cgroup.procs").write_text("4343\n")
    under = [plan(0, "path", "tier-x", {"memory_max": "300M", "pids_max": 500}),
             b.Target(1, "user", "a", 2000, "present", normalize_limits({"memory_max": "100M"}, "l", True), "fairshare",
                      "tier-x"),
             plan(2, "path", "tier-x/user-2000/build", {"pids_max": 50})]
    out = call(under)
    user = out["targets"][1]
    assert user["path"] == "fairshare/tier-x/user-2000" and user["changed"]
    assert user["before"]["moved_from"] == "fairshare/user-2000"
    assert not (tmp_path / "memory" / "fairshare" / "user-2000").exists()
    assert not (tmp_path / "pids" / "fairshare" / "user-2000").exists()
    assert _procs(tmp_path, "memory", "fairshare", "tier-x", "user-2000") == ["4242"]
    assert _procs(tmp_path, "pids", "fairshare", "tier-x", "user-2000", "build") == ["4343"]
    assert _procs(tmp_path, "memory") in (None, []) and _procs(tmp_path, "pids") in (None, [])
    # the level's pids total holds the user's logins: a cgroup there without a limit of its own, joined at login
    assert (tmp_path / "pids" / "fairshare" / "tier-x" / "user-2000").is_dir()
    assert not (tmp_path / "pids" / "fairshare" / "tier-x" / "user-2000" / "pids.max").exists()  # no limit written
    backend = b.CgroupfsBackend(host, layout, script_dir=str(tmp_path))
    again = backend.apply(under, False)
    assert not again["changed"], again["diff"]
    assert ("pids", str(tmp_path / "pids" / "fairshare" / "tier-x" / "user-2000") + "/") in backend._session_dirs()[2000]
    # taken off the level again: back to <parent>/user-UID, with its processes
    (tmp_path / "memory" / "fairshare" / "tier-x" / "user-2000" / "cgroup.procs").write_text("4242\n")
    back = call([plan(0, "user", "a", {"memory_max": "100M"}, uid=2000)])
    assert back["targets"][0]["before"]["moved_from"] == "fairshare/tier-x/user-2000"
    assert _procs(tmp_path, "memory", "fairshare", "user-2000") == ["4242"]
    assert not (tmp_path / "memory" / "fairshare" / "tier-x" / "user-2000").exists()
    # a user taken out of the limits (state absent) loses every cgroup of theirs; the processes leave the parent
    (tmp_path / "memory" / "fairshare" / "user-2000" / "cgroup.procs").write_text("4242\n")
    gone = call([b.Target(0, "user", "a", 2000, "absent", {}, "fairshare", "tier-x")])
    assert gone["changed"] and not (tmp_path / "memory" / "fairshare" / "user-2000").exists()
    assert _procs(tmp_path, "memory") == ["4242"]


def test_cgroupfs_under_is_checked_before_anything(tmp_path):
    with pytest.raises(b.InputError) as err:
        b.build_targets([{"path": "w", "under": "tier-x"}], "present", True, "fairshare", lambda d: d)
    assert "limits[0].under: only a user's cgroup goes under a level" in str(err.value)
    with pytest.raises(b.InputError) as err:
        b.build_targets([{"user": "root", "under": "../x"}], "present", True, "fairshare", lambda d: d)
    assert "limits[0].under: '../x' is not a level" in str(err.value)
    plans = b.build_targets([{"user": "root", "under": "tier-x", "memory_max": "1G"}], "present", True, "fairshare", lambda d: d)
    with pytest.raises(b.InputError) as err:
        b.apply_call(FakeKernel(FakeModule()), v1_layout(str(tmp_path)), "systemd", plans,
                     {"parent": "fairshare"}, None)
    assert "under 'tier-x' needs the cgroupfs backend" in str(err.value)


def test_cgroupfs_the_processes_of_a_workload_that_goes_stay_in_their_users_cgroup(tmp_path):
    """A workload taken away (state absent) while its user keeps their cgroup: its processes go into the user's
    cgroup, under the user's limits, not to the hierarchy's root; without a present user target, to the root."""
    layout = v1_layout(str(tmp_path))
    host = FakeKernel(FakeModule())

    def call(plans):
        return b.CgroupfsBackend(host, layout, script_dir=str(tmp_path)).apply(plans, False)

    user = plan(0, "user", "a", {"memory_max": "100M"}, uid=2000)
    call([user, plan(1, "path", "user-2000/jobs", {"memory_max": "50M"})])
    (tmp_path / "memory" / "fairshare" / "user-2000" / "jobs" / "cgroup.procs").write_text("4545\n")
    out = call([user, plan(1, "path", "user-2000/jobs", None, state="absent")])
    assert out["changed"] and not (tmp_path / "memory" / "fairshare" / "user-2000" / "jobs").exists()
    assert _procs(tmp_path, "memory", "fairshare", "user-2000") == ["4545"]
    call([user, plan(1, "path", "user-2000/jobs", {"memory_max": "50M"})])
    (tmp_path / "memory" / "fairshare" / "user-2000" / "jobs" / "cgroup.procs").write_text("4646\n")
    call([plan(1, "path", "user-2000/jobs", None, state="absent")])
    assert _procs(tmp_path, "memory") == ["4646"]


def test_systemd_keep_running_leaves_an_active_slices_limits_in_a_runtime_dropin(tmp_path):
    """keep_running (state absent, systemd): the drop-in in /etc goes; where the unit is active (systemd moves no
    running unit to another slice) the same text goes to a runtime drop-in named before ours, gone at the next
    boot; an inactive unit gets none. A later call that gives the unit limits again removes it."""
    units, run = tmp_path / "units", tmp_path / "run"
    text = MANAGED_HEADER + "\n[Slice]\nMemoryMax=209715200\n"
    busy, idle = "user-tier_lab-u1000_jobs.slice", "user-tier_lab-u1001_jobs.slice"
    odd = "x\\x2dy.slice"  # a name list-units cannot be asked about (fnmatch's \\): `systemctl show` says it is idle
    for unit in (busy, idle, odd):
        (units / (unit + ".d")).mkdir(parents=True)
        (units / (unit + ".d") / "50-fairshare.conf").write_text(text)
    layout = {"version": "v2", "v2_root": str(tmp_path), "v2_controllers": ["memory"], "v1": {}}
    listed = {"list-units": "%s loaded active active Slice\n" % busy, "show": "Id=%s\nActiveState=inactive\n" % odd}
    plans = [b.Target(0, "slice", busy, None, "absent", {}, "fairshare", keep_running=True),
             b.Target(1, "slice", idle, None, "absent", {}, "fairshare", keep_running=True),
             b.Target(2, "slice", odd, None, "absent", {}, "fairshare", keep_running=True)]
    kept = run / (busy + ".d") / b.KEPT_RUNTIME_DROPIN
    check = b.SystemdBackend(Host(FakeModule(check_mode=True, outputs=listed)), layout, unit_dir=str(units),
                             runtime_dir=str(run)).apply(plans, False)
    assert check["changed"] and not kept.exists() and (units / (busy + ".d") / "50-fairshare.conf").exists()
    module = FakeModule(outputs=listed)
    out = b.SystemdBackend(Host(module), layout, unit_dir=str(units), runtime_dir=str(run)).apply(plans, False)
    assert out["changed"] and out["daemon_reload"] and kept.read_text() == text
    assert out["targets"][0]["kept_running"] == str(kept) and "kept_running" not in out["targets"][1]
    assert not (run / (idle + ".d")).exists()  # nothing runs there: its limits simply go
    assert "kept_running" not in out["targets"][2] and not (run / (odd + ".d")).exists()
    assert not any((units / (u + ".d")).exists() for u in (busy, idle, odd))
    assert [c for c in module.calls if c[1] == "daemon-reload"] == [["systemctl", "daemon-reload"]]  # one reload
    again = b.SystemdBackend(Host(FakeModule(outputs=listed)), layout, unit_dir=str(units),
                             runtime_dir=str(run)).apply(plans, False)
    assert not again["changed"] and kept.exists()
    back = [b.Target(0, "slice", busy, None, "present", normalize_limits({"memory_max": "300M"}, "x"), "fairshare")]
    out = b.SystemdBackend(Host(FakeModule(outputs=listed)), layout, unit_dir=str(units),
                           runtime_dir=str(run)).apply(back, False)
    assert out["changed"] and not kept.exists() and (units / (busy + ".d") / "50-fairshare.conf").exists()


def test_keep_running_is_checked_before_anything(tmp_path):
    for entry, why in (({"slice": "a.slice", "keep_running": True}, "slice, present"),
                       ({"path": "w", "state": "absent", "keep_running": True}, "path, absent")):
        with pytest.raises(b.InputError) as err:
            b.build_targets([entry], "present", True, "fairshare", lambda d: d)
        assert "limits[0].keep_running: only for a user or slice target with state absent (this one: %s)" % why \
            in str(err.value)
    plans = b.build_targets([{"slice": "a.slice", "state": "absent", "keep_running": True}], "present", True,
                            "fairshare", lambda d: d)
    with pytest.raises(b.InputError) as err:
        b.apply_call(FakeKernel(FakeModule()), v1_layout(str(tmp_path)), "cgroupfs", plans,
                     {"parent": "fairshare"}, None)
    assert "slice:a.slice: keep_running needs the systemd backend" in str(err.value)

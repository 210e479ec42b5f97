import os

from ansible_collections.fairshare.resources.plugins.module_utils import usage as u

V1 = {"version": "hybrid", "v2_root": "/sys/fs/cgroup/unified", "v2_controllers": ["hugetlb"],
      "v1": {"memory": "/cg/memory", "pids": "/cg/pids", "cpu": "/cg/cpu", "cpuacct": "/cg/cpuacct"}}
V2 = {"version": "v2", "v2_root": "/cg", "v2_controllers": ["cpu", "memory", "pids"], "v1": {}}


def test_user_cgroup_paths():
    assert u.user_cgroup(V1, 1000, "fairshare", False)["memory"] == "/cg/memory/fairshare/user-1000"
    assert u.user_cgroup(V2, 1000, "fairshare", True)["pids"] == "/cg/user.slice/user-1000.slice"


def test_a_user_under_a_tiers_total_is_found_there(tmp_path):
    layout = {"version": "v1", "v2_root": None, "v2_controllers": [],
              "v1": {"memory": str(tmp_path / "memory"), "pids": str(tmp_path / "pids")}}
    (tmp_path / "memory" / "fairshare" / "tier-lab" / "user-1000").mkdir(parents=True)
    (tmp_path / "memory" / "fairshare" / "user-1001").mkdir(parents=True)
    assert u.user_cgroup(layout, 1000, "fairshare", False)["pids"] == str(tmp_path / "pids" / "fairshare" / "tier-lab" / "user-1000")
    assert u.user_cgroup(layout, 1001, "fairshare", False)["memory"] == str(tmp_path / "memory" / "fairshare" / "user-1001")
    assert u.user_cgroup(layout, 1002, "fairshare", False)["memory"] == str(tmp_path / "memory" / "fairshare" / "user-1002")


def test_read_usage_v2_and_v1():
    files = {"/s/memory.current": "1048576\n", "/s/pids.current": "7\n", "/s/cpu.stat": "usage_usec 2500\nuser_usec 1\n",
             "/s/memory.events": "low 0\nhigh 0\nmax 0\noom 1\noom_kill 3\n"}
    got = u.read_usage({"memory": "/s", "pids": "/s", "cpu": "/s"}, "v2", files.get)
    assert got == {"memory_bytes": 1048576, "tasks": 7, "cpu_usec": 2500, "oom_kills": 3}
    files = {"/m/memory.usage_in_bytes": "4096\n", "/c/cpuacct.usage": "5000000\n",
             "/m/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"}
    got = u.read_usage({"memory": "/m", "cpuacct": "/c", "pids": "/p"}, "v1", files.get)
    assert got == {"memory_bytes": 4096, "tasks": None, "cpu_usec": 5000, "oom_kills": 1}


def test_tc_class_stats():
    text = ("class htb 1:3e8 parent 1:1 leaf 3e8: prio 0 rate 5Mbit ceil 5Mbit burst 1600b cburst 1600b\n"
            " Sent 123456 bytes 90 pkt (dropped 0, overlimits 3 requeues 0)\n"
            "class htb 1:2 parent 1:1 prio 0 rate 50Mbit ceil 50Mbit burst 1600b cburst 1600b\n"
            " Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0)\n")
    assert u.parse_tc_class_stats(text) == {"1:3e8": 123456, "1:2": 0}


def test_containers_outside_the_users_slices(tmp_path):
    """Root engines' containers (docker and podman scopes, docker's cgroupfs driver) are found; a user's
    rootless podman inside user.slice and the cgroupfs backend's parent are not; nothing below a container."""
    from ansible_collections.fairshare.resources.plugins.module_utils.usage import container_of, containers_outside
    ids = ["%064x" % n for n in (1, 2, 3, 4)]
    for rel in ("system.slice/docker-%s.scope/inner-%s.scope" % (ids[0], ids[3]),
                "machine.slice/libpod-%s.scope/container" % ids[1],
                "docker/%s" % ids[2],
                "user.slice/user-1000.slice/user@1000.service/user.slice/libpod-%s.scope" % ids[3],
                "fairshare/user-1001/docker/%s" % ids[3],
                "system.slice/cron.service"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "docker" / ids[2] / "memory.current").write_text("73400320\n")
    found, more = containers_outside(str(tmp_path), ["user.slice", "fairshare"], lambda p: (
        open(p).read() if os.path.exists(p) else None))
    assert [(c["cgroup"], c["engine"], c["id"], c["memory_bytes"]) for c in found] == [
        ("/docker/" + ids[2], "docker", ids[2][:12], 73400320),
        ("/machine.slice/libpod-%s.scope" % ids[1], "podman", ids[1][:12], None),
        ("/system.slice/docker-%s.scope" % ids[0], "docker", ids[0][:12], None)]
    assert more is False
    assert containers_outside(str(tmp_path), ["user.slice", "fairshare"], limit=1)[1] is True
    assert container_of("/system.slice/cron.service") is None and container_of("/%s" % ids[0]) is None

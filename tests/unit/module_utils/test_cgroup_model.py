import os

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import cgroup_model as m
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.units import UNLIMITED


def test_normalize_limits_canonical_values():
    lim = m.normalize_limits({"cpu_weight": 200, "cpu_max": "150%", "memory_max": "1G", "memory_high": "90%",
                              "pids_max": "max", "cpuset_cpus": "0-1", "io_max": [{"device": "8:0", "wbps": "10M"}]},
                             "limits[0]")
    assert lim["cpu_max"] == 1.5 and lim["memory_max"] == 1 << 30
    assert lim["memory_high"] == (1 << 30) * 9 // 10 // 4096 * 4096
    assert lim["pids_max"] == UNLIMITED
    assert lim["io_max"] == [{"device": "8:0", "wbps": 10 << 20}]


@pytest.mark.parametrize("entry,fragment", [
    ({"memory_max": "12 GB"}, "limits[3].memory_max: '12 GB'"),
    ({"memory_max": "20"}, "limits[3].memory_max"),
    ({"pids_max": "8"}, "limits[3].pids_max"),
    ({"memory_max": "1G", "memory_high": "2G"}, "limits[3].memory_high: 2G is above memory_max 1G"),
    ({"cpu_weight": 0}, "limits[3].cpu_weight"),
    ({"io_max": [{"device": "8:0"}]}, "limits[3].io_max[0]: give at least one"),
    ({"io_max": [{"wbps": "1M"}]}, "limits[3].io_max[0].device"),
    ({"memory_low": "2G", "memory_min": "3G"}, "limits[3].memory_min"),
])
def test_normalize_limits_errors(entry, fragment):
    with pytest.raises(InputError) as err:
        m.normalize_limits(entry, "limits[3]")
    assert fragment in str(err.value)


def test_force_allows_below_minimum():
    assert m.normalize_limits({"memory_max": "20M", "pids_max": 8}, "x", force=True)["pids_max"] == 8


@pytest.mark.parametrize("entry,expected", [
    ({"user": "alice"}, ("user", "alice")), ({"slice": "research.slice"}, ("slice", "research.slice")),
    ({"path": "/workers/w1/crs1/"}, ("path", "workers/w1/crs1")),
])
def test_parse_target(entry, expected):
    assert m.parse_target(entry, "limits[0]") == expected


@pytest.mark.parametrize("entry", [{}, {"user": "a", "slice": "b.slice"}, {"slice": "research"},
                                   {"path": "../etc"}, {"path": "a//b"}, {"path": "a b"}])
def test_parse_target_errors(entry):
    with pytest.raises(InputError):
        m.parse_target(entry, "limits[0]")


PROTECTED = [("user", "root", 0), ("slice", "system.slice", None), ("slice", "-.slice", None),
             ("slice", "system-getty.slice", None), ("user", "daemon", 1), ("user", "postgres", 999)]


@pytest.mark.parametrize("kind,name,uid", PROTECTED)
def test_protected_targets_need_force(kind, name, uid):
    with pytest.raises(InputError) as err:
        m.check_protected(kind, name, uid, False, "limits[0]")
    assert "force: true" in str(err.value)
    m.check_protected(kind, name, uid, True, "limits[0]")


def test_user_slice_is_not_protected():
    m.check_protected("slice", "user.slice", None, False, "limits[0]")
    m.check_protected("user", "alice", 1000, False, "limits[0]")
    with pytest.raises(InputError, match=r"'svc' \(uid 1200\) is a system user \(SYS_UID_MAX 1499"):
        m.check_protected("user", "svc", 1200, False, "limits[0]", sys_uid_max=1499)


@pytest.mark.parametrize("name", ["...slice", "..slice", ".slice", "-.slice", "a--b.slice", "a-.slice", "a-..slice",
                                  "a/b.slice", "a-...-b.slice", "research"])
def test_slice_names_by_systemds_rules(name):
    with pytest.raises(InputError, match="is not a slice unit name"):
        m.parse_target({"slice": name}, "limits[0]")


@pytest.mark.parametrize("name", ["research.slice", "a-b-c.slice", "a.b.slice", "user-1000.slice", "x\\x2d.slice"])
def test_valid_slice_names(name):
    assert m.parse_target({"slice": name}, "limits[0]") == ("slice", name)


@pytest.mark.parametrize("value", ["", "/", "/fairshare", "fairshare/", "..", "../../tmp/x", "a/../b", "a//b",
                                   "a b", None])
def test_parent_must_be_a_relative_cgroup_name(value):
    with pytest.raises(InputError, match="parent: .* is not a relative cgroup name"):
        m.check_parent(value)


def test_parent_nested_is_fine():
    assert m.check_parent("lab/fairshare") == "lab/fairshare"


def test_render_dropin_v2():
    lim = m.normalize_limits({"cpu_weight": 100, "cpu_max": "200%", "memory_max": "8G", "memory_high": "90%",
                              "pids_max": 4096, "cpuset_cpus": "0-3", "io_weight": 50,
                              "io_max": [{"device": "/dev/vda", "wbps": "10M", "riops": 100}]}, "x")
    text, warnings = m.render_dropin(lim, "v2")
    assert warnings == []
    assert text.splitlines()[:2] == [m.MANAGED_HEADER, "[Slice]"]
    assert "CPUQuota=200%" in text and "MemoryMax=8589934592" in text and "TasksMax=4096" in text
    assert "AllowedCPUs=0-3" in text and "IOWeight=50" in text
    assert "IOWriteBandwidthMax=/dev/vda 10485760" in text and "IOReadIOPSMax=/dev/vda 100" in text


def test_render_dropin_v1_maps_and_warns():
    lim = m.normalize_limits({"cpu_weight": 200, "memory_max": "1G", "memory_high": "90%", "cpuset_cpus": "0",
                              "io_max": [{"device": "/dev/vda", "wbps": "1M", "wiops": 5}]}, "x")
    text, warnings = m.render_dropin(lim, "v1")
    assert "CPUShares=2048" in text and "MemoryLimit=1073741824" in text
    assert "BlockIOWriteBandwidth=/dev/vda 1048576" in text
    assert "MemoryHigh" not in text and "AllowedCPUs" not in text
    joined = " ".join(warnings)
    assert "memory_high" in joined and "cpuset_cpus" in joined and "wiops" in joined


def test_render_unlimited_values():
    text, dummy = m.render_dropin({"memory_max": UNLIMITED, "pids_max": UNLIMITED}, "v2")
    assert "MemoryMax=infinity" in text and "TasksMax=infinity" in text


def test_expected_files_v1_hybrid_order_and_values():
    lim = m.normalize_limits({"cpu_weight": 100, "cpu_max": "20%", "cpuset_cpus": "0", "cpuset_mems": "0",
                              "memory_max": "50M", "pids_max": 40, "io_max": [{"device": "7:0", "wbps": "1M"}]},
                             "x", force=True)
    files, warnings = m.expected_files(lim, lambda c: "v1")
    names = [f for _c, f, _v in files]
    assert names.index("cpuset.mems") < names.index("cpuset.cpus")
    assert names.index("cpu.cfs_period_us") < names.index("cpu.cfs_quota_us")
    assert ("cpu", "cpu.cfs_quota_us", "20000") in files and ("cpu", "cpu.shares", "1024") in files
    assert ("memory", "memory.limit_in_bytes", str(50 << 20)) in files
    assert ("blkio", "blkio.throttle.write_bps_device", "7:0 1048576") in files
    assert ("blkio", "blkio.throttle.read_bps_device", "7:0 0") in files
    assert warnings == []


def test_expected_files_v2():
    lim = m.normalize_limits({"cpu_max": "max", "memory_max": "1G", "io_weight": 300,
                              "io_max": [{"device": "8:0", "rbps": "1M", "wiops": "max"}]}, "x")
    files, warnings = m.expected_files(lim, lambda c: "v2", io_weight_file="io.weight")
    assert ("cpu", "cpu.max", "max 100000") in files and ("io", "io.weight", "default 300") in files
    # a rule names all four keys, so a key left out of it is lifted, not kept from an earlier run
    assert ("io", "io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=max") in files
    assert warnings == []


@pytest.mark.parametrize("version,fname,text", [
    ("v2", "io.weight", "default 300"), ("v2", "io.bfq.weight", "default 118"),
    ("v1", "blkio.weight", "1000"), ("v1", "blkio.bfq.weight", "118"),
])
def test_io_weight_goes_to_the_file_the_kernel_has(version, fname, text):
    files, warnings = m.expected_files({"io_weight": 300}, lambda c: version, io_weight_file=fname)
    assert [(f, v) for _c, f, v in files] == [(fname, text)] and warnings == []


def test_io_weight_without_a_weight_file_warns_and_skips():
    files, warnings = m.expected_files({"io_weight": 300, "pids_max": 9}, lambda c: "v1", io_weight_file=None)
    assert [f for _c, f, _v in files] == ["pids.max"]
    assert warnings and "io_weight" in warnings[0] and "BFQ" in warnings[0]


def test_every_limit_is_spelled_once_and_the_derived_tables_agree():
    fields = [lim.field for lim in m.LIMITS]
    assert fields == m.LIMIT_FIELDS[:-1] + m.IO_KEYS  # io_max is made of the four per-device keys
    assert m.SYSTEMD_PROPERTIES["v2"]["memory_max"] == "MemoryMax" and m.SYSTEMD_PROPERTIES["v1"]["memory_high"] is None
    assert m.CGROUP_FILES["v1"]["memory_swap_max"] is None and m.CGROUP_FILES["v2"]["wiops"] == ("io", "io.max")
    assert m.reset_properties("v1") == ["CPUShares=", "CPUQuota=", "MemoryLimit=infinity", "TasksMax=infinity",
                                        "BlockIOWeight=", "BlockIOReadBandwidth=", "BlockIOWriteBandwidth="]
    v2 = [f for _c, f in m.reset_files("v2")]
    assert v2 == ["cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems", "memory.max", "memory.high",
                  "memory.swap.max", "memory.min", "memory.low", "pids.max", "io.max"]
    assert m.reset_value("cpuset.cpus", "v1") == m.INHERIT and m.reset_value("io.max", "v2") == m.PER_DEVICE


@pytest.mark.parametrize("fname,line,reset", [
    ("io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=max", "8:0 rbps=max wbps=max riops=max wiops=max"),
    ("io.max", "8:0 rbps=max wbps=max riops=max wiops=max", None),
    ("blkio.throttle.read_bps_device", "7:0 1048576", "7:0 0"), ("blkio.throttle.read_bps_device", "7:0 0", None),
    ("io.max", "", None),
])
def test_device_reset(fname, line, reset):
    assert m.device_reset(fname, line) == reset


def test_expected_files_warn_for_missing_controller():
    files, warnings = m.expected_files({"memory_high": 1 << 20, "pids_max": 100}, lambda c: None if c == "pids" else "v1")
    assert files == []
    assert any("memory_high: cgroup v1 cannot enforce" in w for w in warnings)
    assert any("pids controller is not available" in w for w in warnings)


@pytest.mark.parametrize("fname,wanted,live,same", [
    ("cpuset.cpus", "0,1", "0-1\n", True), ("cpuset.cpus", "0", "0-1", False),
    ("memory.limit_in_bytes", "-1", "9223372036854771712\n", True),
    ("memory.max", "1073741824", "max", False), ("cpu.max", "20000 100000", "20000 100000\n", True),
    ("io.max", "8:0 wbps=1048576", "8:0 rbps=max wbps=1048576 riops=max wiops=max\n", True),
    ("io.max", "8:0 wbps=1048576", "", False), ("io.max", "8:0 wbps=max", "", True),
    ("blkio.throttle.write_bps_device", "7:0 1048576", "7:0 1048576\n", True),
    ("blkio.throttle.write_bps_device", "7:0 1048576", "", False),
    ("io.weight", "default 100", "default 100\n", True), ("pids.max", "40", None, False),
    ("io.bfq.weight", "default 118", "default 118\n", True), ("blkio.bfq.weight", "118", "100\n", False),
])
def test_same_value(fname, wanted, live, same):
    assert m.same_value(fname, wanted, live) is same


def test_parse_systemctl_show_blocks():
    text = "Id=user-1000.slice\nActiveState=active\nControlGroup=/user.slice/user-1000.slice\n\nId=user-1001.slice\nActiveState=inactive\nControlGroup=\n"
    units = m.parse_systemctl_show(text)
    assert [u["Id"] for u in units] == ["user-1000.slice", "user-1001.slice"]
    assert units[1]["ControlGroup"] == ""


def test_weight_mappings():
    assert m.weight_to_shares(100) == 1024 and m.weight_to_shares(1) == 10 and m.weight_to_shares(10000) == 102400
    assert m.weight_to_blkio(100) == 500 and m.weight_to_blkio(1) == 10 and m.weight_to_blkio(10000) == 1000


def test_devnum_of(tmp_path):
    assert m.devnum_of("8:16", os.stat) == "8:16"
    with pytest.raises(InputError):
        m.devnum_of(str(tmp_path), os.stat)
    if os.path.exists("/dev/loop0"):
        st = os.stat("/dev/loop0")
        assert m.devnum_of("/dev/loop0", os.stat) == "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))


def test_relpaths():
    assert m.cgroup_relpath("user", "alice", 1000) == "fairshare/user-1000"
    assert m.cgroup_relpath("slice", "research.slice") == "fairshare/research"
    assert m.cgroup_relpath("path", "workers/w1", parent="/fs/") == "fs/workers/w1"


def test_grouped_warnings_says_a_shared_warning_once():
    results = [{"target": "user:u%d" % i, "warnings": ["memory_high: cgroup v1 cannot enforce it; not applied"]}
               for i in range(8)]
    results.insert(2, {"target": "slice:x.slice", "warnings": ["io_max 8:0: no such device"]})
    results.append({"target": "user:quiet", "warnings": []})
    lines = m.grouped_warnings(results, show=3)
    assert lines == ["memory_high: cgroup v1 cannot enforce it; not applied (8 targets: user:u0, user:u1, user:u2"
                     " and 5 more)",
                     "slice:x.slice: io_max 8:0: no such device"]
    assert m.grouped_warnings(results[:2], show=3) == [
        "memory_high: cgroup v1 cannot enforce it; not applied (2 targets: user:u0, user:u1)"]

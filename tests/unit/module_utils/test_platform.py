import os

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import platform as p

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")


@pytest.mark.parametrize("name,family", [
    ("debian", "Debian"), ("ubuntu", "Debian"), ("rocky", "RedHat"), ("almalinux", "RedHat"), ("rhel", "RedHat"),
    ("fedora", "RedHat"), ("arch", "Archlinux"), ("opensuse-leap", "Suse"), ("opensuse-tumbleweed", "Suse"),
    ("sles", "Suse"), ("alpine", None),
])
def test_family_from_os_release_fixtures(name, family):
    with open(os.path.join(FIXTURES, "os-release", name)) as fh:
        osr = p.parse_os_release(fh.read())
    assert p.distro_family(osr) == family


def test_each_family_has_its_data_in_one_place():
    """platform.FAMILIES says which os-release IDs make a family; what the family needs on a host is in the
    role's vars/<family>.yml and only there (it was in both, and they disagreed: RedHat's PAM files, Arch's)."""
    import yaml
    vars_dir = os.path.join(os.path.dirname(p.__file__), "..", "..", "roles", "profiles", "vars")
    files = set(f[:-4] for f in os.listdir(vars_dir) if f.endswith(".yml") and f != "main.yml")
    assert files == set(p.FAMILIES)
    for family, data in p.FAMILIES.items():
        assert set(data) == {"ids"}, family  # nothing here that the vars file also says
        with open(os.path.join(vars_dir, family + ".yml")) as fh:
            doc = yaml.safe_load(fh)
        assert {"__profiles_packages", "__profiles_pam_session_files", "__profiles_pam_systemd_files"} <= set(doc), family
        assert "xfsprogs" in doc["__profiles_packages"], family  # xfs_quota reads ext4 quota state too


def test_parse_os_release_quotes_and_comments():
    osr = p.parse_os_release('# c\nNAME="Rocky Linux"\nID_LIKE="rhel centos fedora"\nBAD LINE\n')
    assert osr == {"NAME": "Rocky Linux", "ID_LIKE": "rhel centos fedora"}


# Lines from /proc/self/mountinfo of real hosts.
HYBRID_THIS_HOST = """\
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/cpuacct rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpuacct
35 30 0:31 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpuset
36 30 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
37 30 0:33 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,pids
38 30 0:34 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,blkio
39 30 0:35 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,xattr,name=systemd
"""
PURE_V2 = "28 22 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
SYSTEMD_V1 = """\
25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
29 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
30 25 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
"""


def test_layout_hybrid_this_host():
    layout = p.parse_cgroup_layout(HYBRID_THIS_HOST, "hugetlb")
    assert layout["version"] == "hybrid"
    assert layout["v1"]["cpu"] == "/sys/fs/cgroup/cpu" and layout["v1"]["cpuacct"] == "/sys/fs/cgroup/cpuacct"
    assert "systemd" not in layout["v1"] and "name=systemd" not in layout["v1"]
    assert p.controller_home(layout, "memory") == ("v1", "/sys/fs/cgroup/memory")
    assert p.controller_home(layout, "hugetlb") == ("v2", "/sys/fs/cgroup/unified")
    assert p.controller_home(layout, "io") == (None, None)


def test_layout_pure_v2_and_joined_v1():
    layout = p.parse_cgroup_layout(PURE_V2, "cpuset cpu io memory pids")
    assert layout["version"] == "v2" and p.controller_home(layout, "io") == ("v2", "/sys/fs/cgroup")
    layout = p.parse_cgroup_layout(SYSTEMD_V1)
    assert layout["version"] == "v1"
    assert layout["v1"]["cpu"] == layout["v1"]["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert p.parse_cgroup_layout("")["version"] == "none"


def test_read_layout_of_this_machine():
    layout = p.read_cgroup_layout()
    assert layout["version"] in ("v1", "v2", "hybrid")


@pytest.mark.parametrize("text,want", [
    ("UID_MIN 1000\n#SYS_UID_MAX 999\n", 999), ("SYS_UID_MAX  499\nUID_MIN 500\n", 499),
    ("UID_MIN\t2000\n", 1999), ("", 999), (None, 999)])
def test_sys_uid_max_from_login_defs(text, want):
    assert p.parse_sys_uid_max(text) == want

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import quota_model as q
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.units import parse_grace

# Output captured from a Debian 12 guest (quota 4.06, xfsprogs 6.1, btrfs-progs 6.2).
REPQUOTA = """\
*** Report for user quotas on device /dev/loop0
Block grace time: 01:00; Inode grace time: 24:00
                        Block limits                File limits
User            used    soft    hard  grace    used  soft  hard  grace
----------------------------------------------------------------------
#0        --      14       0       0      0       3     0     0      0
#1000     +-   20476   10240   20480 1763800000       2     0   100      0

Statistics:
Total blocks: 7
"""
XFS_STATE = """\
User quota state on /mnt/x (/dev/loop1)
  Accounting: ON
  Enforcement: OFF
  Inode: #131 (1 blocks, 1 extents)
"""
BTRFS = """\
qgroupid         rfer         excl     max_rfer     max_excl
--------         ----         ----     --------     --------
0/5             16384        16384         none         none
0/256        20955136     20955136     20971520         none
"""
MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,errors=remount-ro
30 22 0:26 / /tmp rw,nosuid - tmpfs tmpfs rw
40 22 7:0 / /mnt/e rw,relatime shared:20 - ext4 /dev/loop0 rw,usrquota
41 22 7:1 / /mnt/with\\040space rw,relatime - xfs /dev/loop1 rw,uquota
"""


def test_parse_repquota_bytes_inodes_grace():
    entries, grace = q.parse_repquota(REPQUOTA)
    assert grace == {"block": 3600, "inode": 86400}
    assert entries[1000] == {"block_used": 20476 * 1024, "block_soft": 10 << 20, "block_hard": 20 << 20,
                             "inode_used": 2, "inode_soft": 0, "inode_hard": 100}
    assert set(entries) == {0, 1000}


@pytest.mark.parametrize("text,seconds", [("7days", 604800), ("2days", 172800), ("24:00", 86400), ("00:01", 60),
                                          ("25:00", 90000), ("bogus", None)])
def test_grace_seconds(text, seconds):
    assert q.grace_seconds(text) == seconds


@pytest.mark.parametrize("value,seconds", [("7d", 604800), ("12h", 43200), ("90m", 5400), ("48h", 172800),
                                           ("2w", 1209600), (3600, 3600)])
def test_parse_grace(value, seconds):
    assert parse_grace("block_grace", value) == seconds


@pytest.mark.parametrize("value", ["8d1h", "49h", "90s", "0", "7 days", "-1d", "soon"])
def test_parse_grace_refuses_what_cannot_be_read_back(value):
    with pytest.raises(InputError) as err:
        parse_grace("block_grace", value)
    assert "block_grace" in str(err.value)


def test_states():
    assert q.parse_xfs_state(XFS_STATE) == {"accounting": True, "enforcement": False}
    assert q.parse_xfs_state("") == {"accounting": False, "enforcement": False}  # ext4 with quotas off
    assert q.parse_btrfs_qgroups(BTRFS)["0/256"] == {"rfer": 20955136, "excl": 20955136, "max_rfer": 20971520,
                                                     "max_excl": 0}
    assert q.parse_subvolume_id("p1\n\tName: \t\t\tp1\n\tSubvolume ID: \t\t256\n") == 256
    assert q.parse_tune2fs_features("Filesystem features:      has_journal ext_attr quota project\n")[-2:] == \
        ["quota", "project"]
    assert q.parse_lsattr_project("   42 --------------e----P-- /mnt/e/p1\n") == (42, True)


@pytest.mark.parametrize("path,mountpoint,fstype", [("/mnt/e/fsq/x", "/mnt/e", "ext4"), ("/mnt/e", "/mnt/e", "ext4"),
                                                    ("/mnt/ex", "/", "ext4"), ("/tmp/a", "/tmp", "tmpfs"),
                                                    ("/mnt/with space/d", "/mnt/with space", "xfs")])
def test_find_mount(path, mountpoint, fstype):
    mount = q.find_mount(MOUNTINFO, path)
    assert (mount["mountpoint"], mount["fstype"]) == (mountpoint, fstype)


def test_fstab_add_option_is_idempotent_and_keeps_other_lines():
    fstab = "# comment\n/dev/vda / ext4 defaults 0 1\n/e.img /mnt/e ext4 loop 0 2\n"
    new, found, changed = q.fstab_add_option(fstab, "/mnt/e", "usrquota")
    assert found and changed
    assert new.splitlines()[:2] == fstab.splitlines()[:2]
    assert new.splitlines()[2].split() == ["/e.img", "/mnt/e", "ext4", "loop,usrquota", "0", "2"]
    assert q.fstab_add_option(new, "/mnt/e", "usrquota")[2] is False
    assert q.fstab_add_option(fstab.replace("loop", "loop,usrjquota=aquota.user"), "/mnt/e", "usrquota")[2] is False
    assert q.fstab_add_option(fstab, "/srv", "usrquota")[1] is False


def test_normalize_entry_limits_and_errors():
    entry = q.normalize_entry({"name": "alice", "block_soft": "20G", "block_hard": "25G", "inode_hard": 1000},
                              "quotas[0]", "user", "ext4")
    assert entry["limits"] == {"block_soft": 20 << 30, "block_hard": 25 << 30, "inode_soft": 0, "inode_hard": 1000}
    for raw, fragment in [
        ({"name": "a", "block_soft": "2G", "block_hard": "1G"}, "quotas[0].block_soft: 2G is above block_hard 1G"),
        ({"name": "a", "block_hard": "12 GB"}, "quotas[0].block_hard: '12 GB' is not a size"),
        ({"name": "a", "block_hard": "1000"}, "not a whole number of KiB"),
        ({"name": "a", "paths": ["/x"]}, "only project quotas take paths"),
        ({"name": "a b"}, "quotas[0].name"),
        ({"name": "a", "inode_hard": "many"}, "quotas[0].inode_hard"),
    ]:
        with pytest.raises(InputError) as err:
            q.normalize_entry(raw, "quotas[0]", "user", "ext4")
        assert fragment in str(err.value)
    with pytest.raises(InputError):
        q.normalize_entry({"name": "p", "paths": ["/a", "/b"]}, "quotas[0]", "project", "btrfs")
    assert q.normalize_entry({"name": "p", "block_hard": "none"}, "w", "project", "xfs")["limits"]["block_hard"] == 0


def test_project_files_touch_only_ours():
    projid = "theirs:7\nold:1000\n"
    projects = "7:/srv/theirs\n1000:/srv/old\n"
    names, paths = q.parse_project_files(projid, projects)
    assert names == {"theirs": 7, "old": 1000} and paths[7] == ["/srv/theirs"]
    new_id, new_prj = q.render_project_files(projid, projects, {"old": 1000}, {"genomics": (1001, ["/srv/g"])})
    assert new_id == "theirs:7\ngenomics:1001\n"
    assert new_prj == "7:/srv/theirs\n1001:/srv/g\n"


def test_allocate_project_ids():
    entries = [{"name": "a", "id": None}, {"name": "b", "id": 1000}, {"name": "known", "id": None}]
    q.allocate_project_ids(entries, {"known": 77}, [1001])
    assert [e["id"] for e in entries] == [1002, 1000, 77]


@pytest.mark.parametrize("path,mountpoint,error", [
    ("/srv/p/alpha", "/srv/p", None), ("/srv/p/alpha/", "/srv/p", None), ("/srv/p", "/srv/p", None),
    ("/srv/p/../etc", "/srv/p", "without '.' or '..'"), ("alpha", "/srv/p", "not an absolute path"),
    ("/srv/p/./a", "/srv/p", "without '.' or '..'"), ("/srv/px/a", "/srv/p", "is not on /srv/p"),
    ("/srv//p/a", "/srv/p", "not an absolute path"),
])
def test_project_paths_stay_on_their_filesystem(path, mountpoint, error):
    if error is None:
        assert q.check_project_path("quotas[0].paths[0]", path, mountpoint) == path.rstrip("/")
    else:
        with pytest.raises(q.InputError) as err:
            q.check_project_path("quotas[0].paths[0]", path, mountpoint)
        assert "quotas[0].paths[0]" in str(err.value) and error in str(err.value)

"""quota_backend against scripted quota tools (what Debian 12's quota 4.06 and xfsprogs 6.1 print): the commands it
runs, in what order, and what it leaves alone - no root, no QEMU, no filesystem with quotas."""
import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import quota_backend as qb
from ansible_collections.fairshare.resources.plugins.module_utils.errors import HostError
from ansible_collections.fairshare.resources.plugins.module_utils.host import Host

from scripted import ScriptedModule
from test_quota_model import REPQUOTA

ON = "User quota state on /home (/dev/vdb)\n  Accounting: ON\n  Enforcement: ON\n"
MOUNT = {"mountpoint": "/home", "fstype": "ext4", "source": "/dev/vdb", "options": "rw,usrquota"}


def entry(key, name, soft=0, hard=0, inode_hard=0, state="present"):
    return {"key": key, "id": key, "name": name, "paths": [], "state": state,
            "limits": {"block_soft": soft, "block_hard": hard, "inode_soft": 0, "inode_hard": inode_hard}}


def backend(answers, check_mode=False):
    module = ScriptedModule(dict({"xfs_quota": (0, ON, ""), "repquota": (0, REPQUOTA, ""), "setquota": (0, "", "")},
                                 **answers), check_mode=check_mode)
    return qb.QuotaToolsBackend(Host(module), MOUNT, "user"), module


def test_limits_already_in_force_run_no_setquota():
    quota, module = backend({})
    wanted = entry(1000, "ann", 10 << 20, 20 << 20, inode_hard=100)  # what REPQUOTA says uid 1000 has
    quota.validate([wanted], enable=False)
    out = quota.apply([wanted], {}, False)
    assert not module.ran("setquota") and not quota.actions
    assert out["quotas"][0]["changed"] is False and out["quotas"][0]["usage"]["blocks"] == 20476 * 1024


def test_changed_limits_go_in_one_setquota_batch_and_unlisted_ids_are_left_without_exclusive():
    quota, module = backend({})
    quota.validate([entry(1000, "ann", 0, 40 << 20)], enable=False)
    out = quota.apply([entry(1000, "ann", 0, 40 << 20), entry(1001, "ben", 0, 8 << 20)], {}, False)
    setquota = [(argv, data) for argv, data in module.calls if argv[0] == "setquota"]
    assert setquota == [(["setquota", "-b", "-u", "/home"], "1000 0 40960 0 0\n1001 0 8192 0 0\n")]  # KiB
    assert [q["changed"] for q in out["quotas"]] == [True, True] and out["cleared"] == []


def test_exclusive_lifts_unlisted_limits_but_never_root():
    quota, module = backend({})
    quota.validate([], enable=False)
    out = quota.apply([], {}, True)
    assert [c["id"] for c in out["cleared"]] == [1000]  # uid 0 has no limits, and root is never cleared
    assert [data for argv, data in module.calls if argv[0] == "setquota"] == ["1000 0 0 0 0\n"]


def test_check_mode_runs_nothing_that_changes_the_host():
    quota, module = backend({}, check_mode=True)
    quota.validate([entry(1000, "ann", 0, 40 << 20)], enable=False)
    out = quota.apply([entry(1000, "ann", 0, 40 << 20)], {"block": 7200}, False)
    assert out["quotas"][0]["changed"] and quota.actions
    assert sorted(set(argv[0] for argv, _d in module.calls)) == ["repquota", "xfs_quota"]


def test_quotas_off_without_enable_are_refused_before_any_command_that_changes():
    quota, module = backend({"xfs_quota": (0, "", "")})
    with pytest.raises(HostError) as err:
        quota.validate([entry(1000, "ann", 0, 40 << 20)], enable=False)
    assert str(err.value) == "path: user quotas are off on /home (ext4); set enable: true to turn them on"
    assert [argv[0] for argv, _d in module.calls] == ["xfs_quota"]


def test_enable_on_ext4_without_the_quota_feature_remounts_checks_and_turns_on(tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text("/dev/vdb /home ext4 defaults 0 2\n")
    module = ScriptedModule({"xfs_quota": (0, "", ""), "tune2fs": (0, "Filesystem features:      has_journal\n", ""),
                             "mount": (0, "", ""), "quotacheck": (0, "", ""), "quotaon": (0, "", ""),
                             "repquota": (0, REPQUOTA, ""), "setquota": (0, "", "")})
    quota = qb.QuotaToolsBackend(Host(module), dict(MOUNT, options="rw"), "user", fstab=str(fstab))
    quota.validate([], enable=True)
    quota.apply([], {}, False)
    assert [argv[0] for argv, _d in module.calls if argv[0] in ("mount", "quotacheck", "quotaon")] == \
        ["mount", "quotacheck", "quotaon"]
    assert fstab.read_text().split() == ["/dev/vdb", "/home", "ext4", "defaults,usrquota", "0", "2"]

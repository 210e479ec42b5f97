"""disk_quota on ext4 and XFS, in a throw-away systemd guest (this host's kernel has no
ext4/XFS quota support). Loop images are made inside the guest.

Proof by effect: a normal user writing past the hard limit gets EDQUOT at the limit;
below the soft limit writes succeed; the grace period reads back as set; lifting the
limit lets writes through; no file is lost. A limit still held after a reboot: test_reboot_guest.py. XFS project limits answer ENOSPC (the XFS
way: a project looks like a full filesystem) and stop root too.
"""
import json
import os

import pytest

from conftest import ROOT, run_module

GUEST_TOOL = os.path.join(ROOT, "testbed", "fsguest.py")
WRITER = "fsq"


@pytest.fixture(scope="module")
def fs(guest):
    guest["ssh"]("useradd -m %s && "
                 "truncate -s 300M /ext4.img && mkfs.ext4 -q /ext4.img && mkdir -p /mnt/ext4 && "
                 "echo '/ext4.img /mnt/ext4 ext4 loop 0 2' >> /etc/fstab && mount /mnt/ext4 && "
                 "truncate -s 300M /prj.img && mkfs.ext4 -q -O quota,project -E quotatype=prjquota /prj.img && "
                 "mkdir -p /mnt/prj && mount -o loop /prj.img /mnt/prj && mkdir /mnt/prj/team && "
                 "truncate -s 300M /xfs.img && mkfs.xfs -q /xfs.img && mkdir -p /mnt/xfs && "
                 "mount -o loop,uquota,pquota /xfs.img /mnt/xfs && mkdir /mnt/xfs/team && "
                 "install -d -o %s /mnt/ext4/w /mnt/xfs/w" % (WRITER, WRITER))
    return guest


def dd(guest, path, mib, user=WRITER):
    """Write up to mib MiB with direct syncs as user; -> (bytes in the file, error text)."""
    as_user = "" if user == "root" else "runuser -u %s -- " % user
    cmd = "%sdd if=/dev/zero of=%s bs=64k count=%d conv=fsync status=none; stat -c %%s %s" % (as_user, path, mib * 16, path)
    out = guest["ssh"](cmd, check=False)
    return int(out.stdout.strip().splitlines()[-1]), out.stderr.strip()


def quota(guest, check=False, **args):
    return run_module("disk_quota", args, check=check, guest=guest)


USER_ARGS = dict(type="user", enable=True, block_grace="2d", inode_grace="12h",
                 quotas=[{"name": WRITER, "block_soft": "10M", "block_hard": "20M", "inode_hard": 50}])


@pytest.mark.parametrize("mnt", ["/mnt/ext4", "/mnt/xfs"])
def test_user_quota_by_effect(fs, mnt):
    check = quota(fs, check=True, path=mnt, **USER_ARGS)
    assert check["changed"]
    assert "%s" % check["quotas"][0]["before"]["block_hard"] == "None"
    first = quota(fs, path=mnt, **USER_ARGS)
    assert first["changed"] and first["enforced"], first
    assert set(first["quotas"][0]["before"].values()) == {None}  # check mode set nothing
    assert first["quotas"][0]["verified"] == {"block_soft": "10M", "block_hard": "20M", "inode_soft": None,
                                              "inode_hard": 50}
    assert first["grace"] == {"block": 172800, "inode": 43200}
    again = quota(fs, path=mnt, **USER_ARGS)
    assert again["changed"] is False
    below, err = dd(fs, mnt + "/w/small", 5)
    assert below == 5 << 20 and not err  # under the soft limit: allowed
    size, err = dd(fs, mnt + "/w/big", 30)
    print("%s: user with hard limit 20M (5 MiB already used) got %d bytes more, then %r (actions %s)"
          % (mnt, size, err, json.dumps(first["actions"])))
    assert "Disk quota exceeded" in err
    assert (15 << 20) - (64 << 10) <= size <= 15 << 20
    lifted = quota(fs, path=mnt, type="user", quotas=[{"name": WRITER, "state": "absent"}])
    assert lifted["changed"] and lifted["quotas"][0]["verified"]["block_hard"] is None
    size2, err = dd(fs, mnt + "/w/after", 30)
    assert size2 == 30 << 20 and not err
    kept = fs["ssh"]("stat -c %%s %s/w/small %s/w/big" % (mnt, mnt)).stdout.split()
    assert [int(k) for k in kept] == [5 << 20, size]  # quotas never delete a file


@pytest.mark.parametrize("mnt,user,error", [("/mnt/prj", WRITER, "Disk quota exceeded"),
                                            ("/mnt/xfs", "root", "No space left on device")])
def test_project_quota_by_effect(fs, mnt, user, error):
    fs["ssh"]("chmod 1777 %s/team" % mnt)
    args = dict(path=mnt, type="project", enable=True,
                quotas=[{"name": "team" + mnt.replace("/", "-"), "paths": [mnt + "/team"], "block_hard": "8M"}])
    first = quota(fs, **args)
    assert first["changed"] and first["quotas"][0]["verified"]["block_hard"] == "8M", first
    assert quota(fs, **args)["changed"] is False
    projid = fs["ssh"]("cat /etc/projid /etc/projects").stdout
    assert "team%s:%d" % (mnt.replace("/", "-"), first["quotas"][0]["id"]) in projid
    size, err = dd(fs, mnt + "/team/f", 30, user=user)
    print("%s: project limited to 8M, %s wrote %d bytes, then %r" % (mnt, user, size, err))
    assert error in err and (8 << 20) - (64 << 10) <= size <= 8 << 20


def test_xfs_enable_needs_a_mount_and_says_so(fs):
    fs["ssh"]("truncate -s 300M /xfs2.img && mkfs.xfs -q /xfs2.img && mkdir -p /mnt/xfs2 && "
              "echo '/xfs2.img /mnt/xfs2 xfs loop 0 2' >> /etc/fstab && mount /mnt/xfs2 && install -d -o %s /mnt/xfs2/w"
              % WRITER)
    args = dict(path="/mnt/xfs2", enable=True, quotas=[{"name": WRITER, "block_hard": "4M"}])
    first = quota(fs, **args)
    print("/mnt/xfs2 without quota accounting: reboot_required=%s actions=%s" % (first["reboot_required"], first["actions"]))
    assert first["changed"] and first["reboot_required"] and not first["enforced"]
    assert "uquota" in fs["ssh"]("grep /mnt/xfs2 /etc/fstab").stdout
    fs["ssh"]("umount /mnt/xfs2 && mount /mnt/xfs2")
    second = quota(fs, **args)
    assert second["enforced"] and not second["reboot_required"] and second["quotas"][0]["verified"]["block_hard"] == "4M"
    size, err = dd(fs, "/mnt/xfs2/w/f", 10)
    assert "Disk quota exceeded" in err and size == 4 << 20


def test_bad_input_in_the_guest_changes_nothing(fs):
    before = fs["ssh"]("repquota -v -n -u /mnt/xfs; cat /etc/fstab").stdout
    for args, fragment in [
        (dict(path="/mnt/xfs", quotas=[{"name": "nosuchuser", "block_hard": "1G"}]), "'nosuchuser' is not a user"),
        (dict(path="/mnt/xfs", block_grace="8d1h", quotas=[]), "block_grace: '8d1h'"),
        (dict(path="/run", quotas=[]), "is on tmpfs"),
        (dict(path="/mnt/prj", type="user", quotas=[{"name": WRITER, "block_hard": "1G"}]),
         "user quotas are off on /mnt/prj"),
    ]:
        out = quota(fs, **args)
        assert out["_status"].startswith("FAILED") and fragment in out["msg"], out
    assert fs["ssh"]("repquota -v -n -u /mnt/xfs; cat /etc/fstab").stdout == before


def test_a_deleted_users_quota_is_lifted_by_uid_and_a_gone_path_has_nothing_to_lift(fs):
    """What the profiles role passes for a user an earlier run gave a quota who has been deleted since:
    {name: UID, state: absent}. By effect: a write as that uid stops at the 8M limit before and passes after.
    A call that only lifts, on a path that no longer exists, changes nothing and is no error."""
    ssh = fs["ssh"]
    write = ("rm -f /mnt/xfs/gone/f; setpriv --reuid=3999 --regid=3999 --clear-groups dd if=/dev/zero "
             "of=/mnt/xfs/gone/f bs=64k count=192 conv=fsync status=none; stat -c %s /mnt/xfs/gone/f")
    ssh("useradd -M -u 3999 fsgone && setquota -u fsgone 0 8192 0 0 /mnt/xfs && userdel fsgone && "
        "install -d -o 3999 /mnt/xfs/gone")
    held = ssh(write, check=False)
    lifted = quota(fs, path="/mnt/xfs", type="user", quotas=[{"name": "3999", "state": "absent"}])
    freed = ssh(write, check=False)
    gone = quota(fs, path="/mnt/no-such-fs", type="user", quotas=[{"name": "3999", "state": "absent"}])
    print("uid 3999 (user deleted) with an 8M limit: 12 MiB write -> %s bytes %r; lifted by uid (changed %s), then "
          "-> %s bytes %r; a gone path: %s" % (held.stdout.split()[-1], held.stderr.strip(), lifted["changed"],
                                               freed.stdout.split()[-1], freed.stderr.strip(), gone.get("note")))
    assert "Disk quota exceeded" in held.stderr and int(held.stdout.split()[-1]) <= 8 << 20
    assert lifted["changed"] and lifted["quotas"][0]["id"] == 3999 and lifted["quotas"][0]["verified"]["block_hard"] is None
    assert int(freed.stdout.split()[-1]) == 12 << 20 and not freed.stderr.strip()
    assert gone["_status"] == "SUCCESS" and gone["changed"] is False
    assert gone["note"] == "nothing to lift: path: '/mnt/no-such-fs' does not exist"


def test_the_grace_period_runs_out_and_the_soft_limit_then_refuses_writes(fs):
    """block_grace 1m (the shortest the quota tools keep): a user over the 4M soft limit, under the 40M hard one,
    may still write while the grace runs; 65 s later a write of one more MiB gets EDQUOT, and what was written
    stays. The mount's grace goes back to USER_ARGS' 2d afterwards."""
    import time
    ssh = fs["ssh"]
    ssh("id fsgrace >/dev/null 2>&1 || useradd -M fsgrace; install -d -o fsgrace /mnt/ext4/g")
    args = dict(path="/mnt/ext4", type="user", enable=True, block_grace="1m", inode_grace="12h",
                quotas=[{"name": "fsgrace", "block_soft": "4M", "block_hard": "40M"}])
    try:
        assert quota(fs, **args)["grace"]["block"] == 60
        during, err_during = dd(fs, "/mnt/ext4/g/a", 8, user="fsgrace")
        running = ssh("repquota -u /mnt/ext4 | grep '^fsgrace '").stdout.split()
        time.sleep(65)
        after, err_after = dd(fs, "/mnt/ext4/g/b", 1, user="fsgrace")
        kept = int(ssh("stat -c %s /mnt/ext4/g/a").stdout)
        print("block_grace 1m, soft 4M, hard 40M: 8 MiB written in the grace -> %d bytes %r (repquota %s); 65 s later "
              "1 MiB more -> %d bytes, %r; the first file still %d bytes"
              % (during, err_during, running[1:6], after, err_after, kept))
        assert during == 8 << 20 and not err_during
        assert running[1] == "+-"  # over the soft limit, grace running
        assert "Disk quota exceeded" in err_after and after < 1 << 20, (after, err_after)
        assert kept == 8 << 20
    finally:
        quota(fs, path="/mnt/ext4", type="user", block_grace="2d", inode_grace="12h",
              quotas=[{"name": "fsgrace", "state": "absent"}])
        ssh("rm -rf /mnt/ext4/g; userdel fsgrace", check=False)

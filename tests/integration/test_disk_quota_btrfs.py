"""disk_quota on btrfs, on this host's real kernel (a loop image made and removed here).

Proof by effect: a writer in a limited subvolume gets EDQUOT at the limit, the limit
lifted lets it write again, and no file is lost on the way.
"""
import errno
import os
import subprocess
import tempfile

import pytest

from conftest import run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
LIMIT = 20 << 20
BLOCK = 4096


@pytest.fixture(scope="module")
def btrfs():
    image = tempfile.NamedTemporaryFile(dir="/var/tmp", prefix="fairshare-btrfs-", suffix=".img", delete=False)
    image.truncate(300 << 20)
    image.close()
    mnt = tempfile.mkdtemp(prefix="fairshare-btrfs-")
    subprocess.run(["mkfs.btrfs", "-q", "-f", image.name], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", image.name, mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], check=False)
        os.rmdir(mnt)
        os.unlink(image.name)


def quotas(mnt, **kw):
    args = dict(path=mnt, type="project", enable=True,
                quotas=[{"name": "proj1", "paths": [os.path.join(mnt, "proj1")], "block_hard": "20M"}])
    args.update(kw)
    return args


def write(path, size):
    """Write up to size bytes; -> (bytes written, errno of the failure or None)."""
    done, err = 0, None
    chunk = b"\0" * (64 << 10)
    with open(path, "ab") as fh:
        try:
            while done < size:
                done += fh.write(chunk[:min(len(chunk), size - done)])
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            err = exc.errno
    return done, err


def quota_enabled(mnt):
    return subprocess.run(["btrfs", "qgroup", "show", mnt], capture_output=True, check=False).returncode == 0


def test_bad_input_changes_nothing(btrfs):
    for args, fragment in [
        (dict(path=btrfs, type="user", quotas=[{"name": "root", "block_hard": "1G"}]), "quotas don't exist on btrfs"),
        (quotas(btrfs, quotas=[{"name": "p", "paths": [btrfs + "/p"], "block_soft": "2G", "block_hard": "1G"}]),
         "quotas[0].block_soft: 2G is above block_hard 1G"),
        (quotas(btrfs, quotas=[{"name": "p", "paths": [btrfs + "/p"], "block_hard": "12 GB"}]),
         "quotas[0].block_hard: '12 GB' is not a size"),
        (quotas("/dev/shm"), "is on tmpfs"),
    ]:
        out = run_module("disk_quota", args)
        assert out["_status"].startswith("FAILED") and fragment in out["msg"], out
    os.mkdir(os.path.join(btrfs, "plain"))
    out = run_module("disk_quota", quotas(btrfs, quotas=[{"name": "p", "paths": [btrfs + "/plain"], "block_hard": "1G"}]))
    assert "plain directory, not a subvolume" in out["msg"]
    assert not quota_enabled(btrfs) and sorted(os.listdir(btrfs)) == ["plain"]


def test_check_mode_then_enforced_limit(btrfs):
    check = run_module("disk_quota", quotas(btrfs), check=True)
    assert check["changed"] and "btrfs quota enable %s" % btrfs in check["actions"]
    assert not quota_enabled(btrfs) and not os.path.exists(os.path.join(btrfs, "proj1"))
    first = run_module("disk_quota", quotas(btrfs), diff=True)
    assert first["changed"] and first["enforced"] and first["quotas"][0]["verified"]["block_hard"] == "20M"
    second = run_module("disk_quota", quotas(btrfs))
    assert second["changed"] is False
    target = os.path.join(btrfs, "proj1", "data")
    written, err = write(target, 30 << 20)
    print("btrfs: subvolume limited to 20M took %d bytes, then %s" % (written, errno.errorcode.get(err)))
    assert err == errno.EDQUOT
    # the qgroup also counts the subvolume's own metadata (a few 16K tree blocks)
    assert LIMIT - (128 << 10) <= written <= LIMIT


def test_lifting_the_limit_keeps_files_and_lets_writes_through(btrfs):
    target = os.path.join(btrfs, "proj1", "data")
    size_before = os.path.getsize(target)
    out = run_module("disk_quota", quotas(btrfs, quotas=[{"name": "proj1", "paths": [btrfs + "/proj1"],
                                                          "state": "absent"}]))
    assert out["changed"] and out["quotas"][0]["verified"]["block_hard"] is None
    written, err = write(target, 10 << 20)
    print("btrfs: limit lifted, wrote %d more bytes (errno %s)" % (written, err))
    assert err is None and written == 10 << 20
    assert os.path.getsize(target) == size_before + (10 << 20)

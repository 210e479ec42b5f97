"""Host.write_atomic: a file of fixed mode and owner is set up on the open file and renamed in place (no
atomic_move); where SELinux is on, and for files whose mode or owner is not fixed, atomic_move as before."""
import os

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils.host import Host

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


class Module(object):
    check_mode = False

    def __init__(self, selinux=None):
        self.moved = []
        if selinux is not None:
            self.selinux_enabled = lambda: selinux

    def atomic_move(self, src, dst):
        self.moved.append(dst)
        os.rename(src, dst)


@pytest.mark.parametrize("selinux", [None, False, True])
def test_a_file_of_fixed_mode_and_owner_replaces_the_old_one_whole(tmp_path, selinux):
    module = Module(selinux)
    host = Host(module)
    path = tmp_path / "users" / "4242.json"
    host.write_atomic(str(path), "first\n", mode=0o400, owner=4242)
    path.chmod(0o644)
    os.chown(str(path), 0, 0)
    host.write_atomic(str(path), "second\n", mode=0o400, owner=4242)
    st = path.stat()
    assert path.read_text() == "second\n" and (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o400, 4242, 0)
    assert os.listdir(str(tmp_path / "users")) == ["4242.json"]  # no temporary file left
    assert module.moved == ([str(path)] * 2 if selinux else [])  # SELinux: atomic_move, which sets the context
    assert host.done == ["write %s" % path] * 2


def test_a_file_without_a_fixed_owner_keeps_going_through_atomic_move(tmp_path):
    module = Module(False)
    host = Host(module)
    path = tmp_path / "profiles.json"
    host.write_atomic(str(path), "x\n", mode=0o644)
    host.write_atomic(str(path), "y\n")
    assert module.moved == [str(path)] * 2 and path.read_text() == "y\n"
    assert path.stat().st_mode & 0o7777 == 0o644

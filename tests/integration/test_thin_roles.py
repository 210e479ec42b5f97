"""The thin roles run cleanly with no arguments (no-op) on this host."""
import glob
import os
import subprocess
import sys

import pytest

from conftest import PYTHON, ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.mark.parametrize("role", ["cgroups", "quotas", "network", "gpu", "profiles"])
def test_role_with_defaults_changes_nothing(tmp_path, role):
    play = tmp_path / "play.yml"
    play.write_text("- hosts: all\n  gather_facts: false\n  roles: [fairshare.resources.%s]\n" % role)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), ANSIBLE_NOCOLOR="1")
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c",
                          "local", "-e", "ansible_python_interpreter=" + PYTHON, str(play)],
                         env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "changed=0" in out.stdout and "failed=0" in out.stdout


def test_cgroups_role_applies_its_list(tmp_path, test_user):
    parent = "fairshare-thin%d" % os.getpid()
    play = tmp_path / "play.yml"
    play.write_text("- hosts: all\n  gather_facts: false\n  roles: [fairshare.resources.cgroups]\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), ANSIBLE_NOCOLOR="1")
    extra = ('{"cgroups_backend": "cgroupfs", "cgroups_parent": "%s", "cgroups_limits": [{"user": "%s", '
             '"memory_max": "256M"}]}' % (parent, test_user.pw_name))
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=" + PYTHON, "-e", extra, str(play)]
    try:
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert out.returncode == 0 and "changed=1" in out.stdout, out.stdout[-2000:]
        with open("/sys/fs/cgroup/memory/%s/user-%d/memory.limit_in_bytes" % (parent, test_user.pw_uid)) as fh:
            assert int(fh.read()) == 256 << 20
    finally:
        cleanup = extra.replace('"cgroups_limits": [{"user": "%s", "memory_max": "256M"}]' % test_user.pw_name,
                                '"cgroups_limits": [{"user": "%s", "state": "absent"}]' % test_user.pw_name)
        subprocess.run(argv[:-3] + ["-e", cleanup, str(play)], env=env, capture_output=True, check=False)
        # the parent in every hierarchy it was made in: memory, and cpuacct where it is mounted apart (CPU time)
        for path in glob.glob("/sys/fs/cgroup/*/%s" % parent):
            os.rmdir(path)
        registry = "/etc/fairshare/cgroupfs-%s.json" % parent  # what cgroup_limit made; the parent is gone now
        if os.path.exists(registry):
            os.unlink(registry)
        if os.path.isdir("/etc/fairshare") and not os.listdir("/etc/fairshare"):
            os.rmdir("/etc/fairshare")


@pytest.mark.parametrize("name,deprecated", [("fairshare_gpu_users", False), ("gpu_users", True)])
def test_gpu_role_takes_its_prefixed_names_and_the_deprecated_ones(tmp_path, name, deprecated):
    """The role's own names reach gpu_access; the old unprefixed ones still do for one release, with a warning."""
    play = tmp_path / "play.yml"
    play.write_text("- hosts: all\n  gather_facts: false\n  roles: [fairshare.resources.gpu]\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), ANSIBLE_NOCOLOR="1")
    extra = '{"%s": [{"name": "root", "gpus": []}]}' % name
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c",
                          "local", "--check", "-v", "-e", "ansible_python_interpreter=" + PYTHON, "-e", extra,
                          str(play)], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-2000:]
    ran = out.stdout.split("GPU access for every listed user, in one call", 1)[1].split("PLAY RECAP")[0]
    assert "skipping" not in ran and "ok: [localhost]" in ran, ran
    assert ("deprecated and removed in 1.0.0; use fairshare_gpu_users" in out.stdout) == deprecated, out.stdout[-2000:]

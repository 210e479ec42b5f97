"""resource_facts on this host: who can start containers outside their limits (a group of the test's own)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import PYTHON, ROOT, run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
GROUP = "fsdock%d" % os.getpid()


@pytest.fixture
def engine_group(test_user):
    subprocess.run(["groupadd", GROUP], check=True)
    try:
        subprocess.run(["usermod", "-a", "-G", GROUP, test_user.pw_name], check=True)
        yield test_user
    finally:
        subprocess.run(["gpasswd", "-d", test_user.pw_name, GROUP], capture_output=True, check=False)
        subprocess.run(["groupdel", GROUP], check=False)


def warnings_of(args):
    """The warnings ansible prints for one resource_facts call (they are not in the -o result line)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local", "-e",
                           "ansible_python_interpreter=" + PYTHON, "-m", "fairshare.resources.resource_facts", "-a",
                           json.dumps(args)], env=env, capture_output=True, text=True, check=False)
    text = " ".join((proc.stdout + proc.stderr).split())
    return [w for w in text.split("[WARNING]: ")[1:] if GROUP in w]


def test_members_of_a_root_engine_group_are_reported_and_warned_about(engine_group):
    name = engine_group.pw_name
    out = run_module("resource_facts", {"container_groups": [GROUP]})
    members = out["ansible_facts"]["fairshare"]["container_group_members"]
    assert members == {GROUP: [name]}, members
    warning = warnings_of({"container_groups": [GROUP]})
    print("warning: %s" % warning)
    assert warning and name in warning[0] and "outside their limits" in warning[0]
    quiet = run_module("resource_facts", {"container_groups": [GROUP], "container_group_exempt": ["root", name]})
    assert quiet["ansible_facts"]["fairshare"]["container_group_members"] == {}
    assert not warnings_of({"container_groups": [GROUP], "container_group_exempt": ["root", name]})

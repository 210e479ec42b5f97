"""resource_facts on this host: who can start containers outside their limits (a group of the test's own)."""
import os
import subprocess

import pytest

from conftest import run_module, warnings_of

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


def test_members_of_a_root_engine_group_are_reported_and_warned_about(engine_group):
    name = engine_group.pw_name
    out = run_module("resource_facts", {"container_groups": [GROUP]})
    members = out["ansible_facts"]["fairshare"]["container_group_members"]
    assert members == {GROUP: [name]}, members
    warning = [w for w in warnings_of("resource_facts", {"container_groups": [GROUP]}) if GROUP in w]
    print("warning: %s" % warning)
    assert warning and name in warning[0] and "outside their limits" in warning[0]
    quiet = run_module("resource_facts", {"container_groups": [GROUP], "container_group_exempt": ["root", name]})
    assert quiet["ansible_facts"]["fairshare"]["container_group_members"] == {}
    assert not [w for w in warnings_of("resource_facts", {"container_groups": [GROUP], "container_group_exempt": ["root", name]})
                if GROUP in w]

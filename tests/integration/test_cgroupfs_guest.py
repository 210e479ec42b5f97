"""cgroup_limit's cgroupfs backend on cgroup v2 (the guest's kernel), persist=true.

This host is cgroup v1; the v2 side of the session script (the login goes into the leaf
<parent>/user-UID/login-sessions) is proven in the guest: a real PAM session (libpam via
ctypes, a PAM service file of this test's own) after the tree was removed, as a reboot
does, restores it and lands in the leaf, and the user's next process is OOM-killed at
the user's memory.max.
"""
import json
import os

import pytest

from conftest import PAM_SESSION, run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
PARENT = "fairshare-v2test"
SERVICE = "fairshare-v2test"
SCRIPT = "/etc/fairshare/cgroupfs-%s.sh" % PARENT


def test_v2_session_hook_restores_and_puts_the_login_in_the_leaf(guest):
    ssh = guest["ssh"]
    ssh("id fsv2 >/dev/null 2>&1 || useradd -M fsv2; cat > /root/pamsession.py <<'FAIRSHARE_EOF'\n%s\nFAIRSHARE_EOF\n"
        "echo 'session optional pam_exec.so quiet %s session' > /etc/pam.d/%s" % (PAM_SESSION, SCRIPT, SERVICE))
    uid = int(ssh("id -u fsv2").stdout.strip())
    args = dict(backend="cgroupfs", parent=PARENT, persist=True, exclusive=True,
                limits=[{"user": "fsv2", "memory_max": "64M", "pids_max": 64}])
    try:
        first = run_module("cgroup_limit", args, guest=guest)
        assert first["changed"] and first["cgroup_version"] == "v2" and first["persist_script"] == SCRIPT, first
        assert run_module("cgroup_limit", args, guest=guest)["changed"] is False
        user_dir = "/sys/fs/cgroup/%s/user-%d" % (PARENT, uid)
        ssh("rmdir %s /sys/fs/cgroup/%s" % (user_dir, PARENT))  # what a reboot does to our tree
        out = ssh("python3 /root/pamsession.py %s fsv2 %d 200" % (SERVICE, uid), check=False)
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        limit = ssh("cat %s/memory.max %s/pids.max" % (user_dir, user_dir)).stdout.split()
        print("guest (v2, cgroupfs): PAM session %s; limits back %s; 200 MiB under 64M -> signal %s"
              % (seen["cgroup"].strip(), limit, seen["signal"]))
        assert seen["open"] == 0
        assert "0::/%s/user-%d/login-sessions" % (PARENT, uid) in seen["cgroup"].splitlines()
        assert limit == [str(64 << 20), "64"]
        assert seen["signal"] == 9 and "survived" not in out.stdout
        again = run_module("cgroup_limit", args, guest=guest)  # the restored tree is what the module wants
        assert again["changed"] is False and again["removed"] == [], again  # the leaf is kept
    finally:
        run_module("cgroup_limit", dict(backend="cgroupfs", parent=PARENT, exclusive=True, limits=[]), guest=guest)
        ssh("rm -f /etc/pam.d/%s /root/pamsession.py; userdel fsv2; test ! -e %s && test ! -d /sys/fs/cgroup/%s"
            % (SERVICE, SCRIPT, PARENT))

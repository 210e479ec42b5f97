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


def test_debian_pam_auth_update_profile_and_a_real_su_login(guest):
    """profile_host pam_config: the line goes into common-session through pam-auth-update; `su`
    (the guest's own PAM stack) then lands in the user's cgroup and is held to its memory.max."""
    ssh = guest["ssh"]
    parent, script = "fairshare-debtest", "/etc/fairshare/cgroupfs-fairshare-debtest.sh"
    files = ["/etc/pam.d/common-session", "/etc/pam.d/common-session-noninteractive"]
    hooked = dict(session_hook=script, pam_config="fairshare-session", pam_files=files)
    ssh("id fsdeb >/dev/null 2>&1 || useradd -M -s /bin/sh fsdeb")
    uid = int(ssh("id -u fsdeb").stdout.strip())
    try:
        limits = run_module("cgroup_limit", dict(backend="cgroupfs", parent=parent, persist=True,
                                                 limits=[{"user": "fsdeb", "memory_max": "64M"}]), guest=guest)
        assert limits["persist_script"] == script
        first = run_module("profile_host", hooked, guest=guest)
        assert first["changed"] and "pam-auth-update --package --enable fairshare-session" in first["actions"], first
        assert run_module("profile_host", hooked, guest=guest)["changed"] is False
        lines = ssh("grep -h 'pam_exec.so quiet %s session' %s" % (script, " ".join(files))).stdout.splitlines()
        assert len(lines) == 2 and all(line.split()[:2] == ["session", "optional"] for line in lines), lines
        where = ssh("su -s /bin/sh fsdeb -c 'cat /proc/self/cgroup'").stdout.strip()
        alloc = ssh("su -s /bin/sh fsdeb -c \"python3 -c 'b = bytearray(200 << 20); print(1)'\"; echo rc=$?",
                    check=False).stdout.strip().splitlines()
        print("guest su login (pam-auth-update profile): %s; 200 MiB under 64M -> %s" % (where, alloc[-1]))
        assert where == "0::/%s/user-%d/login-sessions" % (parent, uid)
        assert alloc == ["rc=137"]  # su reports its child's SIGKILL as 128 + 9; "1" was never printed
        gone = run_module("profile_host", dict(hooked, session_hook=""), guest=guest)
        assert gone["changed"] and "pam-auth-update --package --remove fairshare-session" in gone["actions"], gone
        assert ssh("grep -c 'cgroupfs-' %s; test ! -e /usr/share/pam-configs/fairshare-session" % " ".join(files),
                   check=False).stdout.split() == ["%s:0" % f for f in files]
    finally:
        run_module("profile_host", dict(hooked, session_hook=""), guest=guest)
        run_module("cgroup_limit", dict(backend="cgroupfs", parent=parent, exclusive=True, limits=[]), guest=guest)
        ssh("userdel fsdeb")

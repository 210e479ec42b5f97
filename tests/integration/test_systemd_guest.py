"""Users the run never listed, on a systemd host (the guest: systemd 252, cgroup v2).

cgroup_limit user_defaults writes the user-.slice template: a user created after the call gets
the defaults at their first ssh login (sshd, pam_systemd, user-UID.slice), a listed user's own
drop-in (the same name) wins whole, root is masked, and a site drop-in that overrides ours is
reported. profile_host pam_systemd_files puts cron's jobs into the user's slice: a real crontab
entry lands in user-UID.slice and is killed at the user's memory.max. Everything by effect.
"""
import os
import shlex

import pytest

from conftest import run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
ALLOC = "python3 -c 'import sys; b = bytearray(int(sys.argv[1]) << 20); print(\"survived\")' %d"
SSH = ("ssh -q -i /root/fs-key -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
       "%s@127.0.0.1 %s; echo rc=$?")


def rc_of(proc):
    return int(proc.stdout.strip().splitlines()[-1].split("=", 1)[1])


def test_user_defaults_reach_users_made_after_the_run_and_yield_to_their_own(guest):
    ssh = guest["ssh"]
    ssh("id fsown >/dev/null 2>&1 || useradd -m -s /bin/sh fsown")
    args = dict(user_defaults={"memory_max": "96M", "pids_max": 200}, limits=[{"user": "fsown", "memory_max": "256M"}])
    site = "/etc/systemd/system/user-.slice.d/90-site.conf"
    try:
        first = run_module("cgroup_limit", args, guest=guest, diff=True)
        assert first["changed"] and first["user_defaults"]["state"] == "present", first
        assert first["user_defaults"]["masked"] >= 1 and first["user_defaults"]["overridden"] == []
        again = run_module("cgroup_limit", args, guest=guest)
        assert again["changed"] is False, again
        mask = ssh("cat /etc/systemd/system/user-0.slice.d/50-fairshare.conf").stdout
        assert mask.splitlines()[1:] == ["[Slice]"], mask

        ssh("useradd -m -s /bin/sh fsnew && ssh-keygen -q -t ed25519 -N '' -f /root/fs-key && for u in fsnew fsown; "
            "do install -d -o $u -m 700 /home/$u/.ssh && install -o $u -m 600 /root/fs-key.pub "
            "/home/$u/.ssh/authorized_keys; done")
        uid = int(ssh("id -u fsnew").stdout)
        where = ssh(SSH % ("fsnew", "cat /proc/self/cgroup")).stdout.splitlines()[0]
        small = ssh(SSH % ("fsnew", shlex.quote(ALLOC % 48)), check=False)
        big = ssh(SSH % ("fsnew", shlex.quote(ALLOC % 192)), check=False)
        own = ssh(SSH % ("fsown", shlex.quote(ALLOC % 160)), check=False)  # 160M: over the defaults, in its own 256M
        root = ssh("python3 -c 'b = bytearray(160 << 20); print(\"survived\")'; echo rc=$?", check=False)
        print("user made after the call, first ssh login in %s: 48 MiB rc=%d, 192 MiB under the defaults' 96M rc=%d; "
              "listed user (own 256M), 160 MiB rc=%d; root (masked), 160 MiB rc=%d"
              % (where, rc_of(small), rc_of(big), rc_of(own), rc_of(root)))
        assert where.startswith("0::/user.slice/user-%d.slice/session-" % uid)
        assert rc_of(small) == 0 and "survived" in small.stdout
        assert rc_of(big) == 137 and "survived" not in big.stdout
        assert rc_of(own) == 0 and rc_of(root) == 0

        ssh("printf '[Slice]\\nMemoryMax=1G\\n' > %s" % site)  # a site drop-in parsed after ours
        seen = run_module("cgroup_limit", args, guest=guest)
        assert seen["user_defaults"]["overridden"] == [{"path": site, "unit": "user-.slice",
                                                        "properties": ["MemoryMax"]}], seen
        ssh("rm -f %s" % site)
    finally:
        gone = run_module("cgroup_limit", dict(user_defaults={}, limits=[{"user": "fsown", "state": "absent"}]),
                          guest=guest)
        ssh("rm -f %s /root/fs-key /root/fs-key.pub; loginctl terminate-user fsnew fsown; sleep 1; "
            "userdel -r fsnew; userdel -r fsown" % site, check=False)
    assert gone["user_defaults"]["state"] == "absent" and gone["changed"], gone
    left = ssh("ls /etc/systemd/system/user-.slice.d /etc/systemd/system/user-0.slice.d 2>&1", check=False).stdout
    assert "50-fairshare.conf" not in left, left


CRON_JOB = ("import sys\nopen(sys.argv[1] + '.cgroup', 'w').write(open('/proc/self/cgroup').read())\n"
            "b = bytearray(int(sys.argv[2]) << 20)\nprint('survived')\n")


def test_cron_jobs_run_in_the_users_slice(guest):
    """profile_host pam_systemd_files: Debian's cron stack gets pam_systemd, so a crontab entry runs in
    user-UID.slice, under the user's memory.max, instead of in cron.service."""
    ssh = guest["ssh"]
    ssh("id fscron >/dev/null 2>&1 || useradd -m -s /bin/sh fscron; systemctl start cron")
    base = "/tmp/fs-cron"
    args = {"pam_systemd_files": ["/etc/pam.d/cron", "/etc/pam.d/atd"]}
    try:
        limits = run_module("cgroup_limit", {"limits": [{"user": "fscron", "memory_max": "64M"}]}, guest=guest)
        assert limits["changed"], limits
        first = run_module("profile_host", args, guest=guest, diff=True)
        assert first["changed"], first
        assert run_module("profile_host", args, guest=guest)["changed"] is False
        assert ssh("grep -c '^-session optional pam_systemd.so$' /etc/pam.d/cron").stdout.strip() == "1"
        ssh("rm -f %s.*; printf %%s %s > %s.py" % (base, shlex.quote(CRON_JOB), base))
        ssh("echo '* * * * * python3 %s.py %s 160 > %s.out 2>&1; echo $? > %s.rc' | crontab -u fscron -"
            % (base, base, base, base))
        rc = ssh("for i in $(seq 150); do [ -s %s.rc ] && break; sleep 1; done; cat %s.rc" % (base, base),
                 check=False).stdout.strip()
        cgroup = ssh("cat %s.cgroup" % base, check=False).stdout.strip()
        uid = int(ssh("id -u fscron").stdout)
        print("cron job of fscron: %s; 160 MiB under 64M -> exit %s" % (cgroup, rc))
        assert cgroup.startswith("0::/user.slice/user-%d.slice/" % uid), cgroup
        assert rc == "137"
        off = run_module("profile_host", dict(args, pam_systemd=False), guest=guest)
        assert off["changed"] and ssh("grep -c pam_systemd /etc/pam.d/cron", check=False).stdout.strip() == "0"
    finally:
        run_module("profile_host", dict(args, pam_systemd=False), guest=guest)
        run_module("cgroup_limit", {"limits": [{"user": "fscron", "state": "absent"}]}, guest=guest)
        ssh("crontab -r -u fscron; rm -f %s.*; loginctl terminate-user fscron; sleep 1; userdel -r fscron" % base,
            check=False)

"""One reboot of the systemd guest for everything that must come back by itself (a TCG reboot
costs about a minute, so the checks share it):

- tc_shape with persist: true: fairshare-tc.service puts the classes and the nftables table back;
- the plan whose window holds the moment: a plan is runtime drop-ins, gone at a reboot, and
  fairshare-plan-boot.service (enabled by profile_host with the timers) puts it back;
- an ext4 user quota that disk_quota turned on: the usrquota option it wrote into fstab turns
  accounting and enforcement on at boot, and a write past the hard limit gets EDQUOT;
- the system's reserve (policy `reserve:`): user.slice keeps capacity minus the reserve as its
  memory.max and cpu.max, as the kernel shows them after the run and after the reboot.
"""
import os
import subprocess
import sys

from conftest import run_module
from test_disk_quota_guest import GUEST_TOOL, dd, quota
from test_tc_shape_guest import BIG_UID

QUOTA_USER = "fsrq"
QUOTA_ARGS = dict(path="/mnt/rq", type="user", enable=True, quotas=[{"name": QUOTA_USER, "block_hard": "4M"}])
HELD_ARGS = dict(path="/mnt/rq", type="user", enable=False, quotas=QUOTA_ARGS["quotas"])  # after the reboot: on by itself


def plan_in_the_window(guest, uid):
    """A plan whose window began an hour ago and ends in two, for one user at cpu_max 50%: profile_host
    installs it with its timers and fairshare-plan-boot.service. -> the module args (for the cleanup)."""
    from ansible_collections.fairshare.resources.plugins.module_utils.plan_model import plan_units
    from ansible_collections.fairshare.resources.plugins.module_utils.policy import resolve
    hour = int(guest["ssh"]("date +%H").stdout.strip())
    policy = {"defaults": {"cpu": {"max": "50%"}},
              "plans": {"night": {"schedule": "*-*-* %02d:00" % ((hour - 1) % 24), "until": "%02d:59" % ((hour + 2) % 24),
                                  "scale": {"cpu.max": 2}}}}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "roles", "profiles", "files", "fairshare-plan")) as fh:
        args = {"plans": plan_units(resolve(policy, [{"name": "fsplan", "uid": uid, "groups": []}]), policy["plans"]),
                "plan_tool": fh.read()}
    guest["ssh"]("id fsplan >/dev/null 2>&1 || useradd -m -u %d -s /bin/sh fsplan" % uid)
    run_module("cgroup_limit", {"limits": [{"user": "fsplan", "cpu_max": "50%"}]}, guest=guest)
    first = run_module("profile_host", args, guest=guest)
    assert first["changed"] and "fairshare-plan-boot.service" in " ".join(first["actions"]), first
    assert run_module("profile_host", args, guest=guest)["changed"] is False
    return args


def ext4_quota_at_its_limit(guest):
    """An ext4 filesystem in fstab, user quota turned on by disk_quota, the user at the 4M hard limit."""
    guest["ssh"]("id %(u)s >/dev/null 2>&1 || useradd -M %(u)s; umount /mnt/rq 2>/dev/null; "
                 "sed -i '\\|[[:space:]]/mnt/rq[[:space:]]|d' /etc/fstab; rm -f /rq.img; "
                 "truncate -s 64M /rq.img && mkfs.ext4 -q /rq.img && mkdir -p /mnt/rq && "
                 "echo '/rq.img /mnt/rq ext4 loop 0 2' >> /etc/fstab && mount /mnt/rq && install -d -o %(u)s /mnt/rq/w"
                 % {"u": QUOTA_USER})
    first = quota(guest, **QUOTA_ARGS)
    assert first["changed"] and first["enforced"], first
    size, err = dd(guest, "/mnt/rq/w/f", 6, user=QUOTA_USER)
    assert "Disk quota exceeded" in err and (4 << 20) - (64 << 10) <= size <= 4 << 20, (size, err)
    return guest["ssh"]("awk '$2 == \"/mnt/rq\"' /etc/fstab").stdout.split(), size


def reserve_caps(guest):
    """The policy's reserve (256M, one CPU) as the profiles role turns it into user.slice's limits. -> the
    values the kernel must show in user.slice (memory.max, cpu.max)."""
    from ansible_collections.fairshare.resources.plugins.module_utils.policy import aggregate_limits
    facts = run_module("resource_facts", {"users": False}, guest=guest)["ansible_facts"]["fairshare"]
    capacity = {"cpus": facts["cpus"]["threads"], "memory_bytes": facts["memory_bytes"]}  # as the role passes it
    total = aggregate_limits({"reserve": {"memory": "256M", "cpu": 1}}, "systemd", capacity)
    assert run_module("cgroup_limit", {"limits": total}, guest=guest)["changed"]
    left = (facts["memory_bytes"] - (256 << 20)) // 4096 * 4096  # the kernel keeps whole pages
    return "%d" % left, "%d 100000" % ((facts["cpus"]["threads"] - 1) * 100000)


def user_slice(guest):
    return guest["ssh"]("cat /sys/fs/cgroup/user.slice/memory.max /sys/fs/cgroup/user.slice/cpu.max").stdout.splitlines()


def test_shaping_the_plan_in_force_a_quota_and_the_reserve_are_back_after_reboot(guest):
    """tc classes and nftables rules; the plan in its window (CPUQuotaPerSec 1s, the plan's 100%, where the
    user's own is 500ms); the ext4 quota (a 1 MiB write at the limit refused, usage as before); user.slice
    capped at capacity minus the reserve."""
    guest["ssh"]("id fsnet || useradd -u %d fsnet" % BIG_UID)
    args = dict(interface="auto", persist=True, egress={"rate": "1gbit", "default": {"rate": "500mbit", "ceil": "1gbit"},
                                                        "classes": [{"user": "fsnet", "rate": "10mbit", "ceil": "20mbit"}]})
    first = run_module("tc_shape", args, guest=guest)
    assert first["changed"] and first["leaf"] == "fq_codel", first
    nic = first["interface"]
    plan_uid = 3950
    cpu_quota = "systemctl show -p CPUQuotaPerSecUSec --value user-%d.slice" % plan_uid
    try:
        plan_in_the_window(guest, plan_uid)
        at_run = guest["ssh"](cpu_quota).stdout.strip()
        fstab, used = ext4_quota_at_its_limit(guest)
        assert "usrquota" in fstab[3].split(","), fstab
        capped = list(reserve_caps(guest))
        at_run_slice = user_slice(guest)
        subprocess.run([sys.executable, GUEST_TOOL, "reboot", guest["name"]], check=True, timeout=400)
        held = quota(guest, **HELD_ARGS)
        size, err = dd(guest, "/mnt/rq/w/post-reboot", 1, user=QUOTA_USER)
        print("/mnt/rq after reboot: usage %d bytes, write of 1 MiB -> %d bytes, %r"
              % (held["quotas"][0]["usage"]["blocks"], size, err))
        assert held["changed"] is False and held["enforced"], held
        assert "Disk quota exceeded" in err and used + size <= 4 << 20
        after_slice = user_slice(guest)
        print("user.slice with reserve 256M and 1 CPU: want %s; after the run %s; after the reboot %s"
              % (capped, at_run_slice, after_slice))
        assert at_run_slice == capped and after_slice == capped
        state = guest["ssh"]("systemctl is-active fairshare-tc.service; tc class show dev %s; "
                             "nft list table inet fairshare" % nic).stdout
        after = guest["ssh"](cpu_quota).stdout.strip()
        status = guest["ssh"]("fairshare-plan --status; systemctl is-active fairshare-plan-boot.service").stdout
        print("after reboot on %s:\n%s" % (nic, state))
        print("plan in its window: CPUQuotaPerSec after the run %s, after the reboot %s\n%s" % (at_run, after, status))
        assert at_run == "1s" and after == "1s" and "in force: night" in status
    finally:
        run_module("profile_host", {"plans": {}}, guest=guest)
        run_module("cgroup_limit", {"limits": [{"user": "fsplan", "state": "absent"},
                                               {"slice": "user.slice", "state": "absent"}]}, guest=guest)
        guest["ssh"]("fairshare-plan base >/dev/null 2>&1; userdel -r fsplan; umount /mnt/rq; "
                     "sed -i '\\|[[:space:]]/mnt/rq[[:space:]]|d' /etc/fstab; rm -f /rq.img; userdel %s" % QUOTA_USER, check=False)
    assert guest["ssh"]("systemctl is-enabled fairshare-plan-boot.service", check=False).stdout.strip() != "enabled"
    assert state.startswith("active") and "class htb %s " % first["classes"][0]["classid"] in state
    assert "rate 10Mbit ceil 20Mbit" in state and "meta skuid %d" % first["classes"][0]["uid"] in state
    assert run_module("tc_shape", args, guest=guest)["changed"] is False
    gone = run_module("tc_shape", {"state": "absent"}, guest=guest)
    assert gone["changed"]
    left = guest["ssh"]("tc qdisc show dev %s; nft list tables; test -e /etc/systemd/system/fairshare-tc.service "
                        "&& echo unit-left; test -e /etc/fairshare/tc-restore.sh && echo script-left; true" % nic).stdout
    assert "htb" not in left and "inet fairshare" not in left and "-left" not in left, left

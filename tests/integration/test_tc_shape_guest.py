"""tc_shape in the systemd guest: fq_codel leaves where the kernel has them, rates by
iperf3 between two network namespaces made inside the guest, and the shaping back
after a reboot with persist: true (the same reboot brings back the plan in force, see
fairshare-plan-boot.service); state: absent leaves nothing of ours.
"""
import json
import os
import subprocess
import sys

from conftest import run_module
from test_disk_quota_guest import GUEST_TOOL

NS_ARGS = dict(interface="gA", egress={"rate": "100mbit", "default": {"rate": "10mbit", "ceil": "10mbit"},
                                       "classes": [{"user": "fsnet", "rate": "5mbit", "ceil": "5mbit"}]})


# fsnet's uid is an id-mapped directory user's (above 65535): its class id is allocated, not the uid in hex
BIG_UID = 200050


def in_ns(guest):
    """The guest's python, entered into the namespace gA lives in (a wrapper: ansible takes no interpreter args)."""
    return dict(guest, python="/usr/local/bin/python3-gcli")


def test_fq_codel_leaves_and_rates_in_the_guest(guest):
    guest["ssh"]("id fsnet || useradd -u %d fsnet; " % BIG_UID +
                 "printf '#!/bin/sh\\nexec nsenter --net=/run/netns/gcli /usr/bin/python3 \"$@\"\\n' "
                 "> /usr/local/bin/python3-gcli && chmod 755 /usr/local/bin/python3-gcli; "
                 "ip netns add gcli; ip netns add gsrv; "
                 "ip -n gcli link add gA type veth peer name gB netns gsrv; "
                 "ip -n gcli addr add 10.77.0.1/24 dev gA; ip -n gsrv addr add 10.77.0.2/24 dev gB; "
                 "ip -n gcli link set gA up; ip -n gsrv link set gB up; ip -n gsrv link set lo up; "
                 "ip netns exec gsrv iperf3 -s -D -p 5401 --pidfile /run/fs-iperf1.pid; "
                 "ip netns exec gsrv iperf3 -s -D -p 5402 --pidfile /run/fs-iperf2.pid")
    try:
        first = run_module("tc_shape", NS_ARGS, guest=in_ns(guest))
        assert first["changed"] and first["leaf"] == "fq_codel", first
        assert run_module("tc_shape", NS_ARGS, guest=in_ns(guest))["changed"] is False
        leaves = json.loads(guest["ssh"]("ip netns exec gcli tc -j qdisc show dev gA").stdout)
        assert sorted(q["kind"] for q in leaves if q.get("parent")) == ["fq_codel", "fq_codel"]
        out = guest["ssh"](
            "cd /tmp && (nsenter --net=/run/netns/gcli setpriv --reuid=fsnet --regid=fsnet --clear-groups "
            "iperf3 -c 10.77.0.2 -p 5401 -t 10 -O 2 -J > u.json &) ; "
            "nsenter --net=/run/netns/gcli iperf3 -c 10.77.0.2 -p 5402 -t 10 -O 2 -J > r.json; sleep 2; "
            "python3 -c \"import json; print(*[json.load(open(f))['end']['sum_received']['bits_per_second'] "
            "for f in ('u.json', 'r.json')])\"").stdout.split()
        user_bps, root_bps = float(out[0]), float(out[1])
        print("guest (fq_codel leaves): user uid %d (class %s) at 5mbit %.2f Mbit/s, root (default 10mbit) %.2f Mbit/s"
              % (BIG_UID, first["classes"][0]["classid"], user_bps / 1e6, root_bps / 1e6))
        assert first["classes"][0]["uid"] == BIG_UID
        assert abs(user_bps - 5e6) <= 0.5e6 and abs(root_bps - 10e6) <= 1e6
    finally:
        run_module("tc_shape", {"state": "absent"}, guest=in_ns(guest))
        guest["ssh"]("kill $(cat /run/fs-iperf1.pid /run/fs-iperf2.pid); ip netns del gcli; ip netns del gsrv",
                     check=False)


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


def test_persisted_shaping_and_the_plan_in_force_are_back_after_reboot(guest):
    """One reboot for two things that must come back: tc_shape's persisted shaping, and the plan whose
    window holds the moment (a plan is runtime drop-ins, gone at a reboot; fairshare-plan-boot.service,
    enabled by profile_host with the timers, puts it back: CPUQuotaPerSec 1s, the plan's 100%, where
    the user's own is 500ms)."""
    guest["ssh"]("id fsnet || useradd -u %d fsnet" % BIG_UID)
    args = dict(interface="auto", persist=True, egress={"rate": "1gbit", "default": {"rate": "500mbit", "ceil": "1gbit"},
                                                        "classes": [{"user": "fsnet", "rate": "10mbit", "ceil": "20mbit"}]})
    first = run_module("tc_shape", args, guest=guest)
    assert first["changed"] and first["leaf"] == "fq_codel", first
    nic = first["interface"]
    plan_uid = 3950
    quota = "systemctl show -p CPUQuotaPerSecUSec --value user-%d.slice" % plan_uid
    try:
        plan_in_the_window(guest, plan_uid)
        at_run = guest["ssh"](quota).stdout.strip()
        subprocess.run([sys.executable, GUEST_TOOL, "reboot", guest["name"]], check=True, timeout=400)
        state = guest["ssh"]("systemctl is-active fairshare-tc.service; tc class show dev %s; "
                             "nft list table inet fairshare" % nic).stdout
        after = guest["ssh"](quota).stdout.strip()
        status = guest["ssh"]("fairshare-plan --status; systemctl is-active fairshare-plan-boot.service").stdout
        print("after reboot on %s:\n%s" % (nic, state))
        print("plan in its window: CPUQuotaPerSec after the run %s, after the reboot %s\n%s" % (at_run, after, status))
        assert at_run == "1s" and after == "1s" and "in force: night" in status
    finally:
        run_module("profile_host", {"plans": {}}, guest=guest)
        run_module("cgroup_limit", {"limits": [{"user": "fsplan", "state": "absent"}]}, guest=guest)
        guest["ssh"]("fairshare-plan base >/dev/null 2>&1; userdel -r fsplan", check=False)
    assert guest["ssh"]("systemctl is-enabled fairshare-plan-boot.service", check=False).stdout.strip() != "enabled"
    assert state.startswith("active") and "class htb %s " % first["classes"][0]["classid"] in state
    assert "rate 10Mbit ceil 20Mbit" in state and "meta skuid %d" % first["classes"][0]["uid"] in state
    assert run_module("tc_shape", args, guest=guest)["changed"] is False
    gone = run_module("tc_shape", {"state": "absent"}, guest=guest)
    assert gone["changed"]
    left = guest["ssh"]("tc qdisc show dev %s; nft list tables; test -e /etc/systemd/system/fairshare-tc.service "
                        "&& echo unit-left; test -e /etc/fairshare/tc-restore.sh && echo script-left; true" % nic).stdout
    assert "htb" not in left and "inet fairshare" not in left and "-left" not in left, left

"""Verify playbooks/site.yml with examples/policy.yml on the 20 users of examples/lab.yml.

The oracle is the scenario's hand-written table (fairshare_test_tiers, fairshare_test_profiles),
never the resolver. First every user's configured limits as systemd, quota and tc show them,
then the effects, one user per tier plus the overridden one: a kill at the user's
memory.max, a busy loop held at its CPU quota, EDQUOT at its hard block limit on /srv/lab,
iperf3 at its class rate through fsv0, and EPERM from the device cgroup for a GPU it was
not given. None of these users has logged in; the limits are there before they do.
"""
import json
import os
import re
import sys
import time

import pytest

from guestlib import CPU_SHARE, quote, size, with_rc

sys.path.insert(0, os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "testbed"))
import directory  # noqa: E402  (testbed/directory.py: slapd and SSSD in the guest)

RATE_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}
OPEN = ("import errno, os, sys\nfor path in sys.argv[1:]:\n    try:\n        os.close(os.open(path, os.O_RDWR))\n"
        "        print(path, 'OK')\n    except OSError as exc:\n        print(path, errno.errorcode[exc.errno])")


@pytest.fixture(scope="module")
def lab(host):
    """The lab users and what each must have; the plan timers held off while limits are measured."""
    hv = host.ansible.get_variables()
    if "fairshare_test_profiles" not in hv:
        pytest.skip("no profiles in this scenario")
    tiers = hv["fairshare_test_tiers"]
    users = {}
    for name, spec in hv["fairshare_test_profiles"].items():
        spec = {"tier": spec} if isinstance(spec, str) else dict(spec)
        want = dict(tiers[spec.pop("tier")], **spec)
        want["uid"] = int(host.check_output("id -u %s" % name))
        users[name] = want
    timers = host.check_output("systemctl list-timers --all --no-legend 'fairshare-plan-*'")
    print("plan timers:\n%s" % timers)
    assert "fairshare-plan-night.timer" in timers and "fairshare-plan-night-end.timer" in timers
    # the night plan must not switch while limits are measured: timers off, own limits on
    host.run_test("systemctl stop fairshare-plan-night.timer fairshare-plan-night-end.timer")
    host.run_test("fairshare-plan base")
    yield dict(host=host, users=users)
    host.run_test("systemctl start fairshare-plan-night.timer fairshare-plan-night-end.timer")


def rate_bits(text):
    """'4mbit' (policy) or '4Mbit' (tc) -> bits per second."""
    m = re.match(r"^([0-9.]+)([KMG]?)bit$", str(text), re.I)
    return float(m.group(1)) * RATE_UNITS[m.group(2).upper()]


def systemd_time(text):
    """CPUQuotaPerSecUSec: '250ms', '1s', '1.500000s', 'infinity' -> percent of one CPU."""
    if text == "infinity":
        return None
    m = re.match(r"^([0-9.]+)(ms|s)$", text)
    return round(float(m.group(1)) * (100 if m.group(2) == "s" else 0.1))


def slice_props(host, uids):
    units = ["user-%d.slice" % uid for uid in uids]
    out = host.check_output("systemctl show -p Id -p MemoryMax -p CPUQuotaPerSecUSec -p TasksMax %s" % " ".join(units))
    props = {}
    for block in out.split("\n\n"):  # one block per unit, properties in systemd's order
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        props[fields["Id"]] = fields
    return props


def quota_hard(host):
    """repquota -u /srv/lab -> {user: hard block limit in bytes}."""
    hard = {}
    for line in host.check_output("repquota -u /srv/lab").splitlines():
        parts = line.split()
        if len(parts) > 4 and re.match(r"^[+-]{2}$", parts[1]):
            hard[parts[0]] = int(parts[4]) * 1024
    return hard


def tc_rates(host):
    """tc class show dev fsv0 -> {classid: (rate, ceil) in bits per second}."""
    rates = {}
    for line in host.check_output("tc class show dev fsv0").splitlines():
        m = re.search(r"class htb (\S+) .*\brate (\S+) ceil (\S+)", line)
        if m:
            rates[m.group(1)] = (rate_bits(m.group(2)), rate_bits(m.group(3)))
    return rates


def test_every_user_has_the_profile_the_policy_gives(lab):
    host, users = lab["host"], lab["users"]
    props = slice_props(host, [u["uid"] for u in users.values()])
    hard = quota_hard(host)
    rates = tc_rates(host)
    video = set(host.check_output("getent group video").split(":")[-1].split(",")) - {""}
    wrong = []
    for name, want in sorted(users.items()):
        uid = want["uid"]
        p = props["user-%d.slice" % uid]
        got = {"memory_max": None if p["MemoryMax"] == "infinity" else int(p["MemoryMax"]),
               "cpu_max": systemd_time(p["CPUQuotaPerSecUSec"]),
               "block_hard": hard.get(name) or None,
               "rate": rates.get("1:%x" % uid, (None, None)),
               "in_video": name in video}
        dropin = host.file("/etc/systemd/system/user-%d.slice.d/50-fairshare.conf" % uid)
        expect = {"memory_max": size(want["memory_max"]) if want["memory_max"] else None,
                  "cpu_max": want["cpu_max"],
                  "block_hard": size(want["block_hard"]) if want["block_hard"] else None,
                  "rate": (rate_bits(want["rate"]), rate_bits(want["ceil"])) if want["rate"] else (None, None),
                  "in_video": bool(want["gpus"])}
        if want["pids_max"]:
            got["pids_max"], expect["pids_max"] = int(p["TasksMax"]), want["pids_max"]
        else:
            # unlimited: a drop-in of ours without limits (a mask), so the user-.slice defaults never reach them
            got["drop_in"] = dropin.content_string.splitlines()[1:] if dropin.exists else None
            expect["drop_in"] = ["[Slice]"]
        print("%s uid %d: %s" % (name, uid, got))
        if got != expect:
            wrong.append("%s: got %s, want %s" % (name, got, expect))
    assert not wrong, "\n".join(wrong)


def representatives(lab):
    """The first user of each limited tier, and every user with an override of its own."""
    seen, picked = set(), []
    for name, want in sorted(lab["users"].items()):
        key = tuple(sorted((k, str(v)) for k, v in want.items() if k != "uid"))
        if want["memory_max"] and key not in seen:
            seen.add(key)
            picked.append(name)
    return picked


def in_slice(lab, name, code, *args):
    """python code as the user, in the user's slice (as its login sessions would be)."""
    uid = lab["users"][name]["uid"]
    return with_rc(lab["host"], "systemd-run --quiet --wait --pipe --collect --slice=user-%d.slice --uid=%d "
                   "/usr/bin/python3 -c %s %s" % (uid, uid, quote(code), " ".join(args)))


def limit_hits(host, uid):
    """-> (what, count): how often the user slice's memory limit acted. cgroup v2: memory.events' oom_kill,
    counted in every ancestor of the killed process. cgroup v1: memory.failcnt of the slice (charges refused at
    its limit); v1's memory.oom_control counts a kill only in the killed process's own cgroup (here the
    transient service below the slice, gone with it)."""
    if host.file("/sys/fs/cgroup/cgroup.controllers").exists:
        text = host.file("/sys/fs/cgroup/user.slice/user-%d.slice/memory.events" % uid).content_string
        return "oom_kill", int(dict(line.split() for line in text.splitlines())["oom_kill"])
    return "failcnt", int(host.file("/sys/fs/cgroup/memory/user.slice/user-%d.slice/memory.failcnt" % uid).content_string)


def test_memory_max_kills_each_tier_at_its_own_limit(lab):
    host, lines = lab["host"], []
    for name in representatives(lab):
        uid, limit = lab["users"][name]["uid"], size(lab["users"][name]["memory_max"])
        hold = "fs-hold-%d" % uid
        host.run_test("systemd-run --quiet --collect --slice=user-%d.slice --unit=%s sleep 600" % (uid, hold))
        try:
            small = in_slice(lab, name, "b = bytearray(%d); print('survived')" % (limit // 2))
            big = in_slice(lab, name, "b = bytearray(%d); print('survived')" % (limit * 2))
            what, hits = limit_hits(host, uid)
        finally:
            host.run("systemctl stop %s" % hold)
        lines.append("%s: %d MiB allocation survived (rc=%d), %d MiB killed (rc=%d), %s=%d under memory.max %d MiB"
                     % (name, limit // 2 >> 20, small.rc, limit * 2 >> 20, big.rc, what, hits, limit >> 20))
        print(lines[-1])
        assert small.rc == 0 and "survived" in small.stdout, lines[-1]
        assert big.rc != 0 and "survived" not in big.stdout and hits >= 1, lines[-1]


def test_cpu_quota_holds_each_tier(lab):
    for name in representatives(lab):
        want = lab["users"][name]["cpu_max"] / 100.0
        if want >= 1:
            continue  # a single busy loop cannot show a quota of one CPU or more: it would only measure host noise
        res = in_slice(lab, name, CPU_SHARE % 4)
        share = float(res.stdout.strip().splitlines()[-1])
        print("%s: busy loop under cpu_max %d%% used %.1f%% of one CPU" % (name, want * 100, share * 100))
        assert res.rc == 0 and abs(share - want) <= max(want * 0.12, 0.03)


def test_writes_past_the_hard_quota_get_edquot(lab):
    code = ("import errno, os\npath = '/srv/lab/%s/fill'\nn = 0\nerr = None\nfd = os.open(path, os.O_WRONLY | os.O_CREAT)\n"
            "try:\n    while n < 256 << 20:\n        n += os.write(fd, b'x' * 65536)\n        os.fsync(fd)\n"
            "except OSError as exc:\n    err = errno.errorcode[exc.errno]\nos.close(fd)\nos.unlink(path)\nprint(n, err)")
    for name in representatives(lab):
        hard = size(lab["users"][name]["block_hard"])
        res = in_slice(lab, name, code % name)
        written, err = res.stdout.strip().splitlines()[-1].split()
        print("%s: wrote %d bytes under a hard limit of %d MiB on /srv/lab, then %s" % (name, int(written), hard >> 20, err))
        assert res.rc == 0 and err == "EDQUOT" and hard - (1 << 20) <= int(written) <= hard


def test_iperf3_runs_at_each_users_class_ceil(lab):
    host = lab["host"]
    for name in representatives(lab):
        # alone on the link a class borrows up to its ceil
        want = rate_bits(lab["users"][name]["ceil"])
        uid = lab["users"][name]["uid"]
        out = host.run("setpriv --reuid=%d --regid=%d --init-groups iperf3 -c 10.88.0.2 -p 5501 -t 8 -O 2 -J"
                       " | python3 -c %s" % (uid, uid, quote(
                           "import json, sys; d = json.load(sys.stdin); print(d.get('error') or "
                           "d['end']['sum_received']['bits_per_second'])")))
        got = float(out.stdout.strip())
        print("%s: iperf3 through fsv0 at class ceil %.0f Mbit/s measured %.2f Mbit/s" % (name, want / 1e6, got / 1e6))
        assert abs(got - want) <= want * 0.12


def test_gpus_not_given_are_refused(lab):
    nodes = ["/dev/nvidia0", "/dev/nvidia1"]
    for name in representatives(lab):
        gpus = lab["users"][name]["gpus"]
        res = in_slice(lab, name, OPEN, *nodes)
        got = dict(line.split() for line in res.stdout.strip().splitlines())
        print("%s (GPUs %s): %s" % (name, gpus, got))
        for index, node in enumerate(nodes):
            if index in gpus:
                assert got[node] == "ENXIO"  # past the device cgroup and the mode; no driver behind the node
            elif gpus:
                assert got[node] == "EPERM"  # in group video, refused by the device cgroup
            else:
                assert got[node] in ("EACCES", "EPERM")  # not in group video at all


def test_fairshare_usage_reports_every_user(lab):
    host = lab["host"]
    print(host.check_output("fairshare-usage --all"))
    reports = dict((r["user"], r) for r in json.loads(host.check_output("fairshare-usage --all --json")))
    for name, want in sorted(lab["users"].items()):
        limit = size(want["memory_max"]) if want["memory_max"] else None
        assert reports[name]["memory"]["max"] == limit, (name, reports[name])


def test_a_workload_is_held_inside_its_users_limit(lab):
    """Two layers: the workload slice sits in the user's slice and has a lower memory.max."""
    host = lab["host"]
    parents = host.file("/etc/fairshare/profiles.json").content_string
    for name in representatives(lab):
        want = lab["users"][name]
        for work, limit in sorted((want.get("workloads") or {}).items()):
            uid, limit, outer = want["uid"], size(limit), size(want["memory_max"])
            unit = "user-%d-%s.slice" % (uid, work)
            alloc = (limit + outer) // 2  # over the workload's limit, under the user's
            code = "b = bytearray(%d); print(open('/proc/self/cgroup').read().strip(), 'survived')" % alloc
            inner = with_rc(host, "systemd-run --quiet --wait --pipe --collect --slice=%s --uid=%d /usr/bin/python3 -c %s"
                            % (unit, uid, quote(code)))
            user = in_slice(lab, name, code)
            print("%s: %d MiB in %s (memory.max %d MiB) -> rc=%d; in user-%d.slice (%d MiB) -> rc=%d %s"
                  % (name, alloc >> 20, unit, limit >> 20, inner.rc, uid, outer >> 20, user.rc, user.stdout.strip()))
            assert inner.rc != 0 and "survived" not in inner.stdout
            assert user.rc == 0 and "survived" in user.stdout
            assert '"%s"' % unit in parents  # the cgroup_parent written for container engines


def test_the_night_plan_doubles_the_cpu_quota_and_base_restores_it(lab):
    host, name = lab["host"], representatives(lab)[0]
    uid, want = lab["users"][name]["uid"], lab["users"][name]["cpu_max"] / 100.0
    try:
        host.run_test("fairshare-plan night")
        shown = host.check_output("systemctl show -p CPUQuotaPerSecUSec --value user-%d.slice" % uid)
        night = in_slice(lab, name, CPU_SHARE % 4)
    finally:
        host.run_test("fairshare-plan base")
    back = host.check_output("systemctl show -p CPUQuotaPerSecUSec --value user-%d.slice" % uid)
    leftover = host.run("find /run/systemd/system.control/user-%d.slice.d/ /run/systemd/system/user-%d.slice.d/ -type f 2>/dev/null"
                        % (uid, uid)).stdout.split()
    share = float(night.stdout.strip().splitlines()[-1])
    print("%s: plan night -> CPUQuotaPerSec %s, busy loop %.1f%% of one CPU; base -> %s, runtime files left %s"
          % (name, shown, share * 100, back, leftover))
    assert systemd_time(shown) == round(want * 200) and abs(share - 2 * want) <= max(2 * want * 0.12, 0.03)
    assert systemd_time(back) == round(want * 100) and not leftover


def test_the_night_timer_fires_by_itself_when_the_clock_reaches_its_schedule(lab):
    """Nobody runs fairshare-plan here: the guest's clock is set 20 s before the next moment the role's own
    night timer names (its OnCalendar, placed by systemd-analyze; the role enabled the timer), and
    within 90 s the timer has run fairshare-plan@night.service and the user's slice has the night's doubled CPU
    quota (it fired on the second, 20 s later). The clock is put back (the real time, carried forward by the
    uptime that passed) and the base restored afterwards. The service must start within 5 s of the schedule (the
    timer's AccuracySec=1s). Checked to fail with the clock set an hour short of the schedule: the quota stays
    the base's."""
    host, name = lab["host"], representatives(lab)[0]
    uid, want = lab["users"][name]["uid"], lab["users"][name]["cpu_max"] / 100.0
    quota = "systemctl show -p CPUQuotaPerSecUSec --value user-%d.slice" % uid
    calendar = host.check_output("systemctl show -p TimersCalendar --value fairshare-plan-night.timer")
    event = calendar.split("OnCalendar=", 1)[1].split(";")[0].strip()
    placed = host.check_output("systemd-analyze calendar %s" % quote(event))
    nxt = [ln.split(":", 1)[1].strip() for ln in placed.splitlines() if ln.strip().startswith("Next elapse:")][0]
    elapse = int(host.check_output("date -d %s +%%s" % quote(nxt)))
    real, up = map(float, host.check_output("echo $(date +%s.%N) $(cut -d' ' -f1 /proc/uptime)").split())
    before = host.check_output(quota)
    seen, fired = None, ""
    assert host.check_output("systemctl is-enabled fairshare-plan-night.timer") == "enabled"  # the role's doing
    try:  # the lab fixture holds the timers off while limits are measured; on again for this test
        host.run_test("systemctl start fairshare-plan-night.timer")
        host.run_test("date -s @%d" % (elapse - 20))
        deadline = time.time() + 90
        while time.time() < deadline:
            seen = host.check_output(quota)
            if systemd_time(seen) == round(want * 200):
                break
            time.sleep(3)
        fired = host.check_output("systemctl show -p ExecMainStartTimestamp --value fairshare-plan@night.service")
        late = int(host.check_output("date -d %s +%%s" % quote(fired))) - elapse if fired else None
    finally:
        now_up = float(host.check_output("cut -d' ' -f1 /proc/uptime"))
        host.run_test("systemctl stop fairshare-plan-night.timer; date -s @%.3f" % (real + now_up - up))
        host.run_test("fairshare-plan base")
    print("%s: night timer OnCalendar=%s, next elapse %s; clock set 20 s before it: CPUQuotaPerSec %s -> %s, "
          "fairshare-plan@night.service started %s (%s s after the schedule)" % (name, event, nxt, before, seen, fired, late))
    assert systemd_time(before) == round(want * 100)
    assert systemd_time(seen) == round(want * 200) and fired
    assert 0 <= late <= 5  # AccuracySec=1s; systemd's default minute would let it start up to 59 s late


def test_the_boot_service_puts_back_the_plan_whose_window_holds_the_moment(lab):
    """A plan is runtime drop-ins, gone at a reboot: fairshare-plan-boot.service (enabled by the role)
    runs `fairshare-plan --now`. Restarted here with a copy of plans.json whose night window began
    an hour ago (systemd-analyze places it), the slice gets the night quota; with a window that
    ended, it is left at the user's own."""
    host, name = lab["host"], representatives(lab)[0]
    uid, want = lab["users"][name]["uid"], lab["users"][name]["cpu_max"] / 100.0
    assert host.check_output("systemctl is-enabled fairshare-plan-boot.service") == "enabled"
    hour = int(host.check_output("date +%H"))
    shown = {}
    try:
        for label, start, until in (("ended", (hour - 3) % 24, "%02d:00" % ((hour - 1) % 24)),
                                    ("inside", (hour - 1) % 24, "%02d:59" % ((hour + 2) % 24))):
            host.run_test("python3 -c 'import json,sys; d=json.load(open(\"/etc/fairshare/plans.json\")); "
                          "d[\"plans\"][\"night\"].update(schedule=\"*-*-* %02d:00\", until=\"%s\"); "
                          "json.dump(d, open(\"/run/fs-plans-now.json\", \"w\"))'" % (start, until))
            host.run_test("systemctl set-environment FAIRSHARE_PLANS=/run/fs-plans-now.json")
            host.run_test("systemctl restart fairshare-plan-boot.service")
            shown[label] = host.check_output("systemctl show -p CPUQuotaPerSecUSec --value user-%d.slice" % uid)
        log = host.check_output("journalctl -u fairshare-plan-boot.service -n 4 --no-pager -o cat")
    finally:
        host.run_test("systemctl unset-environment FAIRSHARE_PLANS; rm -f /run/fs-plans-now.json")
        host.run_test("fairshare-plan base")
    print("%s: boot service with a window that ended -> %s, inside a window -> %s\n%s"
          % (name, shown["ended"], shown["inside"], log))
    assert systemd_time(shown["ended"]) == round(want * 100)
    assert systemd_time(shown["inside"]) == round(want * 200)


SSH_AS = ("ssh -q -i /root/fs-login-key -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
          "%s@127.0.0.1 ")
ALLOC = "python3 -c %s" % quote("b = bytearray(%d); print('survived')")


def ssh_login(host, name, uid):
    """A key of the test's own in the user's authorized_keys: `SSH_AS % name + command` is a real ssh login."""
    host.run_test("test -f /root/fs-login-key || ssh-keygen -q -t ed25519 -N '' -f /root/fs-login-key; "
                  "install -d -o %d -m 700 /home/%s /home/%s/.ssh && install -o %d -m 600 /root/fs-login-key.pub "
                  "/home/%s/.ssh/authorized_keys" % (uid, name, name, uid, name))
    return SSH_AS % name


def test_a_user_made_after_the_run_gets_the_defaults_at_first_login(lab):
    """useradd after the run: the role never listed this user, and the user-.slice template (the
    policy's defaults) holds their first ssh login - sshd, pam_systemd, user-UID.slice: an
    allocation past the defaults' memory.max is killed, half of it survives."""
    host = lab["host"]
    limit = size(host.ansible.get_variables()["fairshare_test_tiers"]["defaults"]["memory_max"])
    name, uid = "fslate", 3900
    host.run_test("id %s >/dev/null 2>&1 || useradd -m -u %d -s /bin/sh %s" % (name, uid, name))
    try:
        ssh = ssh_login(host, name, uid)
        where = host.check_output(ssh + quote("cat /proc/self/cgroup"))
        small = with_rc(host, ssh + quote(ALLOC % (limit // 2)))
        big = with_rc(host, ssh + quote(ALLOC % (limit * 2)))
        shown = host.check_output("systemctl show -p MemoryMax -p DropInPaths user-%d.slice" % uid)
    finally:
        host.run("loginctl terminate-user %s; sleep 1; userdel -r %s" % (name, name))
    print("user made after the run, first ssh login: %s; %d MiB survived (rc=%d), %d MiB under the defaults' %d MiB "
          "(rc=%d); %s" % (where.strip(), limit // 2 >> 20, small.rc, limit * 2 >> 20, limit >> 20, big.rc,
                           " ".join(shown.split())))
    assert "0::/user.slice/user-%d.slice/session-" % uid in where
    assert small.rc == 0 and "survived" in small.stdout
    assert big.rc != 0 and "survived" not in big.stdout


def test_a_directory_user_gets_their_tier_at_first_login(lab):
    """Issue 13: an OpenLDAP user (slapd) that SSSD does not enumerate, so the role could not list
    them, with an id-mapped uid (200001) and the directory group students. Their first ssh login
    after the role ran gets the student tier of examples/policy.yml from the login resolver the
    role installed: an allocation past the tier's memory.max (not the defaults') is killed, a busy
    loop is held at its cpu.max, and fairshare-usage, run by the user, names the tier."""
    host = lab["host"]
    tier = host.ansible.get_variables()["fairshare_test_tiers"]["student"]
    limit, quota = size(tier["memory_max"]), tier["cpu_max"] / 100.0
    name, uid = directory.USER, directory.UID
    host.run_test(directory.START)
    try:
        listed = host.check_output("getent passwd | cut -d: -f1").split()
        groups = host.check_output("id -Gn %s" % name).split()
        ssh = ssh_login(host, name, uid)
        where = host.check_output(ssh + quote("cat /proc/self/cgroup"))
        small = with_rc(host, ssh + quote(ALLOC % (limit // 2)))
        big = with_rc(host, ssh + quote(ALLOC % (limit * 2)))
        spin = with_rc(host, ssh + quote("python3 -c %s" % quote(CPU_SHARE % 4)))
        usage = host.check_output(ssh + "fairshare-usage")
        logged = host.run("journalctl -q -o cat -t fairshare-login | grep %s | tail -1" % name).stdout
    finally:
        host.run(directory.STOP)
    share = float(spin.stdout.strip().splitlines()[-1])
    print("directory user %s (uid %d, groups %s, in getent passwd's list: %s); first ssh login in %s\n"
          "%d MiB survived (rc=%d), %d MiB under the tier's %d MiB (rc=%d); busy loop %.1f%% of a CPU under cpu_max "
          "%d%%\nfairshare-usage:\n%s\njournal: %s"
          % (name, uid, groups, name in listed, where.strip(), limit // 2 >> 20, small.rc, limit * 2 >> 20,
             limit >> 20, big.rc, share * 100, quota * 100, usage, logged.strip()))
    assert name not in listed and "students" in groups  # what resource_facts sees: not this user
    assert "0::/user.slice/user-%d.slice/session-" % uid in where
    assert small.rc == 0 and "survived" in small.stdout
    assert big.rc != 0 and "survived" not in big.stdout
    assert spin.rc == 0 and abs(share - quota) <= max(quota * 0.12, 0.03)
    assert usage.splitlines()[0] == "%s (tier student), resolved at login" % name, usage


def test_a_users_rootless_container_is_held_at_their_memory_max(lab):
    """Issue 13 item 5: a student's rootless podman container (a busybox image made and imported in the
    guest: no registry) runs in the user's slice and is killed at the student's memory.max; a container
    of root's podman runs outside every user's slice, and fairshare-usage --all lists it, and only it."""
    host = lab["host"]
    name = representatives(lab)[0]
    uid, limit = lab["users"][name]["uid"], size(lab["users"][name]["memory_max"])
    image, run = "localhost/fs-busybox", "podman run --rm --network none localhost/fs-busybox /bin/busybox"
    host.run_test("grep -q '^%s:' /etc/subuid || usermod --add-subuids 400000-465535 --add-subgids 400000-465535 %s; "
                  "rm -rf /tmp/fs-bb; mkdir -p /tmp/fs-bb/bin && cp /bin/busybox /tmp/fs-bb/bin/ && "
                  "tar -C /tmp/fs-bb -cf /tmp/fs-bb.tar . && chmod 644 /tmp/fs-bb.tar" % (name, name))
    try:
        ssh = ssh_login(host, name, uid)
        imported = with_rc(host, ssh + "podman import -q /tmp/fs-bb.tar " + image)
        big = with_rc(host, ssh + quote("%s dd if=/dev/zero of=/dev/null bs=%dM count=1" % (run, limit * 2 >> 20)))
        # the control: half the limit goes through in a container that then stays, to be found in the user's slice
        host.run_test(ssh + quote("podman run -d --replace --log-driver k8s-file --name fs-user --network none %s /bin/busybox sh -c '/bin/busybox dd "
                                  "if=/dev/zero of=/dev/null bs=%dM count=1 && echo survived && /bin/busybox sleep 300'" % (image, limit // 2 >> 20)))
        small = host.run(ssh + quote("for i in $(seq 60); do podman logs fs-user 2>&1 | grep -q survived && break; "
                                     "sleep 1; done; podman logs fs-user 2>&1")).stdout
        pid = host.check_output(ssh + quote("podman inspect -f '{{.State.Pid}}' fs-user")).split()[0]
        where = host.check_output("cat /proc/%s/cgroup" % pid).strip()
        host.run_test("podman import -q /tmp/fs-bb.tar %s >/dev/null && podman run -d --replace --name fs-root --network none "
                      "%s /bin/busybox sleep 300 >/dev/null" % (image, image))
        root_id = host.check_output("podman inspect -f '{{.Id}}' fs-root").strip()
        listed = host.check_output("fairshare-usage --all")
        usage = host.ansible("fairshare.resources.resource_usage", "users=%s" % name, check=False)
    finally:
        host.run("podman rm -f -t 0 fs-root; " + SSH_AS % name + "podman rm -f -t 0 fs-user")
        host.run("loginctl terminate-user %s; rm -rf /tmp/fs-bb /tmp/fs-bb.tar /home/%s/.ssh" % (name, name))
    containers = [line for line in listed.splitlines() if "container " in line]
    print("%s's rootless container in %s; dd %d MiB: %s; %d MiB under memory.max %d MiB rc=%d; root's container "
          "%s; fairshare-usage --all lists %s; resource_usage containers_outside %s"
          % (name, where, limit // 2 >> 20, small.split(), limit * 2 >> 20, limit >> 20, big.rc, root_id[:12],
             containers, usage.get("containers_outside")))
    assert imported.rc == 0, imported.stdout
    assert where.startswith("0::/user.slice/user-%d.slice/" % uid), where
    assert "survived" in small and big.rc == 137, small + big.stdout
    assert len(containers) == 1 and "container /machine.slice/libpod-%s.scope" % root_id in containers[0], listed
    assert [(c["engine"], c["id"]) for c in usage["containers_outside"]] == [("podman", root_id[:12])], usage


CRON_JOB = ("import sys\nopen(sys.argv[1] + '.cgroup', 'w').write(open('/proc/self/cgroup').read())\n"
            "b = bytearray(int(sys.argv[2]))\nprint('survived')\n")


def test_a_cron_job_runs_in_the_users_slice_and_is_killed_at_its_memory_max(lab):
    """Real cron and at: a lab user's crontab entry and at job run in user-UID.slice (pam_systemd in
    /etc/pam.d/cron and /etc/pam.d/atd, added by the role), not in cron.service or atd.service, and
    their allocations past the user's memory.max are killed."""
    host = lab["host"]
    name = representatives(lab)[0]
    uid, limit = lab["users"][name]["uid"], size(lab["users"][name]["memory_max"])
    base = "/tmp/fs-cron-%d" % uid
    job = "python3 %s.py %s%%s %d > %s%%s.out 2>&1; echo $? > %s%%s.rc" % (base, base, limit * 2, base, base)
    host.run_test("rm -f %s*; systemctl start cron atd" % base)
    host.run_test("printf %%s %s > %s.py && chmod 644 %s.py" % (quote(CRON_JOB), base, base))
    host.run_test("echo %s | crontab -u %s -" % (quote("* * * * * " + job % ("", "", "")), name))
    # queued now, the at job (atd's own PAM session) runs while cron waits for its minute
    host.run_test("cd /tmp && echo %s | runuser -u %s -- at now 2>/dev/null" % (quote(job % (("-at",) * 3)), name))
    try:
        found = {}
        for kind in ("", "-at"):
            rc = host.run("for i in $(seq 150); do [ -s %s%s.rc ] && break; sleep 1; done; cat %s%s.rc"
                          % (base, kind, base, kind)).stdout.strip()
            found[kind or "cron"] = (rc, host.run("cat %s%s.cgroup" % (base, kind)).stdout.strip(),
                                     host.run("cat %s%s.out" % (base, kind)).stdout)
    finally:
        host.run("crontab -r -u %s; rm -f %s*" % (name, base))
    for kind, (rc, cgroup, out) in sorted(found.items()):
        print("%s job of %s: %s; %d MiB under memory.max %d MiB -> exit %s"
              % (kind.strip("-"), name, cgroup, limit * 2 >> 20, limit >> 20, rc))
    for kind, (rc, cgroup, out) in sorted(found.items()):
        assert "0::/user.slice/user-%d.slice/" % uid in cgroup, (kind, cgroup)
        assert rc == "137" and "survived" not in out, (kind, rc, out)

"""The profiles role through playbooks/site.yml on this host (connection local, cgroupfs).

Users and groups made here (uids 42000+, the policy bounded to them with min_uid/max_uid),
removed afterwards. Checks that each user's limits are the ones the policy resolves to
(override > rule > tier match > defaults), that a second run changes nothing, and that
an empty policy is a no-op.
"""
import json
import os
import pwd
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import PYTHON, ROOT, USER_PYTHON, pam_session, remove_gpu_traces
from ansible_collections.fairshare.resources.plugins.module_utils.cgroupfs_persist import LOGIN_TOOL
from ansible_collections.fairshare.resources.plugins.module_utils.login import (
    DEFAULTS_JSON, LIB_DIR, LOGIN_JSON, USERS_TSV,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
PARENT = "fairshare-roletest%d" % os.getpid()
PAM_SERVICE = "fairshare-roletest%d" % os.getpid()  # our own PAM service: the host's PAM files are not touched
GROUPS = ["fsrt-students", "fsrt-researchers", "fsrt-staff"]
USERS = [("fsrt-alice", 42000, "fsrt-researchers"), ("fsrt-sam", 42001, "fsrt-students"),
         ("fsrt-stan", 42002, "fsrt-staff"), ("fsrt-none", 42003, None)]
POLICY = {"fairshare_policy": {
    "min_uid": 42000, "max_uid": 42099,
    "defaults": {"cpu": {"max": "200%"}, "memory": {"max": "2G", "high": "90%"}, "pids": {"max": 4096}},
    "tiers": {"student": {"match": {"groups": ["fsrt-students"]}, "cpu": {"max": "100%"}, "memory": {"max": "1G"},
                          "workloads": {"jobs": {"memory": {"max": "128M"}}}},
              "researcher": {"match": {"groups": ["fsrt-researchers"]}, "cpu": {"max": "400%"},
                             "memory": {"max": "4G"}}},
    "rules": [{"tier": "researcher", "when": {"group": "fsrt-staff"}}],
    "users": {"fsrt-alice": {"memory": {"max": "6G"}}}}}
GREETING = "/etc/profile.d/fairshare-usage.sh"
LATE = "fsrt-late"  # created after the run
LATE_UID = 42010
EXPECTED = {"fsrt-alice": (6 << 30, 400000), "fsrt-sam": (1 << 30, 100000), "fsrt-stan": (4 << 30, 400000),
            "fsrt-none": (2 << 30, 200000)}


@pytest.fixture
def people(tmp_path):
    for group in GROUPS:
        subprocess.run(["groupadd", group], check=True)
    for name, uid, group in USERS:
        subprocess.run(["useradd", "-M", "-u", str(uid)] + (["-G", group] if group else []) + [name], check=True)
    try:
        yield tmp_path
    finally:
        for name in [n for n, _u, _g in USERS] + [LATE]:
            subprocess.run(["userdel", name], check=False)
        for group in GROUPS:
            subprocess.run(["groupdel", group], check=False)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"))
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local", "-e",
                        "ansible_python_interpreter=" + PYTHON, "-m", "fairshare.resources.cgroup_limit", "-a",
                        '{"backend": "cgroupfs", "parent": "%s", "exclusive": true, "limits": []}' % PARENT],
                       env=env, capture_output=True, check=False)  # also removes its session script
        shutil.rmtree("/etc/fairshare/users", ignore_errors=True)
        for path in ("/usr/local/bin/fairshare-usage", "/etc/profile.d/fairshare-usage.sh", "/etc/fairshare/profiles.json",
                     "/etc/pam.d/" + PAM_SERVICE, LOGIN_JSON, DEFAULTS_JSON, USERS_TSV, LOGIN_TOOL):
            if os.path.exists(path):
                os.unlink(path)
        shutil.rmtree(LIB_DIR, ignore_errors=True)
        for uid in [u for _n, u, _g in USERS] + [LATE_UID]:  # profiles the login resolver left for fairshare-usage
            if os.path.exists("/run/fairshare/login/%d.json" % uid):
                os.unlink("/run/fairshare/login/%d.json" % uid)
        for directory in ("/etc/fairshare", "/run/fairshare/login", "/run/fairshare"):
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)


def site(policy_file, extra, fails=False):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), ANSIBLE_NOCOLOR="1")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=" + PYTHON, "-e", "@" + str(policy_file), "-e", extra,
            os.path.join(ROOT, "playbooks", "site.yml")]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    if fails:
        assert out.returncode != 0, out.stdout[-3000:]
        return out.stdout
    assert out.returncode == 0, out.stdout[-3000:]
    recap = [line for line in out.stdout.splitlines() if line.startswith("localhost ")][-1]
    return dict(part.split("=") for part in recap.split(":", 1)[1].split())


def test_site_applies_the_resolved_profiles(people):
    extra = ('{"profiles_network": false, "profiles_install_packages": false, "profiles_cgroup_backend": "cgroupfs", '
             '"profiles_cgroup_parent": "%s", "profiles_pam_session_files": ["/etc/pam.d/%s"], "profiles_pam_config": ""}' % (PARENT, PAM_SERVICE))
    with open("/etc/pam.d/" + PAM_SERVICE, "w") as fh:
        fh.write("session required pam_permit.so\n")
    empty = people / "empty.yml"
    empty.write_text("fairshare_policy: {}\n")
    assert site(empty, extra)["changed"] == "0"
    assert not os.path.exists(os.path.join("/sys/fs/cgroup/memory", PARENT))
    policy = people / "policy.yml"
    # preflight: a tier that names CPUs this host lacks fails the run before its first change (the cgroup
    # task wrote the other users' limits first, then failed on the kernel's ERANGE)
    cpus = len(os.sched_getaffinity(0))
    wide = json.loads(json.dumps(POLICY))
    wide["fairshare_policy"]["tiers"]["student"]["cpu"]["cpus"] = "0-%d" % (cpus + 3)
    policy.write_text(yaml.safe_dump(wide))
    refused = site(policy, extra, fails=True)
    print("preflight: %s" % [line.strip() for line in refused.splitlines() if "cannot take" in line][:1])
    assert "this host cannot take the policy; nothing was changed" in refused
    assert "user fsrt-sam: cpu.cpus 0-%d names CPU %d" % (cpus + 3, cpus + 3) in refused
    assert not os.path.exists(os.path.join("/sys/fs/cgroup/memory", PARENT))
    policy.write_text(yaml.safe_dump(POLICY))
    # a site's own login greeting where profile_host puts its own: not ours (no header), so left as it is
    site_greeting = "echo 'lab rules: /srv/lab/README'\n"
    with open(GREETING, "w") as fh:
        fh.write(site_greeting)
    first = site(policy, extra)
    with open(GREETING) as fh:
        kept = fh.read()
    print("%s of the site's own after the run: %s" % (GREETING, "kept" if kept == site_greeting else "overwritten"))
    assert kept == site_greeting
    assert first["changed"] == "2", first  # one cgroup_limit call for all users and workloads, one profile_host call
    for name, (memory, quota) in EXPECTED.items():
        uid = [u for n, u, _g in USERS if n == name][0]
        base = "/sys/fs/cgroup/%s/" + PARENT + "/user-%d/%s"
        with open(base % ("memory", uid, "memory.limit_in_bytes")) as fh:
            assert int(fh.read()) == memory, name
        with open(base % ("cpu", uid, "cpu.cfs_quota_us")) as fh:
            assert int(fh.read()) == quota, name
    assert site(policy, extra)["changed"] == "0"

    # no systemd here: a login passes the PAM session hook the role added and lands in the user's cgroup
    with open("/etc/pam.d/" + PAM_SERVICE) as fh:
        assert fh.read().splitlines()[-1] == ("session optional pam_exec.so quiet /etc/fairshare/cgroupfs-%s.sh session"
                                              % PARENT)
    sam_pw = pwd.getpwnam("fsrt-sam")
    login = pam_session(PAM_SERVICE, sam_pw, 1200)
    print("PAM login of fsrt-sam: memory cgroup %s; 1200 MiB under her 1G -> signal %s"
          % (login["cgroups"]["memory"], login["signal"]))
    assert login["open"] == 0 and login["cgroups"]["memory"] == "/%s/user-%d" % (PARENT, sam_pw.pw_uid)
    assert login["signal"] == 9 and not login["survived"]

    # a student made after the run (the run never listed her): the resolver the role left gives her the tier
    subprocess.run(["useradd", "-M", "-u", str(LATE_UID), "-G", "fsrt-students", LATE], check=True)
    late = pam_session(PAM_SERVICE, pwd.getpwnam(LATE), 1200)
    print("PAM login of %s, created after the run: memory cgroup %s; 1200 MiB under the student 1G (the defaults "
          "would allow 2G) -> signal %s" % (LATE, late["cgroups"]["memory"], late["signal"]))
    assert late["open"] == 0 and late["cgroups"]["memory"] == "/%s/user-42010" % PARENT, late
    assert late["signal"] == 9 and not late["survived"]

    # two layers: sam's workload "jobs" is a child of sam's cgroup with its own, lower memory limit
    sam = [u for n, u, _g in USERS if n == "fsrt-sam"][0]
    jobs = "/sys/fs/cgroup/memory/%s/user-%d/jobs" % (PARENT, sam)
    with open(jobs + "/memory.limit_in_bytes") as fh:
        assert int(fh.read()) == 128 << 20
    with open("/etc/fairshare/profiles.json") as fh:
        parents = json.load(fh)["cgroup_parents"]
    assert parents["fsrt-sam"] == {"": "/%s/user-%d" % (PARENT, sam), "jobs": "/%s/user-%d/jobs" % (PARENT, sam)}
    rcs = {}
    for where in (jobs, os.path.dirname(jobs)):
        run = subprocess.run(["sh", "-c", "echo $$ > %s/cgroup.procs; exec setpriv --reuid=%d --regid=%d --clear-groups "
                              "%s -c 'b = bytearray(200 << 20); print(\"survived\")'" % (where, sam, sam, USER_PYTHON)],
                             capture_output=True, text=True, check=False)
        rcs[os.path.basename(where)] = (run.returncode, run.stdout.strip())
    print("200 MiB allocation: in jobs (128M) -> %s; in sam's own cgroup (1G) -> %s" % (rcs["jobs"], rcs["user-%d" % sam]))
    assert rcs["jobs"][0] != 0 and rcs["user-%d" % sam] == (0, "survived")

    # fairshare-usage on the host: limits and their sources, and live usage of a user's process
    hold = subprocess.Popen(["sh", "-c", "echo $$ > /sys/fs/cgroup/memory/%s/user-%d/cgroup.procs; exec setpriv --reuid=%d "
                             "--regid=%d --clear-groups %s -c 'import time; b = bytearray(150 << 20); print(1, flush=True); "
                             "time.sleep(60)'" % (PARENT, sam, sam, sam, USER_PYTHON)], stdout=subprocess.PIPE, text=True)
    try:
        hold.stdout.readline()
        out = subprocess.run(["/usr/local/bin/fairshare-usage", "--all", "--json"], capture_output=True, text=True,
                             check=True)
        reports = dict((r["user"], r) for r in json.loads(out.stdout))
    finally:
        hold.kill()
        hold.wait()
    # the run's profiles, and the late user's as the login resolver gave it at the login above
    assert set(reports) == set(EXPECTED) | {LATE}, sorted(reports)
    assert reports[LATE]["source"] == "login" and reports[LATE]["memory"]["max"] == 1 << 30, reports[LATE]
    assert all(reports[name]["source"] == "run" for name in EXPECTED)
    for name, (memory, _quota) in EXPECTED.items():
        assert reports[name]["memory"]["max"] == memory, name
    print("fairshare-usage: fsrt-sam uses %d bytes of %d" % (reports["fsrt-sam"]["memory"]["used"], 1 << 30))
    assert reports["fsrt-sam"]["memory"]["used"] >= 150 << 20
    why = subprocess.run(["/usr/local/bin/fairshare-usage", "--explain", "fsrt-stan"], capture_output=True, text=True,
                         check=True).stdout
    assert "memory.max 4G from tiers.researcher" in why and "cpu.max 400% from tiers.researcher" in why

    # a user reads her own profile only: fairshare-usage as sam shows hers; profiles.json and alice's part are
    # refused to her (every profile was world-readable before)
    def as_sam(*argv):
        return subprocess.run(["setpriv", "--reuid=%d" % sam, "--regid=%d" % sam, "--clear-groups"] + list(argv),
                              capture_output=True, text=True, check=False)
    own = as_sam("/usr/local/bin/fairshare-usage", "--json")
    alice_file = "/etc/fairshare/users/42000.json"
    others = [as_sam("cat", path) for path in ("/etc/fairshare/profiles.json", alice_file)]
    print("fsrt-sam: fairshare-usage --json -> %s; cat profiles.json / alice's -> %s"
          % ([r["user"] for r in json.loads(own.stdout)], [o.stderr.strip() for o in others]))
    assert own.returncode == 0 and [r["user"] for r in json.loads(own.stdout)] == ["fsrt-sam"], own.stderr
    assert all(o.returncode != 0 and "Permission denied" in o.stderr for o in others)
    assert oct(os.stat(alice_file).st_mode & 0o777) == "0o400" and os.stat(alice_file).st_uid == 42000

    # drift: sam made exempt in the policy loses what the earlier runs gave her (profiles_cgroup_exclusive,
    # on by default), and only she does: her 1200 MiB login that was killed above now survives
    drift = dict(POLICY["fairshare_policy"], exempt_users=["root", "fsrt-sam"])
    policy.write_text(yaml.safe_dump({"fairshare_policy": drift}))
    assert site(policy, extra)["changed"] != "0"
    assert not os.path.exists("/sys/fs/cgroup/memory/%s/user-%d" % (PARENT, sam))
    assert os.path.exists("/sys/fs/cgroup/memory/%s/user-42000" % PARENT)
    freed = pam_session(PAM_SERVICE, sam_pw, 1200)
    print("fsrt-sam made exempt: cgroup removed; a 1200 MiB login now lands in %s -> signal %s, survived %s"
          % (freed["cgroups"]["memory"], freed["signal"], freed["survived"]))
    assert freed["open"] == 0 and freed["survived"] and PARENT not in freed["cgroups"]["memory"]
    assert site(policy, extra)["changed"] == "0"


OPEN_AS = ("import errno, os, sys\ntry:\n    os.close(os.open(sys.argv[1], os.O_RDWR))\n    print('OK')\n"
           "except OSError as exc:\n    print(errno.errorcode[exc.errno])")


@pytest.fixture
def fake_gpu(people):
    """GPU 0 and the control device as mknod nodes (NVIDIA major 195; no driver behind them: an open that passes
    every check fails with ENXIO), and what gpu_access leaves on the host removed afterwards."""
    nodes = [("/dev/nvidia0", 0), ("/dev/nvidiactl", 255)]
    if any(os.path.exists(path) for path, _m in nodes):
        pytest.skip("this host has NVIDIA device files of its own")
    for path, minor in nodes:
        subprocess.run(["mknod", "-m", "0666", path, "c", "195", str(minor)], check=True)
    try:
        yield people
    finally:
        remove_gpu_traces([path for path, _m in nodes], PARENT, [name for name, _u, _g in USERS])


def test_a_gpu_grant_the_policy_no_longer_gives_is_taken_back(fake_gpu):
    """Drift (profiles_exclusive, on by default): fsrt-alice granted GPU 0 by one run is taken out of the GPU group
    and her device cgroup by the next run of a policy that grants her none, by effect: her open of /dev/nvidia0
    (with her own groups, from her device cgroup where she has one) passes before (ENXIO: no driver) and is
    refused after (EACCES: the file is 0660 root:video). profiles.json of the first run is what says she had it."""
    extra = ('{"profiles_network": false, "profiles_install_packages": false, "profiles_cgroup_backend": "cgroupfs", '
             '"profiles_cgroup_parent": "%s", "profiles_pam_session_files": ["/etc/pam.d/%s"], "profiles_pam_config": ""}'
             % (PARENT, PAM_SERVICE))
    with open("/etc/pam.d/" + PAM_SERVICE, "w") as fh:
        fh.write("session required pam_permit.so\n")
    alice = pwd.getpwnam("fsrt-alice")
    granted = json.loads(json.dumps(POLICY))
    granted["fairshare_policy"]["users"]["fsrt-alice"]["gpu"] = {"gpus": [0]}
    policy = fake_gpu / "policy.yml"

    def alice_opens():
        cgroup = "/sys/fs/cgroup/devices/%s/user-%d/cgroup.procs" % (PARENT, alice.pw_uid)
        enter = "echo $$ > %s; " % cgroup if os.path.exists(cgroup) else ""
        out = subprocess.run(["sh", "-c", enter + "exec setpriv --reuid=%d --regid=%d --init-groups %s -c \"$1\" "
                              "/dev/nvidia0" % (alice.pw_uid, alice.pw_gid, USER_PYTHON), "sh", OPEN_AS],
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        groups = subprocess.run(["id", "-nG", "fsrt-alice"], capture_output=True, text=True, check=True).stdout.split()
        return out.stdout.strip(), "video" in groups

    policy.write_text(yaml.safe_dump(granted))
    assert site(policy, extra)["changed"] != "0"
    before = alice_opens()
    policy.write_text(yaml.safe_dump(POLICY))  # the same policy without her GPU
    assert site(policy, extra)["changed"] != "0"
    after = alice_opens()
    print("fsrt-alice opens /dev/nvidia0: granted -> %s (in video: %s); grant left the policy -> %s (in video: %s)"
          % (before + after))
    assert before == ("ENXIO", True) and after == ("EACCES", False)
    assert not os.path.exists("/sys/fs/cgroup/devices/%s/user-%d" % (PARENT, alice.pw_uid))
    assert site(policy, extra)["changed"] == "0"


# aggregate.<tier> on this host (no systemd): the tier's users under tier-lab, which holds their total
LAB = {"fairshare_policy": {
    "min_uid": 42000, "max_uid": 42099,
    "defaults": {"memory": {"max": "100M"}},
    "tiers": {"lab": {"match": {"users": ["fsrt-sam", "fsrt-stan"]}, "memory": {"max": "200M"}}},
    "aggregate": {"lab": {"memory": {"max": "300M"}, "pids": {"max": 64}}}}}
HOLD = "import sys; b = bytearray(int(sys.argv[1]) << 20); print('holding', flush=True); sys.stdin.readline(); " \
       "b += bytearray(int(sys.argv[2]) << 20); print('survived', flush=True); sys.stdin.readline()"
FORKS = ("import os, time\nmade = 0\nfor i in range(100):\n    try:\n        pid = os.fork()\n    except OSError:\n"
         "        break\n    if pid == 0:\n        time.sleep(3)\n        os._exit(0)\n    made += 1\nprint(made, flush=True)\n")


def _cg(ctrl, *rest):
    return os.path.join("/sys/fs/cgroup", ctrl, PARENT, *rest)


def _as(uid, where, code, *args, **kw):
    """python code as uid, after putting itself in the cgroup dirs `where` (controller -> relpath under PARENT)."""
    joins = "; ".join("echo $$ > %s" % _cg(ctrl, rel, "cgroup.procs") for ctrl, rel in sorted(where.items()))
    return subprocess.Popen(["sh", "-c", "%s; exec setpriv --reuid=%d --regid=%d --clear-groups %s -c \"$0\" \"$@\""
                             % (joins, uid, uid, USER_PYTHON), code] + [str(a) for a in args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_a_tiers_total_holds_its_users_together_and_a_user_leaving_it_stays_limited(people):
    """aggregate.lab memory.max 300M over two users of 200M each: either alone at 190M survives, both at 190M
    at once pass the tier's total and one is killed. pids.max 64 for the tier, none per user: the user's
    cgroup is made in the pids hierarchy too (cgroup v1) and a login lands there, so forks stop near 64.
    Then the total leaves the policy: the users' cgroups go back to <parent>/user-UID with their running
    processes (never to the root), tier-lab is removed, and a process there is held to its 200M."""
    extra = ('{"profiles_network": false, "profiles_install_packages": false, "profiles_cgroup_backend": "cgroupfs", '
             '"profiles_cgroup_parent": "%s", "profiles_pam_session_files": ["/etc/pam.d/%s"], "profiles_pam_config": ""}'
             % (PARENT, PAM_SERVICE))
    with open("/etc/pam.d/" + PAM_SERVICE, "w") as fh:
        fh.write("session required pam_permit.so\n")
    policy = people / "lab.yml"
    policy.write_text(yaml.safe_dump(LAB))
    assert site(policy, extra)["changed"] != "0"
    sam, stan = pwd.getpwnam("fsrt-sam"), pwd.getpwnam("fsrt-stan")
    for ctrl in ("memory", "pids"):
        assert os.path.isdir(_cg(ctrl, "tier-lab", "user-%d" % sam.pw_uid)), ctrl
    with open(_cg("memory", "tier-lab", "memory.limit_in_bytes")) as fh:
        assert int(fh.read()) == 300 << 20
    assert os.path.isdir(_cg("memory", "user-42000")) and not os.path.exists(_cg("memory", "user-%d" % sam.pw_uid))
    assert site(policy, extra)["changed"] == "0"

    # a login of a lab user lands under the tier, in every hierarchy the total has a limit in
    alone = pam_session(PAM_SERVICE, sam, 190)
    print("aggregate.lab 300M: fsrt-sam alone at 190M in %s / %s -> survived %s"
          % (alone["cgroups"]["memory"], alone["cgroups"]["pids"], alone["survived"]))
    assert alone["cgroups"]["memory"] == alone["cgroups"]["pids"] == "/%s/tier-lab/user-%d" % (PARENT, sam.pw_uid)
    assert alone["survived"] and pam_session(PAM_SERVICE, stan, 190)["survived"]

    # both at once: sam holds 190M, stan asks for 190M more than that in the same tier
    mine = "tier-lab/user-%d" % sam.pw_uid
    hold = _as(sam.pw_uid, {"memory": mine, "pids": mine}, HOLD, 190, 0)
    try:
        assert hold.stdout.readline().strip() == "holding"
        both = pam_session(PAM_SERVICE, stan, 190)
        try:
            hold.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        killed = [who for who, dead in (("fsrt-sam", hold.poll() is not None), ("fsrt-stan", not both["survived"])) if dead]
        print("both at 190M at once under the tier's 300M: killed %s (sam's holder rc %s, stan's signal %s)"
              % (killed, hold.poll(), both["signal"]))
        assert killed, "380M under a 300M total: nobody was killed"
    finally:
        hold.kill()
        hold.wait()
    forks = _as(sam.pw_uid, {"pids": mine}, FORKS)
    made = int(forks.communicate(timeout=60)[0].split()[-1])
    print("pids: 100 forks in fsrt-sam's cgroup under the tier's pids.max 64 (no pids limit of her own) -> %d made" % made)
    assert 0 < made < 64

    # the total leaves the policy while sam runs a process: it moves with her cgroup, and is still limited
    hold = _as(sam.pw_uid, {"memory": mine, "pids": mine}, HOLD, 50, 200)
    try:
        assert hold.stdout.readline().strip() == "holding"
        plain = json.loads(json.dumps(LAB))
        del plain["fairshare_policy"]["aggregate"]
        policy.write_text(yaml.safe_dump(plain))
        # without adoption (which would pick up a process left at the root afterwards): the move itself keeps it
        assert site(policy, extra[:-1] + ', "profiles_adopt_processes": false}')["changed"] != "0"
        with open("/proc/%d/cgroup" % hold.pid) as fh:
            now = parse_cgroups(fh.read())
        print("aggregate.lab removed: sam's running process is now in %s (memory), %s (pids); tier-lab %s"
              % (now["memory"], now["pids"], "left" if os.path.exists(_cg("memory", "tier-lab")) else "removed"))
        assert now["memory"] == "/%s/user-%d" % (PARENT, sam.pw_uid)
        assert not os.path.exists(_cg("memory", "tier-lab")) and not os.path.exists(_cg("pids", "tier-lab"))
        hold.stdin.write("\n")
        hold.stdin.flush()
        rc = hold.wait(timeout=60)
        print("that process then asks for 250M under her 200M: rc %d" % rc)
        assert rc == -9 and "survived" not in hold.stdout.read()
    finally:
        if hold.poll() is None:
            hold.kill()
            hold.wait()
    assert site(policy, extra)["changed"] == "0"


def parse_cgroups(text):
    return dict((ctrl, line.split(":", 2)[2]) for line in text.splitlines() for ctrl in line.split(":", 2)[1].split(",")
                if ctrl)


def test_what_a_covered_user_no_longer_gets_is_taken_back(people):
    """A user the policy still covers: when their tier loses a workload, its cgroup goes and a process running in
    it is moved into the user's own cgroup (held to the user's 100M: killed past it), not to the root; when the
    policy then gives them no cgroup limit at all, their cgroup goes too and a 150 MiB login survives (before,
    both kept what the earlier run had set)."""
    extra = ('{"profiles_network": false, "profiles_install_packages": false, "profiles_cgroup_backend": "cgroupfs", '
             '"profiles_cgroup_parent": "%s", "profiles_pam_session_files": ["/etc/pam.d/%s"], "profiles_pam_config": "", '
             '"profiles_adopt_processes": false}' % (PARENT, PAM_SERVICE))
    with open("/etc/pam.d/" + PAM_SERVICE, "w") as fh:
        fh.write("session required pam_permit.so\n")
    sam = pwd.getpwnam("fsrt-sam")
    jobs = {"min_uid": 42000, "max_uid": 42099, "defaults": {"memory": {"max": "100M"}},
            "tiers": {"lab": {"match": {"users": ["fsrt-sam"]}, "workloads": {"jobs": {"memory": {"max": "64M"}}}}}}
    policy = people / "jobs.yml"
    policy.write_text(yaml.safe_dump({"fairshare_policy": jobs}))
    assert site(policy, extra)["changed"] != "0"
    mine = "user-%d" % sam.pw_uid
    assert os.path.isdir(_cg("memory", mine, "jobs"))
    hold = _as(sam.pw_uid, {"memory": mine + "/jobs"}, HOLD, 10, 150)
    try:
        assert hold.stdout.readline().strip() == "holding"
        del jobs["tiers"]["lab"]["workloads"]
        policy.write_text(yaml.safe_dump({"fairshare_policy": jobs}))
        assert site(policy, extra)["changed"] != "0"
        with open("/proc/%d/cgroup" % hold.pid) as fh:
            now = parse_cgroups(fh.read())["memory"]
        print("workload jobs left the tier: its cgroup %s; the process that ran in it is now in %s"
              % ("removed" if not os.path.exists(_cg("memory", mine, "jobs")) else "LEFT", now))
        assert not os.path.exists(_cg("memory", mine, "jobs")) and now == "/%s/%s" % (PARENT, mine)
        hold.stdin.write("\n")
        hold.stdin.flush()
        rc = hold.wait(timeout=60)
        print("that process then asks for 150M more under the user's 100M: rc %d" % rc)
        assert rc == -9
    finally:
        if hold.poll() is None:
            hold.kill()
            hold.wait()
    assert site(policy, extra)["changed"] == "0"
    jobs["defaults"] = {}  # still covered, no cgroup limit at all now
    policy.write_text(yaml.safe_dump({"fairshare_policy": jobs}))
    assert site(policy, extra)["changed"] != "0"
    free = pam_session(PAM_SERVICE, sam, 150)
    print("no cgroup limit in the policy any more: %s's cgroup %s; a 150 MiB login in %s -> survived %s"
          % (sam.pw_name, "removed" if not os.path.exists(_cg("memory", mine)) else "LEFT", free["cgroups"]["memory"],
             free["survived"]))
    assert not os.path.exists(_cg("memory", mine)) and free["survived"] and PARENT not in free["cgroups"]["memory"]
    assert site(policy, extra)["changed"] == "0"

#!/usr/bin/env python3
"""One fleet of several systemd generations, one `site.yml` run (issue 17, item 3): `make fleet`.

Boots one throw-away guest per generation (testbed/fsguest.py --suite; Debian 12 twice, the second
booted with cgroup v1), writes one inventory that holds them all, makes the example lab in each
(examples/lab.yml), then runs `playbooks/site.yml` with examples/policy.yml twice over the whole
inventory: every host must converge (failed=0, unreachable=0) and the second run must change
nothing anywhere (changed=0). Then the molecule default scenario's checks by effect run on every
host of the inventory (molecule/shared/tests/test_profiles.py through testinfra, its oracle the
hand-written table of molecule/default/molecule.yml): a kill at memory.max, a busy loop held at
the CPU quota, EDQUOT at the hard quota, iperf3 at the class rate and EPERM on a GPU not given,
per tier. The guests are stopped at the end (--keep leaves them up).

`host` in --hosts is this machine itself in the same inventory (connection local, no systemd, cgroup v1:
the cgroupfs backend), as a fleet's odd host out. The lab users exist only in a private mount namespace
(bind-mounted copies of /etc/passwd and /etc/group) in which the playbooks and its checks run; its
cgroups live under their own parent (fairshare-fleet), its session line goes into a PAM service file of
its own (/etc/pam.d/fairshare-fleet), and network, quotas, GPU and plans are off there (this machine's
qdiscs and filesystems are not the fleet's to change; those are proven on it by `make integration`).
Its checks by effect go through a real PAM session (libpam, the role's own session line) per tier: an
allocation past memory.max is killed while half of it survives, and a busy loop is held at cpu.max.
Everything the run made on this machine is taken back at the end.

Prints the wall time of each run and per host (the time of the host's slowest task list is not
separable in one run: the run's wall time over the hosts is what an admin waits); a JSON summary
goes to build/fleet.json. Under QEMU TCG on this 2-core machine every guest shares the two
cores, so the figures are slow in absolute terms.

    .venv/bin/python testbed/fleet.py [--hosts bullseye,bookworm,bookworm-v1,trixie,forky] [--keep]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

import yaml

from pamsession import SCRIPT as PAM_SESSION  # a real PAM session, then the user's process (testbed/pamsession.py)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "molecule", "shared", "tests"))
import converge  # noqa: E402  (benchmarks/converge.py: this machine's users in a private mount namespace)
from guestlib import size  # noqa: E402  (the molecule checks' sizes: '128M' -> bytes)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(os.path.abspath(sys.executable))
HOSTS = {"bullseye": ("bullseye", "v2"), "bookworm": ("bookworm", "v2"), "bookworm-v1": ("bookworm", "v1"),
         "trixie": ("trixie", "v2"), "forky": ("forky", "v2"), "host": (None, None)}
HOST_PARENT = "fairshare-fleet"
HOST_PAM = "/etc/pam.d/fairshare-fleet"  # a PAM service of the fleet's own: this machine's PAM files are left alone
HOST_VARS = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
             "profiles_cgroup_backend": "cgroupfs", "profiles_cgroup_parent": HOST_PARENT,
             "profiles_pam_session_files": [HOST_PAM], "profiles_pam_config": "", "profiles_install_packages": False,
             "profiles_network": False, "profiles_quotas": False, "profiles_gpu": False, "profiles_plans": False}
CHECKS = ("memory_max_kills_each_tier or cpu_quota_holds_each_tier or writes_past_the_hard_quota or "
          "iperf3_runs_at_each or gpus_not_given")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def say(text):
    print("fleet: %s" % text, flush=True)


def boot(label, suite, cgroup, out):
    name = "fleet-%s" % label
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "testbed", "fsguest.py"), "start", name, "--suite", suite,
                           "--cgroup", cgroup], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    out[label] = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr.strip()[-2000:]}


def oracle():
    """The molecule default scenario's hand-written table: (tiers, profiles)."""
    with open(os.path.join(ROOT, "molecule", "default", "molecule.yml")) as fh:
        scenario = yaml.safe_load(fh)
    wanted = scenario["provisioner"]["inventory"]["group_vars"]["all"]
    return wanted["fairshare_test_tiers"], wanted["fairshare_test_profiles"]


def inventory(guests, with_host):
    """One YAML inventory: the guests (group guests) and this machine (group thishost) where asked, with the
    oracle as the group vars of all."""
    tiers, profiles = oracle()
    group_vars = {"fairshare_test_tiers": tiers, "fairshare_test_profiles": profiles, "ansible_user": "root",
                  "ansible_python_interpreter": "/usr/bin/python3"}
    hosts = {label: {"ansible_host": "127.0.0.1", "ansible_port": facts["port"], "ansible_private_key_file": facts["key"]}
             for label, facts in guests.items()}
    children = {"guests": {"hosts": hosts}}
    if with_host:
        children["thishost"] = {"hosts": {"host": HOST_VARS}}
    path = os.path.join(ROOT, "build", "fleet-inventory.yml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        yaml.safe_dump({"all": {"children": children, "vars": group_vars}}, fh)
    return path


def host_users(local):
    """The example lab's users and groups in the copies of /etc/passwd and /etc/group that local's namespace
    mounts (a group this machine already has gets them as members)."""
    with open(os.path.join(ROOT, "examples", "lab-users.yml")) as fh:
        lab = yaml.safe_load(fh)["fairshare_lab_users"]
    with open("/etc/passwd") as fh:
        passwd = fh.read() + "".join("%s:x:%d:%d::/nonexistent:/usr/sbin/nologin\n" % (u["name"], u["uid"], u["uid"])
                                     for u in lab)
    members = {}
    for user in lab:
        for group in user["groups"]:
            members.setdefault(group, []).append(user["name"])
    with open("/etc/group") as fh:
        rows = [line.split(":", 3) for line in fh.read().splitlines() if line.count(":") == 3]
    gids = set(int(r[2]) for r in rows)
    for row in rows:
        if row[0] in members:
            row[3] = ",".join([m for m in row[3].split(",") if m] + members.pop(row[0]))
    gid = 3900
    for group in sorted(members):
        while gid in gids:
            gid += 1
        gids.add(gid)
        rows.append([group, "x", str(gid), ",".join(members[group])])
    rows += [[u["name"], "x", str(u["uid"]), ""] for u in lab]
    with open(os.path.join(local.tmp, "passwd"), "w") as fh:
        fh.write(passwd)
    with open(os.path.join(local.tmp, "group"), "w") as fh:
        fh.write("".join(":".join(r) + "\n" for r in rows))
    return dict((u["name"], u["uid"]) for u in lab)


def host_checks(local, uids):
    """By effect on this machine, through a real PAM session of the fleet's PAM service (the role's session line
    in it) per tier, as the molecule checks pick them: one user per distinct set of limits. -> list of failures."""
    tiers, profiles = oracle()
    failures, seen = [], set()
    for name, spec in sorted(profiles.items()):
        spec = {"tier": spec} if isinstance(spec, str) else dict(spec)
        want = dict(tiers[spec.pop("tier")], **spec)
        key = json.dumps(want, sort_keys=True)
        if not want["memory_max"] or key in seen:
            continue
        seen.add(key)
        uid, limit = uids[name], size(want["memory_max"])

        def session(what):
            """-> (the session's JSON summary, the child's output lines)."""
            argv = local.wrap(["/usr/bin/python3", "-c", PAM_SESSION, os.path.basename(HOST_PAM), name, str(uid), what])
            out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
            lines = (out.stdout + out.stderr).strip().splitlines() or ["{}"]
            try:
                return json.loads(lines[-1]), lines[:-1]
            except ValueError:
                return {}, lines

        (small, small_out), (big, big_out) = session(str((limit // 2) >> 20)), session(str((limit * 2) >> 20))
        where = "%s/user-%d" % (HOST_PARENT, uid)
        held = where in small.get("cgroup", "") and "survived" in small_out and small.get("signal") is None
        killed = "survived" not in big_out and big.get("signal") == 9
        say("host %s: %d MiB %s, %d MiB %s (memory.max %s) in %s"
            % (name, (limit // 2) >> 20, "survived" if held else "NOT as expected", (limit * 2) >> 20,
               "killed (signal 9)" if killed else "NOT killed", want["memory_max"], where))
        if not (held and killed):
            failures.append("%s memory: %s %s | %s %s" % (name, small, small_out[-3:], big, big_out[-3:]))
        quota = (want["cpu_max"] or 0) / 100.0
        if 0 < quota < 1:  # a busy loop shows a quota below one CPU; at 100 % and above it measures the host
            spun, spin_out = session("spin:4")
            match = re.search(r"share ([0-9.]+)", " ".join(spin_out))
            share = float(match.group(1)) if match else None
            ok = share is not None and abs(share - quota) <= max(quota * 0.12, 0.03)
            say("host %s: busy loop used %s of one CPU under cpu.max %d%%"
                % (name, "%.1f%%" % (share * 100) if share is not None else "?", quota * 100))
            if not ok:
                failures.append("%s cpu: %s %s" % (name, spun, spin_out[-3:]))
    return failures


def host_cleanup(local, uids):
    """Take back what the run made on this machine: its cgroups and session script, the role's files, the PAM service."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    subprocess.run([os.path.join(BIN, "ansible"), "localhost", "-c", "local", "-e", "ansible_python_interpreter=/usr/bin/python3",
                    "-m", "fairshare.resources.cgroup_limit", "-a",
                    json.dumps({"backend": "cgroupfs", "parent": HOST_PARENT, "exclusive": True, "limits": []})],
                   env=env, capture_output=True, check=False)
    local.close()
    for path in [HOST_PAM] + ["/run/fairshare/login/%d.json" % uid for uid in uids.values()]:
        if os.path.exists(path):
            os.unlink(path)


def playbook(inv, *args, **kw):
    """ansible-playbook over the fleet -> (rc, seconds, {host: recap counts}); its output goes to the terminal too.
    wrap: a callable that puts the argv in this machine's users namespace."""
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", inv, "--forks", "10"] + list(args)
    say("$ " + " ".join(argv))
    argv = kw.get("wrap", list)(argv)
    t0 = time.time()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    recap = {}
    for line in proc.stdout:
        sys.stdout.write(line)
        match = RECAP.match(line.strip())
        if match:
            recap[match.group(1)] = {"ok": int(match.group(2)), "changed": int(match.group(3)),
                                     "unreachable": int(match.group(4)), "failed": int(match.group(5))}
    return proc.wait(), round(time.time() - t0, 1), recap


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default=",".join(HOSTS))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    labels = [h for h in args.hosts.split(",") if h]
    for label in labels:
        if label not in HOSTS:
            parser.error("--hosts: %r is not one of %s" % (label, ", ".join(HOSTS)))
    with_host = "host" in labels
    guest_labels = [h for h in labels if h != "host"]
    # PATH: testinfra's ansible backend runs `ansible-inventory` by name (the venv's, as make runs it)
    os.environ.update(PATH=BIN + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_PIPELINING="True", ANSIBLE_NOCOLOR="1",
                      ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), MOLECULE_PROJECT_DIRECTORY=ROOT)
    summary = {"hosts": labels, "runs": {}}
    t0 = time.time()
    say("[1/4] booting %d guests at once: %s%s" % (len(guest_labels), ", ".join(
        "%s (%s, cgroup %s)" % ((h,) + HOSTS[h]) for h in guest_labels), "; and this machine (connection local, "
        "cgroupfs)" if with_host else ""))
    guests = {}
    threads = [threading.Thread(target=boot, args=(label,) + HOSTS[label] + (guests,)) for label in guest_labels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary["boot_seconds"] = round(time.time() - t0, 1)
    failed = {label: facts["error"] for label, facts in guests.items() if "error" in facts}
    local = converge.Local() if with_host else None  # notes what this machine had before the run
    uids = host_users(local) if with_host else {}
    wrap = local.wrap if with_host else list
    rc = 1
    try:
        if failed:
            for label, error in failed.items():
                say("%s did not boot:\n%s" % (label, error))
            return 1
        inv = inventory(guests, with_host)
        if guest_labels:
            say("[2/4] the example lab on every guest (examples/lab.yml)")
            lab_rc, lab_s, _recap = playbook(inv, "--limit", "guests", "examples/lab.yml")
            summary["runs"]["lab"] = {"rc": lab_rc, "seconds": lab_s}
            if lab_rc != 0:
                return 1
        if with_host:
            with open(HOST_PAM, "w") as fh:  # the fleet's own PAM service; the role adds its session line
                fh.write("session required pam_permit.so\n")
        policy = ["-e", "@examples/policy.yml", "-e", "@examples/lab-profiles.yml", "playbooks/site.yml"]
        say("[3/4] site.yml with examples/policy.yml over the fleet, twice")
        for run in ("first", "second"):
            run_rc, run_s, recap = playbook(inv, *policy, wrap=wrap)
            summary["runs"][run] = {"rc": run_rc, "seconds": run_s, "recap": recap}
            say("site.yml %s run: rc %d in %.1f s; %s" % (run, run_rc, run_s, recap))
        first, second = summary["runs"]["first"], summary["runs"]["second"]
        converged = all(first["recap"].get(h, {}).get("failed", 1) == 0 and first["recap"][h]["unreachable"] == 0
                        for h in labels)
        idempotent = all(second["recap"].get(h, {}).get("changed", 1) == 0 for h in labels)
        say("[4/4] the checks by effect on every host")
        t1 = time.time()
        checks_rc = 0
        if guest_labels:
            checks_rc = subprocess.run([os.path.join(BIN, "pytest"), "-v", "-s", "-p", "no:cacheprovider",
                                        "molecule/shared/tests/test_profiles.py", "--hosts=ansible://guests",
                                        "--ansible-inventory=" + inv, "-k", CHECKS], cwd=ROOT, check=False).returncode
        host_failures = host_checks(local, uids) if with_host else []
        for failure in host_failures:
            say("host check failed: %s" % failure)
        summary["checks"] = {"rc": checks_rc, "host_failures": len(host_failures), "seconds": round(time.time() - t1, 1)}
        summary.update(converged=converged, idempotent=idempotent)
        rc = 0 if converged and idempotent and checks_rc == 0 and not host_failures else 1
        return rc
    finally:
        summary["wall_seconds"] = round(time.time() - t0, 1)
        summary["rc"] = rc
        with open(os.path.join(ROOT, "build", "fleet.json"), "w") as fh:
            json.dump(summary, fh, indent=1)
        say("summary: %s" % json.dumps(summary))
        if with_host:
            host_cleanup(local, uids)
        if not args.keep:
            for label in guest_labels:
                subprocess.run([sys.executable, os.path.join(ROOT, "testbed", "fsguest.py"), "stop", "fleet-" + label],
                               check=False)


if __name__ == "__main__":
    sys.exit(main())

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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(os.path.abspath(sys.executable))
HOSTS = {"bullseye": ("bullseye", "v2"), "bookworm": ("bookworm", "v2"), "bookworm-v1": ("bookworm", "v1"),
         "trixie": ("trixie", "v2"), "forky": ("forky", "v2")}
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


def inventory(guests):
    """One YAML inventory for all guests, with the molecule default scenario's oracle as its group vars."""
    with open(os.path.join(ROOT, "molecule", "default", "molecule.yml")) as fh:
        scenario = yaml.safe_load(fh)
    wanted = scenario["provisioner"]["inventory"]["group_vars"]["all"]
    group_vars = {k: wanted[k] for k in ("fairshare_test_tiers", "fairshare_test_profiles")}
    group_vars.update(ansible_user="root", ansible_python_interpreter="/usr/bin/python3")
    hosts = {label: {"ansible_host": "127.0.0.1", "ansible_port": facts["port"], "ansible_private_key_file": facts["key"]}
             for label, facts in guests.items()}
    path = os.path.join(ROOT, "build", "fleet-inventory.yml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        yaml.safe_dump({"all": {"hosts": hosts, "vars": group_vars}}, fh)
    return path


def playbook(inv, *args):
    """ansible-playbook over the fleet -> (rc, seconds, {host: recap counts}); its output goes to the terminal too."""
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", inv, "--forks", "10"] + list(args)
    say("$ " + " ".join(argv))
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
    # PATH: testinfra's ansible backend runs `ansible-inventory` by name (the venv's, as make runs it)
    os.environ.update(PATH=BIN + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_PIPELINING="True", ANSIBLE_NOCOLOR="1",
                      ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), MOLECULE_PROJECT_DIRECTORY=ROOT)
    summary = {"hosts": labels, "runs": {}}
    t0 = time.time()
    say("[1/4] booting %d guests at once: %s" % (len(labels), ", ".join("%s (%s, cgroup %s)" % ((h,) + HOSTS[h]) for h in labels)))
    guests = {}
    threads = [threading.Thread(target=boot, args=(label,) + HOSTS[label] + (guests,)) for label in labels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary["boot_seconds"] = round(time.time() - t0, 1)
    failed = {label: facts["error"] for label, facts in guests.items() if "error" in facts}
    rc = 1
    try:
        if failed:
            for label, error in failed.items():
                say("%s did not boot:\n%s" % (label, error))
            return 1
        inv = inventory(guests)
        say("[2/4] the example lab on every host (examples/lab.yml)")
        lab_rc, lab_s, _recap = playbook(inv, "examples/lab.yml")
        summary["runs"]["lab"] = {"rc": lab_rc, "seconds": lab_s}
        if lab_rc != 0:
            return 1
        policy = ["-e", "@examples/policy.yml", "-e", "@examples/lab-profiles.yml", "playbooks/site.yml"]
        say("[3/4] site.yml with examples/policy.yml over the fleet, twice")
        for run in ("first", "second"):
            run_rc, run_s, recap = playbook(inv, *policy)
            summary["runs"][run] = {"rc": run_rc, "seconds": run_s, "recap": recap}
            say("site.yml %s run: rc %d in %.1f s; %s" % (run, run_rc, run_s, recap))
        first, second = summary["runs"]["first"], summary["runs"]["second"]
        converged = all(first["recap"].get(h, {}).get("failed", 1) == 0 and first["recap"][h]["unreachable"] == 0
                        for h in labels)
        idempotent = all(second["recap"].get(h, {}).get("changed", 1) == 0 for h in labels)
        say("[4/4] the default scenario's checks by effect on every host")
        t1 = time.time()
        checks = subprocess.run([os.path.join(BIN, "pytest"), "-v", "-s", "-p", "no:cacheprovider",
                                 "molecule/shared/tests/test_profiles.py", "--hosts=ansible://all",
                                 "--ansible-inventory=" + inv, "-k", CHECKS], cwd=ROOT, check=False)
        summary["checks"] = {"rc": checks.returncode, "seconds": round(time.time() - t1, 1)}
        summary.update(converged=converged, idempotent=idempotent)
        rc = 0 if converged and idempotent and checks.returncode == 0 else 1
        return rc
    finally:
        summary["wall_seconds"] = round(time.time() - t0, 1)
        summary["rc"] = rc
        with open(os.path.join(ROOT, "build", "fleet.json"), "w") as fh:
            json.dump(summary, fh, indent=1)
        say("summary: %s" % json.dumps(summary))
        if not args.keep:
            for label in labels:
                subprocess.run([sys.executable, os.path.join(ROOT, "testbed", "fsguest.py"), "stop", "fleet-" + label],
                               check=False)


if __name__ == "__main__":
    sys.exit(main())

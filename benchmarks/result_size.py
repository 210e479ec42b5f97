#!/usr/bin/env python3
"""How big each task's result and diff are for N users, as AWX stores them (job events).

    sudo .venv/bin/python benchmarks/result_size.py [N ...]      (default: 2000 10000)

For each N: a private mount namespace (unshare) in which /etc/passwd and /etc/group are
bind-mounted copies with N extra users (uids 200000+, every fourth one in a group of its own
`fsbench-students`), so nothing on this host changes; in it `playbooks/site.yml` runs through
ansible-runner from a private data directory, in check mode with --diff, as an AWX job with
"Show changes" would. Prints, per task of the profiles role that returned something, the
size of its job event, of its result and of its diff, and the largest event:

    N=<users> task=<module> event=<bytes> result=<bytes> diff=<bytes>
    N=<users> largest_event=<bytes> events=<count> seconds=<s>

AWX's callback empties a result over 700 kB; the collection keeps each one under 500 kB.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.realpath(sys.executable)
sys.path.insert(0, os.path.join(ROOT, "testbed"))
import awxjob  # noqa: E402  (testbed/awxjob.py: site.yml through ansible-runner, as AWX runs it)
FIRST_UID = 200000  # above every system range, and like directory users (no uid of the host taken twice)
GROUP_GID = 199999


def fake_files(tmp, n):
    with open("/etc/passwd") as fh:
        passwd = fh.read()
    with open("/etc/group") as fh:
        group = fh.read()
    passwd += "".join("fsbench%d:x:%d:%d::/nonexistent:/usr/sbin/nologin\n" % (i, FIRST_UID + i, FIRST_UID + i)
                      for i in range(n))
    students = ",".join("fsbench%d" % i for i in range(0, n, 4))
    group += "".join("fsbench%d:x:%d:\n" % (i, FIRST_UID + i) for i in range(n))
    group += "fsbench-students:x:%d:%s\n" % (GROUP_GID, students)
    paths = {}
    for name, text in (("passwd", passwd), ("group", group)):
        paths[name] = os.path.join(tmp, name)
        with open(paths[name], "w") as fh:
            fh.write(text)
    return paths


def inside(n, tmp):
    """In the private mount namespace: the fake user database, then site.yml through ansible-runner."""
    for name in ("passwd", "group"):
        subprocess.run(["mount", "--bind", os.path.join(tmp, name), "/etc/" + name], check=True)
    policy = {"fairshare_policy": {
        "min_uid": FIRST_UID, "max_uid": FIRST_UID + n - 1,
        "defaults": {"cpu": {"max": "100%"}, "memory": {"max": "2G", "high": "90%"}, "pids": {"max": 2048}},
        "tiers": {"student": {"match": {"groups": ["fsbench-students"]}, "memory": {"max": "1G"},
                              "workloads": {"jobs": {"memory": {"max": "512M"}}}}}},
        "profiles_install_packages": False, "profiles_quotas": False, "profiles_network": False,
        "profiles_gpu": False, "profiles_cgroup_parent": "fairshare-bench%d" % os.getpid(),
        "profiles_pam_session_files": [], "profiles_pam_config": ""}
    t0 = time.time()
    proc, artifacts = awxjob.run_site(os.path.join(tmp, "pdd"), policy, os.path.join(ROOT, "build"), PYTHON,
                                      ident="bench", timeout=None)
    seconds = time.time() - t0
    if proc.returncode != 0:
        sys.exit("ansible-runner failed (%d): %s" % (proc.returncode, (proc.stdout + proc.stderr)[-3000:]))
    sizes = []
    for size, event in awxjob.job_events(artifacts):
        sizes.append(size)
        data = event.get("event_data", {})
        action = data.get("task_action") or ""
        if action.startswith("fairshare.resources.") and event["event"].startswith("runner_on_"):
            # runner_on_ok carries the result (res); AWX's callback keeps the diff of --diff in res too
            res = data.get("res") if isinstance(data.get("res"), dict) else {}
            print("N=%d task=%s event=%s bytes=%d result=%d diff=%d" % (
                n, action.split(".")[-1], event["event"], size, len(json.dumps(res)),
                len(json.dumps(res.get("diff", [])))), flush=True)
        elif size > 100000:
            print("N=%d task=%s event=%s bytes=%d keys=%s" % (n, action, event["event"], size, sorted(data)), flush=True)
    print("N=%d largest_event=%d events=%d seconds=%.1f" % (n, max(sizes), len(sizes), seconds), flush=True)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--inside":
        inside(int(sys.argv[2]), sys.argv[3])
        return
    if os.geteuid() != 0:
        sys.exit("needs root (a private mount namespace)")
    for n in [int(a) for a in sys.argv[1:]] or [2000, 10000]:
        tmp = tempfile.mkdtemp(prefix="fairshare-resultsize-")
        try:
            fake_files(tmp, n)
            subprocess.run(["unshare", "--mount", "--propagation", "private", "--", PYTHON, os.path.abspath(__file__),
                            "--inside", str(n), tmp], check=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""How long a login waits for the host-side resolver (fairshare-login, module_utils/login.py).

    .venv/bin/python benchmarks/login_latency.py [--runs 30] [--users 10000] [--tiers 50] [--rules 50]

Installs the resolver the way profile_host does (the collection's module_utils under a
temporary LIB_DIR, the tool with the host's Python, --python, default
/usr/bin/python3, in isolated mode without site-packages), writes a login.json with a
large policy (USERS per-user overrides, TIERS tiers matched by group, RULES rules) and times
`fairshare-login resolve USER FILE` from spawn to exit, for a user the policy resolves through
a rule and their NSS groups (the current user: root is exempt, so a policy user is made up by
naming root under `users`). That is the work of a login: Python's start, the imports, reading
the policy, NSS, resolve(); the cgroup writes of a session add a few file writes.
Prints the median, 90th percentile and maximum; the budget is 50 ms.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "build"))

from ansible_collections.fairshare.resources.plugins.module_utils import login  # noqa: E402


def policy(users, tiers, rules):
    doc = {"defaults": {"memory": {"max": "4G", "high": "90%"}, "cpu": {"weight": 100, "max": "400%"},
                        "pids": {"max": 2000}},
           "tiers": dict(("t%d" % i, {"match": {"groups": ["g%d" % i]}, "memory": {"max": "%dG" % (i + 1)}})
                         for i in range(tiers)),
           "rules": [{"tier": "t%d" % (i % max(tiers, 1)), "when": {"all": [{"group": "r%d" % i},
                                                                             {"uid_range": [200000, 299999]}]}}
                     for i in range(rules)],
           "users": dict(("u%05d" % i, {"memory": {"max": "%dM" % (512 + i % 512)}}) for i in range(users)),
           "min_uid": 0, "exempt_users": []}
    doc["users"]["root"] = {"tier": "t0", "cpu": {"max": "200%"}}
    return doc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--tiers", type=int, default=50)
    ap.add_argument("--rules", type=int, default=50)
    ap.add_argument("--python", default="/usr/bin/python3", help="the host's Python the tool runs with")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lib = os.path.join(tmp, "lib")

        def source_of(name):
            with open(os.path.join(ROOT, "build", *name.split(".")) + ".py") as fh:
                return fh.read()
        for path, text in login.library_files(source_of, lib).items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write(text)
        tool = os.path.join(tmp, "fairshare-login")
        with open(tool, "w") as fh:
            fh.write(login.tool_text(args.python, lib))
        os.chmod(tool, 0o755)
        doc_path = os.path.join(tmp, "login.json")
        doc, _fallback, users = login.documents(policy(args.users, args.tiers, args.rules), "fairshare")
        with open(doc_path, "w") as fh:
            json.dump(doc, fh)
        with open(login.users_path(doc_path), "w") as fh:
            fh.write(users)
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        times, out = [], None
        for _ in range(args.runs + 1):
            start = time.perf_counter()
            proc = subprocess.run([tool, "resolve", user, doc_path], capture_output=True, text=True, check=True)
            times.append((time.perf_counter() - start) * 1000)
            out = json.loads(proc.stdout)
        times = sorted(times[1:])  # the first run warms the page cache
        assert out["limits"] and not out["problems"], out
        print("policy: %d users, %d tiers, %d rules, login.json %d kB + login-users.tsv %d kB; user %s -> tier %s, %s"
              % (args.users, args.tiers, args.rules, os.path.getsize(doc_path) // 1024,
                 os.path.getsize(login.users_path(doc_path)) // 1024, user,
                 out["profile"]["tier"], out["limits"][0]))
        print("fairshare-login resolve, %d runs: median %.1f ms, p90 %.1f ms, max %.1f ms (budget 50 ms)"
              % (args.runs, statistics.median(times), times[int(len(times) * 0.9) - 1], times[-1]))
        base = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([args.python, "-IS", "-c", "pass"], check=True)
            base.append((time.perf_counter() - start) * 1000)
        print("for scale, %s -IS -c pass: median %.1f ms" % (args.python, statistics.median(base)))


if __name__ == "__main__":
    main()

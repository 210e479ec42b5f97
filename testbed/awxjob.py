"""playbooks/site.yml as an AWX job runs it: ansible-runner from a private data directory.

Used by tests/integration/test_awx.py and benchmarks/result_size.py. The job runs on
localhost (connection local) in check mode with --diff ("Show changes"), the collection
taken from collections_path, and each job event is stored as AWX stores it
(artifacts/<ident>/job_events/*.json, results over MAX_EVENT_RES emptied by the callback).
"""
import glob
import json
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, ".venv", "bin", "ansible-runner")


def run_site(pdd, extravars, collections_path, python, ident="job", env=None, timeout=900):
    """Make the private data directory pdd and run site.yml in it -> (completed process, artifacts dir)."""
    for sub in ("project", "inventory", "env"):
        os.makedirs(os.path.join(pdd, sub))
    shutil.copy(os.path.join(ROOT, "playbooks", "site.yml"), os.path.join(pdd, "project", "site.yml"))
    files = {("inventory", "hosts"): "localhost ansible_connection=local ansible_python_interpreter=%s\n" % python,
             ("env", "extravars"): json.dumps(extravars),
             ("env", "envvars"): json.dumps({"ANSIBLE_COLLECTIONS_PATH": collections_path}),
             ("env", "cmdline"): "--check --diff"}
    for (sub, name), text in files.items():
        with open(os.path.join(pdd, sub, name), "w") as fh:
            fh.write(text)
    proc = subprocess.run([RUNNER, "run", pdd, "-p", "site.yml", "--ident", ident], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return proc, os.path.join(pdd, "artifacts", ident)


def job_events(artifacts):
    """[(bytes on disk, event)] of the job's events, in their order."""
    events = []
    for path in sorted(glob.glob(os.path.join(artifacts, "job_events", "*.json"))):
        with open(path) as fh:
            events.append((os.path.getsize(path), json.load(fh)))
    return events

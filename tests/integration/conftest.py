"""Run fairshare.resources modules for real through ansible, against this host."""
import json
import os
import pwd
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")
# The real interpreter, not a pyenv shim that forks bash and eats a pids budget (testbed.md).
PYTHON = os.path.realpath(sys.executable)


def run_module(name, args, check=False, diff=False):
    """`ansible localhost -m fairshare.resources.NAME` -> (result dict)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_PYTHON_INTERPRETER=PYTHON, ANSIBLE_NOCOLOR="1")
    argv = [ANSIBLE, "localhost", "-c", "local", "-o", "-m", "fairshare.resources." + name, "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("localhost | ")][-1]
    result = json.loads(line.split("=> ", 1)[1])
    result["_status"] = line.split(" => ")[0].split("| ")[1]
    return result


@pytest.fixture
def test_user():
    """A throw-away user, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = "fstest%d" % os.getpid()
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)

#!/usr/bin/env python3
"""The README's first command: examples/policy.yml applied to a throw-away systemd guest.

Boots a Debian guest (testbed/fsguest.py, QEMU), makes the example lab in it
(examples/lab.yml: 20 users, /srv/lab, the link fsv0, GPU device nodes), applies
playbooks/site.yml with examples/policy.yml and examples/lab-profiles.yml, prints
`fairshare-usage --all` and `fairshare-plan --status` from the guest, and powers it off.
Where QEMU cannot run, the same playbook runs against this host with --check --diff:
it shows what it would change and changes nothing.
"""
import json
import os
import subprocess
import sys

import fsguest as fsguest_lib  # testbed/fsguest.py, beside this file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".venv", "bin")
GUEST = "demo%d" % os.getpid()
POLICY = ["-e", "@" + os.path.join(ROOT, "examples", "policy.yml"),
          "-e", "@" + os.path.join(ROOT, "examples", "lab-profiles.yml")]


def playbook(inventory, *args):
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", inventory] + list(args)
    print("$ " + " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=ROOT, check=False).returncode


def fsguest(*args, **kw):
    return subprocess.run([sys.executable, os.path.join(ROOT, "testbed", "fsguest.py")] + list(args), **kw)


def on_localhost():
    print("demo: QEMU could not start a guest here; showing what site.yml would change on this host "
          "(--check --diff, nothing changes)", flush=True)
    return playbook("localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + os.path.join(BIN, "python"),
                    "--check", "--diff", "playbooks/site.yml", *POLICY)


def in_guest(*cmd):
    """A command in the guest, its output to the terminal; a guest that does not answer in 180 s is an error."""
    try:
        return fsguest("ssh", GUEST, "--", *cmd, check=False, timeout=180).returncode
    except subprocess.TimeoutExpired:
        print("demo: no answer from the guest in 180 s to: %s (console log: %s)"
              % (" ".join(cmd), os.path.join(fsguest_lib.guest_dir(GUEST), "console.log")), flush=True)
        return 124


def step(text):
    print("\ndemo: %s" % text, flush=True)


def main():
    step("[1/4] a throw-away Debian guest (the image is built once, then cached under %s)"
         % os.path.dirname(fsguest_lib.image_dir()))
    # fsguest's progress (stderr) goes straight to the terminal; its one JSON document (stdout) is ours
    boot = fsguest("start", GUEST, stdout=subprocess.PIPE, text=True, check=False)
    if boot.returncode != 0:
        return on_localhost()
    inventory = fsguest_lib.write_inventory(json.loads(boot.stdout))
    try:
        step("[2/4] the example lab in the guest: 20 users, /srv/lab, the link fsv0, GPU device nodes")
        rc = playbook(inventory, "examples/lab.yml")
        if rc == 0:
            step("[3/4] playbooks/site.yml with examples/policy.yml")
            rc = playbook(inventory, "playbooks/site.yml", *POLICY)
        if rc == 0:
            step("[4/4] what the users see")
            # something to show: lab01 holds 96 MiB of its 128M in its own slice for a minute
            rc = in_guest("systemd-run", "--quiet", "--collect", "--uid=lab01", "--slice=user-3001.slice", "python3",
                          "-c", "'import time; b = bytes(range(256)) * (96 << 12); time.sleep(60)'")
            rc = rc or in_guest("sleep", "3")
            for cmd in (["fairshare-usage", "--all"], ["fairshare-plan", "--status"],
                        ["fairshare-usage", "--explain", "lab05"]):
                if rc == 0:
                    print("\n[guest]# " + " ".join(cmd), flush=True)
                    rc = in_guest(*cmd)
        return rc
    finally:
        fsguest("stop", GUEST, check=False)


if __name__ == "__main__":
    os.environ.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
    sys.exit(main())

"""Run fairshare.resources modules for real through ansible, against this host."""
import json
import os
import pwd
import subprocess
import sys

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_backend import parse_proc_cgroup

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")
# The real interpreter, not a pyenv shim that forks bash and eats a pids budget (testbed.md).
PYTHON = os.path.realpath(sys.executable)
# For processes run as a test user: the system's python3 (the controller's may be a build under
# /root whose shared libpython another user cannot load, as pyenv's 3.12 of `make compat`).
USER_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else PYTHON


# In a guest: a process that holds argv[1] MiB and says "survived" if it is not killed; and an ssh login of a user
# to the guest itself (/root/fs-key: the key the guest tests authorise for their users), which prints its rc.
ALLOC = "python3 -c 'import sys; b = bytearray(int(sys.argv[1]) << 20); print(\"survived\")' %d"
SSH = ("ssh -q -i /root/fs-key -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
       "%s@127.0.0.1 %s; echo rc=$?")


def run_module(name, args, check=False, diff=False, guest=None, netns=None, prefix=()):
    """`ansible HOST -m fairshare.resources.NAME` -> (result dict).

    HOST is this machine (connection local) or, with guest=facts of testbed/fsguest.py,
    that guest over ssh. prefix: a command line the local ansible runs under (unshare ...).
    """
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_PYTHON_INTERPRETER=PYTHON, ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="False",
               ANSIBLE_DEPRECATION_WARNINGS="False")
    if guest:
        env["ANSIBLE_PYTHON_INTERPRETER"] = guest.get("python", "/usr/bin/python3")
        env["ANSIBLE_PIPELINING"] = "True"  # one ssh exec per module, not four: about 1.8 s less a call in TCG
        target = ["all", "-i", "127.0.0.1:%d," % guest["port"], "-u", "root", "--private-key", guest["key"]]
    else:
        target = ["localhost", "-c", "local"]
    argv = [ANSIBLE] + target + ["-o", "-m", "fairshare.resources." + name, "-a", json.dumps(args)]
    if netns:  # the module runs inside that network namespace (nsenter keeps /sys and cgroups as they are)
        argv = ["nsenter", "--net=/run/netns/" + netns] + argv
    argv = list(prefix) + argv
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    line = [ln for ln in proc.stdout.splitlines() if " | " in ln and " => {" in ln][-1]
    result = json.loads(line.split("=> ", 1)[1])
    result["_status"] = line.split(" => ")[0].split("| ")[1]
    return result


def warnings_of(name, args, prefix=()):
    """The warnings ansible prints for one call of module NAME on this host (they are not in the -o result line)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(list(prefix) + [ANSIBLE, "localhost", "-c", "local", "-e", "ansible_python_interpreter=" + PYTHON,
                                          "-m", "fairshare.resources." + name, "-a", json.dumps(args)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    text = " ".join((proc.stdout + proc.stderr).split())
    return [w.split("[")[0] for w in text.split("[WARNING]: ")[1:]]


# A real PAM session, then the user's own process (testbed/pamsession.py, shared with the fleet's checks)
sys.path.insert(0, os.path.join(ROOT, "testbed"))
from pamsession import SCRIPT as PAM_SESSION  # noqa: E402


def pam_session(service, pw, alloc_mb, open_paths=()):
    """Open a real PAM session (libpam, /etc/pam.d/SERVICE) for a user the way su or sshd does,
    then, as that user in a child, open open_paths and allocate alloc_mb MiB. -> {start, open (PAM
    return codes), cgroup (/proc/self/cgroup after the session opened), cgroups {controller: path},
    signal, survived, opened {path: 'OK' or errno name}}."""
    proc = subprocess.run([PYTHON, "-c", PAM_SESSION, service, pw.pw_name, str(pw.pw_uid), str(alloc_mb)]
                          + list(open_paths), capture_output=True, text=True, timeout=120, check=False)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    seen["survived"] = "survived" in proc.stdout
    seen["opened"] = dict(line.split()[1:3] for line in proc.stdout.splitlines() if line.startswith("open "))
    seen["cgroups"] = parse_proc_cgroup(seen["cgroup"])
    return seen


def remove_gpu_traces(nodes, parent, users):
    """What a test's fake GPUs and gpu_access leave on this host: the mknod nodes, the udev, modprobe and gpu.json
    files, the users' membership of video, and the v1 device cgroups under parent (deepest first)."""
    for path in nodes:
        os.unlink(path)
    for path in ("/etc/udev/rules.d/70-fairshare-gpu.rules", "/etc/modprobe.d/fairshare-nvidia.conf",
                 "/etc/fairshare/gpu.json", "/etc/fairshare/gpu-devices-%s.sh" % parent):
        if os.path.exists(path):
            os.unlink(path)
    for name in users:
        subprocess.run(["gpasswd", "-d", name, "video"], capture_output=True, check=False)
    devices = os.path.join("/sys/fs/cgroup/devices", parent)
    for path in sorted((d for d, _s, _f in os.walk(devices)), key=len, reverse=True):
        os.rmdir(path)


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


def pytest_collection_modifyitems(items):
    """test_fsguest.py first: on a machine without the guest image it builds the one every later guest uses."""
    items.sort(key=lambda item: 0 if item.nodeid.split("::")[0].endswith("test_fsguest.py") else 1)


def boot_guest(name, *options, skip_unfetchable=False):
    """Start a throw-away guest (testbed/fsguest.py start NAME OPTIONS...) -> its facts, with facts["ssh"](command).
    A guest that does not boot fails the test with fsguest's last words (the end of its console log); with
    skip_unfetchable, a suite the mirror no longer serves skips it with fsguest's one line."""
    tool = os.path.join(ROOT, "testbed", "fsguest.py")
    out = subprocess.run([sys.executable, tool, "start", name] + list(options), capture_output=True, text=True, check=False)
    if out.returncode == 3 and skip_unfetchable:
        pytest.skip(out.stderr.strip().splitlines()[-1])
    if out.returncode != 0:
        subprocess.run([sys.executable, tool, "stop", name], check=False)
        pytest.fail("guest %s %s did not boot: %s" % (name, " ".join(options), out.stderr[-3000:]))
    facts = json.loads(out.stdout)  # exactly one JSON document (test_fsguest.py)

    def ssh(command, check=True):
        proc = subprocess.run([sys.executable, tool, "ssh", name, "--", command], capture_output=True, text=True,
                              timeout=600, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("guest command failed (%d): %s\n%s" % (proc.returncode, command, proc.stderr))
        return proc
    facts["ssh"] = ssh
    facts["name"] = name
    facts["stop"] = lambda: subprocess.run([sys.executable, tool, "stop", name], check=False)
    return facts


@pytest.fixture(scope="session")
def guest():
    """A throw-away systemd guest (testbed/fsguest.py), stopped by PID if need be at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    facts = boot_guest("itest%d" % os.getpid())
    try:
        yield facts
    finally:
        facts["stop"]()


# the receiver: counts every byte of every connection for `seconds`, then prints the total and the
# times of the first and last byte
SINK = """
import json, socket, sys, threading, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(64); srv.settimeout(0.5)
seen = {"bytes": 0, "first": None, "last": None}; lock = threading.Lock(); end = time.time() + float(sys.argv[3])
def take(conn):
    conn.settimeout(0.5)
    while time.time() < end:
        try:
            data = conn.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        with lock:
            now = time.time(); seen["bytes"] += len(data); seen["last"] = now
            seen["first"] = seen["first"] or now
    conn.close()
print("ready", flush=True)
while time.time() < end:
    try:
        conn, _a = srv.accept()
    except socket.timeout:
        continue
    threading.Thread(target=take, args=(conn,), daemon=True).start()
print(json.dumps(seen), flush=True)
"""
# the attacker: fill a socket's send buffer, close it (the kernel still sends what is queued, with no
# owner), and again, for `seconds`
FILL_AND_CLOSE = """
import socket, sys, time
end = time.time() + float(sys.argv[3]); sent = 0
while time.time() < end:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    s.connect((sys.argv[1], int(sys.argv[2]))); s.setblocking(False)
    try:
        while True:
            sent += s.send(b"x" * 65536)
    except BlockingIOError:
        pass
    s.close(); time.sleep(0.05)
print(sent)
"""

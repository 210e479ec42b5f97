#!/usr/bin/env python3
"""gpu_access and GPU counts on a machine with a real NVIDIA GPU, by effect.

For the sessions that are lent such a machine (docs/testbed.md, "A real GPU"): run from a
copy of this repository as root, with ansible-core importable (`ANSIBLE_BIN` names the
directory of its `ansible` command). It changes that machine's GPU device files and users,
so run it only on a throw-away machine. What it does, printing each result:

1. What the host has: `nvidia-smi -L`, the query of index, uuid, name, memory, MIG mode and
   driver, the device files, the cgroup layout and PID 1.
2. `resource_facts`: the GPUs as the collection sees them.
3. GPU counts: two users with `count: 1` on a host with fewer GPUs than that are refused, with
   the numbers, and nothing changes (the device files keep their mode).
4. `count: 1` for one user, none for the other, policy restricted: the module picks the GPU
   (its UUID kept), a rerun changes nothing and keeps it. Then, as each user, an open of every
   /dev/nvidia* node and CUDA's own cuInit/cuDeviceGetCount through the real driver: the
   granted user opens the GPU and CUDA counts it; the other gets EACCES and no device.
5. The same through `playbooks/site.yml` (the profiles role, this host's cgroupfs, its own
   parent, no PAM file touched): `users.fsgpu-a.gpu.count: 1` lands in profiles.json's
   `gpu_allocation` and in `fairshare-usage`, a rerun changes nothing, and the users are held
   to it as above.
6. Back to the device files as they were (policy open, no users).

Exits 1 when an expectation fails.
"""
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSIBLE = os.path.join(os.environ.get("ANSIBLE_BIN", os.path.dirname(sys.executable)), "ansible")
USERS = [("fsgpu-a", 3951), ("fsgpu-b", 3952)]
CUDA = ("import ctypes, errno, glob, os, json\n"
        "opened = {}\n"
        "for path in sorted(glob.glob('/dev/nvidia*')):\n"
        "    if os.path.isdir(path):\n"
        "        continue\n"
        "    try:\n"
        "        os.close(os.open(path, os.O_RDWR)); opened[path] = 'OK'\n"
        "    except OSError as exc:\n"
        "        opened[path] = errno.errorcode[exc.errno]\n"
        "cuda = ctypes.CDLL('libcuda.so.1')\n"
        "count = ctypes.c_int(-1)\n"
        "init = cuda.cuInit(0)\n"
        "got = cuda.cuDeviceGetCount(ctypes.byref(count)) if init == 0 else None\n"
        "print(json.dumps({'open': opened, 'cuInit': init, 'devices': count.value if got == 0 else 0}))\n")
FAILED = []


def say(title, text=""):
    print("== %s" % title)
    if text:
        print(text.rstrip())
    sys.stdout.flush()


def command(argv, **kwargs):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    except OSError as exc:
        return 127, "%s: %s\n" % (argv[0], exc)
    return out.returncode, out.stdout + out.stderr


def expect(what, ok):
    print("%s: %s" % ("ok" if ok else "FAILED", what))
    if not ok:
        FAILED.append(what)


def module(name, args, collections):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="False")
    _rc, out = command([ANSIBLE, "localhost", "-c", "local", "-o", "-m", "fairshare.resources." + name,
                        ] + (["-a", json.dumps(args)] if args else []), env=env)
    line = [ln for ln in out.splitlines() if " | " in ln and " => {" in ln]
    if not line:
        raise SystemExit("%s: no result:\n%s" % (name, out[-3000:]))
    status, _sep, body = line[-1].partition(" => ")
    result = json.loads(body)
    result["_status"] = status.split(" | ")[1]
    result["_warnings"] = [ln for ln in out.splitlines() if "WARNING" in ln]
    return result


def as_user(name):
    pw = pwd.getpwnam(name)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable  # not one under /root
    _rc, out = command([python, "-c", CUDA], user=pw.pw_uid, group=pw.pw_gid,
                       extra_groups=os.getgrouplist(name, pw.pw_gid), env={"PATH": "/usr/bin:/bin", "HOME": "/"})
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": out[-500:]}


def site(collections, policy_file):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="False")
    extra = {"ansible_python_interpreter": sys.executable, "profiles_network": False, "profiles_quotas": False,
             "profiles_install_packages": False, "profiles_cgroup_backend": "cgroupfs",
             "profiles_cgroup_parent": "fairshare-gpucheck", "profiles_pam_session_files": [], "profiles_pam_config": ""}
    rc, out = command([os.path.join(os.path.dirname(ANSIBLE), "ansible-playbook"), "-i", "localhost,", "-c", "local",
                       "-e", "@" + policy_file, "-e", json.dumps(extra), os.path.join(ROOT, "playbooks", "site.yml")],
                      env=env)
    recap = [ln for ln in out.splitlines() if ln.startswith("localhost ")]
    changed, task = [], None
    for line in out.splitlines():
        if line.startswith("TASK ["):
            task = line[6:].split("]")[0]
        elif line.startswith("changed:"):
            changed.append(task)
    return rc, (recap[-1] + "\nchanged: %s" % changed if recap else out[-3000:])


def modes():
    return dict((path, "%o %d" % (os.stat(path).st_mode & 0o777, os.stat(path).st_gid))
                for path in sorted(p for p in os.listdir("/dev") if p.startswith("nvidia"))
                for path in ["/dev/" + path] if not os.path.isdir(path))


def main():
    collections = tempfile.mkdtemp(prefix="fairshare-gpu-")
    os.makedirs(os.path.join(collections, "ansible_collections", "fairshare"))
    os.symlink(ROOT, os.path.join(collections, "ansible_collections", "fairshare", "resources"))
    say("nvidia-smi -L", command(["nvidia-smi", "-L"])[1])
    say("nvidia-smi --query-gpu", command(["nvidia-smi", "--query-gpu=index,uuid,name,memory.total,mig.mode.current,"
                                           "driver_version", "--format=csv"])[1])
    say("device files (mode gid)", json.dumps(modes(), indent=1))
    say("cgroup and init", command(["stat", "-fc", "%T", "/sys/fs/cgroup"])[1] + command(["ps", "-p", "1", "-o", "comm="])[1])
    facts = module("resource_facts", None, collections)
    found = (facts.get("ansible_facts") or facts).get("fairshare", {}).get("gpus")
    say("resource_facts gpus (%s%s)" % (facts["_status"], (": " + facts["msg"]) if facts.get("msg") else ""),
        json.dumps(found, indent=1))
    gpus = [line for line in command(["nvidia-smi", "-L"])[1].splitlines() if line.startswith("GPU ")]
    expect("resource_facts finds the GPUs nvidia-smi lists", found is not None and len(found) == len(gpus))
    for name, uid in USERS:
        if not any(p.pw_name == name for p in pwd.getpwall()):
            command(["useradd", "-M", "-u", str(uid), "-s", "/bin/sh", name])
    try:
        before = modes()
        both = module("gpu_access", {"users": [{"name": n, "count": len(gpus)} for n, _u in USERS]}, collections)
        say("count %d for both users on %d GPU(s), share 1" % (len(gpus), len(gpus)), both.get("msg", json.dumps(both)))
        expect("refused before any change", both["_status"].startswith("FAILED") and modes() == before)
        args = {"users": [{"name": USERS[0][0], "count": 1}, {"name": USERS[1][0], "gpus": "none"}],
                "policy": "restricted", "group": "video"}
        first = module("gpu_access", args, collections)
        again = module("gpu_access", args, collections)
        say("count 1 for %s, none for %s (restricted)" % (USERS[0][0], USERS[1][0]),
            json.dumps({k: first.get(k) for k in ("changed", "users", "actions", "driver_reset", "driver_params", "_warnings", "msg")}, indent=1))
        say("rerun", json.dumps({k: again.get(k) for k in ("changed", "users", "actions", "driver_reset")}, indent=1))
        expect("first run changed, rerun did not", first.get("changed") is True and again.get("changed") is False)
        expect("the same GPU on the rerun", first.get("users") == again.get("users"))
        if os.path.exists("/etc/fairshare/gpu.json"):
            with open("/etc/fairshare/gpu.json") as fh:
                say("/etc/fairshare/gpu.json", fh.read())
        say("device files now", json.dumps(modes(), indent=1))
        granted, other = as_user(USERS[0][0]), as_user(USERS[1][0])
        say("as %s" % USERS[0][0], json.dumps(granted, indent=1))
        say("as %s" % USERS[1][0], json.dumps(other, indent=1))
        expect("the granted user opens the GPU and CUDA counts it",
               granted.get("devices", 0) >= 1 and granted.get("open", {}).get("/dev/nvidia0") == "OK")
        expect("the other user gets EACCES and no CUDA device",
               other.get("devices") == 0 and other.get("open", {}).get("/dev/nvidia0") in ("EACCES", "EPERM"))
        # the loaded driver's own idea of the device files (NVIDIA's nvidia-modprobe recreates them so)
        with open("/proc/driver/nvidia/params") as fh:
            say("driver params (DeviceFile*)", "".join(ln for ln in fh if ln.startswith("DeviceFile")))
        say("nvidia-modprobe", command(["sh", "-c", "ls -l $(command -v nvidia-modprobe)"])[1])
        pw = pwd.getpwnam(USERS[1][0])
        say("nvidia-smi -L run by %s" % USERS[1][0], command(["nvidia-smi", "-L"], user=pw.pw_uid, group=pw.pw_gid,
                                                             extra_groups=[], env={"PATH": "/usr/bin:/bin"})[1])
        say("device files after that", json.dumps(modes(), indent=1))
        later = as_user(USERS[1][0])
        say("as %s after that" % USERS[1][0], json.dumps(later, indent=1))
        expect("a user outside the group who runs nvidia-smi still has no GPU", later.get("devices") == 0)

        module("gpu_access", {"users": [], "policy": "open"}, collections)  # from scratch for the role
        if os.path.exists("/etc/fairshare/gpu.json"):
            os.unlink("/etc/fairshare/gpu.json")
        policy_file = os.path.join(collections, "policy.json")
        with open(policy_file, "w") as fh:
            json.dump({"fairshare_policy": {"min_uid": 3950, "max_uid": 3960, "defaults": {"memory": {"max": "4G"}},
                                            "users": {USERS[0][0]: {"gpu": {"count": 1}}}}}, fh)
        rc, first_site = site(collections, policy_file)
        say("site.yml, users.%s.gpu.count 1" % USERS[0][0], first_site)
        say("device files after site.yml", json.dumps(modes(), indent=1))
        say("groups", command(["id", USERS[0][0]])[1] + command(["id", USERS[1][0]])[1])
        early = as_user(USERS[1][0])
        say("CUDA devices as %s right after site.yml" % USERS[1][0], json.dumps(early))
        rc2, second_site = site(collections, policy_file)
        say("site.yml again", second_site)
        say("device files after the second site.yml", json.dumps(modes(), indent=1))
        expect("site.yml ran, and again with changed=0", rc == 0 and rc2 == 0 and "changed=0 " in second_site)
        with open("/etc/fairshare/profiles.json") as fh:
            allocation = json.load(fh).get("gpu_allocation")
        say("profiles.json gpu_allocation", json.dumps(allocation))
        expect("profiles.json records GPU 0 for %s" % USERS[0][0], (allocation or {}).get(USERS[0][0]) == [0])
        _rc, usage = command(["/usr/local/bin/fairshare-usage", "--all"])
        say("fairshare-usage --all", usage)
        pw = pwd.getpwnam(USERS[0][0])
        _rc, own = command(["/usr/local/bin/fairshare-usage"], user=pw.pw_uid, group=pw.pw_gid,
                           extra_groups=os.getgrouplist(pw.pw_name, pw.pw_gid), env={"PATH": "/usr/bin:/bin"})
        say("fairshare-usage as %s" % USERS[0][0], own)
        say("device files after fairshare-usage", json.dumps(modes(), indent=1))
        expect("fairshare-usage shows her GPU 0", "GPU 0" in own)
        granted = as_user(USERS[0][0])
        say("device files after CUDA as %s" % USERS[0][0], json.dumps(modes()))
        other = as_user(USERS[1][0])
        say("after site.yml: CUDA devices as %s / %s" % (USERS[0][0], USERS[1][0]),
            "%s / %s" % (granted.get("devices"), other.get("devices")))
        expect("after site.yml the granted user has the GPU and the other none",
               granted.get("devices", 0) >= 1 and other.get("devices") == 0)
    finally:
        module("gpu_access", {"users": [], "policy": "open"}, collections)
        for name, _uid in USERS:
            command(["userdel", name])
        shutil.rmtree(collections, ignore_errors=True)
        say("device files at the end", json.dumps(modes(), indent=1))
    say("result", "FAILED: %s" % "; ".join(FAILED) if FAILED else "all expectations held")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

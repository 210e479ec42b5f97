#!/usr/bin/env python3
"""Throw-away Debian guests for the fairshare.resources test bed.

Subcommands:
  build [--suite S]     build (or reuse the cached) Debian image of suite S
                        (bookworm by default; bullseye, trixie, forky: SUITES)
  build-all             every suite's image, in parallel, progress marked by suite
  start NAME [--suite S] [--cgroup v1|v2] [--port N]
                        boot a guest from a fresh qcow2 overlay, wait for ssh,
                        print its connection facts as JSON
  stop NAME             power it off; kill it by its PID if it does not stop
  ssh NAME -- CMD...    run a command in the guest as root
  reboot NAME           reboot the guest and wait for ssh again
  container-image       build (or reuse) the Debian container image of the
                        containers scenario and `podman import` it

Everything of a run lives in $FAIRSHARE_RUN_DIR (default ~/.cache/fairshare/run)
/NAME: overlay.qcow2, the per-run ssh key, console.log, qemu.pid, facts.json.
The image is cached under ~/.cache/fairshare/images/<key>/, the key being a hash
of the suite, the mirror and the package list.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

SUITE = "bookworm"  # the default guest: every scenario of `make test` and `make demo`
PACKAGES = [
    "systemd-sysv", "systemd", "dbus", "libpam-systemd", "linux-image-amd64",
    "initramfs-tools", "zstd", "kmod", "openssh-server", "python3", "quota",
    "xfsprogs", "btrfs-progs", "e2fsprogs", "iproute2", "nftables", "iperf3",
    "sudo", "udev", "procps", "util-linux", "coreutils", "passwd", "login", "cron", "at",
    # a directory the tests set up themselves: OpenLDAP and SSSD (issue 13)
    "slapd", "ldap-utils", "sssd-ldap", "libnss-sss", "libpam-sss",
    # a user's rootless containers (podman; busybox-static makes the local image, no registry needed)
    "podman", "uidmap", "busybox-static", "dbus-user-session",
]
# The other Debian generations of a fleet (issue 17). Their guests prove the limits by effect on that
# systemd and kernel with that Python (tests/integration/test_generations.py); the directory, container
# and network scenarios stay on bookworm's image, so theirs leave out slapd, SSSD and podman (a third
# of the download). What each suite is, measured here: ../shared/testbed.md section 5.
LEAN_PACKAGES = [p for p in PACKAGES if p not in {
    "slapd", "ldap-utils", "sssd-ldap", "libnss-sss", "libpam-sss", "podman", "uidmap", "busybox-static", "dbus-user-session"}] + [
    "openssh-client"]  # the tests log in as users from root's shell; forky's openssh-server no longer pulls it in
SUITES = {
    # python2.7: a managed host's interpreter too old for the modules (test_generations.py: the clear refusal)
    "bullseye": {"release": "Debian 11", "systemd": 247, "python": "3.9", "packages": LEAN_PACKAGES + ["python2.7"],
                 "cgroup_v1": True},
    "bookworm": {"release": "Debian 12", "systemd": 252, "python": "3.11", "packages": PACKAGES, "cgroup_v1": True},
    "trixie": {"release": "Debian 13", "systemd": 257, "python": "3.13", "packages": LEAN_PACKAGES, "cgroup_v1": True},
    # testing: its Release file on the mirror here was past Valid-Until (2026-11-26); apt still checks signatures
    "forky": {"release": "Debian testing", "systemd": 258, "python": "3.13", "packages": LEAN_PACKAGES, "cgroup_v1": False,
              "aptopt": ['Acquire::Check-Valid-Until "false"']},
}
# A per-run ssh key reaches the guest on the kernel command line: this unit
# copies it into root's authorized_keys before sshd starts.
KEY_UNIT = """[Unit]
Description=fairshare test bed: root ssh key from the kernel command line
Before=ssh.service
ConditionKernelCommandLine=fairshare.sshkey

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/fairshare-sshkey

[Install]
WantedBy=multi-user.target
"""
KEY_SCRIPT = """#!/bin/sh
set -e
for word in $(cat /proc/cmdline); do
  case "$word" in fairshare.sshkey=*) key="${word#fairshare.sshkey=}";; esac
done
[ -n "$key" ] || exit 0
install -d -m 0700 /root/.ssh
echo "$key" | base64 -d > /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
"""
NETWORK = """[Match]
Name=en* eth*

[Network]
DHCP=yes
"""

CACHE = os.path.expanduser(os.environ.get("FAIRSHARE_CACHE", "~/.cache/fairshare"))
RUN_DIR = os.path.expanduser(os.environ.get("FAIRSHARE_RUN_DIR", os.path.join(CACHE, "run")))


def log(msg):
    print("fsguest: %s" % msg, file=sys.stderr, flush=True)


# `start` prints exactly one JSON document on standard output; everything else (our progress,
# mmdebstrap, mkfs.ext4's "Creating regular file ...", qemu-img, ssh-keygen) goes to standard
# error. main() points fd 1 at stderr for the whole command and keeps the real stdout here.
RESULT_FD = None
SLOW_DISK_BPS = 16 << 20  # vdc's read rate (QEMU throttling): 16 MiB/s


def emit(document):
    """The command's one result on the real standard output (JSON, one line)."""
    data = (json.dumps(document) + "\n").encode()
    os.write(RESULT_FD if RESULT_FD is not None else 1, data)


def mirror():
    """The Debian mirror this machine's apt already uses."""
    for path in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]:
        try:
            with open(path) as fh:
                for line in fh:
                    line = line.strip()
                    if line.startswith("URIs:"):
                        return line.split()[1]
                    if line.startswith("deb ") and "security" not in line:
                        return [w for w in line.split() if "://" in w][0]
        except OSError:
            continue
    return "http://deb.debian.org/debian"


def image_dir(suite=SUITE):
    packages = SUITES[suite]["packages"]
    key = hashlib.sha256(json.dumps([suite, mirror(), sorted(packages), KEY_UNIT, KEY_SCRIPT, NETWORK, 2]).encode()).hexdigest()[:16]
    return os.path.join(CACHE, "images", "%s-%s" % (suite, key))


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, **kw)


def fetchable(suite):
    """None where the mirror serves SUITE's Release file, else why not (one line)."""
    url = "%s/dists/%s/Release" % (mirror().rstrip("/"), suite)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read(64)
        return None
    except (urllib.error.URLError, OSError) as err:
        return "%s: %s" % (url, getattr(err, "reason", err))


def build(args=None):
    suite = getattr(args, "suite", None) or SUITE
    out = image_dir(suite)
    if os.path.exists(os.path.join(out, "done")):
        log("image cached at %s" % out)
        return out
    why = fetchable(suite)
    if why:
        log("Debian %s (%s) can no longer be fetched from this mirror: %s" % (suite, SUITES[suite]["release"], why))
        sys.exit(3)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    rootfs = os.path.join(tmp, "rootfs")
    start = time.time()
    packages = SUITES[suite]["packages"]
    log("no cached image at %s: building it once (about 2-4 minutes here)" % out)
    log("[1/3] mmdebstrap: %s (%s) with %d packages from %s" % (SUITES[suite]["release"], suite, len(packages), mirror()))
    run(["mmdebstrap", "--variant=minbase", "--include=" + ",".join(packages), "--components=main"]
        + ["--aptopt=" + opt for opt in SUITES[suite].get("aptopt", [])] + [suite, rootfs, mirror()],
        stdout=subprocess.DEVNULL)

    def put(rel, text, mode=0o644):
        path = os.path.join(rootfs, rel.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, mode)

    log("[2/3] test bed files (ssh key unit, network, fstab) after %.0f s" % (time.time() - start))
    put("/etc/systemd/system/fairshare-sshkey.service", KEY_UNIT)
    put("/usr/local/sbin/fairshare-sshkey", KEY_SCRIPT, 0o755)
    put("/etc/systemd/network/10-dhcp.network", NETWORK)
    put("/etc/fstab", "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n")
    put("/etc/hostname", "fairshare-guest\n")
    put("/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 fairshare-guest\n")
    wants = os.path.join(rootfs, "etc/systemd/system/multi-user.target.wants")
    os.makedirs(wants, exist_ok=True)
    for unit, target in [("fairshare-sshkey.service", "/etc/systemd/system/fairshare-sshkey.service"),
                         ("systemd-networkd.service", "/lib/systemd/system/systemd-networkd.service")]:
        link = os.path.join(wants, unit)
        if not os.path.lexists(link):
            os.symlink(target, link)
    os.symlink("/dev/null", os.path.join(rootfs, "etc/systemd/system/systemd-networkd-wait-online.service"))
    boot = os.path.join(rootfs, "boot")
    kernel = sorted(f for f in os.listdir(boot) if f.startswith("vmlinuz-"))[-1]
    initrd = sorted(f for f in os.listdir(boot) if f.startswith("initrd.img-"))[-1]
    shutil.copy(os.path.join(boot, kernel), os.path.join(tmp, "vmlinuz"))
    shutil.copy(os.path.join(boot, initrd), os.path.join(tmp, "initrd.img"))
    log("[3/3] mkfs.ext4: the 4G root image after %.0f s" % (time.time() - start))
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", rootfs, os.path.join(tmp, "rootfs.img"), "4G"])
    shutil.rmtree(rootfs)
    with open(os.path.join(tmp, "done"), "w") as fh:
        fh.write("built in %.0f s\n" % (time.time() - start))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    log("image built in %.0f s at %s" % (time.time() - start, out))
    return out


def build_all(_args=None):
    """Every suite's image at once (mmdebstrap waits on the network more than on the CPUs: about 110 s for three
    here, in parallel), each line of progress marked with its suite. A suite the mirror no longer serves is said
    in one line and does not fail the step; its guest tests skip with the same line."""
    import threading
    procs = {}
    start_time = time.time()

    def follow(suite, stream):
        for line in iter(stream.readline, b""):
            text = line.decode("utf-8", "replace").rstrip()
            if text and not text.startswith("Creating regular file"):
                print("[%s] %s" % (suite, text[len("fsguest: "):] if text.startswith("fsguest: ") else text),
                      file=sys.stderr, flush=True)
    readers = []
    for suite in sorted(SUITES):
        procs[suite] = subprocess.Popen([sys.executable, os.path.abspath(__file__), "build", "--suite", suite],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        readers.append(threading.Thread(target=follow, args=(suite, procs[suite].stderr), daemon=True))
        readers[-1].start()
    failed = []
    for suite, proc in procs.items():
        rc = proc.wait()
        if rc not in (0, 3):
            failed.append(suite)
    for reader in readers:
        reader.join(5)
    log("images: %s in %.0f s" % (", ".join("%s %s" % (s, {0: "ready", 3: "not fetchable"}.get(p.returncode, "FAILED"))
                                            for s, p in procs.items()), time.time() - start_time))
    if failed:
        sys.exit(1)


CONTAINER_PACKAGES = ["python3", "util-linux", "passwd", "procps", "sudo"]
CONTAINER_IMAGE = "localhost/fairshare-debian:bookworm"


def container_image(_args=None):
    """mmdebstrap a minimal bookworm into a tarball (cached) and import it into podman."""
    key = hashlib.sha256(json.dumps([SUITE, mirror(), sorted(CONTAINER_PACKAGES)]).encode()).hexdigest()[:16]
    tarball = os.path.join(CACHE, "images", "container-%s-%s.tar" % (SUITE, key))
    if not os.path.exists(tarball):
        os.makedirs(os.path.dirname(tarball), exist_ok=True)
        start = time.time()
        run(["mmdebstrap", "--variant=minbase", "--format=tar", "--include=" + ",".join(CONTAINER_PACKAGES), SUITE,
             tarball + ".tmp", mirror()], stdout=subprocess.DEVNULL)
        os.rename(tarball + ".tmp", tarball)
        log("container rootfs built in %.0f s" % (time.time() - start))
    label = "fairshare.key=" + key
    have = subprocess.run(["podman", "image", "inspect", "--format", "{{index .Labels \"fairshare.key\"}}",
                           CONTAINER_IMAGE], capture_output=True, text=True, check=False)
    if have.returncode == 0 and have.stdout.strip() == key:
        log("container image %s is current" % CONTAINER_IMAGE)
        return
    run(["podman", "import", "--change", 'CMD ["sleep", "infinity"]', "--change", "LABEL " + label,
         tarball, CONTAINER_IMAGE], stdout=subprocess.DEVNULL)
    log("imported %s" % CONTAINER_IMAGE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def guest_dir(name):
    return os.path.join(RUN_DIR, name)


def ssh_base(facts):
    """ssh to the guest's root. The first call opens a master connection that later calls share
    (ControlPersist): a new ssh handshake costs a TCG guest about 1.7 s, a shared one 0.1 s."""
    return ["ssh", "-i", facts["key"], "-p", str(facts["port"]), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
            "-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o", "ControlPersist=120",
            "-o", "ControlPath=" + os.path.join(facts["dir"], "ssh.ctl"), "root@127.0.0.1"]


def close_master(facts):
    """End the shared connection (before a reboot or poweroff: the next ssh must reach the new boot)."""
    base = ssh_base(facts)
    subprocess.run(base[:-1] + ["-O", "exit", base[-1]], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False)


def load(name):
    with open(os.path.join(guest_dir(name), "facts.json")) as fh:
        return json.load(fh)


def write_inventory(facts):
    """An Ansible inventory for the guest, in its run directory; returns its path."""
    path = os.path.join(guest_dir(facts["name"]), "inventory.ini")
    with open(path, "w") as fh:
        fh.write("%s ansible_host=127.0.0.1 ansible_port=%d ansible_user=root ansible_private_key_file=%s "
                 "ansible_python_interpreter=/usr/bin/python3\n" % (facts["name"], facts["port"], facts["key"]))
    return path


def console_tail(facts, lines=25):
    """The last lines of a guest's serial console, for a boot that failed."""
    try:
        with open(facts["console"], "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace").replace("\r", "")
    except OSError as err:
        return "(no console log: %s)" % err
    return "\n".join(text.splitlines()[-lines:])


def wait_ssh(facts, timeout):
    started = time.time()
    deadline = started + timeout
    said = started
    while time.time() < deadline:
        if time.time() - said >= 15:
            said = time.time()
            log("%s: waiting for ssh, %.0f s of at most %d (console %s)"
                % (facts["name"], said - started, timeout, facts["console"]))
        if not alive(facts):
            raise SystemExit("fsguest: qemu of %s died; console log %s ends:\n%s" % (facts["name"], facts["console"], console_tail(facts)))
        rc = subprocess.run(ssh_base(facts) + ["true"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        if rc == 0:
            return
        time.sleep(2)
    raise SystemExit("fsguest: no ssh to %s after %d s; console log %s ends:\n%s"
                     % (facts["name"], timeout, facts["console"], console_tail(facts)))


def pid_of(facts):
    try:
        with open(facts["pidfile"]) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def alive(facts):
    pid = pid_of(facts)
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kvm_boots():
    """TCG unless asked: /dev/kvm here is a nested device that hangs stock kernels (testbed.md)."""
    return os.environ.get("FAIRSHARE_ACCEL", "tcg") == "kvm" and os.path.exists("/dev/kvm")


def start(args):
    if args.cgroup == "v1" and not SUITES[args.suite]["cgroup_v1"]:
        log("%s (systemd %d+) has no cgroup v1: boot it with --cgroup v2" % (SUITES[args.suite]["release"], SUITES[args.suite]["systemd"]))
        sys.exit(2)
    img = build(args)
    gdir = guest_dir(args.name)
    if os.path.exists(gdir):
        try:
            stop(argparse.Namespace(name=args.name))
        except SystemExit:
            pass
        shutil.rmtree(gdir, ignore_errors=True)
    os.makedirs(gdir)
    key = os.path.join(gdir, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fairshare-" + args.name, "-f", key], check=True)
    with open(key + ".pub", "rb") as fh:
        import base64
        pub = base64.b64encode(fh.read().strip()).decode()
    overlay = os.path.join(gdir, "overlay.qcow2")
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", os.path.join(img, "rootfs.img"), "-F", "raw", overlay])
    # A second blank disk for filesystem tests (quota images etc.).
    run(["qemu-img", "create", "-q", "-f", "qcow2", os.path.join(gdir, "data.qcow2"), "2G"])
    # A third, small one (vdc) whose reads QEMU caps at SLOW_DISK_BPS: the one disk of the guest that a test can
    # contend for. The others are served from this machine's page cache faster than a TCG guest asks, so no
    # request ever waits in the guest's I/O scheduler there and its weights have nothing to share out.
    run(["qemu-img", "create", "-q", "-f", "qcow2", os.path.join(gdir, "slow.qcow2"), "512M"])
    port = args.port or free_port()
    append = "root=/dev/vda rw console=ttyS0 fairshare.sshkey=%s" % pub
    if args.cgroup == "v1":
        append += " systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=0"
    facts = {"name": args.name, "port": port, "key": key, "cgroup": args.cgroup, "suite": args.suite,
             "console": os.path.join(gdir, "console.log"), "pidfile": os.path.join(gdir, "qemu.pid"),
             "dir": gdir}
    accel = ["-accel", "kvm", "-cpu", "host"] if kvm_boots() else ["-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max"]
    cmd = ["qemu-system-x86_64", "-name", "fairshare-" + args.name, "-m", str(args.memory), "-smp", "2"] + accel + [
        "-kernel", os.path.join(img, "vmlinuz"), "-initrd", os.path.join(img, "initrd.img"), "-append", append,
        "-drive", "file=%s,if=virtio,format=qcow2" % overlay,
        "-drive", "file=%s,if=virtio,format=qcow2" % os.path.join(gdir, "data.qcow2"),
        "-drive", "file=%s,if=virtio,format=qcow2,throttling.bps-read=%d" % (os.path.join(gdir, "slow.qcow2"), SLOW_DISK_BPS),
        "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22" % port, "-device", "virtio-net-pci,netdev=n0",
        "-display", "none", "-serial", "file:" + facts["console"], "-monitor", "none",
        "-daemonize", "-pidfile", facts["pidfile"]]
    with open(os.path.join(gdir, "facts.json"), "w") as fh:
        json.dump(facts, fh)
    t0 = time.time()
    log("booting %s under %s (about 30-60 s to ssh)" % (args.name, "KVM" if kvm_boots() else "QEMU TCG"))
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ssh(facts, args.timeout)
    facts["boot_seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(gdir, "facts.json"), "w") as fh:
        json.dump(facts, fh)
    log("%s up in %.1f s (ssh 127.0.0.1:%d, console %s)" % (args.name, facts["boot_seconds"], port, facts["console"]))
    emit(facts)


def stop(args):
    gdir = guest_dir(args.name)
    if not os.path.exists(os.path.join(gdir, "facts.json")):
        log("%s: nothing to stop" % args.name)
        return
    facts = load(args.name)
    if alive(facts):
        subprocess.run(ssh_base(facts) + ["systemctl", "poweroff"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False)
        close_master(facts)
        deadline = time.time() + 20
        while alive(facts) and time.time() < deadline:
            time.sleep(1)
    pid = pid_of(facts)
    if pid and alive(facts):
        log("%s: killing qemu pid %d" % (args.name, pid))
        os.kill(pid, signal.SIGKILL)
        time.sleep(1)
    for f in ["overlay.qcow2", "data.qcow2", "slow.qcow2"]:
        try:
            os.unlink(os.path.join(gdir, f))
        except OSError:
            pass
    log("%s stopped (console log kept at %s)" % (args.name, facts["console"]))


def ssh(args):
    facts = load(args.name)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    sys.exit(subprocess.run(ssh_base(facts) + cmd).returncode)


def reboot(args):
    facts = load(args.name)
    subprocess.run(ssh_base(facts) + ["systemctl", "reboot"], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    close_master(facts)
    time.sleep(5)
    wait_ssh(facts, args.timeout)
    log("%s rebooted" % args.name)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("build")
    s.add_argument("--suite", choices=sorted(SUITES), default=SUITE)
    s.set_defaults(func=build)
    sub.add_parser("build-all").set_defaults(func=build_all)
    sub.add_parser("container-image").set_defaults(func=container_image)
    s = sub.add_parser("start")
    s.add_argument("name")
    s.add_argument("--suite", choices=sorted(SUITES), default=SUITE)
    s.add_argument("--cgroup", choices=["v1", "v2"], default="v2")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--memory", type=int, default=1024)
    s.add_argument("--timeout", type=int, default=240)
    s.set_defaults(func=start)
    s = sub.add_parser("stop")
    s.add_argument("name")
    s.set_defaults(func=stop)
    s = sub.add_parser("ssh")
    s.add_argument("name")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s.set_defaults(func=ssh)
    s = sub.add_parser("reboot")
    s.add_argument("name")
    s.add_argument("--timeout", type=int, default=240)
    s.set_defaults(func=reboot)
    args = p.parse_args()
    if args.action != "ssh":  # ssh passes the guest command's output through as it is
        global RESULT_FD  # pylint: disable=global-statement
        RESULT_FD = os.dup(1)
        sys.stdout.flush()
        os.dup2(2, 1)
    args.func(args)


if __name__ == "__main__":
    main()

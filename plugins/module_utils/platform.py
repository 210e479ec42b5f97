# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host platform facts: distro family, init system, cgroup layout.

Pure Python: functions take file contents (or a root path) so unit tests feed
them fixtures. Distro differences are data (FAMILIES), not if/else chains.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex

# The families the modules tell apart: which os-release IDs each takes in. What a family needs on
# a host (packages, PAM files) is the profiles role's data, in one place: roles/profiles/vars/<family>.yml.
FAMILIES = {
    "Debian": {"ids": ["debian", "ubuntu", "linuxmint", "raspbian", "pop"]},
    "RedHat": {"ids": ["rhel", "centos", "rocky", "almalinux", "fedora", "ol", "amzn"]},
    "Archlinux": {"ids": ["arch", "manjaro", "endeavouros"]},
    "Suse": {"ids": ["opensuse", "opensuse-leap", "opensuse-tumbleweed", "sles", "suse", "sled"]},
}


def parse_os_release(text):
    """os-release text -> dict of its keys (values unquoted)."""
    result = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, dummy, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:
            words = [value.strip("\"'")]
        result[key.strip()] = words[0] if words else ""
    return result


def distro_family(os_release):
    """The family (key of FAMILIES) from ID, then ID_LIKE; None if unknown."""
    candidates = [os_release.get("ID", "").lower()] + os_release.get("ID_LIKE", "").lower().split()
    for word in candidates:
        for family, data in FAMILIES.items():
            if word in data["ids"]:
                return family
    return None


def read_os_release(root="/"):
    for rel in ("etc/os-release", "usr/lib/os-release"):
        path = os.path.join(root, rel)
        if os.path.exists(path):
            with open(path) as fh:
                return parse_os_release(fh.read())
    return {}


def parse_sys_uid_max(text):
    """The highest system uid of /etc/login.defs: SYS_UID_MAX, else UID_MIN - 1, else 999."""
    values = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("SYS_UID_MAX", "UID_MIN") and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    if "SYS_UID_MAX" in values:
        return values["SYS_UID_MAX"]
    return values["UID_MIN"] - 1 if "UID_MIN" in values else 999


def read_sys_uid_max(root="/"):
    try:
        with open(os.path.join(root, "etc/login.defs")) as fh:
            return parse_sys_uid_max(fh.read())
    except (IOError, OSError):
        return 999


def systemd_version(text):
    """`systemctl --version` -> 252 (None when it cannot be read)."""
    first = (text or "").split("\n", 1)[0].split()
    if len(first) >= 2 and first[0] == "systemd":
        digits = first[1].split(".")[0].split("~")[0]
        if digits.isdigit():
            return int(digits)
    return None


def init_system(root="/"):
    """'systemd' when systemd runs as PID 1 (its runtime directory exists), else the PID 1 name."""
    if os.path.isdir(os.path.join(root, "run/systemd/system")):
        return "systemd"
    try:
        with open(os.path.join(root, "proc/1/comm")) as fh:
            return fh.read().strip() or "unknown"
    except OSError:
        return "unknown"


def parse_cgroup_layout(mountinfo, v2_controllers_text=None):
    """/proc/self/mountinfo text -> the cgroup layout.

    Returns {'version': 'v2'|'v1'|'hybrid'|'none', 'v2_root': path or None,
             'v2_controllers': [...], 'v1': {controller: mountpoint}}.
    v2_controllers_text is the cgroup.controllers of the v2 root, when known.
    """
    v1 = {}
    v2_root = None
    for line in mountinfo.splitlines():
        parts = line.split()
        if " - " not in line:
            continue
        pre, post = line.split(" - ", 1)
        pre_f, post_f = pre.split(), post.split()
        if len(pre_f) < 5 or len(post_f) < 3:
            continue
        mountpoint, fstype, options = pre_f[4], post_f[0], post_f[2].split(",")
        if fstype == "cgroup2":
            if v2_root is None or len(mountpoint) < len(v2_root):
                v2_root = mountpoint
        elif fstype == "cgroup":
            for opt in options:
                if opt in ("rw", "ro") or "=" in opt or opt.startswith("name"):
                    continue
                v1.setdefault(opt, mountpoint)
        del parts
    controllers = (v2_controllers_text or "").split()
    if v2_root and not v1:
        version = "v2"
    elif v1 and v2_root:
        version = "hybrid"
    elif v1:
        version = "v1"
    else:
        version = "none"
    return {"version": version, "v2_root": v2_root, "v2_controllers": controllers, "v1": v1}


def read_cgroup_layout(root="/"):
    with open(os.path.join(root, "proc/self/mountinfo")) as fh:
        mountinfo = fh.read()
    layout = parse_cgroup_layout(mountinfo)
    if layout["v2_root"]:
        try:
            with open(os.path.join(root, layout["v2_root"].lstrip("/"), "cgroup.controllers")) as fh:
                layout["v2_controllers"] = fh.read().split()
        except OSError:
            pass
    return layout


def controller_home(layout, controller):
    """Where a controller lives: ('v2', root) or ('v1', mountpoint) or (None, None).

    On hybrid hosts a controller bound to v1 is used there; v2 only when the
    unified hierarchy really has it (this host: cgroup2 with only hugetlb).
    """
    if controller in layout["v1"]:
        return "v1", layout["v1"][controller]
    if layout["v2_root"] and controller in layout["v2_controllers"]:
        return "v2", layout["v2_root"]
    return None, None

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live per-user usage for resource_usage: where a user's cgroup is, what its files say. Pure Python."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

# (controller, file) per cgroup version -> the usage field it gives.
USAGE_FILES = {
    "v2": [("memory", "memory.current", "memory_bytes"), ("pids", "pids.current", "tasks"),
           ("cpu", "cpu.stat", "cpu_usec")],
    "v1": [("memory", "memory.usage_in_bytes", "memory_bytes"), ("pids", "pids.current", "tasks"),
           ("cpuacct", "cpuacct.usage", "cpu_usec")],
}


def cgroupfs_user_relpath(roots, uid, parent, levels=None):
    """Where the cgroupfs backend keeps a user's cgroup: <parent>/user-UID, or <parent>/tier-NAME/user-UID for a
    user of a tier with a total (policy.user_level). roots: hierarchy roots to look in, the first that has it wins.
    levels: a dict kept across the calls for many users, so each parent is listed once, not once per user."""
    levels = {} if levels is None else levels
    rel = "%s/user-%d" % (parent, uid)
    for root in roots:
        if os.path.isdir(os.path.join(root, rel)):
            return rel
        base = os.path.join(root, parent)
        if base not in levels:
            try:
                levels[base] = sorted(d for d in os.listdir(base) if d.startswith("tier-"))
            except OSError:
                levels[base] = []
        for level in levels[base]:
            if os.path.isdir(os.path.join(base, level, "user-%d" % uid)):
                return "%s/%s/user-%d" % (parent, level, uid)
    return rel


def user_cgroup(layout, uid, parent, systemd, levels=None):
    """-> {controller: directory} of a user's cgroup (systemd slice or the cgroupfs backend's child).
    levels: cgroupfs_user_relpath's, for a call per user of many."""
    roots = [layout["v1"][c] for c in ("memory", "pids", "cpu") if c in layout["v1"]] + \
        ([layout["v2_root"]] if layout["v2_root"] else [])
    rel = ("user.slice/user-%d.slice" % uid) if systemd else cgroupfs_user_relpath(roots, uid, parent, levels)
    dirs = {}
    for ctrl in ("memory", "pids", "cpu", "cpuacct"):
        if ctrl in layout["v1"]:
            dirs[ctrl] = os.path.join(layout["v1"][ctrl], rel)
        elif layout["v2_root"] and (ctrl in layout["v2_controllers"] or ctrl == "cpu"):  # v2 always has cpu.stat
            dirs[ctrl] = os.path.join(layout["v2_root"], rel)
    return dirs


def read_usage(dirs, version, read):
    """Files of a user's cgroup -> {'memory_bytes', 'tasks', 'cpu_usec', 'oom_kills'} (None where absent)."""
    out = {"memory_bytes": None, "tasks": None, "cpu_usec": None, "oom_kills": None}
    for ctrl, fname, field in USAGE_FILES[version]:
        text = read(os.path.join(dirs[ctrl], fname)) if ctrl in dirs else None
        if text is None:
            continue
        if fname == "cpu.stat":
            match = re.search(r"^usage_usec (\d+)", text, re.M)
            out[field] = int(match.group(1)) if match else None
        elif fname == "cpuacct.usage":
            out[field] = int(text) // 1000  # ns -> us
        else:
            out[field] = int(text.split()[0])
    mem = dirs.get("memory")
    events = read(os.path.join(mem, "memory.events" if version == "v2" else "memory.oom_control")) if mem else None
    if events:
        counters = dict(line.split() for line in events.splitlines() if len(line.split()) == 2)
        out["oom_kills"] = int(counters.get("oom_kill", 0))
    return out


# A container's own cgroup, as the engines name it: docker-ID.scope, libpod-ID.scope, crio-ID.scope,
# cri-containerd-ID.scope (systemd driver), or ID below a docker/, libpod_parent/, lxc/ ... directory
# (cgroupfs driver).
_CONTAINER_SCOPE = re.compile(r"^(docker|libpod|crio|cri-containerd|podman)-([0-9a-f]{12,64})\.scope$")
_CONTAINER_DIR = re.compile(r"^[0-9a-f]{64}$")
_ENGINE_DIRS = {"docker": "docker", "libpod_parent": "podman", "lxc": "lxc", "lxc.payload": "lxc", "crio": "crio",
                "containerd": "containerd"}


def container_of(relpath):
    """A cgroup path (relative to the hierarchy's root) -> (engine, id) when it is a container's own, else None."""
    parts = relpath.strip("/").split("/")
    match = _CONTAINER_SCOPE.match(parts[-1])
    if match:
        return ("podman" if match.group(1) == "libpod" else match.group(1)), match.group(2)[:12]
    if len(parts) >= 2 and _CONTAINER_DIR.match(parts[-1]):
        for part in parts[:-1]:
            if part in _ENGINE_DIRS:
                return _ENGINE_DIRS[part], parts[-1][:12]
    return None


def containers_outside(root, inside=("user.slice",), read=None, max_depth=6, limit=100):
    """Containers whose cgroup is under none of the inside prefixes (user.slice; the cgroupfs
    backend's parent): started by a root engine (docker, rootful podman, LXC), so outside every
    user's limits. Walks the hierarchy at root (v2, or v1's memory) no deeper than max_depth and never
    into a container. -> ([{cgroup, engine, id, memory_bytes}], more: bool) - at most limit."""
    found, more = [], False
    for current, dirs, _files in os.walk(root):
        rel = os.path.relpath(current, root)
        rel = "" if rel == "." else rel
        depth = rel.count("/") + 1 if rel else 0
        keep = []
        for name in sorted(dirs):
            sub = "%s/%s" % (rel, name) if rel else name
            if any(sub == p or sub.startswith(p + "/") for p in inside):
                continue
            what = container_of(sub)
            if what:
                if len(found) >= limit:
                    more = True
                    continue
                text = read(os.path.join(root, sub, "memory.current")) if read else None
                if read and text is None:
                    text = read(os.path.join(root, sub, "memory.usage_in_bytes"))
                found.append({"cgroup": "/" + sub, "engine": what[0], "id": what[1],
                              "memory_bytes": int(text) if text and text.strip().isdigit() else None})
            elif depth + 1 < max_depth:
                keep.append(name)
        dirs[:] = keep
    return found, more


def parse_tc_class_stats(text):
    """`tc -s class show dev X` -> {classid: bytes sent}."""
    stats, current = {}, None
    for line in text.splitlines():
        head = re.match(r"^class \S+ (\S+) ", line)
        if head:
            current = head.group(1)
            continue
        sent = re.match(r"^\s*Sent (\d+) bytes", line)
        if sent and current:
            stats[current] = int(sent.group(1))
            current = None
    return stats

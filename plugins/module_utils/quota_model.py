# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The model of disk_quota: entries, mounts, fstab edits and the quota tools' output.

Pure Python, no AnsibleModule import. Parsers take the text the tools print
(repquota, quotaon -p, xfs_quota state, btrfs qgroup show, tune2fs -l) so unit
tests feed them real output captured on a Debian 12 guest.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.units import UNLIMITED, parse_size

SUPPORTED_FS = ("ext4", "xfs", "btrfs")
LIMIT_KEYS = ("block_soft", "block_hard", "inode_soft", "inode_hard")
TYPE_FLAG = {"user": "-u", "group": "-g", "project": "-P"}
# Mount options that turn quotas on, per filesystem and quota type.
MOUNT_OPTIONS = {
    "ext4": {"user": "usrquota", "group": "grpquota", "project": "prjquota"},
    "xfs": {"user": "uquota", "group": "gquota", "project": "pquota"},
}
# Other spellings the kernel accepts for the same switch (already on: nothing to add).
MOUNT_ALIASES = {
    "usrquota": ("usrquota", "usrjquota", "quota"), "grpquota": ("grpquota", "grpjquota"),
    "prjquota": ("prjquota",), "uquota": ("uquota", "usrquota", "quota", "uqnoenforce", "qnoenforce"),
    "gquota": ("gquota", "grpquota", "gqnoenforce"), "pquota": ("pquota", "prjquota", "pqnoenforce"),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def normalize_entry(entry, where, qtype, fstype):
    """One quotas[] entry -> {'name', 'id', 'paths', 'limits': {key: bytes or inodes}, 'state'}.

    Limits are bytes (blocks) and counts (inodes); 0 means no limit. Raises
    InputError naming '<where>.<field>'.
    """
    name = entry.get("name")
    if name in (None, ""):
        raise InputError("%s.name: a %s name is required" % (where, qtype))
    name = str(name)
    if not _NAME_RE.match(name):
        raise InputError("%s.name: %r is not a valid %s name" % (where, name, qtype))
    limits = {}
    for key in LIMIT_KEYS:
        value = entry.get(key)
        if value is None:
            limits[key] = 0
            continue
        field = "%s.%s" % (where, key)
        if key.startswith("block"):
            parsed = 0 if str(value).strip().lower() == "none" else parse_size(field, value)
        else:
            parsed = _parse_count(field, value)
        limits[key] = 0 if parsed == UNLIMITED else parsed
    for kind in ("block", "inode"):
        soft, hard = limits[kind + "_soft"], limits[kind + "_hard"]
        if soft and hard and soft > hard:
            raise InputError("%s.%s_soft: %s is above %s_hard %s"
                             % (where, kind, entry.get(kind + "_soft"), kind, entry.get(kind + "_hard")))
    for key in ("block_soft", "block_hard"):
        if limits[key] % 1024:
            raise InputError("%s.%s: %r is not a whole number of KiB (quota limits are kept in 1K blocks)"
                             % (where, key, entry.get(key)))
    paths = [check_project_path("%s.paths[%d]" % (where, i), p) for i, p in enumerate(entry.get("paths") or [])]
    if qtype == "project":
        if entry.get("id") is not None:
            ident = _parse_count("%s.id" % where, entry["id"])
            if ident == UNLIMITED or ident < 1 or ident > 4294967294:
                raise InputError("%s.id: %r is not a project id; use 1 to 4294967294" % (where, entry["id"]))
        else:
            ident = None
        if fstype == "btrfs" and len(paths) != 1:
            raise InputError("%s.paths: a btrfs project is one subvolume; give exactly one path" % where)
    else:
        ident = None
        if paths:
            raise InputError("%s.paths: only project quotas take paths" % where)
    return {"name": name, "id": ident, "paths": paths, "limits": limits, "state": entry.get("state") or "present"}


def check_project_path(field, value, mountpoint=None):
    """A project directory: absolute, with no '.' or '..' part (one could climb out of the
    filesystem whose quota is set), and, given the mountpoint, on that filesystem. -> the path."""
    text = str(value)
    parts = text.strip("/").split("/")
    if not text.startswith("/") or any(part in (".", "..") for part in parts) or "//" in text.rstrip("/"):
        raise InputError("%s: %r is not an absolute path without '.' or '..' parts; give the directory itself, "
                         "like /srv/projects/alpha" % (field, value))
    path = text.rstrip("/") or "/"
    if mountpoint is not None and not (mountpoint == "/" or path == mountpoint or path.startswith(mountpoint + "/")):
        raise InputError("%s: %r is not on %s, the filesystem of path" % (field, value, mountpoint))
    return path


def _parse_count(field, value):
    text = str(value).strip().lower()
    if text in ("max", "infinity", "unlimited", "none"):
        return UNLIMITED
    if isinstance(value, bool) or not text.isdigit():
        raise InputError("%s: %r is not a whole number" % (field, value))
    return int(text)


# --------------------------------------------------------------------------- mounts and fstab

def _unescape(text):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _inside(path, mountpoint):
    return path == mountpoint or mountpoint == "/" or path.startswith(mountpoint.rstrip("/") + "/")


def find_mount_of(mounts, path):
    """The entry of a mounts list (resource_facts: mountpoint, fstype, ...) that holds path, or None."""
    found = [m for m in mounts if _inside(path, m["mountpoint"])]
    return max(found, key=lambda m: len(m["mountpoint"])) if found else None


def find_mount(mountinfo, path):
    """The mount holding path: {'mountpoint', 'fstype', 'source', 'options'} (longest prefix wins)."""
    best = None
    for line in mountinfo.splitlines():
        if " - " not in line:
            continue
        pre, post = line.split(" - ", 1)
        pre_f, post_f = pre.split(), post.split()
        mountpoint = _unescape(pre_f[4])
        if _inside(path, mountpoint) and (best is None or len(mountpoint) >= len(best["mountpoint"])):
            best = {"mountpoint": mountpoint, "fstype": post_f[0], "source": _unescape(post_f[1]),
                    "options": pre_f[5].split(",") + post_f[2].split(",")}
    return best


def has_option(options, wanted):
    names = set(opt.split("=", 1)[0] for opt in options)
    return any(alias in names for alias in MOUNT_ALIASES.get(wanted, (wanted,)))


def fstab_add_option(fstab, mountpoint, option):
    """fstab text -> (new text, found, changed): `option` added to the line of mountpoint."""
    lines = fstab.splitlines(True)
    found = changed = False
    for i, line in enumerate(lines):
        fields = line.split()
        if not fields or fields[0].startswith("#") or len(fields) < 4:
            continue
        if _unescape(fields[1]).rstrip("/") != mountpoint.rstrip("/") and not (fields[1] == "/" == mountpoint):
            continue
        found = True
        opts = fields[3].split(",")
        if has_option(opts, option):
            continue
        fields[3] = ",".join(opts + [option])
        lines[i] = "\t".join(fields) + ("\n" if line.endswith("\n") else "")
        changed = True
    return "".join(lines), found, changed


# --------------------------------------------------------------------------- quota tools output

_GRACE_RE = re.compile(r"Block grace time: (\S+); Inode grace time: (\S+)")


def grace_seconds(text):
    """repquota's '7days' / '24:00' / '00:01' -> seconds."""
    match = re.match(r"^(\d+)days?$", text)
    if match:
        return int(match.group(1)) * 86400
    match = re.match(r"^(\d+):(\d{2})$", text)
    if match:
        return int(match.group(1)) * 3600 + int(match.group(2)) * 60
    match = re.match(r"^(\d+)seconds?$", text)
    if match:
        return int(match.group(1))
    return None


def parse_repquota(text):
    """`repquota -v -n -p -<t> MOUNT` -> ({id: usage and limits in bytes/inodes}, grace dict)."""
    entries, grace = {}, {}
    for line in text.splitlines():
        match = _GRACE_RE.search(line)
        if match:
            grace = {"block": grace_seconds(match.group(1)), "inode": grace_seconds(match.group(2))}
            continue
        fields = line.split()
        if len(fields) != 10 or not fields[0].startswith("#"):
            continue
        try:
            ident = int(fields[0][1:])
            nums = [int(f) for f in fields[2:]]
        except ValueError:
            continue
        entries[ident] = {"block_used": nums[0] * 1024, "block_soft": nums[1] * 1024, "block_hard": nums[2] * 1024,
                          "inode_used": nums[4], "inode_soft": nums[5], "inode_hard": nums[6]}
    return entries, grace


def parse_xfs_state(text):
    """`xfs_quota -x -c 'state -<t>' MOUNT` -> {'accounting': bool, 'enforcement': bool}."""
    acc = re.search(r"Accounting: (ON|OFF)", text)
    enf = re.search(r"Enforcement: (ON|OFF)", text)
    return {"accounting": bool(acc and acc.group(1) == "ON"), "enforcement": bool(enf and enf.group(1) == "ON")}


def parse_tune2fs_features(text):
    match = re.search(r"^Filesystem features:\s+(.*)$", text, re.M)
    return match.group(1).split() if match else []


def parse_lsattr_project(text):
    """`lsattr -pd PATH` -> (project id, inherit flag P set)."""
    fields = text.split()
    if len(fields) < 3:
        return None, False
    return int(fields[0]), "P" in fields[1]


def parse_btrfs_qgroups(text):
    """`btrfs qgroup show --raw -re MOUNT` -> {'0/256': {'rfer', 'excl', 'max_rfer', 'max_excl'}} (0 = none)."""
    groups = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not re.match(r"^\d+/\d+$", fields[0]):
            continue
        vals = [0 if f == "none" else int(f) for f in fields[1:5]]
        groups[fields[0]] = {"rfer": vals[0], "excl": vals[1], "max_rfer": vals[2], "max_excl": vals[3]}
    return groups


def parse_subvolume_id(text):
    match = re.search(r"Subvolume ID:\s+(\d+)", text)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------- /etc/projects, /etc/projid

def parse_project_files(projid_text, projects_text):
    """-> ({name: id}, {id: [paths]}) from /etc/projid and /etc/projects."""
    names, paths = {}, {}
    for line in (projid_text or "").splitlines():
        if ":" in line and not line.startswith("#"):
            name, ident = line.split(":", 1)
            if ident.strip().isdigit():
                names[name.strip()] = int(ident)
    for line in (projects_text or "").splitlines():
        if ":" in line and not line.startswith("#"):
            ident, path = line.split(":", 1)
            if ident.strip().isdigit():
                paths.setdefault(int(ident), []).append(path.strip())
    return names, paths


def render_project_files(projid_text, projects_text, ours, wanted):
    """Rewrite our lines only.

    ours: {name: id} we added earlier (from our state file); wanted: {name: (id, [paths])}.
    Lines of other projects stay as they are. Returns (projid, projects).
    """
    old_ids = set(ours.values())
    keep_projid = [l for l in (projid_text or "").splitlines()
                   if not (":" in l and l.split(":", 1)[0].strip() in ours)]
    keep_projects = [l for l in (projects_text or "").splitlines()
                     if not (":" in l and l.split(":", 1)[0].strip().isdigit() and int(l.split(":", 1)[0]) in old_ids)]
    projid = keep_projid + ["%s:%d" % (name, ident) for name, (ident, _p) in sorted(wanted.items())]
    projects = keep_projects + ["%d:%s" % (ident, path) for _n, (ident, paths) in sorted(wanted.items())
                                for path in paths]
    return "\n".join(projid) + "\n" if projid else "", "\n".join(projects) + "\n" if projects else ""


def allocate_project_ids(entries, known, taken):
    """Give each project without an id the id it has in /etc/projid, else the next free one from 1000."""
    used = set(taken) | set(e["id"] for e in entries if e["id"])
    nxt = 1000
    for entry in entries:
        if entry["id"]:
            continue
        if entry["name"] in known:
            entry["id"] = known[entry["name"]]
            continue
        while nxt in used:
            nxt += 1
        entry["id"] = nxt
        used.add(nxt)
    return entries

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backends of disk_quota: quota tools (ext4, XFS) and btrfs qgroups.

No AnsibleModule import: a backend gets the Host seam (run, read, write_atomic,
backup, check_mode). Limits are only ever set; no file is ever removed or moved.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.fairshare.resources.plugins.module_utils.errors import HostError
from ansible_collections.fairshare.resources.plugins.module_utils.quota_model import (
    LIMIT_KEYS, MOUNT_OPTIONS, TYPE_FLAG, fstab_add_option, has_option, parse_btrfs_qgroups, parse_lsattr_project,
    parse_project_files, parse_repquota, parse_subvolume_id, parse_tune2fs_features,
    parse_xfs_state, render_project_files,
)
from ansible_collections.fairshare.resources.plugins.module_utils.units import format_size

STATE_FILE = "/etc/fairshare/quota-projects.json"
XFS_LETTER = {"user": "u", "group": "g", "project": "p"}


def human(limits):
    return dict((k, (format_size(v) if k.startswith("block") else v) if v else None) for k, v in limits.items())


class _Backend(object):
    """Shared flow: enable -> prepare -> read -> compare -> set -> grace -> read back."""

    def __init__(self, host, mount, qtype, fstab="/etc/fstab"):
        self.host, self.mount, self.qtype, self.fstab = host, mount, qtype, fstab
        self.mp = mount["mountpoint"]
        self.actions, self.warnings, self.diff = [], [], []
        self.reboot_required = False

    def act(self, description, argv=None, data=None):
        """Record an action; run it unless in check mode."""
        self.actions.append(description)
        if argv and not self.host.check_mode:
            return self.host.change(argv, data=data)
        return ""

    def add_fstab_option(self, option):
        text = self.host.read(self.fstab) or ""
        new, found, changed = fstab_add_option(text, self.mp, option)
        if not found:
            self.warnings.append("%s is not in %s: quotas stay on until it is unmounted" % (self.mp, self.fstab))
        if changed:
            self.diff.append({"before_header": self.fstab, "after_header": self.fstab, "before": text, "after": new})
            self.actions.append("add %s to the options of %s in %s" % (option, self.mp, self.fstab))
            if not self.host.check_mode:
                self.host.backup(self.fstab)
                self.host.write_atomic(self.fstab, new)
        return changed

    def validate(self, entries, enable):
        """Everything that can refuse the call, before anything changes."""
        self.was_enforced = self.enforced()
        if not self.was_enforced:
            if not enable:
                raise HostError("path: %s quotas are off on %s (%s); set enable: true to turn them on"
                                % (self.qtype, self.mp, self.mount["fstype"]))
            self.check_enable()
        self.check_paths(entries)

    def check_enable(self):
        pass

    def check_paths(self, entries):
        for entry in entries:
            for path in entry["paths"]:
                if not (path + "/").startswith(self.mp.rstrip("/") + "/"):
                    raise HostError("quotas[%s].paths: %r is not inside %s" % (entry["name"], path, self.mp))

    def apply(self, entries, grace, exclusive):
        enforced = self.was_enforced
        if not enforced:
            self.enable()
        pending = self.reboot_required
        self.prepare(entries)
        current, live_grace = ({}, {}) if pending or (self.host.check_mode and not enforced) else self.read(entries)
        results, changes = [], []
        for entry in entries:
            have = current.get(entry["key"], {})
            before = dict((k, have.get(k, 0)) for k in LIMIT_KEYS)
            after = entry["limits"] if entry["state"] == "present" else dict((k, 0) for k in LIMIT_KEYS)
            res = {"name": entry["name"], "id": entry["id"], "state": entry["state"], "paths": entry["paths"],
                   "before": human(before), "after": human(after), "changed": before != after}
            if res["changed"]:
                changes.append((entry, after))
                self.diff.append({"before_header": "%s %s" % (self.qtype, entry["name"]),
                                  "after_header": "%s %s" % (self.qtype, entry["name"]),
                                  "before": json.dumps(res["before"], sort_keys=True) + "\n",
                                  "after": json.dumps(res["after"], sort_keys=True) + "\n"})
            results.append(res)
        cleared = []
        if exclusive:
            listed = set(e["key"] for e in entries)
            for key, have in sorted(current.items()):
                if key not in listed and key not in self.never_clear and any(have.get(k) for k in LIMIT_KEYS):
                    cleared.append({"id": key, "before": human(dict((k, have[k]) for k in LIMIT_KEYS))})
                    changes.append(({"key": key, "name": str(key), "paths": []}, dict((k, 0) for k in LIMIT_KEYS)))
        if changes and not pending:
            self.set_limits(changes)
        if grace and not pending:
            self.set_grace(grace, live_grace)
        if self.actions and not self.host.check_mode and not pending:
            current, live_grace = self.read(entries)
        for entry, res in zip(entries, results):
            have = current.get(entry["key"], {})
            res["usage"] = {"blocks": have.get("block_used", 0), "inodes": have.get("inode_used", 0)}
            if not self.host.check_mode and not pending:
                res["verified"] = human(dict((k, have.get(k, 0)) for k in LIMIT_KEYS))
        return {"quotas": results, "cleared": cleared, "grace": live_grace, "enforced": enforced if self.host.check_mode else not pending,
                "reboot_required": self.reboot_required}

    never_clear = (0,)


class QuotaToolsBackend(_Backend):
    """ext4 and XFS through quotaon/quotacheck/setquota/repquota (and xfs_quota for XFS specifics)."""

    def enforced(self):
        # xfs_quota reads accounting and enforcement apart, also on ext4 (-f: foreign
        # filesystem); `quotaon -p` says "on" for ext4 accounting without enforcement.
        self.state = parse_xfs_state(self.host.run(["xfs_quota", "-f", "-x", "-c", "state -" + XFS_LETTER[self.qtype],
                                                    self.mp]))
        return self.state["accounting"] and self.state["enforcement"]

    def check_enable(self):
        """What enabling needs, checked before anything changes (errors name the fix)."""
        if self.mount["fstype"] != "ext4":
            return
        features = parse_tune2fs_features(self.host.run(["tune2fs", "-l", self.mount["source"]]))
        self.ext4_features = features
        if self.qtype == "project" and "project" not in features:
            raise HostError("path: ext4 project quotas need the 'project' feature on %s; it can only be added "
                            "unmounted (tune2fs -O project,quota -Q prjquota %s)" % (self.mount["source"], self.mount["source"]))

    def enable(self):
        option = MOUNT_OPTIONS[self.mount["fstype"]][self.qtype]
        flag = TYPE_FLAG[self.qtype]
        if self.mount["fstype"] == "xfs":
            self.add_fstab_option(option)
            if not self.state["accounting"]:
                # XFS turns accounting on only at mount time.
                self.reboot_required = True
                self.warnings.append("XFS %s quota accounting starts at the next mount of %s with %s (%s): "
                                     "reboot or unmount and mount it; limits are set then"
                                     % (self.qtype, self.mp, option, "root filesystem" if self.mp == "/" else "not live"))
                return
            self.act("xfs_quota enable -%s %s" % (XFS_LETTER[self.qtype], self.mp),
                     ["xfs_quota", "-x", "-c", "enable -" + XFS_LETTER[self.qtype], self.mp])
            return
        # ext4: the mount option makes it last (systemd's fstab generator runs quotaon at
        # boot for such mounts); a filesystem without the quota feature also needs the
        # option live and quota files made by quotacheck before quotaon.
        self.add_fstab_option(option)
        feature = "project" if self.qtype == "project" else "quota"
        if feature not in self.ext4_features:
            if not has_option(self.mount["options"], option):
                self.act("remount %s with %s" % (self.mp, option), ["mount", "-o", "remount," + option, self.mp])
            if not self.state["accounting"]:
                self.act("quotacheck %s" % self.mp, ["quotacheck", "-c", "-m", flag, self.mp])
        self.act("quotaon %s %s" % (flag, self.mp), ["quotaon", flag, self.mp])

    def check_paths(self, entries):
        _Backend.check_paths(self, entries)
        for entry in entries:
            for path in entry["paths"]:
                if not os.path.isdir(path):
                    raise HostError("quotas[%s].paths: %r is not a directory" % (entry["name"], path))

    def prepare(self, entries):
        if self.qtype != "project":
            return
        for entry in entries:
            if entry["state"] != "present":
                continue
            for path in entry["paths"]:
                have_id, inherit = parse_lsattr_project(self.host.run(["lsattr", "-pd", path]))
                if have_id == entry["id"] and inherit:
                    continue
                if self.mount["fstype"] == "xfs":
                    self.act("project %d on %s" % (entry["id"], path),
                             ["xfs_quota", "-x", "-c", "project -s -p %s %d" % (path, entry["id"]), self.mp])
                else:
                    self.act("project %d on %s" % (entry["id"], path),
                             ["chattr", "-R", "-p", str(entry["id"]), "+P", path])

    def read(self, entries):
        out = self.host.run(["repquota", "-v", "-n", "-p", TYPE_FLAG[self.qtype], self.mp])
        return parse_repquota(out)

    def set_limits(self, changes):
        lines = "".join("%d %d %d %d %d\n" % (entry["key"], lim["block_soft"] // 1024, lim["block_hard"] // 1024,
                                              lim["inode_soft"], lim["inode_hard"]) for entry, lim in changes)
        self.act("setquota %d %s limits on %s" % (len(changes), self.qtype, self.mp),
                 ["setquota", "-b", TYPE_FLAG[self.qtype], self.mp], data=lines)

    def set_grace(self, grace, live):
        wanted = {"block": grace.get("block") or live.get("block"), "inode": grace.get("inode") or live.get("inode")}
        if wanted == live:
            return
        self.diff.append({"before_header": "grace", "after_header": "grace",
                          "before": json.dumps(live, sort_keys=True) + "\n", "after": json.dumps(wanted, sort_keys=True) + "\n"})
        self.act("grace %s on %s" % (wanted, self.mp),
                 ["setquota", "-t", TYPE_FLAG[self.qtype], str(wanted["block"]), str(wanted["inode"]), self.mp])


class BtrfsBackend(_Backend):
    """btrfs: a project is a subvolume with a qgroup limit on referenced bytes."""

    def check_enable(self):
        if self.qtype != "project":
            raise HostError("type: %r quotas don't exist on btrfs (%s); btrfs limits subvolumes: use type: project "
                            "with one subvolume path per project" % (self.qtype, self.mp))

    def check_paths(self, entries):
        _Backend.check_paths(self, entries)
        for entry in entries:
            path = entry["paths"][0]
            if os.path.exists(path):
                rc, out, err = self.host.run(["btrfs", "subvolume", "show", path], check=False)
                if rc != 0:
                    raise HostError("quotas[%s].paths: %r is a plain directory, not a subvolume; btrfs limits "
                                    "subvolumes, and turning it into one would move its data: create a subvolume "
                                    "and move the data yourself" % (entry["name"], path))

    def enforced(self):
        rc, out, err = self.host.run(["btrfs", "qgroup", "show", "--raw", "-re", self.mp], check=False)
        return rc == 0

    def enable(self):
        self.act("btrfs quota enable %s" % self.mp, ["btrfs", "quota", "enable", self.mp])
        self.act("btrfs quota rescan -w %s" % self.mp, ["btrfs", "quota", "rescan", "-w", self.mp])

    def prepare(self, entries):
        for entry in entries:
            path = entry["paths"][0]
            if entry["state"] == "present" and not os.path.exists(path):
                self.act("btrfs subvolume create %s" % path, ["btrfs", "subvolume", "create", path])
            for key in ("block_soft", "inode_soft", "inode_hard"):
                if entry["limits"][key]:
                    self.warnings.append("%s: btrfs qgroups have no %s; only block_hard is enforced" % (entry["name"], key))

    never_clear = ("0/5",)

    def read(self, entries):
        for entry in entries:
            path = entry["paths"][0]
            if os.path.exists(path):
                entry["id"] = parse_subvolume_id(self.host.run(["btrfs", "subvolume", "show", path]))
                entry["key"] = "0/%d" % entry["id"]
        groups = parse_btrfs_qgroups(self.host.run(["btrfs", "qgroup", "show", "--raw", "-re", self.mp]))
        current = {}
        for key, grp in groups.items():
            if key.startswith("0/"):
                current[key] = {"block_used": grp["rfer"], "block_soft": 0, "block_hard": grp["max_rfer"],
                                "inode_used": 0, "inode_soft": 0, "inode_hard": 0}
        return current, {}

    def set_limits(self, changes):
        for entry, lim in changes:
            size = str(lim["block_hard"]) if lim["block_hard"] else "none"
            target = entry["paths"][0] if entry["paths"] else entry["key"]
            argv = ["btrfs", "qgroup", "limit", size, target] + ([] if entry["paths"] else [self.mp])
            self.act("btrfs qgroup limit %s %s" % (size, target), argv)

    def set_grace(self, grace, live):
        self.warnings.append("btrfs has no grace periods; block_grace and inode_grace are ignored on %s" % self.mp)


def load_state(host, path=STATE_FILE):
    try:
        return json.loads(host.read(path) or "{}")
    except ValueError:
        return {}


def sync_project_files(host, entries, state_path=STATE_FILE, projid="/etc/projid", projects="/etc/projects"):
    """Our entries in /etc/projid and /etc/projects (only ours, remembered in the state file).

    Returns the diffs; writes unless check mode.
    """
    state = load_state(host, state_path)
    ours = state.get("projects", {})
    wanted = dict(ours)
    for entry in entries:
        if entry["state"] == "present":
            wanted[entry["name"]] = entry["id"]
        else:
            wanted.pop(entry["name"], None)
    paths = dict((e["name"], e["paths"]) for e in entries)
    _old_names, old_paths = parse_project_files(host.read(projid), host.read(projects))
    full = dict((name, (ident, paths.get(name, old_paths.get(ident, [])))) for name, ident in wanted.items())
    new_projid, new_projects = render_project_files(host.read(projid), host.read(projects), ours, full)
    diffs = []
    for path, new in ((projid, new_projid), (projects, new_projects)):
        old = host.read(path) or ""
        if old != new:
            diffs.append({"before_header": path, "after_header": path, "before": old, "after": new})
            if not host.check_mode:
                host.write_atomic(path, new)
    if wanted != ours and not host.check_mode:
        state["projects"] = wanted
        host.write_atomic(state_path, json.dumps(state, indent=1, sort_keys=True) + "\n", mode=0o600)
    return diffs


def known_project_ids(host, projid="/etc/projid"):
    names, dummy = parse_project_files(host.read(projid), "")
    return names

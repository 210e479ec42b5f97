#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: disk_quota
short_description: User, group and project disk quotas on ext4, XFS and btrfs
version_added: "0.1.0"
description:
  - Sets block and inode limits for a B(list) of users, groups or projects on one filesystem
    in one call, the same way on ext4, XFS and btrfs, and turns quotas on where they are off
    (O(enable=true)).
  - ext4 and XFS go through the quota tools (C(quotaon), C(quotacheck), C(setquota) in batch
    mode, C(repquota)) and C(xfs_quota) for XFS specifics; btrfs through C(btrfs quota) and
    C(btrfs qgroup), where a project is a subvolume.
  - Quotas never delete, move or change a user's files; removing a limit only lifts it.
  - Everything is validated, and what can't be done is refused, before anything changes.
author:
  - fairshare.resources contributors (@fairshare)
attributes:
  check_mode:
    support: full
    description: Reads the current state and reports every action it would take; changes nothing.
  diff_mode:
    support: full
    description: Limits before and after per entry, grace periods, and fstab, /etc/projid, /etc/projects text.
options:
  path:
    description: A mount point, or a path inside the filesystem to manage.
    type: path
    required: true
  type:
    description: Whose usage is limited. btrfs has only V(project) (one subvolume per project).
    type: str
    choices: [user, group, project]
    default: user
  enable:
    description:
      - Turn quotas on where they are off. ext4 - the mount option in fstab (atomic edit, backup),
        a remount, C(quotacheck) and C(quotaon), or just C(quotaon) where the filesystem has the
        C(quota)/C(project) feature. XFS - the mount option in fstab; accounting starts only at the
        next mount, reported as RV(reboot_required). btrfs - C(btrfs quota enable).
      - With V(false), a filesystem without quotas is an error.
    type: bool
    default: false
  block_grace:
    description: Grace period over the block soft limit (C(7d), C(12h), C(90m)); whole minutes up to 48h, whole days above.
    type: str
  inode_grace:
    description: Grace period over the inode soft limit, same forms as O(block_grace).
    type: str
  quotas:
    description: The entries and their limits. Sizes are C(512M), C(20G), bytes; C(0) or C(none) is no limit.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - A user or group name, or a project name (kept in C(/etc/projid)).
          - With O(quotas[].state=absent) also the decimal UID or GID of a user or group that no longer exists, whose
            limits are lifted by id (the profiles role takes back a removed user's quota that way).
        type: str
        required: true
      id:
        description: The project id (projects only); default - the id in C(/etc/projid), else the next free from 1000.
        type: int
      paths:
        description:
          - Project directories (projects only). ext4 and XFS - existing directories that get the project
            id and the inherit flag. btrfs - exactly one subvolume, created when missing.
        type: list
        elements: path
      block_soft:
        description: Soft block limit; over it for longer than the grace period, writes fail.
        type: str
      block_hard:
        description: Hard block limit; writes past it fail with EDQUOT.
        type: str
      inode_soft:
        description: Soft limit on the number of files.
        type: str
      inode_hard:
        description: Hard limit on the number of files.
        type: str
      state:
        description: V(absent) lifts this entry's limits (its files stay).
        type: str
        choices: [present, absent]
        default: present
  exclusive:
    description: Lift the limits of every entry of this type on the filesystem that is not listed (files stay).
    type: bool
    default: false
notes:
  - root is not stopped by ext4 user limits (CAP_SYS_RESOURCE); XFS project limits stop root too.
  - Project entries in C(/etc/projid) and C(/etc/projects) that this module did not add are left alone;
    the ones it added are remembered in C(/etc/fairshare/quota-projects.json).
seealso:
  - name: setquota(8)
    description: The tool that sets ext4 and XFS limits.
    link: https://man7.org/linux/man-pages/man8/setquota.8.html
"""

EXAMPLES = r"""
- name: Home quotas for every user of the host, in one call
  fairshare.resources.disk_quota:
    path: /home
    type: user
    enable: true
    block_grace: 7d
    quotas:
      - {name: alice, block_soft: 20G, block_hard: 25G, inode_hard: 1000000}
      - {name: bob, block_soft: 10G, block_hard: 12G}

- name: A shared project directory limited to 500G on XFS
  fairshare.resources.disk_quota:
    path: /srv/data
    type: project
    quotas:
      - {name: genomics, id: 2001, paths: [/srv/data/genomics], block_hard: 500G}

- name: One btrfs subvolume per project (created when missing)
  fairshare.resources.disk_quota:
    path: /srv/btrfs
    type: project
    enable: true
    quotas:
      - {name: scratch, paths: [/srv/btrfs/scratch], block_hard: 100G}
"""

RETURN = r"""
mount:
  description: The filesystem managed.
  returned: when the path is on a filesystem disk_quota manages
  type: dict
  sample: {mountpoint: /home, fstype: ext4, source: /dev/sda3}
note:
  description:
    - Why nothing was done - a call that only lifts limits (every entry V(absent), no O(enable), no O(exclusive)) on
      a path that does not exist, is not on ext4, XFS or btrfs, or has no quotas turned on has nothing to lift.
  returned: when so
  type: str
  sample: "nothing to lift: path: '/scratch' does not exist"
enforced:
  description: Whether quotas of this type are enforced on the filesystem after the call.
  returned: always
  type: bool
reboot_required:
  description: Whether quotas start only at the next mount (XFS accounting, or a root filesystem).
  returned: always
  type: bool
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
grace:
  description: Grace periods in seconds now in force (block, inode).
  returned: always
  type: dict
quotas:
  description: One entry per listed quota.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The user, group or project name.
      type: str
    id:
      description: The uid, gid, project id or btrfs subvolume id.
      type: int
    before:
      description: Limits before (block sizes in human units, counts for inodes; null is no limit).
      type: dict
    after:
      description: Limits asked for.
      type: dict
    verified:
      description: Limits read back from the filesystem after the change.
      type: dict
    usage:
      description: Blocks (bytes) and inodes in use.
      type: dict
      sample: {blocks: 1048576, inodes: 12}
    changed:
      description: Whether this entry's limits changed.
      type: bool
cleared:
  description: Entries not listed whose limits were lifted (O(exclusive)).
  returned: always
  type: list
  elements: dict
changes_made:
  description:
    - Only when the module failed. What it had altered on the host before the failure (files
      written or removed, cgroup directories and kernel files written, commands that change
      state), in order; the first 50. C(changed) is true when this list is not empty.
  returned: failed
  type: list
  elements: str
  sample: ["mkdir /sys/fs/cgroup/memory/fairshare/user-2001", "write /sys/fs/cgroup/memory/fairshare/user-2001/memory.limit_in_bytes"]
changes_made_count:
  description: Only when the module failed. How many changes C(changes_made) would list without its cap.
  returned: failed
  type: int
  sample: 2
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fairshare.resources.plugins.module_utils.host import Host
from ansible_collections.fairshare.resources.plugins.module_utils.quota_backend import (
    BtrfsBackend, QuotaToolsBackend, known_project_ids, sync_project_files,
)
from ansible_collections.fairshare.resources.plugins.module_utils.accounts import Accounts, NotFound
from ansible_collections.fairshare.resources.plugins.module_utils.quota_model import (
    SUPPORTED_FS, allocate_project_ids, check_project_path, find_mount, normalize_entry,
)
from ansible_collections.fairshare.resources.plugins.module_utils.errors import FairshareError, InputError
from ansible_collections.fairshare.resources.plugins.module_utils.units import parse_grace

ENTRY_SPEC = dict(
    name=dict(type="str", required=True), id=dict(type="int"), paths=dict(type="list", elements="path"),
    block_soft=dict(type="str"), block_hard=dict(type="str"), inode_soft=dict(type="str"),
    inode_hard=dict(type="str"), state=dict(type="str", choices=["present", "absent"], default="present"),
)
LOOKUP = {"user": ("user", "pw_uid", "a user"), "group": ("group", "gr_gid", "a group")}


def lifting_only(params):
    """The call only lifts limits (every entry state: absent, no enable, no exclusive): a path that has
    no quotas to lift is then no error (the profiles role lifts a removed user's quota on a filesystem
    the policy may have dropped)."""
    return bool(params["quotas"]) and all(q["state"] == "absent" for q in params["quotas"]) and \
        not params["enable"] and not params["exclusive"]


def resolve(params, host):
    """Validate every input; -> (mount, entries, grace). Nothing changes here."""
    path = os.path.realpath(params["path"])
    if not os.path.exists(path):
        raise InputError("path: %r does not exist" % params["path"])
    with open("/proc/self/mountinfo") as fh:
        mount = find_mount(fh.read(), path)
    if mount["fstype"] not in SUPPORTED_FS:
        raise InputError("path: %r is on %s (%s); disk_quota manages %s"
                         % (params["path"], mount["fstype"], mount["mountpoint"], ", ".join(SUPPORTED_FS)))
    qtype = params["type"]
    if mount["fstype"] == "btrfs" and qtype != "project":
        raise InputError("type: %r quotas don't exist on btrfs (%s); btrfs limits subvolumes: use type: project "
                         "with one subvolume path per project" % (qtype, mount["mountpoint"]))
    entries, seen = [], set()
    accounts = Accounts(expected=len(params["quotas"]) if qtype == "user" else 0)
    for index, raw in enumerate(params["quotas"]):
        where = "quotas[%d]" % index
        entry = normalize_entry(raw, where, qtype, mount["fstype"])
        if qtype in LOOKUP:
            getter, attr, what = LOOKUP[qtype]
            try:
                entry["id"] = getattr(getattr(accounts, getter)(entry["name"]), attr)
            except NotFound:
                if not (entry["state"] == "absent" and str(entry["name"]).isdigit()):
                    raise InputError("%s.name: %r is not %s on this host" % (where, entry["name"], what))
                entry["id"] = int(entry["name"])  # limits of a uid/gid whose user or group is gone: lifted by id
        for i, project_dir in enumerate(entry["paths"]):
            field = "%s.paths[%d]" % (where, i)
            check_project_path(field, project_dir, mount["mountpoint"])
            # a btrfs project's subvolume is made by the module; an existing path must be the directory itself
            if os.path.lexists(project_dir) and (not os.path.isdir(project_dir) or
                                                 os.path.realpath(project_dir) != project_dir):
                raise InputError("%s: %r is not a directory (a link is refused: give the directory it points to)"
                                 % (field, project_dir))
        if entry["name"] in seen:
            raise InputError("%s.name: %r is listed twice" % (where, entry["name"]))
        seen.add(entry["name"])
        entries.append(entry)
    if qtype == "project" and mount["fstype"] != "btrfs":
        known = known_project_ids(host)
        allocate_project_ids(entries, known, known.values())
    for entry in entries:
        entry["key"] = None if mount["fstype"] == "btrfs" else entry["id"]
    grace = {}
    for kind in ("block", "inode"):
        if params[kind + "_grace"]:
            grace[kind] = parse_grace("%s_grace" % kind, params[kind + "_grace"])
    return mount, entries, grace


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            type=dict(type="str", choices=["user", "group", "project"], default="user"),
            enable=dict(type="bool", default=False),
            block_grace=dict(type="str"), inode_grace=dict(type="str"),
            quotas=dict(type="list", elements="dict", default=[], options=ENTRY_SPEC),
            exclusive=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    host = Host(module)
    result = dict(changed=False, actions=[], quotas=[], cleared=[], enforced=False, reboot_required=False, grace={})
    try:
        mount, entries, grace = resolve(module.params, host)
        result["mount"] = dict((k, mount[k]) for k in ("mountpoint", "fstype", "source"))
        backend_class = BtrfsBackend if mount["fstype"] == "btrfs" else QuotaToolsBackend
        backend = backend_class(host, mount, module.params["type"])
        backend.validate(entries, module.params["enable"])
        diffs = []
        if module.params["type"] == "project" and mount["fstype"] != "btrfs":
            diffs = sync_project_files(host, entries)
        out = backend.apply(entries, grace, module.params["exclusive"])
    except FairshareError as exc:
        if lifting_only(module.params) and str(exc).startswith("path: ") and not host.done:
            # only limits to lift, on a path that is gone, not a quota filesystem, or without quotas: none to lift
            result["note"] = "nothing to lift: %s" % exc
            module.exit_json(**result)
        module.fail_json(msg=str(exc), **host.partial(result))
    result.update(out)
    result["actions"] = backend.actions + ["update %s" % d["after_header"] for d in diffs]
    result["changed"] = bool(result["actions"] or diffs)
    for warning in backend.warnings:
        module.warn(warning)
    if module._diff:
        result["diff"] = diffs + backend.diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: resource_usage
short_description: Live per-user usage - memory, tasks, CPU time, OOM kills, disk quota use, network bytes
version_added: "0.1.0"
description:
  - Reads, for a B(list) of users in one call, what their cgroups show now (systemd user slices or the
    cgroupfs backend's C(<parent>/user-<UID>)), their disk quota use on the filesystems given, and the
    bytes their tc_shape class has sent on an interface.
author:
  - fairshare.resources contributors (@fairshare)
attributes:
  check_mode:
    support: full
    description: Only reads.
  diff_mode:
    support: none
    description: Nothing changes.
options:
  users:
    description: User names or UIDs.
    type: list
    elements: str
    required: true
  parent:
    description: The cgroupfs backend's managed parent (hosts without systemd).
    type: str
    default: fairshare
  quota_paths:
    description: Filesystems whose user quota usage to report (C(repquota)).
    type: list
    elements: path
    default: []
  interface:
    description: An interface shaped by tc_shape, for per-user bytes sent.
    type: str
"""

EXAMPLES = r"""
- name: What alice and bob use now
  fairshare.resources.resource_usage:
    users: [alice, bob]
    quota_paths: [/home]
    interface: eth0
  register: usage
"""

RETURN = r"""
usage:
  description: One entry per user.
  returned: always
  type: list
  elements: dict
  sample:
    - {user: alice, uid: 1000, active: true, memory_bytes: 536870912, tasks: 12, cpu_usec: 9876543, oom_kills: 0,
       quota: {/home: {blocks: 1048576, inodes: 120}}, net_bytes_sent: 123456}
containers_outside:
  description:
    - Running containers whose cgroup is in no user's slice (C(user.slice)) and, without systemd, not under
      O(parent) - started by a root engine (rootful docker or podman, LXC), so under no user's limits. A user's
      rootless podman runs inside the user's slice and is not listed.
    - At most 100; RV(containers_outside_truncated) says when there were more.
  returned: always
  type: list
  elements: dict
  sample:
    - {cgroup: /system.slice/docker-4f1c2a9b8e7d.scope, engine: docker, id: 4f1c2a9b8e7d, memory_bytes: 73400320}
containers_outside_truncated:
  description: More containers than RV(containers_outside) holds are outside the users' slices.
  returned: always
  type: bool
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fairshare.resources.plugins.module_utils.accounts import Accounts, NotFound
from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import check_parent
from ansible_collections.fairshare.resources.plugins.module_utils.host import CommandError, Host
from ansible_collections.fairshare.resources.plugins.module_utils.platform import init_system, read_cgroup_layout
from ansible_collections.fairshare.resources.plugins.module_utils.quota_model import parse_repquota
from ansible_collections.fairshare.resources.plugins.module_utils.tc_model import NFT_TABLE, parse_nft_rules
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.usage import (
    containers_outside, parse_tc_class_stats, read_usage, user_cgroup,
)


def main():
    module = AnsibleModule(argument_spec=dict(users=dict(type="list", elements="str", required=True),
                                              parent=dict(type="str", default="fairshare"),
                                              quota_paths=dict(type="list", elements="path", default=[]),
                                              interface=dict(type="str")),
                           supports_check_mode=True)
    host = Host(module)
    try:
        module.params["parent"] = check_parent(module.params["parent"])
    except InputError as exc:
        module.fail_json(msg=str(exc))
    entries = []
    accounts = Accounts(expected=len(module.params["users"]))
    for i, name in enumerate(module.params["users"]):
        try:
            entries.append(accounts.user(name))
        except NotFound:
            module.fail_json(msg="users[%d]: %r is not a user on this host" % (i, name))
    layout = read_cgroup_layout()
    systemd = init_system() == "systemd"
    try:
        quotas = dict((path, parse_repquota(host.run(["repquota", "-v", "-n", "-p", "-u", path]))[0])
                      for path in module.params["quota_paths"])
        sent, classes = {}, {}
        if module.params["interface"]:
            sent = parse_tc_class_stats(host.run(["tc", "-s", "class", "show", "dev", module.params["interface"]]))
            # each user's class, as tc_shape allocated it: the live nftables table says (no table: no classes)
            rc, out, _err = host.run(["nft", "-j", "list", "table", "inet", NFT_TABLE], check=False)
            classes = dict(parse_nft_rules(json.loads(out))) if rc == 0 else {}
    except CommandError as exc:
        module.fail_json(msg=str(exc))
    root = layout["v2_root"] if "memory" not in layout["v1"] else layout["v1"]["memory"]
    inside = ["user.slice"] + ([] if systemd else [module.params["parent"]])
    outside, more = containers_outside(root, inside, host.read) if root else ([], False)
    usage = []
    levels = {}  # the parent's tier levels, listed once for all users
    for pw in entries:
        dirs = user_cgroup(layout, pw.pw_uid, module.params["parent"], systemd, levels)
        version = "v1" if "memory" in layout["v1"] else "v2"
        entry = {"user": pw.pw_name, "uid": pw.pw_uid, "active": any(os.path.isdir(d) for d in dirs.values())}
        entry.update(read_usage(dirs, version, host.read))
        entry["quota"] = dict((path, {"blocks": rows.get(pw.pw_uid, {}).get("block_used", 0),
                                      "inodes": rows.get(pw.pw_uid, {}).get("inode_used", 0)})
                              for path, rows in quotas.items())
        if module.params["interface"]:
            entry["net_bytes_sent"] = sent.get(classes[pw.pw_uid]) if pw.pw_uid in classes else None
        usage.append(entry)
    module.exit_json(changed=False, usage=usage, containers_outside=outside, containers_outside_truncated=more)


if __name__ == "__main__":
    main()

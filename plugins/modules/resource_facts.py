#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: resource_facts
short_description: Host capacity and layout facts for fair shares
version_added: "0.1.0"
description:
  - Returns, in one call, what the profiles role needs to plan - CPUs (threads, cores, sockets), memory,
    capacity per mount (statfs) with its filesystem, NIC speeds, NVIDIA device nodes, the cgroup layout,
    the init system, the distro family, the cgroup driver of the container engines installed (docker, podman),
    and the host's users with their groups (C(getent) databases).
author:
  - fairshare.resources contributors (@fairshare)
attributes:
  check_mode:
    support: full
    description: Only reads.
  diff_mode:
    support: none
    description: Nothing changes.
  facts:
    support: full
    description: Sets C(ansible_facts.fairshare).
options:
  users:
    description: Include the host's users (C(getent passwd) and C(getent group), so LDAP/SSSD users count).
    type: bool
    default: true
  lists_as_json:
    description:
      - Return C(users) and C(profiled) each as one compact JSON string, which the
        P(fairshare.resources.resolve_profiles#filter) and P(fairshare.resources.profile_stale_targets#filter)
        filters take as it is (C(from_json) turns it back into a list). C(users) is then a list of rows
        C([name, uid, [group, ...]]), not of dicts - a third of the size.
      - For hosts with thousands of users - ansible-core copies every fact before each task of the play, and a
        list of 10,000 users costs about 0.2 s per task that way; the profiles role sets it.
    type: bool
    default: false
  compress_lists:
    description:
      - Like O(lists_as_json), but each string is packed - V(zlib:) followed by the base64 of the zlib-compressed
        JSON text - which the same filters take as they take the plain one. Implies O(lists_as_json).
      - For AWX and other callers that keep every task result (job events). At 10,000 users the two JSON strings
        take about 690 kB of the result, over what the collection keeps a result under (500 kB; AWX empties an
        event over 700 kB); packed they take some 130-350 kB, depending on how alike the user names are. The
        profiles role sets it.
    type: bool
    default: false
    version_added: "0.3.0"
  container_groups:
    description:
      - Groups whose members can start containers through a root container engine (rootful docker, LXD,
        Incus) - outside every limit of theirs. Their members (but O(container_group_exempt)) are returned in
        C(container_group_members) and named in a warning.
      - Rootless podman runs inside the user's own limits and needs no group.
    type: list
    elements: str
    default: [docker, lxd, incus-admin]
  container_group_exempt:
    description: Users not to warn about (the policy's C(exempt_users); the profiles role passes them).
    type: list
    elements: str
    default: [root]
"""

EXAMPLES = r"""
- name: Capacity, layout and users of this host
  fairshare.resources.resource_facts:

- name: Show the CPUs
  ansible.builtin.debug:
    var: ansible_facts.fairshare.cpus
"""

RETURN = r"""
ansible_facts:
  description: Facts under C(fairshare).
  returned: always
  type: dict
  contains:
    fairshare:
      description:
        - cpus, memory_bytes, mounts, nics, gpus, cgroup, init_system, systemd_version, family, containers, users,
          and container_group_members ({group - [users]}, with O(users)).
        - systemd_version - the release of systemd as PID 1 (C(252)), null without systemd; cgroup_limit
          leaves out the properties that release does not know and says so.
        - session_oom - where the module runs in a login session (an ssh connection), that session's scope and the
          C(OOMPolicy) systemd gives it (V(continue) - a process killed at the user's memory.max ends only itself;
          an empty string - a systemd 252 without C(OOMPolicy=) for scopes, where the kill ends the whole session,
          and the module warns); null outside a session or without systemd.
        - profiled - C([[user, uid, [workload, ...]], ...]) that C(/etc/fairshare/profiles.json) says got limits from the role.
        - With O(lists_as_json) C(users) and C(profiled) are JSON strings of those lists (C(users) as rows
          C([name, uid, [group, ...]])); with O(compress_lists) packed ones (C(zlib:...)).
      type: dict
      sample:
        cpus: {threads: 2, cores: 2, sockets: 1}
        memory_bytes: 25769803776
        mounts: [{mountpoint: /home, fstype: ext4, size_bytes: 107374182400}]
        nics: [{name: eth0, speed_mbit: 1000}]
        gpus: [/dev/nvidia0]
        cgroup: {version: v2, controllers: [cpu, memory, pids]}
        init_system: systemd
        systemd_version: 252
        session_oom: {scope: session-5.scope, oom_policy: continue}
        family: Debian
        containers: {docker: {cgroup_driver: systemd, error: null}}
        users: [{name: alice, uid: 1000, groups: [students]}]
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fairshare.resources.plugins.module_utils.facts import (
    profiled_users, session_oom_warning, session_scope, encode_list,
    CONTAINER_GROUPS, container_group_members, parse_cpuinfo, parse_meminfo, parse_passwd_group,
)
from ansible_collections.fairshare.resources.plugins.module_utils.host import Host
from ansible_collections.fairshare.resources.plugins.module_utils.platform import (
    distro_family, init_system, read_cgroup_layout, read_os_release, systemd_version,
)
from ansible_collections.fairshare.resources.plugins.module_utils.quota_model import SUPPORTED_FS

REAL_FS = SUPPORTED_FS + ("vfat", "f2fs", "zfs", "nfs", "nfs4", "ceph", "tmpfs")


def mounts():
    found, seen = [], set()
    with open("/proc/self/mounts") as fh:
        for line in fh:
            source, mountpoint, fstype = line.split()[:3]
            if fstype not in REAL_FS or mountpoint in seen or mountpoint.startswith(("/proc", "/sys", "/dev", "/run")):
                continue
            seen.add(mountpoint)
            try:
                st = os.statvfs(mountpoint)
            except OSError:
                continue
            found.append({"mountpoint": mountpoint, "fstype": fstype, "source": source,
                          "size_bytes": st.f_blocks * st.f_frsize, "quota_capable": fstype in SUPPORTED_FS})
    return found


def nics():
    result = []
    for path in sorted(glob.glob("/sys/class/net/*")):
        name = os.path.basename(path)
        if name == "lo":
            continue
        speed = Host.read(os.path.join(path, "speed"))
        try:
            speed = int(speed) if speed and int(speed) > 0 else None
        except ValueError:
            speed = None
        result.append({"name": name, "speed_mbit": speed})
    return result


# engine -> (argv that prints its cgroup driver, fact name)
ENGINES = {"docker": (["docker", "info", "--format", "{{.CgroupDriver}}"], "cgroup_driver"),
           "podman": (["podman", "info", "--format", "{{.Host.CgroupManager}}"], "cgroup_driver")}


def container_engines(host):
    """{engine: {cgroup_driver, error}} for each engine installed here (none: {})."""
    found = {}
    for engine, (argv, key) in sorted(ENGINES.items()):
        rc, out, err = host.run(argv, check=False)
        if rc == 127:
            continue
        driver = out.strip().lower() if rc == 0 else None
        found[engine] = {key: driver or None, "error": None if driver else (err.strip().splitlines() or ["rc %d" % rc])[-1]}
    return found


def main():
    module = AnsibleModule(argument_spec=dict(users=dict(type="bool", default=True),
                                              lists_as_json=dict(type="bool", default=False),
                                              compress_lists=dict(type="bool", default=False),
                                              container_groups=dict(type="list", elements="str",
                                                                    default=list(CONTAINER_GROUPS)),
                                              container_group_exempt=dict(type="list", elements="str",
                                                                          default=["root"])),
                           supports_check_mode=True)
    host = Host(module)
    layout = read_cgroup_layout()
    facts = {
        "cpus": parse_cpuinfo(host.read("/proc/cpuinfo") or ""),
        "memory_bytes": parse_meminfo(host.read("/proc/meminfo") or ""),
        "mounts": mounts(),
        "nics": nics(),
        "gpus": sorted(p for p in glob.glob("/dev/nvidia[0-9]*")),
        "cgroup": {"version": layout["version"], "v1": layout["v1"], "v2_root": layout["v2_root"],
                   "v2_controllers": layout["v2_controllers"]},
        "init_system": init_system(),
        "systemd_version": None,
        "family": distro_family(read_os_release()),
        "containers": container_engines(host),
        "profiled": profiled_users(host.read("/etc/fairshare/profiles.json")),
    }
    facts["session_oom"] = None
    if facts["init_system"] == "systemd":  # which properties cgroup_limit can give (docs/cgroup_limit.md)
        facts["systemd_version"] = systemd_version(host.run(["systemctl", "--version"], check=False)[1])
        scope = session_scope(host.read("/proc/self/cgroup"))
        if scope:  # this run's own login session (ssh): what an OOM kill at memory.max does to a session here
            rc, out, _err = host.run(["systemctl", "show", "-p", "OOMPolicy", "--value", scope], check=False)
            policy = out.strip() if rc == 0 else None
            facts["session_oom"] = {"scope": scope, "oom_policy": policy}
            warning = session_oom_warning(facts["systemd_version"], policy) if policy is not None else None
            if warning:
                module.warn(warning)
    if module.params["users"]:
        rc, passwd, _err = host.run(["getent", "passwd"], check=False)
        rc2, group, _err = host.run(["getent", "group"], check=False)
        if rc or rc2:  # no getent: the local files
            passwd, group = host.read("/etc/passwd") or "", host.read("/etc/group") or ""
        facts["users"] = parse_passwd_group(passwd, group)
        members = container_group_members(facts["users"], module.params["container_groups"],
                                          module.params["container_group_exempt"])
        facts["container_group_members"] = members
        for name, users in sorted(members.items()):
            module.warn("%d user(s) in group %s can start containers outside their limits through a root container "
                        "engine: %s (remove them from the group, or give them rootless podman, which runs inside "
                        "their limits)" % (len(users), name, ", ".join(users[:20]) + (" ..." if len(users) > 20 else "")))
    if module.params["lists_as_json"] or module.params["compress_lists"]:
        if "users" in facts:  # rows, not dicts: a third of the size
            facts["users"] = [[u["name"], u["uid"], u["groups"]] for u in facts["users"]]
        for key in ("users", "profiled"):
            if key in facts:
                facts[key] = encode_list(facts[key], module.params["compress_lists"])
    module.exit_json(changed=False, ansible_facts={"fairshare": facts})


if __name__ == "__main__":
    main()

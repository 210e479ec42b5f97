# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The whole policy of a host checked against that host before the role's first change.

The role applies cgroup limits, then quotas, network classes and GPU grants, each through its
own module; each module checks its own input before it changes anything, but a bad disk mount
or a ceil below its rate would fail only after the limits had changed. preflight() runs every
module's own checks (the same functions) on what the role is about to give each module, with
the host's facts (resource_facts: mounts, interfaces, GPUs, CPUs), and reports every problem
at once. Pure Python, no AnsibleModule import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import LimitsMemo
from ansible_collections.fairshare.resources.plugins.module_utils.facts import decode_list
from ansible_collections.fairshare.resources.plugins.module_utils.gpu_model import allocate, check_gpu_list, select_gpus
from ansible_collections.fairshare.resources.plugins.module_utils.policy import (
    cgroup_parents, left_behind, to_cgroup_limits, to_disk_quotas, to_gpu_users, to_tc_classes, users_from_rows,
)
from ansible_collections.fairshare.resources.plugins.module_utils.quota_model import (
    SUPPORTED_FS, find_mount_of, normalize_entry,
)
from ansible_collections.fairshare.resources.plugins.module_utils.tc_model import (
    check_admission, parse_rate, rate_ceil,
)
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.units import expand_cpulist

SHOW = 20  # problems listed in the message; the count says how many more


def _each(problems, where, check, *args):
    try:
        return check(*args)
    except InputError as exc:
        problems.append("%s: %s" % (where, exc))
        return None


def gpus_of(facts):
    """resource_facts' gpus (device paths like /dev/nvidia0, or dicts with an index) -> [{index, uuid}]."""
    found = []
    for gpu in facts.get("gpus") or []:
        if isinstance(gpu, dict):
            found.append(gpu)
        else:
            digits = "".join(c for c in str(gpu).rsplit("/", 1)[-1] if c.isdigit())
            if digits:
                found.append({"index": int(digits), "uuid": None})
    return found


def _decoded(value):
    """A list of the facts, or the JSON string of one (resource_facts lists_as_json, packed with compress_lists)
    -> the list."""
    return decode_list(value) if isinstance(value, str) else (value or [])


def preflight(profiles, facts, settings=None, counts=None):
    """profiles (resolve_profiles), facts (resource_facts' fairshare facts), settings {cgroups, quotas,
    network, gpu: which parts the role applies; interface, link_rate, default_class, oversubscription
    (network); gpu_share, gpu_placement (GPU counts); cgroup_parent, docker_driver: where containers go,
    checked as profile_cgroup_parents makes it} -> a list of problems, each naming the user and the policy
    field; empty when the host can take the policy. counts (a dict): filled with how many targets each part
    has (cgroup_targets, disk_filesystems, tc_classes, gpu_users; 0 for a part that is off; tc_left: users the
    last run gave a class that this run gives none), so the role's tasks test those numbers instead of running
    the profile_* filters a second time. The facts' `profiled` (the last run's users) counts unless settings exclusive is false."""
    settings = settings or {}
    problems = []
    counts = {} if counts is None else counts
    counts.update(cgroup_targets=0, disk_filesystems=0, tc_classes=0, tc_left=0, gpu_users=0)
    profiled = _decoded(facts.get("profiled")) if settings.get("exclusive", True) else []
    on = dict((part, settings.get(part, True)) for part in ("cgroups", "quotas", "network", "gpu"))
    if on["cgroups"]:
        threads = (facts.get("cpus") or {}).get("threads")
        targets = to_cgroup_limits(profiles, facts.get("init_system", "systemd"))
        counts["cgroup_targets"] = len(targets)
        normalize = LimitsMemo()
        for entry in targets:
            who = entry.get("user") or entry.get("slice") or entry.get("path")
            if entry.get("state") == "absent":
                continue
            limits = _each(problems, "user %s" % who, normalize, entry, "limits")
            cpus = expand_cpulist(limits.get("cpuset_cpus", "")) if limits else []
            if threads and cpus and max(cpus) >= threads:
                problems.append("user %s: cpu.cpus %s names CPU %d; this host has CPUs 0-%d"
                                % (who, limits["cpuset_cpus"], max(cpus), threads - 1))
    if "cgroup_parent" in settings:  # where each user's containers go fits this host
        _each(problems, "cgroup_parent", cgroup_parents, profiles, facts.get("init_system", "systemd"),
              settings.get("docker_driver") or "", settings["cgroup_parent"])
    if on["quotas"]:
        filesystems = to_disk_quotas(profiles, profiled)
        counts["disk_filesystems"] = len(filesystems)
        for item in filesystems:
            mount = find_mount_of(facts.get("mounts") or [], item["path"])
            if mount is None or mount["fstype"] not in SUPPORTED_FS:
                problems.append("disk.%s: %s; disk quotas need ext4, XFS or btrfs here"
                                % (item["path"], "not on a filesystem of this host" if mount is None else
                                   "on %s (%s)" % (mount["fstype"], mount["mountpoint"])))
                continue
            qtype = "project" if mount["fstype"] == "btrfs" else "user"
            if mount["fstype"] == "btrfs":
                problems.append("disk.%s: btrfs has no user quotas (it limits subvolumes); give per-user "
                                "subvolumes to disk_quota type: project" % item["path"])
                continue
            for entry in item["quotas"]:
                if entry.get("state") == "absent":
                    continue
                _each(problems, "user %s" % entry["name"], normalize_entry,
                      dict((k, v) for k, v in entry.items()), "disk.%s" % item["path"], qtype, mount["fstype"])
    classes = to_tc_classes(profiles) if on["network"] else []
    counts["tc_classes"] = len(classes)
    counts["tc_left"] = len(left_behind(profiled, profiles, "net")) if on["network"] else 0
    if classes:
        interface = settings.get("interface") or "auto"
        names = [nic["name"] for nic in facts.get("nics") or []]
        if interface != "auto" and names and interface not in names:
            problems.append("profiles_interface: %r is not an interface of this host; interfaces: %s"
                            % (interface, ", ".join(names)))
        link = _each(problems, "profiles_link_rate", parse_rate, "profiles_link_rate", settings.get("link_rate", "1gbit"))
        default = _each(problems, "profiles_default_class", rate_ceil, "profiles_default_class",
                        settings.get("default_class") or {"rate": settings.get("link_rate", "1gbit")})
        checked = []
        for cls in classes:
            got = _each(problems, "user %s" % cls["user"], rate_ceil, "net.egress", cls)
            if got:
                got["name"] = "user %s" % cls["user"]
                checked.append(got)
        if link and default and len(checked) == len(classes):
            _each(problems, "network", check_admission, "egress", link, default, checked,
                  float(settings.get("oversubscription") or 1.0))
    if on["gpu"]:
        gpus = gpus_of(facts)
        wanted_counts = {}
        users = to_gpu_users(profiles, profiled)
        counts["gpu_users"] = len(users)
        for entry in users:
            where = "user %s" % entry["name"]
            if entry.get("state") == "absent":
                continue
            if "count" in entry:
                wanted_counts[entry["name"]] = entry["count"]
                continue
            _each(problems, where, check_gpu_list, "gpu", entry["gpus"])
            wanted = entry["gpus"] if isinstance(entry["gpus"], list) else []
            if gpus and wanted and all(str(g).strip().isdigit() for g in wanted):  # UUIDs: gpu_access knows them
                _each(problems, where, select_gpus, "gpu", wanted, gpus)
        if gpus and wanted_counts:
            _each(problems, "gpu", allocate, wanted_counts, gpus, None, int(settings.get("gpu_share") or 1),
                  settings.get("gpu_placement") or "spread")
    return problems


def check_host(profiles, facts, settings=None):
    """preflight() as a gate: raises InputError listing every problem (the first SHOW of them); else
    {checked: the number of profiles, preflight()'s counts, and unlisted: the host's users (facts' users, rows
    or dicts, or the JSON string of them) that have no profile - exempt or outside the uid range - which the
    user-.slice template masks; worked out here once instead of in a task's arguments twice}."""
    counts = {}
    problems = preflight(profiles, facts, settings, counts)
    if problems:
        more = " and %d more" % (len(problems) - SHOW) if len(problems) > SHOW else ""
        raise InputError("this host cannot take the policy; nothing was changed: %s%s"
                         % ("; ".join(problems[:SHOW]), more))
    users = _decoded(facts.get("users"))
    counts.update(checked=len(profiles),
                  unlisted=[u["name"] for u in users_from_rows(users) if u["name"] not in profiles])
    return counts

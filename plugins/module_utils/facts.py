# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host capacity facts for resource_facts: pure parsers of /proc, /sys and passwd/group text."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import zlib

# resource_facts' compress_lists: "zlib:" and the base64 of the zlib-compressed compact JSON text of a list
PACKED_MARK = "zlib:"


def encode_list(value, compress=False):
    """A list as one compact JSON string (lists_as_json), or with compress its packed form (PACKED_MARK): at
    10,000 users the users and profiled facts of the profiles role take 690 kB as JSON strings in a task's
    result, over the 500 kB the collection keeps every job event under (AWX empties one over 700 kB)."""
    text = json.dumps(value, separators=(",", ":"))
    if not compress:
        return text
    return PACKED_MARK + base64.b64encode(zlib.compress(text.encode("utf-8"), 6)).decode("ascii")


def decode_list(text):
    """What encode_list returned (either form) -> the value. Raises ValueError for text that is neither."""
    if text.startswith(PACKED_MARK):
        try:
            text = zlib.decompress(base64.b64decode(text[len(PACKED_MARK):].encode("ascii"))).decode("utf-8")
        except (TypeError, zlib.error, UnicodeError) as exc:  # binascii.Error is a ValueError
            raise ValueError("not a packed list (%s...): %s" % (PACKED_MARK, exc))
    return json.loads(text)


def parse_cpuinfo(text):
    """/proc/cpuinfo -> {'threads', 'cores', 'sockets'} (threads = logical CPUs)."""
    threads, cores, sockets = 0, set(), set()
    phys = core = None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if phys is not None or core is not None:
                cores.add((phys, core))
                sockets.add(phys)
            phys = core = None
            continue
        key, dummy, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            threads += 1
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
    return {"threads": threads, "cores": len(cores) or threads, "sockets": len(sockets) or 1}


def parse_meminfo(text):
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def parse_passwd_group(passwd, group):
    """/etc/passwd and /etc/group text -> [{'name', 'uid', 'groups'}] (primary and secondary groups)."""
    by_gid, members = {}, {}
    for line in group.splitlines():
        fields = line.split(":")
        if len(fields) < 4:
            continue
        by_gid[fields[2]] = fields[0]
        for member in fields[3].split(","):
            if member:
                members.setdefault(member, []).append(fields[0])
    users = []
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) < 7 or not fields[2].isdigit():
            continue
        groups = set(members.get(fields[0], []))
        if fields[3] in by_gid:
            groups.add(by_gid[fields[3]])
        users.append({"name": fields[0], "uid": int(fields[2]), "groups": sorted(groups)})
    return users


# Groups whose members drive a root container engine: their containers start outside every
# user's limits (rootful docker, LXD, Incus). Data: the module's container_groups default.
CONTAINER_GROUPS = ["docker", "lxd", "incus-admin"]


def container_group_members(users, groups, exempt=()):
    """{group: [names]} of the users (parse_passwd_group's list) in each of groups, but exempt ones."""
    found = {}
    for user in users:
        if user["name"] in exempt:
            continue
        for group in groups:
            if group in user["groups"]:
                found.setdefault(group, []).append(user["name"])
    return dict((g, sorted(names)) for g, names in found.items())


CGROUP_SECTIONS = ("cpu", "memory", "pids", "io", "workloads")  # a profile's keys that are cgroup limits


def profile_parts(prof):
    """What a resolved profile gives a user besides cgroup limits, as profiled_users names it: 'disk:<path>' per
    filesystem with a quota, 'gpu' for a GPU grant (an unlimited user's too), 'net' for a network class,
    'total:<tier>' where the user's tier has a total (aggregate.<tier>), 'cgroup' where the run gave the user
    cgroup limits (cpu, memory, pids, io, workloads)."""
    values = prof.get("values") or {}
    parts = sorted("disk:" + k[len("disk."):] for k in values if k.startswith("disk."))
    if prof.get("unlimited") or any(k.startswith("gpu.") for k in values):
        parts.append("gpu")
    if "net.egress" in values:
        parts.append("net")
    if prof.get("tier_total") and prof.get("tier"):  # the tier has a total: on cgroupfs hosts the user is under it
        parts.append("total:%s" % prof["tier"])
    if not prof.get("unlimited") and any(k.split(".", 1)[0] in CGROUP_SECTIONS for k in values):
        parts.append("cgroup")
    return parts


def profiled_users(text):
    """/etc/fairshare/profiles.json of the last run -> [[name, uid, [workload, ...], [part, ...]], ...]:
    whom the role gave limits last time (compact: the next run takes back what the policy no longer
    gives). The parts (left out when none): 'disk:<path>' for each filesystem with a quota, 'gpu' for a
    GPU grant (an unlimited user's too), 'net' for a network class. A last entry [None, None, [target]]
    says the run also set a total for all users (aggregate)."""
    try:
        data = json.loads(text or "{}") or {}
        profiles = data.get("profiles") or {}
    except (ValueError, AttributeError):
        return []
    found = []
    for name, prof in sorted(profiles.items()):
        if not isinstance(prof, dict) or not isinstance(prof.get("uid"), int):
            continue
        values = prof.get("values") or {}
        row = [name, prof["uid"], sorted(k[len("workloads."):] for k in values if k.startswith("workloads."))]
        parts = profile_parts(prof)
        found.append(row + [parts] if parts else row)
    for entry in data.get("aggregate") or []:
        target = entry.get("slice") or entry.get("path") if isinstance(entry, dict) else None
        if target:
            found.append([None, None, [target]])
    return found


# systemd#25376: from 252 a scope unit is stopped when the kernel OOM-kills one of its processes, so an OOM kill
# inside a login session ended the whole session. 253 (and the 252.x stable releases that took the fix) give scopes
# OOMPolicy= and logind sets it to "continue" on session scopes. Releases before 252 do not stop a scope on an OOM kill.
SESSION_OOM_AFFECTED = (252,)


def session_scope(proc_cgroup):
    """/proc/self/cgroup text -> the logind session scope this process runs in ("session-5.scope"), or None."""
    for line in (proc_cgroup or "").splitlines():
        for part in reversed(line.split(":", 2)[-1].split("/")):
            if part.startswith("session-") and part.endswith(".scope"):
                return part
    return None


def session_oom_warning(version, oom_policy):
    """A warning when an OOM kill at a user's memory.max would also end the user's login session, else None.
    version: systemd's release; oom_policy: what `systemctl show -p OOMPolicy --value` printed for a session
    scope ("" where scopes have no OOMPolicy=)."""
    if version in SESSION_OOM_AFFECTED and not oom_policy:
        return ("systemd %d gives scope units no OOMPolicy=: when a process of a login session is killed at the "
                "user's memory.max, systemd stops the whole session (systemd#25376; fixed in 253 and in the later "
                "252.x stable releases). The limits hold, but the user loses the session; update systemd" % version)
    if oom_policy and oom_policy != "continue":
        return ("login session scopes have OOMPolicy=%s here: a process killed at the user's memory.max ends "
                "the whole session (logind sets continue from systemd 253; a site drop-in may have changed it)"
                % oom_policy)
    return None

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cgroup_limit
short_description: Per-user CPU, memory, pids, cpuset and I/O limits with cgroups
version_added: "0.1.0"
description:
  - Applies CPU, memory, pids, cpuset and I/O limits to a B(list) of targets in one call
    (users, slices or nested cgroup paths), on systemd hosts with cgroup v2 or v1 and on
    hosts without systemd.
  - With systemd, writes a drop-in C(/etc/systemd/system/<unit>.d/50-fairshare.conf) for each
    target (for a user C(user-<UID>.slice), so limits exist before the first login), runs
    one C(systemctl daemon-reload) per call, then reads the live cgroupfs values back.
  - Without systemd, manages a parent cgroup (default C(fairshare)) with one child per target
    in every hierarchy that a limit needs (cgroup v1 or v2), and reads every value back.
  - All input is validated before anything changes. Root and the system's own slices are
    refused unless O(force=true). Everything written carries a C(managed by fairshare.resources)
    marker; O(exclusive=true) removes managed objects of targets not listed, and nothing else.
author:
  - fairshare.resources contributors (@fairshare)
extends_documentation_fragment:
  - fairshare.resources.report
attributes:
  check_mode:
    support: full
    description: Reads everything and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Drop-in text or cgroupfs values before and after, per target.
options:
  limits:
    description:
      - The targets and their limits. Give exactly one of O(limits[].user), O(limits[].slice)
        or O(limits[].path) per entry.
      - With O(state=present) the limits listed are the whole set for that target; a limit
        left out is returned to "no limit".
    type: list
    elements: dict
    default: []
    suboptions:
      user:
        description: A user name or UID; the target is C(user-<UID>.slice) (systemd) or C(<parent>/user-<UID>) (cgroupfs).
        type: str
      under:
        description:
          - With O(limits[].user) and the cgroupfs backend only - a level below the managed parent that
            the user's cgroup goes in, C(<parent>/<under>/user-<UID>), such as C(tier-students). A total
            set on that level (a O(limits[].path) entry C(tier-students)) then holds all its users together;
            the profiles role puts the users of a tier with an C(aggregate.<tier>) total there.
          - A user has one cgroup under the parent. When a call puts a user somewhere else (another level,
            or none), the cgroup an earlier call made for them is removed and its processes are moved into
            the new one, so they never leave the user's limits.
          - Refused with the systemd backend (logind keeps every C(user-<UID>.slice) in C(user.slice)).
        type: str
        version_added: "0.3.0"
      slice:
        description: A slice unit such as C(research.slice) (cgroupfs backend - C(<parent>/research)).
        type: str
      path:
        description:
          - A nested cgroup path below the managed parent such as C(workers/w1/crs1); always
            handled in cgroupfs. Its RV(targets[].cgroup_parent) is what a container engine
            with the cgroupfs driver takes as C(cgroup_parent).
        type: str
      state:
        description: Overrides the top-level O(state) for this target.
        type: str
        choices: [present, absent]
      keep_running:
        description:
          - With O(limits[].state=absent), a O(limits[].user) or O(limits[].slice) target and the systemd backend
            only - where the unit is active, its limits stay for what still runs in it, in a runtime drop-in
            C(/run/systemd/system/<unit>.d/45-fairshare-running.conf) (gone at the next boot), while its drop-in in
            C(/etc) goes. systemd does not move a running unit to another slice, so a slice that only moved (such
            as a workload slice whose tier's total came or went) would otherwise leave its running jobs without
            limits until they end.
          - A later call that gives the unit limits again removes that runtime drop-in.
          - The profiles role sets it for the slices it takes back outside the users' own slices (a tier's total
            and its workloads) and for a workload slice that moved.
          - Refused with the cgroupfs backend, whose removed cgroups' processes go into the user's new cgroup.
        type: bool
        version_added: "0.3.0"
      cpu_weight:
        description: Relative CPU weight, 1 to 10000 (default 100). cgroup v1 gets the equivalent C(cpu.shares).
        type: int
      cpu_max:
        description: CPU ceiling as a percentage of one CPU (C(150%)) or a number of CPUs (C(1.5)), or C(max).
        type: str
      cpuset_cpus:
        description: CPUs the target may run on, in the kernel list format (C(0-3,6)).
        type: str
      cpuset_mems:
        description: Memory nodes the target may use (C(0)).
        type: str
      memory_max:
        description:
          - Hard memory limit (C(512M), C(8G), bytes, C(max)). Past it the kernel reclaims, then OOM-kills.
          - Below 64M is refused unless O(force=true).
        type: str
      memory_high:
        description: Memory throttling threshold; a size, C(max), or a percentage of O(limits[].memory_max) like C(90%). cgroup v2 only.
        type: str
      memory_swap_max:
        description: Swap limit (cgroup v2 only).
        type: str
      memory_min:
        description: Protected memory (cgroup v2 only).
        type: str
      memory_low:
        description: Best-effort protected memory (cgroup v2 only).
        type: str
      pids_max:
        description: Most tasks (processes and threads) at once, or C(max). Below 32 is refused unless O(force=true).
        type: str
      io_weight:
        description: Relative I/O weight, 1 to 10000 (default 100).
        type: int
      io_max:
        description: Per-device I/O ceilings (cgroup v2 C(io.max), v1 C(blkio.throttle.*)).
        type: list
        elements: dict
        suboptions:
          device:
            description: A block device path (C(/dev/vda)) or C(MAJ:MIN).
            type: str
            required: true
          rbps:
            description: Read bytes per second (C(10M)) or C(max).
            type: str
          wbps:
            description: Write bytes per second or C(max).
            type: str
          riops:
            description: Read operations per second or C(max).
            type: str
          wiops:
            description: Write operations per second or C(max).
            type: str
  limits_json:
    description:
      - More entries of O(limits), as one JSON string of the list - the same keys, checked the same way
        (an error names C(limits_json[N])). They come before the entries of O(limits), and a target may be
        named once in the two together.
      - For thousands of targets - ansible-core walks a list argument of 10,000 dicts for seconds before the
        module starts, a string not at all; the profiles role passes its users' limits so
        (C(profile_cgroup_limits(..., as_json=true))).
      - A list is taken as well - ansible-core before 2.19 turns a template's result that reads as a list into one.
    type: raw
  state:
    description: Whether the listed targets have these limits (V(present)) or none of ours (V(absent)).
    type: str
    choices: [present, absent]
    default: present
  backend:
    description:
      - V(auto) picks V(systemd) when systemd is PID 1, else V(cgroupfs).
    type: str
    choices: [auto, systemd, cgroupfs]
    default: auto
  parent:
    description: The managed parent cgroup of the cgroupfs backend and of O(limits[].path) targets.
    type: str
    default: fairshare
  exclusive:
    description: Remove our drop-ins or cgroups of targets not listed (nothing that is not ours).
    type: bool
    default: false
  force:
    description: Allow limits on root and system slices, and limits below the safe minimums.
    type: bool
    default: false
  persist:
    description:
      - For what is handled in cgroupfs (the cgroupfs backend, and O(limits[].path) targets),
        write C(/etc/fairshare/cgroupfs-<parent>.sh), a POSIX shell script with two commands.
        C(restore) recreates the cgroups and writes their limits, as after a reboot.
        C(session), run by C(pam_exec) at session open, moves the login into the user's cgroup
        (restoring the tree first when a reboot removed it) and always exits 0.
      - Add C(session optional pam_exec.so quiet /etc/fairshare/cgroupfs-<parent>.sh session)
        to the distribution's PAM session file, or let the C(profiles) role do it.
      - The script covers every target under O(parent) that a call gave it, not only this call's, so
        that a call for some users keeps the others' logins limited; a target goes when a call removes it
        (O(limits[].state=absent), O(exclusive)). Unset (the default), an existing script is kept up to
        date and none is made; V(false) removes the script, and only V(false) does. A file at that path
        without our managed header is left alone, with a warning.
    type: bool
  user_defaults:
    description:
      - systemd hosts (systemd 239 and later) - limits for B(every) user slice, also of users this call does not
        list (directory users SSSD does not enumerate, users created later), from their first login on. Keys are
        the limit options of O(limits) (C(cpu_max), C(memory_max), ...).
      - Written as the template drop-in C(/etc/systemd/system/user-.slice.d/50-fairshare.conf). A user listed in
        O(limits) gets C(user-<UID>.slice.d/50-fairshare.conf), a file of the same name, which systemd reads
        instead of the template's, so per-user limits win over the defaults whole.
      - Root, every local system user (uid up to C(SYS_UID_MAX) of C(/etc/login.defs)), the users of
        O(user_defaults_exempt) and listed users with C(state=absent) get a drop-in of that name without limits
        (a mask), so the defaults never reach them.
      - Drop-ins of others that override ours (a name that sorts after C(50-fairshare.conf) setting the same
        properties, or a file of our name in C(/etc/systemd/system.control) or C(/run/systemd/system.control))
        are reported in RV(user_defaults.overridden) and warned about.
      - V({}) removes the template and our masks; unset leaves them as they are (O(exclusive) removes them). On
        systemd older than 239 the task warns and writes nothing for it. Needs the systemd backend.
    type: dict
  user_defaults_exempt:
    description: With O(user_defaults), users (names or uids) the defaults must not reach besides root and the system
      users, for example the policy's exempt users and those outside its uid range.
    type: list
    elements: str
    default: []
  adopt_processes:
    description:
      - With the cgroupfs backend, move the listed users' processes that are already running into their
        cgroups (on cgroup v2 the session leaf C(<parent>/user-<UID>/login-sessions)), as a login through the
        session hook of O(persist) would land, so that a process started before the limits (or outside a
        login) is held to them too. Reported per target in RV(targets[].adopted).
      - A process in a container engine's cgroup (docker, containerd, libpod, lxc, kubepods and the like) is
        left where it is and counted in RV(targets[].left_in_containers); one already below O(parent) (a
        workload, a session) is not moved.
      - On systemd hosts logind places sessions; this option does nothing there.
    type: bool
    default: true
notes:
  - Settings the running cgroup version cannot enforce (for example O(limits[].memory_high) on
    cgroup v1) are reported in RV(targets[].warnings), never dropped silently; the task's
    warnings say each distinct one once, with how many targets it concerns.
  - On hosts without systemd a login does not join the user's cgroup by itself, and cgroupfs
    is empty after a reboot; O(persist=true) writes the session hook and restore script for
    that. On cgroup v2 a session goes into the leaf C(<parent>/user-<UID>/login-sessions).
seealso:
  - name: systemd.resource-control
    description: The systemd settings this module writes.
    link: https://www.freedesktop.org/software/systemd/man/systemd.resource-control.html
"""

EXAMPLES = r"""
- name: Give two users CPU, memory and pids limits (one call for all users)
  fairshare.resources.cgroup_limit:
    limits:
      - user: alice
        cpu_weight: 100
        cpu_max: 200%
        memory_max: 8G
        memory_high: 90%
        pids_max: 4096
      - user: bob
        cpu_max: 1.5
        memory_max: 4G
        io_max:
          - device: /dev/sda
            wbps: 50M

- name: Every user's defaults from their first login, and one user's own limits (systemd 239 and later)
  fairshare.resources.cgroup_limit:
    user_defaults:
      cpu_max: 100%
      memory_max: 4G
    user_defaults_exempt: [admin]
    limits:
      - user: alice
        memory_max: 16G

- name: Nested cgroups for container workloads; use cgroup_parent with docker
  fairshare.resources.cgroup_limit:
    backend: cgroupfs
    limits:
      - path: workers/w1/crs1
        cpuset_cpus: "0-1"
        cpuset_mems: "0"
        memory_max: 2G
  register: workers

- name: Keep only the users listed, remove our limits from everybody else
  fairshare.resources.cgroup_limit:
    exclusive: true
    limits:
      - user: alice
        memory_max: 8G

- name: A host without systemd - limits that survive a reboot and hold login sessions
  fairshare.resources.cgroup_limit:
    backend: cgroupfs
    persist: true
    limits:
      - user: alice
        memory_max: 8G
  register: limits

- name: Run the session hook at every session open (Debian's PAM session file)
  ansible.builtin.lineinfile:
    path: /etc/pam.d/common-session
    line: "session optional pam_exec.so quiet {{ limits.persist_script }} session"
"""

RETURN = r"""
summary:
  description:
    - Per list of the result (RV(targets), RV(removed)), how many entries there are (V(total)), changed, were returned
      and were left out (O(report=auto) on a large host).
  returned: always
  type: dict
  sample: {targets: {total: 10000, changed: 10000, returned: 100, omitted: 9900}}
backend:
  description: The backend used.
  returned: always
  type: str
  sample: systemd
cgroup_version:
  description: The cgroup layout of the host (v2, v1, hybrid).
  returned: always
  type: str
  sample: v2
daemon_reload:
  description: Whether systemd was reloaded (systemd backend).
  returned: always
  type: bool
  sample: true
targets:
  description: One entry per target, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    target:
      description: C(kind:name) of the target.
      type: str
      sample: user:alice
    uid:
      description: The user's UID (user targets).
      type: int
      sample: 1000
    unit:
      description: The systemd unit (systemd backend).
      type: str
      sample: user-1000.slice
    path:
      description: The drop-in file (systemd) or the cgroup path below each hierarchy (cgroupfs).
      type: str
      sample: /etc/systemd/system/user-1000.slice.d/50-fairshare.conf
    changed:
      description: Whether this target changed.
      type: bool
    before:
      description: Our settings before (drop-in properties or cgroupfs file values).
      type: dict
    after:
      description: The limits as applied, in human units.
      type: dict
      sample: {memory_max: 8G, cpu_max: 200%}
    verified:
      description: What the kernel shows now, file by file (empty while a user slice is inactive).
      type: dict
      sample: {memory.max: "8589934592", cpu.max: "200000 100000"}
    active:
      description: Whether the unit is active (systemd backend).
      type: bool
    kept_running:
      description: With O(limits[].keep_running), the runtime drop-in that keeps the limits of an active unit.
      type: str
      sample: /run/systemd/system/user-tier_lab-u1000_jobs.slice.d/45-fairshare-running.conf
      version_added: "0.3.0"
    cgroup_parent:
      description: The value a container engine takes as cgroup_parent for this target.
      type: str
      sample: /fairshare/workers/w1/crs1
    adopted:
      description: How many of the user's running processes were moved into the user's cgroup (cgroupfs).
      type: int
      sample: 3
    left_in_containers:
      description: How many of the user's processes were left in a container engine's cgroup (cgroupfs).
      type: int
      sample: 0
    warnings:
      description: Settings this host cannot enforce, and read-back mismatches.
      type: list
      elements: str
removed:
  description: Managed objects removed because of O(exclusive).
  returned: always
  type: list
  elements: dict
user_defaults:
  description: With O(user_defaults) - the template drop-in and what it did.
  returned: when user_defaults is given on a systemd host (239 and later)
  type: dict
  contains:
    path:
      description: The template drop-in.
      type: str
      sample: /etc/systemd/system/user-.slice.d/50-fairshare.conf
    state:
      description: V(present), or V(absent) when O(user_defaults) has no limit.
      type: str
    changed:
      description: Whether the template was written or removed.
      type: bool
    limits:
      description: The defaults, in the form of RV(targets[].after).
      type: dict
    masked:
      description: How many users have a mask (no limits) so that the defaults do not reach them.
      type: int
    masked_changed:
      description: How many masks were written now.
      type: int
    overridden:
      description: Drop-ins of others that override ours (at most 50).
      type: list
      elements: dict
      sample: [{path: /etc/systemd/system/user-.slice.d/90-site.conf, unit: user-.slice, properties: [MemoryMax]}]
left:
  description:
    - cgroupfs - cgroups under O(parent) that no call of this module made (a container engine's cgroup under a user's
      cgroup, another program's), left as they are with the levels above them, at most 50. The task warns.
    - Which cgroups a call made is kept in C(/etc/fairshare/cgroupfs-<parent>.json); O(exclusive) and
      O(limits[].state=absent) remove only those.
  returned: when the cgroupfs backend or path targets are in use
  type: list
  elements: str
  sample: [fairshare/user-1000/4f1c0e9a2b]
persist_script:
  description: The restore and session script of O(persist) (null when there is none).
  returned: when the cgroupfs backend or path targets are in use
  type: str
  sample: /etc/fairshare/cgroupfs-fairshare.sh
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

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.fairshare.resources.plugins.module_utils.bounded import REPORT_CHOICES, bound_result
from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_backend import (
    apply_call, build_targets, template_limits_of,
)
from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import (
    check_parent, devnum_of, grouped_warnings,
)
from ansible_collections.fairshare.resources.plugins.module_utils.host import Host
from ansible_collections.fairshare.resources.plugins.module_utils.platform import (
    init_system, read_cgroup_layout, read_sys_uid_max, systemd_version,
)
from ansible_collections.fairshare.resources.plugins.module_utils.errors import FairshareError, InputError

IO_SPEC = dict(device=dict(type="str", required=True), rbps=dict(type="str"), wbps=dict(type="str"),
               riops=dict(type="str"), wiops=dict(type="str"))
LIMIT_SPEC = dict(
    user=dict(type="str"), slice=dict(type="str"), path=dict(type="str"), under=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"]), keep_running=dict(type="bool"),
    cpu_weight=dict(type="int"), cpu_max=dict(type="str"), cpuset_cpus=dict(type="str"), cpuset_mems=dict(type="str"),
    memory_max=dict(type="str"), memory_high=dict(type="str"), memory_swap_max=dict(type="str"),
    memory_min=dict(type="str"), memory_low=dict(type="str"), pids_max=dict(type="str"),
    io_weight=dict(type="int"), io_max=dict(type="list", elements="dict", options=IO_SPEC),
)


def decode_limits(text):
    """limits_json -> its entries, checked and completed as AnsibleModule does O(limits). Raises InputError."""
    if not text:
        return []
    if isinstance(text, list):  # ansible-core before 2.19 made a list of the role's JSON string
        entries = text
    else:
        try:
            entries = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise InputError("limits_json: not JSON (%s)" % exc)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError("limits_json: must be a JSON list of objects (entries of limits)")
    out, rest = [], []
    for index, entry in enumerate(entries):
        if _plain(entry):  # already of the types the spec converts to: completed here, 0.1 ms each saved
            done = dict.fromkeys(LIMIT_SPEC)
            for key, value in entry.items():  # an int where the spec says str (pids_max: 4096) -> its text
                done[key] = str(value) if _is_int(value) and LIMIT_SPEC[key]["type"] == "str" else value
            out.append(done)
        else:
            out.append(None)
            rest.append(index)
    if rest:  # anything else goes through the validator AnsibleModule uses (conversions, its messages)
        checked = ArgumentSpecValidator(dict(limits_json=dict(type="list", elements="dict", options=LIMIT_SPEC))) \
            .validate({"limits_json": [entries[i] for i in rest]})
        if checked.error_messages:
            raise InputError("; ".join(checked.error_messages[:5]))
        for index, entry in zip(rest, checked.validated_parameters["limits_json"]):
            out[index] = entry
    return out


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _plain(entry):
    """True when every key of a limits entry is known and every value already has its spec's type
    (a str of its choices, an int that is not a bool, or null; an int for a str without choices, which
    AnsibleModule turns into its text too); io_max always goes to the validator."""
    for key, value in entry.items():
        spec = LIMIT_SPEC.get(key)
        if spec is None:
            return False
        if value is None:
            continue
        if spec["type"] == "int":
            if not _is_int(value):
                return False
        elif spec["type"] != "str":
            return False
        elif isinstance(value, str):
            if value not in spec.get("choices", [value]):
                return False
        elif not _is_int(value) or "choices" in spec:
            return False
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            limits=dict(type="list", elements="dict", default=[], options=LIMIT_SPEC),
            limits_json=dict(type="raw"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            backend=dict(type="str", choices=["auto", "systemd", "cgroupfs"], default="auto"),
            parent=dict(type="str", default="fairshare"),
            exclusive=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            persist=dict(type="bool"),
            adopt_processes=dict(type="bool", default=True),
            user_defaults=dict(type="dict"),
            user_defaults_exempt=dict(type="list", elements="str", default=[]),
            report=dict(type="str", choices=REPORT_CHOICES, default="auto"),
        ),
        supports_check_mode=True,
    )
    host = Host(module)
    try:
        p = module.params
        from_json = decode_limits(p["limits_json"])
        p["parent"] = check_parent(p["parent"])
        targets = build_targets(from_json + p["limits"], p["state"], p["force"], p["parent"],
                                lambda device: devnum_of(device, host.stat),
                                read_sys_uid_max(), first=len(from_json))
    except (InputError, OSError) as exc:
        module.fail_json(msg=str(exc))
    layout = read_cgroup_layout()
    init = init_system()
    backend_name = module.params["backend"]
    if backend_name == "auto":
        backend_name = "systemd" if init == "systemd" else "cgroupfs"
    if backend_name == "systemd" and init != "systemd":
        module.fail_json(msg="backend: 'systemd' was asked for, but PID 1 is %r; use backend: cgroupfs or auto" % init)
    # the systemd release, read once: which properties it knows, and whether it has the user-.slice template
    release = systemd_version(host.run(["systemctl", "--version"], check=False)[1]) if backend_name == "systemd" else None
    result = dict(changed=False, backend=backend_name, cgroup_version=layout["version"], init_system=init,
                  daemon_reload=False, targets=[], removed=[])
    try:
        template_limits, warnings = template_limits_of(module.params["user_defaults"], backend_name,
                                                       module.params["force"], release)
    except InputError as exc:
        module.fail_json(msg=str(exc))
    for warning in warnings:
        module.warn(warning)
    try:
        out = apply_call(host, layout, backend_name, targets, module.params, template_limits, release)
    except (FairshareError, OSError) as exc:
        module.fail_json(msg=str(exc), **host.partial(result))
    diff = out.pop("diff")
    for warning in out.pop("warnings_extra", []):
        module.warn(warning)
    result.update(out)
    if result.get("left"):
        module.warn("cgroups under %s that this module did not make (a container engine's, another program's) are "
                    "left as they are, with the levels above them: %s"
                    % (module.params["parent"], ", ".join(result["left"][:10])))
    for warning in grouped_warnings(result["targets"]):
        module.warn(warning)
    params = module.params
    module.exit_json(**bound_result(result, ["targets", "removed"], params["report"], module._diff, diff, params))


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gpu_access
short_description: Which user may open which GPU, enforced by device files and the device cgroup
version_added: "0.1.0"
description:
  - Discovers NVIDIA GPUs (C(nvidia-smi), else C(/proc/driver/nvidia/gpus), else C(/dev/nvidia[0-9]*))
    and their control devices. A host without GPUs gets C(gpus=[]) and no change (an error with O(require=true)).
  - For a B(list) of users in one call - group membership for users granted a GPU; for users not
    granted every GPU, a device-cgroup allowlist - the GPUs they are granted, the control devices they
    need, and the ordinary terminal and pseudo devices. With systemd a drop-in
    C(user-<UID>.slice.d/60-fairshare-gpu.conf) (C(DevicePolicy=auto) + C(DeviceAllow=), cgroup v1 and v2);
    without systemd on cgroup v1 C(devices.deny)/C(devices.allow) in C(<parent>/user-<UID>).
    This holds whatever a user puts in C(CUDA_VISIBLE_DEVICES).
  - Device files - group and mode now, through udev rules, and through C(NVreg_DeviceFileGID)/C(NVreg_DeviceFileMode)
    in a modprobe.d file of ours for the next driver load.
  - NVIDIA container toolkit - C(accept-nvidia-visible-devices-envvar-when-unprivileged = false) where it is installed.
  - MIG - per-user instance counts recorded in C(/etc/fairshare/gpu.json) and checked against the GPUs' MIG mode.
author:
  - fairshare.resources contributors (@fairshare)
attributes:
  check_mode:
    support: full
    description: Discovers and compares; changes nothing.
  diff_mode:
    support: full
    description: Text of every file written, device cgroup allowlists, group members.
options:
  users:
    description: The users and the GPUs each may open.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: User name or UID.
        type: str
        required: true
      gpus:
        description: C(all), C(none) (the default), or a list of GPU indexes or UUIDs.
        type: raw
      count:
        description:
          - This many GPUs of the host, picked by the module (not with O(users[].gpus)) - different GPUs for one
            user, each GPU to at most O(share) users, and the same GPUs on every run while they exist (kept in
            C(/etc/fairshare/gpu.json) by UUID). V(0) grants none.
          - Counts that add up to more than the GPUs times O(share) are refused with the numbers, before any change.
        type: int
      mig:
        description: Most MIG instances this user may hold (recorded and checked against MIG mode).
        type: int
  placement:
    description:
      - Where O(users[].count) GPUs go - V(spread) to the least used GPU, V(pack) to the most used one that still
        has room (with O(share) above 1). Ties go to the lower index; users with more GPUs pick first.
    type: str
    choices: [spread, pack]
    default: spread
  share:
    description: How many users' counts one GPU may serve (1 - exclusive; the policy's C(oversubscription.gpu)).
    type: int
    default: 1
  policy:
    description: V(restricted) - device files C(0660) for O(group) only; V(open) - C(0666).
    type: str
    choices: [restricted, open]
    default: restricted
  group:
    description: The unix group that owns the GPU device files.
    type: str
    default: video
  device_cgroup:
    description: Enforce per-user allowlists in the device cgroup.
    type: bool
    default: true
  container_toolkit:
    description: Set the NVIDIA container toolkit option where the toolkit is installed.
    type: bool
    default: true
  require:
    description: Fail on a host without GPUs.
    type: bool
    default: false
  parent:
    description: The managed parent cgroup of hosts without systemd.
    type: str
    default: fairshare
notes:
  - A restricted user's sessions keep terminals, C(/dev/null) and the like, and misc devices (fuse, tun);
    other devices (disks, other GPUs) are refused in that user's slice, also under sudo inside it.
"""

EXAMPLES = r"""
- name: GPU 0 for alice, GPUs 1-2 for bob, none for carol
  fairshare.resources.gpu_access:
    group: video
    users:
      - {name: alice, gpus: [0]}
      - {name: bob, gpus: [1, 2], mig: 4}
      - {name: carol, gpus: none}

- name: Any two GPUs for dave and one for erin - different GPUs, the same ones on every run
  fairshare.resources.gpu_access:
    users:
      - {name: dave, count: 2}
      - {name: erin, count: 1}
"""

RETURN = r"""
gpus:
  description: The GPUs found.
  returned: always
  type: list
  elements: dict
  sample: [{index: 0, uuid: GPU-5c1e..., pci_bus_id: "00000000:17:00.0", mig: false, device: /dev/nvidia0}]
controls:
  description: The control devices found.
  returned: always
  type: list
  elements: str
users:
  description: Per user - uid, granted GPU indexes, the enforcement applied.
  returned: always
  type: list
  elements: dict
backend:
  description: How the device cgroup is enforced (systemd, cgroupfs-v1, none).
  returned: always
  type: str
actions:
  description: What was done (or would be, in check mode).
  returned: always
  type: list
  elements: str
driver_reset:
  description:
    - Device files that had the group and mode wanted until this call's own C(nvidia-smi) had the loaded driver make
      them again with its own (root's NVML does that where the driver was loaded without our C(NVreg_DeviceFile*)
      options); put back, and not counted as a change.
  returned: when the host has GPUs
  type: list
  elements: str
  sample: [/dev/nvidia0, /dev/nvidiactl]
driver_params:
  description: The device files' uid, gid and mode of the loaded driver, when they differ from what is wanted (a warning
    says that they hold fully from the next driver load).
  returned: when they differ
  type: dict
  sample: {uid: 0, gid: 0, mode: 438}
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

import glob
import grp
import json
import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fairshare.resources.plugins.module_utils.accounts import Accounts, NotFound
from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import MANAGED_HEADER, check_parent
from ansible_collections.fairshare.resources.plugins.module_utils.cgroupfs_persist import devices_script_path, render_devices
from ansible_collections.fairshare.resources.plugins.module_utils.host import Changes, CommandError, Host
from ansible_collections.fairshare.resources.plugins.module_utils.gpu_model import (
    PLACEMENTS, allocate, allowlist, check_gpu_list, file_action, parse_devices_list, parse_driver_params, parse_nvidia_smi,
    parse_proc_information, render_dropin, render_modprobe, render_udev, select_gpus, set_toolkit_option,
)
from ansible_collections.fairshare.resources.plugins.module_utils.platform import init_system, read_cgroup_layout
from ansible_collections.fairshare.resources.plugins.module_utils.units import UnitError

DROPIN = "/etc/systemd/system/user-%d.slice.d/60-fairshare-gpu.conf"
UDEV_RULES = "/etc/udev/rules.d/70-fairshare-gpu.rules"
MODPROBE = "/etc/modprobe.d/fairshare-nvidia.conf"
TOOLKIT = "/etc/nvidia-container-runtime/config.toml"
STATE = "/etc/fairshare/gpu.json"
CONTROLS = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]


def devnum(path):
    st = os.stat(path)
    return "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode) else None


def device_files():
    """{path: (gid, mode)} of the NVIDIA character devices now."""
    found = {}
    for path in glob.glob("/dev/nvidia*") + glob.glob("/dev/nvidia-caps/*"):
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode):
            found[path] = (st.st_gid, stat.S_IMODE(st.st_mode))
    return found


def discover(host):
    """NVIDIA GPUs with their device files, and the control devices."""
    gpus = []
    rc, out, err = host.run(["nvidia-smi", "--query-gpu=index,uuid,pci.bus_id,mig.mode.current",
                             "--format=csv,noheader"], check=False)
    if rc == 0:
        gpus = parse_nvidia_smi(out)
    if not gpus:
        for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
            data = parse_proc_information(host.read(info) or "")
            if "minor" in data:
                gpus.append({"index": data["minor"], "uuid": data.get("uuid"), "pci_bus_id": data.get("bus"),
                             "mig": None, "vendor": "nvidia", "device": "/dev/nvidia%d" % data["minor"]})
    if not gpus:
        for path in sorted(glob.glob("/dev/nvidia[0-9]*")):
            suffix = path[len("/dev/nvidia"):]
            if suffix.isdigit():
                gpus.append({"index": int(suffix), "uuid": None, "pci_bus_id": None, "mig": None,
                             "vendor": "nvidia", "device": path})
    for gpu in gpus:
        gpu["devnum"] = devnum(gpu["device"]) if os.path.exists(gpu["device"]) else None
    controls = [p for p in CONTROLS + sorted(glob.glob("/dev/nvidia-caps/*")) if os.path.exists(p)]
    return sorted(gpus, key=lambda g: g["index"]), controls


def v1_devices(changes, layout, parent, uid, entries):
    """cgroupfs v1: deny all, then allow the list, in <parent>/user-<uid> (read back from devices.list)."""
    root = layout["v1"]["devices"]
    path = os.path.join(root, parent, "user-%d" % uid)
    live = parse_devices_list(changes.host.read(os.path.join(path, "devices.list")) or "") if os.path.isdir(path) else None
    if entries is None:  # unrestricted: our cgroup goes (its processes back to the root)
        if live is not None:
            changes.actions.append("remove device cgroup %s" % path)
            if not changes.host.check_mode:
                for pid in (changes.host.read(os.path.join(path, "cgroup.procs")) or "").split():
                    changes.host.write_kernel(os.path.join(root, "cgroup.procs"), pid)
                os.rmdir(path)
        return live
    if live == entries:
        return live
    changes.actions.append("device cgroup %s: allow %s" % (path, ", ".join("%s %s" % e for e in entries)))
    changes.diff.append({"before_header": path, "after_header": path, "before": json.dumps(live) + "\n",
                         "after": json.dumps(entries) + "\n"})
    if not changes.host.check_mode:
        current = root
        for part in (parent, "user-%d" % uid):
            current = os.path.join(current, part)
            if not os.path.isdir(current):
                os.mkdir(current)
        changes.host.write_kernel(os.path.join(path, "devices.deny"), "a")
        for kind, num in entries:
            changes.host.write_kernel(os.path.join(path, "devices.allow"), "%s %s rwm" % (kind, num))
        got = parse_devices_list(changes.host.read(os.path.join(path, "devices.list")) or "")
        if got != entries:
            raise UnitError("device cgroup %s reads back %s, not %s" % (path, got, entries))
    return live


def main():
    module = AnsibleModule(
        argument_spec=dict(
            users=dict(type="list", elements="dict", default=[],
                       options=dict(name=dict(type="str", required=True), gpus=dict(type="raw"),
                                    count=dict(type="int"), mig=dict(type="int"))),
            placement=dict(type="str", choices=list(PLACEMENTS), default="spread"),
            share=dict(type="int", default=1),
            policy=dict(type="str", choices=["restricted", "open"], default="restricted"),
            group=dict(type="str", default="video"),
            device_cgroup=dict(type="bool", default=True),
            container_toolkit=dict(type="bool", default=True),
            require=dict(type="bool", default=False),
            parent=dict(type="str", default="fairshare"),
        ),
        supports_check_mode=True,
    )
    host = Host(module)
    changes = Changes(host)
    params = module.params
    try:
        params["parent"] = check_parent(params["parent"])
    except UnitError as exc:
        module.fail_json(msg=str(exc))
    before = device_files()  # root's NVML (our nvidia-smi) has the driver make them again with its own gid and mode
    gpus, controls = discover(host)
    result = dict(changed=False, gpus=gpus, controls=controls, users=[], actions=[], backend="none", driver_reset=[])
    try:
        # ---- validate everything first, on hosts without a GPU too (a typo must not wait for the GPU host)
        try:
            group = grp.getgrnam(params["group"])
        except KeyError:
            raise UnitError("group: %r is not a group on this host" % params["group"])
        plans = []
        accounts = Accounts(expected=len(params["users"]))
        for i, entry in enumerate(params["users"]):
            where = "users[%d]" % i
            try:
                pw = accounts.user(entry["name"])
            except NotFound:
                raise UnitError("%s.name: %r is not a user on this host" % (where, entry["name"]))
            if entry["count"] is not None and entry["gpus"] is not None:
                raise UnitError("%s: give gpus or count, not both" % where)
            if entry["count"] is not None and not 0 <= entry["count"] <= 1024:
                raise UnitError("%s.count: %r is not a number of GPUs (0 to 1024)" % (where, entry["count"]))
            # a fleet's policy may name GPUs that only its GPU hosts have: elsewhere nothing is granted
            granted = select_gpus(where, entry["gpus"], gpus) if gpus else check_gpu_list(where, entry["gpus"])
            if entry["mig"] is not None and entry["mig"] < 0:
                raise UnitError("%s.mig: %r must be 0 or more" % (where, entry["mig"]))
            plans.append({"name": pw.pw_name, "uid": pw.pw_uid, "granted": granted, "mig": entry["mig"],
                          "count": entry["count"], "all": granted == [g["index"] for g in gpus]})
        # ---- GPU counts: exactly N GPUs each, the same ones on every run (gpu.json keeps them by UUID)
        old_state = json.loads(host.read(STATE) or "{}")
        counts = dict((p["name"], p["count"]) for p in plans if p["count"])
        picked, keys = allocate(counts, gpus, old_state.get("allocation"), params["share"], params["placement"]) \
            if gpus else ({}, {})
        for plan in plans:
            if plan["count"] is not None:
                plan["granted"] = picked.get(plan["name"], [])
                plan["all"] = False  # held to the GPUs picked, even when that is every one
    except UnitError as exc:
        module.fail_json(msg=str(exc), **result)
    if not gpus:
        if params["require"]:
            module.fail_json(msg="require: no GPU found on this host (nvidia-smi, /proc/driver/nvidia, /dev/nvidia*)",
                             **result)
        result["users"] = [{"name": p["name"], "uid": p["uid"], "gpus": [], "note": "no GPU on this host"}
                           for p in plans]
        module.exit_json(**result)
    try:
        init = init_system()
        layout = read_cgroup_layout()
        backend = "none"
        if params["device_cgroup"]:
            if init == "systemd":
                backend = "systemd"
            elif "devices" in layout["v1"]:
                backend = "cgroupfs-v1"
            else:
                module.warn("device_cgroup: no systemd and no cgroup v1 devices controller here (cgroup v2 device "
                            "control is BPF, which systemd manages); only device files and groups are enforced")
        result["backend"] = backend
        mode = "0660" if params["policy"] == "restricted" else "0666"

        # ---- device files: now, by udev rules, and at the next driver load
        want = (group.gr_gid, int(mode, 8))
        for path in [g["device"] for g in gpus if os.path.exists(g["device"])] + controls:
            st = os.stat(path)
            action = file_action((st.st_gid, stat.S_IMODE(st.st_mode)), before.get(path), want)
            if action == "reset":
                result["driver_reset"].append(path)
            elif action == "change":
                changes.actions.append("%s: group %s, mode %s" % (path, group.gr_name, mode))
            if action and not module.check_mode:
                os.chown(path, -1, group.gr_gid)
                os.chmod(path, int(mode, 8))
        loaded = parse_driver_params(host.read("/proc/driver/nvidia/params") or "")
        if loaded and (loaded["gid"], loaded["mode"]) != want:
            result["driver_params"] = loaded
            module.warn("the loaded NVIDIA driver makes its device files gid %d, mode %04o whenever a root process "
                        "starts NVML (nvidia-smi, a monitoring agent): they are %s again only when this module runs, until "
                        "the driver is loaded with %s (the next reboot); the device cgroup holds meanwhile where there is "
                        "one (backend: %s)" % (loaded["gid"], loaded["mode"], "group %s, mode %s" % (group.gr_name, mode),
                                               MODPROBE, backend))
        if changes.file(UDEV_RULES, render_udev(group.gr_name, mode)) and not module.check_mode:
            host.run(["udevadm", "control", "--reload"], check=False)
        changes.file(MODPROBE, render_modprobe(group.gr_gid, mode))
        if params["container_toolkit"] and os.path.exists(TOOLKIT):
            new, differs = set_toolkit_option(host.read(TOOLKIT) or "")
            if differs:
                changes.file(TOOLKIT, new)

        # ---- per user: group membership and the device cgroup
        members = set(group.gr_mem)
        reload_needed = False
        restore = {}  # cgroupfs-v1: uid -> allowlist, put back by the session hook after a reboot
        mig_gpus = [g["index"] for g in gpus if g.get("mig")]
        for plan in plans:
            res = {"name": plan["name"], "uid": plan["uid"], "gpus": plan["granted"], "mig": plan["mig"],
                   "restricted": not plan["all"]}
            in_group = plan["name"] in members or accounts.user(plan["name"]).pw_gid == group.gr_gid
            if plan["granted"] and not in_group:
                changes.run("add %s to group %s" % (plan["name"], group.gr_name),
                            ["gpasswd", "-a", plan["name"], group.gr_name])
            elif not plan["granted"] and plan["name"] in members:
                changes.run("remove %s from group %s" % (plan["name"], group.gr_name),
                            ["gpasswd", "-d", plan["name"], group.gr_name])
            if backend == "systemd":
                paths = [g["device"] for g in gpus if g["index"] in plan["granted"]]
                paths += controls if plan["granted"] else []
                text = None if plan["all"] else render_dropin(paths)
                reload_needed |= changes.file(DROPIN % plan["uid"], text)
                res["allow"] = paths if text else "all"
            elif backend == "cgroupfs-v1":
                entries = None if plan["all"] else allowlist(
                    plan["granted"], [g for g in gpus if g["devnum"]], [devnum(c) for c in controls])
                v1_devices(changes, layout, params["parent"], plan["uid"], entries)
                res["allow"] = ["%s %s" % e for e in entries] if entries else "all"
                if entries:
                    restore[plan["uid"]] = entries
            if plan["mig"] and not any(i in mig_gpus for i in plan["granted"]):
                module.warn("users: %s may hold %d MIG instances, but none of the GPUs granted (%s) has MIG enabled"
                            % (plan["name"], plan["mig"], plan["granted"] or "none"))
            result["users"].append(res)
        if reload_needed and not module.check_mode:
            host.change(["systemctl", "daemon-reload"])
        if backend == "cgroupfs-v1":
            script = devices_script_path(params["parent"])
            old = host.read(script)
            if old is None or old.startswith("#!/bin/sh\n" + MANAGED_HEADER):
                changes.file(script, render_devices(params["parent"], layout["v1"]["devices"], restore)
                             if restore else None, 0o755, prune=False)
            else:
                module.warn("%s is not ours (no managed header): left as it is; device allowlists are not put back "
                            "after a reboot until the next run" % script)
        state = {"mig": dict((p["name"], p["mig"]) for p in plans if p["mig"] is not None)}
        if keys:
            state["allocation"] = keys
        if dict((k, v) for k, v in old_state.items() if k in ("mig", "allocation") and v) != \
                dict((k, v) for k, v in state.items() if v):
            changes.file(STATE, json.dumps(state, indent=1, sort_keys=True) + "\n")
    except (UnitError, CommandError, OSError) as exc:
        module.fail_json(msg=str(exc), **host.partial(result))
    module.exit_json(**changes.summary(result, module._diff))


if __name__ == "__main__":
    main()

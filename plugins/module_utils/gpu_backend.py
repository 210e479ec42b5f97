# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpu_access's backend: discovery, the check of a request, and its application (device files, udev and
modprobe rules, group membership, the device cgroup of systemd or cgroup v1, gpu.json). Everything it
alters goes through Host/Changes; what the module should warn about is collected in `warnings`.
No AnsibleModule import: the module is argument spec, this, and exit.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import grp
import json
import os
import stat

from ansible_collections.fairshare.resources.plugins.module_utils.accounts import Accounts, NotFound
from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import MANAGED_HEADER
from ansible_collections.fairshare.resources.plugins.module_utils.cgroupfs_persist import devices_script_path, render_devices
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError, VerificationError
from ansible_collections.fairshare.resources.plugins.module_utils.gpu_model import (
    CAPS_NODE, CAPS_PROC, allocate, allowlist, check_gpu_list, file_action, mig_instances, mig_pool, parse_caps_minor,
    parse_devices_list, parse_driver_params, parse_nvidia_smi, parse_proc_information, render_dropin, render_modprobe,
    render_udev, select_gpus, set_toolkit_option,
)
from ansible_collections.fairshare.resources.plugins.module_utils.host import Changes
from ansible_collections.fairshare.resources.plugins.module_utils.platform import init_system, read_cgroup_layout

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
    rc, out, _err = host.run(["nvidia-smi", "--query-gpu=index,uuid,pci.bus_id,mig.mode.current",
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
    controls = [p for p in CONTROLS if os.path.exists(p)]  # the nvidia-caps nodes are per MIG instance (discover_mig)
    return sorted(gpus, key=lambda g: g["index"]), controls


def caps_major(host):
    """The character major of nvidia-caps from /proc/devices, or None."""
    for line in (host.read("/proc/devices") or "").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1] == "nvidia-caps" and fields[0].isdigit():
            return int(fields[0])
    return None


def discover_mig(host):
    """The host's MIG instances (gpu_model.mig_instances) with their caps nodes: paths (the node, else systemd's
    /dev/char/MAJ:MIN where the driver has not made it) and device numbers. Instances whose caps have neither a
    node nor a known major are left out (nothing could grant them)."""
    access = {}
    for pattern in ("gpu*/mig/gi*/access", "gpu*/mig/gi*/ci*/access"):
        for path in glob.glob(os.path.join(CAPS_PROC, pattern)):
            access[os.path.relpath(path, CAPS_PROC)] = parse_caps_minor(host.read(path))
    major = None
    found = []
    for inst in mig_instances(access):
        paths, nums = [], []
        for minor in inst["caps"]:
            node = CAPS_NODE % minor
            num = devnum(node) if os.path.exists(node) else None
            if num is None:
                major = major or caps_major(host)
                num = None if major is None else "%d:%d" % (major, minor)
                node = None if num is None else "/dev/char/" + num
            paths.append(node)
            nums.append(num)
        if None not in nums:
            found.append(dict(inst, paths=paths, devnums=nums, device="/dev/nvidia%d" % inst["gpu"]))
    return found


def v1_devices(changes, layout, parent, uid, entries):
    """cgroupfs v1: deny all, then allow the list, in <parent>/user-<uid> (read back from devices.list)."""
    host = changes.host
    root = layout["v1"]["devices"]
    path = os.path.join(root, parent, "user-%d" % uid)
    live = parse_devices_list(host.read(os.path.join(path, "devices.list")) or "") if os.path.isdir(path) else None
    if entries is None:  # unrestricted: our cgroup goes (its processes back to the root)
        if live is not None:
            changes.actions.append("remove device cgroup %s" % path)
            if not host.check_mode:
                for pid in (host.read(os.path.join(path, "cgroup.procs")) or "").split():
                    host.write_kernel(os.path.join(root, "cgroup.procs"), pid)
                host.rmdir(path)
        return live
    if live == entries:
        return live
    changes.actions.append("device cgroup %s: allow %s" % (path, ", ".join("%s %s" % e for e in entries)))
    changes.diff.append({"before_header": path, "after_header": path, "before": json.dumps(live) + "\n",
                         "after": json.dumps(entries) + "\n"})
    if not host.check_mode:
        current = root
        for part in (parent, "user-%d" % uid):
            current = os.path.join(current, part)
            if not os.path.isdir(current):
                host.mkdir(current)
        host.write_kernel(os.path.join(path, "devices.deny"), "a")
        for kind, num in entries:
            host.write_kernel(os.path.join(path, "devices.allow"), "%s %s rwm" % (kind, num))
        got = parse_devices_list(host.read(os.path.join(path, "devices.list")) or "")
        if got != entries:
            raise VerificationError("device cgroup %s reads back %s, not %s" % (path, got, entries))
    return live


class GpuBackend(object):
    """One call of gpu_access: discover, check(), then apply(). warnings: what the module says."""

    def __init__(self, host):
        self.host = host
        self.changes = Changes(host)
        self.warnings = []
        self.before = device_files()  # root's NVML (our nvidia-smi) makes them again with the driver's gid and mode
        self.gpus, self.controls = discover(host)
        self.mig = discover_mig(host) if self.gpus else []

    def check(self, params):
        """Every user entry checked (on hosts without a GPU too: a typo must not wait for the GPU host), and the
        GPU counts allocated (the same GPUs on every run: gpu.json keeps them by UUID). Raises InputError.
        -> the request apply() takes."""
        gpus = self.gpus
        try:
            group = grp.getgrnam(params["group"])
        except KeyError:
            raise InputError("group: %r is not a group on this host" % params["group"])
        plans = []
        accounts = Accounts(expected=len(params["users"]))
        for i, entry in enumerate(params["users"]):
            where = "users[%d]" % i
            absent = entry.get("state") == "absent"
            try:
                pw = accounts.user(entry["name"])
                name, uid, gid = pw.pw_name, pw.pw_uid, pw.pw_gid
            except NotFound:
                if not (absent and str(entry["name"]).isdigit()):
                    raise InputError("%s.name: %r is not a user on this host%s" % (
                        where, entry["name"], "" if absent else " (a UID without a user is taken only with state: absent)"))
                name, uid, gid = str(entry["name"]), int(entry["name"]), None  # a user who is gone: by uid
            if absent:
                if entry["gpus"] is not None or entry["count"] is not None:
                    raise InputError("%s: state: absent grants nothing; give no gpus or count" % where)
                plans.append({"name": name, "uid": uid, "gid": gid, "granted": [], "mig": None, "count": None,
                              "all": False, "absent": True})
                continue
            if entry["count"] is not None and entry["gpus"] is not None:
                raise InputError("%s: give gpus or count, not both" % where)
            if entry["count"] is not None and not 0 <= entry["count"] <= 1024:
                raise InputError("%s.count: %r is not a number of GPUs (0 to 1024)" % (where, entry["count"]))
            # a fleet's policy may name GPUs that only its GPU hosts have: elsewhere nothing is granted
            granted = select_gpus(where, entry["gpus"], gpus) if gpus else check_gpu_list(where, entry["gpus"])
            if entry["mig"] is not None and not 0 <= entry["mig"] <= 1024:
                raise InputError("%s.mig: %r is not a number of MIG instances (0 to 1024)" % (where, entry["mig"]))
            plans.append({"name": name, "uid": uid, "gid": gid, "granted": granted, "mig": entry["mig"],
                          "count": entry["count"], "all": granted == [g["index"] for g in gpus], "absent": False})
        old_state = json.loads(self.host.read(STATE) or "{}")
        counts = dict((p["name"], p["count"]) for p in plans if p["count"])
        mig_gpus = set(i["gpu"] for i in self.mig)
        whole = [g for g in gpus if g["index"] not in mig_gpus]  # a MIG GPU goes by its instances
        picked, keys = allocate(counts, whole, old_state.get("allocation"), params["share"], params["placement"]) \
            if gpus else ({}, {})
        migs = dict((p["name"], p["mig"]) for p in plans if p["mig"] and not p["absent"])
        mig_keys = {}
        if migs and self.mig:
            mig_keys = allocate(migs, mig_pool(self.mig, params["placement"]), old_state.get("mig_allocation"), 1,
                                params["placement"], ("gpu.mig", "MIG instance", "MIG instance(s)", False))[1]
        elif migs and gpus:
            self.warnings.append("gpu.mig: %s ask for MIG instances; no GPU of this host has any (MIG not enabled, or "
                                 "no instance made): none granted" % ", ".join(sorted(migs)))
        for plan in plans:
            if plan["count"] is not None:
                plan["granted"] = picked.get(plan["name"], [])
                plan["all"] = False  # held to the GPUs picked, even when that is every one
            plan["mig_keys"] = mig_keys.get(plan["name"], [])
            if plan["mig_keys"]:
                plan["all"] = False
        return {"group": group, "plans": plans, "keys": keys, "mig_keys": mig_keys, "old_state": old_state}

    def backend_name(self, params, layout):
        if not params["device_cgroup"]:
            return "none"
        if init_system() == "systemd":
            return "systemd"
        if "devices" in layout["v1"]:
            return "cgroupfs-v1"
        self.warnings.append("device_cgroup: no systemd and no cgroup v1 devices controller here (cgroup v2 device "
                             "control is BPF, which systemd manages); only device files and groups are enforced")
        return "none"

    def device_modes(self, group, mode, backend, result):
        """Device files now, by udev rules, and at the next driver load."""
        host, changes = self.host, self.changes
        want = (group.gr_gid, int(mode, 8))
        caps = [p for inst in self.mig for p in inst["paths"] if p.startswith("/dev/nvidia-caps/")]
        for path in [g["device"] for g in self.gpus if os.path.exists(g["device"])] + self.controls + caps:
            st = os.stat(path)
            action = file_action((st.st_gid, stat.S_IMODE(st.st_mode)), self.before.get(path), want)
            if action == "reset":
                result["driver_reset"].append(path)
            elif action == "change":
                changes.actions.append("%s: group %s, mode %s" % (path, group.gr_name, mode))
            if action and not host.check_mode:
                host.set_mode(path, int(mode, 8), gid=group.gr_gid)
        loaded = parse_driver_params(host.read("/proc/driver/nvidia/params") or "")
        if loaded and (loaded["gid"], loaded["mode"]) != want:
            result["driver_params"] = loaded
            self.warnings.append(
                "the loaded NVIDIA driver makes its device files gid %d, mode %04o whenever a root process starts NVML "
                "(nvidia-smi, a monitoring agent): they are %s again only when this module runs, until the driver is "
                "loaded with %s (the next reboot); the device cgroup holds meanwhile where there is one (backend: %s)"
                % (loaded["gid"], loaded["mode"], "group %s, mode %s" % (group.gr_name, mode), MODPROBE, backend))
        if changes.file(UDEV_RULES, render_udev(group.gr_name, mode)) and not host.check_mode:
            host.run(["udevadm", "control", "--reload"], check=False)
        changes.file(MODPROBE, render_modprobe(group.gr_gid, mode))

    def apply(self, params, request, result):
        """Apply a checked request (check()) on a host with GPUs; fills result (backend, users, driver_reset,
        driver_params). Raises HostError/VerificationError, OSError."""
        host, changes = self.host, self.changes
        group, plans = request["group"], request["plans"]
        layout = read_cgroup_layout()
        backend = result["backend"] = self.backend_name(params, layout)
        self.device_modes(group, "0660" if params["policy"] == "restricted" else "0666", backend, result)
        if params["container_toolkit"] and os.path.exists(TOOLKIT):
            new, differs = set_toolkit_option(host.read(TOOLKIT) or "")
            if differs:
                changes.file(TOOLKIT, new)
        members = set(group.gr_mem)
        reload_needed = False
        restore = {}  # cgroupfs-v1: uid -> allowlist, put back by the session hook after a reboot
        instances = dict((inst["key"], inst) for inst in self.mig)
        for plan in plans:
            res = {"name": plan["name"], "uid": plan["uid"], "gpus": plan["granted"], "mig": plan["mig"],
                   "mig_instances": plan["mig_keys"], "restricted": not plan["all"]}
            # the user's MIG instances, and every instance of a MIG GPU granted whole
            mine = [instances[k] for k in plan["mig_keys"]] + [
                i for i in self.mig if i["gpu"] in plan["granted"] and i["key"] not in plan["mig_keys"]]
            opens = sorted(set(plan["granted"]) | set(i["gpu"] for i in mine))  # the GPU nodes the user opens
            if plan["absent"]:
                res["state"] = "absent"
            in_group = plan["name"] in members or plan["gid"] == group.gr_gid
            if opens and not in_group:
                changes.run("add %s to group %s" % (plan["name"], group.gr_name),
                            ["gpasswd", "-a", plan["name"], group.gr_name])
            elif not opens and plan["name"] in members:
                changes.run("remove %s from group %s" % (plan["name"], group.gr_name),
                            ["gpasswd", "-d", plan["name"], group.gr_name])
            if backend == "systemd":
                paths = [g["device"] for g in self.gpus if g["index"] in opens]
                paths += (self.controls if opens else []) + [p for i in mine for p in i["paths"]]
                text = None if plan["all"] or plan["absent"] else render_dropin(paths)
                reload_needed |= changes.file(DROPIN % plan["uid"], text)
                res["allow"] = paths if text else "all"
            elif backend == "cgroupfs-v1":
                entries = None if plan["all"] or plan["absent"] else allowlist(
                    opens, [g for g in self.gpus if g["devnum"]], [devnum(c) for c in self.controls],
                    [n for i in mine for n in i["devnums"]])
                v1_devices(changes, layout, params["parent"], plan["uid"], entries)
                res["allow"] = ["%s %s" % e for e in entries] if entries else "all"
                if entries:
                    restore[plan["uid"]] = entries
            if plan["absent"]:  # nothing of ours holds the user now, either way
                res.pop("allow", None)
                res["restricted"] = False
            result["users"].append(res)
        if reload_needed and not host.check_mode:
            host.change(["systemctl", "daemon-reload"])
        if backend == "cgroupfs-v1":
            script = devices_script_path(params["parent"])
            old = host.read(script)
            if old is None or old.startswith("#!/bin/sh\n" + MANAGED_HEADER):
                changes.file(script, render_devices(params["parent"], layout["v1"]["devices"], restore)
                             if restore else None, 0o755, prune=False)
            else:
                self.warnings.append("%s is not ours (no managed header): left as it is; device allowlists are not "
                                     "put back after a reboot until the next run" % script)
        state = dict((k, v) for k, v in (("allocation", request["keys"]), ("mig_allocation", request["mig_keys"])) if v)
        old_state = request["old_state"]
        if dict((k, v) for k, v in old_state.items() if k in ("mig", "allocation", "mig_allocation") and v) != state:
            changes.file(STATE, json.dumps(state, indent=1, sort_keys=True) + "\n")

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The model of gpu_access: discovery parsers, who may open which device, and the files we write.

Pure Python, no AnsibleModule import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fairshare.resources.plugins.module_utils.managed import MANAGED_HEADER
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError

TOOLKIT_KEY = "accept-nvidia-visible-devices-envvar-when-unprivileged"
# What every restricted user keeps (systemd's DevicePolicy=auto set, plus terminals and misc):
# null zero full random urandom, tty ptmx, /dev/pts/*, misc (fuse, tun, ...).
BASE_ALLOW = [("c", "1:3"), ("c", "1:5"), ("c", "1:7"), ("c", "1:8"), ("c", "1:9"), ("c", "5:0"), ("c", "5:2"),
              ("c", "136:*"), ("c", "10:*")]
BASE_SYSTEMD = ["char-pts rw", "char-misc rw"]


def parse_nvidia_smi(text):
    """`nvidia-smi --query-gpu=index,uuid,pci.bus_id,mig.mode.current --format=csv,noheader` -> GPUs."""
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        gpus.append({"index": int(fields[0]), "uuid": fields[1], "pci_bus_id": fields[2],
                     "mig": fields[3].lower() == "enabled", "vendor": "nvidia",
                     "device": "/dev/nvidia%d" % int(fields[0])})
    return gpus


def parse_proc_information(text):
    """/proc/driver/nvidia/gpus/<bus>/information -> {'minor', 'uuid', 'bus'}."""
    info = {}
    for line in text.splitlines():
        key, dummy, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Device Minor":
            info["minor"] = int(value)
        elif key == "GPU UUID":
            info["uuid"] = value
        elif key == "Bus Location":
            info["bus"] = value
    return info


def check_gpu_list(where, wanted):
    """The form of a gpus value without the host's GPUs (a host with none): -> [] or an InputError."""
    if wanted in (None, "none", "all", []) or wanted == ["all"]:
        return []
    items = wanted if isinstance(wanted, list) else [w.strip() for w in str(wanted).split(",")]
    for item in items:
        if isinstance(item, bool) or not str(item).strip() or (
                not str(item).strip().isdigit() and not str(item).strip().startswith(("GPU-", "MIG-"))):
            raise InputError("%s.gpus: %r is not a GPU index or UUID; use all, none, or indexes/UUIDs like [0, 1]"
                             % (where, item))
    return []


def select_gpus(where, wanted, gpus):
    """'all' | 'none' | [index or UUID] -> sorted indexes; unknown ones are an error naming them."""
    if wanted in (None, "none") or wanted == []:
        return []
    if wanted == "all" or wanted == ["all"]:
        return sorted(g["index"] for g in gpus)
    if not isinstance(wanted, list):
        wanted = [w.strip() for w in str(wanted).split(",")]
    chosen = []
    for item in wanted:
        item = str(item).strip()
        match = [g for g in gpus if str(g["index"]) == item or g.get("uuid") == item]
        if not match:
            known = ", ".join("%d (%s)" % (g["index"], g.get("uuid", "?")) for g in gpus) or "none on this host"
            raise InputError("%s.gpus: %r is not a GPU of this host; GPUs: %s" % (where, item, known))
        chosen.append(match[0]["index"])
    return sorted(set(chosen))


def allowlist(granted, gpus, controls):
    """The device-cgroup allowlist of a restricted user: base devices, control devices, granted GPUs.

    gpus: [{'index', 'devnum': 'MAJ:MIN'}]; controls: ['MAJ:MIN'] -> [('c', 'MAJ:MIN')] sorted.
    """
    entries = set(BASE_ALLOW)
    if granted:
        entries.update(("c", dev) for dev in controls)
    entries.update(("c", g["devnum"]) for g in gpus if g["index"] in granted)
    return sorted(entries)


def parse_devices_list(text):
    """cgroup v1 devices.list -> sorted [('c', 'MAJ:MIN')] ('a *:* rwm' -> [('a', '*:*')])."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3:
            entries.append((fields[0], fields[1]))
    return sorted(entries)


def render_dropin(paths):
    """systemd drop-in for a restricted user slice: allowlist by path (granted GPUs, control devices)."""
    lines = [MANAGED_HEADER, "[Slice]", "DevicePolicy=auto"]
    lines += ["DeviceAllow=%s" % base for base in BASE_SYSTEMD]
    lines += ["DeviceAllow=%s rw" % path for path in sorted(paths)]
    return "\n".join(lines) + "\n"


def render_udev(group, mode):
    return ("%s\n" % MANAGED_HEADER +
            'KERNEL=="nvidia[0-9]*|nvidiactl|nvidia-uvm|nvidia-uvm-tools|nvidia-modeset", GROUP="%s", MODE="%s"\n'
            'SUBSYSTEM=="nvidia-caps", GROUP="%s", MODE="%s"\n'
            'KERNEL=="renderD*|kfd", GROUP="%s", MODE="%s"\n' % (group, mode, group, mode, group, mode))


def render_modprobe(gid, mode):
    return "%s\noptions nvidia NVreg_DeviceFileUID=0 NVreg_DeviceFileGID=%d NVreg_DeviceFileMode=%d\n" % (
        MANAGED_HEADER, gid, int(mode, 8))


def parse_driver_params(text):
    """/proc/driver/nvidia/params -> {uid, gid, mode} of the device files the loaded driver makes
    (NVreg_DeviceFile*), or {} where the file does not say."""
    found = dict(re.findall(r"^DeviceFile(UID|GID|Mode):\s*(\d+)\s*$", text or "", re.M))
    if len(found) != 3:
        return {}
    return {"uid": int(found["UID"]), "gid": int(found["GID"]), "mode": int(found["Mode"])}


def file_action(now, before, want):
    """A device file's (gid, mode): now, before this run called nvidia-smi, and wanted ->
    None (as wanted), "reset" (it was as wanted until our own nvidia-smi call had the driver
    make it again with its own gid and mode: put back, not a change of the host) or "change"."""
    if now == want:
        return None
    return "reset" if before == want else "change"


def set_toolkit_option(text):
    """config.toml of the NVIDIA container toolkit with our key = false (top-level); -> (new, changed)."""
    line = "%s = false" % TOOLKIT_KEY
    pattern = re.compile(r"^\s*#?\s*%s\s*=.*$" % re.escape(TOOLKIT_KEY), re.M)
    if pattern.search(text):
        new = pattern.sub(line, text, count=1)
    else:
        new = line + "\n" + text
    return new, new != text


# --------------------------------------------------------------------------- GPU counts

PLACEMENTS = ("spread", "pack")


def gpu_key(gpu):
    """What an allocation remembers a GPU by: its UUID, else its index (nodes without nvidia-smi)."""
    return gpu.get("uuid") or "index:%d" % gpu["index"]


def allocate(counts, gpus, previous=None, share=1, placement="spread"):
    """counts {user: N}, the host's gpus, the previous allocation {user: [gpu_key]} -> {user: [indexes]}.

    Each user gets N different GPUs; each GPU goes to at most `share` users (1: exclusive; the
    policy's oversubscription.gpu). Sticky: a user keeps the GPUs they had while those exist and
    their count allows, so a rerun gives the same GPUs. New picks go to the least used GPU
    (spread) or the most used one that still has room (pack), ties to the lower index; users with
    the largest counts pick first, then by name. Raises InputError with the numbers when the host
    cannot hold the counts."""
    if placement not in PLACEMENTS:
        raise InputError("placement: %r is not allowed; use spread or pack" % (placement,))
    if isinstance(share, bool) or not isinstance(share, int) or share < 1:
        raise InputError("share: %r is not a number of users per GPU (1 or more)" % (share,))
    order = sorted(gpus, key=lambda g: g["index"])
    index = dict((gpu_key(g), g["index"]) for g in order)
    total = sum(counts.values())
    for name, count in sorted(counts.items()):
        if count > len(order):
            raise InputError("gpu.count: %s asks for %d GPUs; this host has %d" % (name, count, len(order)))
    if total > len(order) * share:
        raise InputError("gpu.count: the users' counts add up to %d GPUs; this host has %d GPU(s) x %d user(s) per GPU "
                         "(oversubscription.gpu) = %d" % (total, len(order), share, len(order) * share))
    used = dict((key, 0) for key in index)
    picked = {}
    for name in sorted(counts):  # first what each user had, as far as their count and the GPUs' room allow
        keep = []
        for key in (previous or {}).get(name, []):
            if key in used and key not in keep and len(keep) < counts[name] and used[key] < share:
                keep.append(key)
                used[key] += 1
        picked[name] = keep
    for name in sorted(counts, key=lambda n: (-counts[n], n)):
        while len(picked[name]) < counts[name]:
            free = [k for k in used if used[k] < share and k not in picked[name]]
            if placement == "spread":
                free.sort(key=lambda k: (used[k], index[k]))
            else:
                free.sort(key=lambda k: (-used[k], index[k]))
            picked[name].append(free[0])
            used[free[0]] += 1
    return dict((name, sorted(index[k] for k in keys)) for name, keys in picked.items()), \
        dict((name, sorted(keys, key=lambda k: index[k])) for name, keys in picked.items())

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


def allowlist(granted, gpus, controls, caps=()):
    """The device-cgroup allowlist of a restricted user: base devices, control devices, granted GPUs,
    and the nvidia-caps nodes of the user's MIG instances.

    gpus: [{'index', 'devnum': 'MAJ:MIN'}]; controls, caps: ['MAJ:MIN'] -> [('c', 'MAJ:MIN')] sorted.
    """
    entries = set(BASE_ALLOW)
    if granted:
        entries.update(("c", dev) for dev in controls)
    entries.update(("c", dev) for dev in caps)
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
    """What an allocation remembers a GPU by: its UUID, else its index (nodes without nvidia-smi); a MIG
    instance by its key (gpuN/giG/ciC)."""
    return gpu.get("key") or gpu.get("uuid") or "index:%d" % gpu["index"]


def allocate(counts, gpus, previous=None, share=1, placement="spread", what=("gpu.count", "GPU", "GPU(s)", True)):
    """counts {user: N}, the host's gpus, the previous allocation {user: [gpu_key]} -> {user: [indexes]}.

    Each user gets N different GPUs; each GPU goes to at most `share` users (1: exclusive; the
    policy's oversubscription.gpu). Sticky: a user keeps the GPUs they had while those exist and
    their count allows, so a rerun gives the same GPUs. New picks go to the least used GPU
    (spread) or the most used one that still has room (pack), ties to the lower index; users with
    the largest counts pick first, then by name. Raises InputError with the numbers when the host
    cannot hold the counts. what: (the policy field, a unit, its plural, whether oversubscription.gpu applies)
    the errors name.
    MIG instances go through the same allocation (see mig_pool)."""
    field, unit, units, shared = what
    if placement not in PLACEMENTS:
        raise InputError("placement: %r is not allowed; use spread or pack" % (placement,))
    if isinstance(share, bool) or not isinstance(share, int) or share < 1:
        raise InputError("share: %r is not a number of users per GPU (1 or more)" % (share,))
    order = sorted(gpus, key=lambda g: g["index"])
    index = dict((gpu_key(g), g["index"]) for g in order)
    total = sum(counts.values())
    for name, count in sorted(counts.items()):
        if count > len(order):
            raise InputError("%s: %s asks for %d %ss; this host has %d" % (field, name, count, unit, len(order)))
    if total > len(order) * share:
        raise InputError("%s: the users' counts add up to %d %ss; this host has %d %s%s" % (
            field, total, unit, len(order), units, "" if not shared else " x %d user(s) per %s (oversubscription.gpu) = %d"
            % (share, unit, len(order) * share)))
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


# --------------------------------------------------------------------------- MIG instances
# The driver shows each MIG GPU instance (GI) and compute instance (CI) under
# /proc/driver/nvidia/capabilities/gpu<minor>/mig/gi<G>/access and .../gi<G>/ci<C>/access; each file
# names the minor of the nvidia-caps device (/dev/nvidia-caps/nvidia-cap<minor>) that grants it.
# A process needs its GPU's /dev/nvidia<minor>, the control devices, and both caps nodes of its GI and CI.

CAPS_PROC = "/proc/driver/nvidia/capabilities"
CAPS_NODE = "/dev/nvidia-caps/nvidia-cap%d"
_MIG_ACCESS = re.compile(r"^gpu(\d+)/mig/gi(\d+)/(?:ci(\d+)/)?access$")


def parse_caps_minor(text):
    """The text of a capability's access file -> its DeviceFileMinor, or None."""
    found = re.search(r"^DeviceFileMinor:\s*(\d+)\s*$", text or "", re.M)
    return int(found.group(1)) if found else None


def mig_instances(access):
    """{path under CAPS_PROC: caps minor} -> the MIG instances (one per CI whose GI is known):
    [{key 'gpuN/giG/ciC', gpu, gi, ci, caps: [GI minor, CI minor]}], by GPU, GI, CI."""
    gis, cis = {}, []
    for rel, minor in access.items():
        match = _MIG_ACCESS.match(rel)
        if not match or minor is None:
            continue
        gpu, gi, ci = int(match.group(1)), int(match.group(2)), match.group(3)
        if ci is None:
            gis[(gpu, gi)] = minor
        else:
            cis.append((gpu, gi, int(ci), minor))
    return [{"key": "gpu%d/gi%d/ci%d" % (gpu, gi, ci), "gpu": gpu, "gi": gi, "ci": ci, "caps": [gis[(gpu, gi)], minor]}
            for gpu, gi, ci, minor in sorted(cis) if (gpu, gi) in gis]


def mig_pool(instances, placement="spread"):
    """The instances as allocate() takes them: ordered so that spread goes round the GPUs (the first
    instance of each GPU, then the second, ...) and pack fills one GPU before the next."""
    rank, seen = {}, {}
    for inst in instances:
        rank[inst["key"]] = seen.get(inst["gpu"], 0)
        seen[inst["gpu"]] = rank[inst["key"]] + 1
    order = sorted(instances, key=lambda i: (rank[i["key"]], i["gpu"]) if placement == "spread" else (i["gpu"], rank[i["key"]]))
    return [dict(inst, index=n) for n, inst in enumerate(order)]

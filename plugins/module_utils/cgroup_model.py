# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cgroup model of cgroup_limit: targets, limits, drop-ins and cgroupfs files.

Pure Python, no AnsibleModule import. The module feeds it its options and what it
read from the host; this file says what the host should look like. What each
setting is called in systemd and in which cgroupfs file it lands, per cgroup
version, is data (SYSTEMD_PROPERTIES, CGROUP_FILES), not if/else chains.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fairshare.resources.plugins.module_utils.managed import MANAGED_HEADER  # noqa: F401 (re-exported)
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.units import (
    UNLIMITED, check_minimum, cpu_quota_us, cpu_to_percent, expand_cpulist, format_size, page_round, parse_cpu,
    parse_cpulist, parse_int, parse_percent_of, parse_size,
)

DROPIN_NAME = "50-fairshare.conf"
DEFAULT_PARENT = "fairshare"
CPU_PERIOD_US = 100000
V1_UNLIMITED_MEMORY = "9223372036854771712"

LIMIT_FIELDS = ["cpu_weight", "cpu_max", "cpuset_cpus", "cpuset_mems", "memory_max", "memory_high",
                "memory_swap_max", "memory_min", "memory_low", "pids_max", "io_weight", "io_max"]
MEMORY_FIELDS = ["memory_max", "memory_high", "memory_swap_max", "memory_min", "memory_low"]
IO_KEYS = ["rbps", "wbps", "riops", "wiops"]
# Slices that hold the system itself: refused unless force (never throttle them by accident).
PROTECTED_SLICES = ("-.slice", "system.slice", "init.scope", "machine.slice")
# A slice name by systemd's rules: dash-separated parts (the parents), none empty, of unit name
# characters; a part may not be made of dots only (on cgroupfs "..slice" would be the parent's parent).
_SLICE_PART = r"(?!\.+(?:-|\.slice$))[A-Za-z0-9:_.\\]+"
_SLICE_RE = re.compile(r"^%s(?:-%s)*\.slice$" % (_SLICE_PART, _SLICE_PART))
_PATH_PART_RE = re.compile(r"^[A-Za-z0-9_.@:-]+$")
_DEVNUM_RE = re.compile(r"^\d+:\d+$")

INHERIT = "<parent>"      # a cpuset with no limit of ours shows its parent's CPUs/nodes
PER_DEVICE = "<device>"   # per-device rule files: each device line of ours is reset on its own


class Limit(object):
    """One limit, spelled once. systemd: {version: (property, value that resets it)};
    cgroupfs: {version: (controller, file, what the file says with no limit)}. A version
    missing from either cannot enforce the limit there. Everything else is derived."""

    def __init__(self, field, systemd, cgroupfs):
        self.field, self.systemd, self.cgroupfs = field, systemd, cgroupfs


LIMITS = (
    Limit("cpu_weight", {"v2": ("CPUWeight", ""), "v1": ("CPUShares", "")},
          {"v2": ("cpu", "cpu.weight", "100"), "v1": ("cpu", "cpu.shares", "1024")}),
    Limit("cpu_max", {"v2": ("CPUQuota", ""), "v1": ("CPUQuota", "")},
          {"v2": ("cpu", "cpu.max", "max %d" % CPU_PERIOD_US), "v1": ("cpu", "cpu.cfs_quota_us", "-1")}),
    Limit("cpuset_cpus", {"v2": ("AllowedCPUs", "")},
          {"v2": ("cpuset", "cpuset.cpus", INHERIT), "v1": ("cpuset", "cpuset.cpus", INHERIT)}),
    Limit("cpuset_mems", {"v2": ("AllowedMemoryNodes", "")},
          {"v2": ("cpuset", "cpuset.mems", INHERIT), "v1": ("cpuset", "cpuset.mems", INHERIT)}),
    Limit("memory_max", {"v2": ("MemoryMax", "infinity"), "v1": ("MemoryLimit", "infinity")},
          {"v2": ("memory", "memory.max", "max"), "v1": ("memory", "memory.limit_in_bytes", "-1")}),
    Limit("memory_high", {"v2": ("MemoryHigh", "infinity")}, {"v2": ("memory", "memory.high", "max")}),
    Limit("memory_swap_max", {"v2": ("MemorySwapMax", "infinity")}, {"v2": ("memory", "memory.swap.max", "max")}),
    Limit("memory_min", {"v2": ("MemoryMin", "0")}, {"v2": ("memory", "memory.min", "0")}),
    Limit("memory_low", {"v2": ("MemoryLow", "0")}, {"v2": ("memory", "memory.low", "0")}),
    Limit("pids_max", {"v2": ("TasksMax", "infinity"), "v1": ("TasksMax", "infinity")},
          {"v2": ("pids", "pids.max", "max"), "v1": ("pids", "pids.max", "max")}),
    # the weight file depends on the kernel (blk-iocost, BFQ, CFQ): IO_WEIGHT_FILES picks it
    Limit("io_weight", {"v2": ("IOWeight", ""), "v1": ("BlockIOWeight", "")},
          {"v2": ("io", "io.weight", "default 100"), "v1": ("blkio", "blkio.weight", "500")}),
    Limit("rbps", {"v2": ("IOReadBandwidthMax", ""), "v1": ("BlockIOReadBandwidth", "")},
          {"v2": ("io", "io.max", PER_DEVICE), "v1": ("blkio", "blkio.throttle.read_bps_device", PER_DEVICE)}),
    Limit("wbps", {"v2": ("IOWriteBandwidthMax", ""), "v1": ("BlockIOWriteBandwidth", "")},
          {"v2": ("io", "io.max", PER_DEVICE), "v1": ("blkio", "blkio.throttle.write_bps_device", PER_DEVICE)}),
    Limit("riops", {"v2": ("IOReadIOPSMax", "")},
          {"v2": ("io", "io.max", PER_DEVICE), "v1": ("blkio", "blkio.throttle.read_iops_device", PER_DEVICE)}),
    Limit("wiops", {"v2": ("IOWriteIOPSMax", "")},
          {"v2": ("io", "io.max", PER_DEVICE), "v1": ("blkio", "blkio.throttle.write_iops_device", PER_DEVICE)}),
)

# systemd property per field and cgroup version; None: that version can't enforce it.
SYSTEMD_PROPERTIES = dict((v, dict((lim.field, (lim.systemd.get(v) or (None,))[0]) for lim in LIMITS))
                          for v in ("v2", "v1"))
# cgroupfs (controller, file) per field and version; None: not enforceable there.
CGROUP_FILES = dict((v, dict((lim.field, lim.cgroupfs[v][:2] if v in lim.cgroupfs else None) for lim in LIMITS))
                    for v in ("v2", "v1"))
# (file, how the value is written, weight mapping, a root file that shows the kernel has it),
# in order of preference: blk-iocost's io.weight, BFQ's, CFQ's (kernels before 5.0).
IO_WEIGHT_FILES = {
    "v2": (("io.weight", "default %d", "iocost", "io.cost.qos"), ("io.bfq.weight", "default %d", "bfq", None)),
    "v1": (("blkio.weight", "%d", "blkio", "blkio.weight"),
           ("blkio.bfq.weight", "%d", "bfq", "blkio.bfq.io_service_bytes")),
}
IO_WEIGHT_RESET = {"io.weight": "default 100", "io.bfq.weight": "default 100", "blkio.weight": "500",
                   "blkio.bfq.weight": "100"}


def weight_to_shares(weight):
    """cgroup v2 weight (1..10000, default 100) -> v1 cpu.shares (default 1024), as systemd maps it."""
    return max(2, min(262144, weight * 1024 // 100))


def weight_to_blkio(weight):
    """io weight 1..10000 (default 100) -> blkio.weight 10..1000 (default 500), as systemd maps it."""
    return max(10, min(1000, weight * 500 // 100))


def weight_to_bfq(weight):
    """io weight 1..10000 (default 100) -> BFQ weight 1..1000 (default 100), as systemd maps it."""
    if weight <= 100:
        return 100 - (100 - weight) * 99 // 99
    return 100 + (weight - 100) * 900 // 9900


WEIGHT_MAPS = {"iocost": lambda w: w, "blkio": weight_to_blkio, "bfq": weight_to_bfq}


# --------------------------------------------------------------------------- targets

def parse_target(entry, where):
    """A limits entry -> (kind, value): ('user', name|uid) | ('slice', name) | ('path', rel)."""
    given = [k for k in ("user", "slice", "path") if entry.get(k) not in (None, "")]
    if len(given) != 1:
        raise InputError("%s: give exactly one of user, slice or path (got %s)" % (where, ", ".join(given) or "none"))
    kind = given[0]
    value = entry[kind]
    if kind == "slice":
        value = str(value)
        if not _SLICE_RE.match(value):
            raise InputError("%s.slice: %r is not a slice unit name; use a name ending in .slice like research.slice" % (where, value))
    elif kind == "path":
        value = str(value).strip("/")
        parts = value.split("/")
        if value == ".":  # the managed parent itself: the total of everything under it (aggregate.all)
            return kind, value
        if not value or any(p in ("", ".", "..") or not _PATH_PART_RE.match(p) for p in parts):
            raise InputError("%s.path: %r is not a relative cgroup path; use names of letters, digits, _ . - @ : "
                             "joined by / like workers/w1/crs1" % (where, entry[kind]))
    else:
        value = str(value)
    return kind, value


def check_parent(value, field="parent"):
    """The managed parent: a relative cgroup path under the hierarchy's root, never the root itself
    or anything outside it. -> the path without surrounding slashes; raises InputError."""
    text = "" if value is None else str(value)
    parts = text.split("/")
    if not text or text.startswith("/") or text.endswith("/") or \
            any(p in ("", ".", "..") or not _PATH_PART_RE.match(p) for p in parts):
        raise InputError("%s: %r is not a relative cgroup name; use names of letters, digits, _ . - @ : joined by /, "
                         "like fairshare or lab/fairshare (no '..', not empty, not absolute)" % (field, value))
    return text


def check_protected(kind, name, uid, force, where, sys_uid_max=999):
    """Root, system users (uid up to SYS_UID_MAX of login.defs) and the system's own slices are
    refused unless force: true."""
    if force:
        return
    if kind == "user" and uid == 0:
        raise InputError("%s.user: %r is root; root is never limited unless force: true" % (where, name))
    if kind == "user" and uid <= sys_uid_max:
        raise InputError("%s.user: %r (uid %d) is a system user (SYS_UID_MAX %d in /etc/login.defs); system users "
                         "are limited only with force: true" % (where, name, uid, sys_uid_max))
    if kind == "slice" and (name in PROTECTED_SLICES or name.startswith("system-") or name == "user-0.slice"):
        raise InputError("%s.slice: %r holds the system itself; it is limited only with force: true" % (where, name))


def systemd_unit(kind, name, uid=None):
    if kind == "user":
        return "user-%d.slice" % uid
    if kind == "slice":
        return name
    return None


USER_LEAF_RE = re.compile(r"^user-(\d+)$")  # a user target's own cgroup in cgroupfs


def check_under(value, where):
    """A user target's level below the managed parent (limits[].under): a relative cgroup path of
    plain names, like tier-students. -> the path without surrounding slashes; raises InputError."""
    text = str(value).strip("/")
    if not text or any(p in ("", ".", "..") or not _PATH_PART_RE.match(p) or USER_LEAF_RE.match(p)
                       for p in text.split("/")):
        raise InputError("%s.under: %r is not a level for a user's cgroup; use names of letters, digits, _ . - @ : "
                         "joined by / like tier-students (no '..', no user-UID name)" % (where, value))
    return text


def cgroup_relpath(kind, name, uid=None, parent=DEFAULT_PARENT, under=None):
    """Where a target lives under the managed parent in cgroupfs (under: a user's level, limits[].under)."""
    if kind == "user":
        leaf = "user-%d" % uid if under is None else "%s/user-%d" % (under, uid)
    elif kind == "slice":
        leaf = name[:-len(".slice")]
    elif name == ".":
        return parent.strip("/")
    else:
        leaf = name
    return "%s/%s" % (parent.strip("/"), leaf)


# --------------------------------------------------------------------------- limits

def normalize_limits(entry, where, force=False):
    """One target's options -> canonical values (bytes, CPUs, ints, 'max').

    Raises InputError naming '<where>.<field>' for anything not allowed.
    """
    out = {}

    def path(field):
        return "%s.%s" % (where, field)

    if entry.get("cpu_weight") is not None:
        out["cpu_weight"] = parse_int(path("cpu_weight"), entry["cpu_weight"], 1, 10000)
    if entry.get("cpu_max") is not None:
        out["cpu_max"] = parse_cpu(path("cpu_max"), entry["cpu_max"])
    for field in ("cpuset_cpus", "cpuset_mems"):
        if entry.get(field) not in (None, ""):
            out[field] = parse_cpulist(path(field), entry[field])
    if entry.get("memory_max") is not None:
        out["memory_max"] = page_round(parse_size(path("memory_max"), entry["memory_max"]))
        check_minimum("memory_max", out["memory_max"], force, path("memory_max"))
    for field in ("memory_high", "memory_swap_max", "memory_min", "memory_low"):
        if entry.get(field) is not None:
            base = out.get("memory_max") if field != "memory_swap_max" else None
            out[field] = page_round(parse_percent_of(path(field), entry[field], base))
    if entry.get("pids_max") is not None:
        out["pids_max"] = parse_int(path("pids_max"), entry["pids_max"], 1, 4194304, allow_unlimited=True)
        check_minimum("pids_max", out["pids_max"], force, path("pids_max"))
    if entry.get("io_weight") is not None:
        out["io_weight"] = parse_int(path("io_weight"), entry["io_weight"], 1, 10000)
    if entry.get("io_max"):
        rules = []
        for i, rule in enumerate(entry["io_max"]):
            rwhere = "%s.io_max[%d]" % (where, i)
            if not rule.get("device"):
                raise InputError("%s.device: a block device path like /dev/vda or MAJ:MIN is required" % rwhere)
            norm = {"device": str(rule["device"])}
            for key in IO_KEYS:
                if rule.get(key) is not None:
                    parser = parse_size if key.endswith("bps") else (
                        lambda f, v: parse_int(f, v, 1, 1 << 40, allow_unlimited=True))
                    norm[key] = parser("%s.%s" % (rwhere, key), rule[key])
            if len(norm) == 1:
                raise InputError("%s: give at least one of %s" % (rwhere, ", ".join(IO_KEYS)))
            rules.append(norm)
        out["io_max"] = rules
    _check_order(out, where)
    return out


def limits_key(limits):
    """A hashable key of the limit values of an entry or a normalized target (LIMIT_FIELDS), None where one
    is a list or mapping (io_max). The key holds each value's type: True and 1 are not the same limit."""
    values = tuple(map(limits.get, LIMIT_FIELDS))
    key = (values, tuple(map(type, values)))
    try:
        hash(key)
    except TypeError:
        return None
    return key


class LimitsMemo(object):
    """normalize_limits for many entries, of which most carry the same limits (10,000 users of a few
    tiers): each distinct set of limit values (limits_key) is normalized once. An entry with a list or
    mapping in it (io_max) or a refused one is normalized every time, so its error still names its own field."""

    def __init__(self, force=False):
        self.force, self.done = force, {}

    def __call__(self, entry, where):
        key = limits_key(entry)
        if key is None:
            return normalize_limits(entry, where, self.force)
        known = self.done.get(key)
        if known is None:
            known = self.done[key] = normalize_limits(entry, where, self.force)
        return dict(known)


def _check_order(limits, where):
    mx = limits.get("memory_max")
    for field in ("memory_high", "memory_low", "memory_min"):
        val = limits.get(field)
        if val is None or mx is None or mx == UNLIMITED or val == UNLIMITED:
            continue
        if val > mx:
            raise InputError("%s.%s: %s is above memory_max %s" % (where, field, format_size(val), format_size(mx)))
    lo, mn = limits.get("memory_low"), limits.get("memory_min")
    if lo not in (None, UNLIMITED) and mn not in (None, UNLIMITED) and mn > lo:
        raise InputError("%s.memory_min: %s is above memory_low %s" % (where, format_size(mn), format_size(lo)))


def display_limits(limits):
    """Canonical values -> the human form used in results and diffs."""
    shown = {}
    for field, value in limits.items():
        if field in MEMORY_FIELDS:
            shown[field] = format_size(value)
        elif field == "cpu_max":
            shown[field] = "max" if value == UNLIMITED else cpu_to_percent(value)
        elif field == "io_max":
            shown[field] = [dict((k, format_size(v) if k.endswith("bps") else v) for k, v in r.items()) for r in value]
        else:
            shown[field] = value
    return shown


# --------------------------------------------------------------------------- systemd

# The systemd release that first knew each property (systemd.resource-control(5), "Added in version N";
# MemoryLow= came with MemoryHigh= and MemoryMax= in 231), and the first that no longer has it: the
# cgroup v1 properties went with cgroup v1 in 258. systemd ignores a property it does not know (a
# warning in its journal), so a limit it cannot take is not written and the call says so.
SYSTEMD_SINCE = {"CPUQuota": 213, "TasksMax": 227, "IOWeight": 230, "IOReadBandwidthMax": 230,
                 "IOWriteBandwidthMax": 230, "IOReadIOPSMax": 230, "IOWriteIOPSMax": 230, "MemoryMax": 231,
                 "MemoryHigh": 231, "MemoryLow": 231, "CPUWeight": 232, "MemorySwapMax": 232, "MemoryMin": 240,
                 "AllowedCPUs": 244, "AllowedMemoryNodes": 244}
SYSTEMD_UNTIL = {"CPUShares": 258, "MemoryLimit": 258, "BlockIOWeight": 258, "BlockIOReadBandwidth": 258,
                 "BlockIOWriteBandwidth": 258}


def _systemd_lacks(prop, systemd):
    """Why this systemd release cannot take prop, or None when it can (or the release is not known)."""
    if systemd is None or prop is None:
        return None
    if systemd < SYSTEMD_SINCE.get(prop, 0):
        return "systemd %d does not know %s= (added in %d)" % (systemd, prop, SYSTEMD_SINCE[prop])
    if systemd >= SYSTEMD_UNTIL.get(prop, systemd + 1):
        return "systemd %d no longer has %s= (gone in %d with cgroup v1)" % (systemd, prop, SYSTEMD_UNTIL[prop])
    return None


def systemd_supported(limits, version, systemd):
    """Canonical limits -> (the limits systemd release `systemd` applies on cgroup `version`, a warning for
    each one it would ignore). Those are neither written nor reported as applied."""
    props = SYSTEMD_PROPERTIES[version]
    kept, warnings = {}, []
    for field, value in limits.items():
        if field == "io_max":
            rules = []
            for rule in value:
                keep = dict((k, v) for k, v in rule.items() if k not in IO_KEYS or not _systemd_lacks(props[k], systemd))
                for key in IO_KEYS:
                    why = key in rule and _systemd_lacks(props[key], systemd)
                    if why:
                        warnings.append("io_max %s on %s: %s; not applied" % (key, rule["device"], why))
                if any(k in keep for k in IO_KEYS):
                    rules.append(keep)
            if rules:
                kept[field] = rules
            continue
        why = _systemd_lacks(props.get(field), systemd)
        if why:
            warnings.append("%s: %s; not applied" % (field, why))
        else:
            kept[field] = value
    return kept, warnings


def _systemd_value(field, value):
    if value == UNLIMITED:
        return "" if field == "cpu_max" else "infinity"
    if field in MEMORY_FIELDS or field in ("rbps", "wbps"):
        return str(value)
    if field == "cpu_max":
        return cpu_to_percent(value)
    return str(value)


def render_dropin(limits, version):
    """Canonical limits -> (drop-in text, warnings) for a slice on cgroup `version` ('v1'/'v2')."""
    props = SYSTEMD_PROPERTIES[version]
    lines = [MANAGED_HEADER, "[Slice]"]
    warnings = []
    for field in LIMIT_FIELDS:
        if field not in limits:
            continue
        value = limits[field]
        if field == "io_max":
            for rule in value:
                for key in IO_KEYS:
                    if key not in rule:
                        continue
                    prop = props[key]
                    if prop is None:
                        warnings.append("io_max %s on %s: cgroup %s with systemd cannot enforce it; not applied"
                                        % (key, rule["device"], version))
                        continue
                    lines.append("%s=%s %s" % (prop, rule["device"], _systemd_value(key, rule[key])))
            continue
        prop = props[field]
        if prop is None:
            warnings.append("%s: cgroup %s with systemd cannot enforce it; not applied" % (field, version))
            continue
        if field == "cpu_weight" and version == "v1":
            lines.append("%s=%d" % (prop, weight_to_shares(value)))
        elif field == "io_weight" and version == "v1":
            lines.append("%s=%d" % (prop, weight_to_blkio(value)))
        else:
            lines.append("%s=%s" % (prop, _systemd_value(field, value)))
    return "\n".join(lines) + "\n", warnings


def runtime_properties(dropin_text):
    """The Key=Value lines of a drop-in, as `systemctl set-property` arguments."""
    return [line for line in dropin_text.splitlines()
            if line and not line.startswith("#") and not line.startswith("[")]


def reset_properties(version):
    """set-property arguments that return a slice to the defaults (state: absent)."""
    return ["%s=%s" % lim.systemd[version] for lim in LIMITS if version in lim.systemd]


def plain_unit_name(unit):
    """True when the unit name holds no fnmatch character: `systemctl list-units NAME` takes names as
    patterns, so a name with \\, *, ? or [ (an escaped slice name) is not asked that way."""
    return not any(c in unit for c in "\\*?[")


def active_candidates(units, listed):
    """The units to `systemctl show`: those `systemctl list-units --plain --no-legend --state=active`
    listed (its first column), in the order given, and every name it could not be asked about."""
    active = set(line.split()[0] for line in listed.splitlines() if line.strip())
    return [u for u in units if u in active or not plain_unit_name(u)]


def parse_systemctl_show(text):
    """`systemctl show -p A -p B u1 u2` output -> list of dicts, one per unit, in order."""
    units, current = [], {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                units.append(current)
                current = {}
            continue
        key, dummy, value = line.partition("=")
        current[key] = value
    if current:
        units.append(current)
    return units


# --------------------------------------------------------------------------- cgroupfs files

def expected_files(limits, version_of, devnum=lambda d: d, io_weight_file=None):
    """Canonical limits -> ([(controller, file, value)], warnings).

    version_of(controller) says where a controller lives on this host ('v1', 'v2',
    or None when it isn't there). devnum(device) turns a device into MAJ:MIN.
    io_weight_file: the weight file this kernel has (an IO_WEIGHT_FILES name; None when it
    has none: io_weight is then warned about, not applied). Files come in the order they
    must be written (cpuset.mems before cpuset.cpus, cfs_period_us before cfs_quota_us).
    An io_max rule sets all four keys of its device ("max"/0 for those it leaves out), so a
    key dropped from a rule goes back to no limit.
    """
    files, warnings = [], []

    def place(field):
        for version in ("v2", "v1"):
            spec = CGROUP_FILES[version].get(field)
            if spec and version_of(spec[0]) == version:
                return version, spec
        ctrl = (CGROUP_FILES["v2"].get(field) or CGROUP_FILES["v1"].get(field) or ("?",))[0]
        where = version_of(ctrl)
        if where is None:
            warnings.append("%s: the %s controller is not available on this host; not applied" % (field, ctrl))
        else:
            warnings.append("%s: cgroup %s cannot enforce it; not applied" % (field, where))
        return None, None

    for field in ["cpu_weight", "cpu_max", "cpuset_mems", "cpuset_cpus"] + MEMORY_FIELDS + ["pids_max", "io_weight"]:
        if field not in limits:
            continue
        version, spec = place(field)
        if not spec:
            continue
        value = limits[field]
        ctrl, fname = spec
        if field == "cpu_weight":
            text = str(value) if version == "v2" else str(weight_to_shares(value))
        elif field == "cpu_max":
            if version == "v2":
                text = "max %d" % CPU_PERIOD_US if value == UNLIMITED else "%d %d" % (cpu_quota_us(value), CPU_PERIOD_US)
            else:
                files.append((ctrl, "cpu.cfs_period_us", str(CPU_PERIOD_US)))
                text = "-1" if value == UNLIMITED else str(cpu_quota_us(value))
        elif field in MEMORY_FIELDS:
            text = ("max" if version == "v2" else "-1") if value == UNLIMITED else str(value)
        elif field == "pids_max":
            text = str(value)
        elif field == "io_weight":
            spec = [w for w in IO_WEIGHT_FILES[version] if w[0] == io_weight_file]
            if not spec:
                warnings.append("io_weight: this kernel has no I/O weight file for cgroup %s (%s need blk-iocost "
                                "or the BFQ scheduler); not applied" % (version, ctrl))
                continue
            fname, form, mapping = spec[0][:3]
            text = form % WEIGHT_MAPS[mapping](value)
        else:
            text = str(value)
        files.append((ctrl, fname, text))
    for rule in limits.get("io_max", []):
        dev = devnum(rule["device"])
        if version_of("io") == "v2":
            parts = ["%s=%s" % (k, rule.get(k, UNLIMITED)) for k in IO_KEYS]
            files.append(("io", "io.max", "%s %s" % (dev, " ".join(parts))))
        elif version_of("blkio") == "v1":
            for key in IO_KEYS:
                ctrl, fname = CGROUP_FILES["v1"][key]
                value = rule.get(key, UNLIMITED)
                files.append((ctrl, fname, "%s %s" % (dev, 0 if value == UNLIMITED else value)))
        else:
            warnings.append("io_max: no io/blkio controller on this host; not applied")
    return files, warnings


def same_value(fname, wanted, live):
    """Does the live text of a cgroupfs file already say what `wanted` says?"""
    if live is None:
        return False
    live = live.strip()
    if fname in ("cpuset.cpus", "cpuset.mems"):
        return expand_cpulist(wanted) == expand_cpulist(live)
    if fname == "io.max":
        dev, dummy, rest = wanted.partition(" ")
        want = dict(p.split("=") for p in rest.split())
        for line in live.splitlines():
            ldev, dummy, lrest = line.partition(" ")
            if ldev == dev:
                have = dict(p.split("=") for p in lrest.split())
                return all(have.get(k) == v for k, v in want.items())
        return all(v == "max" for v in want.values())
    if fname.startswith("blkio.throttle."):
        dev, dummy, val = wanted.partition(" ")
        for line in live.splitlines():
            ldev, dummy, lval = line.partition(" ")
            if ldev == dev:
                return lval.strip() == val
        return val == "0"
    if fname in IO_WEIGHT_RESET:
        return live.splitlines()[0].split()[-1] == wanted.split()[-1] if live else False
    if fname in ("memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.memsw.limit_in_bytes"):
        return _v1_memory(live) == _v1_memory(wanted)
    if fname == "cpu.max":
        return live.split() == wanted.split()
    return live == wanted


def _v1_memory(value):
    return "-1" if value in (V1_UNLIMITED_MEMORY, "-1") else value


def _reset_values():
    """{(file, version): its value with no limit} of LIMITS and the I/O weight files."""
    values = {}
    for lim in LIMITS:
        for version, spec in lim.cgroupfs.items():
            if spec:
                values.setdefault((spec[1], version), spec[2])
    return values


_RESET_VALUES = _reset_values()


def reset_value(fname, version):
    """What a file says with no limit (used to undo our limits on a cgroup we keep): a value,
    INHERIT (the parent's) or PER_DEVICE (each device line on its own); None: not ours."""
    if fname in IO_WEIGHT_RESET:
        return IO_WEIGHT_RESET[fname]
    return _RESET_VALUES.get((fname, version))


def reset_files(version):
    """[(controller, file)] of every limit cgroupfs `version` can hold, each once, in LIMITS order."""
    seen = []
    for lim in LIMITS:
        spec = lim.cgroupfs.get(version)
        if spec and spec[:2] not in seen and spec[1] not in IO_WEIGHT_RESET:
            seen.append(spec[:2])
    return seen


def device_reset(fname, line):
    """A live per-device line of `fname` -> the text that lifts that device's limits, or None
    when the line holds no limit."""
    dev, dummy, rest = line.strip().partition(" ")
    if not dev or not rest:
        return None
    if fname == "io.max":
        if all(p.endswith("=max") for p in rest.split()):
            return None
        return "%s %s" % (dev, " ".join("%s=max" % k for k in IO_KEYS))
    return None if rest.strip() == "0" else "%s 0" % dev


def grouped_warnings(results, show=5):
    """One line per distinct warning of RV(targets): the same text on many targets (a policy
    that asks memory_high of 100 users on cgroup v1) is said once, naming the first few."""
    order, who = [], {}
    for res in results:
        for text in res.get("warnings", []):
            if text not in who:
                order.append(text)
                who[text] = []
            who[text].append(res["target"])
    lines = []
    for text in order:
        names = who[text]
        if len(names) == 1:
            lines.append("%s: %s" % (names[0], text))
            continue
        more = " and %d more" % (len(names) - show) if len(names) > show else ""
        lines.append("%s (%d targets: %s%s)" % (text, len(names), ", ".join(names[:show]), more))
    return lines


def controllers_needed(files):
    seen = []
    for ctrl, dummy_f, dummy_v in files:
        if ctrl not in seen:
            seen.append(ctrl)
    return seen


def devnum_of(device, stat_fn):
    """'/dev/vda' or '254:0' -> '254:0'. stat_fn is os.stat (injectable for tests)."""
    if _DEVNUM_RE.match(device):
        return device
    import stat as _stat
    st = stat_fn(device)
    if not _stat.S_ISBLK(st.st_mode):
        raise InputError("io_max.device: %r is not a block device; use /dev/<disk> or MAJ:MIN" % device)
    return "%d:%d" % (st.st_rdev >> 8 & 0xfff, (st.st_rdev & 0xff) | (st.st_rdev >> 12 & 0xfff00))

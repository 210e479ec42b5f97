# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit parsing for fairshare.resources: sizes, CPU amounts, percentages, weights.

Pure Python, no AnsibleModule import. Every error is an InputError (module_utils/errors.py) whose message
names the field, the value and what is allowed, so callers can hand it to
fail_json() unchanged.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError

UNLIMITED = "max"
_UNLIMITED_WORDS = ("max", "infinity", "unlimited")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]?)(I?B?)?$")
_SIZE_FACTORS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_CPU_PERCENT_RE = re.compile(r"^(\d+(?:\.\d+)?)%$")
_NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")
_CPULIST_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")

# Below these a limit locks users out of their own logins (docs/cgroup_limit.md, "Safety").
SAFE_MINIMUMS = {"memory_max": 64 << 20, "pids_max": 32}
PAGE_SIZE = 4096


def _is_unlimited(value):
    return isinstance(value, str) and value.strip().lower() in _UNLIMITED_WORDS


def parse_size(field, value, allow_unlimited=True):
    """'512M', '2G', '1.5G', 1048576, 'max' -> bytes (int) or UNLIMITED."""
    if isinstance(value, bool):
        raise InputError("%s: %r is not a size; use bytes or K/M/G/T suffixes like 512M" % (field, value))
    if isinstance(value, int):
        if value < 0:
            raise InputError("%s: %r is negative; a size is 0 or more" % (field, value))
        return value
    if isinstance(value, float):
        raise InputError("%s: %r is not a size; write whole bytes or use a suffix like 1.5G" % (field, value))
    if value is None:
        raise InputError("%s: a size is required" % field)
    text = str(value)
    if allow_unlimited and _is_unlimited(text):
        return UNLIMITED
    if " " in text.strip():
        raise InputError("%s: %r is not a size; write it without a space, like %s" % (field, text, text.replace(" ", "").rstrip("Bb").upper()))
    match = _SIZE_RE.match(text.strip().upper()) if text.strip() else None
    if not match:
        allowed = "bytes or a number with K, M, G, T (binary), e.g. 512M or 2G"
        if allow_unlimited:
            allowed += ", or max/infinity"
        raise InputError("%s: %r is not a size; use %s" % (field, text, allowed))
    number, suffix = match.group(1), match.group(2)
    result = float(number) * _SIZE_FACTORS[suffix]
    if result != int(result) and not suffix:
        raise InputError("%s: %r is not a whole number of bytes" % (field, text))
    return int(result)


def parse_cpu(field, value, allow_unlimited=True):
    """'150%' (of one CPU) or 2.5 (CPUs) -> float CPUs, or UNLIMITED."""
    if isinstance(value, bool) or value is None:
        raise InputError("%s: %r is not a CPU amount; use a percentage of one CPU like 150%% or a number of CPUs like 1.5" % (field, value))
    if isinstance(value, (int, float)):
        cpus = float(value)
    else:
        text = str(value).strip()
        if allow_unlimited and _is_unlimited(text):
            return UNLIMITED
        pct = _CPU_PERCENT_RE.match(text)
        if pct:
            cpus = float(pct.group(1)) / 100.0
        elif _NUMBER_RE.match(text):
            cpus = float(text)
        else:
            raise InputError("%s: %r is not a CPU amount; use a percentage of one CPU like 150%% or a number of CPUs like 1.5%s"
                             % (field, value, ", or max" if allow_unlimited else ""))
    if cpus <= 0:
        raise InputError("%s: %r must be more than 0 CPUs" % (field, value))
    if cpus < 0.01:
        raise InputError("%s: %r is below 1%% of one CPU, the smallest quota allowed" % (field, value))
    return cpus


def cpu_to_percent(cpus):
    """2.0 -> '200%' (systemd CPUQuota form)."""
    pct = round(cpus * 100, 2)
    return ("%d%%" % pct) if pct == int(pct) else ("%s%%" % pct)


def cpu_quota_us(cpus, period_us=100000):
    """CPUs -> quota in µs per period, as cpu.max / cpu.cfs_quota_us want it."""
    return int(round(cpus * period_us))


def parse_percent_of(field, value, base, parser=parse_size):
    """'90%' of base (a parsed value) or an absolute value parsed by parser."""
    if isinstance(value, str) and value.strip().endswith("%") and parser is parse_size:
        text = value.strip()[:-1]
        if not _NUMBER_RE.match(text):
            raise InputError("%s: %r is not a percentage; use e.g. 90%%" % (field, value))
        pct = float(text)
        if pct <= 0 or pct > 100:
            raise InputError("%s: %r must be more than 0%% and at most 100%%" % (field, value))
        if base is None:
            raise InputError("%s: %r is relative, but there is no value it is relative to" % (field, value))
        if base == UNLIMITED:
            return UNLIMITED
        return int(base * pct / 100.0) // PAGE_SIZE * PAGE_SIZE
    return parser(field, value)


def parse_int(field, value, minimum, maximum, allow_unlimited=False):
    """An integer in [minimum, maximum] (or UNLIMITED when allowed)."""
    if allow_unlimited and _is_unlimited(value if isinstance(value, str) else ""):
        return UNLIMITED
    if isinstance(value, bool):
        raise InputError("%s: %r is not a whole number" % (field, value))
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise InputError("%s: %r is not a whole number%s" % (field, value, " or max" if allow_unlimited else ""))
    if number < minimum or number > maximum:
        raise InputError("%s: %r is out of range; allowed %d to %d%s"
                         % (field, value, minimum, maximum, " or max" if allow_unlimited else ""))
    return number


def parse_cpulist(field, value):
    """'0-3,6' -> normalised '0-3,6'; checks each range is ordered."""
    text = str(value).replace(" ", "")
    if not _CPULIST_RE.match(text):
        raise InputError("%s: %r is not a CPU/node list; use the kernel list format like 0-3,6" % (field, value))
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            if int(lo) > int(hi):
                raise InputError("%s: %r has a range %s that runs backwards" % (field, value, part))
    return text


def expand_cpulist(text):
    """'0-2,5' -> [0, 1, 2, 5]; '' -> []."""
    result = []
    for part in (text or "").strip().split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-")
            result.extend(range(int(lo), int(hi) + 1))
        else:
            result.append(int(part))
    return sorted(set(result))


def format_size(value):
    """bytes -> the shortest exact binary form ('512M'); UNLIMITED -> 'max'."""
    if value == UNLIMITED or value is None:
        return "max" if value == UNLIMITED else None
    for suffix in ("T", "G", "M", "K"):
        factor = _SIZE_FACTORS[suffix]
        if value and value % factor == 0:
            return "%d%s" % (value // factor, suffix)
    return str(value)


def page_round(value):
    """The kernel stores memory limits in whole pages (rounded down)."""
    if value == UNLIMITED:
        return value
    return value // PAGE_SIZE * PAGE_SIZE


def check_minimum(field, value, force, where=None):
    """Refuse limits below the safe minimums unless force is set; `where` names the field in errors."""
    minimum = SAFE_MINIMUMS.get(field)
    if minimum is None or value == UNLIMITED or force:
        return
    if value < minimum:
        shown = format_size(minimum) if field.startswith("memory") else str(minimum)
        raise InputError("%s: %r is below the safe minimum %s (such a limit can lock a user out of their own login); "
                         "raise it or set force: true" % (where or field, format_size(value) if field.startswith("memory") else value, shown))


_DURATION_RE = re.compile(r"^(\d+)\s*(s|m|h|d|w)?$")
_DURATION_FACTORS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_grace(field, value):
    """'7d', '12h', '30m', 3600 -> seconds, limited to what quota tools read back exactly.

    repquota shows a grace period as HH:MM up to 48 hours and as whole days above,
    so only whole minutes up to 48h and whole days above that can be kept idempotent.
    """
    text = str(value).strip().lower()
    match = _DURATION_RE.match(text)
    if isinstance(value, bool) or not match:
        raise InputError("%s: %r is not a duration; use a number with s, m, h, d or w, like 7d or 12h" % (field, value))
    seconds = int(match.group(1)) * _DURATION_FACTORS[match.group(2)]
    if seconds <= 0:
        raise InputError("%s: %r must be more than 0" % (field, value))
    if seconds <= 48 * 3600:
        if seconds % 60:
            raise InputError("%s: %r is not whole minutes; quota tools keep grace periods in minutes" % (field, value))
    elif seconds % 86400:
        raise InputError("%s: %r is over 48h and not whole days; quota tools keep such grace periods in days"
                         % (field, value))
    return seconds

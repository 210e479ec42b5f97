# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Policy resolution: fairshare_policy (defaults -> tiers -> rules -> users) into one
effective profile per user of a host, every value carrying where it came from.

Pure Python, no AnsibleModule import; exposed to playbooks as the filter
fairshare.resources.resolve_profiles. Errors name the exact policy path.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import (
    DEFAULT_PARENT, cgroup_relpath, systemd_unit,
)
from ansible_collections.fairshare.resources.plugins.module_utils.facts import profile_parts
from ansible_collections.fairshare.resources.plugins.module_utils.plan_model import validate_plans
from ansible_collections.fairshare.resources.plugins.module_utils.tc_model import parse_rate
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.units import (
    UNLIMITED, parse_cpu, parse_cpulist, parse_int, parse_percent_of, parse_size,
)


class PolicyError(InputError):
    pass


def _size_or_pct(path, value):
    parse_percent_of(path, value, 1 << 30)  # a % is checked here, resolved against max later
    return value


def _int(lo, hi, unlimited=False):
    return lambda path, value: parse_int(path, value, lo, hi, allow_unlimited=unlimited)


def _gpus(path, value):
    """gpu.gpus: 'all', 'none', or a list of GPU indexes / UUIDs / MIG UUIDs."""
    if value in ("all", "none"):
        return value
    if not isinstance(value, list) or not all(isinstance(g, (int, str)) and not isinstance(g, bool) and
                                              str(g).strip() for g in value):
        raise PolicyError("%s: %r is not a GPU list; allowed: all, none, or a list of GPU indexes or UUIDs like "
                          "[0, 1] or [GPU-5f6c...]" % (path, value))
    return value


# section -> key -> checker (checkers raise InputError naming the path). Data, not code paths.
SCHEMA = {
    "cpu": {"weight": _int(1, 10000), "max": parse_cpu, "cpus": parse_cpulist},
    "memory": {"max": parse_size, "high": _size_or_pct, "swap_max": parse_size, "min": _size_or_pct,
               "low": _size_or_pct},
    "pids": {"max": _int(1, 4194304, True)},
    "io": {"weight": _int(1, 10000)},
    "gpu": {"count": _int(0, 1024), "mig": _int(0, 1024), "gpus": _gpus},
}
DISK_KEYS = {"block_soft": parse_size, "block_hard": parse_size, "inode_soft": _int(0, 1 << 62),
             "inode_hard": _int(0, 1 << 62)}
NESTED = {"net": {"rate": parse_rate, "ceil": parse_rate}, "disk": DISK_KEYS}
# workloads.<name>: the cgroup sections again, for a child of the user's cgroup (two layers)
WORKLOAD_SECTIONS = ("cpu", "memory", "pids", "io")
_WORKLOAD_RE = re.compile(r"^[a-z0-9_]{1,32}$")
SECTIONS = tuple(SCHEMA) + tuple(NESTED) + ("workloads",)
TOP_KEYS = ("exempt_users", "min_uid", "max_uid", "reserved_uids", "defaults", "tiers", "rules", "users", "aggregate", "plans",
            "oversubscription", "reserve")
# aggregate.<name>: totals of the cgroup kind only (a total disk, network or GPU is not a cgroup limit)
AGGREGATE_SECTIONS = ("cpu", "memory", "pids", "io")
RESERVE_KEYS = {"cpu": lambda path, v: parse_cpu(path, v, allow_unlimited=False),
                "memory": lambda path, v: parse_size(path, v, allow_unlimited=False),
                "memory_limit": None}


def _check_workload(path, name, block):
    if not _WORKLOAD_RE.match(str(name)):
        raise PolicyError("%s: %r is not a workload name; use 1-32 of a-z, 0-9, _ (a '-' would nest systemd slices)"
                          % (path, name))
    if not isinstance(block, dict) or not block:
        raise PolicyError("%s: expected a mapping of %s" % (path, ", ".join(WORKLOAD_SECTIONS)))
    for section, body in block.items():
        if section not in WORKLOAD_SECTIONS:
            raise PolicyError("%s.%s: not a workload section; allowed: %s" % (path, section, ", ".join(WORKLOAD_SECTIONS)))
        if not isinstance(body, dict):
            raise PolicyError("%s.%s: expected a mapping" % (path, section))
        for key, value in body.items():
            _check_value("%s.%s.%s" % (path, section, key), section, key, value)


def _check_value(path, section, key, value):
    if section == "workloads":
        return _check_workload(path, key, value)
    nested = NESTED.get(section)
    if nested:  # net.<direction> and disk.<mount> hold a mapping of their own keys
        if not isinstance(value, dict):
            raise PolicyError("%s: expected a mapping of %s" % (path, ", ".join(nested)))
        for k, v in value.items():
            if k not in nested:
                raise PolicyError("%s.%s: unknown key; allowed: %s" % (path, k, ", ".join(nested)))
            nested[k]("%s.%s" % (path, k), v)
        return
    checker = SCHEMA[section].get(key, False)
    if checker is False:
        raise PolicyError("%s: unknown key; allowed in %s: %s" % (path, section, ", ".join(sorted(SCHEMA[section]))))
    return checker(path, value) if checker else None


# keys of a block that are not limits, and the blocks that may hold them
META = {"defaults": (), "tiers": ("match", "unlimited"), "users": ("tier", "unlimited"), "aggregate": ("systemd",)}
MATCH_KEYS = ("groups", "users")


def _mapping(path, value, what):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError("%s: %r is not a mapping; expected %s" % (path, value, what))
    return value


def _names(path, value):
    """A list of user or group names (a lone string is refused: it would match nobody)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError("%s: %r is not a list of names; write it as a list, like [%s]"
                          % (path, value, value if isinstance(value, str) else "students"))
    return value


def _check_meta(where, block, kind):
    for key in META[kind]:
        if key not in block:
            continue
        path = "%s.%s" % (where, key)
        if key == "unlimited" and not isinstance(block[key], bool):
            raise PolicyError("%s: %r is not true or false (a string such as \"no\" would have lifted every limit)"
                              % (path, block[key]))
        if key == "match":
            match = _mapping(path, block[key], "groups and/or users")
            for mkey, names in match.items():
                if mkey not in MATCH_KEYS:
                    raise PolicyError("%s.%s: unknown key; allowed: %s" % (path, mkey, ", ".join(MATCH_KEYS)))
                _names("%s.%s" % (path, mkey), names)
        if key == "tier" and block[key] is not None and not isinstance(block[key], str):
            raise PolicyError("%s: %r is not a tier name" % (path, block[key]))
        if key == "systemd" and block[key] != "workloads":
            raise PolicyError("%s: %r is not allowed; the one value is workloads (on systemd hosts the total then holds "
                              "the tier's workloads and their containers, not its logins)" % (path, block[key]))


# Keys whose value the host tools show as a number: resolve() passes on the parser's answer (bytes, CPUs, a
# count, or "max") beside the policy's text as 'canonical', so no tool parses "2G" again with a parser of its own.
CANONICAL = ("memory.max", "memory.swap_max", "cpu.max", "pids.max")


def flatten(where, block, kind=None, canonical=None):
    """A defaults/tier/user block -> {'memory.max': value, 'disk./home': {...}, 'net.egress': {...}}.
    kind: which META keys the block may hold (defaults, tiers, users, aggregate); None: all of them,
    unchecked (a block that validate() has checked already). canonical (a dict): filled with the parsed
    value of each CANONICAL key."""
    flat = {}
    meta = ("match", "unlimited", "tier") if kind is None else META[kind]
    block = _mapping(where, block, "a mapping of sections (%s)" % ", ".join(SECTIONS))
    if kind is not None:
        _check_meta(where, block, kind)
    for section, body in block.items():
        if section in meta:
            continue
        path = "%s.%s" % (where, section)
        if section not in SECTIONS:
            raise PolicyError("%s: unknown section; allowed: %s" % (path, ", ".join(SECTIONS + tuple(meta))))
        if not isinstance(body, dict):
            raise PolicyError("%s: expected a mapping" % path)
        for key, value in body.items():
            parsed = _check_value("%s.%s" % (path, key), section, key, value)
            flat["%s.%s" % (section, key)] = value
            if canonical is not None and "%s.%s" % (section, key) in CANONICAL:
                canonical["%s.%s" % (section, key)] = parsed
    return flat


def _matches(cond, user, where):
    """Rule conditions: all/any/not, group, user, uid_range [lo, hi]."""
    if not isinstance(cond, dict) or len(cond) != 1:
        raise PolicyError("%s: a condition is one of all, any, not, group, user, uid_range" % where)
    (kind, arg), = cond.items()
    if kind in ("all", "any") and not isinstance(arg, list):
        raise PolicyError("%s.%s: %r is not a list of conditions" % (where, kind, arg))
    if kind == "all":
        return all(_matches(c, user, "%s.all[%d]" % (where, i)) for i, c in enumerate(arg))
    if kind == "any":
        return any(_matches(c, user, "%s.any[%d]" % (where, i)) for i, c in enumerate(arg))
    if kind == "not":
        return not _matches(arg, user, where + ".not")
    if kind in ("group", "user") and not (isinstance(arg, str) and arg):
        raise PolicyError("%s.%s: %r is not a %s name" % (where, kind, arg, kind))
    if kind == "group":
        return arg in user["groups"]
    if kind == "user":
        return arg == user["name"]
    if kind == "uid_range":
        if not (isinstance(arg, list) and len(arg) == 2):
            raise PolicyError("%s.uid_range: %r is not [first, last]" % (where, arg))
        low, high = _uid("%s.uid_range[0]" % where, arg[0]), _uid("%s.uid_range[1]" % where, arg[1])
        return low <= user["uid"] <= high
    raise PolicyError("%s: %r is not a condition; use all, any, not, group, user, uid_range" % (where, kind))


def _tier_match(match, user):
    groups = (match or {}).get("groups", [])
    users = (match or {}).get("users", [])
    return bool(set(groups) & set(user["groups"])) or user["name"] in users


# The users a policy covers by default: every uid from 1000 up, directory users included
# (SSSD and winbind map AD users to uids in the hundreds of thousands or millions), except
# the block below 65536 that is not people's: Debian's globally allocated 60000-64999,
# systemd's dynamic service users 61184-65519, nobody 65534. 4294967294 and 4294967295
# are (uid_t) -2 and -1, never users.
UID_MAX = 4294967293
RESERVED_UIDS = [[60000, 65535]]


def _uid(field, value):
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())) or \
            not 0 <= int(value) <= UID_MAX:
        raise PolicyError("%s: %r is not a uid; allowed: a whole number from 0 to %d" % (field, value, UID_MAX))
    return int(value)


def uid_range(policy):
    """(min_uid, max_uid, reserved [(lo, hi)]) of a policy, checked."""
    low = _uid("min_uid", policy.get("min_uid", 1000))
    high = _uid("max_uid", policy.get("max_uid", UID_MAX))
    if low > high:
        raise PolicyError("max_uid: %d is below min_uid %d" % (high, low))
    reserved = policy.get("reserved_uids", RESERVED_UIDS)
    if not isinstance(reserved, list):
        raise PolicyError("reserved_uids: %r is not a list of [first, last] uid ranges" % (reserved,))
    blocks = []
    for i, block in enumerate(reserved):
        if not isinstance(block, (list, tuple)) or len(block) != 2:
            raise PolicyError("reserved_uids[%d]: %r is not a [first, last] uid range" % (i, block))
        lo, hi = _uid("reserved_uids[%d][0]" % i, block[0]), _uid("reserved_uids[%d][1]" % i, block[1])
        if lo > hi:
            raise PolicyError("reserved_uids[%d]: %d is above %d" % (i, lo, hi))
        blocks.append((lo, hi))
    return low, high, blocks


def covers_uid(uid_bounds, uid):
    low, high, reserved = uid_bounds
    return low <= uid <= high and not any(lo <= uid <= hi for lo, hi in reserved)


def validate(policy):
    """Check the whole policy once; raises PolicyError naming the path."""
    if not isinstance(policy, dict):
        raise PolicyError("fairshare_policy: expected a mapping")
    for key in policy:
        if key not in TOP_KEYS:
            raise PolicyError("%s: unknown key; allowed: %s" % (key, ", ".join(TOP_KEYS)))
    uid_range(policy)
    _names("exempt_users", policy.get("exempt_users", ["root"]))
    flatten("defaults", policy.get("defaults"), "defaults")
    tiers = _mapping("tiers", policy.get("tiers"), "a mapping of tier names to tiers")
    for name, tier in tiers.items():
        flatten("tiers.%s" % name, tier, "tiers")
    rules = policy.get("rules") or []
    if not isinstance(rules, list):
        raise PolicyError("rules: %r is not a list of {tier, when}" % (rules,))
    for i, rule in enumerate(rules):
        rule = _mapping("rules[%d]" % i, rule, "tier and when")
        for key in rule:
            if key not in ("tier", "when"):
                raise PolicyError("rules[%d].%s: unknown key; allowed: tier, when" % (i, key))
        if not isinstance(rule.get("tier"), str) or rule["tier"] not in tiers:
            raise PolicyError("rules[%d].tier: %r is not a tier; tiers: %s" % (i, rule.get("tier"), ", ".join(tiers)))
        _matches(rule.get("when") or {"all": []}, {"name": "", "uid": -1, "groups": []}, "rules[%d].when" % i)
    for name, over in _mapping("users", policy.get("users"), "a mapping of user names").items():
        over = _mapping("users.%s" % name, over, "a mapping of sections, tier, unlimited")
        if over.get("tier") is not None and over["tier"] not in tiers:
            raise PolicyError("users.%s.tier: %r is not a tier; tiers: %s" % (name, over["tier"], ", ".join(tiers)))
        flatten("users.%s" % name, over, "users")
    for name, agg in _mapping("aggregate", policy.get("aggregate"), "all or tier names").items():
        if name != "all" and name not in tiers:
            raise PolicyError("aggregate.%s: not a tier (or all)" % name)
        if name != "all" and not TIER_LEVEL_RE.match(name):
            raise PolicyError("aggregate.%s: a tier with a total becomes a cgroup named tier-%s; its name may hold "
                              "only letters, digits, _ . @ : -" % (name, name))
        if name == "all" and "systemd" in (agg or {}):
            raise PolicyError("aggregate.all.systemd: only a tier's total takes it; aggregate.all is user.slice on "
                              "systemd hosts, which holds every login already")
        if name != "all" and "systemd" in agg and not TIER_SLICE_RE.match(name):
            raise PolicyError("aggregate.%s: on systemd hosts the total is the slice %s, and a '-' or '@' in the "
                              "tier's name would nest it elsewhere; rename the tier (letters, digits, _ . :)"
                              % (name, TIER_SLICE % name))
        for section in _mapping("aggregate.%s" % name, agg, "cpu, memory, pids, io"):
            if section == "systemd":
                continue
            if section not in AGGREGATE_SECTIONS:
                raise PolicyError("aggregate.%s.%s: not a total that a cgroup holds; allowed: %s"
                                  % (name, section, ", ".join(AGGREGATE_SECTIONS)))
        for key in flatten("aggregate.%s" % name, agg, "aggregate"):
            if key not in CGROUP_KEYS or key == "cpu.cpus":
                raise PolicyError("aggregate.%s.%s: not a total; allowed: %s" % (name, key, ", ".join(
                    k for k in sorted(CGROUP_KEYS) if k != "cpu.cpus")))
    reserve = _mapping("reserve", policy.get("reserve"), "cpu, memory, memory_limit")
    for key, value in reserve.items():
        if key not in RESERVE_KEYS:
            raise PolicyError("reserve.%s: unknown key; allowed: %s" % (key, ", ".join(RESERVE_KEYS)))
        if key == "memory_limit":
            if value not in ("max", "high"):
                raise PolicyError("reserve.memory_limit: %r is not allowed; use max (a hard cap: memory.max) or high "
                                  "(throttle and reclaim: memory.high)" % (value,))
        else:
            RESERVE_KEYS[key]("reserve.%s" % key, value)
    if policy.get("plans") is not None:
        try:
            validate_plans(policy["plans"])
        except InputError as exc:
            raise PolicyError(str(exc))


def tier_of(policy, user):
    """-> (tier name or None, where it came from)."""
    over = (policy.get("users") or {}).get(user["name"]) or {}
    if over.get("tier"):
        return over["tier"], "users.%s.tier" % user["name"]
    for i, rule in enumerate(policy.get("rules") or []):
        if _matches(rule.get("when") or {"all": []}, user, "rules[%d].when" % i):
            return rule["tier"], "rules[%d]" % i
    for name, tier in (policy.get("tiers") or {}).items():
        if _tier_match(tier.get("match"), user):
            return name, "tiers.%s.match" % name
    return None, None


def resolve(policy, users, checked=False):
    """users: [{'name', 'uid', 'groups': [...]}] -> {name: profile}.

    A profile: {'uid', 'tier', 'tier_from', 'unlimited', 'values': {key: {'value', 'from'}}}; a CANONICAL
    key's value also has 'canonical', the parser's answer (bytes, CPUs, a count or "max").
    checked: the policy was validated before (the host-side resolver, login.py); the blocks each
    profile is made of are still checked as they are flattened. Users of the same tier without a
    block of their own share one 'values' dict (read it, do not change it; pack_profiles encodes it
    once for all of them).
    """
    if not checked:
        validate(policy)
    exempt = set(policy.get("exempt_users", ["root"]))
    bounds = uid_range(policy)
    named = policy.get("users") or {}
    tiers = policy.get("tiers") or {}
    profiles = {}
    totals = set(policy.get("aggregate") or {})
    made = {}  # (tier, the user's own block or None) -> (values, unlimited): the layers are flattened once per tier
    for user in users:
        if user["name"] not in named and (user["name"] in exempt or not covers_uid(bounds, user["uid"])):
            continue
        tier, tier_from = tier_of(policy, user)
        own = user["name"] if user["name"] in named else None
        if (tier, own) not in made:
            layers = [("defaults", policy.get("defaults"))]
            if tier:
                layers.append(("tiers.%s" % tier, tiers[tier]))
            if own is not None:
                layers.append(("users.%s" % own, named[own]))
            values = {}
            for where, block in layers:
                parsed = {}
                for key, value in flatten(where, block, canonical=parsed).items():
                    values[key] = {"value": value, "from": "%s.%s" % (where, key)}
                    if key in parsed:
                        values[key]["canonical"] = parsed[key]
            unlimited = bool(any((block or {}).get("unlimited") for _w, block in layers[1:]))
            made[(tier, own)] = ({} if unlimited else values), unlimited
        values, unlimited = made[(tier, own)]
        profiles[user["name"]] = prof = {"uid": user["uid"], "tier": tier, "tier_from": tier_from,
                                         "unlimited": unlimited, "values": values}
        if tier in totals and not unlimited:
            prof["tier_total"] = True
    return profiles


TIER_LEVEL_RE = re.compile(r"^[A-Za-z0-9_.@:-]+$")
TIER_SLICE_RE = re.compile(r"^(?!\.+$)[A-Za-z0-9_.:]+$")
# Where a tier's total lives: on hosts without systemd a level under the managed parent that its users' cgroups
# go in; on systemd hosts (aggregate.<tier>.systemd: workloads) a slice in user.slice that its workloads go in.
TIER_LEVEL = "tier-%s"
TIER_SLICE = "user-tier_%s.slice"
TIER_SLICE_PREFIX = "user-tier_"  # the tiers' totals and their workloads' slices: none inside a user's slice
TIER_WORKLOAD_SLICE = "user-tier_%s-u%d_%s.slice"


def total_tier(prof):
    """The tier whose total holds this profile's user (aggregate.<tier>), None without one."""
    return prof.get("tier") if prof.get("tier_total") else None


def user_level(prof, init_system="systemd"):
    """The level a user's cgroup goes under (cgroup_limit's limits[].under): tier-<name> on hosts without
    systemd when the user's tier has a total (aggregate.<tier>), else None (directly under the parent; on
    systemd hosts logind decides where a user's slice is)."""
    tier = total_tier(prof)
    return TIER_LEVEL % tier if tier and init_system != "systemd" else None


PACKED = "fairshare-packed-profiles"  # the mark of a packed document (pack_profiles)


def pack_profiles(profiles):
    """Profiles -> the same in a compact document: each distinct profile (all but its uid) once in
    'shapes', each user [uid, its shape] in 'users'. Users of the same tier without overrides share
    one shape, so 10,000 users take some 250 kB instead of 4 MB (the profiles role keeps them so,
    under the 500 kB a task result of an AWX job may take)."""
    shapes, index, users, seen = [], {}, {}, {}
    for name in sorted(profiles):
        shape = dict(profiles[name])
        uid = shape.pop("uid")
        # users of one tier share one values dict as resolve() makes them: one encoding per distinct dict
        quick = (id(shape["values"]), shape.get("tier"), shape.get("tier_from"), shape.get("unlimited"),
                 shape.get("tier_total")) if "values" in shape and len(shape) - ("tier_total" in shape) == 4 else None
        key = seen.get(quick) if quick else None
        if key is None:
            key = json.dumps(shape, sort_keys=True)
            if quick:
                seen[quick] = key
        if key not in index:
            index[key] = len(shapes)
            shapes.append(shape)
        users[name] = [uid, index[key]]
    return {PACKED: 1, "shapes": shapes, "users": users}


def unpack_profiles(doc):
    """pack_profiles' document -> the profiles (anything else is returned as it is). The users of one
    shape share its 'values' dict, as resolve() makes them: the filters and modules read profiles and
    never change them (copying them took 0.13 s per filter at 10,000 users)."""
    if not (isinstance(doc, dict) and doc.get(PACKED) == 1):
        return doc
    shapes = doc["shapes"]
    out = {}
    for name, (uid, at) in doc["users"].items():
        shape = shapes[at]
        out[name] = dict(shape, uid=uid, values=shape.get("values", {}))
    return out


def users_from_rows(users):
    """resource_facts' users as rows ([name, uid, [group, ...]], what lists_as_json returns) or dicts
    -> dicts {name, uid, groups}."""
    return [dict(name=u[0], uid=u[1], groups=u[2]) if isinstance(u, (list, tuple)) else u for u in users]


# --------------------------------------------------------------------------- host users and module inputs

CGROUP_KEYS = {"cpu.weight": "cpu_weight", "cpu.max": "cpu_max", "cpu.cpus": "cpuset_cpus",
               "memory.max": "memory_max", "memory.high": "memory_high", "memory.swap_max": "memory_swap_max",
               "memory.min": "memory_min", "memory.low": "memory_low", "pids.max": "pids_max",
               "io.weight": "io_weight"}


def workloads_of(prof):
    """The names of a profile's workloads (its workloads.<name> values), sorted."""
    return sorted(k[len("workloads."):] for k in prof["values"] if k.startswith("workloads."))


def workload_target(uid, workload, init_system="systemd", tier=None):
    """The cgroup_limit target of a user's workload: a slice nested in the user's slice
    (systemd: user-1000-build.slice), else a path under the user's cgroupfs cgroup. tier: the tier whose
    total holds the user (total_tier): on systemd hosts the workload's slice is then in the tier's slice
    (user-tier_lab-u1000_build.slice), elsewhere the user's cgroup is under the tier's level."""
    if init_system == "systemd":
        if tier:
            return {"slice": TIER_WORKLOAD_SLICE % (tier, uid, workload)}
        return {"slice": "user-%d-%s.slice" % (uid, workload)}
    return {"path": "%suser-%d/%s" % (TIER_LEVEL % tier + "/" if tier else "", uid, workload)}


def user_target(uid, init_system="systemd", tier=None):
    """The cgroup_limit target of a user's own cgroup by unit or path (a deleted user needs no passwd entry):
    user-UID.slice on systemd hosts, else <level>/user-UID under the managed parent (tier: total_tier)."""
    if init_system == "systemd":
        return {"slice": "user-%d.slice" % uid}
    return {"path": "%suser-%d" % (TIER_LEVEL % tier + "/" if tier else "", uid)}


def to_cgroup_limits(profiles, init_system="systemd"):
    """Profiles -> the `limits` list of cgroup_limit: each user's aggregate, then its workloads
    (users with no cgroup value are left out; unlimited users are state: absent)."""
    limits = []
    for name, prof in sorted(profiles.items()):
        if prof.get("unlimited"):  # limits an earlier policy gave this user are lifted
            limits.append({"user": name, "state": "absent"})
            continue
        entry = dict((CGROUP_KEYS[k], v["value"]) for k, v in prof["values"].items() if k in CGROUP_KEYS)
        under = user_level(prof, init_system)
        if entry or under:  # a user of a tier with a total goes under it even without limits of their own
            entry["user"] = name
            if under:
                entry["under"] = under
            limits.append(entry)
        for work in workloads_of(prof):
            entry = workload_target(prof["uid"], work, init_system, total_tier(prof))
            for section, body in prof["values"]["workloads." + work]["value"].items():
                for key, value in body.items():
                    entry[CGROUP_KEYS["%s.%s" % (section, key)]] = value
            limits.append(entry)
    return limits


def stale_targets(profiled, profiles, init_system="systemd", masked=(), current=()):
    """cgroup_limit entries (state: absent) that take back what an earlier run gave users the policy no
    longer covers (removed, made exempt, moved out of the uid range, deleted): their cgroup (by unit or
    path, so a deleted user needs no passwd entry) and their workloads'. profiled: resource_facts'
    `profiled` (the last run's users); masked: users the user-.slice template's masks already reset on
    systemd hosts (user_defaults_exempt); current: this run's other entries (its total), which stay.
    Only the role's own targets: other callers' are left alone. On systemd hosts a slice outside the users'
    own slices (a tier's total, a tier's workload) and a workload slice that moved go with keep_running:
    systemd does not move a running unit, so what still runs there keeps those limits until it ends."""
    out = []
    listed = set(e.get("slice") or e.get("path") for e in current or [])
    uids = set(prof["uid"] for prof in profiles.values())
    for row in profiled or []:
        name, uid, workloads = row[:3]
        if name is not None and name not in profiles and uid in uids:  # the uid went to another name: theirs now
            continue
        if name is None:  # the total for all users an earlier run set; this run lists its own if it has one
            target = workloads[0]
            if target in listed:
                continue
            out.append({"slice": target, "state": "absent"} if target.endswith(".slice") else
                       {"path": target, "state": "absent"})
            continue
        tier = ([p[len("total:"):] for p in (row[3] if len(row) > 3 else ()) if p.startswith("total:")] or [None])[0]
        if name in profiles:
            out.extend(_left_by(profiles[name], row, tier, init_system, masked))
            continue
        for work in workloads:
            target = workload_target(uid, work, init_system, tier)
            out.append(dict(target, state="absent"))
        if name in masked:
            continue
        out.append(dict(user_target(uid, init_system, tier), state="absent"))
    for entry in out:  # outside the users' own slices: what still runs there keeps the limits until it ends
        if str(entry.get("slice", "")).startswith(TIER_SLICE_PREFIX):
            entry["keep_running"] = True
    return out


def _left_by(prof, row, tier, init_system, masked):
    """What a user the policy still covers had from the last run and does not get now: a workload the
    policy no longer gives them, one whose slice moved (systemd hosts: the tier's total came or went; without
    systemd cgroup_limit moves the user's whole cgroup by itself), and their own cgroup when the policy
    gives them no cgroup limit at all now (an unlimited user's goes by to_cgroup_limits)."""
    name, uid, workloads = row[:3]
    if prof.get("unlimited"):
        return []
    values = prof.get("values") or {}
    now = set(k[len("workloads."):] for k in values if k.startswith("workloads."))
    moved = init_system == "systemd" and total_tier(prof) != tier
    out = [dict(workload_target(uid, work, init_system, tier), state="absent",
                **({"keep_running": True} if moved and work in now else {})) for work in workloads
           if work not in now or moved]
    had = "cgroup" in (row[3] if len(row) > 3 else ())
    if had and not user_level(prof, init_system) and not any(k in CGROUP_KEYS for k in values) \
            and name not in masked:
        out.append(dict(user_target(uid, init_system, tier), state="absent"))
    return out


def tier_totals(policy, init_system="systemd"):
    """aggregate.<tier> -> cgroup_limit targets. On hosts without systemd the level tier-<name> under the
    managed parent, which the tier's users go under (user_level): everything they run. On systemd hosts
    logind keeps every user-UID.slice directly in user.slice, so no cgroup can hold one tier's logins: the
    total is the slice user-tier_<name>.slice (in user.slice) that the tier's workloads go in, and only
    where the policy says so (aggregate.<tier>.systemd: workloads); else a PolicyError with the reason."""
    out = []
    for name, agg in sorted((policy.get("aggregate") or {}).items()):
        if name == "all":
            continue
        if init_system == "systemd" and agg.get("systemd") != "workloads":
            raise PolicyError("aggregate.%s: on systemd hosts a tier's total cannot hold the tier's logins: logind "
                              "keeps every user-UID.slice directly in user.slice. Write aggregate.%s.systemd: workloads "
                              "to hold the tier's workloads (and the containers started in them) there, use "
                              "aggregate.all for all users together, or the tier's per-user limits" % (name, name))
        entry = dict((CGROUP_KEYS[k], v) for k, v in flatten("aggregate.%s" % name, agg, "aggregate").items())
        entry.update({"slice": TIER_SLICE % name} if init_system == "systemd" else {"path": TIER_LEVEL % name})
        out.append(entry)
    return out


def aggregate_limits(policy, init_system="systemd", capacity=None):
    """The totals for all regular users together, as one cgroup_limit target: aggregate.all, and the
    system's reserve (capacity minus reserve, the smaller of the two where both give a value). On
    systemd hosts the target is user.slice (every login's user-UID.slice is in it), elsewhere the
    cgroupfs backend's managed parent (path "."). Then each tier's total (tier_totals). [] when the
    policy has none of them."""
    validate(policy)
    tiers = tier_totals(policy, init_system)
    total = flatten("aggregate.all", (policy.get("aggregate") or {}).get("all"), "aggregate")
    entry = dict((CGROUP_KEYS[k], v) for k, v in total.items())
    reserve = policy.get("reserve") or {}
    capacity = capacity or {}
    if "memory" in reserve:
        total = capacity.get("memory_bytes") or 0
        left = total - parse_size("reserve.memory", reserve["memory"], allow_unlimited=False)
        if left <= 0:
            raise PolicyError("reserve.memory: %s is all of this host's %s; nothing would be left to the users"
                              % (reserve["memory"], _fmt_bytes(total)))
        field = "memory_high" if reserve.get("memory_limit") == "high" else "memory_max"
        given = entry.get(field)
        given = None if given is None else parse_size("aggregate.all", given)
        entry[field] = str(left if given in (None, UNLIMITED) or given > left else given)
    if "cpu" in reserve:
        cpus = capacity.get("cpus") or 0
        left = cpus - parse_cpu("reserve.cpu", reserve["cpu"], allow_unlimited=False)
        if left <= 0:
            raise PolicyError("reserve.cpu: %s is all of this host's %d CPUs; nothing would be left to the users"
                              % (reserve["cpu"], cpus))
        given = entry.get("cpu_max")
        given = None if given is None else parse_cpu("aggregate.all", given)
        entry["cpu_max"] = "%d%%" % round(100 * (left if given in (None, UNLIMITED) or given > left else given))
    if not entry:
        return tiers
    entry.update({"slice": "user.slice"} if init_system == "systemd" else {"path": "."})
    return [entry] + tiers


def user_defaults(policy):
    """The policy's defaults as cgroup_limit's user_defaults (the user-.slice template on systemd
    hosts): its cpu, memory, pids and io values; workloads stay per user. {} when it has none."""
    validate(policy)
    flat = flatten("defaults", policy.get("defaults"))
    return dict((CGROUP_KEYS[k], v) for k, v in flat.items() if k in CGROUP_KEYS)


def cgroup_parents(profiles, init_system="systemd", driver=None, parent=DEFAULT_PARENT):
    """{user: {'': aggregate, workload: ...}}: the cgroup_parent a container engine takes for a
    user's containers. driver: docker's cgroup driver ('systemd' takes a slice name,
    'cgroupfs' a path from the cgroup root); None: what fits the host's init system.
    The names are those of cgroup_limit's targets (workload_target, systemd_unit, cgroup_relpath)."""
    driver = driver or None  # '' (docker absent or not answering): what fits the host
    if driver not in (None, "systemd", "cgroupfs"):
        raise PolicyError("driver: %r is not a cgroup driver; allowed: systemd, cgroupfs" % driver)
    if init_system != "systemd" and driver == "systemd":
        raise PolicyError("driver: docker's systemd cgroup driver needs systemd, which this host does not run; "
                          "set \"exec-opts\": [\"native.cgroupdriver=cgroupfs\"] in /etc/docker/daemon.json")
    out = {}
    for name, prof in sorted(profiles.items()):
        uid = prof["uid"]
        user_unit = systemd_unit("user", name, uid)
        mine = {}
        under, tier = user_level(prof, init_system), total_tier(prof)
        for work in [""] + workloads_of(prof):
            target = workload_target(uid, work, init_system, tier) if work else None
            if init_system != "systemd":  # the cgroupfs backend's own cgroup_parent: "/" + its relpath
                kind, value = ("path", target["path"]) if work else ("user", name)
                mine[work] = "/" + cgroup_relpath(kind, value, uid, parent, under)
            elif driver == "cgroupfs" and work and tier:  # the workload's slice is in the tier's, in user.slice
                mine[work] = "/user.slice/%s/%s" % (TIER_SLICE % tier, target["slice"])
            elif driver == "cgroupfs":
                mine[work] = "/user.slice/" + user_unit + ("/" + target["slice"] if work else "")
            else:
                mine[work] = target["slice"] if work else user_unit
        out[name] = mine
    return out


def left_behind(profiled, profiles, part):
    """[(name, uid)] of the users an earlier run gave `part` ('gpu', 'net' or 'disk:<path>': facts.profiled_users'
    parts) that this run's profiles do not give it: removed from the policy, made exempt, moved out of the uid
    range, deleted, or in a tier without it now. A uid that went to another name the policy covers is theirs."""
    uids = dict((prof["uid"], name) for name, prof in profiles.items())
    found = []
    for row in profiled or []:
        name, uid = row[0], row[1]
        if name is None or len(row) < 4 or part not in row[3] or uids.get(uid, name) != name:
            continue
        prof = profiles.get(name)
        # an unlimited user's quotas are lifted by to_disk_quotas already, by name
        if prof is None or (part not in profile_parts(prof) and not (part.startswith("disk:") and prof.get("unlimited"))):
            found.append((name, uid))
    return found


def to_disk_quotas(profiles, profiled=None):
    """Profiles -> [{'path': mount, 'quotas': [...]}], one disk_quota call per filesystem.
    Unlimited users get state: absent on every filesystem the policy puts quotas on, so a
    quota an earlier policy gave them is lifted (their files stay). profiled (resource_facts'
    `profiled`): a quota the last run gave a user this run gives none is lifted too, by uid (the
    user may be gone), on its filesystem even when the policy has no quotas there any more."""
    mounts = {}
    for name, prof in sorted(profiles.items()):
        for key, val in prof["values"].items():
            if key.startswith("disk."):
                entry = dict(val["value"])
                entry["name"] = name
                mounts.setdefault(key[len("disk."):], []).append(entry)
    unlimited = [name for name, prof in sorted(profiles.items()) if prof.get("unlimited")]
    out = dict((path, quotas + [{"name": name, "state": "absent"} for name in unlimited])
               for path, quotas in mounts.items())
    paths = set(part for row in profiled or [] if len(row) > 3 for part in row[3] if part.startswith("disk:"))
    for part in sorted(paths):
        listed = out.setdefault(part[5:], [])
        names = set(e["name"] for e in listed)
        listed.extend({"name": str(uid), "state": "absent"} for name, uid in left_behind(profiled, profiles, part)
                      if name not in names)
    return [{"path": path, "quotas": quotas} for path, quotas in sorted(out.items()) if quotas]


def to_tc_classes(profiles):
    classes = []
    for name, prof in sorted(profiles.items()):
        egress = prof["values"].get("net.egress")
        if egress:
            cls = {"user": name, "rate": egress["value"]["rate"]}
            if egress["value"].get("ceil"):
                cls["ceil"] = egress["value"]["ceil"]
            classes.append(cls)
    return classes


def to_gpu_users(profiles, profiled=None):
    """gpu.gpus (explicit list or all) wins; else gpu.count N: gpu_access picks N GPUs of the host
    for the user (different ones, the same on every run); unlimited users may open every GPU.
    profiled (resource_facts' `profiled`): a user the last run granted GPUs that this run grants none
    gets state: absent, by uid (the user may be gone): group and device rules of ours go."""
    users = []
    for name, prof in sorted(profiles.items()):
        vals = prof["values"]
        if prof.get("unlimited"):
            gpus = "all"
        elif "gpu.gpus" in vals:
            gpus = vals["gpu.gpus"]["value"]
        elif "gpu.count" in vals:
            gpus = None
        else:
            continue
        entry = {"name": name, "gpus": gpus} if gpus is not None else \
            {"name": name, "count": int(vals["gpu.count"]["value"])}
        if "gpu.mig" in vals:
            entry["mig"] = int(vals["gpu.mig"]["value"])
        users.append(entry)
    return users + [{"name": str(uid), "state": "absent"} for _name, uid in left_behind(profiled, profiles, "gpu")]


# --------------------------------------------------------------------------- admission

def _fmt_bytes(n):
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= factor:
            return ("%.1f%s" % (n / float(factor), unit)).replace(".0" + unit, unit)
    return "%d" % n


def admission(profiles, capacity, oversubscription=None, reserve=None):
    """Guarantees summed over users must fit capacity x oversubscription; ceilings are reported as ratios.

    capacity: {'cpus': logical CPUs, 'memory_bytes': bytes, 'gpus': count}.
    Guarantees: memory.min (else memory.low), gpu.count. Ceilings: cpu.max, memory.max.
    reserve: the policy's reserve - what it keeps for the system is not the users' capacity.
    Raises PolicyError with the numbers; returns {'guaranteed': ..., 'ceiling_ratio': ...}.
    """
    capacity = dict(capacity)
    if (reserve or {}).get("memory") is not None:
        capacity["memory_bytes"] = max(0, (capacity.get("memory_bytes") or 0)
                                       - parse_size("reserve.memory", reserve["memory"], allow_unlimited=False))
    if (reserve or {}).get("cpu") is not None:
        capacity["cpus"] = max(0.01, (capacity.get("cpus") or 0)
                               - parse_cpu("reserve.cpu", reserve["cpu"], allow_unlimited=False))
    over = dict({"cpu": 1.0, "memory": 1.0, "gpu": 1.0}, **(oversubscription or {}))
    mem_g, gpu_g, cpu_c, mem_c = [], [], 0.0, 0
    for name, prof in sorted(profiles.items()):
        vals = prof.get("values", {})
        for key in ("memory.min", "memory.low"):
            if key in vals and not str(vals[key]["value"]).endswith("%"):
                mem_g.append((name, parse_size(key, vals[key]["value"])))
                break
        if "gpu.count" in vals and int(vals["gpu.count"]["value"]):
            gpu_g.append((name, int(vals["gpu.count"]["value"])))
        if "cpu.max" in vals:
            cpus = parse_cpu("cpu.max", vals["cpu.max"]["value"])
            cpu_c += 0 if cpus == "max" else cpus
        if "memory.max" in vals:
            size = parse_size("memory.max", vals["memory.max"]["value"])
            mem_c += 0 if size == "max" else size
    mem_sum, gpu_sum = sum(v for _n, v in mem_g), sum(v for _n, v in gpu_g)
    mem_cap, gpu_cap = capacity.get("memory_bytes") or 0, capacity.get("gpus") or 0
    if mem_g and mem_sum > mem_cap * over["memory"]:
        raise PolicyError("memory: %s guaranteed (%d users' memory.min/low) > %s capacity%s x %s oversubscription"
                          % (_fmt_bytes(mem_sum), len(mem_g), _fmt_bytes(mem_cap),
                             " (less the reserve %s)" % reserve["memory"] if (reserve or {}).get("memory") else "",
                             over["memory"]))
    if gpu_g and gpu_sum > gpu_cap * over["gpu"]:
        raise PolicyError("gpu: %d GPUs guaranteed (%d users' gpu.count) > %d GPUs x %s oversubscription"
                          % (gpu_sum, len(gpu_g), gpu_cap, over["gpu"]))
    cpus = capacity.get("cpus") or 1
    return {"guaranteed": {"memory_bytes": mem_sum, "gpus": gpu_sum},
            "ceiling_ratio": {"cpu": round(cpu_c / cpus, 2),
                              "memory": round(mem_c / float(mem_cap), 2) if mem_cap else None}}

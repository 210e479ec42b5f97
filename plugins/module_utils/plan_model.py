# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plans: named overlays that scale users' limits on a schedule.

    plans:
      night: {schedule: "Mon..Fri 20:00", until: "07:00", scale: {cpu.max: 2.0, memory.max: 1.5}}

The role turns them into /etc/fairshare/plans.json (this module computes it) and systemd
timers that run `fairshare-plan NAME` at `schedule` and `fairshare-plan base` at `until`,
so a host switches plans without the controller. Switching is `systemctl set-property
--runtime` on the users' slices with the properties computed here, the same ones a
drop-in of cgroup_limit would carry. Pure Python, no AnsibleModule import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import (
    normalize_limits, render_dropin, runtime_properties,
)
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.units import (
    UNLIMITED, parse_cpu, parse_int, parse_size,
)

# policy key -> (cgroup_limit field, parser of the user's value)
SCALABLE = {
    "cpu.max": ("cpu_max", parse_cpu),
    "cpu.weight": ("cpu_weight", lambda where, v: parse_int(where, v, 1, 10000)),
    "memory.max": ("memory_max", parse_size),
    "pids.max": ("pids_max", lambda where, v: parse_int(where, v, 1, 4194304, allow_unlimited=True)),
}
_NAME_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_UNTIL_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_SCHEDULE_RE = re.compile(r"^[A-Za-z0-9 ,.:*/~\-]+$")


def validate_plans(plans):
    """plans: {name: {schedule, until, scale}}; raises InputError naming plans.<name>.<key>."""
    if not isinstance(plans, dict):
        raise InputError("plans: expected a mapping of plan names")
    for name, plan in plans.items():
        where = "plans.%s" % name
        if not _NAME_RE.match(str(name)) or name == "base":
            raise InputError("%s: %r is not a plan name; use 1-32 of a-z, 0-9, _ (and not base)" % (where, name))
        if not isinstance(plan, dict):
            raise InputError("%s: expected a mapping with schedule, until, scale" % where)
        for key in plan:
            if key not in ("schedule", "until", "scale"):
                raise InputError("%s.%s: unknown key; allowed: schedule, until, scale" % (where, key))
        schedule = plan.get("schedule")
        if not isinstance(schedule, str) or not schedule.strip() or not _SCHEDULE_RE.match(schedule):
            raise InputError("%s.schedule: %r is not a systemd calendar event; use one like 'Mon..Fri 20:00'"
                             % (where, schedule))
        if not _UNTIL_RE.match(str(plan.get("until", ""))):
            raise InputError("%s.until: %r is not a time of day; use HH:MM like 07:00" % (where, plan.get("until")))
        scale = plan.get("scale")
        if not isinstance(scale, dict) or not scale:
            raise InputError("%s.scale: expected a mapping of %s to factors" % (where, ", ".join(sorted(SCALABLE))))
        for key, factor in scale.items():
            if key not in SCALABLE:
                raise InputError("%s.scale.%s: cannot be scaled; allowed: %s" % (where, key, ", ".join(sorted(SCALABLE))))
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 100:
                raise InputError("%s.scale.%s: %r is not a factor; use a number above 0 and up to 100, like 2.0"
                                 % (where, key, factor))


def _scaled(key, value, factor, where):
    field, parse = SCALABLE[key]
    parsed = parse(where, value)
    if parsed == UNLIMITED:
        return field, value
    if key == "cpu.max":
        return field, round(parsed * factor, 4)
    if key == "cpu.weight":
        return field, max(1, min(10000, int(round(parsed * factor))))
    return field, max(1, int(parsed * factor))


def _properties(entry, version, where):
    text, _warnings = render_dropin(normalize_limits(entry, where), version)
    return dict(p.split("=", 1) for p in runtime_properties(text))


def plan_units(profiles, plans, cgroup_version="v2"):
    """-> {'base': {unit: [Key=Value]}, 'plans': {name: {schedule, until, units: {unit: [Key=Value]}}},
    'timers': [{name, when, plan, what}]} (two timers per plan: its start, and its end that runs base).

    Only the properties a plan changes are listed, and base holds each of them at the
    user's own value, so `fairshare-plan base` undoes exactly what a plan did.
    """
    validate_plans(plans or {})
    version = "v1" if cgroup_version == "v1" else "v2"
    out = {"version": 1, "base": {}, "plans": {}, "timers": []}
    for name, plan in sorted((plans or {}).items()):
        units = {}
        for user, prof in sorted(profiles.items()):
            vals = prof["values"]
            where = "plans.%s (user %s)" % (name, user)
            base_entry, plan_entry = {}, {}
            for key, factor in sorted(plan["scale"].items()):
                if key in vals:
                    field, value = _scaled(key, vals[key]["value"], factor, where)
                    base_entry[field] = vals[key]["value"]
                    plan_entry[field] = value
            if not plan_entry:
                continue
            if "memory.high" in vals and "memory_max" in plan_entry:  # a % high follows the scaled max
                base_entry["memory_high"] = plan_entry["memory_high"] = vals["memory.high"]["value"]
            unit = "user-%d.slice" % prof["uid"]
            scaled = _properties(plan_entry, version, where)
            units[unit] = ["%s=%s" % kv for kv in sorted(scaled.items())]
            base = out["base"].setdefault(unit, {})
            base.update(_properties(base_entry, version, where))
        out["plans"][name] = {"schedule": plan["schedule"], "until": plan["until"], "units": units}
        out["timers"] += [
            {"name": "fairshare-plan-%s.timer" % name, "when": plan["schedule"], "plan": name, "what": "start"},
            {"name": "fairshare-plan-%s-end.timer" % name, "when": "*-*-* %s:00" % plan["until"], "plan": "base",
             "what": "end"}]
    out["base"] = dict((unit, ["%s=%s" % kv for kv in sorted(props.items())]) for unit, props in out["base"].items())
    return out

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_plans
short_description: The slice properties and timers of the policy's plans
version_added: "0.1.0"
description:
- Turns C(fairshare_policy.plans) (C(night) with C(schedule), C(until) and C(scale) factors for C(cpu.max), C(cpu.weight),
  C(memory.max), C(pids.max)) and the resolved profiles into what C(fairshare-plan) applies on the host - per plan the C(systemctl
  set-property) arguments of each user's slice, the same properties at the user's own values as C(base), and the two timers
  of each plan.
- A percentage C(memory.high) follows the scaled C(memory.max).
options:
  plans:
    description: C(fairshare_policy.plans).
    type: dict
    required: true
  cgroup_version:
    description: The host's cgroup version (C(ansible_facts.fairshare.cgroup.version)); v1 uses the v1 property names.
    type: str
    default: v2
extends_documentation_fragment:
  - fairshare.resources.profiles
"""

EXAMPLES = r"""
- name: What plan night sets
  ansible.builtin.debug:
    msg: "{{ (profiles | fairshare.resources.profile_plans(fairshare_policy.plans)).plans.night.units }}"
"""

RETURN = r"""
_value:
  description: '{version, base: {slice: [Key=Value]}, plans: {name: {schedule, until, units}}, timers: [{name, when, plan,
    what}]}'
  type: dict
"""

from ansible_collections.fairshare.resources.plugins.module_utils.plan_model import plan_units
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import PROFILES, guarded


class FilterModule(object):
    def filters(self):
        return {"profile_plans": guarded("fairshare_policy", plan_units, json_at={0: PROFILES})}

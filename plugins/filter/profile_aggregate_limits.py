# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_aggregate_limits
short_description: The totals of all users together, and the system's reserve, as a cgroup_limit target
version_added: "0.2.0"
description:
- Turns C(fairshare_policy.aggregate.all) (C(cpu), C(memory), C(pids), C(io) totals for all regular users together) and
  C(fairshare_policy.reserve) (C(cpu), C(memory) kept for the system; the users get the capacity minus that, as
  C(memory.max), or C(memory.high) with C(memory_limit=high)) into one O(fairshare.resources.cgroup_limit#module:limits)
  entry - C(user.slice) on systemd hosts (every login's C(user-UID.slice) is in it), the managed parent (C(path=.))
  elsewhere. Where both give a value the smaller one is used.
- A tier's total (C(aggregate.<tier>)) becomes one more entry. On hosts without systemd it is the level C(tier-<name>)
  under the managed parent (C(path=tier-<name>)), which the tier's users go under (their entries of
  C(fairshare.resources.profile_cgroup_limits) carry C(under=tier-<name>)). On systemd hosts logind keeps every
  C(user-UID.slice) directly in C(user.slice), so no cgroup holds only one tier's logins - the total is refused with
  the reason, unless it sets C(systemd) to C(workloads); then it is the slice C(user-tier_<name>.slice), which holds the
  tier's workloads (C(user-tier_<name>-uUID_<workload>.slice)) and not its logins.
positional: _input, init_system, capacity
options:
  _input:
    description: The policy (C(fairshare_policy)).
    type: dict
    required: true
  init_system:
    description: The host's init system (C(ansible_facts.fairshare.init_system)).
    type: str
    default: systemd
  capacity:
    description: C({cpus, memory_bytes}) of the host, for the reserve.
    type: dict
"""

EXAMPLES = r"""
- name: All users together at most 300M, and 1 CPU and 512M kept for the system
  fairshare.resources.cgroup_limit:
    limits: >-
      {{ fairshare_policy | fairshare.resources.profile_aggregate_limits('systemd',
           {'cpus': 4, 'memory_bytes': 4294967296}) }}
  vars:
    fairshare_policy: {aggregate: {all: {memory: {max: 300M}}}, reserve: {cpu: 1, memory: 512M}}
"""

RETURN = r"""
_value:
  description: A list of cgroup_limit entries - the total of all users (at most one), then one per tier with a total.
  type: list
  elements: dict
  sample: [{slice: user.slice, memory_max: "314572800", cpu_max: "300%"}]
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import aggregate_limits
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import guarded


class FilterModule(object):
    def filters(self):
        return {"profile_aggregate_limits": guarded("fairshare_policy", aggregate_limits)}

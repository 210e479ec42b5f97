# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_stale_targets
short_description: What an earlier run gave users the policy no longer covers, to take back
version_added: "0.2.0"
description:
- From the users the last run of the P(fairshare.resources.profiles#role) role limited (the C(profiled) fact of
  P(fairshare.resources.resource_facts#module), read from C(/etc/fairshare/profiles.json)), the
  O(fairshare.resources.cgroup_limit#module:limits) entries with C(state=absent) for those not in the profiles now -
  removed, made exempt, moved out of the uid range or deleted - their cgroup (by unit or path, so a deleted user needs
  no passwd entry) and their workloads', and a total for all users that the policy no longer sets.
- Only the role's own targets - what other callers of cgroup_limit set is left alone.
- On systemd hosts the slices outside the users' own slices (a tier's total, a tier's workloads) and a workload slice
  that moved come with O(fairshare.resources.cgroup_limit#module:limits[].keep_running) - systemd does not move a
  running unit, so what still runs there keeps those limits until it ends.
positional: _input, profiles, init_system, masked, current
options:
  _input:
    description: The C(profiled) fact (a list, or the JSON string of one, as resource_facts returns it with C(lists_as_json)).
    type: raw
    required: true
  profiles:
    description: The profiles of this run (P(fairshare.resources.resolve_profiles#filter)), a dict or the same in a JSON string.
    type: raw
    required: true
  init_system:
    description: The host's init system.
    type: str
    default: systemd
  masked:
    description: Users the C(user-.slice) template masks already reset on systemd hosts (C(user_defaults_exempt)).
    type: list
    elements: str
  current:
    description: This run's other cgroup_limit entries that stay (its total for all users).
    type: list
    elements: dict
"""

EXAMPLES = r"""
- name: Take back what users who left the policy still have
  fairshare.resources.cgroup_limit:
    limits: "{{ ansible_facts['fairshare']['profiled'] | fairshare.resources.profile_stale_targets(profiles, 'systemd') }}"
"""

RETURN = r"""
_value:
  description: cgroup_limit entries, each with C(state=absent) (and C(keep_running) where said above).
  type: list
  elements: dict
  sample: [{slice: user-3005-jobs.slice, state: absent}, {slice: user-3005.slice, state: absent}]
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import stale_targets
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import LIST, PROFILES, guarded


class FilterModule(object):
    def filters(self):
        return {"profile_stale_targets": guarded("profiled", stale_targets, json_at={0: LIST, 1: PROFILES})}

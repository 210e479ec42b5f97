# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_cgroup_limits
short_description: Profiles to the limits list of cgroup_limit
version_added: "0.1.0"
description:
- Turns the output of P(fairshare.resources.resolve_profiles#filter) into the O(fairshare.resources.cgroup_limit#module:limits)
  list, one entry per user (its aggregate), then one per workload of that user.
- Unlimited users (a tier with C(unlimited)) are C(state=absent), so limits an earlier policy gave them are lifted.
- A workload is a child of the user's cgroup. On systemd hosts it is the slice C(user-UID-NAME.slice), which systemd nests
  in C(user-UID.slice); elsewhere the path C(user-UID/NAME) under the managed parent.
options:
  init_system:
    description: The host's init system (C(ansible_facts.fairshare.init_system)); it decides the workload targets.
    type: str
    default: systemd
  as_json:
    description:
      - Return the list in a compact JSON string, for O(fairshare.resources.cgroup_limit#module:limits_json) - at
        thousands of users ansible-core takes seconds to walk a list argument, and none to pass a string.
    type: bool
    default: false
extends_documentation_fragment:
  - fairshare.resources.profiles
"""

EXAMPLES = r"""
- name: Every user of the host in one call
  fairshare.resources.cgroup_limit:
    limits: "{{ profiles | fairshare.resources.profile_cgroup_limits(ansible_facts['fairshare']['init_system']) }}"
"""

RETURN = r"""
_value:
  description: The limits list of cgroup_limit.
  type: list
  elements: dict
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import to_cgroup_limits
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import LIST, PROFILES, guarded


class FilterModule(object):
    def filters(self):
        return {"profile_cgroup_limits": guarded("fairshare_policy", to_cgroup_limits, json_at={0: PROFILES}, json_output=LIST)}

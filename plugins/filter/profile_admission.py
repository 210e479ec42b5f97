# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_admission
short_description: Check that guarantees fit the host's capacity times oversubscription
version_added: "0.1.0"
description:
- Sums guarantees (memory.min or memory.low, gpu.count) over users and fails, with the numbers, when they exceed capacity
  times oversubscription; returns ceiling ratios (cpu.max, memory.max) for the report.
options:
  capacity:
    description: '{cpus, memory_bytes, gpus}'
    type: dict
    required: true
  oversubscription:
    description: '{cpu, memory, gpu} factors (default 1.0).'
    type: dict
extends_documentation_fragment:
  - fairshare.resources.profiles
"""

EXAMPLES = r"""
- name: Admission
  ansible.builtin.debug:
    msg: "{{ profiles | fairshare.resources.profile_admission({'cpus': 2, 'memory_bytes': 25769803776, 'gpus': 0}) }}"
"""

RETURN = r"""
_value:
  description: '{guaranteed: {memory_bytes, gpus}, ceiling_ratio: {cpu, memory}}'
  type: dict
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import admission
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import PROFILES, guarded


class FilterModule(object):
    def filters(self):
        return {"profile_admission": guarded("admission", admission, json_at={0: PROFILES})}

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_preflight
short_description: Check the whole policy of a host against that host before any change
version_added: "0.2.0"
description:
- Runs the checks of every module the P(fairshare.resources.profiles#role) role calls - cgroup limits (values and
  their order, C(cpu.cpus) against the host's CPUs), disk quotas (the filesystem of each C(disk) mount, soft below
  hard), network classes (the interface, each C(ceil) at least its C(rate), the link's capacity) and GPUs (the ones a
  policy names) - on what the role is about to give them, with the host's facts from
  P(fairshare.resources.resource_facts#module).
- Fails, listing every problem with the user and the policy field, before the role's first change; returns
  V({checked}) otherwise.
options:
  facts:
    description: The C(fairshare) facts of P(fairshare.resources.resource_facts#module).
    type: dict
    required: true
  settings:
    description:
      - Which parts are applied (C(cgroups), C(quotas), C(network), C(gpu), booleans, default true) and the
        network settings (C(interface), C(link_rate), C(default_class), C(oversubscription)).
    type: dict
extends_documentation_fragment:
  - fairshare.resources.profiles
"""

EXAMPLES = r"""
- name: The host can take the policy (fails before any change otherwise)
  ansible.builtin.set_fact:
    preflight: "{{ profiles | fairshare.resources.profile_preflight(ansible_facts['fairshare'], {'interface': 'eth0'}) }}"
"""

RETURN = r"""
_value:
  description: '{checked: the number of profiles checked}'
  type: dict
"""

from ansible_collections.fairshare.resources.plugins.module_utils.preflight import check_host
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import PROFILES, guarded


class FilterModule(object):
    def filters(self):
        return {"profile_preflight": guarded("preflight", check_host, json_at={0: PROFILES})}

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_gpu_users
short_description: The users list of gpu_access from resolved profiles
version_added: "0.1.0"
description:
  - Turns resolved profiles into the O(fairshare.resources.gpu_access#module:users) list.
  - C(gpu.gpus) (a list of indexes or UUIDs, or C(all)) wins; else C(gpu.count) 0 gives C(none) and a count above
    0 gives C(all) (a count is recorded, not placed on particular GPUs); unlimited users get C(all).
  - Users whose profile has no gpu value are left out, so gpu_access leaves them alone - unless an earlier run of the
    role granted them GPUs (O(profiled)) - they get C(state=absent) by uid, and gpu_access takes back what it gave.
positional: _input, profiled
options:
  profiled:
    description:
      - The C(profiled) fact of P(fairshare.resources.resource_facts#module) (a list, or the JSON string of one) -
        whom the last run of the role gave what. A user it granted GPUs that these profiles grant none gets an entry
        named by the UID, with C(state=absent).
    type: raw
extends_documentation_fragment:
  - fairshare.resources.profiles
"""

EXAMPLES = r"""
- name: The users list of gpu_access from resolved profiles
  ansible.builtin.debug:
    msg: "{{ fairshare_policy | fairshare.resources.resolve_profiles(ansible_facts.fairshare.users) | fairshare.resources.profile_gpu_users }}"
"""

RETURN = r"""
_value:
  description: "gpu_access users list: [{name, gpus, mig}], and entries {name (the UID), state absent} with O(profiled)"
  type: list
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import to_gpu_users
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import LIST, PROFILES, guarded


class FilterModule(object):
    def filters(self):
        return {"profile_gpu_users": guarded("fairshare_policy", to_gpu_users, json_at={0: PROFILES, 1: LIST})}

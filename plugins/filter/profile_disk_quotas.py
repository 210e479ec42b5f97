# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_disk_quotas
short_description: The per-filesystem quota lists of disk_quota from resolved profiles
version_added: "0.1.0"
description:
  - Turns resolved profiles into one entry per filesystem that a C(disk.<mount>) value names, each with the
    O(fairshare.resources.disk_quota#module:quotas) list of its users, for one disk_quota call per filesystem.
  - Unlimited users get C(state=absent) on each of those filesystems (a quota an earlier policy gave them is lifted).
positional: _input, profiled
options:
  profiled:
    description:
      - The C(profiled) fact of P(fairshare.resources.resource_facts#module) (a list, or the JSON string of one) -
        whom the last run of the role gave what. A quota it gave a user that these profiles do not give gets an
        entry named by the UID, with C(state=absent), on its filesystem (files stay).
    type: raw
extends_documentation_fragment:
  - fairshare.resources.profiles
"""

EXAMPLES = r"""
- name: The per-filesystem quota lists of disk_quota from resolved profiles
  ansible.builtin.debug:
    msg: "{{ fairshare_policy | fairshare.resources.resolve_profiles(ansible_facts.fairshare.users) | fairshare.resources.profile_disk_quotas }}"
"""

RETURN = r"""
_value:
  description: "[{path: mount point, quotas: [{name, block_soft, block_hard, inode_soft, inode_hard}]}]"
  type: list
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import to_disk_quotas
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import LIST, PROFILES, guarded


class FilterModule(object):
    def filters(self):
        return {"profile_disk_quotas": guarded("fairshare_policy", to_disk_quotas, json_at={0: PROFILES, 1: LIST})}

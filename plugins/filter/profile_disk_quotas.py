# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_disk_quotas
short_description: Profiles to one {path, quotas} per filesystem for disk_quota
version_added: 0.1.0
description:
- Profiles to one {path, quotas} per filesystem for disk_quota.
author:
- fairshare.resources contributors (@fairshare)
options:
  _input:
    description: The input (the output of resolve_profiles).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Use profile_disk_quotas
  ansible.builtin.debug:
    msg: "{{ profiles | fairshare.resources.profile_disk_quotas }}"
"""

RETURN = r"""
_value:
  description: Profiles to one {path, quotas} per filesystem for disk_quota.
  type: list
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import to_disk_quotas
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import guarded


class FilterModule(object):
    def filters(self):
        return {"profile_disk_quotas": guarded("fairshare_policy", to_disk_quotas)}

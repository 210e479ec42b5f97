# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_gpu_users
short_description: Profiles to the users list of gpu_access
version_added: 0.1.0
description:
- Profiles to the users list of gpu_access.
author:
- fairshare.resources contributors (@fairshare)
options:
  _input:
    description: The input (the output of resolve_profiles).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Use profile_gpu_users
  ansible.builtin.debug:
    msg: "{{ profiles | fairshare.resources.profile_gpu_users }}"
"""

RETURN = r"""
_value:
  description: Profiles to the users list of gpu_access.
  type: list
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import to_gpu_users
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import guarded


class FilterModule(object):
    def filters(self):
        return {"profile_gpu_users": guarded("fairshare_policy", to_gpu_users)}

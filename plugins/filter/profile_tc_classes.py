# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_tc_classes
short_description: Profiles to the egress classes of tc_shape
version_added: 0.1.0
description:
- Profiles to the egress classes of tc_shape.
author:
- fairshare.resources contributors (@fairshare)
options:
  _input:
    description: The input (the output of resolve_profiles).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Use profile_tc_classes
  ansible.builtin.debug:
    msg: "{{ profiles | fairshare.resources.profile_tc_classes }}"
"""

RETURN = r"""
_value:
  description: Profiles to the egress classes of tc_shape.
  type: list
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import to_tc_classes
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import guarded


class FilterModule(object):
    def filters(self):
        return {"profile_tc_classes": guarded("fairshare_policy", to_tc_classes)}

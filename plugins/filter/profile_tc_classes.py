# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_tc_classes
short_description: The egress classes of tc_shape from resolved profiles
version_added: "0.1.0"
description:
  - Turns resolved profiles into the O(fairshare.resources.tc_shape#module:egress.classes) list - one class per
    user with a C(net.egress) value (its C(rate), and C(ceil) where given).
extends_documentation_fragment:
  - fairshare.resources.profiles
"""

EXAMPLES = r"""
- name: The egress classes of tc_shape from resolved profiles
  ansible.builtin.debug:
    msg: "{{ fairshare_policy | fairshare.resources.resolve_profiles(ansible_facts.fairshare.users) | fairshare.resources.profile_tc_classes }}"
"""

RETURN = r"""
_value:
  description: "tc_shape classes: [{user, rate, ceil}]"
  type: list
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import to_tc_classes
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import PROFILES, guarded


class FilterModule(object):
    def filters(self):
        return {"profile_tc_classes": guarded("fairshare_policy", to_tc_classes, json_at={0: PROFILES})}

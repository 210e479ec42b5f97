# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The input every profile_* filter takes
    DOCUMENTATION = r"""
author:
  - fairshare.resources contributors (@fairshare)
options:
  _input:
    description: The profiles, as P(fairshare.resources.resolve_profiles#filter) returns them.
    type: dict
    required: true
"""

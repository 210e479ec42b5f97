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
    description:
      - The profiles, as P(fairshare.resources.resolve_profiles#filter) returns them, or the same in a
        JSON string (C(resolve_profiles(..., as_json=true)), packed, or C(to_json) of the dict).
      - The profiles role keeps them as a string - ansible-core carries a string from task to task at almost
        no cost, while a dict of thousands of users is walked again at every task that names it.
    type: raw
    required: true
"""

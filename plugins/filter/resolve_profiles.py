# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: resolve_profiles
short_description: Resolve fairshare_policy into one effective profile per user of a host
version_added: "0.1.0"
description:
  - Applies defaults, then the user's tier (C(users.<name>.tier), else the first matching C(rules) entry,
    else the first tier whose C(match) fits), then C(users.<name>) overrides, to every regular user
    (uid from C(min_uid) to C(max_uid), default 1000 to 4294967293 so that directory users with large uids are
    covered, outside C(reserved_uids), default C([[60000, 65535]]); not in C(exempt_users); or named in C(users)).
  - Every value carries where it came from; a policy error names the exact path.
author:
  - fairshare.resources contributors (@fairshare)
options:
  _input:
    description: The policy (C(fairshare_policy)).
    type: dict
    required: true
  users:
    description: The host's users, C([{name, uid, groups}]), as in C(ansible_facts.fairshare.users) of resource_facts
      (a list, or the JSON string that resource_facts returns with C(lists_as_json), whose users are rows
      C([name, uid, [group, ...]])).
    type: raw
    required: true
  as_json:
    description:
      - Return the profiles packed in a compact JSON string instead of a dict - each distinct profile once,
        each user as its uid and the profile it has (10,000 users in some 250 kB instead of 4 MB). Every
        profile_* filter takes that string as it takes the dict; C(from_json) gives the packed document.
      - The profiles role keeps the profiles that way - ansible-core walks a filter's dict again when
        C(to_json) encodes it, for seconds at 10,000 users, and an AWX job event takes 700 kB at most.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Profiles of this host's users
  ansible.builtin.set_fact:
    profiles: "{{ fairshare_policy | fairshare.resources.resolve_profiles(ansible_facts.fairshare.users) }}"
"""

RETURN = r"""
_value:
  description:
    - "{user name: {uid, tier, tier_from, unlimited, values: {'memory.max': {value, from, canonical}}}}"
    - canonical (bytes, CPUs, a count or max) is given for memory.max, memory.swap_max, cpu.max and pids.max.
  type: dict
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import resolve
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import PACKED, USERS, guarded


class FilterModule(object):
    def filters(self):
        return {"resolve_profiles": guarded("fairshare_policy", resolve, json_at={1: USERS}, json_output=PACKED)}

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_user_defaults
short_description: The policy's defaults as cgroup_limit's user_defaults
version_added: "0.1.0"
description:
- Turns C(fairshare_policy.defaults) into O(fairshare.resources.cgroup_limit#module:user_defaults) - its C(cpu), C(memory),
  C(pids) and C(io) values - so that on systemd hosts every user slice gets them from the first login, users the run
  could not list included. Workloads stay per user.
- The whole policy is checked first; an error names the path.
positional: _input
options:
  _input:
    description: The policy (C(fairshare_policy)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Everyone's defaults through the user-.slice template
  fairshare.resources.cgroup_limit:
    user_defaults: "{{ fairshare_policy | fairshare.resources.profile_user_defaults }}"
    limits: []
"""

RETURN = r"""
_value:
  description: The limits, in cgroup_limit's option names; empty when the policy's defaults set none.
  type: dict
  sample: {cpu_max: 200%, memory_max: 4G, pids_max: 4096}
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import user_defaults
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import guarded


class FilterModule(object):
    def filters(self):
        return {"profile_user_defaults": guarded("fairshare_policy", user_defaults)}

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: profile_cgroup_parents
short_description: The cgroup_parent a container engine takes for each user and workload
version_added: "0.1.0"
description:
- For each user of the profiles, the value to give docker (C(--cgroup-parent), compose C(cgroup_parent)) or podman (C(--cgroup-parent))
  so that the user's containers count against the user's limits, and one per workload of the user.
- With docker's C(systemd) cgroup driver that is a slice name (C(user-1000-build.slice)); with the C(cgroupfs) driver a path
  from the cgroup root (C(/user.slice/user-1000.slice/user-1000-build.slice)); on hosts without systemd the path under the
  managed parent (C(/fairshare/user-1000/build)).
- Fails when the driver is C(systemd) on a host without systemd, saying how to switch docker to C(cgroupfs).
options:
  init_system:
    description: The host's init system.
    type: str
    default: systemd
  driver:
    description: Docker's cgroup driver (C(ansible_facts.fairshare.containers.docker.cgroup_driver)); empty for the one that
      fits the host.
    type: str
  parent:
    description: The managed parent cgroup of hosts without systemd.
    type: str
    default: fairshare
  as_json:
    description:
      - Return the result in a compact JSON string (sorted keys) instead of a dict. The profiles role keeps
        large results that way - ansible-core walks a filter's dict again when C(to_json) encodes it, for
        seconds at 10,000 users.
    type: bool
    default: false
extends_documentation_fragment:
  - fairshare.resources.profiles
"""

EXAMPLES = r"""
- name: Where alice's containers go
  ansible.builtin.debug:
    msg: "{{ (profiles | fairshare.resources.profile_cgroup_parents('systemd', 'cgroupfs'))['alice'][''] }}"
"""

RETURN = r"""
_value:
  description: '{user: {'''': the user''s aggregate, workload name: its cgroup_parent}}'
  type: dict
"""

from ansible_collections.fairshare.resources.plugins.module_utils.policy import cgroup_parents
from ansible_collections.fairshare.resources.plugins.plugin_utils.filter_guard import LIST, PROFILES, guarded


class FilterModule(object):
    def filters(self):
        return {"profile_cgroup_parents": guarded("cgroup_parent", cgroup_parents, json_at={0: PROFILES}, json_output=LIST)}

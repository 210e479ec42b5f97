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
    (uid >= C(min_uid), not in C(exempt_users), or named in C(users)).
  - Every value carries where it came from; a policy error names the exact path.
author:
  - fairshare.resources contributors (@fairshare)
options:
  _input:
    description: The policy (C(fairshare_policy)).
    type: dict
    required: true
  users:
    description: The host's users, C([{name, uid, groups}]), as in C(ansible_facts.fairshare.users) of resource_facts.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Profiles of this host's users
  ansible.builtin.set_fact:
    profiles: "{{ fairshare_policy | fairshare.resources.resolve_profiles(ansible_facts.fairshare.users) }}"
"""

RETURN = r"""
_value:
  description: "{user name: {uid, tier, tier_from, unlimited, values: {'memory.max': {value, from}}}}"
  type: dict
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.fairshare.resources.plugins.module_utils.policy import (
    admission, cgroup_parents, resolve, to_cgroup_limits, to_disk_quotas, to_gpu_users, to_tc_classes,
)
from ansible_collections.fairshare.resources.plugins.module_utils.plan_model import plan_units
from ansible_collections.fairshare.resources.plugins.module_utils.units import UnitError


def resolve_profiles(policy, users):
    try:
        return resolve(policy, users)
    except UnitError as exc:
        raise AnsibleFilterError("fairshare_policy: %s" % exc)


def profile_admission(profiles, capacity, oversubscription=None):
    try:
        return admission(profiles, capacity, oversubscription)
    except UnitError as exc:
        raise AnsibleFilterError("admission: %s" % exc)


def profile_cgroup_parents(profiles, init_system="systemd", driver=None, parent="fairshare"):
    try:
        return cgroup_parents(profiles, init_system, driver or None, parent)
    except UnitError as exc:
        raise AnsibleFilterError("cgroup_parent: %s" % exc)


def profile_plans(profiles, plans, cgroup_version="v2"):
    try:
        return plan_units(profiles, plans or {}, cgroup_version)
    except UnitError as exc:
        raise AnsibleFilterError("fairshare_policy: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"resolve_profiles": resolve_profiles, "profile_admission": profile_admission,
                "profile_cgroup_limits": to_cgroup_limits, "profile_disk_quotas": to_disk_quotas,
                "profile_tc_classes": to_tc_classes, "profile_gpu_users": to_gpu_users,
                "profile_cgroup_parents": profile_cgroup_parents, "profile_plans": profile_plans}

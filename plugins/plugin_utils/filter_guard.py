# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the collection turn our UnitError (a value not allowed) into AnsibleFilterError.

The filters that take resolved profiles take them as a dict or as the same dict in a JSON
string (resolve_profiles | to_json): the profiles role keeps them as a string, because
ansible-core carries a string from task to task at almost no cost, while a dict of thousands
of users is walked and checked again at every task that names it (seconds at 10,000 users).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.errors import AnsibleFilterError
from ansible_collections.fairshare.resources.plugins.module_utils.units import UnitError



def guarded(label, func, profiles_at=None, json_output=False):
    """func, with its UnitError raised as AnsibleFilterError('<label>: <message>').
    profiles_at: the position of an argument that holds resolved profiles, decoded where it is
    a JSON string. json_output: the filter takes as_json=true, which returns its result in a
    compact JSON string (ansible-core's to_json walks a filter's output again: seconds at 10,000 users)."""
    def run(*args, **kwargs):
        if json_output and kwargs.pop("as_json", False):
            return json.dumps(run(*args, **kwargs), sort_keys=True, separators=(",", ":"))
        if profiles_at is not None and len(args) > profiles_at and isinstance(args[profiles_at], str):
            try:
                args = args[:profiles_at] + (json.loads(args[profiles_at]),) + args[profiles_at + 1:]
            except ValueError as exc:
                raise AnsibleFilterError("%s: the profiles are neither a dict nor a JSON object: %s" % (label, exc))
        try:
            return func(*args, **kwargs)
        except UnitError as exc:
            raise AnsibleFilterError("%s: %s" % (label, exc))
    run.__name__ = getattr(func, "__name__", "filter")
    return run

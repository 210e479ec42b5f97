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


def guarded(label, func, json_at=None, json_output=False):
    """func, with its UnitError raised as AnsibleFilterError('<label>: <message>').
    json_at: the position (or a tuple of positions) of arguments that hold resolved profiles
    or a list of resource_facts (lists_as_json), each decoded where it is a JSON string.
    json_output: the filter takes as_json=true, which returns its result in a compact JSON string
    (ansible-core's to_json walks a filter's output again: seconds at 10,000 users)."""
    positions = () if json_at is None else json_at if isinstance(json_at, tuple) else (json_at,)

    def run(*args, **kwargs):
        if json_output and kwargs.pop("as_json", False):
            return json.dumps(run(*args, **kwargs), sort_keys=True, separators=(",", ":"))
        args = list(args)
        for at in positions:
            if len(args) > at and isinstance(args[at], str):
                try:
                    args[at] = json.loads(args[at])
                except ValueError as exc:
                    raise AnsibleFilterError("%s: argument %d is neither a dict or list nor a JSON string of one: %s"
                                             % (label, at + 1, exc))
        try:
            return func(*args, **kwargs)
        except UnitError as exc:
            raise AnsibleFilterError("%s: %s" % (label, exc))
    run.__name__ = getattr(func, "__name__", "filter")
    return run

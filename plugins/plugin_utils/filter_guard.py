# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the collection turn our InputError (a value not allowed) into AnsibleFilterError.

The filters that take resolved profiles take them as a dict or as the same dict in a JSON
string (resolve_profiles | to_json): the profiles role keeps them as a string, because
ansible-core carries a string from task to task at almost no cost, while a dict of thousands
of users is walked and checked again at every task that names it (seconds at 10,000 users).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.errors import AnsibleFilterError
from ansible_collections.fairshare.resources.plugins.module_utils.facts import decode_list
from ansible_collections.fairshare.resources.plugins.module_utils.policy import (
    pack_profiles, unpack_profiles, users_from_rows,
)
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError


def guarded(label, func, json_at=None, json_output=None):
    """func, with its InputError raised as AnsibleFilterError('<label>: <message>').
    json_at: {position: what the argument is} for arguments that may come as JSON strings, each
    decoded then: PROFILES (resolved profiles, packed or not), USERS (resource_facts' users, rows or
    dicts) or LIST (as it is). json_output: the filter takes as_json=true, which returns its result
    in a compact JSON string (ansible-core's to_json walks a filter's output again: seconds at 10,000
    users) - json_output(result) is what is encoded (PACKED: pack_profiles, LIST: the result itself)."""
    json_at = json_at or {}

    def run(*args, **kwargs):
        if json_output and kwargs.pop("as_json", False):
            return json.dumps(json_output(run(*args, **kwargs)), sort_keys=True, separators=(",", ":"))
        args = list(args)
        for at, convert in json_at.items():
            if len(args) > at:
                value = args[at]
                if isinstance(value, str):
                    try:
                        value = decode_list(value)  # JSON text, or resource_facts' packed form (compress_lists)
                    except ValueError as exc:
                        raise AnsibleFilterError("%s: argument %d is neither a dict or list nor a JSON string of one "
                                                 "(plain, or packed by resource_facts' compress_lists): %s"
                                                 % (label, at + 1, exc))
                args[at] = convert(value)
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            raise AnsibleFilterError("%s: %s" % (label, exc))
    run.__name__ = getattr(func, "__name__", "filter")
    return run


def _as_is(value):
    return value


LIST, PROFILES, USERS, PACKED = _as_is, unpack_profiles, users_from_rows, pack_profiles

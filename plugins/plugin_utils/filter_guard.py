# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the collection turn our UnitError (a value not allowed) into AnsibleFilterError."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.fairshare.resources.plugins.module_utils.units import UnitError


def guarded(label, func):
    """func, with its UnitError raised as AnsibleFilterError('<label>: <message>')."""
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UnitError as exc:
            raise AnsibleFilterError("%s: %s" % (label, exc))
    run.__name__ = getattr(func, "__name__", "filter")
    return run

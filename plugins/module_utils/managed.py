# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The marker every file, drop-in and script of this collection starts with (after a shebang).

Only what carries it is ever rewritten or removed by the modules. Pure Python.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

MANAGED_HEADER = "# managed by fairshare.resources: changes here are overwritten"

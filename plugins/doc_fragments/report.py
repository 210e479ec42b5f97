# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Bounded results (module_utils/bounded.py): the report option and what it changes
    DOCUMENTATION = r"""
options:
  report:
    description:
      - How much of a large result to return. V(auto) returns every entry of a per-target list
        up to 100 entries; beyond that only the entries that changed or carry a warning (at most
        100), with RV(summary) counting them all, and a diff over about 120 kB as unified diffs
        of the first files, then one line per further file, then how many more there were.
      - V(all) returns every entry and the whole diff, however large (AWX empties a job event
        over 700 kB).
    type: str
    choices: [auto, all]
    default: auto
notes:
  - With thousands of users a result stays well under 500 kB with O(report=auto), so that AWX's
    job events and C(--diff) output stay readable.
"""

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Results and diffs of a bounded size, whatever the number of users.

A module result becomes one job event in AWX, whose callback empties a result over its cap
(700 kB); a terminal with --diff is no better at reading 10,000 drop-ins. So:

- a per-target list (``targets``, ``files``, ...) holds every entry up to ENTRIES_LIMIT
  entries; beyond that the entries that changed or carry a warning, at most ENTRIES_LIMIT of
  them, and ``summary`` counts them all. ``report: all`` returns every entry;
- a diff up to DIFF_BUDGET bytes is returned as it is; a larger one becomes unified diffs
  (``prepared``) of the first files, each cut at DIFF_FILE_LINES lines, then one line per
  further file while the budget lasts, then how many more there were.
"""
from __future__ import absolute_import, division, print_function

import difflib
import json

__metaclass__ = type

ENTRIES_LIMIT = 100
DIFF_BUDGET = 120 * 1000
DIFF_FILE_LINES = 60
DIFF_FULL_FILES = 20
ARG_BUDGET = 20 * 1000
REPORT_CHOICES = ["auto", "all"]


def _interesting(entry):
    return bool(entry.get("changed")) or bool(entry.get("warnings"))


def bound_entries(entries, report="auto", limit=ENTRIES_LIMIT):
    """-> (the entries to return, counts {total, changed, returned, omitted})."""
    changed = sum(1 for e in entries if e.get("changed"))
    if report == "all" or len(entries) <= limit:
        kept = list(entries)
    else:
        kept = [e for e in entries if _interesting(e)][:limit]
    return kept, {"total": len(entries), "changed": changed, "returned": len(kept),
                  "omitted": len(entries) - len(kept)}


def _size(diffs):
    return len(json.dumps(diffs))


def _unified(diff, max_lines):
    """One ansible diff dict as unified diff text, cut at max_lines lines -> (text, lines added, lines removed)."""
    if "prepared" in diff:
        lines = diff["prepared"].splitlines(True)
        added = sum(1 for ln in lines if ln.startswith("+"))
        removed = sum(1 for ln in lines if ln.startswith("-"))
    else:
        before = (diff.get("before") or "").splitlines(True)
        after = (diff.get("after") or "").splitlines(True)
        lines = list(difflib.unified_diff(before, after, diff.get("before_header", "before"),
                                          diff.get("after_header", "after"), n=1))
        added = sum(1 for ln in lines[2:] if ln.startswith("+"))
        removed = sum(1 for ln in lines[2:] if ln.startswith("-"))
    lines = [ln if ln.endswith("\n") else ln + "\n" for ln in lines]
    if len(lines) > max_lines:
        cut = len(lines) - max_lines
        lines = lines[:max_lines] + ["... %d more lines of this diff not shown\n" % cut]
    return "".join(lines), added, removed


def _header(diff):
    return diff.get("after_header") or diff.get("before_header") or "(change)"


def compact_diff(diffs, budget=DIFF_BUDGET, full_files=DIFF_FULL_FILES, max_lines=DIFF_FILE_LINES):
    """A list of ansible diff dicts -> one whose JSON is at most about budget bytes."""
    if _size(diffs) <= budget:
        return diffs
    out, used, listed = [], 0, []
    for index, diff in enumerate(diffs):
        text, added, removed = _unified(diff, max_lines)
        if index < full_files and used + len(text) <= budget // 2:
            out.append({"prepared": text})
            used += len(text)
            continue
        line = "%s: +%d -%d lines\n" % (_header(diff), added, removed)
        if used + len(line) > budget:
            rest = len(diffs) - index
            listed.append("... and %d more changes not shown (%d in all)\n" % (rest, len(diffs)))
            break
        listed.append(line)
        used += len(line)
    if listed:
        out.append({"prepared": "".join(listed)})
    return out


def _described(value, size):
    if isinstance(value, list):
        what = "a list of %d entries" % len(value)
    elif isinstance(value, dict):
        what = "a dict of %d keys" % len(value)
    else:
        what = "%d characters" % len(value)
    return "(not repeated in the result: %s, %d bytes as JSON; report: all returns it)" % (what, size)


def bounded_invocation(params, report="auto", budget=ARG_BUDGET):
    """The result's invocation (AnsibleModule adds its whole input otherwise): each argument over budget
    bytes of JSON is named by its size instead of repeated."""
    args = {}
    for key, value in params.items():
        size = len(json.dumps(value)) if report != "all" else 0
        args[key] = _described(value, size) if size > budget else value
    return {"module_args": args}


def bound_lines(lines, report="auto", limit=ENTRIES_LIMIT):
    """A list of lines (actions) -> (the first limit of them and a last line that counts the rest, counts)."""
    if report == "all" or len(lines) <= limit:
        return list(lines), {"total": len(lines), "returned": len(lines), "omitted": 0}
    rest = len(lines) - limit
    return (list(lines[:limit]) + ["... and %d more (%d in all; report: all returns them)" % (rest, len(lines))],
            {"total": len(lines), "returned": limit, "omitted": rest})


def bound_result(result, list_keys, report="auto", with_diff=False, diff=None, params=None, line_keys=()):
    """Bound each list of list_keys (dicts) and line_keys (strings) in result (counts in
    result['summary'][key]), with_diff set its diff, and with params the invocation."""
    if params is not None:
        result["invocation"] = bounded_invocation(params, report)
    summary = result.setdefault("summary", {})
    for key in list_keys:
        if key in result:
            result[key], summary[key] = bound_entries(result[key], report)
    for key in line_keys:
        if key in result:
            result[key], summary[key] = bound_lines(result[key], report)
    if with_diff:
        result["diff"] = diff if report == "all" else compact_diff(diff or [])
    return result

import json

from ansible_collections.fairshare.resources.plugins.module_utils import bounded as b


def targets(n, changed_every=1):
    return [{"target": "user:u%d" % i, "uid": 200000 + i, "changed": i % changed_every == 0,
             "after": {"memory_max": "1G", "cpu_max": "100%"}, "verified": {"memory.max": "1073741824"}}
            for i in range(n)]


def drop_in(i):
    path = "/etc/systemd/system/user-%d.slice.d/50-fairshare.conf" % (200000 + i)
    return {"before_header": path, "after_header": path, "before": "",
            "after": "# managed by fairshare.resources\n[Slice]\nMemoryMax=1073741824\nCPUQuota=100%\nTasksMax=2048\n"}


def test_small_lists_are_returned_whole():
    kept, counts = b.bound_entries(targets(100, changed_every=3))
    assert len(kept) == 100
    assert counts == {"total": 100, "changed": 34, "returned": 100, "omitted": 0}


def test_large_lists_keep_changed_and_warned_entries_up_to_the_limit():
    entries = targets(10000, changed_every=1000)  # 10 changed
    entries[5]["warnings"] = ["memory_high: cgroup v1 cannot enforce it"]
    kept, counts = b.bound_entries(entries)
    assert [e["target"] for e in kept] == ["user:u0", "user:u5"] + ["user:u%d" % i for i in range(1000, 10000, 1000)]
    assert counts == {"total": 10000, "changed": 10, "returned": 11, "omitted": 9989}
    kept, counts = b.bound_entries(targets(10000))  # first run: all changed
    assert len(kept) == b.ENTRIES_LIMIT and counts["omitted"] == 10000 - b.ENTRIES_LIMIT


def test_report_all_returns_everything():
    kept, counts = b.bound_entries(targets(10000), report="all")
    assert len(kept) == 10000 and counts["omitted"] == 0
    diffs = [drop_in(i) for i in range(10000)]
    result = b.bound_result({"targets": targets(10000)}, ["targets"], "all", True, diffs)
    assert result["diff"] is diffs and len(result["targets"]) == 10000


def test_small_diff_is_unchanged():
    diffs = [drop_in(i) for i in range(10)]
    assert b.compact_diff(diffs) is diffs


def test_large_diff_is_compact_and_says_what_it_left_out():
    diffs = [drop_in(i) for i in range(10000)]
    assert len(json.dumps(diffs)) > 1000000
    out = b.compact_diff(diffs)
    size = len(json.dumps(out))
    assert size <= b.DIFF_BUDGET * 1.2, size
    assert all(set(d) == {"prepared"} for d in out)
    text = "".join(d["prepared"] for d in out)
    # the first files in full, as unified diffs
    assert "+++ /etc/systemd/system/user-200000.slice.d/50-fairshare.conf" in text and "+MemoryMax=1073741824" in text
    # then one line per file, then a count of the rest
    assert "user-200100.slice.d/50-fairshare.conf: +5 -0 lines" in text
    last = out[-1]["prepared"].splitlines()[-1]
    assert last.startswith("... and ") and last.endswith("more changes not shown (10000 in all)")
    shown = text.count("50-fairshare.conf")
    assert int(last.split()[2]) + shown - b.DIFF_FULL_FILES == 10000  # each file once, or counted


def test_one_huge_file_is_cut():
    after = "".join('  "u%d": {"memory.max": "1G"},\n' % i for i in range(20000))
    out = b.compact_diff([{"before_header": "/etc/fairshare/profiles.json", "after_header": "/etc/fairshare/profiles.json",
                           "before": "", "after": after}])
    text = out[0]["prepared"]
    assert len(json.dumps(out)) < 10000
    assert text.endswith("... %d more lines of this diff not shown\n" % (20000 + 3 - b.DIFF_FILE_LINES))


def test_invocation_names_big_arguments_by_their_size():
    params = {"limits": [{"user": "u%d" % i, "memory_max": "1G"} for i in range(10000)], "backend": "auto",
              "usage_tool": "#!/usr/bin/python3\n" + "x" * 30000, "report": "auto"}
    inv = b.bounded_invocation(params)["module_args"]
    assert inv["backend"] == "auto" and inv["report"] == "auto"
    assert inv["limits"].startswith("(not repeated in the result: a list of 10000 entries,")
    assert inv["usage_tool"].startswith("(not repeated in the result: 30019 characters,")
    assert b.bounded_invocation(params, "all")["module_args"] == params


def test_lines_beyond_the_limit_are_counted_in_one_last_line():
    lines = ["write /etc/fairshare/users/%d.json" % uid for uid in range(250)]
    kept, counts = b.bound_lines(lines, limit=100)
    assert kept[:100] == lines[:100] and kept[100] == "... and 150 more (250 in all; report: all returns them)"
    assert counts == {"total": 250, "returned": 100, "omitted": 150}
    assert b.bound_lines(lines, report="all", limit=100)[0] == lines
    result = b.bound_result({"actions": lines}, [], line_keys=["actions"])
    assert len(result["actions"]) == 101 and result["summary"]["actions"]["omitted"] == 150

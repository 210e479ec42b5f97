"""fairshare-plan (stdlib-only host tool): which systemctl calls a switch makes, from a plans.json
computed by plan_model. Its effect on real slices is proven in the molecule default scenario."""
import importlib.machinery
import importlib.util
import json
import os
import subprocess

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils.plan_model import plan_units
from ansible_collections.fairshare.resources.plugins.module_utils.policy import resolve

REAL_RUN = subprocess.run  # the fixture replaces it for the tool
TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "profiles", "files", "fairshare-plan")


@pytest.fixture
def tool(tmp_path, monkeypatch):
    for var, name in (("FAIRSHARE_PLANS", "plans.json"), ("FAIRSHARE_PLAN_STATE", "run/plan"),
                      ("FAIRSHARE_SYSTEMD_CONTROL", "control"), ("FAIRSHARE_SYSTEMD_RUNTIME", "runtime")):
        monkeypatch.setenv(var, str(tmp_path / name))
    loader = importlib.machinery.SourceFileLoader("fairshare_plan", TOOL)
    spec = importlib.util.spec_from_loader("fairshare_plan", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    policy = {"defaults": {"cpu": {"max": "50%"}},
              "plans": {"night": {"schedule": "Mon..Fri 20:00", "until": "07:00", "scale": {"cpu.max": 2}}}}
    profiles = resolve(policy, [{"name": "alice", "uid": 1000, "groups": []}])
    (tmp_path / "plans.json").write_text(json.dumps(plan_units(profiles, policy["plans"])))
    calls = []

    class Done(object):
        returncode = 0

    monkeypatch.setattr(mod.subprocess, "run", lambda argv, check=False: calls.append(argv) or Done())
    return mod, calls, tmp_path


def test_a_plan_then_base(tool, capsys):
    mod, calls, tmp = tool
    assert mod.main(["night"]) == 0
    dropin = tmp / "runtime" / "user-1000.slice.d" / "90-fairshare-plan.conf"
    assert dropin.read_text().endswith("[Slice]\nCPUQuota=100%\n")  # sorts after cgroup_limit's 50-fairshare.conf
    assert calls == [["systemctl", "daemon-reload"],
                     ["systemctl", "set-property", "--runtime", "user-1000.slice", "CPUQuota=100%"]]
    assert (tmp / "run" / "plan").read_text() == "night\n"
    control = tmp / "control" / "user-1000.slice.d"
    control.mkdir(parents=True)
    (control / "50-CPUQuota.conf").write_text("[Slice]\nCPUQuota=100%\n")
    (control / "50-MemoryMax.conf").write_text("not ours to remove\n")
    del calls[:]
    assert mod.main(["base"]) == 0
    assert calls == [["systemctl", "daemon-reload"],
                     ["systemctl", "set-property", "--runtime", "user-1000.slice", "CPUQuota=50%"]]
    assert not dropin.exists() and sorted(os.listdir(str(control))) == ["50-MemoryMax.conf"]
    mod.main(["--status"])
    assert "in force: base" in capsys.readouterr().out


def test_an_unknown_plan_changes_nothing(tool, capsys):
    mod, calls, tmp = tool
    assert mod.main(["weekend"]) == 2
    assert calls == [] and not (tmp / "run" / "plan").exists()
    assert "'weekend' is not a plan" in capsys.readouterr().err


@pytest.mark.parametrize("now,until,expect", [
    ("2026-11-26 22:00", "07:00", "2026-11-26 07:00"), ("2026-11-27 06:59", "07:00", "2026-11-26 07:00"),
    ("2026-11-27 07:00", "07:00", "2026-11-27 07:00"),
])
def test_last_until(tool, now, until, expect):
    mod = tool[0]
    fmt = "%Y-%m-%d %H:%M"
    parse = mod.datetime.datetime.strptime
    assert mod.last_until(until, parse(now, fmt)) == parse(expect, fmt)


@pytest.mark.skipif(not any(os.access(os.path.join(d, "systemd-analyze"), os.X_OK)
                            for d in os.environ.get("PATH", "").split(":")), reason="no systemd-analyze")
@pytest.mark.parametrize("now,inside", [
    ("2026-11-26 22:00", True),    # Thursday night: the window Mon..Fri 20:00 -> 07:00 holds it
    ("2026-11-27 06:30", True),    # Friday morning, still Thursday's window
    ("2026-11-27 12:00", False),   # Friday noon
    ("2026-11-28 23:00", False),   # Saturday night: no window starts on Saturday
    ("2026-11-30 06:00", False),   # Monday before 07:00: Friday's window ended Saturday 07:00
])
def test_the_plan_in_force_at_boot_comes_from_the_real_calendar(tool, monkeypatch, now, inside):
    """systemd-analyze itself places the schedule (any calendar event, as the timers read it)."""
    mod = tool[0]
    monkeypatch.setattr(mod.subprocess, "run", REAL_RUN)
    when = mod.datetime.datetime.strptime(now, "%Y-%m-%d %H:%M")
    data = json.loads(open(os.environ["FAIRSHARE_PLANS"]).read())
    assert mod.in_force_now(data, when) == ("night" if inside else "base", [])


def test_now_switches_to_the_plan_in_force_and_says_when_systemd_cannot_tell(tool, monkeypatch, capsys):
    mod, calls, tmp = tool
    monkeypatch.setattr(mod, "elapsed_since", lambda schedule, base, now: True)
    assert mod.main(["--now"]) == 0
    assert (tmp / "run" / "plan").read_text() == "night\n"
    assert ["systemctl", "set-property", "--runtime", "user-1000.slice", "CPUQuota=100%"] in calls
    mod.main(["base"])
    del calls[:]
    monkeypatch.setattr(mod, "elapsed_since", lambda schedule, base, now: None)  # systemd before 250
    assert mod.main(["--now"]) == 0
    assert calls == [] and "could not place night" in capsys.readouterr().err

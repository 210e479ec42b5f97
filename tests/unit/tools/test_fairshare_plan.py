"""fairshare-plan (stdlib-only host tool): which systemctl calls a switch makes, from a plans.json
computed by plan_model. Its effect on real slices is proven in the molecule default scenario."""
import importlib.machinery
import importlib.util
import json
import os

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils.plan_model import plan_units
from ansible_collections.fairshare.resources.plugins.module_utils.policy import resolve

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

"""Modules run whole - AnsibleModule, argument spec, main() - with no root and no QEMU, from cases in YAML next to
this file (one file per module, in the way of community.general's tests/unit/plugins/modules): each case gives
the module's arguments, the answers of the commands it runs (argv -> rc, out, err; a command not answered fails),
and what must come out - the result's keys, and the commands that change the host, in order. The module's files
go to a scratch directory (its path constants are pointed there)."""
import json
import os
from contextlib import contextmanager

import pytest
import yaml

from ansible.module_utils import basic

HERE = os.path.dirname(os.path.abspath(__file__))
READS = ("show", "list", "--version")  # words of commands that only read (and nvidia-smi's --query-*)
READERS = ("repquota", "getent", "lsattr")  # programs that only read


def reads(argv):
    return argv[0] in READERS or any(arg in READS or arg.startswith("--query") for arg in argv)


# per module: what points at the host, pointed at the scratch dir (module attribute -> file name), and fixed values
SETUP = {
    # the leaf qdisc is fixed (the real one depends on the running kernel's modules)
    "tc_shape": {"files": {"STATE_FILE": "tc.json", "RESTORE_SCRIPT": "tc-restore.sh", "UNIT_FILE": "fairshare-tc.service"},
                 "in": "plugins.module_utils.tc_backend", "values": {"init_system": lambda: "none"},
                 "classes": {"TcShaper.leaf_kind": lambda self, modules_dir=None: "fq_codel"}},
    "gpu_access": {"files": {"STATE": "gpu.json", "UDEV_RULES": "70-fairshare-gpu.rules", "MODPROBE": "fairshare-nvidia.conf"},
                   "in": "plugins.module_utils.gpu_backend"},
    "disk_quota": {"files": {}},
    # cgroupfs (cgroup v1) in the scratch dir: cg/<controller>, the registry and scripts beside it
    "cgroup_limit": {"files": {"SCRIPT_DIR": "."}, "in": "plugins.module_utils.cgroup_backend",
                     "values": {"init_system": lambda: "none"}, "cgroup_v1": ["cpu", "memory", "pids"]},
    "resource_usage": {"values": {"init_system": lambda: "none"}, "cgroup_v1": ["cpu", "cpuacct", "memory", "pids"]},
}


@contextmanager
def module_args(args):
    try:  # ansible-core 2.19 and later
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # 2.18: the arguments AnsibleModule reads
        from ansible.module_utils.common.text.converters import to_bytes
        old = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = old
        return
    with patch_module_args(args):
        yield


def cases():
    for name in sorted(f[:-4] for f in os.listdir(HERE) if f.endswith(".yml")):
        with open(os.path.join(HERE, name + ".yml")) as fh:
            for case in yaml.safe_load(fh):
                yield pytest.param(name, case, id="%s: %s" % (name, case["id"]))


@pytest.mark.parametrize("name,case", list(cases()))
def test_module_case(name, case, tmp_path, monkeypatch, capsys):
    import importlib
    package = "ansible_collections.fairshare.resources."
    module = importlib.import_module(package + "plugins.modules." + name)
    setup = SETUP.get(name, {})
    home = importlib.import_module(package + setup["in"]) if "in" in setup else module
    for attr, fname in setup.get("files", {}).items():
        monkeypatch.setattr(home, attr, str(tmp_path / fname))
    for attr, value in setup.get("values", {}).items():
        monkeypatch.setattr(module, attr, value)
    for dotted, value in setup.get("classes", {}).items():
        cls, attr = dotted.split(".")
        monkeypatch.setattr(getattr(home, cls), attr, value)
    if "cgroup_v1" in setup:
        layout = {"version": "v1", "v2_root": None, "v2_controllers": [], "v1": {}}
        for ctrl in setup["cgroup_v1"]:
            layout["v1"][ctrl] = str(tmp_path / "cg" / ctrl)
            os.makedirs(layout["v1"][ctrl])
        monkeypatch.setattr(module, "read_cgroup_layout", lambda: layout)
    for fname, text in (case.get("files") or {}).items():
        os.makedirs(os.path.dirname(str(tmp_path / fname)), exist_ok=True)
        (tmp_path / fname).write_text(text if isinstance(text, str) else json.dumps(text))
    answers = dict((tuple(c["command"]), (c.get("rc", 0), c.get("out", ""), c.get("err", "")))
                   for c in case.get("commands", []))
    ran = []

    def run_command(self, argv, data=None, environ_update=None, **kwargs):
        ran.append(list(argv))
        if tuple(argv) in answers:
            return answers[tuple(argv)]
        if not reads(argv):
            return 0, "", ""  # a command that changes the host: recorded, answered with success
        return 127, "", "not answered by the case: %s" % " ".join(argv)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, arg, required=False, opt_dirs=None: arg)
    args = dict(case["args"], _ansible_check_mode=case.get("check_mode", False), _ansible_diff=case.get("diff", False))
    with module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    result = json.loads(capsys.readouterr().out)
    changing = [argv for argv in ran if not reads(argv)]
    want = case["expect"]
    for key, value in want.get("result", {}).items():
        assert result.get(key) == value, (key, result)
    for fragment in want.get("msg_has", []):
        assert fragment in result.get("msg", ""), result
    if "changes" in want:
        assert changing == want["changes"], json.dumps(changing)
    for fname, text in (want.get("files") or {}).items():
        path = tmp_path / fname
        assert (path.read_text() if path.exists() else None) == text, (fname, sorted(
            os.path.relpath(os.path.join(d, f), str(tmp_path)) for d, _s, fs in os.walk(str(tmp_path)) for f in fs))
    for fname, doc in (want.get("json_files") or {}).items():
        assert json.loads((tmp_path / fname).read_text()) == doc, fname
    for fname in want.get("no_files", []):
        assert not (tmp_path / fname).exists(), fname

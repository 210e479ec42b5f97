"""Modules run whole - AnsibleModule, argument spec, main() - with no root and no QEMU, from cases in YAML next to
this file (one file per module, in the way of community.general's tests/unit/plugins/modules): each case gives
the module's arguments, the answers of the commands it runs (argv -> rc, out, err; a command not answered fails),
and what must come out - the result's keys, and the commands that change the host, in order. The module's files
go to a scratch directory (its path constants are pointed there); files a module only reads at fixed paths (/proc,
/etc/passwd) are answered from the case's `host_files`. A case with `again` runs the module a second time in the same
directory (idempotence: the second run's result and changes). @TMP@ in a case's args and expectations stands for
the scratch directory; `init_system` sets what the module finds for this case only."""
import json
import os
from contextlib import contextmanager

import pytest
import yaml

from ansible.module_utils import basic

HERE = os.path.dirname(os.path.abspath(__file__))
READS = ("show", "list", "info", "current", "--version", "is-enabled", "is-active")  # words of commands that only read (and nvidia-smi's --query-*)
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
    # every file it writes is under PATHS, USERS_DIR, the PAM dirs and the login resolver's paths; systemd is assumed
    "profile_host": {"in": "plugins.module_utils.profile_backend",
                     "files": {"PAM_DIR": "pam.d", "USERS_DIR": "users", "PAM_CONFIG_DIR": "pam-configs",
                               "UNIT_DIR": "units", "LIB_DIR": "lib", "LOGIN_JSON": "login.json",
                               "DEFAULTS_JSON": "login-defaults.json", "USERS_TSV": "login-users.tsv",
                               "LOGIN_TOOL": "sbin/fairshare-login", "AUTHSELECT_DIR": "authselect/custom"},
                     "also": ["plugins.module_utils.profile_files", "plugins.module_utils.login"],
                     "items": {"plugins.module_utils.profile_files.PATHS": {
                         "profiles": "profiles.json", "usage_tool": "bin/fairshare-usage", "greeting": "profile.d/fs.sh",
                         "plans": "plans.json", "plan_tool": "sbin/fairshare-plan",
                         "plan_service": "units/fairshare-plan@.service", "plan_boot": "units/fairshare-plan-boot.service"}},
                     "values": {"init_system": lambda: "systemd"}},
    # what it reads at fixed paths comes from the case (host_files); mounts and NICs are this machine's, not checked
    # (the last run's profiles.json is absent unless the case gives it: this machine's own never counts)
    "resource_facts": {"values": {"init_system": lambda: "systemd"}, "cgroup_v1": ["cpu", "memory", "pids"],
                       "host_files": {"/etc/fairshare/profiles.json": None}},
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
    for other in setup.get("also", []):  # a module that holds the same names (imported from it)
        other = importlib.import_module(package + other)
        for attr, fname in setup.get("files", {}).items():
            if hasattr(other, attr):
                monkeypatch.setattr(other, attr, str(tmp_path / fname))
    for dotted, items in setup.get("items", {}).items():
        owner, attr = dotted.rsplit(".", 1)
        for key, fname in items.items():
            monkeypatch.setitem(getattr(importlib.import_module(package + owner), attr), key, str(tmp_path / fname))

    def holder(attr):  # where the module's code looks a name up: the module itself, else its backend
        return module if hasattr(module, attr) or not hasattr(home, attr) else home
    for attr, value in setup.get("values", {}).items():
        monkeypatch.setattr(holder(attr), attr, value)
    if "init_system" in case:
        monkeypatch.setattr(holder("init_system"), "init_system", lambda: case["init_system"])
    case = in_scratch(case, str(tmp_path))
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
    for fname, target in (case.get("links") or {}).items():  # symbolic links (pam-config's common-* -> common-*-pc)
        os.symlink(target, str(tmp_path / fname))
    answers = dict((tuple(c["command"]), (c.get("rc", 0), c.get("out", ""), c.get("err", "")))
                   for c in case.get("commands", []))
    # what a scripted tool leaves behind, as its documentation says it does (authselect create-profile copies the
    # profile's templates): files written when that command runs
    effects = dict((tuple(c["command"]), c["writes"]) for c in case.get("commands", []) if "writes" in c)
    ran = []

    def run_command(self, argv, data=None, environ_update=None, **kwargs):
        ran.append(list(argv))
        for fname, text in effects.get(tuple(argv), {}).items():
            os.makedirs(os.path.dirname(str(tmp_path / fname)), exist_ok=True)
            (tmp_path / fname).write_text(text)
        if tuple(argv) in answers:
            return answers[tuple(argv)]
        if not reads(argv):
            return 0, "", ""  # a command that changes the host: recorded, answered with success
        return 127, "", "not answered by the case: %s" % " ".join(argv)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    # what the module warns, as it says it (where ansible-core's controller code is loaded in the same process, as
    # the filters' tests load it, 2.19 sends module warnings to its display rather than into the result)
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: warned.append(msg))
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, arg, required=False, opt_dirs=None: arg)
    # None: the file is not there (Host.read answers None)
    given = dict(setup.get("host_files") or {}, **(case.get("host_files") or {}))
    host_files = dict((path, text if isinstance(text, str) or text is None else json.dumps(text))
                      for path, text in given.items())
    if host_files:
        from ansible_collections.fairshare.resources.plugins.module_utils import host as host_mod
        real_read = host_mod.Host.read
        monkeypatch.setattr(host_mod.Host, "read", staticmethod(
            lambda path: host_files[path] if path in host_files else real_read(path)))
    args = dict(case["args"], _ansible_check_mode=case.get("check_mode", False), _ansible_diff=case.get("diff", False))
    result = run_main(module, args, capsys)
    changing = [argv for argv in ran if not reads(argv)]
    check_result(case["expect"], result, changing, tmp_path, warned)
    if "again" in case:
        del ran[:], warned[:]
        again = run_main(module, args, capsys)
        check_result(case["again"], again, [argv for argv in ran if not reads(argv)], tmp_path, warned)


def in_scratch(value, tmp):
    """The case with @TMP@ in its strings (keys too) replaced by the scratch directory."""
    if isinstance(value, str):
        return value.replace("@TMP@", tmp)
    if isinstance(value, list):
        return [in_scratch(v, tmp) for v in value]
    if isinstance(value, dict):
        return dict((in_scratch(k, tmp), in_scratch(v, tmp)) for k, v in value.items())
    return value


def run_main(module, args, capsys):
    with module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def check_result(want, result, changing, tmp_path, warnings):
    for key, value in want.get("result", {}).items():
        assert result.get(key) == value, (key, result)
    for fragment in want.get("msg_has", []):
        assert fragment in result.get("msg", ""), result
    for key, value in want.get("facts", {}).items():
        assert result["ansible_facts"]["fairshare"].get(key) == value, (key, result["ansible_facts"]["fairshare"])
    for key, value in want.get("facts_unpacked", {}).items():  # resource_facts' compress_lists: packed lists
        from ansible_collections.fairshare.resources.plugins.module_utils.facts import decode_list
        fact = result["ansible_facts"]["fairshare"].get(key)
        assert fact.startswith("zlib:") and decode_list(fact) == value, (key, fact)
    for fragment in want.get("warnings_have", []):
        assert any(fragment in w for w in warnings), warnings
    if "warnings" in want:
        assert warnings == want["warnings"], warnings
    if "changes" in want:
        assert changing == want["changes"], json.dumps(changing)
    for fname, text in (want.get("files") or {}).items():
        path = tmp_path / fname
        assert (path.read_text() if path.exists() else None) == text, (fname, sorted(
            os.path.relpath(os.path.join(d, f), str(tmp_path)) for d, _s, fs in os.walk(str(tmp_path)) for f in fs))
    for fname, doc in (want.get("json_files") or {}).items():
        assert json.loads((tmp_path / fname).read_text()) == doc, fname
    for fname, target in (want.get("links") or {}).items():  # null: a file, not a link
        path = str(tmp_path / fname)
        assert (os.readlink(path) if os.path.islink(path) else None) == target, fname
    for fname in want.get("no_files", []):
        assert not (tmp_path / fname).exists(), fname
    for fname, mode in (want.get("modes") or {}).items():
        assert os.stat(str(tmp_path / fname)).st_mode & 0o7777 == int(mode, 8), fname  # "0600": octal, as chmod takes it

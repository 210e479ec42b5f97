"""The host-side resolver (login.py): the same answer as the controller, and never a blocked login."""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import login
from ansible_collections.fairshare.resources.plugins.module_utils.cgroupfs_persist import LOGIN_TOOL, render
from ansible_collections.fairshare.resources.plugins.module_utils.policy import resolve, to_cgroup_limits
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError

POLICY = {
    "defaults": {"memory": {"max": "2G"}, "cpu": {"weight": 100}},
    "tiers": {"student": {"match": {"groups": ["students"]}, "memory": {"max": "1G"}, "cpu": {"max": "100%"}},
              "admin": {"match": {"groups": ["wheel"]}, "unlimited": True}},
    "rules": [{"tier": "student", "when": {"uid_range": [200000, 299999]}}],
    "users": {"carol": {"memory": {"max": "8G"}}},
}


def write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_login_limits_are_the_controllers_answer():
    for user in ({"name": "dave", "uid": 200123, "groups": ["dave"]},
                 {"name": "erin", "uid": 1500, "groups": ["students"]},
                 {"name": "carol", "uid": 1501, "groups": []},
                 {"name": "frank", "uid": 1502, "groups": []}):
        limits, prof = login.login_limits({"policy": POLICY, "parent": "fairshare"}, user)
        assert limits == to_cgroup_limits(resolve(POLICY, [user]), "cgroupfs")
        assert prof == resolve(POLICY, [user])[user["name"]]
    assert login.login_limits({"policy": POLICY}, {"name": "dave", "uid": 200123, "groups": []})[0] == [
        {"user": "dave", "memory_max": "1G", "cpu_weight": 100, "cpu_max": "100%"}]


def test_left_out_and_unlimited_users_get_nothing():
    doc = {"policy": POLICY, "parent": "fairshare"}
    assert login.login_limits(doc, {"name": "root", "uid": 0, "groups": ["root"]}) == ([], None)
    assert login.login_limits(doc, {"name": "svc", "uid": 999, "groups": []}) == ([], None)
    assert login.login_limits(doc, {"name": "nobody", "uid": 65534, "groups": []}) == ([], None)
    limits, prof = login.login_limits(doc, {"name": "ann", "uid": 1600, "groups": ["wheel"]})
    assert limits == [] and prof["unlimited"]


def test_documents_check_the_policy_and_keep_only_defaults_for_the_fallback():
    doc, fallback, users = login.documents(dict(POLICY, min_uid=2000), "fs")
    rest = dict((k, v) for k, v in POLICY.items() if k != "users")
    assert doc == {"policy": dict(rest, min_uid=2000), "parent": "fs", "users": "tsv"}
    assert fallback == {"policy": {"defaults": POLICY["defaults"], "min_uid": 2000}, "parent": "fs"}
    assert users == 'carol\t{"memory":{"max":"8G"}}\n'
    with pytest.raises(InputError, match="is not a user name"):
        login.documents({"users": {"a\tb": {}}}, "fs")
    with pytest.raises(InputError, match="tiers.x.memory.max"):
        login.documents({"tiers": {"x": {"memory": {"max": "32 GB"}}}}, "fs")


def test_decide_falls_back_to_the_defaults_with_the_reason(tmp_path):
    doc, fallback, users = login.documents(POLICY, "fairshare")
    good, defaults = write(tmp_path, "login.json", doc), write(tmp_path, "defaults.json", fallback)
    write(tmp_path, "login-users.tsv", users)
    carol = {"name": "carol", "uid": 1501, "groups": []}  # her own line of the users block
    assert login.decide(carol, (good, defaults))[1] == [{"user": "carol", "memory_max": "8G", "cpu_weight": 100}]
    assert login.decide(carol, (good, defaults))[2] == resolve(POLICY, [carol])["carol"]
    user = {"name": "erin", "uid": 1500, "groups": ["students"]}
    assert login.decide(user, (good, defaults))[1] == [{"user": "erin", "memory_max": "1G", "cpu_weight": 100,
                                                        "cpu_max": "100%"}]
    broken = write(tmp_path, "broken.json", "{not json")
    _doc, limits, _prof, problems = login.decide(user, (broken, defaults))
    assert limits == [{"user": "erin", "memory_max": "2G", "cpu_weight": 100}]
    assert len(problems) == 1 and problems[0].startswith(broken + ": ")
    bad = write(tmp_path, "bad.json", {"policy": {"defaults": {"memory": {"max": "lots"}}}, "parent": "p"})
    _doc, limits, _prof, problems = login.decide(user, (bad, str(tmp_path / "missing.json")))
    assert limits == [] and "defaults.memory.max" in problems[0] and "No such file" in problems[1]


def test_library_is_this_module_and_everything_it_imports():
    code = ("import sys, json; import ansible_collections.fairshare.resources.plugins.module_utils.login; "
            "print(json.dumps(sorted(m.rsplit('.', 1)[1] for m in sys.modules "
            "if m.startswith('ansible_collections.fairshare.resources.plugins.module_utils.'))))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert json.loads(out) == sorted(login.LIBRARY)
    files = login.library_files(lambda name: "# " + name)
    base = os.path.join(login.LIB_DIR, "ansible_collections", "fairshare", "resources", "plugins", "module_utils")
    assert files[os.path.join(base, "policy.py")] == "# " + login.PACKAGE + ".policy"
    assert files[os.path.join(login.LIB_DIR, "ansible_collections", "__init__.py")] == ""
    assert len(files) == len(login.LIBRARY) + 5


def test_tool_runs_isolated_from_the_lib_dir():
    text = login.tool_text("/usr/bin/python3")
    assert text.startswith("#!/usr/bin/python3 -IS\n")
    assert "sys.path.insert(0, '/usr/local/lib/fairshare')" in text and "login import main" in text
    assert "sys.exit(main(sys.argv[1:], run=run))" in text


def test_the_tools_runner_runs_commands_with_the_given_environment_only():
    space = {}
    exec(login.TOOL_RUN, space)  # pylint: disable=exec-used  # the program's own text, as the host runs it
    run = space["run"]
    assert run(["/bin/sh", "-c", '/bin/cat; echo "$PATH:$HOME"'], "in\n", {"PATH": "/x"}) == (0, "in\n/x:\n", "")
    assert run(["/bin/sh", "-c", "echo no >&2; exit 3"], None, {}) == (3, "", "no\n")
    rc, _out, err = run(["/bin/sleep", "5"], None, {}, timeout=1)
    assert rc == 124 and err == "/bin/sleep: no answer in 1 s"
    # the library alone has no runner: a command is an error the session hook logs, never a process
    with pytest.raises(login.CommandError, match="no command runner"):
        login._Direct().run_command(["systemctl", "daemon-reload"])
    seen = []
    login._Direct(lambda argv, data, env: seen.append((argv, env)) or (0, "", "")).run_command(["true"], None, {"X": "1"})
    assert seen == [(["true"], {"PATH": login.SAFE_PATH, "LC_ALL": "C", "X": "1"})]


def test_main_never_fails_a_session_and_says_how_to_use_it(capsys):
    assert login.main(["session"], {"PAM_TYPE": "close_session", "PAM_USER": "x"}) == 0
    assert login.main(["session"], {"PAM_TYPE": "open_session", "PAM_USER": "no-such-user-here"}) == 0
    assert "'no-such-user-here' is not a user" in capsys.readouterr().err
    assert login.main([]) == 2


def test_session_hook_hands_unlisted_uids_to_the_resolver_with_an_empty_environment():
    text = render("fairshare", [], [(1000, ["/sys/fs/cgroup/memory/fairshare/user-1000"])], "/etc/fairshare/x.sh")
    assert "LOGIN_TOOL=%s\n" % LOGIN_TOOL in text
    assert 'exec /usr/bin/env -i PAM_TYPE="$PAM_TYPE" PAM_USER="$PAM_USER" "$LOGIN_TOOL" session' in text
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n" in text and "\nexport PATH\nunset ENV CDPATH\n" in text


# --------------------------------------------------------------------------- systemd hosts

class Recorder(object):
    """What Host needs: records the commands instead of running them."""
    check_mode = False

    def __init__(self):
        self.commands = []

    def run_command(self, argv, data=None, environ_update=None):
        self.commands.append(list(argv))
        return 0, "", ""

    atomic_move = staticmethod(os.rename)


def systemd_call(tmp_path, user, doc=None, version="v2"):
    from ansible_collections.fairshare.resources.plugins.module_utils.host import Host
    doc = doc or {"policy": dict(POLICY, users={}), "parent": "fairshare"}
    limits, prof = login.login_limits(doc, user, "systemd")
    rec = Recorder()
    done = login.systemd_session(Host(rec), doc, user, limits, prof, version,
                                 unit_dir=str(tmp_path / "etc"), runtime_dir=str(tmp_path / "run"))
    path = tmp_path / "run" / ("user-%d.slice.d" % user["uid"]) / login.RUNTIME_DROPIN
    return done, rec.commands, path


def test_systemd_tier_users_get_a_runtime_dropin_and_the_live_slice(tmp_path):
    erin = {"name": "erin", "uid": 200100, "groups": ["students"]}
    done, commands, path = systemd_call(tmp_path, erin)
    assert path.read_text().splitlines()[1:] == ["[Slice]", "CPUWeight=100", "CPUQuota=100%", "MemoryMax=1073741824"]
    assert path.read_text().startswith(login.MANAGED_HEADER) and oct(path.stat().st_mode & 0o777) == "0o644"
    assert commands == [["systemctl", "set-property", "--runtime", "user-200100.slice",
                         "CPUWeight=100", "CPUQuota=100%", "MemoryMax=1073741824"]]
    assert "runtime drop-in" in done
    # the same user, now without the tier: the runtime drop-in goes, the live slice gets the template's values
    done, commands, path = systemd_call(tmp_path, dict(erin, uid=200100, groups=[]),
                                        {"policy": {"defaults": POLICY["defaults"]}, "parent": "fairshare"})
    assert not path.exists() and "defaults" in done
    assert commands == [["systemctl", "set-property", "--runtime", "user-200100.slice",
                         "CPUWeight=100", "MemoryMax=2147483648"]]


def test_systemd_defaults_only_and_listed_users_cost_no_systemctl_call(tmp_path):
    frank = {"name": "frank", "uid": 1502, "groups": []}
    done, commands, path = systemd_call(tmp_path, frank)
    assert (done, commands, path.exists()) == ("the template's defaults", [], False)
    own = tmp_path / "etc" / "user-200100.slice.d" / "50-fairshare.conf"
    own.parent.mkdir(parents=True)
    own.write_text("listed by the role\n")
    done, commands, path = systemd_call(tmp_path, {"name": "erin", "uid": 200100, "groups": ["students"]})
    assert (done, commands, path.exists()) == ("the role's own drop-in", [], False)
    done, commands, path = systemd_call(tmp_path, {"name": "root", "uid": 0, "groups": []})  # outside the policy
    assert (commands, path.exists()) == ([], False)


def test_systemd_unlimited_users_get_the_templates_properties_reset(tmp_path):
    done, commands, path = systemd_call(tmp_path, {"name": "ann", "uid": 1600, "groups": ["wheel"]}, version="v2")
    assert "MemoryMax=infinity" in path.read_text() and "CPUWeight=" in path.read_text().splitlines()
    assert commands[0][:4] == ["systemctl", "set-property", "--runtime", "user-1600.slice"]
    assert "MemoryMax=infinity" in commands[0]
    none = {"policy": {"tiers": POLICY["tiers"]}, "parent": "fairshare"}  # no template: nothing to lift
    assert systemd_call(tmp_path, {"name": "al", "uid": 1601, "groups": ["wheel"]}, none)[1] == []


def test_save_profile_is_the_users_own_file(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    user = {"name": "erin", "uid": 200100, "groups": ["students"]}
    prof = resolve(POLICY, [user])["erin"]
    from ansible_collections.fairshare.resources.plugins.module_utils.host import Host
    login.save_profile(Host(login._Direct()), user, prof, "fairshare", profile_dir=str(tmp_path / "p"))
    path = tmp_path / "p" / "200100.json"
    assert json.loads(path.read_text()) == {"user": "erin", "profile": prof, "parent": "fairshare"}
    assert (path.stat().st_uid, oct(path.stat().st_mode & 0o777)) == (200100, "0o400")
    login.save_profile(Host(login._Direct()), user, None, "fairshare", profile_dir=str(tmp_path / "q"))
    assert not (tmp_path / "q").exists()


def test_systemd_logins_of_users_the_run_decided_resolve_nothing(monkeypatch):
    """A user with cgroup_limit's own drop-in costs only Python's start: no policy read, no resolve."""
    monkeypatch.setattr(login, "init_system", lambda: "systemd")
    monkeypatch.setattr(login, "nss_user", lambda name: {"name": name, "uid": 1500, "groups": []})
    seen = []
    monkeypatch.setattr(login, "has_own_dropin", lambda uid: seen.append(uid) or True)

    def no_decide(*_a):
        raise AssertionError("resolved a user the run decided")
    monkeypatch.setattr(login, "decide", no_decide)
    login.session("erin", 1)
    assert seen == [1500]

"""fairshare-usage (stdlib-only host tool) against a scratch cgroup tree and profiles file."""
import importlib.machinery
import importlib.util
import json
import os

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils.policy import resolve

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "profiles", "files", "fairshare-usage")


@pytest.fixture
def tool(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRSHARE_PROFILES", str(tmp_path / "profiles.json"))
    monkeypatch.setenv("FAIRSHARE_CGROUP_ROOT", str(tmp_path / "cg"))
    monkeypatch.setenv("FAIRSHARE_SEEN", str(tmp_path / "home" / ".cache" / "fairshare-usage.json"))
    loader = importlib.machinery.SourceFileLoader("fairshare_usage", TOOL)
    spec = importlib.util.spec_from_loader("fairshare_usage", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    policy = {"defaults": {"memory": {"max": "1G"}, "pids": {"max": 100}},
              "tiers": {"big": {"match": {"users": ["bob"]}, "memory": {"max": "4G"}}},
              "users": {"alice": {"memory": {"max": "2G"}}}}
    profiles = resolve(policy, [{"name": "alice", "uid": 1000, "groups": []}, {"name": "bob", "uid": 1001, "groups": []}])
    (tmp_path / "profiles.json").write_text(json.dumps({"profiles": profiles, "parent": "fairshare"}))
    v2 = tmp_path / "cg" / "user.slice" / "user-1000.slice"
    v2.mkdir(parents=True)
    (tmp_path / "cg" / "cgroup.controllers").write_text("cpu memory pids\n")
    (v2 / "memory.current").write_text("536870912\n")
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n")
    (v2 / "pids.current").write_text("25\n")
    return mod


def test_report_reads_usage_and_limits(tool):
    data = tool.load()
    rep = tool.report("alice", data["profiles"]["alice"], "fairshare")
    assert rep["memory"] == {"used": 512 << 20, "max": 2 << 30} and rep["pids"] == {"used": 25, "max": 100}
    assert rep["oom_kills"] == 2 and rep["active"]
    assert "[########......................] 512.0M / 2.0G (25%)" in tool.text(rep)
    assert "2 process(es) killed" in tool.text(rep)
    idle = tool.report("bob", data["profiles"]["bob"], "fairshare")
    assert not idle["active"] and idle["memory"]["max"] == 4 << 30


def test_report_of_the_cgroupfs_backend_on_cgroup_v2(tool, tmp_path):
    """No systemd, cgroup v2: the user's cgroup is <parent>/user-UID (the session in its leaf)."""
    bob = tmp_path / "cg" / "fairshare" / "user-1001"
    (bob / "login-sessions").mkdir(parents=True)
    (bob / "memory.current").write_text("1073741824\n")
    (bob / "memory.events").write_text("oom_kill 0\n")
    (bob / "pids.current").write_text("7\n")
    rep = tool.report("bob", tool.load()["profiles"]["bob"], "fairshare")
    assert rep["active"] and rep["memory"] == {"used": 1 << 30, "max": 4 << 30} and rep["pids"]["used"] == 7


def test_report_of_a_user_under_a_tiers_total(tool, tmp_path):
    """A tier with a total (aggregate.<tier>) on a host without systemd: the user's cgroup is <parent>/tier-NAME/user-UID."""
    bob = tmp_path / "cg" / "fairshare" / "tier-big" / "user-1001"
    (bob / "login-sessions").mkdir(parents=True)
    (bob / "memory.current").write_text("1073741824\n")
    (bob / "pids.current").write_text("3\n")
    rep = tool.report("bob", tool.load()["profiles"]["bob"], "fairshare")
    assert rep["active"] and rep["memory"]["used"] == 1 << 30 and rep["pids"]["used"] == 3


def test_explain_and_prometheus(tool, capsys):
    assert tool.main(["--explain", "alice"]) == 0
    out = capsys.readouterr().out
    assert "memory.max 2G from users.alice" in out and "pids.max 100 from defaults" in out
    assert tool.main(["--explain", "carol"]) == 1
    rep = tool.report("alice", tool.load()["profiles"]["alice"], "fairshare")
    prom = tool.prometheus([rep])
    assert 'fairshare_memory_bytes{user="alice"} 536870912' in prom and 'fairshare_oom_kills_total{user="alice"} 2' in prom


def test_greeting_counts_oom_kills_since_the_last_login(tool, capsys, monkeypatch):
    monkeypatch.setattr(tool.os, "getuid", lambda: 1000)
    monkeypatch.setattr(tool.pwd, "getpwuid", lambda uid: type("pw", (), {"pw_name": "alice"}))
    tool.main(["--brief"])
    assert "2 process(es) killed for memory since your last login" in capsys.readouterr().out
    tool.main(["--brief"])  # nothing new since
    assert "killed" not in capsys.readouterr().out
    events = tool.CGROUP + "/user.slice/user-1000.slice/memory.events"
    with open(events, "w") as fh:
        fh.write("oom_kill 5\n")
    tool.main(["--brief"])
    assert "3 process(es) killed" in capsys.readouterr().out
    with open(events, "w") as fh:  # the slice began again: its counter too
        fh.write("oom_kill 1\n")
    tool.main(["--brief"])
    assert "1 process(es) killed" in capsys.readouterr().out


def test_prometheus_file_never_writes_through_a_users_link(tool, tmp_path, monkeypatch):
    """--prometheus runs as root in a directory a user may write to: links they put at FILE or at
    the old FILE.tmp must not make root overwrite what they point to."""
    monkeypatch.setattr(tool.os, "geteuid", lambda: 0)
    victim, other = tmp_path / "victim", tmp_path / "other"
    victim.write_text("root's file\n")
    other.write_text("another file\n")
    out = tmp_path / "textfile" / "fairshare.prom"
    out.parent.mkdir()
    (out.parent / "fairshare.prom.tmp").symlink_to(victim)
    out.symlink_to(other)
    assert tool.main(["--prometheus", str(out)]) == 0
    assert victim.read_text() == "root's file\n" and other.read_text() == "another file\n"
    assert not out.is_symlink() and 'fairshare_memory_bytes{user="alice"}' in out.read_text()
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in out.parent.iterdir()) == ["fairshare.prom", "fairshare.prom.tmp"]


def test_users_resolved_at_login_are_reported_with_their_tier(tool, tmp_path, monkeypatch, capsys):
    """fairshare-login leaves /run/fairshare/login/UID.json for users profiles.json does not list."""
    monkeypatch.setattr(tool, "LOGIN_PROFILES", str(tmp_path / "login"))
    (tmp_path / "login").mkdir()
    prof = resolve({"defaults": {"memory": {"max": "1G"}}, "min_uid": 0,
                    "tiers": {"student": {"match": {"groups": ["students"]}, "memory": {"max": "512M"}}}},
                   [{"name": "dora", "uid": os.getuid(), "groups": ["students"]}])["dora"]
    doc = {"user": "dora", "profile": prof, "parent": "fairshare"}
    (tmp_path / "login" / ("%d.json" % os.getuid())).write_text(json.dumps(doc))
    (tmp_path / "login" / "broken.json").write_text("{")
    profiles = tool.login_profiles({}, [os.getuid()])
    assert list(profiles) == ["dora"] and profiles["dora"]["tier"] == "student"
    assert profiles["dora"]["source"] == "login"
    assert tool.login_profiles({"dora": {"tier": "listed"}}, None)["dora"] == {"tier": "listed"}  # the run's wins
    rep = tool.report("dora", profiles["dora"], "fairshare")
    assert rep["memory"]["max"] == 512 << 20 and rep["source"] == "login"
    assert tool.text(rep).splitlines()[0] == "dora (tier student), resolved at login"


def test_all_lists_containers_outside_every_users_slice(tool, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tool.os, "geteuid", lambda: 0)
    monkeypatch.setattr(tool, "LOGIN_PROFILES", str(tmp_path / "none"))
    cid = "%064x" % 7
    outside = tmp_path / "cg" / "system.slice" / ("docker-%s.scope" % cid)
    outside.mkdir(parents=True)
    (outside / "memory.current").write_text("%d\n" % (70 << 20))
    (tmp_path / "cg" / "user.slice" / "user-1000.slice" / ("libpod-%s.scope" % cid)).mkdir()  # rootless: inside
    (tmp_path / "profiles.json").write_text(json.dumps({"profiles": {}, "parent": "fairshare"}))  # nobody listed
    assert tool.main(["--all"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no user has a profile here\n")
    assert "container /system.slice/docker-%s.scope: 70.0M, outside every user's limits" % cid in out
    assert out.count("container ") == 1
    assert tool.main(["--all", "--json"]) == 0 and isinstance(json.loads(capsys.readouterr().out), list)


def test_a_uid_without_a_passwd_entry_is_found_by_uid_not_a_traceback(tool, capsys, monkeypatch):
    def missing(uid):
        raise KeyError("getpwuid(): uid not found: %d" % uid)
    monkeypatch.setattr(tool.pwd, "getpwuid", missing)
    monkeypatch.setattr(tool.os, "getuid", lambda: 1000)  # alice's uid in the profiles
    assert tool.main([]) == 0
    assert "alice" in capsys.readouterr().out
    monkeypatch.setattr(tool.os, "getuid", lambda: 4242)  # nobody's
    tool.main(["--brief"])
    tool.main([])
    assert "4242: no limits of fairshare.resources apply" in capsys.readouterr().out


def test_the_gpus_the_host_gave_a_user_are_shown(tool):
    data = tool.load()
    rep = tool.report("alice", data["profiles"]["alice"], "fairshare", gpus=[2, 3])
    assert rep["gpus"] == [2, 3] and "  gpus   GPU 2, 3" in tool.text(rep)
    assert "gpus" not in tool.text(tool.report("bob", data["profiles"]["bob"], "fairshare"))
    assert "gpus   none" in tool.text(tool.report("bob", data["profiles"]["bob"], "fairshare", gpus=[]))
    rep = tool.report("bob", data["profiles"]["bob"], "fairshare", gpus=[], mig=["gpu1/gi2/ci0"])
    assert "  gpus   MIG gpu1/gi2/ci0" in tool.text(rep) and rep["mig"] == ["gpu1/gi2/ci0"]
    rep = tool.report("bob", data["profiles"]["bob"], "fairshare", gpus=[0], mig=["gpu1/gi2/ci0", "gpu1/gi3/ci0"])
    assert "  gpus   GPU 0; MIG gpu1/gi2/ci0, gpu1/gi3/ci0" in tool.text(rep)


def test_a_user_reads_their_own_part_only(tool, tmp_path, monkeypatch, capsys):
    users = tmp_path / "users"
    users.mkdir()
    mine = json.loads(open(tool.PROFILES).read())
    mine["profiles"] = {"alice": mine["profiles"]["alice"]}
    (users / "1000.json").write_text(json.dumps(mine))
    monkeypatch.setattr(tool, "USERS_DIR", str(users))
    monkeypatch.setattr(tool.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(tool.os, "getuid", lambda: 1000)
    monkeypatch.setattr(tool, "LOGIN_PROFILES", str(tmp_path / "none"))
    assert sorted(tool.load()["profiles"]) == ["alice"]  # not profiles.json, which root alone reads
    assert tool.main(["--explain", "bob"]) == 1
    assert "bob: no profile" in capsys.readouterr().out


def test_limits_are_the_collections_numbers_not_parsed_again(tool, tmp_path):
    """The tool shows a value's 'canonical' (resolve() made it with the collection's parser); it parses no
    policy text itself: a profile without it shows no limit, and one whose canonical differs shows that."""
    data = tool.load()
    alice = data["profiles"]["alice"]
    assert alice["values"]["memory.max"]["canonical"] == 2 << 30
    alice["values"]["memory.max"] = {"value": "2G", "from": "users.alice.memory.max", "canonical": 123456789}
    assert tool.report("alice", alice, "fairshare")["memory"]["max"] == 123456789
    del alice["values"]["memory.max"]["canonical"]
    del alice["values"]["pids.max"]["canonical"]
    rep = tool.report("alice", alice, "fairshare")
    assert rep["memory"]["max"] is None and rep["pids"]["max"] is None
    unlimited = resolve({"defaults": {"memory": {"max": "max"}}}, [{"name": "eve", "uid": 1005, "groups": []}])["eve"]
    assert unlimited["values"]["memory.max"]["canonical"] == "max"
    assert tool.report("eve", unlimited, "fairshare")["memory"]["max"] is None

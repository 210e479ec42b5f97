from ansible_collections.fairshare.resources.plugins.module_utils import facts as f

CPUINFO = "".join("processor\t: %d\nphysical id\t: %d\ncore id\t\t: %d\n\n" % (i, i // 4, (i % 4) // 2)
                  for i in range(8))  # 2 sockets x 2 cores x 2 threads


def test_cpuinfo_threads_cores_sockets():
    assert f.parse_cpuinfo(CPUINFO) == {"threads": 8, "cores": 4, "sockets": 2}
    assert f.parse_cpuinfo("processor : 0\n\nprocessor : 1\n") == {"threads": 2, "cores": 2, "sockets": 1}


def test_meminfo():
    assert f.parse_meminfo("MemTotal:       24576000 kB\nMemFree: 1 kB\n") == 24576000 * 1024


def test_passwd_group_primary_and_secondary():
    passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\nbad line\n"
    group = "root:x:0:\nalice:x:1000:\nstudents:x:2000:alice,bob\nsudo:x:27:\n"
    assert f.parse_passwd_group(passwd, group) == [
        {"name": "root", "uid": 0, "groups": ["root"]}, {"name": "alice", "uid": 1000, "groups": ["alice", "students"]}]


def test_container_group_members_but_exempt_ones():
    from ansible_collections.fairshare.resources.plugins.module_utils import facts as fx
    users = fx.parse_passwd_group(
        "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/h:/bin/sh\nbob:x:1001:998::/h:/bin/sh\ncarol:x:1002:1002::/h:/bin/sh\n",
        "root:x:0:\nalice:x:1000:\ncarol:x:1002:\ndocker:x:998:root,alice\nlxd:x:997:carol\nvideo:x:44:carol\n")
    found = fx.container_group_members(users, fx.CONTAINER_GROUPS, ["root"])
    assert found == {"docker": ["alice", "bob"], "lxd": ["carol"]}
    assert fx.container_group_members(users, ["docker"], ["root", "alice", "bob"]) == {}


def test_the_login_session_a_process_runs_in():
    session_scope = f.session_scope
    assert session_scope("0::/user.slice/user-1000.slice/session-5.scope\n") == "session-5.scope"
    assert session_scope("4:memory:/user.slice/user-0.slice/session-c7.scope\n0::/\n") == "session-c7.scope"
    assert session_scope("0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope\n") is None
    assert session_scope("0::/system.slice/cron.service\n") is None and session_scope(None) is None


def test_an_oom_kill_that_would_end_the_session_is_said():
    session_oom_warning = f.session_oom_warning
    assert "systemd#25376" in session_oom_warning(252, "")  # 252 before the fix: no OOMPolicy on scopes
    assert session_oom_warning(252, "continue") is None     # 252.x with the fix (Debian 12's 252.39)
    assert session_oom_warning(257, "continue") is None
    assert session_oom_warning(247, "") is None              # before 252 a scope is not stopped on an OOM kill
    assert "OOMPolicy=stop" in session_oom_warning(257, "stop")  # a site drop-in that brings the kill back

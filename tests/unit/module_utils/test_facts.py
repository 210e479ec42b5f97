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

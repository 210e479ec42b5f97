"""preflight: every module's own checks, run on the role's inputs with the host's facts, before any change."""
import json

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import policy as p
from ansible_collections.fairshare.resources.plugins.module_utils import preflight as pf
from ansible_collections.fairshare.resources.plugins.module_utils.policy import users_from_rows
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError

POLICY = {"min_uid": 1000,
          "defaults": {"memory": {"max": "1G"}, "disk": {"/home": {"block_soft": "1G", "block_hard": "2G"}},
                       "net": {"egress": {"rate": "10mbit", "ceil": "100mbit"}}},
          "tiers": {"gpu": {"match": {"groups": ["gpu"]}, "gpu": {"gpus": [0]}, "cpu": {"cpus": "0-1"}}}}
USERS = [{"name": "ann", "uid": 1000, "groups": ["gpu"]}, {"name": "ben", "uid": 1001, "groups": []}]
FACTS = {"cpus": {"threads": 2}, "init_system": "systemd", "nics": [{"name": "eth0"}],
         "mounts": [{"mountpoint": "/", "fstype": "ext4"}, {"mountpoint": "/home", "fstype": "xfs"}],
         "gpus": ["/dev/nvidia0"]}  # as resource_facts gives them
SETTINGS = {"interface": "eth0", "link_rate": "1gbit", "default_class": {"rate": "100mbit", "ceil": "1gbit"}}


def profiles(**patch):
    policy = dict(POLICY, **patch)
    return p.resolve(policy, USERS)


def test_a_host_that_fits_has_no_problems():
    assert pf.preflight(profiles(), FACTS, SETTINGS) == []
    # what each later task has to do, counted once here (the role's `when`s read these numbers)
    assert pf.check_host(profiles(), FACTS, SETTINGS) == {"checked": 2, "cgroup_targets": 2, "disk_filesystems": 1,
                                                          "tc_classes": 2, "tc_left": 0, "gpu_users": 1,
                                                          "unlisted": []}
    off = dict(SETTINGS, network=False, gpu=False)
    assert pf.check_host(profiles(), FACTS, off) == {"checked": 2, "cgroup_targets": 2, "disk_filesystems": 1,
                                                     "tc_classes": 0, "tc_left": 0, "gpu_users": 0,
                                                     "unlisted": []}


def test_the_hosts_users_without_a_profile_are_listed_once():
    """unlisted: what the user-.slice template masks (root, exempt users, uids outside the range), from the
    facts' users as resource_facts gives them with lists_as_json (a JSON string of rows)."""
    rows = [["root", 0, []], ["ann", 1000, ["gpu"]], ["ben", 1001, []], ["svc", 500, []], ["ext", 70000, []]]
    facts = dict(FACTS, users=json.dumps(rows))
    got = pf.check_host(p.resolve(dict(POLICY, max_uid=60000, exempt_users=["root", "ben"]), users_from_rows(rows)),
                        facts, SETTINGS)
    assert got["unlisted"] == ["root", "ben", "svc", "ext"] and got["checked"] == 1
    # the same rows packed, as the profiles role asks for them (compress_lists)
    from ansible_collections.fairshare.resources.plugins.module_utils.facts import encode_list
    packed = pf.check_host(p.resolve(dict(POLICY, max_uid=60000, exempt_users=["root", "ben"]), users_from_rows(rows)),
                           dict(FACTS, users=encode_list(rows, compress=True)), SETTINGS)
    assert packed == got


@pytest.mark.parametrize("facts,settings,fragment", [
    (dict(FACTS, cpus={"threads": 1}), SETTINGS, "user ann: cpu.cpus 0-1 names CPU 1; this host has CPUs 0-0"),
    (dict(FACTS, mounts=[{"mountpoint": "/", "fstype": "ext4"}, {"mountpoint": "/home", "fstype": "nfs4"}]), SETTINGS,
     "disk./home: on nfs4 (/home); disk quotas need ext4, XFS or btrfs here"),
    (dict(FACTS, gpus=["/dev/nvidia1"]), SETTINGS, "user ann: gpu.gpus: '0' is not a GPU of this host"),
    (FACTS, dict(SETTINGS, interface="eth7"), "profiles_interface: 'eth7' is not an interface of this host"),
    (FACTS, dict(SETTINGS, link_rate="15mbit"), "network: egress: 120mbit guaranteed"),
    # the role's check of where containers go (was a task of its own, profile_cgroup_parents)
    (dict(FACTS, init_system="process_api"), dict(SETTINGS, cgroup_parent="fairshare", docker_driver="systemd"),
     "cgroup_parent: driver: docker's systemd cgroup driver needs systemd"),
])
def test_what_the_host_cannot_take_is_named(facts, settings, fragment):
    problems = pf.preflight(profiles(), facts, settings)
    assert any(fragment in problem for problem in problems), problems
    with pytest.raises(InputError) as err:
        pf.check_host(profiles(), facts, settings)
    assert str(err.value).startswith("this host cannot take the policy; nothing was changed: ")


def test_policy_values_that_only_fail_together_are_found():
    # each block is valid alone; ben's memory.high from a tier is above the max a user override gives him
    bad = profiles(users={"ben": {"memory": {"max": "100M", "high": "200M"}}})
    assert any("user ben" in x and "memory_high" in x for x in pf.preflight(bad, FACTS, SETTINGS))
    ceil = profiles(users={"ben": {"net": {"egress": {"rate": "50mbit", "ceil": "20mbit"}}}})
    assert any("user ben: net.egress.ceil: 20mbit is below rate 50mbit" in x for x in pf.preflight(ceil, FACTS, SETTINGS))


def test_gpu_counts_the_host_cannot_hold_are_refused():
    four = dict(FACTS, gpus=["/dev/nvidia0", "/dev/nvidia1"])
    big = profiles(users={"ben": {"gpu": {"count": 3}}})
    assert any("gpu.count: ben asks for 3 GPUs; this host has 2" in x for x in pf.preflight(big, four, SETTINGS))
    assert pf.preflight(profiles(users={"ben": {"gpu": {"count": 1}}}), four, SETTINGS) == []


def test_parts_the_role_does_not_apply_are_not_checked():
    off = {"cgroups": False, "quotas": False, "network": False, "gpu": False}
    assert pf.preflight(profiles(), dict(FACTS, cpus={"threads": 1}, gpus=[], mounts=[]), dict(SETTINGS, interface="x", **off)) == []


def test_one_normalization_per_distinct_set_of_limits():
    """LimitsMemo gives what normalize_limits gives, normalizes each distinct set of values once, keeps
    True and 1 apart, and normalizes an entry with io_max (a list) and a refused one every time."""
    from ansible_collections.fairshare.resources.plugins.module_utils import cgroup_model as cm
    calls = []
    real = cm.normalize_limits

    def counting(entry, where, force=False):
        calls.append(where)
        return real(entry, where, force)
    memo = cm.LimitsMemo()
    cm.normalize_limits, saved = counting, cm.normalize_limits
    try:
        same = [memo({"user": "u%d" % i, "memory_max": "1G", "cpu_weight": 100}, "limits[%d]" % i) for i in range(50)]
        assert len(calls) == 1 and same[0] == real({"memory_max": "1G", "cpu_weight": 100}, "x")
        same[0]["memory_max"] = 1  # each caller its own dict
        assert same[1]["memory_max"] == 1 << 30
        memo({"cpu_weight": 1}, "a")
        memo({"cpu_weight": 1}, "b")
        with pytest.raises(InputError, match=r"limits\[7\]\.cpu_weight"):
            memo({"cpu_weight": True}, "limits[7]")  # not the cached 1: refused as a bool
        memo({"io_max": [{"device": "8:0", "rbps": "1M"}]}, "c")
        memo({"io_max": [{"device": "8:0", "rbps": "1M"}]}, "d")
        with pytest.raises(InputError, match=r"limits\[9\]\.memory_max"):
            memo({"memory_max": "lots"}, "limits[9]")
        with pytest.raises(InputError, match=r"limits\[10\]\.memory_max"):
            memo({"memory_max": "lots"}, "limits[10]")
    finally:
        cm.normalize_limits = saved
    assert calls == ["limits[0]", "a", "limits[7]", "c", "d", "limits[9]", "limits[10]"]

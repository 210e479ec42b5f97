import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.fairshare.resources.plugins.module_utils import policy as p

POLICY = {
    "exempt_users": ["root"],
    "min_uid": 1000,
    "defaults": {"cpu": {"weight": 100, "max": "200%"}, "memory": {"max": "8G", "high": "90%"},
                 "pids": {"max": 4096}, "disk": {"/home": {"block_soft": "20G", "block_hard": "25G"}},
                 "net": {"egress": {"rate": "50mbit", "ceil": "500mbit"}}},
    "tiers": {
        "student": {"match": {"groups": ["students"]}, "cpu": {"max": "3200%"}, "memory": {"max": "32G"},
                    "gpu": {"count": 1}},
        "researcher": {"match": {"groups": ["researchers"]}, "memory": {"max": "64G"}, "gpu": {"count": 2, "mig": 4}},
        "admin": {"match": {"groups": ["sudo", "wheel"]}, "unlimited": True},
    },
    "rules": [{"tier": "researcher", "when": {"all": [{"group": "staff"}, {"not": {"uid_range": [70000, 75000]}}]}}],
    "users": {"alice": {"tier": "researcher", "memory": {"max": "128G"}}},
}
USERS = [
    {"name": "root", "uid": 0, "groups": ["root"]},
    {"name": "daemon", "uid": 1, "groups": []},
    {"name": "alice", "uid": 1000, "groups": ["students"]},
    {"name": "sam", "uid": 1001, "groups": ["students"]},
    {"name": "stan", "uid": 1002, "groups": ["staff", "students"]},
    {"name": "temp", "uid": 70001, "groups": ["staff", "students"]},
    {"name": "ada", "uid": 1003, "groups": ["sudo"]},
    {"name": "nobodyelse", "uid": 1004, "groups": []},
    {"name": "nobody", "uid": 65534, "groups": ["nogroup"]},
]


def test_resolution_precedence_and_sources():
    prof = p.resolve(POLICY, USERS)
    # root exempt, daemon below min_uid, nobody in reserved_uids
    assert set(prof) == {"alice", "sam", "stan", "temp", "ada", "nobodyelse"}
    assert prof["alice"]["tier"] == "researcher" and prof["alice"]["tier_from"] == "users.alice.tier"
    # the policy's text, where it came from, and the number the one parser makes of it (the host tools show that)
    assert prof["alice"]["values"]["memory.max"] == {"value": "128G", "from": "users.alice.memory.max",
                                                     "canonical": 128 << 30}
    assert prof["alice"]["values"]["gpu.mig"]["from"] == "tiers.researcher.gpu.mig"
    assert prof["alice"]["values"]["cpu.max"] == {"value": "200%", "from": "defaults.cpu.max", "canonical": 2.0}
    assert prof["sam"]["tier"] == "student" and prof["sam"]["values"]["cpu.max"]["value"] == "3200%"
    assert prof["stan"]["tier"] == "researcher" and prof["stan"]["tier_from"] == "rules[0]"
    assert prof["temp"]["tier"] == "student"  # uid in the excluded range: the rule does not match
    assert prof["ada"]["unlimited"] and prof["ada"]["values"] == {}
    assert prof["nobodyelse"]["tier"] is None and prof["nobodyelse"]["values"]["memory.max"]["value"] == "8G"
    assert prof["sam"]["values"]["disk./home"]["value"]["block_hard"] == "25G"


def test_exempt_user_named_in_users_is_limited():
    pol = dict(POLICY, users={"root": {"memory": {"max": "4G"}}})
    assert p.resolve(pol, USERS)["root"]["values"]["memory.max"]["from"] == "users.root.memory.max"


@pytest.mark.parametrize("patch,message", [
    ({"tiers": {"student": {"memory": {"max": "32 GB"}}}},
     "tiers.student.memory.max: '32 GB' is not a size; write it without a space, like 32G"),
    ({"defaults": {"cpu": {"max": "lots"}}}, "defaults.cpu.max: 'lots' is not a CPU amount"),
    ({"defaults": {"memroy": {"max": "1G"}}}, "defaults.memroy: unknown section"),
    ({"defaults": {"memory": {"maxx": "1G"}}}, "defaults.memory.maxx: unknown key"),
    ({"users": {"bob": {"tier": "faculty"}}}, "users.bob.tier: 'faculty' is not a tier"),
    ({"rules": [{"tier": "student", "when": {"grop": "x"}}]}, "rules[0].when: 'grop' is not a condition"),
    ({"defaults": {"net": {"egress": {"rate": "10 mbps"}}}}, "defaults.net.egress.rate: '10 mbps' is not a rate"),
    ({"defaults": {"disk": {"/home": {"block_hard": "x"}}}}, "defaults.disk./home.block_hard: 'x' is not a size"),
    ({"polices": {}}, "polices: unknown key"),
])
def test_errors_name_the_exact_path(patch, message):
    pol = dict(POLICY)
    pol.update(patch)
    with pytest.raises(p.InputError) as err:  # PolicyError is an InputError
        p.resolve(pol, USERS)
    assert message in str(err.value)


LEVEL = st.one_of(st.none(), st.sampled_from(["1G", "2G", "3G"]))


@settings(max_examples=200, deadline=None)
@given(default=LEVEL, tier=LEVEL, override=LEVEL, in_group=st.booleans(), rule_hit=st.booleans(),
       named_tier=st.booleans())
def test_precedence_property(default, tier, override, in_group, rule_hit, named_tier):
    """users.<name> > tier > defaults for values; users.tier > rules > tier match for the tier."""
    pol = {"defaults": {"memory": {"max": default}} if default else {},
           "tiers": {"t1": {"match": {"groups": ["g1"]}}, "t2": {}},
           "rules": [{"tier": "t2", "when": {"user": "u"}}] if rule_hit else [],
           "users": {}}
    if tier:
        pol["tiers"]["t1"]["memory"] = {"max": tier}
        pol["tiers"]["t2"]["memory"] = {"max": tier}
    over = {}
    if override:
        over["memory"] = {"max": override}
    if named_tier:
        over["tier"] = "t1"
    if over:
        pol["users"]["u"] = over
    user = {"name": "u", "uid": 5000, "groups": ["g1"] if in_group else []}
    prof = p.resolve(pol, [user])["u"]
    want_tier = "t1" if named_tier else ("t2" if rule_hit else ("t1" if in_group else None))
    assert prof["tier"] == want_tier
    want = override or (tier if want_tier else None) or default
    got = prof["values"].get("memory.max", {}).get("value")
    assert got == want


def test_admission_refuses_overcommit_with_numbers():
    pol = {"defaults": {"memory": {"max": "8G", "min": "4G"}, "cpu": {"max": "200%"}, "gpu": {"count": 1}}}
    users = [{"name": "u%d" % i, "uid": 2000 + i, "groups": []} for i in range(12)]
    prof = p.resolve(pol, users)
    with pytest.raises(p.PolicyError) as err:
        p.admission(prof, {"cpus": 8, "memory_bytes": 32 << 30, "gpus": 16})
    assert str(err.value) == "memory: 48G guaranteed (12 users' memory.min/low) > 32G capacity x 1.0 oversubscription"
    with pytest.raises(p.PolicyError) as err:
        p.admission(prof, {"cpus": 8, "memory_bytes": 64 << 30, "gpus": 4}, {"gpu": 2.0})
    assert str(err.value) == "gpu: 12 GPUs guaranteed (12 users' gpu.count) > 4 GPUs x 2.0 oversubscription"
    report = p.admission(prof, {"cpus": 8, "memory_bytes": 64 << 30, "gpus": 16})
    assert report["ceiling_ratio"] == {"cpu": 3.0, "memory": 1.5}
    assert report["guaranteed"] == {"memory_bytes": 48 << 30, "gpus": 12}


WORKLOADS = {"defaults": {"memory": {"max": "8G"},
                          "workloads": {"build": {"cpu": {"max": "100%"}, "memory": {"max": "2G", "high": "90%"}}}},
             "users": {"sam": {"workloads": {"build": {"memory": {"max": "4G"}}, "ci": {"pids": {"max": 256}}}}}}
TWO = [{"name": "alice", "uid": 1000, "groups": []}, {"name": "sam", "uid": 1001, "groups": []}]


def test_workloads_are_children_of_the_users_cgroup():
    prof = p.resolve(WORKLOADS, TWO)
    assert prof["sam"]["values"]["workloads.build"]["from"] == "users.sam.workloads.build"
    systemd = p.to_cgroup_limits(prof, "systemd")
    assert systemd == [
        {"user": "alice", "memory_max": "8G"},
        {"slice": "user-1000-build.slice", "cpu_max": "100%", "memory_max": "2G", "memory_high": "90%"},
        {"user": "sam", "memory_max": "8G"},
        {"slice": "user-1001-build.slice", "memory_max": "4G"},  # a workload's block is replaced whole
        {"slice": "user-1001-ci.slice", "pids_max": 256},
    ]
    plain = p.to_cgroup_limits(prof, "sysvinit")
    assert [e.get("path") for e in plain if "user" not in e] == ["user-1000/build", "user-1001/build", "user-1001/ci"]


def test_cgroup_parent_follows_the_docker_driver():
    prof = p.resolve(WORKLOADS, TWO)
    assert p.cgroup_parents(prof, "systemd", "systemd")["sam"] == {
        "": "user-1001.slice", "build": "user-1001-build.slice", "ci": "user-1001-ci.slice"}
    assert p.cgroup_parents(prof, "systemd", "cgroupfs")["alice"] == {
        "": "/user.slice/user-1000.slice", "build": "/user.slice/user-1000.slice/user-1000-build.slice"}
    assert p.cgroup_parents(prof, "openrc", None, "fairshare")["alice"] == {
        "": "/fairshare/user-1000", "build": "/fairshare/user-1000/build"}
    with pytest.raises(p.PolicyError) as err:
        p.cgroup_parents(prof, "openrc", "systemd")
    assert "native.cgroupdriver=cgroupfs" in str(err.value)
    with pytest.raises(p.PolicyError):
        p.cgroup_parents(prof, "systemd", "lxc")


@pytest.mark.parametrize("block,message", [
    ({"build-x": {"cpu": {"max": "1"}}}, "defaults.workloads.build-x: 'build-x' is not a workload name"),
    ({"build": {"net": {"egress": {}}}}, "defaults.workloads.build.net: not a workload section"),
    ({"build": {"memory": {"max": "lots"}}}, "defaults.workloads.build.memory.max: 'lots' is not a size"),
    ({"build": {}}, "defaults.workloads.build: expected a mapping of cpu, memory, pids, io"),
])
def test_workload_errors_name_the_path(block, message):
    with pytest.raises(p.InputError) as err:
        p.resolve({"defaults": {"workloads": block}}, TWO)
    assert message in str(err.value)


def test_plans_scale_the_users_own_values_and_base_restores_them():
    from ansible_collections.fairshare.resources.plugins.module_utils.plan_model import plan_units
    pol = {"defaults": {"cpu": {"max": "25%"}, "memory": {"max": "64M", "high": "90%"}, "pids": {"max": "max"}},
           "users": {"sam": {"cpu": {"max": "max"}}},
           "plans": {"night": {"schedule": "Mon..Fri 20:00", "until": "07:00",
                               "scale": {"cpu.max": 2.0, "memory.max": 1.5, "pids.max": 2}}}}
    prof = p.resolve(pol, TWO)
    out = plan_units(prof, pol["plans"], "v2")
    assert out["plans"]["night"]["units"]["user-1000.slice"] == [
        "CPUQuota=50%", "MemoryHigh=%d" % (int(96 * 0.9 * (1 << 20)) // 4096 * 4096), "MemoryMax=%d" % (96 << 20),
        "TasksMax=infinity"]
    assert out["base"]["user-1000.slice"] == [
        "CPUQuota=25%", "MemoryHigh=%d" % (int(64 * 0.9 * (1 << 20)) // 4096 * 4096), "MemoryMax=%d" % (64 << 20),
        "TasksMax=infinity"]
    assert out["plans"]["night"]["units"]["user-1001.slice"][0] == "CPUQuota="  # max stays max
    assert out["timers"] == [
        {"name": "fairshare-plan-night.timer", "when": "Mon..Fri 20:00", "plan": "night", "what": "start"},
        {"name": "fairshare-plan-night-end.timer", "when": "*-*-* 07:00:00", "plan": "base", "what": "end"}]
    v1 = plan_units(prof, pol["plans"], "v1")["plans"]["night"]["units"]["user-1000.slice"]
    assert "MemoryLimit=%d" % (96 << 20) in v1


@pytest.mark.parametrize("plan,message", [
    ({"schedule": "Mon 20:00", "until": "7am", "scale": {"cpu.max": 2}}, "plans.night.until: '7am' is not a time of day"),
    ({"schedule": "", "until": "07:00", "scale": {"cpu.max": 2}}, "plans.night.schedule: '' is not a systemd calendar"),
    ({"schedule": "Mon 20:00", "until": "07:00", "scale": {"net.egress": 2}}, "plans.night.scale.net.egress: cannot be scaled"),
    ({"schedule": "Mon 20:00", "until": "07:00", "scale": {"cpu.max": 0}}, "plans.night.scale.cpu.max: 0 is not a factor"),
    ({"schedule": "Mon 20:00", "until": "07:00", "scale": {"cpu.max": 2}, "at": 1}, "plans.night.at: unknown key"),
])
def test_plan_errors_name_the_path(plan, message):
    with pytest.raises(p.PolicyError) as err:
        p.resolve({"plans": {"night": plan}}, TWO)
    assert message in str(err.value)


def test_gpu_users_by_list_count_and_unlimited():
    prof = p.resolve(POLICY, USERS)
    users = dict((u["name"], u) for u in p.to_gpu_users(prof))
    # counts 1 and 2: gpu_access picks that many GPUs of the host (they gave every GPU before)
    assert users["sam"] == {"name": "sam", "count": 1} and users["alice"] == {"name": "alice", "count": 2, "mig": 4}
    assert users["ada"]["gpus"] == "all"  # unlimited (admin tier)
    assert "nobodyelse" not in users  # no gpu value at all: gpu_access leaves the user alone
    pol = dict(POLICY, defaults=dict(POLICY["defaults"], gpu={"count": 0}),
               users={"nobodyelse": {"gpu": {"gpus": [1]}}})
    users = dict((u["name"], u) for u in p.to_gpu_users(p.resolve(pol, USERS)))
    assert users["nobodyelse"]["gpus"] == [1] and users["temp"] == {"name": "temp", "count": 1}
    assert users["ada"]["gpus"] == "all"


def test_unlimited_users_have_their_limits_lifted():
    limits = p.to_cgroup_limits(p.resolve(POLICY, USERS))
    assert {"user": "ada", "state": "absent"} in limits  # admin tier: unlimited
    assert [e for e in limits if e.get("user") == "sam"][0]["memory_max"] == "32G"
    pol = dict(POLICY, defaults=dict(POLICY["defaults"], disk={"/home": {"block_hard": "10G"}}))
    quotas = p.to_disk_quotas(p.resolve(pol, USERS))
    assert [q["path"] for q in quotas] == ["/home"]
    assert {"name": "ada", "state": "absent"} in quotas[0]["quotas"]  # an earlier quota is lifted, files stay
    assert [q for q in quotas[0]["quotas"] if q["name"] == "sam"][0]["block_hard"] == "10G"


def test_default_uid_range_covers_directory_users_not_reserved_ones():
    users = [{"name": "aduser", "uid": 1500001, "groups": ["domain users"]},
             {"name": "ldapuser", "uid": 200000, "groups": ["students"]},
             {"name": "dynamic", "uid": 61200, "groups": []},  # systemd DynamicUser=
             {"name": "nobody", "uid": 65534, "groups": ["nogroup"]},
             {"name": "minus2", "uid": 4294967294, "groups": []},
             {"name": "local", "uid": 1000, "groups": []}]
    policy = {"defaults": {"memory": {"max": "4G"}}}
    assert set(p.resolve(policy, users)) == {"aduser", "ldapuser", "local"}
    everyone = {"aduser", "ldapuser", "local", "dynamic", "nobody"}
    assert set(p.resolve(dict(policy, reserved_uids=[]), users)) == everyone
    assert set(p.resolve(dict(policy, max_uid=65533), users)) == {"local"}
    assert set(p.resolve(dict(policy, users={"nobody": {"memory": {"max": "1G"}}}), users)) == {
        "aduser", "ldapuser", "local", "nobody"}  # named users are covered whatever their uid


@pytest.mark.parametrize("extra,message", [
    ({"min_uid": "x"}, "min_uid: 'x' is not a uid; allowed: a whole number from 0 to 4294967293"),
    ({"max_uid": 4294967295}, "max_uid: 4294967295 is not a uid"),
    ({"min_uid": 5000, "max_uid": 4000}, "max_uid: 4000 is below min_uid 5000"),
    ({"reserved_uids": [[1, 2, 3]]}, "reserved_uids[0]: [1, 2, 3] is not a [first, last] uid range"),
    ({"reserved_uids": [[10, 5]]}, "reserved_uids[0]: 10 is above 5"),
    ({"reserved_uids": "60000-65535"}, "reserved_uids: '60000-65535' is not a list"),
])
def test_bad_uid_ranges_are_named(extra, message):
    with pytest.raises(p.PolicyError) as err:
        p.validate(dict({"defaults": {}}, **extra))
    assert message in str(err.value)


def test_user_defaults_are_the_defaults_cgroup_values_only():
    from ansible_collections.fairshare.resources.plugins.module_utils.policy import user_defaults
    policy = {"defaults": {"cpu": {"max": "200%", "weight": 50}, "memory": {"max": "4G", "high": "90%"},
                           "pids": {"max": 4096}, "net": {"egress": {"rate": "10mbit"}},
                           "workloads": {"jobs": {"memory": {"max": "1G"}}}},
              "tiers": {"big": {"memory": {"max": "64G"}}}}
    assert user_defaults(policy) == {"cpu_max": "200%", "cpu_weight": 50, "memory_max": "4G", "memory_high": "90%",
                                     "pids_max": 4096}
    assert user_defaults({"tiers": {"x": {"cpu": {"max": "1"}}}}) == {}


@pytest.mark.parametrize("patch,message", [
    ({"tiers": {"admin": {"unlimited": "no"}}}, "tiers.admin.unlimited: 'no' is not true or false"),
    ({"defaults": {"unlimited": True}}, "defaults.unlimited: unknown section"),
    ({"tiers": {"student": {"match": {"groups": "students"}}}}, "tiers.student.match.groups: 'students' is not a list"),
    ({"tiers": {"student": {"match": {"group": ["students"]}}}}, "tiers.student.match.group: unknown key; allowed: groups, users"),
    ({"tiers": {"student": {"tier": "admin"}}}, "tiers.student.tier: unknown section"),
    ({"users": {"alice": {"match": {"groups": ["x"]}}}}, "users.alice.match: unknown section"),
    ({"users": {"alice": ["researcher"]}}, "users.alice: ['researcher'] is not a mapping"),
    ({"tiers": ["student"]}, "tiers: ['student'] is not a mapping"),
    ({"rules": {"tier": "student"}}, "rules: {'tier': 'student'} is not a list"),
    ({"rules": [{"tier": "student", "if": {"group": "x"}}]}, "rules[0].if: unknown key; allowed: tier, when"),
    ({"rules": [{"tier": "student", "when": {"group": ["x"]}}]}, "rules[0].when.group: ['x'] is not a group name"),
    ({"rules": [{"tier": "student", "when": {"any": {"group": "x"}}}]}, "rules[0].when.any: {'group': 'x'} is not a list"),
    ({"rules": [{"tier": "student", "when": {"uid_range": ["a", 5]}}]}, "rules[0].when.uid_range[0]: 'a' is not a uid"),
    ({"exempt_users": "root"}, "exempt_users: 'root' is not a list of names"),
    ({"defaults": {"cpu": {"cpus": "0-x"}}}, "defaults.cpu.cpus"),
    ({"defaults": {"gpu": {"gpus": "some"}}}, "defaults.gpu.gpus: 'some' is not a GPU list"),
    ({"defaults": "8G"}, "defaults: '8G' is not a mapping"),
])
def test_the_schema_is_strict_and_names_the_path(patch, message):
    """Each of these was accepted before (or failed with a bare Python error), and most then
    matched nobody or lifted limits: a typo must fail, naming where it is."""
    policy = dict(POLICY)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(policy.get(key), dict) and key != "users":
            merged = dict(policy[key])
            for k, v in value.items():
                merged[k] = dict(merged.get(k) or {}, **v) if isinstance(v, dict) and isinstance(merged.get(k), dict) \
                    and key == "tiers" else v
            policy[key] = merged
        else:
            policy[key] = value
    with pytest.raises(p.InputError) as err:
        p.validate(policy)
    assert message in str(err.value)


def test_totals_for_all_users_and_the_reserve_become_one_target():
    cap = {"cpus": 4, "memory_bytes": 4 << 30}
    pol = {"aggregate": {"all": {"memory": {"max": "300M"}, "pids": {"max": 2000}}}}
    assert p.aggregate_limits(pol, "systemd", cap) == [{"slice": "user.slice", "memory_max": "300M", "pids_max": 2000}]
    assert p.aggregate_limits(pol, "process_api", cap)[0]["path"] == "."  # cgroupfs: the managed parent
    # the reserve: the users get the capacity less it; with aggregate.all the smaller value wins
    both = p.aggregate_limits(dict(pol, reserve={"cpu": 1, "memory": "1G"}), "systemd", cap)[0]
    assert both["memory_max"] == str(300 << 20) and both["cpu_max"] == "300%"
    high = p.aggregate_limits({"reserve": {"memory": "1G", "memory_limit": "high"}}, "systemd", cap)[0]
    assert high == {"slice": "user.slice", "memory_high": str(3 << 30)}
    assert p.aggregate_limits({}, "systemd", cap) == []
    with pytest.raises(p.PolicyError) as err:
        p.aggregate_limits({"reserve": {"memory": "8G"}}, "systemd", cap)
    assert "reserve.memory: 8G is all of this host's 4G" in str(err.value)


def test_a_tiers_total_is_a_level_its_users_go_under_on_hosts_without_systemd():
    """aggregate.<tier>: on cgroupfs hosts the level tier-<name> carries the total and the tier's users (and their
    workloads, and their containers' cgroup_parent) go under it; unlimited users and other tiers stay where they were.
    On systemd hosts it is refused with the reason, before anything (the role's first filter)."""
    pol = dict(POLICY, aggregate={"student": {"memory": {"max": "300M"}, "pids": {"max": 500}}},
               tiers=dict(POLICY["tiers"], student=dict(POLICY["tiers"]["student"], workloads={"build": {"cpu": {"max": "50%"}}})))
    prof = p.resolve(pol, USERS)
    assert prof["sam"]["tier_total"] is True and "tier_total" not in prof["alice"] and "tier_total" not in prof["ada"]
    totals = p.aggregate_limits(pol, "process_api")
    assert totals == [{"path": "tier-student", "memory_max": "300M", "pids_max": 500}]
    limits = dict(((e.get("user") or e.get("path")), e) for e in p.to_cgroup_limits(prof, "process_api"))
    assert limits["sam"]["under"] == "tier-student" and "under" not in limits["alice"]
    assert limits["tier-student/user-1001/build"] == {"path": "tier-student/user-1001/build", "cpu_max": "50%"}
    assert limits["ada"] == {"user": "ada", "state": "absent"}
    parents = p.cgroup_parents(prof, "process_api")
    assert parents["sam"] == {"": "/fairshare/tier-student/user-1001", "build": "/fairshare/tier-student/user-1001/build"}
    assert parents["alice"][""] == "/fairshare/user-1000"
    # systemd: the users stay where logind puts them; without systemd: workloads the filter refuses it with the reason
    assert all("under" not in e for e in p.to_cgroup_limits(prof, "systemd"))
    with pytest.raises(p.PolicyError) as err:
        p.aggregate_limits(pol, "systemd")
    assert "aggregate.student: on systemd hosts a tier's total cannot hold the tier's logins" in str(err.value)
    assert "aggregate.student.systemd: workloads" in str(err.value) and "aggregate.all" in str(err.value)
    # ... and with it the total is a slice in user.slice that the tier's workloads go in (not its logins)
    pol["aggregate"]["student"]["systemd"] = "workloads"
    prof = p.resolve(pol, USERS)
    assert p.aggregate_limits(pol, "systemd") == [{"slice": "user-tier_student.slice", "memory_max": "300M", "pids_max": 500}]
    assert p.aggregate_limits(pol, "process_api")[0]["path"] == "tier-student"  # the same policy elsewhere
    slices = dict(((e.get("user") or e.get("slice")), e) for e in p.to_cgroup_limits(prof, "systemd"))
    assert slices["user-tier_student-u1001_build.slice"]["cpu_max"] == "50%" and "under" not in slices["sam"]
    sysparents = p.cgroup_parents(prof, "systemd", "cgroupfs")
    assert sysparents["sam"] == {"": "/user.slice/user-1001.slice",
                                 "build": "/user.slice/user-tier_student.slice/user-tier_student-u1001_build.slice"}
    assert p.cgroup_parents(prof, "systemd")["sam"]["build"] == "user-tier_student-u1001_build.slice"
    # a workload whose slice moved (the tier's total came): its old slice goes; a removed user's go where they were
    moved = [["sam", 1001, ["build"], []], ["gone", 1009, ["build"], ["total:student"]]]
    # both keep their limits for what still runs there (systemd moves no running unit): the moved workload, and
    # the removed user's tier workload, which is outside their own slice
    assert p.stale_targets(moved, prof, "systemd") == [
        {"slice": "user-1001-build.slice", "state": "absent", "keep_running": True},
        {"slice": "user-tier_student-u1009_build.slice", "state": "absent", "keep_running": True},
        {"slice": "user-1009.slice", "state": "absent"}]
    assert p.stale_targets(moved[:1], prof, "process_api") == []  # cgroup_limit moves a user's cgroup whole
    # a user the policy no longer covers is taken back where they were: under the level their row records
    rows = [["sam", 1001, ["build"], ["total:student"]], [None, None, ["tier-student"]]]
    assert p.stale_targets(rows, {}, "process_api") == [
        {"path": "tier-student/user-1001/build", "state": "absent"}, {"path": "tier-student/user-1001", "state": "absent"},
        {"path": "tier-student", "state": "absent"}]
    assert "total:student" in facts_parts(prof["sam"]) and not any(x.startswith("total:") for x in facts_parts(prof["alice"]))


def facts_parts(prof):
    from ansible_collections.fairshare.resources.plugins.module_utils.facts import profile_parts
    return profile_parts(prof)


@pytest.mark.parametrize("patch,fragment", [
    ({"aggregate": {"nope": {"memory": {"max": "1G"}}}}, "aggregate.nope: not a tier (or all)"),
    ({"aggregate": {"student": {"systemd": "logins"}}}, "aggregate.student.systemd: 'logins' is not allowed"),
    ({"aggregate": {"all": {"systemd": "workloads"}}}, "aggregate.all.systemd: only a tier's total takes it"),
    ({"tiers": dict(POLICY["tiers"], **{"a-b": {}}), "aggregate": {"a-b": {"systemd": "workloads", "memory": {"max": "1G"}}}},
     "aggregate.a-b: on systemd hosts the total is the slice user-tier_a-b.slice"),
    ({"tiers": dict(POLICY["tiers"], **{"a b": {}}), "aggregate": {"a b": {"memory": {"max": "1G"}}}},
     "aggregate.a b: a tier with a total becomes"),
    ({"aggregate": {"all": {"gpu": {"count": 1}}}}, "aggregate.all.gpu: not a total that a cgroup"),
    ({"aggregate": {"all": {"disk": {"/home": {"block_hard": "1G"}}}}}, "aggregate.all.disk: not a total that a cgroup"),
    ({"aggregate": {"all": {"cpu": {"cpus": "0-1"}}}}, "aggregate.all.cpu.cpus: not a total"),
    ({"reserve": {"cpus": 2}}, "reserve.cpus: unknown key"),
    ({"reserve": {"memory_limit": "soft"}}, "reserve.memory_limit: 'soft' is not allowed"),
    ({"reserve": {"memory": "lots"}}, "reserve.memory"),
])
def test_totals_that_would_not_hold_are_refused(patch, fragment):
    with pytest.raises(p.InputError) as err:
        p.validate(dict(POLICY, **patch))
    assert fragment in str(err.value)


def test_admission_counts_the_reserve():
    pol = {"defaults": {"memory": {"max": "8G", "min": "1G"}}}
    prof = p.resolve(pol, [{"name": "u%d" % i, "uid": 1000 + i, "groups": []} for i in range(3)])
    assert p.admission(prof, {"cpus": 4, "memory_bytes": 4 << 30})["guaranteed"]["memory_bytes"] == 3 << 30
    with pytest.raises(p.PolicyError) as err:
        p.admission(prof, {"cpus": 4, "memory_bytes": 4 << 30}, None, {"memory": "2G"})
    assert "3G guaranteed (3 users' memory.min/low) > 2G capacity (less the reserve 2G)" in str(err.value)


def test_what_users_who_left_the_policy_have_is_taken_back():
    from ansible_collections.fairshare.resources.plugins.module_utils.facts import profiled_users
    import json
    last = {"profiles": {"ann": {"uid": 3001, "values": {"workloads.jobs": {"value": {}}}},
                         "ben": {"uid": 3002, "values": {}}, "old": {"uid": 3003, "values": {}}},
            "aggregate": [{"slice": "user.slice", "memory_max": "300M"}]}
    profiled = profiled_users(json.dumps(last))
    assert profiled == [["ann", 3001, ["jobs"], ["cgroup"]], ["ben", 3002, []], ["old", 3003, []], [None, None, ["user.slice"]]]
    now = {"ben": {"uid": 3002}, "new": {"uid": 3003}}  # ann left; old's uid went to new
    assert p.stale_targets(profiled, now, "systemd") == [
        {"slice": "user-3001-jobs.slice", "state": "absent"}, {"slice": "user-3001.slice", "state": "absent"},
        {"slice": "user.slice", "state": "absent"}]
    # the template's mask resets ann's own slice already; cgroupfs hosts name paths under the parent
    assert {"slice": "user-3001.slice", "state": "absent"} not in p.stale_targets(profiled, now, "systemd", ["ann"])
    assert p.stale_targets(profiled[:1], now, "process_api") == [{"path": "user-3001/jobs", "state": "absent"},
                                                                 {"path": "user-3001", "state": "absent"}]
    assert profiled_users("not json") == [] and profiled_users(None) == []
    kept = p.stale_targets(profiled[3:], now, "systemd", [], [{"slice": "user.slice", "memory_max": "200M"}])
    assert kept == []  # this run sets its own total


def test_what_a_covered_user_no_longer_gets_is_taken_back():
    """A user the policy still covers: a workload their tier no longer has goes, and so does their own cgroup
    when the policy gives them no cgroup limit at all now (it kept the last run's limits before). A user with
    limits keeps their cgroup; a row of an older run (no 'cgroup' part) takes nothing back."""
    from ansible_collections.fairshare.resources.plugins.module_utils.facts import profiled_users
    import json
    mem = {"memory.max": {"value": "1G"}}
    last = {"profiles": {"ann": {"uid": 3001, "values": dict(mem, **{"workloads.jobs": {"value": {}}})},
                         "ben": {"uid": 3002, "values": mem}, "cat": {"uid": 3003, "values": mem}}}
    profiled = profiled_users(json.dumps(last))
    now = {"ann": {"uid": 3001, "values": mem}, "ben": {"uid": 3002, "values": {"disk./home": {"value": {}}}},
           "cat": {"uid": 3003, "values": mem}}
    assert p.stale_targets(profiled, now, "systemd") == [
        {"slice": "user-3001-jobs.slice", "state": "absent"}, {"slice": "user-3002.slice", "state": "absent"}]
    assert p.stale_targets(profiled, now, "process_api") == [
        {"path": "user-3001/jobs", "state": "absent"}, {"path": "user-3002", "state": "absent"}]
    assert p.stale_targets(profiled, now, "systemd", ["ben"]) == [{"slice": "user-3001-jobs.slice", "state": "absent"}]
    assert p.stale_targets([row[:3] for row in profiled], now, "systemd") == [{"slice": "user-3001-jobs.slice", "state": "absent"}]
    assert p.stale_targets(profiled, last["profiles"], "systemd") == []


def test_quotas_gpus_and_classes_the_last_run_gave_are_taken_back_by_uid():
    """Drift: the profiled rows say which filesystems, GPUs and classes the last run gave each user; a user who left
    the policy (or whose tier lost the part) gets state: absent by uid on each, and the others are left alone."""
    from ansible_collections.fairshare.resources.plugins.module_utils.facts import profiled_users
    import json
    disk = {"disk./home": {"value": {"block_hard": "1G"}}, "disk./scratch": {"value": {"block_hard": "5G"}}}
    last = {"profiles": {"ann": {"uid": 3001, "values": dict(disk, **{"gpu.gpus": {"value": [0]},
                                                                      "net.egress": {"value": {"rate": "1mbit"}}})},
                         "ben": {"uid": 3002, "values": dict(disk, **{"gpu.count": {"value": 1}})},
                         "cat": {"uid": 3003, "unlimited": True, "values": {}},
                         "dan": {"uid": 3004, "values": {"memory.max": {"value": "1G"}}}}}
    profiled = profiled_users(json.dumps(last))
    assert profiled == [["ann", 3001, [], ["disk:/home", "disk:/scratch", "gpu", "net"]],
                        ["ben", 3002, [], ["disk:/home", "disk:/scratch", "gpu"]], ["cat", 3003, [], ["gpu"]],
                        ["dan", 3004, [], ["cgroup"]]]
    # ann left; ben's tier now has /home only and no GPU; cat stays unlimited; dan never had any of it
    now = {"ben": {"uid": 3002, "values": {"disk./home": {"value": {"block_hard": "2G"}}}},
           "cat": {"uid": 3003, "unlimited": True, "values": {}}, "dan": {"uid": 3004, "values": {}}}
    assert p.to_disk_quotas(now, profiled) == [
        {"path": "/home", "quotas": [{"block_hard": "2G", "name": "ben"}, {"name": "cat", "state": "absent"},
                                     {"name": "3001", "state": "absent"}]},
        {"path": "/scratch", "quotas": [{"name": "3001", "state": "absent"}, {"name": "3002", "state": "absent"}]}]
    assert p.to_gpu_users(now, profiled) == [{"name": "cat", "gpus": "all"}, {"name": "3001", "state": "absent"},
                                             {"name": "3002", "state": "absent"}]
    assert p.left_behind(profiled, now, "net") == [("ann", 3001)]
    # without the last run's rows nothing is taken back; a uid that went to another listed name is theirs
    assert p.to_gpu_users(now) == [{"name": "cat", "gpus": "all"}]
    assert p.left_behind(profiled, {"eve": {"uid": 3001, "values": {}}}, "gpu") == [("ben", 3002), ("cat", 3003)]

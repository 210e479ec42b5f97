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
    "rules": [{"tier": "researcher", "when": {"all": [{"group": "staff"}, {"not": {"uid_range": [60000, 65000]}}]}}],
    "users": {"alice": {"tier": "researcher", "memory": {"max": "128G"}}},
}
USERS = [
    {"name": "root", "uid": 0, "groups": ["root"]},
    {"name": "daemon", "uid": 1, "groups": []},
    {"name": "alice", "uid": 1000, "groups": ["students"]},
    {"name": "sam", "uid": 1001, "groups": ["students"]},
    {"name": "stan", "uid": 1002, "groups": ["staff", "students"]},
    {"name": "temp", "uid": 60001, "groups": ["staff", "students"]},
    {"name": "ada", "uid": 1003, "groups": ["sudo"]},
    {"name": "nobodyelse", "uid": 1004, "groups": []},
    {"name": "nobody", "uid": 65534, "groups": ["nogroup"]},
]


def test_resolution_precedence_and_sources():
    prof = p.resolve(POLICY, USERS)
    # root exempt, daemon below min_uid, nobody above max_uid
    assert set(prof) == {"alice", "sam", "stan", "temp", "ada", "nobodyelse"}
    assert prof["alice"]["tier"] == "researcher" and prof["alice"]["tier_from"] == "users.alice.tier"
    assert prof["alice"]["values"]["memory.max"] == {"value": "128G", "from": "users.alice.memory.max"}
    assert prof["alice"]["values"]["gpu.mig"]["from"] == "tiers.researcher.gpu.mig"
    assert prof["alice"]["values"]["cpu.max"] == {"value": "200%", "from": "defaults.cpu.max"}
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
    with pytest.raises(p.UnitError) as err:  # PolicyError is a UnitError
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

"""The profile filters take profiles and facts lists as JSON strings and give as_json results
(what the profiles role carries between tasks at 10,000 users), the same as with dicts."""
import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fairshare.resources.plugins.filter.profile_cgroup_limits import FilterModule as Limits
from ansible_collections.fairshare.resources.plugins.filter.profile_stale_targets import FilterModule as Stale
from ansible_collections.fairshare.resources.plugins.filter.resolve_profiles import FilterModule as Resolve
from ansible_collections.fairshare.resources.plugins.module_utils.policy import pack_profiles, unpack_profiles
from ansible_collections.fairshare.resources.plugins.module_utils.profile_files import decode_data

POLICY = {"min_uid": 3000, "defaults": {"memory": {"max": "1G"}}, "users": {"ben": {"memory": {"max": "2G"}}}}
USERS = [{"name": "ann", "uid": 3001, "groups": []}, {"name": "ben", "uid": 3002, "groups": []}]


def test_json_in_and_out_give_the_same_as_dicts():
    resolve = Resolve().filters()["resolve_profiles"]
    limits = Limits().filters()["profile_cgroup_limits"]
    profiles = resolve(POLICY, USERS)
    rows = json.dumps([[u["name"], u["uid"], u["groups"]] for u in USERS])  # resource_facts' lists_as_json
    text = resolve(POLICY, rows, as_json=True)
    assert isinstance(text, str) and unpack_profiles(json.loads(text)) == profiles
    assert limits(text, "cgroupfs") == limits(profiles, "cgroupfs")
    assert json.loads(limits(text, "cgroupfs", as_json=True)) == limits(profiles, "cgroupfs")
    assert limits(text, "cgroupfs") == [{"user": "ann", "memory_max": "1G"}, {"user": "ben", "memory_max": "2G"}]
    stale = Stale().filters()["profile_stale_targets"]
    profiled = [["cid", 3003, []], ["ann", 3001, []]]
    assert stale(json.dumps(profiled), text, "cgroupfs") == stale(profiled, profiles, "cgroupfs")
    assert stale(json.dumps(profiled), text, "cgroupfs")  # cid left the policy: taken back


def test_users_of_one_profile_share_it_when_packed():
    profiles = {"u%d" % i: {"uid": 5000 + i, "tier": None, "tier_from": None, "unlimited": False,
                            "values": {"memory.max": {"value": "2G", "from": "defaults.memory.max"}}}
                for i in range(1000)}
    profiles["boss"] = dict(profiles["u0"], uid=4000, values={"memory.max": {"value": "8G", "from": "users.boss.memory.max"}})
    packed = pack_profiles(profiles)
    assert len(packed["shapes"]) == 2 and packed["users"]["u7"] == [5007, packed["users"]["u0"][1]]
    assert len(json.dumps(packed)) * 5 < len(json.dumps(profiles))
    back = unpack_profiles(json.loads(json.dumps(packed)))
    assert back == profiles
    assert back["u1"]["values"] is back["u2"]["values"]  # one shape, one dict: read, never changed
    assert unpack_profiles(profiles) is profiles  # a plain dict is left as it is


def test_a_broken_json_string_names_the_filter_and_the_argument():
    limits = Limits().filters()["profile_cgroup_limits"]
    with pytest.raises(AnsibleFilterError, match="fairshare_policy: argument 1 is neither"):
        limits("{not json", "cgroupfs")


def test_profile_host_decodes_its_per_user_parts():
    data = decode_data({"profiles": '{"ann": {"uid": 3001}}', "parent": "fairshare", "cgroup_parents": {"ann": {}}})
    assert data == {"profiles": {"ann": {"uid": 3001}}, "parent": "fairshare", "cgroup_parents": {"ann": {}}}
    profiles = {"ann": {"uid": 3001, "tier": None, "values": {}}, "ben": {"uid": 3002, "tier": None, "values": {}}}
    assert decode_data({"profiles": json.dumps(pack_profiles(profiles))})["profiles"] == profiles
    with pytest.raises(ValueError, match="data.profiles: a JSON string must hold an object"):
        decode_data({"profiles": "[1]"})
    with pytest.raises(ValueError, match="data.gpu_allocation: neither a dict nor a JSON object"):
        decode_data({"gpu_allocation": "{"})


def test_cgroup_limit_checks_limits_json_as_it_checks_limits():
    from ansible_collections.fairshare.resources.plugins.modules.cgroup_limit import decode_limits
    from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
    entries = decode_limits('[{"user": "ann", "cpu_weight": "200", "memory_max": "1G"}]')
    assert entries[0]["cpu_weight"] == 200 and entries[0]["pids_max"] is None  # converted and completed
    with pytest.raises(InputError, match="limits_json.bogus"):
        decode_limits('[{"user": "ann", "bogus": 1}]')
    with pytest.raises(InputError, match="limits_json: must be a JSON list of objects"):
        decode_limits('{"user": "ann"}')
    with pytest.raises(InputError, match="limits_json: not JSON"):
        decode_limits("[{")
    assert decode_limits(None) == []
    # ansible-core 2.18 hands the role's JSON string over as the list it reads as: taken the same way
    assert decode_limits([{"user": "ann", "cpu_weight": "200", "memory_max": "1G"}]) == entries
    with pytest.raises(InputError, match="limits_json.bogus"):
        decode_limits([{"user": "ann", "bogus": 1}])
    with pytest.raises(InputError, match="limits_json: not JSON"):
        decode_limits(42)
    # well-typed entries are completed without the validator, the rest through it, in their order
    mixed = decode_limits('[{"user": "ann", "memory_max": "1G"}, {"user": "ben", "io_max": [{"device": "8:0", "rbps": "1M"}]},'
                          ' {"user": "cid", "state": "absent"}]')
    assert [e["user"] for e in mixed] == ["ann", "ben", "cid"]
    assert mixed[0] == dict(mixed[2], user="ann", memory_max="1G", state=None)
    assert decode_limits('[{"user": "ann", "pids_max": 4096}]')[0]["pids_max"] == "4096"  # as AnsibleModule does
    assert mixed[1]["io_max"] == [{"device": "8:0", "rbps": "1M", "wbps": None, "riops": None, "wiops": None}]
    with pytest.raises(InputError, match="state"):
        decode_limits('[{"user": "ann", "state": "gone"}]')


def test_no_filter_changes_the_profiles_it_reads():
    """Users of one shape share its values (unpack_profiles, resolve): a filter that changed them would change
    every user of the tier. Every profile_* filter's code runs on unpacked profiles, which must stay as packed."""
    from ansible_collections.fairshare.resources.plugins.module_utils import policy as p
    from ansible_collections.fairshare.resources.plugins.module_utils.plan_model import plan_units
    from ansible_collections.fairshare.resources.plugins.module_utils.preflight import preflight
    pol = {"min_uid": 1000,
           "defaults": {"memory": {"max": "1G", "high": "90%"}, "cpu": {"max": "100%"}, "disk": {"/home": {"block_hard": "2G"}},
                        "net": {"egress": {"rate": "10mbit", "ceil": "100mbit"}}, "workloads": {"build": {"memory": {"max": "512M"}}}},
           "tiers": {"gpu": {"match": {"groups": ["gpu"]}, "gpu": {"gpus": [0, 1]}, "memory": {"low": "256M"}}},
           "users": {"boss": {"gpu": {"count": 1}}}}
    users = [{"name": "u%d" % i, "uid": 1000 + i, "groups": ["gpu"] if i % 2 else []} for i in range(20)]
    users.append({"name": "boss", "uid": 999 + 100, "groups": []})
    packed = json.dumps(pack_profiles(p.resolve(pol, users)), sort_keys=True)
    profiles = unpack_profiles(json.loads(packed))
    p.to_cgroup_limits(profiles, "systemd")
    p.to_cgroup_limits(profiles, "process_api")
    p.to_disk_quotas(profiles, [])
    p.to_tc_classes(profiles)
    p.to_gpu_users(profiles, [])
    p.cgroup_parents(profiles, "systemd", "cgroupfs")
    p.admission(profiles, {"cpus": 64, "memory_bytes": 1 << 40, "gpus": 4})
    preflight(profiles, {"cpus": {"threads": 64}, "init_system": "systemd", "gpus": ["/dev/nvidia0", "/dev/nvidia1"],
                         "mounts": [{"mountpoint": "/home", "fstype": "xfs"}], "nics": [{"name": "eth0"}]},
              {"interface": "eth0", "link_rate": "10gbit", "cgroup_parent": "fairshare"})
    plan_units(profiles, {"night": {"schedule": "*-*-* 20:00", "until": "06:00", "scale": {"memory.max": 2, "cpu.max": 2}}}, "v2")
    assert json.dumps(pack_profiles(profiles), sort_keys=True) == packed


def test_packed_lists_of_resource_facts_go_through_the_filters_and_fit_a_job_event():
    """compress_lists: the users and profiled facts packed (zlib + base64) give the filters what the plain JSON
    strings give. 10,000 users with names as unlike as random letters (the worst case for zlib; the benchmark's
    fsbench0..9999 pack far better) take under 500 kB together, in a result's JSON, where the plain strings take
    about 800 kB (over AWX's 700 kB, which empties the job event)."""
    import random
    import string
    from ansible_collections.fairshare.resources.plugins.module_utils.facts import decode_list, encode_list
    resolve = Resolve().filters()["resolve_profiles"]
    stale = Stale().filters()["profile_stale_targets"]
    rows = [[u["name"], u["uid"], u["groups"]] for u in USERS]
    packed = encode_list(rows, compress=True)
    assert packed.startswith("zlib:") and decode_list(packed) == rows == decode_list(encode_list(rows))
    assert resolve(POLICY, packed, as_json=True) == resolve(POLICY, json.dumps(rows), as_json=True)
    profiled = [["cid", 3003, []], ["ann", 3001, []]]
    assert stale(encode_list(profiled, True), resolve(POLICY, USERS), "cgroupfs") == \
        stale(profiled, resolve(POLICY, USERS), "cgroupfs") != []
    with pytest.raises(AnsibleFilterError, match="packed by resource_facts"):
        stale("zlib:not base64 !", resolve(POLICY, USERS), "cgroupfs")
    rnd = random.Random(1)
    groups = ["".join(rnd.choice(string.ascii_lowercase) for _letter in range(7)) for _group in range(50)]
    users, last = [], []
    for i in range(10000):
        name = "".join(rnd.choice(string.ascii_lowercase) for _letter in range(rnd.randint(5, 9)))
        uid = 100000 + rnd.randint(0, 899999)
        users.append([name, uid, [name] + rnd.sample(groups, rnd.randint(0, 3))])
        last.append([name, uid, []])
    plain = len(json.dumps({"users": encode_list(users), "profiled": encode_list(last)}))
    small = len(json.dumps({"users": encode_list(users, True), "profiled": encode_list(last, True)}))
    print("10,000 users, random names: plain %d bytes, packed %d bytes" % (plain, small))
    assert plain > 700000 and small < 500000

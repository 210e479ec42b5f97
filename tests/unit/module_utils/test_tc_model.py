import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import tc_model as t
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError

# `tc class show dev v0` from iproute2 6.1 (no JSON for classes there).
CLASSES = """\
class htb 1:3e8 parent 1:1 leaf 3e8: prio 0 rate 5Mbit ceil 5Mbit burst 1600b cburst 1600b
class htb 1:1 root rate 100Mbit ceil 100Mbit burst 1600b cburst 1600b
class htb 1:2 parent 1:1 prio 0 rate 50Mbit ceil 100Mbit burst 1600b cburst 1600b
"""
QDISCS = [{"kind": "htb", "handle": "1:", "root": True, "options": {"r2q": 10, "default": "0x2"}},
          {"kind": "pfifo", "handle": "3e8:", "parent": "1:3e8", "options": {"limit": 1000}},
          {"kind": "pfifo", "handle": "2:", "parent": "1:2", "options": {"limit": 1000}},
          {"kind": "ingress", "handle": "ffff:", "parent": "ffff:fff1"}]
# `nft -j list table inet fairshare` of the table render_nft makes for uid 1000 in class 1:3e8 (nft 1.0.6)
NFT = {"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "fairshare"}},
                    {"rule": {"family": "inet", "table": "fairshare", "chain": "egress", "expr": [
                        {"match": {"op": "==", "left": {"meta": {"key": "skuid"}}, "right": 1000}},
                        {"mangle": {"key": {"ct": {"key": "mark"}}, "value": 66536}},
                        {"mangle": {"key": {"meta": {"key": "priority"}}, "value": "1:3e8"}}]}},
                    {"rule": {"family": "inet", "table": "fairshare", "chain": "egress", "expr": [
                        {"match": {"op": "==", "left": {"ct": {"key": "mark"}}, "right": 66536}},
                        {"mangle": {"key": {"meta": {"key": "priority"}}, "value": "1:3e8"}}]}}]}


@pytest.mark.parametrize("text,bps", [("50mbit", 50 * 10 ** 6), ("1gbit", 10 ** 9), ("500kbit", 500000),
                                      ("1.5mbit", 1500000), ("10mbps", 80 * 10 ** 6), ("2MBit", 2 * 10 ** 6)])
def test_parse_rate(text, bps):
    assert t.parse_rate("rate", text) == bps


@pytest.mark.parametrize("text,fragment", [("10 mbps", "without a space, like 10mbit"), ("fast", "tc units"),
                                           ("10mb", "tc units"), ("1bit", "below 8kbit")])
def test_parse_rate_errors(text, fragment):
    with pytest.raises(InputError) as err:
        t.parse_rate("egress.classes[0].rate", text)
    assert str(err.value).startswith("egress.classes[0].rate: ") and fragment in str(err.value)


def test_read_tree():
    classes = t.parse_classes(CLASSES)
    assert classes["1:3e8"] == {"parent": "1:1", "rate": 5 * 10 ** 6, "ceil": 5 * 10 ** 6}
    assert classes["1:1"]["parent"] is None
    root, leaves, ingress = t.parse_qdiscs(QDISCS)
    assert root == {"kind": "htb", "handle": "1:", "default": "0x2"} and leaves == {"1:3e8": "pfifo", "1:2": "pfifo"}
    assert ingress
    assert t.tc_rate("800Kbit") == 800000 and t.tc_rate("1.2Gbit") == 1200000000 and t.tc_rate("x") is None


def test_wanted_tree_and_diff():
    default = {"rate": 50 * 10 ** 6, "ceil": 100 * 10 ** 6}
    user = {"uid": 1000, "classid": "1:3e8", "rate": 5 * 10 ** 6, "ceil": 5 * 10 ** 6}
    tree = t.egress_tree(100 * 10 ** 6, default, [user], "pfifo")
    root, leaves, dummy = t.parse_qdiscs(QDISCS)
    live = {"root": root, "classes": t.parse_classes(CLASSES), "leaves": leaves}
    assert t.diff_tree(live, tree) == []
    other = {"uid": 1001, "classid": "1:3e9", "rate": 10 ** 7, "ceil": 2 * 10 ** 7}
    tree2 = t.egress_tree(100 * 10 ** 6, default, [other], "fq_codel")
    actions = t.diff_tree(live, tree2)
    assert ("class", "1:3e9") in actions and ("delete-class", "1:3e8") in actions
    assert ("leaf", "1:2") in actions and ("leaf", "1:3e9") in actions and ("root",) not in actions
    fresh = t.diff_tree({}, tree)
    assert fresh[0] == ("root",) and fresh[1] == ("class", "1:1")  # root class before its children
    cmds = t.tc_commands("eth0", tree, fresh)
    assert cmds[0] == ["tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb", "default", "2"]
    assert ["tc", "class", "replace", "dev", "eth0", "parent", "1:1", "classid", "1:3e8", "htb", "rate", "5000000bit",
            "ceil", "5000000bit", "quantum", "1514"] in cmds


def test_admission_refuses_with_numbers():
    classes = [{"uid": 1000 + i, "rate": 50 * 10 ** 6, "ceil": 50 * 10 ** 6} for i in range(24)]
    with pytest.raises(InputError) as err:
        t.check_admission("egress on eth0", 10 ** 9, {"rate": 10 ** 7, "ceil": 10 ** 9}, classes, 1.0)
    assert str(err.value) == ("egress on eth0: 1210mbit guaranteed (24 users' rates + the default class 10mbit) > "
                              "1gbit capacity x 1.0 oversubscription")
    t.check_admission("egress on eth0", 10 ** 9, {"rate": 10 ** 7, "ceil": 10 ** 9}, classes, 2.0)
    with pytest.raises(InputError) as err:
        t.check_admission("egress", 10 ** 8, {"rate": 10 ** 6, "ceil": 10 ** 9}, [], 1.0)
    assert "above the link rate" in str(err.value)


def test_nft_rules_round_trip():
    assert t.parse_nft_rules(NFT) == [(1000, "1:3e8")]
    # a table of the earlier version (owner rule only) is not the one wanted: it is replaced
    old = {"nftables": NFT["nftables"][:2] + [{"rule": {"expr": [NFT["nftables"][2]["rule"]["expr"][i] for i in (0, 2)]}}]}
    assert t.parse_nft_rules(old, whole=True) == [(1000, "1:3e8 owner-only")]
    assert t.parse_nft_rules(old) == [(1000, "1:3e8")] and t.parse_nft_rules(NFT, whole=True) == [(1000, "1:3e8")]
    assert t.classid_mark("1:3e8") == 66536 and t.classid_mark("1:ffff") == 0x1ffff
    text = t.render_nft([{"uid": 1001, "classid": "1:3e9"}, {"uid": 1000, "classid": "1:3e8"}])
    assert text.index("skuid 1000") < text.index("skuid 1001") and "priority set 1:3e9" in text
    assert t.nft_load_script([]).startswith("add table inet fairshare\nflush table inet fairshare\n")


def test_class_ids_of_small_uids_are_the_uid():
    assert t.allocate_classids([1000, 65534, 3]) == {1000: "1:3e8", 65534: "1:fffe", 3: "1:3"}
    assert t.format_rate(50 * 10 ** 6) == "50mbit" and t.format_rate(1234) == "1234bit"


def test_no_class_id_is_the_ingress_handle():
    """1:ffff would give its leaf qdisc the handle ffff:, the ingress qdisc's: uid 65535 and the first large uid
    get 1:fffe, and an existing 1:ffff (an earlier release's) is not kept."""
    assert t.allocate_classids([65535]) == {65535: "1:fffe"}
    assert t.allocate_classids([200000], existing={200000: "1:ffff"}) == {200000: "1:fffe"}
    assert "1:ffff" not in t.allocate_classids(range(100000, 100000 + 65532)).values()


def test_large_uids_get_free_class_ids_from_the_top():
    ids = t.allocate_classids([200000, 1000, 1500000, 2])
    assert ids == {1000: "1:3e8", 2: "1:fffe", 200000: "1:fffd", 1500000: "1:fffc"}
    assert len(set(ids.values())) == 4
    # the same users get the same classes with no live table (a reboot without persistence)
    assert t.allocate_classids([1500000, 2, 1000, 200000]) == ids


def test_class_ids_are_stable_from_run_to_run():
    first = t.allocate_classids([200000, 300000])
    assert first == {200000: "1:fffe", 300000: "1:fffd"}
    # 200000 leaves, 100000 comes: nobody else moves, the newcomer takes a free id
    second = t.allocate_classids([100000, 300000], existing=first)
    assert second[300000] == "1:fffd" and second[100000] == "1:fffe"
    # a small uid whose own id another user holds gets a free one, the holder keeps theirs
    third = t.allocate_classids([65534, 300000, 100000], existing=second)
    assert third[100000] == "1:fffe" and third[300000] == "1:fffd" and third[65534] == "1:fffc"
    # an existing id that is not ours (another major, root or default class) is not kept
    assert t.allocate_classids([1000], existing={1000: "2:5"}) == {1000: "1:3e8"}
    assert t.allocate_classids([200000], existing={200000: "1:2"}) == {200000: "1:fffe"}


def test_more_users_than_class_ids_is_refused():
    with pytest.raises(InputError) as err:
        t.allocate_classids(range(100000, 100000 + 65533))
    assert "65533 users, but there are only 65532 class ids" in str(err.value)


def test_stale_parts_of_an_earlier_run():
    from ansible_collections.fairshare.resources.plugins.module_utils.tc_model import stale_parts
    old = {"devices": ["eth0", "eth1"], "ifbs": ["ifb-eth0"]}  # a tc.json of an earlier version
    new = {"devices": ["eth0"], "ifbs": [], "root": ["eth0"], "ingress": [], "nft": True}
    assert stale_parts(old, new) == {"root": ["eth1"], "ingress": ["eth0"], "ifbs": ["ifb-eth0"], "nft": False}
    assert stale_parts(new, new) == {"root": [], "ingress": [], "ifbs": [], "nft": False}
    assert stale_parts(new, {"devices": ["eth1"], "root": ["eth1"], "nft": False})["nft"] is True


def test_a_tbf_read_back_rounded_is_the_same_tbf():
    from ansible_collections.fairshare.resources.plugins.module_utils.tc_model import tbf_matches
    # what tc -j printed for tbf rate 2000gbit burst 1000000000 on this host's kernel
    live = {"kind": "tbf", "rate": 250000000000, "burst": 999750000}
    assert tbf_matches(live, 2000 * 10 ** 9 // 8, 1000000000)
    assert not tbf_matches(live, 2000 * 10 ** 9 // 8, 2000000000)
    assert not tbf_matches(dict(live, kind="htb"), 2000 * 10 ** 9 // 8, 1000000000)
    assert not tbf_matches(live, 1000 * 10 ** 9 // 8, 1000000000)

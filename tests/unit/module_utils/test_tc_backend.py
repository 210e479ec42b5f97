"""tc_backend against scripted ip/tc/nft (what iproute2 6.1 and nft 1.0.6 print, test_tc_model's captures): which
commands change the host, in what order, and what is left alone - no root, no network namespace."""
import json

import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import tc_backend as tb
from ansible_collections.fairshare.resources.plugins.module_utils import tc_model as t
from ansible_collections.fairshare.resources.plugins.module_utils.errors import HostError
from ansible_collections.fairshare.resources.plugins.module_utils.host import Host

from scripted import ScriptedModule
from test_tc_model import CLASSES, NFT, QDISCS

DEFAULT = {"rate": 50 * 10 ** 6, "ceil": 100 * 10 ** 6}
USER = {"uid": 1000, "classid": "1:3e8", "rate": 5 * 10 ** 6, "ceil": 5 * 10 ** 6}


def shaper(check_mode=False, answers=None):
    live = {("ip", "-j", "link", "show", "dev", "v0"): (0, json.dumps([{"ifname": "v0", "flags": ["UP"]}]), ""),
            ("tc", "-j", "qdisc", "show", "dev", "v0"): (0, json.dumps(QDISCS), ""),
            ("tc", "class", "show", "dev", "v0"): (0, CLASSES, ""),
            ("nft", "-j", "list", "table", "inet", t.NFT_TABLE): (0, json.dumps(NFT), ""),
            "tc": (0, "", ""), "nft": (0, "", ""), "ip": (0, "", "")}
    live.update(answers or {})
    module = ScriptedModule(live, check_mode=check_mode)
    return tb.TcShaper(Host(module)), module


def changing(module):
    reads = ("show", "list")
    return [argv for argv, _d in module.calls if not any(word in argv for word in reads)]


def test_a_tree_that_is_already_there_runs_no_tc_command():
    tc, module = shaper()
    before, after = tc.shape("v0", t.egress_tree(100 * 10 ** 6, DEFAULT, [USER], "pfifo"))
    assert changing(module) == [] and tc.actions == [] and before == after


def test_a_new_users_class_is_added_without_touching_the_root_or_the_others():
    tc, module = shaper()
    other = {"uid": 1001, "classid": "1:3e9", "rate": 10 ** 7, "ceil": 2 * 10 ** 7}
    tc.shape("v0", t.egress_tree(100 * 10 ** 6, DEFAULT, [USER, other], "pfifo"))
    assert changing(module) == [
        ["tc", "class", "replace", "dev", "v0", "parent", "1:1", "classid", "1:3e9", "htb", "rate", "10000000bit",
         "ceil", "20000000bit", "quantum", "1514"],
        ["tc", "qdisc", "replace", "dev", "v0", "parent", "1:3e9", "handle", "3e9:", "pfifo"]]
    assert tc.diff and tc.diff[0]["before_header"] == "tc v0"


def test_check_mode_reports_the_change_and_runs_none():
    tc, module = shaper(check_mode=True)
    tc.shape("v0", t.egress_tree(100 * 10 ** 6, DEFAULT, [], "fq_codel"))
    assert tc.actions and changing(module) == []


def test_classify_loads_the_table_only_when_its_rules_differ():
    tc, module = shaper()
    tc.classify([USER])  # NFT holds exactly uid 1000 -> 1:3e8
    assert changing(module) == []
    tc.classify([USER, {"uid": 1001, "classid": "1:3e9"}])
    loads = [(argv, data) for argv, data in module.calls if argv[:2] == ["nft", "-f"]]
    assert len(loads) == 1 and "1001" in loads[0][1] and "1:3e9" in loads[0][1]


def test_remove_takes_only_our_root_qdiscs_and_our_table():
    foreign = [{"kind": "fq_codel", "handle": "0:", "root": True, "options": {}}]
    tc, module = shaper(answers={("ip", "-j", "link", "show", "dev", "w0"): (0, "[]", ""),
                                 ("tc", "-j", "qdisc", "show", "dev", "w0"): (0, json.dumps(foreign), ""),
                                 ("tc", "class", "show", "dev", "w0"): (0, "", ""),
                                 ("ip", "-j", "link", "show", "dev", "ifb-gone"): (1, "", "Device does not exist")})
    tc.remove_parts({"root": ["v0", "w0"], "ingress": ["v0"], "ifbs": ["ifb-gone"], "nft": True})
    assert changing(module) == [["tc", "qdisc", "del", "dev", "v0", "root"],
                                ["tc", "qdisc", "del", "dev", "v0", "ingress"],
                                ["nft", "delete", "table", "inet", t.NFT_TABLE]]


def test_auto_interface_without_a_default_route_is_a_host_error():
    tc, _module = shaper(answers={("ip", "-j", "route", "show", "default"): (0, "[]", "")})
    with pytest.raises(HostError) as err:
        tc.default_interface()
    assert str(err.value) == "interface: 'auto' needs a default route, and this host has none"

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: tc_shape
short_description: Per-user and per-interface network shaping with tc HTB/TBF and nftables
version_added: "0.1.0"
description:
  - Egress - an HTB tree on O(interface) with a root class at the link rate, one class per user
    (O(egress.classes[].rate) guaranteed, O(egress.classes[].ceil) to borrow up to) and a default
    class for everybody else; fq_codel leaves where the kernel has it, plain pfifo (with a
    warning) where it doesn't.
  - Users are classified without any tc filter - an nftables table C(inet fairshare) (ours, IPv4
    and IPv6) sets the packet priority to the user's class from the socket owner
    (C(meta skuid UID meta priority set 1:<class>)), which HTB honours.
  - Ingress - the interface's ingress is redirected to an ifb device and shaped there at
    O(ingress.rate) (per interface; per-user ingress is not done).
  - Per-interface mode (O(interfaces)) - a TBF with rate and burst on each listed interface (VM TAP devices).
  - Reads the live state (C(tc -j qdisc), C(tc class), C(nft -j)) and changes only what differs.
    O(persist=true) writes a restore script and a systemd unit that rebuild the same shaping at
    boot. O(state=absent) removes everything of ours and nothing else.
author:
  - fairshare.resources contributors (@fairshare)
attributes:
  check_mode:
    support: full
    description: Reads the live tree and lists every tc, ip and nft command it would run.
  diff_mode:
    support: full
    description: The qdisc/class tree and the nftables rules before and after, and the persisted files.
options:
  interface:
    description: The interface to shape egress (and ingress) on; V(auto) is the one of the default route.
    type: str
  egress:
    description: The egress HTB tree.
    type: dict
    suboptions:
      rate:
        description: The link rate (tc units, C(1gbit)); the root class.
        type: str
        required: true
      default:
        description: The class of traffic no user class takes (other users, root, the system).
        type: dict
        suboptions:
          rate:
            description: Guaranteed rate.
            type: str
            required: true
          ceil:
            description: Most it may borrow up to; default O(egress.default.rate).
            type: str
      classes:
        description: One class per user; one call shapes every user of the host.
        type: list
        elements: dict
        default: []
        suboptions:
          user:
            description: User name or UID.
            type: str
            required: true
          rate:
            description: Guaranteed rate.
            type: str
            required: true
          ceil:
            description: Most the user may borrow up to; default O(egress.classes[].rate).
            type: str
  ingress:
    description: Ingress shaping through an ifb device (per interface).
    type: dict
    suboptions:
      rate:
        description: The most the interface receives.
        type: str
        required: true
  interfaces:
    description: Per-interface mode - a TBF on each listed interface.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The interface (a TAP device, a bridge port).
        type: str
        required: true
      tbf:
        description: The token bucket.
        type: dict
        required: true
        suboptions:
          rate:
            description: The rate.
            type: str
            required: true
          burst:
            description: Bucket size (C(32K)); default 4 ms at the rate, at least 1600 bytes.
            type: str
  oversubscription:
    description: Guaranteed rates summed may reach the link rate times this.
    type: float
    default: 1.0
  persist:
    description: Restore the same shaping at boot (a script and a systemd unit of ours).
    type: bool
    default: false
  state:
    description: V(absent) removes our qdiscs, ifb devices, nftables table and boot files.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Rates are tc units - C(kbit), C(mbit), C(gbit) are bits per second, C(kbps), C(mbps) bytes per second.
  - A user's class id is allocated and stable from run to run - the one the live nftables table gives the user,
    else C(1:<uid in hex>) for a uid from 3 to 65535 where that is free, else the highest free id (uids above
    65535, such as directory users'); the result's C(classes) say which. The default class is C(1:2).
"""

EXAMPLES = r"""
- name: Every user of a lab server gets 50mbit guaranteed, up to 500mbit
  fairshare.resources.tc_shape:
    interface: auto
    persist: true
    egress:
      rate: 1gbit
      default: {rate: 200mbit, ceil: 1gbit}
      classes:
        - {user: alice, rate: 50mbit, ceil: 500mbit}
        - {user: bob, rate: 50mbit, ceil: 500mbit}
    ingress:
      rate: 800mbit

- name: Per-VM limits on TAP devices (TBF)
  fairshare.resources.tc_shape:
    interfaces:
      - {name: tap0, tbf: {rate: 100mbit, burst: 64K}}
      - {name: tap1, tbf: {rate: 20mbit}}
"""

RETURN = r"""
interface:
  description: The interface shaped (after V(auto)).
  returned: when O(interface) is set
  type: str
  sample: eth0
leaf:
  description: The leaf qdisc used (fq_codel, or pfifo where the kernel lacks it).
  returned: always
  type: str
classes:
  description: The wanted classes, with their tc class ids.
  returned: always
  type: list
  elements: dict
  sample: [{user: alice, uid: 1000, classid: "1:3e8", rate: 50mbit, ceil: 500mbit}]
tree:
  description: The live tree after the call (root, classes, leaves), rates in bits per second.
  returned: always
  type: dict
ingress:
  description: What ingress shaping is done (per interface through the ifb device, or none).
  returned: always
  type: dict
actions:
  description: The commands run (or, in check mode, that would run).
  returned: always
  type: list
  elements: str
changes_made:
  description:
    - Only when the module failed. What it had altered on the host before the failure (files
      written or removed, cgroup directories and kernel files written, commands that change
      state), in order; the first 50. C(changed) is true when this list is not empty.
  returned: failed
  type: list
  elements: str
  sample: ["mkdir /sys/fs/cgroup/memory/fairshare/user-2001", "write /sys/fs/cgroup/memory/fairshare/user-2001/memory.limit_in_bytes"]
changes_made_count:
  description: Only when the module failed. How many changes C(changes_made) would list without its cap.
  returned: failed
  type: int
  sample: 2
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fairshare.resources.plugins.module_utils.accounts import Accounts, NotFound
from ansible_collections.fairshare.resources.plugins.module_utils.host import Host
from ansible_collections.fairshare.resources.plugins.module_utils.platform import init_system
from ansible_collections.fairshare.resources.plugins.module_utils.tc_backend import (
    STATE_FILE, TcShaper,
)
from ansible_collections.fairshare.resources.plugins.module_utils.tc_model import (
    allocate_classids, check_admission, diff_tree, egress_tree, format_rate, ifb_name, ingress_commands,
    nft_load_script, parse_rate, rate_ceil, stale_parts, tbf_burst, tbf_matches, tc_commands,
)
from ansible_collections.fairshare.resources.plugins.module_utils.errors import FairshareError, InputError

RATE_CEIL = dict(rate=dict(type="str", required=True), ceil=dict(type="str"))


def validate(params, shaper):
    """Everything checked before the first change -> plan dict."""
    plan = {"dev": None, "egress": None, "classes": [], "ingress": None, "tbf": []}
    dev = params["interface"]
    if dev == "auto":
        dev = shaper.default_interface()
    if dev and not shaper.link_exists(dev):
        raise InputError("interface: %r does not exist on this host" % params["interface"])
    plan["dev"] = dev
    if params["egress"]:
        if not dev:
            raise InputError("egress: needs interface")
        eg = params["egress"]
        link = parse_rate("egress.rate", eg["rate"])
        default = rate_ceil("egress.default", eg["default"] or {"rate": eg["rate"]})
        seen = {}
        accounts = Accounts(expected=len(eg["classes"]))
        for i, cls in enumerate(eg["classes"]):
            where = "egress.classes[%d]" % i
            try:
                pw = accounts.user(cls["user"])
            except NotFound:
                raise InputError("%s.user: %r is not a user on this host" % (where, cls["user"]))
            if pw.pw_uid in seen:
                raise InputError("%s.user: %r is listed twice (also egress.classes[%d])" % (where, cls["user"], seen[pw.pw_uid]))
            seen[pw.pw_uid] = i
            entry = rate_ceil(where, cls)
            entry.update(user=pw.pw_name, uid=pw.pw_uid, name="user %s" % pw.pw_name)
            plan["classes"].append(entry)
        check_admission("egress on %s" % dev, link, default, plan["classes"], params["oversubscription"])
        plan["egress"] = {"link": link, "default": default}
    if params["ingress"]:
        if not dev:
            raise InputError("ingress: needs interface")
        plan["ingress"] = parse_rate("ingress.rate", params["ingress"]["rate"])
    for i, itf in enumerate(params["interfaces"]):
        where = "interfaces[%d]" % i
        if not shaper.link_exists(itf["name"]):
            raise InputError("%s.name: %r does not exist on this host" % (where, itf["name"]))
        rate = parse_rate(where + ".tbf.rate", itf["tbf"]["rate"])
        plan["tbf"].append({"dev": itf["name"], "rate": rate,
                            "burst": tbf_burst(where + ".tbf.burst", itf["tbf"].get("burst"), rate)})
    return plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            interface=dict(type="str"),
            egress=dict(type="dict", options=dict(rate=dict(type="str", required=True),
                                                  default=dict(type="dict", options=RATE_CEIL),
                                                  classes=dict(type="list", elements="dict", default=[],
                                                               options=dict(user=dict(type="str", required=True),
                                                                            **RATE_CEIL)))),
            ingress=dict(type="dict", options=dict(rate=dict(type="str", required=True))),
            interfaces=dict(type="list", elements="dict", default=[],
                            options=dict(name=dict(type="str", required=True),
                                         tbf=dict(type="dict", required=True,
                                                  options=dict(rate=dict(type="str", required=True),
                                                               burst=dict(type="str"))))),
            oversubscription=dict(type="float", default=1.0),
            persist=dict(type="bool", default=False),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    host = Host(module)
    shaper = TcShaper(host)
    result = dict(changed=False, actions=[], classes=[], tree={}, ingress={}, leaf=None)
    try:
        state = json.loads(host.read(STATE_FILE) or "{}")
        if module.params["state"] == "absent":
            devices = state.get("devices", [])
            shaper.remove(devices, state.get("ifbs", []))
            shaper.persist([], None, False, init_system() == "systemd")
            if not module.check_mode and os.path.exists(STATE_FILE):
                host.remove(STATE_FILE)
        else:
            if module.params["oversubscription"] <= 0:
                raise InputError("oversubscription: %r must be more than 0" % module.params["oversubscription"])
            plan = validate(module.params, shaper)
            shaper.leaf = shaper.leaf_kind()
            result["leaf"] = shaper.leaf
            restore, devices, ifbs, roots, ingress = [], [], [], [], []
            dev = plan["dev"]
            if plan["egress"]:
                ids = allocate_classids([c["uid"] for c in plan["classes"]], dict(shaper.read_nft() or []))
                for cls in plan["classes"]:
                    cls["classid"] = ids[cls["uid"]]
                tree = egress_tree(plan["egress"]["link"], plan["egress"]["default"], plan["classes"], shaper.leaf)
                dummy, after = shaper.shape(dev, tree)
                shaper.classify(plan["classes"])
                restore += tc_commands(dev, tree, diff_tree({}, tree))
                devices.append(dev)
                roots.append(dev)
                result["interface"] = dev
                result["tree"] = after
                result["classes"] = [{"user": c["user"], "uid": c["uid"], "classid": c["classid"],
                                      "rate": format_rate(c["rate"]), "ceil": format_rate(c["ceil"])}
                                     for c in plan["classes"]]
            if plan["ingress"]:
                ifb = ifb_name(dev)
                dummy, ifb_after = shaper.ensure_ingress(dev, ifb, plan["ingress"])
                ingress_tree = egress_tree(plan["ingress"], {"rate": plan["ingress"], "ceil": plan["ingress"]}, [],
                                           shaper.leaf)
                restore += [["ip", "link", "add", ifb, "type", "ifb"], ["ip", "link", "set", ifb, "up"]]
                restore += ingress_commands(dev, ifb)
                restore += tc_commands(ifb, ingress_tree, diff_tree({}, ingress_tree))
                devices.append(dev)
                ingress.append(dev)
                ifbs.append(ifb)
                result["ingress"] = {"mode": "interface", "device": ifb, "rate": format_rate(plan["ingress"]),
                                     "per_user": False, "tree": ifb_after}
            for tbf in plan["tbf"]:
                tree = {"root": {"kind": "tbf", "rate": tbf["rate"] // 8, "burst": tbf["burst"]}, "classes": {},
                        "leaves": {}}
                cmd_tree = {"root": {"kind": "tbf", "rate": tbf["rate"], "burst": tbf["burst"]}}
                live = shaper.read_tree(tbf["dev"])
                if not tbf_matches(live["root"], tree["root"]["rate"], tbf["burst"]):
                    shaper.run_all(tbf["dev"], tc_commands(tbf["dev"], cmd_tree, [("root",)]))
                restore += tc_commands(tbf["dev"], cmd_tree, [("root",)])
                devices.append(tbf["dev"])
                roots.append(tbf["dev"])
            nft = nft_load_script(plan["classes"]) if plan["egress"] else None
            shaper.persist(restore, nft, module.params["persist"], init_system() == "systemd")
            new_state = {"devices": sorted(set(devices)), "ifbs": ifbs, "root": sorted(set(roots)),
                         "ingress": sorted(set(ingress)), "nft": bool(plan["egress"])}
            # what an earlier run set and this one does not want goes (an ingress, a tbf, an interface)
            shaper.remove_parts(stale_parts(state, new_state))
            if new_state != state and not module.check_mode:
                host.write_atomic(STATE_FILE, json.dumps(new_state, sort_keys=True) + "\n")
    except FairshareError as exc:
        module.fail_json(msg=str(exc), **host.partial(result))
    result["actions"] = shaper.actions
    result["changed"] = bool(shaper.actions)
    for warning in shaper.warnings:
        module.warn(warning)
    if module._diff:
        result["diff"] = shaper.diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()

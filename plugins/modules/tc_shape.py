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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fairshare.resources.plugins.module_utils.errors import FairshareError
from ansible_collections.fairshare.resources.plugins.module_utils.host import Host
from ansible_collections.fairshare.resources.plugins.module_utils.platform import init_system
from ansible_collections.fairshare.resources.plugins.module_utils.tc_backend import TcShaper

RATE_CEIL = dict(rate=dict(type="str", required=True), ceil=dict(type="str"))


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
        shaper.apply(module.params, result, init_system() == "systemd")
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

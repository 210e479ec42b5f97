# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The model of tc_shape: rates, the wanted HTB tree, what tc and nft show, and the diff.

Pure Python, no AnsibleModule import. A tree is a dict:
  {'root': {'kind': 'htb', 'handle': '1:', 'default': '0x2'} or {'kind': 'tbf', 'rate': bps, 'burst': bytes},
   'classes': {'1:1': {'parent': None, 'rate': bps, 'ceil': bps}, ...},
   'leaves': {'1:3e8': 'fq_codel', ...}}
Rates are bits per second. Class ids are tc's hex minors: a user's class is 1:<uid in hex>,
so a user keeps the same class whatever the order of the list.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.units import parse_size

NFT_TABLE = "fairshare"
ROOT_CLASS = "1:1"
DEFAULT_CLASS = "1:2"
# tc's rate units: bit units are decimal, "bps" units are bytes per second.
_RATE_UNITS = {"bit": 1, "kbit": 1000, "mbit": 10 ** 6, "gbit": 10 ** 9, "tbit": 10 ** 12,
               "bps": 8, "kbps": 8000, "mbps": 8 * 10 ** 6, "gbps": 8 * 10 ** 9, "tbps": 8 * 10 ** 12}
_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)([a-z]+)$")


def parse_rate(field, value):
    """'50mbit', '1gbit', '500kbit', '10mbps' (bytes) -> bits per second."""
    text = str(value).strip()
    if " " in text:
        raise InputError("%s: %r is not a rate; write it without a space, like %s" % (
            field, value, text.replace(" ", "").lower().replace("mbps", "mbit").replace("kbps", "kbit").replace("gbps", "gbit")))
    match = _RATE_RE.match(text.lower())
    if not match or match.group(2) not in _RATE_UNITS:
        raise InputError("%s: %r is not a rate; use tc units: kbit, mbit, gbit (bits/s) or kbps, mbps (bytes/s), "
                         "like 50mbit" % (field, value))
    bps = int(float(match.group(1)) * _RATE_UNITS[match.group(2)])
    if bps < 8000:
        raise InputError("%s: %r is below 8kbit, the smallest rate allowed" % (field, value))
    return bps


def format_rate(bps):
    for unit, factor in (("gbit", 10 ** 9), ("mbit", 10 ** 6), ("kbit", 1000)):
        if bps % factor == 0:
            return "%d%s" % (bps // factor, unit)
    return "%dbit" % bps


FIRST_MINOR = 3  # 1:1 is the root class, 1:2 the default class
# An HTB class id is major:minor, each 16 bits; a class's leaf qdisc takes the class's minor as its handle,
# and ffff: is the ingress qdisc's handle: a leaf there made adding the ingress fail ("Cannot move an
# existing qdisc to a different parent", iproute2 6.1), so the last class id is 1:fffe.
LAST_MINOR = 0xfffe


def _minor(classid):
    try:
        major, minor = str(classid).split(":")
        return int(minor, 16) if major == "1" else None
    except ValueError:
        return None


def allocate_classids(uids, existing=None):
    """{uid: '1:<minor hex>'} for every uid, stable from run to run.

    A class id is 16 bits and a uid 32, so a class cannot simply be the uid (directory users
    have uids in the hundreds of thousands or millions). In order: a user keeps the class the
    live nftables table gives them (existing: {uid: classid}); a uid from 3 to 65535 gets 1:<uid
    in hex> when that is free (the classes of earlier releases); every other user gets the
    highest free class id, in uid order, so that the same users get the same classes even
    when the table is gone. Refused when there are more users than class ids.
    """
    wanted = sorted(set(uids))
    if len(wanted) > LAST_MINOR - FIRST_MINOR + 1:
        raise InputError("egress.classes: %d users, but there are only %d class ids"
                         % (len(wanted), LAST_MINOR - FIRST_MINOR + 1))
    taken, minors = set(), {}
    for uid in wanted:
        minor = _minor((existing or {}).get(uid))
        if minor is not None and FIRST_MINOR <= minor <= LAST_MINOR and minor not in taken:
            minors[uid] = minor
            taken.add(minor)
    for uid in wanted:
        if uid not in minors and FIRST_MINOR <= uid <= LAST_MINOR and uid not in taken:
            minors[uid] = uid
            taken.add(uid)
    free = LAST_MINOR
    for uid in wanted:
        if uid in minors:
            continue
        while free in taken:
            free -= 1
        minors[uid] = free
        taken.add(free)
    return dict((uid, "1:%x" % minor) for uid, minor in minors.items())


def egress_tree(link_bps, default, classes, leaf):
    """The wanted HTB tree: root class at link rate, the default class, one class per user."""
    tree = {"root": {"kind": "htb", "handle": "1:", "default": "0x2"},
            "classes": {ROOT_CLASS: {"parent": None, "rate": link_bps, "ceil": link_bps},
                        DEFAULT_CLASS: {"parent": ROOT_CLASS, "rate": default["rate"], "ceil": default["ceil"]}},
            "leaves": {DEFAULT_CLASS: leaf}}
    for cls in classes:
        cid = cls["classid"]
        tree["classes"][cid] = {"parent": ROOT_CLASS, "rate": cls["rate"], "ceil": cls["ceil"]}
        tree["leaves"][cid] = leaf
    return tree


def rate_ceil(where, spec):
    """{rate, ceil (optional)} -> bits per second each; a ceil below the rate is refused."""
    rate = parse_rate(where + ".rate", spec["rate"])
    ceil = parse_rate(where + ".ceil", spec["ceil"]) if spec.get("ceil") else rate
    if ceil < rate:
        raise InputError("%s.ceil: %s is below rate %s; ceil is what a class may borrow up to, at least its rate"
                         % (where, spec["ceil"], spec["rate"]))
    return {"rate": rate, "ceil": ceil}


def check_admission(where, link_bps, default, classes, oversubscription):
    """Guaranteed rates must fit the link × oversubscription; refused with the numbers."""
    total = default["rate"] + sum(c["rate"] for c in classes)
    allowed = link_bps * oversubscription
    if total > allowed:
        raise InputError("%s: %s guaranteed (%d users' rates + the default class %s) > %s capacity x %s "
                         "oversubscription" % (where, format_rate(total), len(classes), format_rate(default["rate"]),
                                               format_rate(link_bps), oversubscription))
    for cls in [default] + classes:
        if cls["ceil"] > link_bps:
            raise InputError("%s: ceil %s of %s is above the link rate %s"
                             % (where, format_rate(cls["ceil"]), cls.get("name", "the default class"),
                                format_rate(link_bps)))


# --------------------------------------------------------------------------- reading tc

_TC_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)bit$")
_TC_FACTOR = {"": 1, "K": 1000, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12}


def tc_rate(text):
    """tc's printed rate ('5Mbit', '800Kbit', '1Gbit') -> bits per second."""
    match = _TC_RATE_RE.match(text)
    if not match:
        return None
    return int(round(float(match.group(1)) * _TC_FACTOR[match.group(2)]))


def parse_classes(text):
    """`tc class show dev X` (text: iproute2 6.1 prints no JSON for classes) -> classes dict."""
    classes = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0] != "class" or fields[1] != "htb":
            continue
        cid = fields[2]
        info = {"parent": None}
        for key in ("parent", "rate", "ceil"):
            if key in fields:
                val = fields[fields.index(key) + 1]
                info[key] = val if key == "parent" else tc_rate(val)
        classes[cid] = info
    return classes


def parse_qdiscs(qdiscs):
    """`tc -j qdisc show dev X` (parsed JSON) -> (root dict or None, {parent class: kind}, ingress bool)."""
    root, leaves, ingress = None, {}, False
    for q in qdiscs:
        if q.get("root"):
            opts = q.get("options", {})
            root = {"kind": q["kind"], "handle": q.get("handle")}
            if q["kind"] == "htb":
                root["default"] = opts.get("default")
            elif q["kind"] == "tbf":
                root["rate"] = opts.get("rate")
                root["burst"] = opts.get("burst")
        elif q["kind"] == "ingress":
            ingress = True
        elif q.get("parent"):
            leaves[q["parent"]] = q["kind"]
    return root, leaves, ingress


def diff_tree(live, wanted):
    """-> list of actions: ('root',), ('class', cid), ('leaf', cid), ('delete-class', cid)."""
    actions = []
    root_ok = live.get("root") and all(live["root"].get(k) == v for k, v in wanted["root"].items())
    if not root_ok:
        actions.append(("root",))
    live_classes = live.get("classes", {}) if root_ok else {}
    live_leaves = live.get("leaves", {}) if root_ok else {}
    for cid in sorted(wanted["classes"], key=_class_order):
        want = wanted["classes"][cid]
        have = live_classes.get(cid)
        if not have or have.get("parent") != want["parent"] or not _close(have.get("rate"), want["rate"]) \
                or not _close(have.get("ceil"), want["ceil"]):
            actions.append(("class", cid))
    for cid, kind in sorted(wanted["leaves"].items()):
        if live_leaves.get(cid) != kind:
            actions.append(("leaf", cid))
    for cid in sorted(live_classes):
        if cid not in wanted["classes"]:
            actions.append(("delete-class", cid))
    return actions


def _class_order(cid):
    return (cid != ROOT_CLASS, cid)


def _close(have, want):
    """tc prints rates rounded to 3 significant digits in K/M/G units."""
    return have is not None and abs(have - want) <= max(want * 0.005, 1)


def tc_commands(dev, wanted, actions):
    """Actions -> argv lists for tc (in the order they must run)."""
    cmds = []
    for action in actions:
        if action[0] == "root":
            root = wanted["root"]
            if root["kind"] == "htb":
                cmds.append(["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "2"])
            else:
                cmds.append(["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "%dbit" % root["rate"],
                             "burst", str(root["burst"]), "latency", "50ms"])
        elif action[0] == "class":
            cls = wanted["classes"][action[1]]
            parent = cls["parent"] or "1:"
            cmds.append(["tc", "class", "replace", "dev", dev, "parent", parent, "classid", action[1], "htb",
                         "rate", "%dbit" % cls["rate"], "ceil", "%dbit" % cls["ceil"], "quantum", "1514"])
        elif action[0] == "leaf":
            minor = action[1].split(":")[1]
            cmds.append(["tc", "qdisc", "replace", "dev", dev, "parent", action[1], "handle", minor + ":",
                         wanted["leaves"][action[1]]])
        elif action[0] == "delete-class":
            cmds.append(["tc", "class", "del", "dev", dev, "classid", action[1]])
    return cmds


# --------------------------------------------------------------------------- nftables

def classid_mark(classid):
    """'1:3e8' -> 0x103e8: the class id as the 32-bit number tc and the kernel use (major << 16 | minor)."""
    major, minor = classid.split(":")
    return (int(major, 16) << 16) | int(minor, 16)


def render_nft(classes):
    """Our whole nftables table. The socket's owner uid gives the packet the user's HTB class (skb
    priority) and marks its connection (ct mark = the class id); packets of a marked connection that
    no longer have an owner - what a socket still sends after close(), an orphan - get the class
    from the mark. Without the second rule those bytes left through the default class: a loop of
    "fill a socket, close it" sent 13 times a user's rate."""
    rules = "".join("\t\tmeta skuid %d ct mark set 0x%08x meta priority set %s\n"
                    "\t\tct mark 0x%08x meta priority set %s\n"
                    % (c["uid"], classid_mark(c["classid"]), c["classid"], classid_mark(c["classid"]), c["classid"])
                    for c in sorted(classes, key=lambda c: c["uid"]))
    return ("table inet %s {\n\tchain egress {\n\t\ttype filter hook output priority 0; policy accept;\n%s\t}\n}\n"
            % (NFT_TABLE, rules))


def nft_load_script(classes):
    """One nft -f transaction: create-or-flush our table, then fill it (atomic)."""
    return "add table inet %s\nflush table inet %s\n%s" % (NFT_TABLE, NFT_TABLE, render_nft(classes))


def _key(side, kind):
    return (side or {}).get(kind, {}).get("key") if isinstance(side, dict) else None


def parse_nft_rules(nft_json, whole=False):
    """`nft -j list table inet fairshare` (parsed) -> sorted [(uid, '1:3e8')]. whole: a user whose class
    does not hold for their whole connections (the owner rule marks the connection, and a rule gives
    marked packets the class; a table of an earlier version lacks both) is listed as
    (uid, '1:3e8 owner-only'), so that table differs from the one wanted and is replaced."""
    owners, restores = {}, set()
    for item in nft_json.get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        uid = prio = mark_set = mark_match = None
        for expr in rule.get("expr", []):
            match, mangle = expr.get("match"), expr.get("mangle")
            if match and _key(match.get("left"), "meta") == "skuid":
                uid = match.get("right")
            if match and _key(match.get("left"), "ct") == "mark":
                mark_match = match.get("right")
            if mangle and _key(mangle.get("key"), "meta") == "priority":
                prio = str(mangle.get("value"))
            if mangle and _key(mangle.get("key"), "ct") == "mark":
                mark_set = mangle.get("value")
        if uid is not None and prio is not None:
            owners[int(uid)] = (prio, mark_set)
        elif mark_match is not None and prio is not None:
            restores.add((mark_match, prio))
    pairs = []
    for uid, (prio, mark_set) in owners.items():
        complete = mark_set == classid_mark(prio) and (mark_set, prio) in restores
        pairs.append((uid, prio if complete or not whole else prio + " owner-only"))
    return sorted(pairs)


def tbf_burst(field, value, rate_bps):
    """TBF burst: a size, or by default rate/250 (4 ms at rate, at least 1600 bytes)."""
    if value is None:
        return max(1600, rate_bps // 8 // 250)
    return parse_size(field, value, allow_unlimited=False)


# --------------------------------------------------------------------------- ingress and tc.json

def ifb_name(dev):
    """The ifb device that carries dev's ingress (an interface name has at most 15 characters)."""
    return ("ifb-" + dev)[:15]


def ingress_commands(dev, ifb):
    """dev's ingress redirected to ifb, in order: make the ifb device, set it up, the ingress qdisc, the
    redirect (the restore script runs all four; tc_shape those not in place yet)."""
    return [["ip", "link", "add", ifb, "type", "ifb"], ["ip", "link", "set", ifb, "up"],
            ["tc", "qdisc", "replace", "dev", dev, "handle", "ffff:", "ingress"],
            ["tc", "filter", "replace", "dev", dev, "parent", "ffff:", "protocol", "all", "prio", "1",
             "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb]]


def state_parts(state):
    """tc.json -> {root: devices with a root qdisc of ours, ingress: devices with our ingress,
    ifbs, nft: our nft table}. Files written before 'root'/'ingress' were kept list only devices
    and ifbs: every such device may hold a root of ours, and those whose ifb is listed an ingress."""
    devices, ifbs = list(state.get("devices", [])), list(state.get("ifbs", []))
    return {"root": set(state.get("root", devices)),
            "ingress": set(state.get("ingress", [d for d in devices if ifb_name(d) in ifbs])),
            "ifbs": set(ifbs), "nft": bool(state.get("nft", bool(devices)))}


def stale_parts(old, new):
    """What an earlier run set (old tc.json) that this one no longer wants (new): removed, and
    only that, so a later state: absent still knows everything that is left."""
    was, now = state_parts(old), state_parts(new)
    return {"root": sorted(was["root"] - now["root"]), "ingress": sorted(was["ingress"] - now["ingress"]),
            "ifbs": sorted(was["ifbs"] - now["ifbs"]), "nft": was["nft"] and not now["nft"]}


def tbf_matches(live_root, rate_bytes, burst):
    """Does the live root qdisc (parse_qdiscs) already hold this tbf? The kernel keeps the burst as
    time at the rate (in scheduler ticks), so it reads back rounded: at high rates by more than a
    byte (40gbit: a 20 MB burst read back as 19.99 MB), which made every run re-apply it."""
    if not live_root or live_root.get("kind") != "tbf":
        return False
    rate, have = live_root.get("rate") or 0, live_root.get("burst") or 0
    return abs(rate - rate_bytes) <= rate_bytes * 0.005 and abs(have - burst) <= max(burst * 0.005, 64)

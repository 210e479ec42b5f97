# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backend of tc_shape: reads tc/nft/ip state, plans, applies, persists. No AnsibleModule import."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.fairshare.resources.plugins.module_utils.accounts import Accounts, NotFound
from ansible_collections.fairshare.resources.plugins.module_utils.errors import HostError, InputError
from ansible_collections.fairshare.resources.plugins.module_utils.host import Changes
from ansible_collections.fairshare.resources.plugins.module_utils.managed import MANAGED_HEADER
from ansible_collections.fairshare.resources.plugins.module_utils.tc_model import (
    NFT_TABLE, allocate_classids, check_admission, diff_tree, egress_tree, format_rate, ifb_name, ingress_commands,
    nft_load_script, parse_classes, parse_nft_rules, parse_qdiscs, parse_rate, rate_ceil, stale_parts, tbf_burst,
    tbf_matches, tc_commands,
)

STATE_FILE = "/etc/fairshare/tc.json"
RESTORE_SCRIPT = "/etc/fairshare/tc-restore.sh"
UNIT_FILE = "/etc/systemd/system/fairshare-tc.service"
UNIT = """%s
[Unit]
Description=fairshare.resources: restore per-user network shaping
Wants=network-online.target
After=network-online.target nftables.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh %s

[Install]
WantedBy=multi-user.target
""" % (MANAGED_HEADER, RESTORE_SCRIPT)


class TcShaper(object):
    def __init__(self, host):
        self.host = host
        self.actions, self.warnings, self.diff = [], [], []

    # ------------------------------------------------------------------ reading
    def link_exists(self, dev):
        rc, out, err = self.host.run(["ip", "-j", "link", "show", "dev", dev], check=False)
        return rc == 0

    def default_interface(self):
        routes = json.loads(self.host.run(["ip", "-j", "route", "show", "default"]) or "[]")
        if not routes:
            raise HostError("interface: 'auto' needs a default route, and this host has none")
        return routes[0]["dev"]

    def read_tree(self, dev):
        if not self.link_exists(dev):  # an ifb device still to make (check mode)
            return {"root": None, "classes": {}, "leaves": {}, "ingress": False}
        qdiscs = json.loads(self.host.run(["tc", "-j", "qdisc", "show", "dev", dev]) or "[]")
        root, leaves, ingress = parse_qdiscs(qdiscs)
        classes = parse_classes(self.host.run(["tc", "class", "show", "dev", dev]))
        return {"root": root, "classes": classes, "leaves": leaves, "ingress": ingress}

    def read_nft(self, whole=False):
        """[(uid, classid)] of our table, None without it; whole: see tc_model.parse_nft_rules."""
        rc, out, err = self.host.run(["nft", "-j", "list", "table", "inet", NFT_TABLE], check=False)
        return parse_nft_rules(json.loads(out), whole) if rc == 0 else None

    def leaf_kind(self, modules_dir=None):
        """fq_codel where the kernel has it (built in, loaded, or loadable), else pfifo with a warning."""
        modules_dir = modules_dir or os.path.join("/lib/modules", os.uname()[2])
        builtin = self.host.read(os.path.join(modules_dir, "modules.builtin")) or ""
        loadable = self.host.read(os.path.join(modules_dir, "modules.dep")) or ""
        if os.path.isdir("/sys/module/sch_fq_codel") or "/sch_fq_codel.ko" in builtin:
            return "fq_codel"
        if "/sch_fq_codel.ko" in loadable:
            if not self.host.check_mode:
                self.host.run(["modprobe", "sch_fq_codel"])
            return "fq_codel"
        self.warnings.append("this kernel has no fq_codel (sch_fq_codel); class leaves are plain pfifo")
        return "pfifo"

    # ------------------------------------------------------------------ applying
    def run_all(self, label, cmds):
        for argv in cmds:
            self.actions.append("%s: %s" % (label, " ".join(argv)))
            if not self.host.check_mode:
                self.host.change(argv)

    def shape(self, dev, wanted):
        """Bring dev's qdisc tree to `wanted`; -> (before, after) trees."""
        live = self.read_tree(dev)
        actions = diff_tree(live, wanted)
        self.run_all(dev, tc_commands(dev, wanted, actions))
        if actions:
            self.diff.append({"before_header": "tc %s" % dev, "after_header": "tc %s" % dev,
                              "before": render_tree(live), "after": render_tree(wanted)})
        return live, (self.read_tree(dev) if actions and not self.host.check_mode else live)

    def ensure_ingress(self, dev, ifb, tree):
        """Ingress of dev redirected to ifb, shaped there by `tree` (ingress_tree); only the steps of
        ingress_commands that are not in place yet run."""
        add, up, qdisc, redirect = ingress_commands(dev, ifb)
        if not self.link_exists(ifb):
            self.run_all(ifb, [add])
        self.run_all(ifb, [up] if not self.host.check_mode and not self._is_up(ifb) else [])
        live = self.read_tree(dev)
        if not live["ingress"]:
            self.run_all(dev, [qdisc])
        filters = self.host.run(["tc", "filter", "show", "dev", dev, "parent", "ffff:"]) if live["ingress"] else ""
        if "mirred" not in filters or ifb not in filters:
            self.run_all(dev, [redirect])
        return self.shape(ifb, tree)

    def _is_up(self, dev):
        links = json.loads(self.host.run(["ip", "-j", "link", "show", "dev", dev]) or "[]")
        return bool(links) and "UP" in links[0].get("flags", [])

    def classify(self, classes):
        live = self.read_nft(whole=True)
        wanted = sorted((c["uid"], c["classid"]) for c in classes)
        if live != wanted:
            self.actions.append("nft: table inet %s with %d user rules" % (NFT_TABLE, len(classes)))
            self.diff.append({"before_header": "nft inet %s" % NFT_TABLE, "after_header": "nft inet %s" % NFT_TABLE,
                              "before": json.dumps(live) + "\n", "after": json.dumps(wanted) + "\n"})
            if not self.host.check_mode:
                self.host.change(["nft", "-f", "-"], data=nft_load_script(classes))
        return live, wanted

    def remove(self, devices, ifbs):
        """Everything of ours, nothing else: root/ingress qdiscs we set, our ifb devices, our nft table."""
        self.remove_parts({"root": devices, "ingress": devices, "ifbs": ifbs, "nft": True})

    def remove_parts(self, parts):
        """parts (tc_model.stale_parts): root qdiscs (ours are htb or tbf), ingress qdiscs, ifb devices,
        and the nft table, each where it still exists."""
        for dev in sorted(set(parts["root"]) | set(parts["ingress"])):
            if not self.link_exists(dev):
                continue
            live = self.read_tree(dev)
            if dev in parts["root"] and live["root"] and live["root"]["kind"] in ("htb", "tbf"):
                self.run_all(dev, [["tc", "qdisc", "del", "dev", dev, "root"]])
            if dev in parts["ingress"] and live["ingress"]:
                self.run_all(dev, [["tc", "qdisc", "del", "dev", dev, "ingress"]])
        for ifb in parts["ifbs"]:
            if self.link_exists(ifb):
                self.run_all(ifb, [["ip", "link", "del", ifb]])
        if parts["nft"] and self.read_nft() is not None:
            self.run_all("nft", [["nft", "delete", "table", "inet", NFT_TABLE]])

    # ------------------------------------------------------------------ one call of tc_shape
    def check(self, params):
        """Everything checked before the first change -> the request apply() takes. Raises InputError."""
        if params["oversubscription"] <= 0:
            raise InputError("oversubscription: %r must be more than 0" % params["oversubscription"])
        request = {"dev": None, "egress": None, "classes": [], "ingress": None, "tbf": []}
        dev = params["interface"]
        if dev == "auto":
            dev = self.default_interface()
        if dev and not self.link_exists(dev):
            raise InputError("interface: %r does not exist on this host" % params["interface"])
        request["dev"] = dev
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
                    raise InputError("%s.user: %r is listed twice (also egress.classes[%d])"
                                     % (where, cls["user"], seen[pw.pw_uid]))
                seen[pw.pw_uid] = i
                entry = rate_ceil(where, cls)
                entry.update(user=pw.pw_name, uid=pw.pw_uid, name="user %s" % pw.pw_name)
                request["classes"].append(entry)
            check_admission("egress on %s" % dev, link, default, request["classes"], params["oversubscription"])
            request["egress"] = {"link": link, "default": default}
        if params["ingress"]:
            if not dev:
                raise InputError("ingress: needs interface")
            request["ingress"] = parse_rate("ingress.rate", params["ingress"]["rate"])
        for i, itf in enumerate(params["interfaces"]):
            where = "interfaces[%d]" % i
            if not self.link_exists(itf["name"]):
                raise InputError("%s.name: %r does not exist on this host" % (where, itf["name"]))
            rate = parse_rate(where + ".tbf.rate", itf["tbf"]["rate"])
            request["tbf"].append({"dev": itf["name"], "rate": rate,
                                   "burst": tbf_burst(where + ".tbf.burst", itf["tbf"].get("burst"), rate)})
        return request

    def apply(self, params, result, is_systemd):
        """One call: state absent takes down everything of ours that tc.json lists; present checks the whole
        request first, then shapes egress, ingress and TBF interfaces, persists, records tc.json, and takes
        down what an earlier call set that this one does not want. Fills result."""
        state = json.loads(self.host.read(STATE_FILE) or "{}")
        if params["state"] == "absent":
            self.remove(state.get("devices", []), state.get("ifbs", []))
            self.persist([], None, False, is_systemd)
            if not self.host.check_mode and self.host.read(STATE_FILE) is not None:
                self.host.remove(STATE_FILE)
            return
        request = self.check(params)
        self.leaf = result["leaf"] = self.leaf_kind()
        restore, devices, ifbs, roots, ingress = [], [], [], [], []
        dev = request["dev"]
        if request["egress"]:
            ids = allocate_classids([c["uid"] for c in request["classes"]], dict(self.read_nft() or []))
            for cls in request["classes"]:
                cls["classid"] = ids[cls["uid"]]
            tree = egress_tree(request["egress"]["link"], request["egress"]["default"], request["classes"], self.leaf)
            _before, after = self.shape(dev, tree)
            self.classify(request["classes"])
            restore += tc_commands(dev, tree, diff_tree({}, tree))
            devices.append(dev)
            roots.append(dev)
            result.update(interface=dev, tree=after,
                          classes=[{"user": c["user"], "uid": c["uid"], "classid": c["classid"],
                                    "rate": format_rate(c["rate"]), "ceil": format_rate(c["ceil"])}
                                   for c in request["classes"]])
        if request["ingress"]:
            ifb = ifb_name(dev)
            rate = request["ingress"]
            tree = egress_tree(rate, {"rate": rate, "ceil": rate}, [], self.leaf)
            _before, ifb_after = self.ensure_ingress(dev, ifb, tree)
            restore += ingress_commands(dev, ifb) + tc_commands(ifb, tree, diff_tree({}, tree))
            devices.append(dev)
            ingress.append(dev)
            ifbs.append(ifb)
            result["ingress"] = {"mode": "interface", "device": ifb, "rate": format_rate(rate), "per_user": False,
                                 "tree": ifb_after}
        for tbf in request["tbf"]:
            cmd_tree = {"root": {"kind": "tbf", "rate": tbf["rate"], "burst": tbf["burst"]}}
            live = self.read_tree(tbf["dev"])
            if not tbf_matches(live["root"], tbf["rate"] // 8, tbf["burst"]):
                self.run_all(tbf["dev"], tc_commands(tbf["dev"], cmd_tree, [("root",)]))
            restore += tc_commands(tbf["dev"], cmd_tree, [("root",)])
            devices.append(tbf["dev"])
            roots.append(tbf["dev"])
        nft = nft_load_script(request["classes"]) if request["egress"] else None
        self.persist(restore, nft, params["persist"], is_systemd)
        new_state = {"devices": sorted(set(devices)), "ifbs": ifbs, "root": sorted(set(roots)),
                     "ingress": sorted(set(ingress)), "nft": bool(request["egress"])}
        # what an earlier run set and this one does not want goes (an ingress, a tbf, an interface)
        self.remove_parts(stale_parts(state, new_state))
        if new_state != state and not self.host.check_mode:
            self.host.write_atomic(STATE_FILE, json.dumps(new_state, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ persistence
    def persist(self, commands, nft_script, enabled, is_systemd):
        script = MANAGED_HEADER + "\n# Rebuilds the shaping of fairshare.resources.tc_shape at boot.\nset -e\n" + \
            "".join(" ".join(_quote(a) for a in argv) + "\n" for argv in commands) + \
            ("nft -f - <<'FAIRSHARE_NFT'\n%sFAIRSHARE_NFT\n" % nft_script if nft_script else "")
        files = {RESTORE_SCRIPT: script, UNIT_FILE: UNIT} if enabled else {}
        changes = Changes(self.host)
        unit_changed = False
        for path, mode in ((RESTORE_SCRIPT, 0o755), (UNIT_FILE, 0o644)):
            new = files.get(path)
            if path == UNIT_FILE and not is_systemd:
                if new and self.host.read(path) != new:
                    self.warnings.append("persist: no systemd here; run %s from your boot scripts" % RESTORE_SCRIPT)
                continue
            unit_changed = changes.file(path, new, mode) and path == UNIT_FILE
        self.actions += changes.actions
        self.diff += changes.diff
        if is_systemd and not self.host.check_mode and unit_changed:
            self.host.change(["systemctl", "daemon-reload"])
            self.host.run(["systemctl", "enable" if enabled else "disable", "fairshare-tc.service"], check=False)


def _quote(arg):
    return arg if arg and all(c.isalnum() or c in "-_.:/=" for c in arg) else "'%s'" % arg.replace("'", "'\"'\"'")


def render_tree(tree):
    lines = ["root: %s" % json.dumps(tree.get("root"), sort_keys=True)]
    for cid, cls in sorted(tree.get("classes", {}).items()):
        lines.append("class %s parent %s rate %s ceil %s" % (cid, cls.get("parent"), cls.get("rate"), cls.get("ceil")))
    for cid, kind in sorted(tree.get("leaves", {}).items()):
        lines.append("leaf %s %s" % (cid, kind))
    return "\n".join(lines) + "\n"

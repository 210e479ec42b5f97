# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backends of cgroup_limit: systemd drop-ins and raw cgroupfs (v1 and v2).

No AnsibleModule import: a backend gets a `host` object with run(argv),
read(path), write_atomic(path, text), and check_mode; the module passes a thin
adapter around AnsibleModule, tests pass a fake or a real host on a scratch tree.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import glob
import json
import os
import pwd

from ansible_collections.fairshare.resources.plugins.module_utils.accounts import Accounts, NotFound
from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import (
    CPU_PERIOD_US, DROPIN_NAME, INHERIT, IO_WEIGHT_FILES, MANAGED_HEADER, PER_DEVICE, USER_LEAF_RE, cgroup_relpath, check_protected, check_under,
    LIMIT_FIELDS, LimitsMemo, controllers_needed, limits_key, devnum_of, device_reset, display_limits, expected_files, normalize_limits,
    active_candidates, parse_systemctl_show, parse_target, plain_unit_name, render_dropin, reset_files, reset_value, same_value,
    systemd_supported,
)
from ansible_collections.fairshare.resources.plugins.module_utils.cgroupfs_persist import (
    SCRIPT_DIR, SESSION_LEAF, parse_targets, render_targets, script_is_current, script_path,
)
from ansible_collections.fairshare.resources.plugins.module_utils.host import Changes
from ansible_collections.fairshare.resources.plugins.module_utils.platform import controller_home, read_sys_uid_max
from ansible_collections.fairshare.resources.plugins.module_utils.errors import HostError, InputError, VerificationError


# Cgroups of container engines and VM managers: a user's process in one of them is in a
# container's limits, and moving it out would break the container. Data, not code: a path
# with one of these words as (part of) a component is left alone.
CONTAINER_CGROUP_WORDS = ("docker", "containerd", "libpod", "podman", "lxc", "kubepods", "crio", "machine", "garden",
                          "buildkit", "incus", "lxd")


def parse_proc_cgroup(text):
    """/proc/PID/cgroup -> {controller: path}; the v2 line is under ''."""
    paths = {}
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            paths[""] = parts[2]
        for ctrl in parts[1].split(","):
            if ctrl:
                paths[ctrl] = parts[2]
    return paths


def in_container_cgroup(path):
    return any(word in part for part in path.strip("/").split("/") for word in CONTAINER_CGROUP_WORDS)


def adoption_moves(processes, users, parent):
    """Which running processes go where.

    processes: [(pid, uid, {controller: path})] as read from /proc;
    users: {uid: [(controller, target cgroup dir)]} (the target: the user's cgroup, the session
    leaf on v2), controller '' for the v2 hierarchy;
    -> (moves [(pid, uid, target dir)], left {uid: number of processes left where they are
    because a container engine's cgroup holds them}).
    A process already anywhere below the managed parent is not moved (a workload, a session).
    """
    moves, left = [], {}
    for pid, uid, paths in processes:
        for ctrl, target in users.get(uid, ()):
            where = paths.get(ctrl)
            if where is None:
                continue
            rel = where.strip("/")
            if rel == parent or rel.startswith(parent + "/"):
                continue
            if in_container_cgroup(where):
                left[uid] = left.get(uid, 0) + 1
                break
            moves.append((pid, uid, target))
    return moves, left


class _Layout(object):
    """Where each controller of the host's cgroup layout lives (platform.controller_home)."""

    layout = None

    def _home(self, controller):
        try:  # asked per target and file: looked up once per layout
            return self._homes[controller]
        except (AttributeError, KeyError):
            if getattr(self, "_homes_of", None) is not self.layout:
                self._homes, self._homes_of = {}, self.layout
            home = self._homes[controller] = controller_home(self.layout, controller)
            return home

    def version_of(self, controller):
        return self._home(controller)[0]

    def devnum(self, device):
        """A block device as MAJ:MIN, stat'ed through the host (cgroup_model.devnum_of)."""
        return devnum_of(device, self.host.stat)

    def root_of(self, controller):
        return self._home(controller)[1]

    def _entries(self, directory):
        """The names in a directory (none where it cannot be listed), listed once per call of a backend: whether
        10,000 users' cgroups or drop-in directories exist is one listdir, not 10,000 stats or failed opens."""
        listings = self.__dict__.setdefault("_listings", {})
        if directory not in listings:
            try:
                listings[directory] = set(os.listdir(directory))
            except OSError:
                listings[directory] = set()
        return listings[directory]


class Target(object):
    """One validated target: what the user asked, resolved on this host. A user_defaults mask is a user
    target without limits (a drop-in that keeps the template off the user)."""

    def __init__(self, index, kind, name, uid, state, limits, parent, under=None, keep_running=False):
        self.index, self.kind, self.name, self.uid = index, kind, name, uid
        self.state, self.limits, self.under, self.keep_running = state, limits, under, keep_running
        self.relpath = cgroup_relpath(kind, name, uid, parent, under)
        self.unit = "user-%d.slice" % uid if kind == "user" else (name if kind == "slice" else None)

    @property
    def label(self):
        return "%s:%s" % (self.kind, self.name)

    def result(self):
        return {"target": self.label, "kind": self.kind, "name": self.name, "uid": self.uid,
                "state": self.state, "changed": False, "warnings": []}


def resolve_user(value, where, accounts=None):
    try:
        entry = (accounts or Accounts()).user(value)
    except NotFound:
        raise InputError("%s.user: %r is not a user on this host (not in the passwd database)" % (where, value))
    return entry.pw_name, entry.pw_uid


def build_targets(entries, state, force, parent, devnum, sys_uid_max=999, first=0):
    """Validate every limits entry of cgroup_limit before anything changes; return Plans.

    state, force, parent: the module's defaults for every entry; devnum(device) checks io devices;
    sys_uid_max: system users (platform.read_sys_uid_max) are refused without force; first: how many
    entries come from limits_json (named limits_json[N] in errors; the rest limits[N]).
    """
    plans, seen = [], {}
    accounts = Accounts(expected=len(entries))
    normalize = LimitsMemo(force)
    for index, entry in enumerate(entries):
        where = "limits_json[%d]" % index if index < first else "limits[%d]" % (index - first)
        kind, name = parse_target(entry, where)
        uid = under = None
        if entry.get("under") not in (None, ""):
            if kind != "user":
                raise InputError("%s.under: only a user's cgroup goes under a level (this entry names a %s)" % (where, kind))
            under = check_under(entry["under"], where)
        if kind == "user":
            name, uid = resolve_user(name, where, accounts)
        check_protected(kind, name, uid, force, where, sys_uid_max)
        wanted = entry.get("state") or state
        keep = bool(entry.get("keep_running"))
        if keep and (wanted != "absent" or kind == "path"):
            raise InputError("%s.keep_running: only for a user or slice target with state absent (this one: %s, %s)"
                             % (where, kind, wanted))
        limits = normalize(entry, where) if wanted == "present" else {}
        for rule in limits.get("io_max", []):
            devnum(rule["device"])  # the device must exist now, not at apply time
        plan = Target(index, kind, name, uid, wanted, limits, parent, under, keep)
        key = plan.unit or plan.relpath
        if key in seen:
            raise InputError("%s: %s is the same target as %s" % (where, plan.label, seen[key]))
        seen[key] = where
        plans.append(plan)
    return plans


# --------------------------------------------------------------------------- systemd: every user's defaults

TEMPLATE_UNIT = "user-.slice"  # its drop-ins apply to every user-UID.slice (systemd 239 and later)
MASK_TEXT = MANAGED_HEADER + "\n[Slice]\n"  # a per-user drop-in of the template's name with no limit in it
TEMPLATE_MIN_SYSTEMD = 239
LOGIN_RUNTIME_DROPIN = "55-fairshare-login.conf"  # login.RUNTIME_DROPIN (login.py imports this module)
# keep_running: a removed slice's limits for what still runs in it, until the next boot; named before ours
# (50-fairshare.conf), so that a drop-in of ours on the same unit overrides it until the next run removes it
KEPT_RUNTIME_DROPIN = "45-fairshare-running.conf"
# Where systemd reads drop-ins from, highest priority first (systemd.unit(5)).
DROPIN_ROOTS = ("/etc/systemd/system.control", "/run/systemd/system.control", "/run/systemd/transient",
                "/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
                "/usr/lib/systemd/system", "/lib/systemd/system")


def template_targets(plans, limits, exempt, sys_uid_max, parent, passwd=None, has_own=lambda unit: False):
    """The plans of user_defaults: the template user-.slice (present with limits, else absent) and
    a mask - a drop-in of the same name without limits, which replaces the template's for that user
    - for root, every local system user (uid up to sys_uid_max), the exempt users and listed users
    with state absent (unlimited ones). A user whose slice already has limits of ours (an earlier call
    gave them their own) keeps them: has_own(unit). -> (plans with the absent users turned into masks,
    extra plans)."""
    passwd = pwd.getpwall() if passwd is None else passwd
    extra = [Target(-1, "slice", TEMPLATE_UNIT, None, "present" if limits else "absent", limits, parent)]
    if not limits:
        return plans, extra
    listed = dict((p.uid, p) for p in plans if p.kind == "user")
    out = []
    for plan in plans:
        if plan.kind == "user" and plan.state == "absent":
            plan = Target(plan.index, "user", plan.name, plan.uid, "present", {}, parent)
        out.append(plan)
    masks = {0: "root"}
    for entry in passwd:
        if entry.pw_uid <= sys_uid_max:
            masks.setdefault(entry.pw_uid, entry.pw_name)
    for i, value in enumerate(exempt):
        name, uid = resolve_user(str(value), "user_defaults_exempt[%d]" % i)
        masks[uid] = name
    for uid, name in sorted(masks.items()):
        if uid not in listed and not has_own("user-%d.slice" % uid):
            extra.append(Target(-2, "user", name, uid, "present", {}, parent))
    return out, extra


def _user_slice_dropins(root):
    """[(unit, file name, path)] of root/user-*.slice.d/*.conf (glob's matches, in its sorted order), from
    directory listings: glob matched each of 10,000 users' directories against both patterns (3.5 s in a TCG
    guest under cProfile)."""
    try:
        dirs = [d for d in os.listdir(root) if d.startswith("user-") and d.endswith(".slice.d")]
    except OSError:
        return []
    found = []
    for directory in dirs:
        try:
            names = os.listdir(os.path.join(root, directory))
        except OSError:  # not a directory, or gone meanwhile
            continue
        found.extend((directory[:-2], name, os.path.join(root, directory, name)) for name in names
                     if name.endswith(".conf") and not name.startswith("."))
    return sorted(found, key=lambda item: item[2])


def dropin_overrides(read, props_of, roots=DROPIN_ROOTS, ours_root="/etc/systemd/system", limit=50):
    """Drop-ins not ours that override what ours set for user slices: a file parsed after ours
    (a name that sorts after 50-fairshare.conf, in any drop-in directory of user-.slice or a
    user-UID.slice) that sets one of the same properties, or a file of our name in a directory
    systemd reads before /etc/systemd/system. props_of(unit): the properties ours set for that unit
    (the template's for a user without a drop-in of their own); asked only for units that have
    a drop-in of someone else.
    -> [{path, unit, properties}] (at most limit)."""
    found = []
    earlier = roots[:roots.index(ours_root)] if ours_root in roots else roots
    for root in roots:
        for unit, name, path in _user_slice_dropins(root):
            if name < DROPIN_NAME or (name == DROPIN_NAME and root not in earlier):
                continue  # parsed before ours, or ours (a file of our name where ours is, or below it, loses)
            text = read(path) or ""
            if text.startswith(MANAGED_HEADER):
                continue
            ours = props_of(unit)
            if not ours:
                continue
            keys = set(line.split("=", 1)[0].strip() for line in text.splitlines()
                       if "=" in line and not line.lstrip().startswith(("#", ";")))
            hit = sorted(keys & ours if name != DROPIN_NAME else ours)
            if hit:
                found.append({"path": path, "unit": unit, "properties": hit})
                if len(found) >= limit:
                    return found
    return found


def _lines(props):
    return dict(line.split("=", 1) for line in props if "=" in line)


# --------------------------------------------------------------------------- systemd

class SystemdBackend(_Layout):
    name = "systemd"

    def __init__(self, host, layout, unit_dir="/etc/systemd/system", runtime_dir="/run/systemd/system", systemd=None):
        self.host, self.layout, self.unit_dir, self.runtime_dir = host, layout, unit_dir, runtime_dir
        self.version = "v1" if "memory" in layout["v1"] else "v2"
        self.systemd = systemd  # the release (252); None: not known, every property is written

    def dropin_path(self, unit):
        return os.path.join(self.unit_dir, unit + ".d", DROPIN_NAME)

    def mask_units(self):
        """Units whose drop-in of ours is a mask (no limits: keeps user_defaults off that user)."""
        return sorted(unit for unit, path in self.managed_dropins().items() if self.host.read(path) == MASK_TEXT)

    def login_dropin(self, plan):
        """The runtime drop-in the login resolver (login.py) gave a user's slice before the role listed
        them, when there is one of ours: it is parsed after ours and would win until the next boot."""
        if plan.kind != "user" or self.runtime_dir is None:
            return None
        if plan.unit + ".d" not in self._entries(self.runtime_dir):  # not a failed open per user (TCG: about 1 s)
            return None
        path = os.path.join(self.runtime_dir, plan.unit + ".d", LOGIN_RUNTIME_DROPIN)
        return path if (self.host.read(path) or "").startswith(MANAGED_HEADER) else None

    def managed_dropins(self):
        found = {}
        for path in glob.glob(os.path.join(self.unit_dir, "*.slice.d", DROPIN_NAME)):
            text = self.host.read(path) or ""
            if text.startswith(MANAGED_HEADER):
                found[os.path.basename(os.path.dirname(path))[:-2]] = path
        return found

    def kept_dropin(self, plan):
        """The runtime drop-in a call with keep_running left on this unit while something ran in it, when
        there is one of ours (a unit that gets limits again: the new drop-in is the one that holds)."""
        if plan.state != "present" or self.runtime_dir is None or plan.unit + ".d" not in self._entries(self.runtime_dir):
            return None
        directory = os.path.join(self.runtime_dir, plan.unit + ".d")
        if KEPT_RUNTIME_DROPIN not in self._entries(directory):  # a listing, not a failed open per unit
            return None
        path = os.path.join(directory, KEPT_RUNTIME_DROPIN)
        return path if (self.host.read(path) or "").startswith(MANAGED_HEADER) else None

    def keep_while_running(self, keep, changes, diffs):
        """keep_running: systemd does not move a running unit to another slice, so a slice that loses its
        drop-in while units run in it would leave them without limits. Where such a slice is active, its
        limits go to a runtime drop-in (KEPT_RUNTIME_DROPIN in /run: gone at the next boot, with what ran)."""
        if not keep or self.runtime_dir is None:
            return
        candidates = self.maybe_active([plan.unit for plan, _res, _text in keep])
        unsure = [u for u in candidates if not plain_unit_name(u)]  # list-units could not be asked about them
        shown = parse_systemctl_show(self.host.run(["systemctl", "show", "-p", "Id", "-p", "ActiveState"] + unsure)) \
            if unsure else []
        active = set(u for u in candidates if plain_unit_name(u)) | \
            set(u.get("Id") for u in shown if u.get("ActiveState") == "active")
        for plan, res, text in keep:
            if plan.unit not in active:
                continue
            path = os.path.join(self.runtime_dir, plan.unit + ".d", KEPT_RUNTIME_DROPIN)
            res["kept_running"] = path
            old = self.host.read(path)
            if old != text:
                changes.append((path, text))
                diffs.append({"before_header": path, "after_header": path, "before": old or "", "after": text})

    def maybe_active(self, names):
        """The units of names that may be active: those `systemctl list-units --state=active` lists (it matches
        loaded units only: `systemctl show` of a unit not loaded loads it from disk, 14 s for 1,000 user slices
        in a TCG guest), and every name with fnmatch characters, which it cannot be asked about."""
        return active_candidates(names, self.host.run(
            ["systemctl", "list-units", "--no-legend", "--plain", "--full", "--state=active"]
            + [n for n in names if plain_unit_name(n)]))

    def apply(self, plans, exclusive):
        results, diffs, changes, applied, keep = [], [], [], [], []
        for plan in plans:
            res = plan.result()
            res.update(unit=plan.unit, path=self.dropin_path(plan.unit), cgroup_parent=plan.unit)
            current = self.host.read(res["path"])
            if plan.state == "present":
                limits, unknown = systemd_supported(plan.limits, self.version, self.systemd)
                wanted, warnings = render_dropin(limits, self.version)
                res["warnings"].extend(unknown + warnings)
                res["after"] = display_limits(limits)
            else:
                wanted, limits = None, {}
                res["after"] = {}
            res["before"] = _lines((current or "").splitlines()[1:]) if current else {}
            if plan.state == "absent" and plan.keep_running and current and current.startswith(MANAGED_HEADER):
                keep.append((plan, res, current))
            if current != wanted:
                res["changed"] = True
                changes.append((res["path"], wanted))
                diffs.append({"before_header": res["path"], "after_header": res["path"],
                              "before": current or "", "after": wanted or ""})
            for runtime in (self.login_dropin(plan), self.kept_dropin(plan)):
                if runtime:  # the login resolver's, or one kept while a unit ran: ours wins again
                    res["changed"] = True
                    changes.append((runtime, None))
                    diffs.append({"before_header": runtime, "after_header": runtime,
                                  "before": self.host.read(runtime) or "", "after": ""})
            results.append(res)
            applied.append(limits)
        self.keep_while_running(keep, changes, diffs)
        removed = []
        if exclusive:
            listed = set(p.unit for p in plans)
            for unit, path in sorted(self.managed_dropins().items()):
                if unit not in listed:
                    removed.append({"target": unit, "unit": unit, "path": path})
                    changes.append((path, None))
                    diffs.append({"before_header": path, "after_header": path,
                                  "before": self.host.read(path) or "", "after": ""})
        reloaded = False
        if changes and not self.host.check_mode:
            for path, text in changes:
                if text is None:
                    self.host.remove(path)
                else:
                    self.host.write_atomic(path, text)
            self.host.change(["systemctl", "daemon-reload"])
            reloaded = True
        self.verify(plans, results, applied)
        return {"targets": results, "removed": removed, "diff": diffs, "daemon_reload": reloaded,
                "changed": bool(changes)}

    def verify(self, plans, results, applied):
        """Read what the kernel enforces now for every active unit. applied: per plan, the limits its drop-in
        holds (those this systemd release knows). `systemctl show` of a unit systemd has not loaded loads it
        from disk (14 s for 1,000 slices of users who are not logged in, in a TCG guest), so list-units,
        which matches loaded units only, says first which of them are active, and only those are shown."""
        pairs = [(p, r, a) for p, r, a in zip(plans, results, applied) if p.unit != TEMPLATE_UNIT]
        if not pairs:
            return
        units = self.maybe_active([p.unit for p, _r, _a in pairs])
        shown = {}
        if units:
            argv = ["systemctl", "show", "-p", "Id", "-p", "ActiveState", "-p", "ControlGroup"] + units
            shown = dict((u.get("Id"), u) for u in parse_systemctl_show(self.host.run(argv)))
        for plan, res, limits in pairs:
            unit = shown.get(plan.unit, {})
            res["active"] = unit.get("ActiveState") == "active"
            cgroup = unit.get("ControlGroup") or ""
            res["verified"] = {}
            if not res["active"] or not cgroup or plan.state != "present":
                continue
            files, _w = expected_files(limits, self.version_of, devnum=self.devnum)
            for ctrl, fname, want in files:
                live = self.host.read(os.path.join(self.root_of(ctrl), cgroup.lstrip("/"), fname))
                res["verified"][fname] = (live or "").strip()
                if not self.host.check_mode and not same_value(fname, want, live):
                    res["warnings"].append("%s of %s reads %r, expected %r" % (fname, plan.unit, (live or "").strip(), want))


# --------------------------------------------------------------------------- cgroupfs

class CgroupfsBackend(_Layout):
    name = "cgroupfs"

    def __init__(self, host, layout, parent="fairshare", script_dir=None):
        self.host, self.layout, self.parent = host, layout, parent.strip("/")
        self.script_dir = script_dir or SCRIPT_DIR  # looked up here: module tests point it at a scratch dir
        self.planned = []
        self.dropped = []  # relpaths this call removed (state absent, exclusive)
        self.left = []  # cgroups under the parent we did not make, left as they are
        self.above_ctrls = {}  # user relpath -> controllers a level above limits and the user does not (_join_totals)
        self.user_homes = {}  # uid -> relpath of the user's cgroup this call keeps (_destination)

    def dir_of(self, controller, relpath):
        return self.root_of(controller).rstrip("/") + "/" + relpath  # os.path.join's answer for a relative path, faster

    def accounting(self):
        """'cpuacct' where cgroup v1 mounts it apart from cpu (a user's CPU time is only there), else None.
        A user target then gets a cgroup in that hierarchy too, without limits, that its logins and adopted
        processes join, so resource_usage and fairshare-usage can report the user's CPU time."""
        v1 = self.layout.get("v1") or {}
        return "cpuacct" if "cpuacct" in v1 and v1.get("cpu") != v1["cpuacct"] else None

    def controllers_of(self, plan, files):
        """The hierarchies a present target has a cgroup in: those of its files, and accounting() for a user."""
        found = controllers_needed(files)
        acct = self.accounting()
        if acct and plan.kind == "user" and acct not in found:
            found.append(acct)
        for ctrl in self.above_ctrls.get(plan.relpath, ()):
            if ctrl not in found:
                found.append(ctrl)
        return found

    def read_value(self, path):
        text = self.host.read_kernel(path)
        return None if text is None else text.strip()

    def registry_path(self):
        """Where the cgroups our calls made under this parent are listed (next to the persist script)."""
        return os.path.join(self.script_dir, "cgroupfs-%s.json" % self.parent.replace("/", "-"))

    def _with_ancestors(self, relpath):
        """relpath and every level between it and the parent (the levels a call makes)."""
        parts = relpath.split("/")
        return set("/".join(parts[:i]) for i in range(len(self.parent.split("/")), len(parts) + 1))

    def _made(self):
        """-> (the relpaths of the cgroups our calls made under this parent, {relpath: [files our calls
        wrote a limit to]} or None where the registry does not say): the registry, else (a tree of an
        older version) what the persist script covers, else nothing."""
        text = self.host.read(self.registry_path())
        if text is not None:
            try:
                doc = json.loads(text)
                return set(doc.get("made", [])), doc["set"] if isinstance(doc.get("set"), dict) else None
            except (ValueError, AttributeError):
                pass
        script = self.host.read(script_path(self.parent, self.script_dir))
        if script is None and not self._existing_dirs(self.parent):
            return set(), {}  # no call of ours has been here: no limit of ours to lift, nothing to read for it
        made = set()
        for relpath in parse_targets(script):
            made |= self._with_ancestors(relpath)
        return made, None

    def _foreign_below(self, relpath, made):
        """Existing cgroups at or below relpath that none of our calls made (a session leaf is ours):
        a container engine's, another program's. Such a cgroup and the ones above it are never removed."""
        found = set()
        for root in self._controller_roots():
            for dirpath, dirnames, _files in os.walk(os.path.join(root, relpath)):
                rel = os.path.relpath(dirpath, root)
                if rel not in made and os.path.basename(rel) != SESSION_LEAF:
                    found.add(rel)
                    dirnames[:] = []  # what is below a foreign cgroup is foreign too
        return sorted(found)

    def _listed(self, cdir):
        """Whether a cgroup directory exists, from the listing of the directory it is in (_entries)."""
        top, _sep, name = cdir.rstrip("/").rpartition("/")
        return name in self._entries(top)

    def apply(self, plans, exclusive):
        results, planned, diffs, writes, removals, accounting = [], [], [], [], [], []
        self._listings = {}  # the planning's listings (_entries); dropped before the first change
        acct = self.accounting()
        made, was_set = self._made()
        self.left = []  # foreign cgroups that kept one of ours from being removed
        files_of = {}  # the same limits give the same files: worked out once per distinct set (10,000 users, a few tiers)
        self.user_homes = dict((plan.uid, plan.relpath) for plan in plans if plan.kind == "user" and plan.state == "present")
        by_uid = self._user_cgroups(was_set)
        for plan in plans:
            res = plan.result()
            res.update(path=plan.relpath, cgroup_parent="/" + plan.relpath)
            weight = self.io_weight_file(plan.relpath) if plan.state == "present" else None
            files, warnings = self._expected(plan.limits, weight, files_of) if plan.state == "present" else ([], [])
            res["warnings"].extend(warnings)
            planned.append(files)
            if plan.state == "present":
                self.planned.append((plan, files))
            before, after, todo = {}, {}, []
            dirs = {}
            for ctrl, fname, want in files:
                if ctrl not in dirs:
                    dirs[ctrl] = self.dir_of(ctrl, plan.relpath) + "/"
                # a cgroup not made yet has no file to read (a first run: 50,000 failed opens at 10,000 users)
                live = self.read_value(dirs[ctrl] + fname) if self._listed(dirs[ctrl]) else None
                before[fname] = live
                after[fname] = want
                if not same_value(fname, want, live):
                    todo.append((ctrl, fname, want))
            if plan.state == "present":
                todo.extend(self._resets(plan, files, before, after, weight,
                                         None if was_set is None else was_set.get(plan.relpath, ())))
                res["after"] = display_limits(plan.limits)
                if acct and plan.kind == "user" and not self._listed(self.dir_of(acct, plan.relpath)):
                    before[acct], after[acct] = "absent", "made (CPU time only)"
                    accounting.append(plan)
                    res["changed"] = True
            else:
                dirs = self._existing_dirs(plan.relpath)
                foreign = self._foreign_below(plan.relpath, made | self._with_ancestors(plan.relpath)) if dirs else []
                if foreign:
                    res["warnings"].append("%s holds cgroups this module did not make (%s): left as it is"
                                           % (plan.relpath, ", ".join(foreign[:5])))
                    self.left.extend(foreign)
                elif dirs:
                    removals.append((plan.relpath, dirs))
                    res["changed"] = True
                    before["exists"] = True
                    after["exists"] = False
                res["after"] = {}
            if plan.kind == "user":
                for other in self._elsewhere(plan, by_uid, removals):
                    foreign = self._foreign_below(other, made)
                    if foreign:
                        res["warnings"].append("%s (an earlier cgroup of this user) holds cgroups this module did not "
                                               "make (%s): left as it is" % (other, ", ".join(foreign[:5])))
                        self.left.extend(f for f in foreign if f not in self.left)
                        continue
                    removals.append((other, self._existing_dirs(other)))
                    res["changed"] = True
                    before["moved_from"] = other
                    after["moved_from"] = "removed, its processes %s" % (
                        "moved here" if plan.state == "present" else "out of the parent")
            res["before"] = before
            if todo:
                res["changed"] = True
                writes.append((plan, todo))
            if res["changed"]:
                diffs.append({"before_header": "/" + plan.relpath, "after_header": "/" + plan.relpath,
                              "before": _render(before), "after": _render(after)})
            results.append(res)
        self._listings = {}
        joins = self._join_totals(plans, results, diffs, was_set)
        self._check_v1_quotas(plans, planned)
        removed = []
        if exclusive:
            keep = set()
            for plan in plans:
                if plan.state == "present":
                    parts = plan.relpath.split("/")
                    keep.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
                    keep.add(plan.relpath + "/" + SESSION_LEAF)
            # only cgroups our calls made, shallowest first; one that holds a cgroup we did not
            # make (a container's, another program's) stays, with the levels above it
            stale = sorted((r for r in made if r not in keep and self._existing_dirs(r)),
                           key=lambda r: (r.count("/"), r))
            for relpath in stale:
                if relpath not in keep and not any(relpath == r or relpath.startswith(r + "/") for r, _d in removals):
                    foreign = self._foreign_below(relpath, made)
                    if foreign:
                        self.left.extend(f for f in foreign if f not in self.left)
                        continue
                    dirs = self._existing_dirs(relpath)
                    removals.append((relpath, dirs))
                    removed.append({"target": relpath, "path": relpath})
                    diffs.append({"before_header": "/" + relpath, "after_header": "/" + relpath,
                                  "before": "exists: true\n", "after": "exists: false\n"})
            for relpath in self._managed_children():  # the tops of trees we did not make are reported
                top = os.path.dirname(relpath)
                if relpath not in made and relpath not in keep and os.path.basename(relpath) != SESSION_LEAF and \
                        (top in made or top == self.parent) and relpath not in self.left:
                    self.left.append(relpath)
        self.dropped = [relpath for relpath, _dirs in removals]
        after_made = set(made)
        for plan, _files in self.planned:
            after_made |= self._with_ancestors(plan.relpath)
        for relpath in self.dropped:
            after_made = set(r for r in after_made if r != relpath and not r.startswith(relpath + "/"))
        # the files each target has from us: what a later call must lift when a limit leaves the policy
        after_set = dict((r, names) for r, names in (was_set or {}).items() if r in after_made)
        for plan, files in self.planned:
            after_set[plan.relpath] = sorted(set(f for _c, f, _v in files))
        if not self.host.check_mode:
            # what will be made is registered first: a run that fails half-way leaves nothing unknown
            making = made | after_made
            making_set = dict(was_set or {})
            for relpath, names in after_set.items():  # until the resets are done, the old files count too
                making_set[relpath] = sorted(set(names) | set(making_set.get(relpath, ())))
            if making != made or making_set != was_set:
                self._register(making, making_set)
            for plan in accounting:
                self._ensure_dir(acct, plan.relpath)
            for plan, ctrl in joins:
                self._ensure_dir(ctrl, plan.relpath)
            for plan, todo in self._ordered(writes):
                self._write(plan, todo)
            for relpath, dirs in removals:
                self._remove(dirs)
            if after_made != making or after_set != making_set or \
                    (after_made and self.host.read(self.registry_path()) is None):
                self._register(after_made, after_set)
        written = dict((plan.relpath, set(t[1] for t in todo)) for plan, todo in writes)
        for plan, res, files in zip(plans, results, planned):
            if plan.state == "present":
                # read back what was written; the rest was read a moment ago and matched
                wrote = written.get(plan.relpath, ())
                res["verified"] = dict((f, self.read_value(self.dir_of(c, plan.relpath) + "/" + f)
                                        if f in wrote else res["before"].get(f)) for c, f, _v in files)
                if not self.host.check_mode:  # a file not written was read above and matched (else it was written)
                    for c, f, v in files:
                        if f in wrote and not same_value(f, v, res["verified"][f]):
                            raise VerificationError("%s: wrote %r to %s but the kernel reads back %r"
                                                    % (plan.label, v, f, res["verified"][f]))
            else:
                res["verified"] = {}
        return {"targets": results, "removed": removed, "diff": diffs, "left": self.left[:50],
                "changed": bool(writes or removals or accounting or joins), "parent": self.parent}

    def _user_cgroups(self, was_set):
        """{uid: [relpath, ...]}: the registry's targets named user-UID under this parent (the user cgroups
        earlier calls made, wherever they put them)."""
        found = {}
        for relpath in was_set or ():
            match = USER_LEAF_RE.match(relpath.rpartition("/")[2])
            if match and relpath.startswith(self.parent + "/"):
                found.setdefault(int(match.group(1)), []).append(relpath)
        return found

    def _elsewhere(self, plan, by_uid, removals):
        """The other cgroups of a user target's uid that our calls made under this parent (by_uid:
        _user_cgroups). A user has one cgroup: a call that puts it elsewhere, e.g. under another tier's
        level, takes the old one away and moves its processes into the new one. Existing ones only, none
        already being removed."""
        out = []
        for relpath in sorted(by_uid.get(plan.uid, ())):
            if relpath != plan.relpath and self._existing_dirs(relpath) and \
                    not any(relpath == r or relpath.startswith(r + "/") for r, _d in removals):
                out.append(relpath)
        return out

    def _join_totals(self, plans, results, diffs, was_set):
        """A user's cgroup is made (without limits) in every cgroup v1 hierarchy where a level above it has
        a limit of ours - the total of a tier (under) or of all users (the parent) - so that its logins and
        processes are under that total there too, not only where the user has limits of their own (on v2,
        where the user has no limit at all: a user of a tier with a total and nothing of their own).
        -> [(plan, controller)] to make; sets above_ctrls, which controllers_of adds."""
        self.above_ctrls = {}
        planned = dict((plan.relpath, files) for plan, files in self.planned)
        known = {}

        def limited(relpath):
            """The controllers a cgroup has limits of ours in: this call's files, else the registry's (a level
            this call does not list, e.g. for the login resolver); looked up for the user's levels only."""
            if relpath not in known:
                files = planned.get(relpath)
                known[relpath] = set(controllers_needed(files)) if files is not None else \
                    set(n.split(".", 1)[0] for n in (was_set or {}).get(relpath, ()))
            return known[relpath]
        joins = []
        for plan, res in zip(plans, results):
            if plan.kind != "user" or plan.state != "present":
                continue
            parts = plan.relpath.split("/")
            above = set()
            for i in range(len(self.parent.split("/")), len(parts)):
                above |= limited("/".join(parts[:i]))
            if not above:
                continue
            own = set(controllers_needed(planned[plan.relpath]))
            wanted = sorted(c for c in above - own if self.version_of(c) == "v1")
            unified = sorted(c for c in above if self.version_of(c) == "v2")
            if unified and not any(self.version_of(c) == "v2" for c in own):  # v2: one cgroup for all of them
                wanted.append(unified[0])
            if not wanted:
                continue
            self.above_ctrls[plan.relpath] = wanted
            new = [c for c in wanted if not os.path.isdir(self.dir_of(c, plan.relpath))]
            if new:
                joins.extend((plan, c) for c in new)
                res["before"].update((c, "absent") for c in new)
                res["changed"] = True
                diffs.append({"before_header": "/" + plan.relpath, "after_header": "/" + plan.relpath,
                              "before": "".join("%s: absent\n" % c for c in new),
                              "after": "".join("%s: made (no limit of its own; under the total above it)\n" % c
                                               for c in new)})
        return joins

    def _expected(self, limits, weight, known):
        """expected_files of one target's limits, from known ({key: answer}) where an earlier target had
        the same values (limits_key; an io_max list is not a key: worked out each time)."""
        key = limits_key(limits)
        if key is None:
            return expected_files(limits, self.version_of, devnum=self.devnum, io_weight_file=weight)
        if (key, weight) not in known:
            known[(key, weight)] = expected_files(limits, self.version_of, devnum=self.devnum, io_weight_file=weight)
        return known[(key, weight)]

    def _quota_now(self, relpath, planned_quota):
        """A cgroup's CPU quota in CPUs (inf: no limit) after this run."""
        text = planned_quota.get(relpath)
        if text is None:
            text = self.read_value(os.path.join(self.dir_of("cpu", relpath), "cpu.cfs_quota_us"))
        return _v1_quota(text)

    def _check_v1_quotas(self, plans, planned):
        """cgroup v1 refuses a child's CPU quota above its parent's (EINVAL, whichever is written
        last): a policy that asks for it is refused before any write, in check mode too."""
        if self.version_of("cpu") != "v1":
            return
        wanted = {}
        for plan, files in zip(plans, planned):
            for _c, fname, value in files:
                if fname == "cpu.cfs_quota_us":
                    wanted[plan.relpath] = value
        for plan in plans:
            parent = os.path.dirname(plan.relpath)
            if plan.state != "present" or plan.relpath not in wanted or parent not in wanted:
                continue
            mine, theirs = self._quota_now(plan.relpath, wanted), self._quota_now(parent, wanted)
            if mine > theirs:
                raise HostError("%s: cpu_max %d%% is above the %d%% of the cgroup it is in (/%s); cgroup v1 "
                                "refuses a child's CPU quota above its parent's"
                                % (plan.label, round(mine * 100), round(theirs * 100), parent))

    def _ordered(self, writes):
        """A CPU quota that goes down is written first, deepest cgroups first, and one that goes up
        last, parents first: cgroup v1 refuses a parent below its children at every step. The rest
        goes in between, parents first (their directories are made before their children's)."""
        down, rest, up = [], [], []
        for plan, todo in writes:
            cpu = [t for t in todo if t[1] in ("cpu.cfs_period_us", "cpu.cfs_quota_us")]
            new = [t[2] for t in cpu if t[1] == "cpu.cfs_quota_us"]
            if not new:
                rest.append((plan, todo))
                continue
            live = self.read_value(os.path.join(self.dir_of("cpu", plan.relpath), "cpu.cfs_quota_us"))
            (down if _v1_quota(new[0]) < _v1_quota(live) else up).append((plan, cpu))
            rest.append((plan, [t for t in todo if t not in cpu]))

        def depth(write):
            return write[0].relpath.count("/")
        return (sorted(down, key=lambda w: -depth(w)) + sorted((w for w in rest if w[1]), key=depth)
                + sorted(up, key=depth))

    def _register(self, made, limited):
        """made: the relpaths our calls made; limited: {relpath: [files our calls wrote a limit to]}."""
        if made:
            doc = {"made": sorted(made), "set": dict((r, limited[r]) for r in sorted(limited) if r in made)}
            self.host.write_atomic(self.registry_path(), json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n",
                                   mode=0o644)
        else:
            self.host.remove(self.registry_path(), prune=False)

    def persist(self, mode):
        """The parent's restore and session script (cgroupfs_persist). It covers every target of the
        parent: the ones apply() was given now, and those earlier calls gave it that this call did not
        remove. mode True: write it; None: keep it up to date where there is one; False: remove it.
        Returns its path (None when there is none), changed, diff. A file there that is not ours is
        left alone."""
        path = script_path(self.parent, self.script_dir)
        old = self.host.read(path)
        ours = old is not None and old.startswith("#!/bin/sh\n" + MANAGED_HEADER)
        if old is not None and not ours:
            return {"path": None, "changed": False, "diff": [],
                    "warning": "%s is not ours (no managed header): left as it is" % path}
        new = None
        if mode or (mode is None and ours):
            before = parse_targets(old) if ours else {}
            targets = dict(before)
            for relpath in self.dropped:
                for known in list(targets):
                    if known == relpath or known.startswith(relpath + "/"):
                        del targets[known]
            by_ctrl = {}  # id(files) -> {controller: [[file, value]]}: targets of one tier share their files list
            for plan, files in self.planned:
                if id(files) not in by_ctrl:
                    by_ctrl[id(files)] = dict((ctrl, [[f, v] for c, f, v in files if c == ctrl]) for ctrl in set(c for c, _f, _v in files))
                mine = by_ctrl[id(files)]
                steps = [[self.version_of(ctrl), ctrl, self.root_of(ctrl), plan.relpath, mine.get(ctrl, [])]
                         for ctrl in self.controllers_of(plan, files)]
                targets[plan.relpath] = {"uid": plan.uid if plan.kind == "user" else None, "steps": steps}
            if targets or mode:
                devices = (self.layout.get("v1") or {}).get("devices")  # gpu_access keeps its rules there
                join = [devices] if devices else []
                new = old if ours and script_is_current(old, targets, self.parent, path, join, before) else \
                    render_targets(self.parent, targets, path, join)
        changes = Changes(self.host)
        changed = changes.file(path, new, 0o755, prune=False)
        return {"path": path if new else None, "changed": changed, "diff": changes.diff}

    def read_processes(self, uids):
        """[(pid, uid, {controller: path})] of the processes whose real uid is one of uids."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            status = self.host.read_kernel("/proc/%s/status" % entry) or ""
            uid = None
            for line in status.splitlines():
                if line.startswith("Uid:"):
                    uid = int(line.split()[1])
                    break
            if uid in uids:
                cgroup = self.host.read_kernel("/proc/%s/cgroup" % entry)
                if cgroup is not None:
                    found.append((int(entry), uid, parse_proc_cgroup(cgroup)))
        return found

    def adopt(self, results):
        """Move the listed users' running processes into their cgroups (on v2 the session leaf),
        as a login through the session hook would land. Sets adopted and left_in_containers in
        each present user target's result; returns whether a process moved (or would, in check mode)."""
        users = self._session_dirs()
        if not users:
            return False
        moves, left = adoption_moves(self.read_processes(set(users)), users, self.parent)
        moved = {}
        for pid, uid, target in moves:
            moved.setdefault(uid, set()).add(pid)
            if self.host.check_mode:
                continue
            try:
                if not os.path.isdir(target):
                    self.host.mkdir(target)
                self.host.write_kernel(os.path.join(target, "cgroup.procs"), str(pid))
            except (IOError, OSError) as exc:
                if exc.errno != errno.ESRCH:  # a process that ended meanwhile is no error
                    raise HostError("moving pid %d of uid %d into %s failed: %s" % (pid, uid, target, exc))
        for res in results:
            if res.get("kind") == "user" and res.get("state") == "present" and res.get("uid") in users:
                res["adopted"] = len(moved.get(res["uid"], ()))
                res["left_in_containers"] = left.get(res["uid"], 0)
                res["changed"] = res["changed"] or bool(res["adopted"])
        return bool(moves)

    def _session_dirs(self):
        """{uid: [(controller, or '' on v2, cgroup dir)]}: where a user's login lands (on v2 the
        session leaf), for the user targets planned here."""
        users, where = {}, {}
        for plan, files in self.planned:
            if plan.kind != "user":
                continue
            for ctrl in self.controllers_of(plan, files):
                if ctrl not in where:
                    v2 = self.version_of(ctrl) == "v2"
                    where[ctrl] = ("" if v2 else ctrl, self.root_of(ctrl).rstrip("/") + "/", "/" + SESSION_LEAF if v2 else "/")
                name, root, leaf = where[ctrl]
                entry = (name, root + plan.relpath + leaf)
                if entry not in users.setdefault(plan.uid, []):
                    users[plan.uid].append(entry)
        return users

    def enter(self, pid):
        """Put one process (the one opening a login session) into the cgroups of the users planned
        here, as the session hook of persist does for the users it lists; returns the dirs."""
        dirs = []
        for entries in self._session_dirs().values():
            for _ctrl, target in entries:
                if not os.path.isdir(target):
                    self.host.mkdir(target)
                self.host.write_kernel(os.path.join(target, "cgroup.procs"), str(pid))
                dirs.append(target.rstrip("/"))
        return dirs

    def _resets(self, plan, files, before, after, weight, was_set=None):
        """Limits we set earlier that the target no longer asks for go back to no limit: every
        file a limit can live in (reset_files), each device line of ours no rule asks for, and
        a cpuset back to its parent's. weight: the I/O weight file this kernel has (io_weight_file).
        was_set: the files the registry says our calls wrote for this target - only those are
        read; None (a registry of an older version) reads every file a limit can live in."""
        wanted = set(f for _c, f, _v in files)
        devices = None  # the (file, device) pairs a rule asks for: only needed where a per-device file is read
        todo = []
        candidates = self._reset_candidates(weight)
        if was_set is not None:
            candidates = [(c, f) for c, f in candidates if f in was_set]
        for ctrl, fname in candidates:
            if fname in wanted and reset_value(fname, self.version_of(ctrl)) != PER_DEVICE:
                continue
            cdir = self.dir_of(ctrl, plan.relpath)
            live = self.read_value(os.path.join(cdir, fname)) if self._listed(cdir) else None
            if live is None:
                continue
            reset = reset_value(fname, self.version_of(ctrl))
            if reset == PER_DEVICE:
                if devices is None:
                    devices = set((f, v.split(" ", 1)[0]) for _c, f, v in files if reset_value(f, "v2") == PER_DEVICE
                                  or reset_value(f, "v1") == PER_DEVICE)
                lines = [device_reset(fname, line) for line in live.splitlines()]
                lines = [line for line in lines if line and (fname, line.split(" ", 1)[0]) not in devices]
                if lines:
                    before[fname], after[fname] = live, "\n".join(lines)
                    todo.extend((ctrl, fname, line) for line in lines)
                continue
            if reset == INHERIT:
                reset = "" if self.version_of(ctrl) == "v2" else \
                    self.read_value(os.path.join(os.path.dirname(cdir.rstrip("/")), fname)) or ""
            if not same_value(fname, reset, live):
                before[fname], after[fname] = live, reset
                todo.append((ctrl, fname, reset))
        return todo

    def _reset_candidates(self, weight):
        """[(controller, file)] a limit of ours can live in on this host (the same for every target)."""
        cache = self.__dict__.setdefault("_candidates", {})
        if weight not in cache:
            found = [(c, f) for v in ("v2", "v1") for c, f in reset_files(v) if self.version_of(c) == v]
            if weight:
                found.append(("io" if self.version_of("io") else "blkio", weight))
            cache[weight] = found
        return cache[weight]

    def io_weight_file(self, relpath):
        """The I/O weight file this kernel has (IO_WEIGHT_FILES), None where it has none: looked
        for in the target, then the managed parent, then by its mark in the controller's root.
        Every cgroup of a hierarchy has the same files: the first answer holds for all targets."""
        if "_weight_file" not in self.__dict__:
            self._weight_file = self._find_io_weight_file(relpath)
        return self._weight_file

    def _find_io_weight_file(self, relpath):
        ctrl = "io" if self.version_of("io") == "v2" else "blkio" if self.version_of("blkio") == "v1" else None
        if ctrl is None:
            return None
        choices = IO_WEIGHT_FILES[self.version_of(ctrl)]
        for rel in (relpath, self.parent):
            cdir = self.dir_of(ctrl, rel)
            if os.path.isdir(cdir):
                found = [name for name, _f, _m, _mark in choices if os.path.exists(os.path.join(cdir, name))]
                if found:
                    return found[0]
        root = self.root_of(ctrl)
        found = [name for name, _f, _m, mark in choices if mark and os.path.exists(os.path.join(root, mark))]
        return found[0] if found else None

    def _ensure_dir(self, ctrl, relpath):
        """mkdir -p under the controller root: v2 enables +ctrl in each ancestor's
        subtree_control; v1 cpuset copies mems then cpus from the parent."""
        root = self.root_of(ctrl)
        version = self.version_of(ctrl)
        known = self.__dict__.setdefault("_made_dirs", set())  # v1 dirs this call saw or made (the parent, once)
        current = root.rstrip("/")
        for part in relpath.split("/"):
            if version == "v1" and ctrl != "cpuset" and (current + "/" + part) in known:
                current = current + "/" + part
                continue
            if version == "v2":
                control = os.path.join(current, "cgroup.subtree_control")
                enabled = (self.host.read(control) or "").split()
                if ctrl not in enabled:
                    self.host.write_kernel(control, "+" + ctrl)
            child = current + "/" + part
            try:  # no stat first: a first run at 10,000 users makes some 40,000 of them
                self.host.mkdir(child)
            except OSError as exc:
                if exc.errno != errno.EEXIST or not os.path.isdir(child):
                    raise
            if version == "v1" and ctrl == "cpuset":
                for fname in ("cpuset.mems", "cpuset.cpus"):
                    if not self.read_value(os.path.join(child, fname)):
                        self.host.write_kernel(os.path.join(child, fname), self.read_value(os.path.join(current, fname)))
            elif version == "v1":
                known.add(current + "/" + part)
            current = child
        return current

    def _write(self, plan, todo):
        dirs = dict((ctrl, self._ensure_dir(ctrl, plan.relpath)) for ctrl in controllers_needed(todo))
        for ctrl, fname, value in todo:
            try:
                # an empty cpuset (v2: the parent's) is written as a newline: an empty write() never reaches the kernel
                self.host.write_kernel(dirs[ctrl] + "/" + fname, value or "\n")
            except (IOError, OSError) as exc:
                raise HostError("%s: writing %r to %s failed: %s" % (plan.label, value, fname, exc))

    def _controller_roots(self):
        roots = []
        acct = self.accounting()
        for ctrl in ("cpu", "cpuset", "memory", "pids", "io", "blkio") + ((acct,) if acct else ()):
            if self.version_of(ctrl):
                root = self.root_of(ctrl)
                if root not in roots:
                    roots.append(root)
        return roots

    def _existing_dirs(self, relpath):
        return [os.path.join(r, relpath) for r in self._controller_roots() if os.path.isdir(os.path.join(r, relpath))]

    def _managed_children(self):
        found = set()
        for root in self._controller_roots():
            base = os.path.join(root, self.parent)
            for dirpath, dirnames, _files in os.walk(base):
                for d in dirnames:
                    found.add(os.path.relpath(os.path.join(dirpath, d), root))
        return sorted(found, key=lambda p: p.count("/"))

    def _destination(self, root, path):
        """Where the processes of a cgroup being removed go: into the cgroup this call gives the same user
        (a user moved to another level: the same workload there, else the user's session cgroup; a workload
        of the user that goes: the user's session cgroup), so that they stay under the user's limits; anything
        else to the hierarchy's root, as before our calls."""
        rel = path[len(root):].strip("/")
        parts = rel.split("/")
        depth = len(self.parent.split("/"))
        homes = self.user_homes
        for i in range(depth, len(parts)):
            match = USER_LEAF_RE.match(parts[i])
            home = homes.get(int(match.group(1))) if match else None
            same = home == "/".join(parts[:i + 1])
            if home is None or (same and i + 1 == len(parts)):
                continue
            base = root.rstrip("/") + "/" + home
            v2 = root.rstrip("/") == (self.layout.get("v2_root") or "").rstrip("/")
            for cand in ([base + "/" + "/".join(parts[i + 1:])] if i + 1 < len(parts) and not same else []) + \
                    ([base + "/" + SESSION_LEAF] if v2 else []) + [base]:
                if os.path.isdir(cand):
                    return cand
            if v2 and os.path.isdir(base):  # a v2 cgroup with children holds no process itself: its session leaf
                self.host.mkdir(base + "/" + SESSION_LEAF)
                return base + "/" + SESSION_LEAF
            break
        return root

    def _remove(self, dirs):
        """Move the processes out (_destination) and rmdir, deepest first."""
        for top in dirs:
            root = next(r for r in self._controller_roots() if top.startswith(r + "/"))
            tree = [dp for dp, _dn, _fn in os.walk(top)]
            for path in sorted(tree, key=lambda p: -p.count("/")):
                pids = (self.host.read(os.path.join(path, "cgroup.procs")) or "").split()
                target = self._destination(root, path) if pids else root
                for pid in pids:
                    try:
                        self.host.write_kernel(os.path.join(target, "cgroup.procs"), pid)
                    except (IOError, OSError) as exc:
                        if exc.errno != errno.ESRCH:
                            raise HostError("moving pid %s out of %s into %s failed: %s" % (pid, path, target, exc))
                self.host.rmdir(path)


def _v1_quota(text):
    """cpu.cfs_quota_us text -> CPUs, inf for no limit (-1, or no file)."""
    return float("inf") if text is None or text.strip() == "-1" else int(text) / float(CPU_PERIOD_US)


def _render(values):
    return "".join("%s: %s\n" % (k, v) for k, v in sorted(values.items()))


# --------------------------------------------------------------------------- one call of cgroup_limit

def template_limits_of(defaults, backend_name, force, version):
    """cgroup_limit's user_defaults -> (the template's limits, or None: no template; warnings). version: the
    host's systemd release (None: not known). Raises InputError."""
    if defaults is None:
        return None, []
    if backend_name != "systemd":
        raise InputError("user_defaults: the user-.slice template needs the systemd backend; on hosts without systemd "
                         "the profiles role's login resolver gives users it did not list their profile")
    unknown = sorted(k for k in defaults if k not in LIMIT_FIELDS)
    if unknown:
        raise InputError("user_defaults: %s is not a limit; allowed: %s" % (", ".join(unknown), ", ".join(LIMIT_FIELDS)))
    limits = normalize_limits(defaults, "user_defaults", force)
    if version is not None and version < TEMPLATE_MIN_SYSTEMD:
        return None, ["user_defaults: systemd %d has no prefix drop-ins (user-.slice.d needs %d); users without a "
                      "target of their own get no defaults on this host" % (version, TEMPLATE_MIN_SYSTEMD)]
    return limits, []


def template_result(out, plans, extra, limits, version, host):
    """Split the template and its masks out of the targets into user_defaults, with the site drop-ins
    that override ours."""
    shown = out["targets"][len(plans):]
    out["targets"] = out["targets"][:len(plans)]
    template = shown[0]
    masks = [r for p, r in zip(extra[1:], shown[1:]) if p.state == "present"]

    def props(lims):
        return set(line.split("=", 1)[0] for line in render_dropin(lims, version)[0].splitlines()[2:])
    own = dict((p.unit, p.limits) for p in plans + extra[1:] if p.state == "present")

    def props_of(unit):  # rendered only for the few units that have someone else's drop-in
        return props(own[unit]) if unit in own else props(limits)
    overrides = dropin_overrides(host.read, props_of) if limits else []
    out["user_defaults"] = {
        "path": template["path"], "state": template["state"], "changed": template["changed"],
        "limits": template.get("after", {}), "masked": len(masks),
        "masked_changed": sum(1 for r in masks if r["changed"]), "overridden": overrides,
    }
    for item in overrides:
        out.setdefault("warnings_extra", []).append(
            "user_defaults: %s sets %s for %s after ours: it overrides the fairshare limits there"
            % (item["path"], ", ".join(item["properties"]), item["unit"]))


def apply_call(host, layout, backend_name, targets, params, template_limits, release=None):
    """A call's targets on its backend: systemd units (with the user-.slice template and its masks) and, for
    path targets, exclusive or persist, the cgroupfs backend beside it; cgroupfs alone, with the adoption of
    running processes. -> targets (in the call's order), removed, left, diff, changed, persist_script,
    user_defaults, warnings_extra. params: the module's (parent, exclusive, persist, adopt_processes,
    user_defaults_exempt). release: the host's systemd release (None: not known)."""
    cgfs = CgroupfsBackend(host, layout, params["parent"])
    kept = [t for t in targets if t.keep_running]
    if kept and backend_name != "systemd":  # before any change
        raise InputError("%s: keep_running needs the systemd backend; without systemd a removed cgroup's processes "
                         "go into the cgroup this call gives the same user" % kept[0].label)
    if backend_name == "systemd":
        nested = [t for t in targets if t.under]
        if nested:  # before any change
            raise InputError("%s: under %r needs the cgroupfs backend; with systemd, logind keeps every user-UID.slice "
                             "directly in user.slice" % (nested[0].label, nested[0].under))
        unit_targets = [t for t in targets if t.kind != "path"]
        path_targets = [t for t in targets if t.kind == "path"]
        systemd = SystemdBackend(host, layout, systemd=release)
        extra = []
        if template_limits is not None:
            def has_own(unit):
                return (host.read(systemd.dropin_path(unit)) or MASK_TEXT) != MASK_TEXT
            unit_targets, extra = template_targets(unit_targets, template_limits, params["user_defaults_exempt"],
                                                   read_sys_uid_max(), params["parent"], has_own=has_own)
            if not template_limits:  # no defaults: our masks go with the template
                listed = set(t.unit for t in unit_targets)
                extra += [Target(-2, "slice", unit, None, "absent", {}, params["parent"])
                          for unit in systemd.mask_units() if unit not in listed]
        out = systemd.apply(unit_targets + extra, params["exclusive"])
        if extra:
            template_result(out, unit_targets, extra, template_limits, systemd.version, host)
        if path_targets or params["exclusive"] or params["persist"]:
            more = cgfs.apply(path_targets, params["exclusive"] and bool(path_targets))
            by_index = dict((t.index, r) for t, r in zip(unit_targets, out["targets"]))
            by_index.update((t.index, r) for t, r in zip(path_targets, more["targets"]))
            out["targets"] = [by_index[i] for i in sorted(by_index)]
            out["removed"] += more["removed"]
            out["left"] = more["left"]
            out["diff"] += more["diff"]
            out["changed"] = out["changed"] or more["changed"]
    else:
        out = cgfs.apply(targets, params["exclusive"])
        if params["adopt_processes"] and cgfs.adopt(out["targets"]):
            out["changed"] = True
    if backend_name == "cgroupfs" or cgfs.planned or cgfs.dropped or params["persist"] is not None:
        kept = cgfs.persist(params["persist"])
        out["persist_script"] = kept["path"]
        if kept.get("warning"):
            out.setdefault("warnings_extra", []).append("persist: " + kept["warning"])
        out["diff"] += kept["diff"]
        out["changed"] = out["changed"] or kept["changed"]
    return out

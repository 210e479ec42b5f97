# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host side of the profiles role as data: which files, with which text and mode.

/etc/fairshare/profiles.json (read by fairshare-usage), the fairshare-usage tool and its
login greeting, /etc/fairshare/plans.json, the fairshare-plan tool, its service and two
timers per plan, and our session line in the PAM files of hosts without systemd. Pure
Python, no AnsibleModule import; the module profile_host writes them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import MANAGED_HEADER as MANAGED
from ansible_collections.fairshare.resources.plugins.module_utils.cgroupfs_persist import (
    LOGIN_TOOL, SCRIPT_DIR, pam_line, pam_module,
)
from ansible_collections.fairshare.resources.plugins.module_utils.policy import unpack_profiles

PATHS = {
    "profiles": "/etc/fairshare/profiles.json",
    "usage_tool": "/usr/local/bin/fairshare-usage",
    "greeting": "/etc/profile.d/fairshare-usage.sh",
    "plans": "/etc/fairshare/plans.json",
    "plan_tool": "/usr/local/sbin/fairshare-plan",
    "plan_service": "/etc/systemd/system/fairshare-plan@.service",
    "plan_boot": "/etc/systemd/system/fairshare-plan-boot.service",
}
UNIT_DIR = "/etc/systemd/system"
TIMER_GLOB = "fairshare-plan-*.timer"
_TIMER_RE = re.compile(r"^fairshare-plan-[a-z0-9_]{1,32}(-end)?\.timer$")

GREETING = MANAGED + "\n[ -x %s ] && %s --brief 2>/dev/null || true\n" % (PATHS["usage_tool"], PATHS["usage_tool"])
PLAN_SERVICE = (MANAGED + "\n[Unit]\nDescription=fairshare plan %i\n[Service]\nType=oneshot\n"
                "ExecStart=" + PATHS["plan_tool"] + " %i\n")
# a plan's runtime drop-ins are gone after a reboot: at boot the plan whose window holds the moment
# is put back (fairshare-plan --now); it stays "active" so the role sees it enabled and done
PLAN_BOOT_UNIT = "fairshare-plan-boot.service"  # PATHS["plan_boot"]
PLAN_BOOT = (MANAGED + "\n[Unit]\nDescription=fairshare plan in force at boot\nAfter=local-fs.target\n"
             "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=" + PATHS["plan_tool"] + " --now\n"
             "[Install]\nWantedBy=multi-user.target\n")


PAM_MARK = "# fairshare.resources: login sessions into the user's cgroup (cgroup_limit persist)"
_SCRIPTS = re.escape(SCRIPT_DIR + "/cgroupfs-")  # cgroupfs_persist.script_path
# the hook: cgroup_limit's persist script (hosts without systemd), or the login resolver itself (systemd)
_HOOKS = r"(%s[A-Za-z0-9_.@:-]+\.sh|%s)" % (_SCRIPTS, re.escape(LOGIN_TOOL))
SESSION_HOOK_RE = re.compile(r"^%s$" % _HOOKS)
_PAM_OURS = re.compile(r"^\s*session\s+\S+\s+pam_exec\.so\s.*%s\s+session\s*$" % _HOOKS)


def _marked(old, mark, is_ours, line=None):
    """A file's text without our marker and the line of ours right below it, then with mark and
    line appended at its end when line is given. Nothing else in the file is touched."""
    kept, skip = [], False
    for current in old.splitlines(True):
        if skip and is_ours(current):
            skip = False
            continue
        skip = current.rstrip("\n") == mark
        if not skip:
            kept.append(current)
    text = "".join(kept)
    if line:
        if text and not text.endswith("\n"):
            text += "\n"
        text += mark + "\n" + line + "\n"
    return text


def pam_session_text(old, hook=None):
    """A PAM session file's text with our one line at the end (hook: cgroup_limit's persist
    script), or without it (hook None). Only our marker and the pam_exec line right below it
    are touched; a line someone wrote by hand, or pam-auth-update's, stays."""
    return _marked(old, PAM_MARK, _PAM_OURS.match, pam_line(hook) if hook else None)


# SUSE's way (pam-config(8); openSUSE's "PAM configuration"): pam-config writes only the common-*-pc files and
# makes common-* links to them; it has no session pam_exec of its own (its exec module is for passwords only). So
# a link common-session -> common-session-pc becomes a file of ours that includes the -pc file, as the link did,
# and adds our line: pam-config goes on writing the -pc file, and its changes still take effect through the include.
PC_SUFFIX = "-pc"
PC_MARK = "# fairshare.resources profile_host: pam-config's %s, included as its link did, and our session line"


def pam_pc_text(name, hook):
    """The file that takes the place of pam-config's link NAME -> NAME-pc: the include and our line."""
    included = name + PC_SUFFIX
    return "#%%PAM-1.0\n%s\nsession include %s\n%s\n%s\n" % (PC_MARK % included, included, PAM_MARK, pam_line(hook))


def is_pam_pc_text(text, name):
    """Is this the file pam_pc_text made for NAME (with any hook)?"""
    lines = (text or "").splitlines()
    return len(lines) > 2 and lines[1] == PC_MARK % (name + PC_SUFFIX)


def has_session_line(text, hook):
    """Does a PAM file run the hook at session open (ours, or written by pam-auth-update)?"""
    want = re.compile(r"^\s*session\s+\S+\s+pam_exec\.so\s+quiet\s+%s\s+session\s*$" % re.escape(hook))
    return any(want.match(line) for line in text.splitlines())


SYSTEMD_MARK = "# fairshare.resources: jobs of this service run in the user's slice (pam_systemd)"
SYSTEMD_LINE = "-session optional pam_systemd.so"
_PAM_SYSTEMD = re.compile(r"^\s*-?session\s+\S+\s+pam_systemd\.so(\s|$)")
_PAM_INCLUDE = re.compile(r"^\s*(@include\s+(\S+)|-?session\s+(include|substack)\s+(\S+))")


def pam_includes(text):
    """The PAM files a file pulls in for its session stack (@include, session include/substack)."""
    names = []
    for line in text.splitlines():
        m = _PAM_INCLUDE.match(line)
        if m:
            names.append(m.group(2) or m.group(4))
    return names


def has_pam_systemd(text, read_included=lambda name: None):
    """Does a PAM file's session stack run pam_systemd - in the file, or in a file it includes
    (one level: common-session-noninteractive on Debian, password-auth on RedHat)?"""
    stacks = [text] + [read_included(name) or "" for name in pam_includes(text)]
    return any(_PAM_SYSTEMD.match(line) for stack in stacks for line in stack.splitlines()
               if not line.lstrip().startswith("#"))


def pam_systemd_text(old, wanted, read_included=lambda name: None):
    """A job scheduler's PAM file (cron, atd) with our pam_systemd session line at the end (wanted),
    or without it. Nothing is added where the stack already runs pam_systemd; only our marker and
    the line right below it are ever taken out."""
    def is_ours(line):
        return line.strip() == SYSTEMD_LINE
    text = _marked(old, SYSTEMD_MARK, is_ours)
    return _marked(text, SYSTEMD_MARK, is_ours, SYSTEMD_LINE) if wanted and not has_pam_systemd(
        text, read_included) else text


PAM_CONFIG_DIR = "/usr/share/pam-configs"
PAM_CONFIG_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
PAM_CONFIG_HEAD = "Name: fairshare.resources"  # how our pam-auth-update profile starts


# RedHat's way (authselect(8), authselect-profiles(5)): /etc/pam.d/system-auth and password-auth are made by
# authselect from the selected profile and rewritten at each `authselect select`/`apply-changes`; a line of ours
# lasts only in a custom profile (/etc/authselect/custom/NAME), made from the profile in use by
# `authselect create-profile NAME --base-on PROFILE`, whose templates carry it, selected as custom/NAME with the
# features that were enabled. BASE_FILE in it keeps what it was made from, to go back to.
AUTHSELECT_DIR = "/etc/authselect/custom"
AUTHSELECT_FILES = ("system-auth", "password-auth")  # the session stacks of local and of remote logins
AUTHSELECT_BASE_FILE = "fairshare-base"


def pam_config_text(hook):
    """Debian's pam-auth-update profile for the hook: one optional session line, added to
    common-session and common-session-noninteractive, after the other profiles (priority 0)."""
    return ("%s - logins into the users' cgroups (cgroup_limit persist)\n"
            "Default: yes\nPriority: 0\nSession-Type: Additional\nSession:\n\toptional\t%s\n"
            % (PAM_CONFIG_HEAD, pam_module(hook)))


_ENCODER = json.JSONEncoder(sort_keys=True)  # made once: json.dumps(..., sort_keys=True) makes one per call


def as_json(data, depth=2, encoded=None):
    """JSON text a person can read and diff: a line per key of the first `depth` levels (a line
    per user in profiles.json), each deeper value on its line. Those go through json's C encoder:
    indenting every level takes the pure-Python one (4 s for 10,000 users against 0.2 s).
    encoded: {top-level key: its value's text, as this function writes it} for values that many
    documents share (each user's file holds the same parent and containers)."""
    encode_value = _ENCODER.encode
    encoded = encoded or {}

    def encode(value, level, key=None):
        if level == 1 and key in encoded:
            return encoded[key]
        if isinstance(value, dict) and value and level < depth:
            pad = "  " * (level + 1)
            items = [pad + encode_value(str(k)) + ": " + encode(value[k], level + 1, k) for k in sorted(value, key=str)]
            return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
        return encode_value(value)
    return encode(data, 0) + "\n"


# JSON has no comments: the JSON files profile_host writes carry this as their "_managed" key.
JSON_MARK = "fairshare.resources profile_host"
COPYRIGHT = "# Copyright: fairshare.resources contributors"  # line 3 of our tools and library files
_TSV_LINE = re.compile(r"^[^\t\n]+\t\{.*\}$")


def marked_json(data, depth=2):
    """as_json of data with our mark in it ("_managed"; the readers look up their keys by name)."""
    return as_json(dict(data, _managed=JSON_MARK), depth)


def is_ours(text):
    """Whether a file at one of profile_host's paths may be rewritten or removed: nothing there or
    an empty file; our header (MANAGED, or the collection's copyright line of a tool) in its first
    three lines; for the JSON and TSV files, which carry no comment, our mark or - files of the
    releases before the mark - exactly the layout our writer gives. Anything else is left alone."""
    if not text:
        return True
    head = text.split("\n", 3)[:3]
    if MANAGED in head or COPYRIGHT in head:
        return True
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return False
        return isinstance(doc, dict) and (doc.get("_managed") == JSON_MARK or as_json(doc) == text)
    return all(_TSV_LINE.match(line) for line in text.split("\n")[:-1]) and text.endswith("\n")


def render_timer(timer):
    """{name, when, plan, what} (plan_model.plan_units) -> the .timer unit text. AccuracySec=1s: systemd's
    default of a minute lets a timer fire at any second of the minute after its schedule (a per-boot
    offset), and a plan switch is meant to happen when the schedule says."""
    if not _TIMER_RE.match(timer["name"]):
        raise ValueError("timers: %r is not a fairshare-plan timer name" % timer["name"])
    return (MANAGED + "\n[Unit]\nDescription=fairshare plan %s (%s)\n[Timer]\nOnCalendar=%s\nAccuracySec=1s\n"
            "Unit=fairshare-plan@%s.service\n[Install]\nWantedBy=timers.target\n"
            % (timer["plan"], timer["what"], timer["when"], timer["plan"]))


USERS_DIR = "/etc/fairshare/users"
USER_MARK = "fairshare.resources profile_host: this user's part of /etc/fairshare/profiles.json"
# stands for a profile's values while the rest of it is encoded (user_files); no policy value holds it
_VALUES_SLOT = "\u0000fairshare-values\u0000"
_VALUES_SLOT_JSON = json.dumps(_VALUES_SLOT)
_USER_FILE = re.compile(r"^\d+\.json$")
# the per-user parts of profiles.json, keyed by user name
PER_USER = ("profiles", "cgroup_parents", "gpu_allocation", "mig_allocation")


def decode_data(data):
    """data of profile_host with its per-user parts (PER_USER) given as JSON strings decoded - the
    profiles role passes them so: the controller then carries three strings, not 10,000 dicts."""
    out = dict(data)
    for key in PER_USER:
        if isinstance(out.get(key), str):
            try:
                out[key] = json.loads(out[key])
            except ValueError as exc:
                raise ValueError("data.%s: neither a dict nor a JSON object (%s)" % (key, exc))
            if not isinstance(out[key], dict):
                raise ValueError("data.%s: a JSON string must hold an object, not %s" % (key, type(out[key]).__name__))
    if isinstance(out.get("profiles"), dict):
        out["profiles"] = unpack_profiles(out["profiles"])  # as resolve_profiles(as_json=true) packs them
    return out


def user_files(data, existing):
    """Each user's own part of profiles.json, readable by that user only: {path: (text, 0400, uid)}
    for users in data, and (None, ...) for files of ours (USER_MARK) of users no longer in it.
    existing: {path: text} of the files in USERS_DIR now. -> (files, foreign paths left alone)."""
    files, foreign = {}, []
    common = {"_managed": USER_MARK, "parent": data.get("parent"), "containers": data.get("containers")}
    shared = dict((key, as_json(value, depth=0)[:-1]) for key, value in common.items())  # the same in every file
    values_text = {}  # id of a values dict -> its JSON: users of one profile share that dict (unpack_profiles)
    for name, prof in sorted((data.get("profiles") or {}).items()):
        doc = dict(common, user=name)
        for key in PER_USER:
            if name in (data.get(key) or {}):
                doc[key] = {name: data[key][name]}
        encoded = shared
        values = prof.get("values")
        if values:
            text = values_text.get(id(values))
            if text is None:
                text = values_text[id(values)] = _ENCODER.encode(values)
            # the profile's JSON with its values encoded once per profile, not once per user: the same text
            own = _ENCODER.encode({name: dict(prof, values=_VALUES_SLOT)}).replace(_VALUES_SLOT_JSON, text, 1)
            encoded = dict(shared, profiles=own)
        files["%s/%d.json" % (USERS_DIR, prof["uid"])] = (as_json(doc, depth=1, encoded=encoded), 0o400, prof["uid"])
    for path, text in sorted(existing.items()):
        if path in files:
            if USER_MARK not in (text or ""):
                foreign.append(path)
                del files[path]
            continue
        if _USER_FILE.match(path.rsplit("/", 1)[-1]) and USER_MARK in (text or ""):
            files[path] = (None, 0o400, None)
        else:
            foreign.append(path)
    return files, foreign


def wanted_files(data=None, usage_tool=None, greeting=False, plans=None, plan_tool=None):
    """-> {path: (text, mode)} for what is given (None: that part is left alone)."""
    files = {}
    if data is not None:  # root's: every user's profile (a user reads their own, user_files)
        files[PATHS["profiles"]] = (marked_json(data), 0o600)
    if usage_tool:
        files[PATHS["usage_tool"]] = (usage_tool, 0o755)
        files[PATHS["greeting"]] = (GREETING if greeting else None, 0o644)
    if plans is not None:  # without timers (no plans) the plan file, tool and service go
        some = bool(plans.get("timers"))
        files[PATHS["plans"]] = (marked_json(plans) if some else None, 0o644)
        files[PATHS["plan_tool"]] = (plan_tool if some else None, 0o755)
        files[PATHS["plan_service"]] = (PLAN_SERVICE if some else None, 0o644)
        files[PATHS["plan_boot"]] = (PLAN_BOOT if some else None, 0o644)
        for timer in plans.get("timers", []):
            files["%s/%s" % (UNIT_DIR, timer["name"])] = (render_timer(timer), 0o644)
    return files

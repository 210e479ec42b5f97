# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""profile_host's backend: the check of a call (plans, data, the session hook, PAM files and profile, the login
resolver's policy) and its application - the host-side files, the users' own parts, the PAM session line, the
pam_systemd line of job services, the plan timers. Everything goes through Host/Changes; what the module warns
about is collected in `warnings`. No AnsibleModule import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import sys

from ansible_collections.fairshare.resources.plugins.module_utils.cgroupfs_persist import LOGIN_TOOL
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.host import Changes
from ansible_collections.fairshare.resources.plugins.module_utils.login import (
    DEFAULTS_JSON, LIB_DIR, LOGIN_JSON, PACKAGE, USERS_TSV, documents, library_files, tool_text,
)
from ansible_collections.fairshare.resources.plugins.module_utils.platform import init_system
from ansible_collections.fairshare.resources.plugins.module_utils.profile_files import (
    AUTHSELECT_BASE_FILE, AUTHSELECT_DIR, AUTHSELECT_FILES, MANAGED, PAM_CONFIG_DIR, PAM_CONFIG_HEAD, PAM_CONFIG_RE, PATHS,
    PC_SUFFIX, PLAN_BOOT_UNIT, SESSION_HOOK_RE, TIMER_GLOB, UNIT_DIR, USERS_DIR, decode_data, has_session_line,
    is_ours, is_pam_pc_text, marked_json, pam_config_text, pam_pc_text, pam_session_text, pam_systemd_text, user_files,
    wanted_files,
)

PAM_DIR = "/etc/pam.d"


AUTHSELECT_LINKS = ("/etc/authselect",)  # where authselect's /etc/pam.d/system-auth and password-auth lead


def is_pam_file(path, also=()):
    """A file directly in /etc/pam.d, also after links are followed (pam_files edits nothing else); with `also`,
    a link from there into one of those directories (authselect's, which are only read)."""
    return os.path.isabs(path) and os.path.dirname(os.path.normpath(path)) == PAM_DIR and \
        os.path.dirname(os.path.realpath(path)) in [os.path.realpath(d) for d in (PAM_DIR,) + tuple(also)]


def stale_timers(host, wanted):
    """Our plan timers on disk that no plan wants any more."""
    found = []
    for path in sorted(glob.glob(os.path.join(UNIT_DIR, TIMER_GLOB))):
        if path not in wanted and (host.read(path) or "").startswith(MANAGED):
            found.append(path)
    return found


def timers_off(host, names):
    """Of the timers named, those not both enabled and active now."""
    if not names:
        return []
    _rc, enabled, _e = host.run(["systemctl", "is-enabled"] + names, check=False)
    _rc, active, _e = host.run(["systemctl", "is-active"] + names, check=False)
    states = zip(names, enabled.splitlines() + [""] * len(names), active.splitlines() + [""] * len(names))
    return [name for name, en, ac in states if en.strip() != "enabled" or ac.strip() != "active"]


def authselect_in_use(params, host):
    """[profile, feature, ...] that authselect has selected here, or None: no pam_authselect given, authselect not
    installed, or no configuration of its own (`authselect current` fails) - the pam_files are edited then."""
    if not params["pam_authselect"]:
        return None
    rc, out, _err = host.run(["authselect", "current", "--raw"], check=False)  # "sssd with-mkhomedir"
    return (out.split() or None) if rc == 0 else None


def authselect_session(params, host, changes, hook, selected, result, warn):
    """Our session line through an authselect custom profile (AUTHSELECT_DIR/NAME), made from the selected one;
    without a hook the profile it was made from is selected again and ours is removed."""
    name = params["pam_authselect"]
    custom, folder = "custom/" + name, os.path.join(AUTHSELECT_DIR, name)
    base_file = os.path.join(folder, AUTHSELECT_BASE_FILE)
    ours = selected[0] == custom
    made = host.read(base_file)  # None: no profile of ours there
    base = (made or "").split() if ours or os.path.isdir(folder) else selected
    features = selected[1:]
    if not hook:
        if ours and base:
            changes.run("authselect select %s" % base[0], ["authselect", "select", base[0]] + features)
        if made is not None:  # only a profile we made
            changes.run("remove %s" % folder, ["rm", "-r", "--", folder])
            result["files"].append({"path": folder, "changed": True})
        return
    if not base:
        warn("pam_authselect: %s exists without %s (not made by this module); it is left as it is and logins are "
             "not put into the users' cgroups" % (folder, AUTHSELECT_BASE_FILE))
        return
    did = False
    if not os.path.isdir(folder):
        changes.run("authselect create-profile %s --base-on %s" % (name, base[0]),
                    ["authselect", "create-profile", name, "--base-on", base[0],
                     "--symlink-meta", "--symlink-nsswitch", "--symlink-dconf"])
        did = True
    did |= changes.file(base_file, " ".join(base) + "\n", 0o644, prune=False)
    for stack in AUTHSELECT_FILES:
        path = os.path.join(folder, stack)
        old = host.read(path)
        if old is None:
            if not host.check_mode:
                warn("pam_authselect: authselect create-profile made no %s; its logins are not put into the users' "
                     "cgroups" % path)
            continue
        did |= changes.file(path, pam_session_text(old, hook), os.stat(path).st_mode & 0o7777, prune=False)
    result["files"].append({"path": folder, "changed": did})
    if did or not ours:
        changes.run("authselect select %s" % custom, ["authselect", "select", custom] + features)


def pam_pc_session(path, old, hook, changes):
    """SUSE (pam_pc_include): path is pam-config's link to its -pc file, or the file of ours that took its place.
    With a hook: our file (the include and the line); without: the link again. None where neither applies."""
    name = os.path.basename(path)
    target = os.readlink(path) if os.path.islink(path) else None
    ours = target is None and is_pam_pc_text(old, name)
    if not ours and target not in (name + PC_SUFFIX, path + PC_SUFFIX):
        return None  # a file of the admin's own (the link was replaced by hand): edited like any other
    if hook:
        return changes.file(path, pam_pc_text(name, hook), 0o644, prune=False, old=old)
    return changes.link(path, name + PC_SUFFIX, old) if ours else False


def pam_session(params, host, changes, hook, result, warn):
    """Our session line: in the pam_files themselves, or through a pam-auth-update profile (Debian) or an
    authselect custom profile (RedHat)."""
    config = params["pam_config"]
    selected = None if config else authselect_in_use(params, host)
    tool = "pam_config" if config else "pam_authselect" if selected else None
    texts = {}  # each PAM file as it stands after our own edit (as it was, in check mode)
    for path in params["pam_files"]:
        old = host.read(path)
        if old is None:
            continue
        if selected:  # authselect writes them (links into /etc/authselect): only read
            texts[path] = old
            continue
        if not is_pam_file(path):  # a link into /etc/authselect where authselect manages nothing: not ours to edit
            warn("pam_files: %s leads to %s and authselect manages nothing here; it is left as it is"
                 % (path, os.path.realpath(path)))
            continue
        did = pam_pc_session(path, old, None if tool else hook, changes) if params["pam_pc_include"] else None
        if did is not None:
            result["files"].append({"path": path, "changed": did})
            texts[path] = old if host.check_mode else host.read(path)
            continue
        text = pam_session_text(old, None if tool else hook)  # with a tool only a line we wrote earlier goes
        did = changes.file(path, text, os.stat(path).st_mode & 0o7777, prune=False)
        result["files"].append({"path": path, "changed": did})
        texts[path] = old if host.check_mode else text
    if config:
        profile = os.path.join(PAM_CONFIG_DIR, config)
        did = False
        if hook:
            did = changes.file(profile, pam_config_text(hook), 0o644, prune=False)
            if did or not all(has_session_line(text, hook) for text in texts.values()):
                changes.run("pam-auth-update --package --enable %s" % config,
                            ["pam-auth-update", "--package", "--enable", config])
        elif (host.read(profile) or "").startswith(PAM_CONFIG_HEAD):
            changes.run("pam-auth-update --package --remove %s" % config,
                        ["pam-auth-update", "--package", "--remove", config])
            did = changes.file(profile, None, prune=False)
        result["files"].append({"path": profile, "changed": did})
    elif selected:
        authselect_session(params, host, changes, hook, selected, result, warn)
    if tool:
        made_by = "pam-auth-update" if config else "authselect"
        for path, before in sorted(texts.items()):
            after = host.read(path)  # what the tool made of it
            if after != before:
                changes.diff.append({"before_header": path, "after_header": path, "before": before, "after": after})
            if hook and not host.check_mode and not has_session_line(after, hook):
                warn("%s: %s left %s without the session line (edited by hand? see %s); logins there are not put "
                     "into the users' cgroups" % (tool, made_by, path,
                                                  "pam-auth-update --force" if config else "authselect check"))
    if hook and not texts:
        warn("pam_files: none of %s exists here; logins are not put into the users' cgroups"
             % ", ".join(params["pam_files"]) if params["pam_files"] else
             "session_hook: no pam_files given; logins are not put into the users' cgroups")


def source_of(name):
    """The source text of one of our module_utils, as this module runs it (from AnsiballZ's zip)."""
    module = sys.modules[name]
    return module.__loader__.get_source(name)


def per_user_files(host, changes, data, warn):
    """Each user's own part of profiles.json in USERS_DIR/<uid>.json (0400, owned by the user);
    files there that are not ours are left as they are, and said."""
    existing = {}
    if os.path.isdir(USERS_DIR):
        for name in os.listdir(USERS_DIR):
            path = os.path.join(USERS_DIR, name)
            existing[path] = host.read(path) if os.path.isfile(path) and not os.path.islink(path) else None
    files, foreign = user_files(data, existing)
    counts = {"written": 0, "removed": 0, "foreign": foreign[:20]}
    for path, (text, mode, owner) in sorted(files.items()):
        if changes.file(path, text, mode, prune=False, show=False, owner=owner, old=existing.get(path)):
            counts["written" if text is not None else "removed"] += 1
    if foreign:
        warn("%s: files not written by profile_host are left as they are: %s"
             % (USERS_DIR, ", ".join(foreign[:10])))
    return counts


def login_files(login):
    """{path: (text, mode)} of the host-side resolver; login {} removes it. Raises InputError (a bad policy)."""
    if login:
        doc, fallback, users = documents(login["policy"], login["parent"])
        # root only (the resolver runs as root from PAM): the policy names users and what each one gets
        files = {LOGIN_JSON: (marked_json(doc), 0o600), DEFAULTS_JSON: (marked_json(fallback), 0o600),
                 USERS_TSV: (MANAGED + "\n" + users, 0o600),
                 LOGIN_TOOL: (tool_text(sys.executable, LIB_DIR), 0o755)}
        for path, text in library_files(source_of, LIB_DIR).items():
            files[path] = (text, 0o644)
        return files
    files = dict.fromkeys([LOGIN_JSON, DEFAULTS_JSON, USERS_TSV, LOGIN_TOOL], (None, 0o644))
    files.update((path, (None, 0o644)) for path in library_files(lambda name: "", LIB_DIR))
    return files


class HostSide(object):
    """One call of profile_host: check() everything, then apply(). warnings: what the module says."""

    def __init__(self, host):
        self.host = host
        self.changes = Changes(host)
        self.warnings = []

    def check(self, params):
        """Every argument checked before the first change -> {files, timers} (the files the call wants, with
        the login resolver's). Raises InputError naming the field. params["data"] is decoded in place."""
        plans = params["plans"]
        if plans is not None:
            if plans and not all(isinstance(plans.get(k), t) for k, t in (("base", dict), ("plans", dict),
                                                                          ("timers", list))):
                raise InputError("plans: expected the output of the profile_plans filter (base, plans, timers); got "
                                 "keys %s" % ", ".join(sorted(plans)))
            if plans.get("timers") and not params["plan_tool"]:
                raise InputError("plan_tool: the text of fairshare-plan is required with plans")
            init = init_system()
            if init != "systemd":
                raise InputError("plans: switching plans needs systemd timers; this host runs %s" % init)
        if params["data"] is not None:
            try:
                params["data"] = decode_data(params["data"])
            except ValueError as exc:
                raise InputError(str(exc))
        hook = params["session_hook"] or None
        if hook and not SESSION_HOOK_RE.match(hook):
            raise InputError("session_hook: %r is not a script of cgroup_limit persist nor the login resolver; "
                             "expected /etc/fairshare/cgroupfs-<parent>.sh or %s" % (hook, LOGIN_TOOL))
        for field in ("pam_files", "pam_systemd_files"):
            for path in params[field]:
                if not is_pam_file(path, AUTHSELECT_LINKS if field == "pam_files" and params["pam_authselect"] else ()):
                    raise InputError("%s: %r is not a PAM configuration file; allowed: files directly in %s "
                                     "(not a link to elsewhere)" % (field, path, PAM_DIR))
        for field, what in (("pam_config", "a pam-auth-update profile"), ("pam_authselect", "an authselect profile")):
            if params[field] and not PAM_CONFIG_RE.match(params[field]):
                raise InputError("%s: %r is not %s name; use a-z, 0-9, '.', '_', '-'" % (field, params[field], what))
        try:
            files = wanted_files(params["data"], params["usage_tool"], params["greeting"], plans, params["plan_tool"])
        except ValueError as exc:
            raise InputError(str(exc))
        if params["login"] is not None:
            login = params["login"] if params["login"]["policy"] is not None else {}
            try:
                files.update(login_files(login))
            except InputError as exc:
                msg = str(exc)
                raise InputError(msg if msg.startswith("login.") else "login.policy: " + msg)
        return {"files": files, "hook": hook, "timers": [t["name"] for t in (plans or {}).get("timers", [])]}

    def apply(self, params, request, result):
        """Apply a checked call (check()); fills result. Raises CommandError, OSError."""
        host, changes = self.host, self.changes
        plans, files, hook = params["plans"], request["files"], request["hook"]
        timers = list(request["timers"])
        result["timers"] = list(timers)
        if timers:
            timers.append(PLAN_BOOT_UNIT)  # enabled with the timers: the plan in force after a reboot
        units_changed = False
        if plans is not None:
            stale = stale_timers(host, files)
            result["removed_timers"] = [os.path.basename(p) for p in stale]
            if stale:
                changes.run("stop and disable %s" % ", ".join(result["removed_timers"]),
                            ["systemctl", "disable", "--now"] + result["removed_timers"])
            for path in stale:
                units_changed |= changes.file(path, None, prune=False)
                result["files"].append({"path": path, "changed": True})
            if not timers and (host.read(PATHS["plan_boot"]) or "").startswith(MANAGED):
                changes.run("disable %s" % PLAN_BOOT_UNIT, ["systemctl", "disable", PLAN_BOOT_UNIT])
        library = os.path.join(LIB_DIR, *PACKAGE.split(".")[:1])
        foreign = []
        for path, (text, mode) in sorted(files.items()):
            old = host.read(path)
            if old != text and not is_ours(old):  # a file of someone else's at our path: left as it is, said
                foreign.append(path)
                result["files"].append({"path": path, "changed": False, "foreign": True})
                continue
            did = changes.file(path, text, mode, prune=False, show=not path.startswith(library + "/"), old=old)
            units_changed |= did and path.startswith(UNIT_DIR + "/")
            result["files"].append({"path": path, "changed": did})
        if foreign:
            self.warnings.append("files at profile_host's paths without its header or mark are left as they are "
                                 "(remove them to let it write its own): %s" % ", ".join(foreign[:10]))
        result["foreign"] = foreign
        if params["data"] is not None:
            result["user_files"] = per_user_files(host, changes, params["data"], self.warnings.append)
        pam_session(params, host, changes, hook, result, self.warnings.append)
        for path in params["pam_systemd_files"]:
            old = host.read(path)
            if old is None:
                continue
            text = pam_systemd_text(old, params["pam_systemd"], lambda name: host.read(os.path.join(PAM_DIR, name)))
            did = changes.file(path, text, os.stat(path).st_mode & 0o7777, prune=False)
            result["files"].append({"path": path, "changed": did})
        if units_changed:
            changes.run("systemctl daemon-reload", ["systemctl", "daemon-reload"])
        off = timers if (host.check_mode and units_changed) else timers_off(host, timers)
        if off:
            changes.run("enable and start %s" % ", ".join(off), ["systemctl", "enable", "--now"] + off)

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host-side resolver: a user the role never listed still gets a profile at login.

The role resolves the policy against the users `getent passwd` lists on the controller side.
A directory user that SSSD does not enumerate, or a user created after the run, is not in
that list. For them profile_host (option login) leaves on the host:

  /etc/fairshare/login.json            the policy less its users block, and the managed parent
  /etc/fairshare/login-users.tsv       the users block, one "name<TAB>json" line per user, so a
                                       login parses only its own line of a 10,000-user policy
  /etc/fairshare/login-defaults.json   the policy less tiers, rules and users (the fallback)
  LIB_DIR/ansible_collections/...      this module and what it imports, the very files the
                                       controller runs (one resolver, one answer)
  /usr/local/sbin/fairshare-login      runs main() below

The session hook of cgroup_limit persist (cgroupfs_persist) handles the users it lists itself
and execs `fairshare-login session` with an empty environment for any other uid. The tool
reads the user and their groups from NSS, resolves them with policy.resolve() and
policy.to_cgroup_limits() (the code of the resolve_profiles and profile_cgroup_limits
filters), creates the user's cgroup with cgroup_backend.CgroupfsBackend (the code of
cgroup_limit) and puts the process opening the session into it.

On a systemd host the PAM line calls `fairshare-login session` itself (no cgroupfs hook). A user
with a drop-in of the role's own (listed, or masked) keeps it. Any other user already gets the
policy's defaults from cgroup_limit's user-.slice template; a user whose tier, rules or own block
give something else gets it as a runtime drop-in (RUNTIME_DIR/user-UID.slice.d/RUNTIME_DROPIN, a
name parsed after the template's, gone at reboot) and at once on the live slice through
`systemctl set-property --runtime`. cgroup_limit removes that runtime drop-in when the role lists
the user later, so the role's own drop-in wins again.

Either way the resolved profile goes to PROFILE_DIR/UID.json (the user's own, mode 0400), where
fairshare-usage finds the tier of a user that profiles.json does not list.

It never blocks a login: every failure is logged to syslog (authpriv, tag fairshare-login)
and on stderr, with the reason, and the tool exits 0. A policy that cannot be read or
resolved falls back to login-defaults.json. It runs as root from pam_exec, so it takes
nothing from the environment but PAM_TYPE and PAM_USER, and runs Python isolated (-I).

Pure Python, no AnsibleModule import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import json
import os
import pwd
import sys

from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_backend import (
    LOGIN_RUNTIME_DROPIN, CgroupfsBackend, build_targets,
)
from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import (
    DROPIN_NAME, check_parent, devnum_of, normalize_limits, render_dropin, reset_properties, runtime_properties,
)
from ansible_collections.fairshare.resources.plugins.module_utils.cgroupfs_persist import LOGIN_TOOL
from ansible_collections.fairshare.resources.plugins.module_utils.host import CommandError, Host
from ansible_collections.fairshare.resources.plugins.module_utils.managed import MANAGED_HEADER
from ansible_collections.fairshare.resources.plugins.module_utils.platform import (
    init_system, read_cgroup_layout, read_sys_uid_max,
)
from ansible_collections.fairshare.resources.plugins.module_utils.policy import (
    PolicyError, resolve, to_cgroup_limits, user_defaults, validate,
)
from ansible_collections.fairshare.resources.plugins.module_utils.errors import FairshareError, InputError

LOGIN_JSON = "/etc/fairshare/login.json"
DEFAULTS_JSON = "/etc/fairshare/login-defaults.json"
USERS_TSV = "/etc/fairshare/login-users.tsv"
LIB_DIR = "/usr/local/lib/fairshare"
UNIT_DIR = "/etc/systemd/system"          # where cgroup_limit keeps its drop-ins
RUNTIME_DIR = "/run/systemd/system"       # ours for users the role did not list: gone at reboot
RUNTIME_DROPIN = LOGIN_RUNTIME_DROPIN      # 55-...: parsed after the template's 50-fairshare.conf
PROFILE_DIR = "/run/fairshare/login"      # UID.json: the profile a login resolved (fairshare-usage)
COMMAND_TIMEOUT = 10  # seconds a login waits at most for systemctl
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PACKAGE = "ansible_collections.fairshare.resources.plugins.module_utils"
# This module and everything it imports from the collection (a unit test checks the list).
LIBRARY = ("accounts", "cgroup_backend", "cgroup_model", "cgroupfs_persist", "errors", "facts", "host", "login",
           "managed", "plan_model", "platform", "policy", "tc_model", "units")
# The keys of a policy that the fallback keeps: who is covered, and the defaults.
_DEFAULT_KEYS = ("defaults", "exempt_users", "min_uid", "max_uid", "reserved_uids")


def library_files(source_of, lib_dir=LIB_DIR):
    """{path: text} of the library under LIB_DIR; source_of(module name) -> its source text.
    Each package level gets an empty __init__.py, so that no other ansible_collections
    package on the host's path is taken instead of ours."""
    parts = PACKAGE.split(".")
    files = {}
    for depth in range(1, len(parts) + 1):
        files[os.path.join(lib_dir, *(parts[:depth] + ["__init__.py"]))] = ""
    for name in LIBRARY:
        files[os.path.join(lib_dir, *(parts + [name + ".py"]))] = source_of("%s.%s" % (PACKAGE, name))
    return files


def tool_text(python, lib_dir=LIB_DIR):
    """The fairshare-login program: the host's Python, isolated from the environment and site-packages (-IS)."""
    return ("#!%s -IS\n%s\n# Resolves users the profiles role did not list at their login (module_utils/login.py).\n"
            "import sys\nsys.path.insert(0, %r)\n"
            "from %s.login import main  # noqa: E402\n%s\nsys.exit(main(sys.argv[1:], run=run))\n"
            % (python, MANAGED_HEADER, lib_dir, PACKAGE, TOOL_RUN))


def users_path(doc_path):
    """Where the users block of a login document is: login.json -> login-users.tsv."""
    return (doc_path[:-len(".json")] if doc_path.endswith(".json") else doc_path) + "-users.tsv"


def documents(policy, parent):
    """(login.json data, login-defaults.json data, login-users.tsv text) for a policy; raises InputError
    for a bad one. The users block goes to the TSV, a line per user."""
    validate(policy)
    parent = check_parent(parent, "login.parent")
    users = policy.get("users") or {}
    for name in users:
        if not name or any(c in name for c in "\t\n\r"):
            raise PolicyError("users: %r is not a user name" % (name,))
    fallback = dict((k, policy[k]) for k in _DEFAULT_KEYS if k in policy)
    rest = dict((k, v) for k, v in policy.items() if k != "users")
    lines = "".join("%s\t%s\n" % (name, json.dumps(over, sort_keys=True, separators=(",", ":")))
                    for name, over in sorted(users.items()))
    return {"policy": rest, "parent": parent, "users": "tsv"}, {"policy": fallback, "parent": parent}, lines


def user_block(path, name):
    """The users block of one user from a login-users.tsv: {name: override}, or {} when not named."""
    with open(path) as fh:
        text = "\n" + fh.read()
    start = text.find("\n%s\t" % name)
    if start < 0:
        return {}
    start += len(name) + 2
    end = text.find("\n", start)
    return {name: json.loads(text[start:] if end < 0 else text[start:end])}


def nss_user(name):
    """{'name', 'uid', 'groups'} of a user from NSS (local files, SSSD, nslcd, winbind)."""
    entry = pwd.getpwnam(name)
    groups = set()
    for gid in os.getgrouplist(entry.pw_name, entry.pw_gid):
        try:
            groups.add(grp.getgrgid(gid).gr_name)
        except KeyError:  # a gid without a name is no group a policy can name
            pass
    return {"name": entry.pw_name, "uid": entry.pw_uid, "groups": sorted(groups)}


def login_limits(doc, user, init="cgroupfs"):
    """-> (cgroup_limit entries, profile or None): resolve() and to_cgroup_limits(), the code of
    the controller's filters. No entries for a user the policy leaves out or lifts (unlimited).
    The whole policy was checked when profile_host wrote it (documents()); here only the blocks
    this user's profile is made of are (a hand-edited file that names a missing tier is a KeyError)."""
    prof = resolve(doc["policy"], [user], checked=True).get(user["name"])
    if prof is None or prof["unlimited"]:
        return [], prof
    return to_cgroup_limits({user["name"]: prof}, init), prof


class _Direct(object):
    """What Host needs from a module, without Ansible. Commands go to run(argv, data, env), which the
    fairshare-login program gives (TOOL_RUN): this library never starts a process by itself."""

    check_mode = False

    def __init__(self, run=None):
        self._run = run

    def run_command(self, argv, data=None, environ_update=None):
        if self._run is None:
            raise CommandError(argv, None, "", "no command runner here: fairshare-login gives it")
        env = dict({"PATH": SAFE_PATH, "LC_ALL": "C"}, **(environ_update or {}))  # nothing of the user's
        return self._run(argv, data, env)

    @staticmethod
    def atomic_move(src, dst):
        os.rename(src, dst)


# The command runner of the fairshare-login program (tool_text): argv, stdin text, environment ->
# (rc, stdout, stderr); at most COMMAND_TIMEOUT seconds (rc 124 after that).
TOOL_RUN = """
def run(argv, data, env, timeout=%d):
    import subprocess  # only here: a login that runs no command does not pay for the import
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(data.encode() if data else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return 124, out.decode(), "%%s: no answer in %%d s" %% (argv[0], timeout)
    return proc.returncode, out.decode(), err.decode()
""" % COMMAND_TIMEOUT


def log(message, error=True):
    """To syslog (authpriv, like the PAM stack's own messages) and to stderr."""
    try:
        import syslog
        syslog.openlog("fairshare-login", syslog.LOG_PID, syslog.LOG_AUTHPRIV)
        syslog.syslog(syslog.LOG_WARNING if error else syslog.LOG_INFO, message)
    except Exception:  # pylint: disable=broad-except
        pass
    sys.stderr.write("fairshare-login: %s\n" % message)


def load(path):
    """(document, None) or (None, why not)."""
    try:
        with open(path) as fh:
            doc = json.load(fh)
        if not isinstance(doc, dict) or not isinstance(doc.get("policy"), dict) or not doc.get("parent"):
            return None, "%s: not a login document (policy, parent)" % path
        return doc, None
    except (IOError, OSError, ValueError) as exc:
        return None, "%s: %s" % (path, exc)


def decide(user, paths=(LOGIN_JSON, DEFAULTS_JSON), init="cgroupfs"):
    """-> (doc, limits, profile, problems): the policy, else the defaults when it cannot be read
    or resolved (each problem a line for the log)."""
    problems = []
    for path in paths:
        doc, why = load(path)
        if doc is None:
            problems.append(why)
            continue
        try:
            if doc.get("users") == "tsv":  # only this user's line of the users block
                doc = dict(doc, policy=dict(doc["policy"], users=user_block(users_path(path), user["name"])))
            limits, prof = login_limits(doc, user, init)
            return doc, limits, prof, problems
        except (PolicyError, InputError, KeyError, TypeError, ValueError, IOError, OSError) as exc:
            problems.append("%s: %s" % (path, exc))
    return None, [], None, problems


def _aggregate(limits, name):
    """The user's own entry of a cgroup_limit limits list (workloads are the role's, per listed user)."""
    for entry in limits:
        if entry.get("user") == name and entry.get("state") != "absent":
            return normalize_limits(dict((k, v) for k, v in entry.items() if k != "user"), "login")
    return {}


def runtime_dropin(doc, user, limits, prof, version):
    """-> the runtime drop-in text that gives an unlisted user what the policy gives them, or None when
    the user-.slice template (the policy's defaults, cgroup_limit user_defaults) already does.
    An unlimited user gets the template's properties reset; a user outside the policy, nothing."""
    if prof is None:
        return None
    template = normalize_limits(user_defaults(doc["policy"]), "defaults")
    if prof["unlimited"]:
        if not template:
            return None
        return "\n".join([MANAGED_HEADER, "[Slice]"] + reset_properties(version)) + "\n"
    wanted = _aggregate(limits, user["name"])
    if wanted == template:
        return None
    return render_dropin(wanted, version)[0]


def save_profile(host, user, prof, parent, profile_dir=PROFILE_DIR):
    """The profile a login resolved, for fairshare-usage: the user's own file (mode 0400), written as
    root through a new file of ours and a rename, never through a link someone put there."""
    if prof is None:
        return
    host.write_atomic(os.path.join(profile_dir, "%d.json" % user["uid"]),
                      json.dumps({"user": user["name"], "profile": prof, "parent": parent}, sort_keys=True) + "\n",
                      0o400, owner=user["uid"])


def has_own_dropin(uid, unit_dir=UNIT_DIR):
    """Has the user's slice a drop-in of cgroup_limit's (the role listed, masked or exempted them)?"""
    return os.path.exists(os.path.join(unit_dir, "user-%d.slice.d" % uid, DROPIN_NAME))


def systemd_session(host, doc, user, limits, prof, version, unit_dir=UNIT_DIR, runtime_dir=RUNTIME_DIR):
    """A systemd host: the user's slice gets what the policy gives them, unless the role listed them.
    -> what was done, a word for the log."""
    unit = "user-%d.slice" % user["uid"]
    if has_own_dropin(user["uid"], unit_dir):
        return "the role's own drop-in"  # a listed, exempt or system user: cgroup_limit's file wins
    path = os.path.join(runtime_dir, unit + ".d", RUNTIME_DROPIN)
    text = runtime_dropin(doc, user, limits, prof, version)
    if text is None:
        current = host.read(path)
        if current is None or not current.startswith(MANAGED_HEADER):
            return "the template's defaults"
        os.unlink(path)  # an earlier login's tier: back to the template, now too
        template = normalize_limits(user_defaults(doc["policy"]), "defaults")
        props = runtime_properties(render_dropin(template, version)[0]) if template else reset_properties(version)
    else:
        host.write_atomic(path, text, 0o644)
        props = runtime_properties(text)
    host.change(["systemctl", "set-property", "--runtime", unit] + props)
    return "runtime drop-in %s and the live slice" % path if text else "back to the template's defaults"


def session(name, pid, paths=(LOGIN_JSON, DEFAULTS_JSON), run=None):
    """Resolve a user at login and put the process opening the session (pid) in their cgroup.
    run: the program's command runner (TOOL_RUN)."""
    try:
        user = nss_user(name)
    except KeyError:
        log("%r is not a user (NSS); session left where it is" % name)
        return
    systemd = init_system() == "systemd"
    if systemd and has_own_dropin(user["uid"]):
        return  # listed, root, system, exempt or unlimited: the run decided; nothing to resolve
    doc, limits, prof, problems = decide(user, paths, "systemd" if systemd else "cgroupfs")
    fallback = len(problems) > 0
    for why in problems:
        log("%s (uid %d): %s" % (user["name"], user["uid"], why))
    host = Host(_Direct(run))
    if doc is not None:
        save_profile(host, user, prof, doc["parent"])
    if systemd:
        if doc is not None:
            layout = read_cgroup_layout()
            done = systemd_session(host, doc, user, limits, prof,
                                   "v1" if "memory" in layout["v1"] else "v2")
            what = ("defaults only (fallback)" if fallback else "outside the policy" if prof is None
                    else "tier %s" % (prof["tier"] or "none"))
            log("%s (uid %d): %s; %s" % (user["name"], user["uid"], what, done), error=fallback)
        return
    if not limits:
        if fallback:
            log("%s (uid %d): no profile could be read; session left where it is" % (user["name"], user["uid"]))
        return
    backend = CgroupfsBackend(host, read_cgroup_layout(), doc["parent"])
    plans = build_targets(limits, "present", False, doc["parent"], lambda device: devnum_of(device, os.stat),
                          read_sys_uid_max())
    backend.apply(plans, False)
    dirs = backend.enter(pid)
    what = "defaults only (fallback)" if fallback else "tier %s" % (prof["tier"] or "none, defaults")
    log("%s (uid %d): %s; session %d in %s" % (user["name"], user["uid"], what, pid, " ".join(dirs)), error=fallback)


def main(argv, environ=None, run=None):
    environ = os.environ if environ is None else environ
    if argv[:1] == ["session"] and len(argv) == 1:
        if environ.get("PAM_TYPE") != "open_session":
            return 0
        name = environ.get("PAM_USER") or ""
        try:
            session(name, os.getppid(), run=run)
        except (FairshareError, IOError, OSError) as exc:
            log("%s: %s; session left where it is" % (name, exc))
        except Exception as exc:  # pylint: disable=broad-except  # a login is never refused because of us
            log("%s: unexpected %s: %s; session left where it is" % (name, type(exc).__name__, exc))
        return 0
    if argv[:1] == ["resolve"] and len(argv) in (2, 3):
        try:
            user = nss_user(argv[1])
        except KeyError:
            sys.stderr.write("fairshare-login: %r is not a user (NSS)\n" % argv[1])
            return 1
        doc, limits, prof, problems = decide(user, argv[2:] or (LOGIN_JSON, DEFAULTS_JSON))
        sys.stdout.write(json.dumps({"user": user, "profile": prof, "limits": limits, "problems": problems,
                                     "parent": (doc or {}).get("parent")}, sort_keys=True) + "\n")
        return 0
    sys.stderr.write("usage: %s session (from pam_exec) | resolve USER [LOGIN_JSON]\n" % LOGIN_TOOL)
    return 2

# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What keeps cgroup_limit's cgroupfs tree useful on hosts without systemd.

cgroupfs forgets everything at a reboot, and nothing puts a login session into the
user's cgroup by itself. cgroup_limit (persist=true) writes one POSIX shell script per
managed parent, rendered here from the same (controller, file, value) list the backend
writes:

  <script> restore   recreates the parent's cgroups and writes their limits;
  <script> session   run by pam_exec at session open (PAM_TYPE, PAM_USER): moves the
                     process opening the session (su, sshd, login, cron - the
                     parent of pam_exec's child) into the user's cgroup, so the shell
                     or job it starts next is limited. When the user's cgroup is gone
                     (the host rebooted) it runs restore first. A uid it does not list
                     (a directory user, a user created after the run) goes to
                     LOGIN_TOOL (login.py) with an empty environment, which resolves
                     the policy for them. It always exits 0: a login is never refused
                     because of it.

On cgroup v2 a cgroup with controllers enabled for its children may hold no processes,
so there the session goes into a leaf SESSION_LEAF below the user's cgroup (a name no
workload can take: workload names are [a-z0-9_]).

Pure Python, no AnsibleModule import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shlex

from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import MANAGED_HEADER

SCRIPT_DIR = "/etc/fairshare"
SESSION_LEAF = "login-sessions"
LOGIN_TOOL = "/usr/local/sbin/fairshare-login"


def devices_script_path(parent, directory=SCRIPT_DIR):
    """/etc/fairshare/gpu-devices-<parent>.sh: gpu_access's device allowlists (cgroup v1), which the
    session hook puts back at a user's login when the cgroup is gone (after a reboot)."""
    return "%s/gpu-devices-%s.sh" % (directory, parent.strip("/").replace("/", "-"))


def render_devices(parent, root, allow):
    """The text of devices_script_path: allow {uid: [(kind, 'MAJ:MIN'), ...]} of the restricted users.
    `SCRIPT UID` makes <root>/<parent>/user-UID, denies every device and allows the list."""
    q = shlex.quote
    cases = "".join("    %d) set -- %s ;;\n" % (uid, " ".join(q("%s %s rwm" % e) for e in entries))
                    for uid, entries in sorted(allow.items()))
    return ("#!/bin/sh\n%s\n# gpu_access: device allowlists under %s (cgroup v1), put back at a login after a reboot\n"
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PATH\nuid=${1:-}\ncase \"$uid\" in\n%s    *) exit 0 ;;\n"
            "esac\ndir=%s\nfor part in %s user-$uid; do\n    dir=$dir/$part\n    [ -d \"$dir\" ] || /bin/mkdir \"$dir\" || exit 1\n"
            "done\necho a > \"$dir/devices.deny\" || exit 1\nfor rule in \"$@\"; do\n"
            "    printf '%%s\\n' \"$rule\" > \"$dir/devices.allow\" || exit 1\ndone\n"
            % (MANAGED_HEADER, parent, cases, q(root), " ".join(q(p) for p in parent.strip("/").split("/"))))


def script_path(parent, directory=SCRIPT_DIR):
    """/etc/fairshare/cgroupfs-<parent>.sh ('/' in a nested parent becomes '-')."""
    return "%s/cgroupfs-%s.sh" % (directory, parent.strip("/").replace("/", "-"))


_HEAD = r'''#!/bin/sh
%(header)s
# The cgroups of fairshare.resources.cgroup_limit under %(parent)s (cgroupfs backend).
#   %(path)s restore   recreate them and write their limits (after a reboot)
#   %(path)s session   from pam_exec (PAM_TYPE, PAM_USER): put the session in the user's cgroup
# Run as root from pam_exec with the PAM environment, which a user may set (pam_env user_readenv):
# nothing is taken from it but PAM_TYPE and PAM_USER, and every tool is called by its full path.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
nl='
'
IFS=" $(printf '\t')$nl"
export PATH
unset ENV CDPATH
LEAF=%(leaf)s
PARENT=%(parent_q)s
JOIN_ROOTS=%(join)s
DEVICES_SCRIPT=%(devices)s
LOGIN_TOOL=%(login)s
LEVELS=%(levels)s
status=0

put() {
    printf '%%s\n' "$2" 2>/dev/null >"$1" || { echo "fairshare: cannot write '$2' to $1" >&2; status=1; }
}

# mk VERSION CONTROLLER ROOT RELPATH: mkdir each level; v2 enables the controller in each
# parent's cgroup.subtree_control, v1 cpuset copies cpuset.mems and cpuset.cpus down.
mk() {
    dir=$3
    rest=$4
    while [ -n "$rest" ]; do
        part=${rest%%%%/*}
        if [ "$part" = "$rest" ]; then rest=; else rest=${rest#*/}; fi
        if [ "$1" = v2 ] && ! /bin/grep -qw -- "$2" "$dir/cgroup.subtree_control" 2>/dev/null; then
            put "$dir/cgroup.subtree_control" "+$2"
        fi
        [ -d "$dir/$part" ] || /bin/mkdir "$dir/$part" || status=1
        if [ "$1" = v1 ] && [ "$2" = cpuset ]; then
            for f in cpuset.mems cpuset.cpus; do
                [ -n "$(/bin/cat "$dir/$part/$f" 2>/dev/null)" ] || put "$dir/$part/$f" "$(/bin/cat "$dir/$f" 2>/dev/null)"
            done
        fi
        dir=$dir/$part
    done
}

restore() {
'''

_TAIL = r'''}

# dirs_of UID: the user's cgroup in each hierarchy, or nothing for a user not managed here.
dirs_of() {
    case "$1" in
%(cases)s
        *) return 1 ;;
    esac
}

session() {
    [ "${PAM_TYPE:-}" = open_session ] || return 0
    uid=$(/usr/bin/id -u -- "${PAM_USER:-}" 2>/dev/null) || return 0
    # hierarchies other modules keep per user under the same parent (gpu_access: v1 devices); after
    # a reboot gpu_access's script makes the user's device cgroup again, with its allowlist
    for root in $JOIN_ROOTS; do
        dir=$root/$PARENT/user-$uid
        [ -d "$dir" ] || [ ! -x "$DEVICES_SCRIPT" ] || "$DEVICES_SCRIPT" "$uid" 2>/dev/null
        [ -d "$dir" ] && echo "$PPID" 2>/dev/null >"$dir/cgroup.procs"
    done
    if ! dirs=$(dirs_of "$uid"); then
        # not listed by the last run: the host-side resolver decides (it exits 0, logs any failure).
        # After a reboot the levels above the users (the parent's total, each tier's) come back first,
        # with their limits: the resolver would make a missing level without them.
        for dir in $LEVELS; do
            [ -d "$dir" ] || { restore >/dev/null 2>&1; break; }
        done
        [ -x "$LOGIN_TOOL" ] || return 0
        exec /usr/bin/env -i PAM_TYPE="$PAM_TYPE" PAM_USER="$PAM_USER" "$LOGIN_TOOL" session
    fi
    for dir in $dirs; do
        [ -d "$dir" ] || { restore >/dev/null 2>&1; break; }
    done
    for dir in $dirs; do
        [ -d "$dir" ] || continue
        if [ -f "$dir/cgroup.subtree_control" ]; then
            [ -d "$dir/$LEAF" ] || /bin/mkdir "$dir/$LEAF" 2>/dev/null
            dir=$dir/$LEAF
        fi
        echo "$PPID" 2>/dev/null >"$dir/cgroup.procs"
    done
    return 0
}

case "${1:-}" in
    restore) restore; exit $status ;;
    session) session; exit 0 ;;
    *) echo "usage: $0 restore|session" >&2; exit 2 ;;
esac
'''


STATE_MARK = "# fairshare-targets: "


def parse_targets(text):
    """The targets a script covers, from its last line (what render_targets wrote): {relpath: {uid, steps}}."""
    text = "\n" + (text or "")
    at = text.rfind("\n" + STATE_MARK)  # the last such line, found without splitting a script of 10,000 targets
    if at < 0:
        return {}
    line = text[at + 1 + len(STATE_MARK):].split("\n", 1)[0]
    try:
        targets = json.loads(line)
    except ValueError:
        return {}
    return targets if isinstance(targets, dict) else {}


RENDER_MARK = "# fairshare-render: "


def render_key(parent, path, join_roots=()):
    """What the script's text depends on besides its targets (this module's templates included):
    a script whose targets and key are those of this call is already the one render_targets makes."""
    import hashlib  # here, not at the top: the login resolver imports this module, and hashlib costs a login ~10 ms
    text = json.dumps([_HEAD, _TAIL, MANAGED_HEADER, LOGIN_TOOL, SESSION_LEAF, parent, path, list(join_roots)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def script_is_current(text, targets, parent, path, join_roots=(), parsed=None):
    """True when text (an existing script) is what render_targets would write for these targets -
    10,000 targets are compared in a few ms, where rendering them again takes most of a second.
    parsed: parse_targets(text), where the caller has it already."""
    lines = (text or "").rstrip("\n").rsplit("\n", 2)
    if len(lines) != 3 or lines[1] != RENDER_MARK + render_key(parent, path, join_roots):
        return False
    return (parse_targets(lines[2]) if parsed is None else parsed) == targets


def render_targets(parent, targets, path, join_roots=()):
    """The script for every target it covers: {relpath: {'uid': uid or None, 'steps': [[version,
    controller, root, relpath, [[file, value], ...]], ...]}}, parents before their children. The
    targets go in its last line too, so that the next call that changes some of them keeps the rest."""
    steps, users, levels = [], [], []
    user_paths = set(r for r, t in targets.items() if t.get("uid") is not None)
    for relpath in sorted(targets, key=lambda r: (r.count("/"), r)):
        target = targets[relpath]
        dirs = []
        for version, ctrl, root, rel, files in target["steps"]:
            steps.append((version, ctrl, root, rel, [tuple(f) for f in files]))
            if "%s/%s" % (root, rel) not in dirs:
                dirs.append("%s/%s" % (root, rel))
        if target.get("uid") is not None:
            users.append((int(target["uid"]), dirs))
        elif not _below(relpath, user_paths):  # a level above users (a total), not a user's workload
            levels.extend(d for d in dirs if d not in levels)
    text = render(parent, steps, users, path, join_roots, levels)
    return (text + RENDER_MARK + render_key(parent, path, join_roots) + "\n"
            + STATE_MARK + json.dumps(targets, sort_keys=True, separators=(",", ":")) + "\n")


def _below(relpath, paths):
    """True when relpath is inside one of paths (a set of relpaths)."""
    parts = relpath.split("/")
    return any("/".join(parts[:i]) in paths for i in range(1, len(parts)))


def render(parent, steps, users, path, join_roots=(), levels=()):
    """The script's text.

    steps: [(version, controller, root, relpath, [(file, value), ...])] in write order;
    users: [(uid, [cgroup dir, ...])] of the user targets, the ones a login is put into;
    path: where the script goes (named in its usage lines);
    join_roots: hierarchies where a login also joins <root>/<parent>/user-UID when another module made
    it (the v1 devices hierarchy of gpu_access), so that its rules hold for logins too;
    levels: the cgroup dirs of the targets above users (the parent's total, the tiers' levels): a login
    of a user the script does not list runs restore first where one of them is missing (a reboot).
    """
    q = shlex.quote
    lines = []
    for version, ctrl, root, relpath, files in steps:
        lines.append("    mk %s %s %s %s\n" % (version, ctrl, q(root), q(relpath)))
        for fname, value in files:
            lines.append("    put %s %s\n" % (q("%s/%s/%s" % (root, relpath, fname)), q(value)))
    if not lines:
        lines.append("    :\n")
    cases = "".join("        %d) echo %s ;;\n" % (uid, q(" ".join(dirs))) for uid, dirs in users if dirs)
    values = dict(header=MANAGED_HEADER, parent=parent, path=path, leaf=SESSION_LEAF, login=LOGIN_TOOL,
                  parent_q=q(parent), join=q(" ".join(join_roots)), levels=q(" ".join(levels)),
                  devices=q(devices_script_path(parent, os.path.dirname(path))))
    return _HEAD % values + "".join(lines) + _TAIL % dict(cases=cases.rstrip("\n"))


def pam_module(script):
    """The module and arguments of the PAM session line that runs a script."""
    return "pam_exec.so quiet %s session" % script


def pam_line(script):
    """The PAM session line that runs a script (optional: it never blocks a login)."""
    return "session optional " + pam_module(script)

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: profile_host
short_description: The host side of the resource profiles, in one call
version_added: "0.1.0"
description:
  - Writes, in one module call, what the P(fairshare.resources.profiles#role) role leaves on a host besides the
    limits themselves - C(/etc/fairshare/profiles.json) (limits, where each comes from, C(cgroup_parent) values),
    the C(fairshare-usage) tool and its one-line login greeting (C(/etc/profile.d/fairshare-usage.sh)), and for
    plans C(/etc/fairshare/plans.json), the C(fairshare-plan) tool, the service C(fairshare-plan@.service) and two
    timers per plan, which it enables and starts; timers of plans no longer given are stopped and removed.
  - With plans it also enables and starts C(fairshare-plan-boot.service), which runs C(fairshare-plan --now) -
    a plan's settings are runtime drop-ins, gone after a reboot, so at boot (and when the service is first
    started) the plan whose window holds that moment is put in force again (systemd 250 and later, which can
    place any calendar event; before that the plan starts at its next timer).
  - Files are compared first and written atomically only where their text or mode differs; one C(daemon-reload)
    when a unit file changed. A part not given (V(null)) is left as it is.
  - One call instead of one task per file keeps a converge of many hosts short.
author:
  - fairshare.resources contributors (@fairshare)
extends_documentation_fragment:
  - fairshare.resources.report
attributes:
  check_mode:
    support: full
    description: Compares and reports; changes nothing.
  diff_mode:
    support: full
    description: Text of every file written or removed.
options:
  data:
    description:
      - What C(/etc/fairshare/profiles.json) holds (the role passes the resolved profiles and the
        cgroup_parent values). Not written when null.
      - Its C(profiles), C(cgroup_parents), C(gpu_allocation) and C(mig_allocation) may each be given as a JSON string of the
        same object (the role passes them so, with C(resolve_profiles(..., as_json=true))); they are decoded here.
      - C(profiles.json) is root's (mode 0600). Each user's own part of it (their profile, cgroup_parent values and
        GPUs, MIG instances) goes to C(/etc/fairshare/users/<uid>.json), mode 0400, owned by that user, which C(fairshare-usage)
        reads for them; no user can read another's. Files there of users no longer in O(data) are removed when
        they are ours; any other file there is left as it is and reported.
    type: dict
  usage_tool:
    description: The text of C(fairshare-usage), installed as C(/usr/local/bin/fairshare-usage) (mode 0755).
      Not touched when empty.
    type: str
  greeting:
    description: With O(usage_tool), the login greeting in C(/etc/profile.d); V(false) removes it.
    type: bool
    default: true
  plans:
    description:
      - The output of the P(fairshare.resources.profile_plans#filter) filter (C(base), C(plans), C(timers)).
        V({}) (a policy without plans) removes every plan timer, the plan file, the tool and the services.
        Not touched when null.
      - Needs systemd; on a host without it the module fails and changes nothing.
    type: dict
  plan_tool:
    description: The text of C(fairshare-plan), installed as C(/usr/local/sbin/fairshare-plan); required with plans
      that have timers.
    type: str
  session_hook:
    description:
      - The session script of M(fairshare.resources.cgroup_limit) for hosts without systemd
        (RV(fairshare.resources.cgroup_limit#module:persist_script), C(/etc/fairshare/cgroupfs-<parent>.sh)), or on
        systemd hosts the login resolver itself, C(/usr/local/sbin/fairshare-login) (see O(login)). Each file of
        O(pam_files) gets one line at its end, C(session optional pam_exec.so quiet <script> session), under a marker
        comment, so a login lands in the user's cgroup (or, with systemd, gets the user's tier in their slice).
      - Empty or null removes that line (and only that line) from the O(pam_files).
    type: str
  pam_files:
    description: The PAM session files of the distribution (the role's C(vars/<os_family>.yml)), files directly in
      C(/etc/pam.d) (a path elsewhere, or a link that leads out of it, fails the task before any change). Files that
      do not exist are skipped; an existing file keeps its mode. With O(pam_config) they are only checked for the line
      (and a line this module wrote there itself earlier is taken out).
    type: list
    elements: str
    default: []
  pam_config:
    description:
      - Debian's way instead of editing O(pam_files) - the name of a C(pam-auth-update) profile in
        C(/usr/share/pam-configs) that carries the session line; the module writes it and runs
        C(pam-auth-update --package --enable NAME), or with no O(session_hook) C(--remove NAME) and deletes it.
      - When pam-auth-update leaves a file without the line (the file was edited by hand), the task warns.
    type: str
  pam_authselect:
    description:
      - RedHat's way instead of editing O(pam_files) where authselect manages them (C(authselect current) names a
        profile) - the name of an authselect custom profile. The module makes it from the profile in use
        (C(authselect create-profile NAME --base-on PROFILE), which copies its templates to
        C(/etc/authselect/custom/NAME)), adds the session line to its C(system-auth) and C(password-auth), notes
        the profile it was made from in C(fairshare-base) there, and selects it (C(authselect select custom/NAME)
        with the features that were enabled), so the line survives every later C(authselect select) or
        C(apply-changes). With no O(session_hook) the profile it was made from is selected again (with the
        features enabled now) and the custom profile is removed.
      - Where authselect is missing or manages nothing here, the O(pam_files) are edited as without this option.
      - The custom profile does not follow later updates of the profile it was made from; remove it (run once
        without O(session_hook)) and run again to take them.
    type: str
  pam_pc_include:
    description:
      - SUSE's way, where pam-config(8) makes the O(pam_files) - each a link C(common-session -> common-session-pc)
        to the file pam-config writes and rewrites. pam-config has no session C(pam_exec) line of its own, so such a
        link becomes a file of this module's that includes the C(-pc) file (C(session include common-session-pc),
        as the link did) and adds the session line under it; pam-config goes on writing the C(-pc) file, and its
        changes take effect through the include. With no O(session_hook) the link is put back.
      - A file in O(pam_files) that is neither such a link nor that file of ours (the link was replaced by hand) is
        edited as without this option.
    type: bool
    default: false
  pam_systemd_files:
    description:
      - systemd hosts - the PAM files of job schedulers whose session stack has no C(pam_systemd) (the role's
        C(vars/<os_family>.yml); Debian's C(cron) and C(atd) only include C(common-session-noninteractive)). Each gets
        C(-session optional pam_systemd.so) at its end, under a marker comment, so that a user's cron and at jobs run
        in the user's slice, under the user's limits, instead of in C(cron.service). A file whose stack already runs
        C(pam_systemd) (itself, or a file it includes) is left as it is; files that do not exist are skipped.
      - Files directly in C(/etc/pam.d) only.
    type: list
    elements: str
    default: []
  pam_systemd:
    description: V(false) takes our C(pam_systemd) line out of the O(pam_systemd_files) again (and only that line).
    type: bool
    default: true
  login:
    description:
      - The host-side resolver for users the role could not list (directory users SSSD does not enumerate, users
        created after the run), on hosts where O(session_hook) runs at each login. V(null) leaves it as it is;
        V({}) (no O(login.policy)) removes it.
      - On systemd hosts (O(session_hook) V(/usr/local/sbin/fairshare-login)) a user without a drop-in of
        cgroup_limit's own, whose tier, rules or own block give more than the C(user-.slice) template's defaults,
        gets C(/run/systemd/system/user-UID.slice.d/55-fairshare-login.conf) and the same values on the live slice
        (C(systemctl set-property --runtime)) while the session opens.
      - Writes C(/etc/fairshare/login.json) (the policy and the parent; its C(users) block goes to
        C(/etc/fairshare/login-users.tsv), a line per user, so that a login reads only its own), C(/etc/fairshare/login-defaults.json) (the
        policy less tiers, rules and users - the fallback when the policy cannot be read or resolved), the
        resolver's Python library under C(/usr/local/lib/fairshare) (the collection's own module_utils, the code the
        controller resolves with) and C(/usr/local/sbin/fairshare-login), run with the host's Python in isolated mode.
      - At a login the session hook hands a uid it does not list to C(fairshare-login session), which resolves the
        user (groups from NSS), creates their cgroup with the profile's limits and puts the session in it. It
        never refuses a login; failures go to syslog (C(authpriv), tag C(fairshare-login)).
        C(fairshare-login resolve USER) prints what a user would get.
      - The policy is checked before anything is written; a bad one fails the task and changes nothing.
    type: dict
    suboptions:
      policy:
        description: The policy (C(fairshare_policy)); without it the resolver is removed.
        type: dict
      parent:
        description: The managed parent of M(fairshare.resources.cgroup_limit) (cgroupfs backend).
        type: str
        default: fairshare
notes:
  - The PAM line is V(optional) and the script always exits 0, so it cannot refuse a login. On RedHat
    C(authselect) rewrites C(system-auth) and C(password-auth); O(pam_authselect) puts the line in a custom profile.
  - Timers are matched by name (C(fairshare-plan-NAME.timer), C(fairshare-plan-NAME-end.timer)); only files that
    start with the C(# managed by fairshare.resources) header are ever removed.
seealso:
  - module: fairshare.resources.cgroup_limit
"""

EXAMPLES = r"""
- name: Profiles file, usage tool and greeting, and the plans of the policy
  fairshare.resources.profile_host:
    data: {profiles: "{{ profiles }}", parent: fairshare}
    usage_tool: "{{ lookup('ansible.builtin.file', 'fairshare-usage') }}"
    plans: "{{ profiles | fairshare.resources.profile_plans(fairshare_policy.plans) }}"
    plan_tool: "{{ lookup('ansible.builtin.file', 'fairshare-plan') }}"

- name: A host without systemd - users the role never saw are resolved at their first login
  fairshare.resources.profile_host:
    session_hook: /etc/fairshare/cgroupfs-fairshare.sh
    pam_files: [/etc/pam.d/common-session, /etc/pam.d/common-session-noninteractive]
    login: {policy: "{{ fairshare_policy }}", parent: fairshare}

- name: A systemd host - users the role never saw get their tier at their first login
  fairshare.resources.profile_host:
    session_hook: /usr/local/sbin/fairshare-login
    pam_config: fairshare-session
    pam_files: [/etc/pam.d/common-session, /etc/pam.d/common-session-noninteractive]
    login: {policy: "{{ fairshare_policy }}"}

- name: A RedHat host without systemd - logins go into the users' cgroups
  fairshare.resources.profile_host:
    session_hook: /etc/fairshare/cgroupfs-fairshare.sh
    pam_files: [/etc/pam.d/system-auth, /etc/pam.d/password-auth]

- name: An openSUSE or SLES host - common-session, pam-config's link, becomes a file that includes its -pc file
  fairshare.resources.profile_host:
    session_hook: /usr/local/sbin/fairshare-login
    pam_files: [/etc/pam.d/common-session]
    pam_pc_include: true
    login: {policy: "{{ fairshare_policy }}"}

- name: The same on Debian, through a pam-auth-update profile
  fairshare.resources.profile_host:
    session_hook: /etc/fairshare/cgroupfs-fairshare.sh
    pam_config: fairshare-session
    pam_files: [/etc/pam.d/common-session, /etc/pam.d/common-session-noninteractive]
"""

RETURN = r"""
summary:
  description:
    - Per list of the result (RV(files), RV(actions)), how many entries there are (V(total)), changed (files),
      were returned and were left out (O(report=auto) on a large host).
  returned: always
  type: dict
  sample: {files: {total: 10000, changed: 10000, returned: 100, omitted: 9900}}
files:
  description: Every file this call manages, with whether it was written or removed.
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/fairshare/profiles.json, changed: true}]
foreign:
  description:
    - Files at the paths this module writes that it did not write (no managed header, or for the JSON files no
      C(_managed) mark); left as they are, and named in a warning. Remove one to let the module write its own.
  returned: success
  type: list
  elements: str
  sample: [/etc/fairshare/plans.json]
timers:
  description: The plan timers wanted (enabled and started).
  returned: always
  type: list
  elements: str
  sample: [fairshare-plan-night.timer, fairshare-plan-night-end.timer]
removed_timers:
  description: Plan timers of plans no longer given, stopped and removed.
  returned: always
  type: list
  elements: str
actions:
  description:
    - What was done (or would be, in check mode).
    - With O(report=auto), the first 100 and a last line that counts the others (a first run writes a file per user).
  returned: always
  type: list
  elements: str
user_files:
  description: The per-user files of O(data) - how many were written and removed, and up to 20 files there that are
    not ours (left as they are).
  returned: when O(data) is given
  type: dict
  sample: {written: 20, removed: 1, foreign: []}
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
from ansible_collections.fairshare.resources.plugins.module_utils.bounded import REPORT_CHOICES, bound_result
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError
from ansible_collections.fairshare.resources.plugins.module_utils.host import CommandError, Host
from ansible_collections.fairshare.resources.plugins.module_utils.profile_backend import HostSide


def main():
    module = AnsibleModule(
        argument_spec=dict(
            data=dict(type="dict"),
            usage_tool=dict(type="str"),
            greeting=dict(type="bool", default=True),
            plans=dict(type="dict"),
            plan_tool=dict(type="str"),
            session_hook=dict(type="str"),
            pam_files=dict(type="list", elements="str", default=[]),
            pam_config=dict(type="str"),
            pam_authselect=dict(type="str"),
            pam_pc_include=dict(type="bool", default=False),
            pam_systemd_files=dict(type="list", elements="str", default=[]),
            pam_systemd=dict(type="bool", default=True),
            login=dict(type="dict", options=dict(policy=dict(type="dict"),
                                                 parent=dict(type="str", default="fairshare"))),
            report=dict(type="str", choices=REPORT_CHOICES, default="auto"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    host = Host(module)
    side = HostSide(host)
    result = {"changed": False, "files": [], "timers": [], "removed_timers": [], "actions": []}
    try:
        request = side.check(params)
    except InputError as exc:
        module.fail_json(msg=str(exc), **result)
    try:
        side.apply(params, request, result)
    except (CommandError, OSError) as exc:
        module.fail_json(msg=str(exc), **host.partial(result))
    finally:
        for warning in side.warnings:
            module.warn(warning)
    side.changes.summary(result, False)
    module.exit_json(**bound_result(result, ["files"], params["report"], module._diff, side.changes.diff, params,
                                    line_keys=["actions"]))


if __name__ == "__main__":
    main()

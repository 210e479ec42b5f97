from ansible_collections.fairshare.resources.plugins.module_utils.plan_model import plan_units
from ansible_collections.fairshare.resources.plugins.module_utils.policy import resolve
from ansible_collections.fairshare.resources.plugins.module_utils import profile_files as pf
from ansible_collections.fairshare.resources.plugins.module_utils.profile_files import (
    GREETING, MANAGED, PATHS, as_json, render_timer, wanted_files,
)

import json

import pytest


def test_files_of_a_policy_with_a_plan():
    pol = {"defaults": {"cpu": {"max": "50%"}},
           "plans": {"night": {"schedule": "Mon..Fri 20:00", "until": "07:00", "scale": {"cpu.max": 2}}}}
    prof = resolve(pol, [{"name": "alice", "uid": 1000, "groups": []}])
    files = wanted_files({"profiles": prof}, "#!/usr/bin/python3\n", True, plan_units(prof, pol["plans"]), "#!plan\n")
    assert files[PATHS["usage_tool"]] == ("#!/usr/bin/python3\n", 0o755)
    assert files[PATHS["greeting"]] == (GREETING, 0o644)
    assert files[PATHS["plan_tool"]] == ("#!plan\n", 0o755)
    assert '"CPUQuota=100%"' in files[PATHS["plans"]][0]
    start = files["/etc/systemd/system/fairshare-plan-night.timer"][0]
    end = files["/etc/systemd/system/fairshare-plan-night-end.timer"][0]
    assert start.startswith(MANAGED) and "OnCalendar=Mon..Fri 20:00\nAccuracySec=1s\nUnit=fairshare-plan@night.service\n" in start
    assert "OnCalendar=*-*-* 07:00:00\nAccuracySec=1s\nUnit=fairshare-plan@base.service\n" in end


def test_parts_not_given_are_left_alone_and_no_plans_remove_the_plan_files():
    assert wanted_files() == {}
    files = wanted_files(None, "tool", False, {}, None)
    assert files[PATHS["greeting"]] == (None, 0o644)  # greeting off: removed
    assert files[PATHS["plans"]][0] is None and files[PATHS["plan_tool"]][0] is None
    assert files[PATHS["plan_service"]][0] is None and PATHS["profiles"] not in files


def test_a_timer_name_that_is_not_ours_is_refused():
    with pytest.raises(ValueError):
        render_timer({"name": "../../evil.timer", "when": "daily", "plan": "x", "what": "start"})


def test_pam_session_text_adds_our_line_once_and_removes_only_it():
    debian = ("# /etc/pam.d/common-session\nsession [default=1] pam_permit.so\nsession requisite pam_deny.so\n"
              "session optional pam_exec.so /usr/local/bin/someone-elses-hook\n")
    hook = "/etc/fairshare/cgroupfs-fairshare.sh"
    added = pf.pam_session_text(debian, hook)
    assert added == debian + pf.PAM_MARK + "\nsession optional pam_exec.so quiet %s session\n" % hook
    assert pf.pam_session_text(added, hook) == added  # idempotent
    moved = pf.pam_session_text(added, "/etc/fairshare/cgroupfs-lab.sh")
    assert moved.count("pam_exec.so quiet") == 1 and moved.endswith("cgroupfs-lab.sh session\n")
    assert pf.pam_session_text(added) == debian  # removed: someone else's pam_exec line stays
    assert pf.pam_session_text("session required pam_unix.so", hook).startswith("session required pam_unix.so\n#")
    assert pf.SESSION_HOOK_RE.match(hook) and not pf.SESSION_HOOK_RE.match("/tmp/x.sh")
    # systemd hosts: the login resolver itself is the hook; switching between the two leaves one line
    resolver = pf.pam_session_text(added, "/usr/local/sbin/fairshare-login")
    assert resolver == debian + pf.PAM_MARK + "\nsession optional pam_exec.so quiet /usr/local/sbin/fairshare-login session\n"
    assert pf.pam_session_text(resolver, hook) == added and pf.pam_session_text(resolver) == debian
    assert pf.SESSION_HOOK_RE.match("/usr/local/sbin/fairshare-login")
    assert not pf.SESSION_HOOK_RE.match("/usr/local/sbin/fairshare-login-x")


def test_pam_lines_of_others_and_the_pam_auth_update_profile():
    hook = "/etc/fairshare/cgroupfs-fairshare.sh"
    by_pam_auth_update = "session\toptional\t\t\tpam_exec.so quiet %s session\n" % hook
    text = "session required pam_unix.so\n" + by_pam_auth_update
    assert pf.pam_session_text(text) == text  # not below our marker: not ours to remove
    assert pf.has_session_line(text, hook) and not pf.has_session_line(text, "/etc/fairshare/cgroupfs-x.sh")
    assert not pf.has_session_line("session optional pam_exec.so quiet %s session-not\n" % hook, hook)
    profile = pf.pam_config_text(hook)
    assert profile.startswith("Name: fairshare.resources") and "Session-Type: Additional\n" in profile
    assert profile.endswith("Session:\n\toptional\tpam_exec.so quiet %s session\n" % hook)
    assert pf.PAM_CONFIG_RE.match("fairshare-session") and not pf.PAM_CONFIG_RE.match("../etc/passwd")


DEBIAN_CRON = """# The PAM configuration file for the cron daemon

@include common-auth
session    required     pam_loginuid.so
@include common-account
@include common-session-noninteractive
session    required   pam_limits.so
"""


def test_cron_gets_pam_systemd_once_and_loses_only_our_line():
    from ansible_collections.fairshare.resources.plugins.module_utils import profile_files as pf
    included = {"common-session-noninteractive": "session optional pam_unix.so\n", "common-auth": ""}
    text = pf.pam_systemd_text(DEBIAN_CRON, True, included.get)
    assert text == DEBIAN_CRON + pf.SYSTEMD_MARK + "\n-session optional pam_systemd.so\n"
    assert pf.pam_systemd_text(text, True, included.get) == text  # idempotent
    assert pf.pam_systemd_text(text, False, included.get) == DEBIAN_CRON
    # a stack that runs pam_systemd already (RedHat's crond includes password-auth) is left alone
    redhat = "auth include password-auth\nsession include password-auth\n"
    assert pf.pam_systemd_text(redhat, True, {"password-auth": "-session optional pam_systemd.so\n"}.get) == redhat
    hand = DEBIAN_CRON + "session optional pam_systemd.so\n"
    assert pf.pam_systemd_text(hand, True, included.get) == hand and pf.pam_systemd_text(hand, False) == hand
    assert pf.pam_includes(DEBIAN_CRON) == ["common-auth", "common-account", "common-session-noninteractive"]


def test_each_user_gets_only_their_own_part_and_foreign_files_stay():
    from ansible_collections.fairshare.resources.plugins.module_utils.profile_files import USER_MARK, USERS_DIR, user_files
    data = {"parent": "fairshare", "profiles": {"ann": {"uid": 3001, "values": {}}, "ben": {"uid": 3002, "values": {}}},
            "cgroup_parents": {"ann": {"": "user-3001.slice"}, "ben": {"": "user-3002.slice"}},
            "gpu_allocation": {"ben": [1]}}
    existing = {USERS_DIR + "/3009.json": '{"_managed": "%s"}' % USER_MARK,   # a user no longer in the policy
                USERS_DIR + "/3002.json": '{"mine": true}',                      # not ours: left, reported
                USERS_DIR + "/notes.txt": "hello"}
    files, foreign = user_files(data, existing)
    assert sorted(files) == [USERS_DIR + "/3001.json", USERS_DIR + "/3009.json"]
    text, mode, owner = files[USERS_DIR + "/3001.json"]
    assert mode == 0o400 and owner == 3001 and "ben" not in text and '"user-3001.slice"' in text
    assert files[USERS_DIR + "/3009.json"][0] is None
    assert foreign == [USERS_DIR + "/3002.json", USERS_DIR + "/notes.txt"]
    ben = user_files(data, {})[0][USERS_DIR + "/3002.json"][0]
    assert json.loads(ben)["gpu_allocation"] == {"ben": [1]} and "ann" not in ben


def test_a_profile_shared_by_many_users_is_encoded_once_and_each_file_is_the_same_text():
    """user_files encodes the values of a profile many users share once (at 10,000 users their JSON was most of a
    rerun's profile_host); every file must still be the text as_json gives the user's part."""
    from ansible_collections.fairshare.resources.plugins.module_utils import profile_files as pf
    from ansible_collections.fairshare.resources.plugins.module_utils.policy import pack_profiles, unpack_profiles
    tier = {"memory.max": {"value": "2G", "from": "tiers.students.memory.max"}, "cpu.max": {"value": "50%", "from": "x"}}
    profiles = dict(("u%d" % i, {"uid": 5000 + i, "tier": "students", "tier_from": "rules[0]", "unlimited": False,
                                 "values": tier}) for i in range(30))
    profiles["boss"] = {"uid": 4000, "tier": None, "tier_from": None, "unlimited": True, "values": {}}
    profiles["odd"] = {"uid": 4001, "tier": "x\u00e9\"", "tier_from": None, "unlimited": False,
                       "values": {"memory.max": {"value": "1G", "from": "users.odd"}}}
    data = {"parent": "fairshare", "containers": {}, "profiles": unpack_profiles(pack_profiles(profiles)),
            "cgroup_parents": {"u3": {"": "user-5003.slice"}}, "gpu_allocation": {"odd": [0]}}
    encodes = []
    real = pf._ENCODER
    pf._ENCODER = type("Counting", (), {"encode": staticmethod(lambda v: encodes.append(v) or real.encode(v))})()
    try:
        files, _foreign = pf.user_files(data, {})
    finally:
        pf._ENCODER = real
    assert sum(1 for v in encodes if v is data["profiles"]["u1"]["values"]) == 1  # once for the 30 users
    for name, prof in profiles.items():
        doc = {"_managed": pf.USER_MARK, "parent": "fairshare", "containers": {}, "user": name, "profiles": {name: prof}}
        for key in ("cgroup_parents", "gpu_allocation"):
            if name in data[key]:
                doc[key] = {name: data[key][name]}
        text = files["%s/%d.json" % (pf.USERS_DIR, prof["uid"])][0]
        assert text == pf.as_json(doc, depth=1) and json.loads(text) == doc, name


def test_json_files_have_a_line_per_user_and_read_back_the_same():
    data = {"parent": "fairshare", "profiles": {"ann": {"uid": 3001, "values": {"memory.max": {"value": "2G"}}},
                                                "ben": {"uid": 3002, "values": {}}}, "empty": {}}
    text = as_json(data)
    assert json.loads(text) == data
    lines = text.splitlines()
    assert '    "ann": {"uid": 3001, "values": {"memory.max": {"value": "2G"}}},' in lines
    assert '    "ben": {"uid": 3002, "values": {}}' in lines and '  "empty": {},' in lines
    assert as_json(data) == text  # the same text for the same data: no rewrite on a rerun


def test_only_files_profile_host_wrote_are_ours():
    from ansible_collections.fairshare.resources.plugins.module_utils.profile_files import (
        COPYRIGHT, JSON_MARK, MANAGED, as_json, is_ours, marked_json,
    )
    assert is_ours(None) and is_ours("")
    assert is_ours(MANAGED + "\n[Unit]\n") and is_ours("#!/usr/bin/python3 -IS\n" + MANAGED + "\nimport sys\n")
    assert is_ours("#!/usr/bin/python3\n# -*- coding: utf-8 -*-\n" + COPYRIGHT + "\n")  # our tools
    doc = {"profiles": {"ann": {"tier": "student"}}, "parent": "fairshare"}
    assert json.loads(marked_json(doc))["_managed"] == JSON_MARK and is_ours(marked_json(doc))
    assert is_ours(as_json(doc))  # written by a release before the mark: exactly our layout
    assert is_ours("ann\t{\"memory\":{\"max\":\"1G\"}}\nbob\t{}\n")  # login-users.tsv of such a release
    # someone else's: hand-written JSON, a site's own script, an edited copy of ours
    assert not is_ours(json.dumps(doc, indent=4) + "\n")
    assert not is_ours('{"profiles": {}, "_managed": "someone else"}\n')
    assert not is_ours("echo 'welcome to the lab'\n")
    assert not is_ours("#!/bin/sh\n# our own plan tool\n" + MANAGED[2:] + "\n")
    assert not is_ours("{not json\n")


def test_a_pam_file_may_lead_into_authselects_directory_only_where_that_is_allowed(tmp_path, monkeypatch):
    """RHEL's /etc/pam.d/system-auth is a link into /etc/authselect: read (pam_authselect), never edited there."""
    import os
    from ansible_collections.fairshare.resources.plugins.module_utils import profile_backend as pb
    pam, selected = tmp_path / "pam.d", tmp_path / "authselect"
    pam.mkdir()
    selected.mkdir()
    (selected / "system-auth").write_text("session required pam_unix.so\n")
    os.symlink(str(selected / "system-auth"), str(pam / "system-auth"))
    (pam / "sshd").write_text("@include common-session\n")
    monkeypatch.setattr(pb, "PAM_DIR", str(pam))
    assert pb.is_pam_file(str(pam / "sshd"))
    assert not pb.is_pam_file(str(pam / "system-auth"))
    assert pb.is_pam_file(str(pam / "system-auth"), (str(selected),))
    assert not pb.is_pam_file(str(tmp_path / "system-auth"), (str(selected),))  # not in pam.d at all

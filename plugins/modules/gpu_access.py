#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gpu_access
short_description: Which user may open which GPU, enforced by device files and the device cgroup
version_added: "0.1.0"
description:
  - Discovers NVIDIA GPUs (C(nvidia-smi), else C(/proc/driver/nvidia/gpus), else C(/dev/nvidia[0-9]*))
    and their control devices. A host without GPUs gets C(gpus=[]) and no change (an error with O(require=true)).
  - For a B(list) of users in one call - group membership for users granted a GPU; for users not
    granted every GPU, a device-cgroup allowlist - the GPUs they are granted, the control devices they
    need, and the ordinary terminal and pseudo devices. With systemd a drop-in
    C(user-<UID>.slice.d/60-fairshare-gpu.conf) (C(DevicePolicy=auto) + C(DeviceAllow=), cgroup v1 and v2);
    without systemd on cgroup v1 C(devices.deny)/C(devices.allow) in C(<parent>/user-<UID>).
    This holds whatever a user puts in C(CUDA_VISIBLE_DEVICES).
  - Device files - group and mode now, through udev rules, and through C(NVreg_DeviceFileGID)/C(NVreg_DeviceFileMode)
    in a modprobe.d file of ours for the next driver load.
  - NVIDIA container toolkit - C(accept-nvidia-visible-devices-envvar-when-unprivileged = false) where it is installed.
  - MIG - O(users[].mig) gives a user that many MIG instances of the host (found under
    C(/proc/driver/nvidia/capabilities/gpu<N>/mig)), each to one user, the same ones on every run (kept in
    C(/etc/fairshare/gpu.json)). The user's device cgroup then allows the instance's GPU, the control devices and the
    two C(/dev/nvidia-caps) nodes of its GPU instance and compute instance, and no other caps node.
author:
  - fairshare.resources contributors (@fairshare)
attributes:
  check_mode:
    support: full
    description: Discovers and compares; changes nothing.
  diff_mode:
    support: full
    description: Text of every file written, device cgroup allowlists, group members.
options:
  users:
    description: The users and the GPUs each may open.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: User name or UID.
        type: str
        required: true
      gpus:
        description: C(all), C(none) (the default), or a list of GPU indexes or UUIDs.
        type: raw
      count:
        description:
          - This many GPUs of the host, picked by the module (not with O(users[].gpus)) - different GPUs for one
            user, each GPU to at most O(share) users, and the same GPUs on every run while they exist (kept in
            C(/etc/fairshare/gpu.json) by UUID). V(0) grants none.
          - Counts that add up to more than the GPUs times O(share) are refused with the numbers, before any change.
        type: int
      mig:
        description:
          - This many MIG instances (a compute instance with its GPU instance), picked by the module, each for this
            user alone, spread over the MIG GPUs (or packed, with O(placement=pack)); sticky like O(users[].count).
          - MIG counts that add up to more than the host's instances are refused with the numbers, before any change.
          - On a host with GPUs but no MIG instance a warning says so and nothing is granted or written for it.
          - GPUs with MIG instances are not given out by O(users[].count); a MIG GPU named in O(users[].gpus) is
            granted whole, with all its instances.
          - Needs the driver's caps device nodes (C(nv_cap_enable_devfs=1), the default since R450); where a node is
            missing the allowlist names it by number (C(/dev/char/MAJ:MIN), the major from C(/proc/devices)).
        type: int
      state:
        description:
          - V(absent) takes back what this module gave the user - membership of O(group), the device-cgroup drop-in
            or v1 device cgroup - and grants nothing. The name may then be the UID of a user who no longer exists.
          - The profiles role passes it for users an earlier run granted GPUs that the policy no longer does.
        type: str
        choices: [present, absent]
        default: present
        version_added: "0.3.0"
  placement:
    description:
      - Where O(users[].count) GPUs go - V(spread) to the least used GPU, V(pack) to the most used one that still
        has room (with O(share) above 1). Ties go to the lower index; users with more GPUs pick first.
    type: str
    choices: [spread, pack]
    default: spread
  share:
    description: How many users' counts one GPU may serve (1 - exclusive; the policy's C(oversubscription.gpu)).
    type: int
    default: 1
  policy:
    description: V(restricted) - device files C(0660) for O(group) only; V(open) - C(0666).
    type: str
    choices: [restricted, open]
    default: restricted
  group:
    description: The unix group that owns the GPU device files.
    type: str
    default: video
  device_cgroup:
    description: Enforce per-user allowlists in the device cgroup.
    type: bool
    default: true
  container_toolkit:
    description: Set the NVIDIA container toolkit option where the toolkit is installed.
    type: bool
    default: true
  require:
    description: Fail on a host without GPUs.
    type: bool
    default: false
  parent:
    description: The managed parent cgroup of hosts without systemd.
    type: str
    default: fairshare
notes:
  - A restricted user's sessions keep terminals, C(/dev/null) and the like, and misc devices (fuse, tun);
    other devices (disks, other GPUs) are refused in that user's slice, also under sudo inside it.
"""

EXAMPLES = r"""
- name: GPU 0 for alice, GPUs 1-2 for bob, none for carol
  fairshare.resources.gpu_access:
    group: video
    users:
      - {name: alice, gpus: [0]}
      - {name: bob, gpus: [1, 2]}
      - {name: carol, gpus: none}

- name: Any two GPUs for dave and one for erin - different GPUs, the same ones on every run
  fairshare.resources.gpu_access:
    users:
      - {name: dave, count: 2}
      - {name: erin, count: 1}

- name: Two MIG instances for frank, one for grace - each opens only the caps nodes of their own
  fairshare.resources.gpu_access:
    users:
      - {name: frank, mig: 2}
      - {name: grace, mig: 1}
"""

RETURN = r"""
gpus:
  description: The GPUs found.
  returned: always
  type: list
  elements: dict
  sample: [{index: 0, uuid: GPU-5c1e..., pci_bus_id: "00000000:17:00.0", mig: false, device: /dev/nvidia0}]
mig_instances:
  description: The MIG instances found - key (C(gpuN/giG/ciC)), GPU minor, GI and CI ids, their caps minors, node paths.
  returned: always
  type: list
  elements: dict
  sample: [{key: gpu0/gi1/ci0, gpu: 0, gi: 1, ci: 0, caps: [12, 13], paths: [/dev/nvidia-caps/nvidia-cap12, /dev/nvidia-caps/nvidia-cap13],
            devnums: ["237:12", "237:13"], device: /dev/nvidia0}]
controls:
  description: The control devices found.
  returned: always
  type: list
  elements: str
users:
  description:
    - Per user - uid, granted GPU indexes, MIG instances (C(mig_instances), keys), the enforcement applied (C(allow),
      C(restricted)).
    - A user given with O(users[].state=absent) has C(state=absent), no C(allow) and C(restricted=false).
  returned: always
  type: list
  elements: dict
  sample: [{name: alice, uid: 1001, gpus: [0], mig_instances: [], restricted: true, allow: [/dev/nvidia0, /dev/nvidiactl]},
           {name: "3005", uid: 3005, gpus: [], restricted: false, state: absent}]
backend:
  description: How the device cgroup is enforced (systemd, cgroupfs-v1, none).
  returned: always
  type: str
actions:
  description: What was done (or would be, in check mode).
  returned: always
  type: list
  elements: str
driver_reset:
  description:
    - Device files that had the group and mode wanted until this call's own C(nvidia-smi) had the loaded driver make
      them again with its own (root's NVML does that where the driver was loaded without our C(NVreg_DeviceFile*)
      options); put back, and not counted as a change.
  returned: when the host has GPUs
  type: list
  elements: str
  sample: [/dev/nvidia0, /dev/nvidiactl]
driver_params:
  description: The device files' uid, gid and mode of the loaded driver, when they differ from what is wanted (a warning
    says that they hold fully from the next driver load).
  returned: when they differ
  type: dict
  sample: {uid: 0, gid: 0, mode: 438}
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
from ansible_collections.fairshare.resources.plugins.module_utils.cgroup_model import check_parent
from ansible_collections.fairshare.resources.plugins.module_utils.errors import FairshareError, InputError
from ansible_collections.fairshare.resources.plugins.module_utils.gpu_backend import GpuBackend
from ansible_collections.fairshare.resources.plugins.module_utils.gpu_model import PLACEMENTS
from ansible_collections.fairshare.resources.plugins.module_utils.host import Host


def main():
    module = AnsibleModule(
        argument_spec=dict(
            users=dict(type="list", elements="dict", default=[],
                       options=dict(name=dict(type="str", required=True), gpus=dict(type="raw"),
                                    count=dict(type="int"), mig=dict(type="int"),
                                    state=dict(type="str", choices=["present", "absent"], default="present"))),
            placement=dict(type="str", choices=list(PLACEMENTS), default="spread"),
            share=dict(type="int", default=1),
            policy=dict(type="str", choices=["restricted", "open"], default="restricted"),
            group=dict(type="str", default="video"),
            device_cgroup=dict(type="bool", default=True),
            container_toolkit=dict(type="bool", default=True),
            require=dict(type="bool", default=False),
            parent=dict(type="str", default="fairshare"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        params["parent"] = check_parent(params["parent"])
    except InputError as exc:
        module.fail_json(msg=str(exc))
    host = Host(module)
    gpu = GpuBackend(host)
    result = dict(changed=False, gpus=gpu.gpus, controls=gpu.controls, mig_instances=gpu.mig, users=[], actions=[], backend="none",
                  driver_reset=[])
    try:
        request = gpu.check(params)
    except InputError as exc:
        module.fail_json(msg=str(exc), **result)
    if not gpu.gpus:
        if params["require"]:
            module.fail_json(msg="require: no GPU found on this host (nvidia-smi, /proc/driver/nvidia, /dev/nvidia*)",
                             **result)
        result["users"] = [{"name": p["name"], "uid": p["uid"], "gpus": [], "mig_instances": [], "note": "no GPU on this host"}
                           for p in request["plans"]]
        module.exit_json(**result)
    try:
        gpu.apply(params, request, result)
    except (FairshareError, OSError) as exc:
        module.fail_json(msg=str(exc), **host.partial(result))
    finally:
        for warning in gpu.warnings:
            module.warn(warning)
    module.exit_json(**gpu.changes.summary(result, module._diff))


if __name__ == "__main__":
    main()

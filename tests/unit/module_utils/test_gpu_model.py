import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import gpu_model as g
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError

SMI = """\
0, GPU-5c1e2f3a-0000-1111-2222-333344445555, 00000000:17:00.0, Disabled
1, GPU-aaaaaaaa-0000-1111-2222-333344445555, 00000000:65:00.0, Enabled
"""
PROC = """\
Model: \t\t NVIDIA H100 80GB HBM3
IRQ:   \t\t 150
GPU UUID: \t GPU-5c1e2f3a-0000-1111-2222-333344445555
Video BIOS: \t 96.00.99.00.01
Bus Type: \t PCIe
Device Minor: \t 0
Bus Location: \t 0000:17:00.0
"""


def test_parse_nvidia_smi_and_proc():
    gpus = g.parse_nvidia_smi(SMI + "No devices were found\n")
    assert [(x["index"], x["mig"], x["device"]) for x in gpus] == [(0, False, "/dev/nvidia0"), (1, True, "/dev/nvidia1")]
    assert g.parse_proc_information(PROC) == {"minor": 0, "uuid": "GPU-5c1e2f3a-0000-1111-2222-333344445555",
                                              "bus": "0000:17:00.0"}


@pytest.mark.parametrize("wanted,indexes", [("all", [0, 1]), ("none", []), (None, []), ([1], [1]), ([1, "0"], [0, 1]),
                                            (["GPU-aaaaaaaa-0000-1111-2222-333344445555"], [1]), ("0,1", [0, 1])])
def test_select_gpus(wanted, indexes):
    assert g.select_gpus("users[0]", wanted, g.parse_nvidia_smi(SMI)) == indexes


def test_select_unknown_gpu_names_it_and_the_known_ones():
    with pytest.raises(InputError) as err:
        g.select_gpus("users[2]", [3], g.parse_nvidia_smi(SMI))
    assert str(err.value).startswith("users[2].gpus: '3' is not a GPU of this host; GPUs: 0 (GPU-5c1e")


def test_allowlist():
    gpus = [{"index": 0, "devnum": "195:0"}, {"index": 1, "devnum": "195:1"}]
    granted = g.allowlist([1], gpus, ["195:255", "511:0"])
    assert ("c", "195:1") in granted and ("c", "195:0") not in granted and ("c", "195:255") in granted
    assert ("c", "136:*") in granted and ("c", "1:3") in granted
    none = g.allowlist([], gpus, ["195:255"])
    assert not [e for e in none if e[1].startswith("195:")]
    assert g.parse_devices_list("c 1:3 rwm\nc 195:1 rwm\n") == [("c", "195:1"), ("c", "1:3")]


def test_rendered_files():
    dropin = g.render_dropin(["/dev/nvidia1", "/dev/nvidiactl"])
    assert dropin.splitlines()[:3] == [g.MANAGED_HEADER, "[Slice]", "DevicePolicy=auto"]
    assert "DeviceAllow=/dev/nvidia1 rw" in dropin and "DeviceAllow=char-pts rw" in dropin
    assert 'GROUP="video", MODE="0660"' in g.render_udev("video", "0660")
    assert g.render_modprobe(44, "0660").endswith("NVreg_DeviceFileGID=44 NVreg_DeviceFileMode=432\n")


@pytest.mark.parametrize("text,expected", [
    ("", "accept-nvidia-visible-devices-envvar-when-unprivileged = false\n"),
    ("#accept-nvidia-visible-devices-envvar-when-unprivileged = true\n[nvidia-container-cli]\n",
     "accept-nvidia-visible-devices-envvar-when-unprivileged = false\n[nvidia-container-cli]\n"),
])
def test_toolkit_option(text, expected):
    new, changed = g.set_toolkit_option(text)
    assert new == expected and changed
    assert g.set_toolkit_option(new) == (new, False)


def test_the_loaded_drivers_device_file_settings_are_read():
    from ansible_collections.fairshare.resources.plugins.module_utils.gpu_model import parse_driver_params
    # as /proc/driver/nvidia/params read on an H200 host (driver 580.159.04)
    text = "ResmanDebugLevel: 4294967295\nDeviceFileUID: 0\nDeviceFileGID: 0\nDeviceFileMode: 438\nModifyDeviceFiles: 1\n"
    assert parse_driver_params(text) == {"uid": 0, "gid": 0, "mode": 0o666}
    assert parse_driver_params("") == {} and parse_driver_params("DeviceFileMode: 438\n") == {}


def test_a_device_file_our_own_nvidia_smi_reset_is_put_back_without_a_change():
    from ansible_collections.fairshare.resources.plugins.module_utils.gpu_model import file_action
    want = (44, 0o660)
    assert file_action(want, want, want) is None
    assert file_action((0, 0o666), want, want) == "reset"  # as wanted before this run's nvidia-smi
    assert file_action((0, 0o666), (0, 0o666), want) == "change"  # not as wanted before: a change of the host
    assert file_action((0, 0o666), None, want) == "change"  # not there before (made by nvidia-smi)


# MIG: the access files as the driver shows them for two A100s, GPU 0 with two GIs (one of them with two CIs),
# GPU 1 with one GI; a GI without a CI yet (gi9) is not an instance, and the config/monitor caps are not either.
MIG_ACCESS = {
    "mig/config": 1, "mig/monitor": 2,
    "gpu0/mig/gi1/access": 12, "gpu0/mig/gi1/ci0/access": 13, "gpu0/mig/gi1/ci1/access": 14,
    "gpu0/mig/gi2/access": 21, "gpu0/mig/gi2/ci0/access": 22,
    "gpu0/mig/gi9/access": 93,
    "gpu1/mig/gi1/access": 147, "gpu1/mig/gi1/ci0/access": 148,
}


def test_caps_minor_is_read_from_an_access_file():
    assert g.parse_caps_minor("DeviceFileMinor: 12\nDeviceFileMode: 292\nDeviceFileModify: 1\n") == 12
    assert g.parse_caps_minor("DeviceFileMode: 292\n") is None and g.parse_caps_minor(None) is None


def test_mig_instances_pair_each_compute_instance_with_its_gpu_instance():
    found = g.mig_instances(dict(MIG_ACCESS, **{"gpu1/mig/gi5/ci0/access": 160}))  # a CI whose GI file is gone
    assert [(i["key"], i["caps"]) for i in found] == [
        ("gpu0/gi1/ci0", [12, 13]), ("gpu0/gi1/ci1", [12, 14]), ("gpu0/gi2/ci0", [21, 22]), ("gpu1/gi1/ci0", [147, 148])]


@pytest.mark.parametrize("placement,first_two", [("spread", ["gpu0/gi1/ci0", "gpu1/gi1/ci0"]),
                                                 ("pack", ["gpu0/gi1/ci0", "gpu0/gi1/ci1"])])
def test_mig_counts_are_exclusive_sticky_and_spread_or_packed(placement, first_two):
    pool = g.mig_pool(g.mig_instances(MIG_ACCESS), placement)
    _idx, keys = g.allocate({"ann": 2, "ben": 1}, pool, None, 1, placement, ("gpu.mig", "MIG instance", "MIG instance(s)", False))
    assert keys["ann"] == sorted(first_two, key=[i["key"] for i in pool].index)
    assert not set(keys["ann"]) & set(keys["ben"]) and len(keys["ben"]) == 1
    again = g.allocate({"ann": 2, "ben": 1, "cid": 1}, pool, keys, 1, placement,
                       ("gpu.mig", "MIG instance", "MIG instance(s)", False))[1]
    assert again["ann"] == keys["ann"] and again["ben"] == keys["ben"]  # a new user does not move the others
    with pytest.raises(InputError) as err:
        g.allocate({"ann": 2, "ben": 1, "cid": 2}, pool, keys, 1, placement, ("gpu.mig", "MIG instance", "MIG instance(s)", False))
    assert str(err.value) == "gpu.mig: the users' counts add up to 5 MIG instances; this host has 4 MIG instance(s)"


def test_the_allowlist_holds_a_users_caps_nodes_only():
    entries = g.allowlist([0], [{"index": 0, "devnum": "195:0"}, {"index": 1, "devnum": "195:1"}], ["195:255"],
                          ["237:12", "237:13"])
    assert ("c", "237:12") in entries and ("c", "237:13") in entries and ("c", "237:14") not in entries
    assert ("c", "195:1") not in entries and ("c", "195:0") in entries

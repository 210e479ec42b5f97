"""GPU counts: N different GPUs per user, sticky, spread or packed, refused with the numbers."""
import pytest

from ansible_collections.fairshare.resources.plugins.module_utils.gpu_model import allocate
from ansible_collections.fairshare.resources.plugins.module_utils.errors import InputError

GPUS = [{"index": i, "uuid": "GPU-%d" % i} for i in range(4)]


def test_two_users_with_one_gpu_each_get_different_gpus_and_keep_them():
    got, keys = allocate({"ann": 1, "ben": 1}, GPUS)
    assert got == {"ann": [0], "ben": [1]}
    # a third user and a rerun: ann and ben keep theirs, whatever the order or the new user's name
    again, _k = allocate({"aaa": 2, "ann": 1, "ben": 1}, GPUS, previous=keys)
    assert again["ann"] == [0] and again["ben"] == [1] and again["aaa"] == [2, 3]
    # the GPUs are known by UUID: after a renumbering ann still has GPU-0
    moved = [{"index": 3 - i, "uuid": "GPU-%d" % i} for i in range(4)]
    assert allocate({"ann": 1}, moved, previous=keys)[0] == {"ann": [3]}


def test_spread_and_pack_with_shared_gpus():
    spread, _k = allocate({"a": 1, "b": 1, "c": 1}, GPUS[:2], share=2)
    pack, _k = allocate({"a": 1, "b": 1, "c": 1}, GPUS[:2], share=2, placement="pack")
    assert sorted(g for v in spread.values() for g in v) == [0, 0, 1]
    assert spread == {"a": [0], "b": [1], "c": [0]} and pack == {"a": [0], "b": [0], "c": [1]}


@pytest.mark.parametrize("counts,share,fragment", [
    ({"big": 3, "a": 1, "b": 1}, 1, "the users' counts add up to 5 GPUs; this host has 4 GPU(s) x 1 user(s) per GPU"),
    ({"big": 5}, 2, "gpu.count: big asks for 5 GPUs; this host has 4"),
])
def test_more_than_the_host_has_is_refused_with_the_numbers(counts, share, fragment):
    with pytest.raises(InputError) as err:
        allocate(counts, GPUS, share=share)
    assert fragment in str(err.value)


def test_a_lower_count_keeps_part_of_what_the_user_had():
    _got, keys = allocate({"a": 3}, GPUS)
    assert allocate({"a": 1}, GPUS, previous=keys)[0] == {"a": [0]}
    assert allocate({"a": 2, "b": 2}, GPUS, previous={"b": ["GPU-0", "GPU-1"]})[0] == {"a": [2, 3], "b": [0, 1]}

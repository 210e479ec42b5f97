import pytest

from ansible_collections.fairshare.resources.plugins.module_utils import units as u


@pytest.mark.parametrize("value,expected", [
    ("512M", 512 << 20), ("2G", 2 << 30), ("1.5G", 3 << 29), ("1024", 1024), (4096, 4096),
    ("64K", 65536), ("1T", 1 << 40), ("2GiB", 2 << 30), ("max", u.UNLIMITED), ("infinity", u.UNLIMITED),
    ("10g", 10 << 30),
])
def test_parse_size(value, expected):
    assert u.parse_size("f", value) == expected


@pytest.mark.parametrize("value,fragment", [
    ("12 GB", "without a space, like 12G"), ("lots", "is not a size"), ("-5", "is not a size"),
    (-1, "negative"), (True, "is not a size"), ("1.5", "whole number of bytes"), ("", "is not a size"),
])
def test_parse_size_errors_name_field_and_value(value, fragment):
    with pytest.raises(u.InputError) as err:
        u.parse_size("tiers.student.memory.max", value)
    assert str(err.value).startswith("tiers.student.memory.max: ")
    assert fragment in str(err.value)


def test_parse_size_refuses_unlimited_where_not_allowed():
    with pytest.raises(u.InputError):
        u.parse_size("f", "max", allow_unlimited=False)


@pytest.mark.parametrize("value,cpus", [("150%", 1.5), ("200%", 2.0), ("2.5", 2.5), (2, 2.0), ("50%", 0.5), (0.25, 0.25)])
def test_parse_cpu(value, cpus):
    assert u.parse_cpu("cpu_max", value) == pytest.approx(cpus)


@pytest.mark.parametrize("value", ["0%", "0", "abc", "150 %", "0.001", None, False])
def test_parse_cpu_errors(value):
    with pytest.raises(u.InputError) as err:
        u.parse_cpu("cpu_max", value)
    assert "cpu_max" in str(err.value)


def test_cpu_formats():
    assert u.cpu_to_percent(2.0) == "200%"
    assert u.cpu_to_percent(0.333) == "33.3%"
    assert u.cpu_quota_us(1.5) == 150000


@pytest.mark.parametrize("value,base,expected", [
    ("90%", 1 << 30, (1 << 30) * 9 // 10 // 4096 * 4096), ("100%", 512 << 20, 512 << 20),
    ("256M", 1 << 30, 256 << 20), ("90%", u.UNLIMITED, u.UNLIMITED),
])
def test_percent_of(value, base, expected):
    assert u.parse_percent_of("memory_high", value, base) == expected


@pytest.mark.parametrize("value,base", [("90%", None), ("0%", 100), ("120%", 100), ("x%", 100)])
def test_percent_of_errors(value, base):
    with pytest.raises(u.InputError):
        u.parse_percent_of("memory_high", value, base)


def test_parse_int_ranges():
    assert u.parse_int("w", "100", 1, 10000) == 100
    assert u.parse_int("p", "max", 1, 10, allow_unlimited=True) == u.UNLIMITED
    for bad in ("0", "10001", "ten", True):
        with pytest.raises(u.InputError):
            u.parse_int("w", bad, 1, 10000)


@pytest.mark.parametrize("text,cpus", [("0-3,6", [0, 1, 2, 3, 6]), ("1", [1]), ("", []), ("0-1,1-2", [0, 1, 2])])
def test_cpulist(text, cpus):
    assert u.expand_cpulist(text) == cpus


@pytest.mark.parametrize("bad", ["3-1", "a", "0-", "0,,1"])
def test_cpulist_errors(bad):
    with pytest.raises(u.InputError):
        u.parse_cpulist("cpuset_cpus", bad)


def test_format_size_round_trips():
    for text in ("512M", "2G", "1T", "3K", "1000"):
        assert u.format_size(u.parse_size("f", text)) == text
    assert u.format_size(u.UNLIMITED) == "max"


def test_safe_minimums_refuse_unless_forced():
    with pytest.raises(u.InputError) as err:
        u.check_minimum("memory_max", 20, False, "limits[0].memory_max")
    assert "limits[0].memory_max" in str(err.value) and "64M" in str(err.value)
    u.check_minimum("memory_max", 20, True)
    u.check_minimum("memory_max", u.UNLIMITED, False)
    with pytest.raises(u.InputError):
        u.check_minimum("pids_max", 31, False)
    u.check_minimum("pids_max", 32, False)

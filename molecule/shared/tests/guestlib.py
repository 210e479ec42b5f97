"""Helpers shared by the testinfra suites of the guest scenarios."""


class Result(object):
    def __init__(self, rc, stdout):
        self.rc, self.stdout = rc, stdout


def with_rc(host, command):
    """Run and report the exit status in the output: systemd-run exits 255 when its
    service was killed, which testinfra's ssh backend would take for a lost connection."""
    out = host.run("%s; echo __rc=$?" % command)
    body, _sep, rc = out.stdout.rpartition("__rc=")
    return Result(int(rc.strip()), body)


def quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = str(text)
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


# python run as a limited user: a busy loop's share of one CPU over `seconds`
CPU_SHARE = ("import time\nt0 = time.time(); c0 = time.process_time()\nwhile time.time() - t0 < %d: pass\n"
             "print((time.process_time() - c0) / (time.time() - t0))")

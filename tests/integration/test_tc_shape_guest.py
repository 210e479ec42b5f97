"""tc_shape in the systemd guest: fq_codel leaves where the kernel has them, rates by
iperf3 between two network namespaces made inside the guest, for a uid above 65535, and data
a user's sockets still send after close() held in the user's class (issue 14 item 1; the same
proof as test_tc_shape_netns.py's on this host, here with the guest's kernel and fq_codel).
The shaping back after a reboot with persist: true is proven in test_reboot_guest.py
(one reboot for everything that must come back).
"""
import base64
import json

from conftest import FILL_AND_CLOSE, SINK, run_module

NS_ARGS = dict(interface="gA", egress={"rate": "100mbit", "default": {"rate": "10mbit", "ceil": "10mbit"},
                                       "classes": [{"user": "fsnet", "rate": "5mbit", "ceil": "5mbit"}]})


# fsnet's uid is an id-mapped directory user's (above 65535): its class id is allocated, not the uid in hex
BIG_UID = 200050


def in_ns(guest):
    """The guest's python, entered into the namespace gA lives in (a wrapper: ansible takes no interpreter args)."""
    return dict(guest, python="/usr/local/bin/python3-gcli")


def test_fq_codel_leaves_and_rates_in_the_guest(guest):
    guest["ssh"]("id fsnet || useradd -u %d fsnet; " % BIG_UID +
                 "printf '#!/bin/sh\\nexec nsenter --net=/run/netns/gcli /usr/bin/python3 \"$@\"\\n' "
                 "> /usr/local/bin/python3-gcli && chmod 755 /usr/local/bin/python3-gcli; "
                 "ip netns add gcli; ip netns add gsrv; "
                 "ip -n gcli link add gA type veth peer name gB netns gsrv; "
                 "ip -n gcli addr add 10.77.0.1/24 dev gA; ip -n gsrv addr add 10.77.0.2/24 dev gB; "
                 "ip -n gcli link set gA up; ip -n gsrv link set gB up; ip -n gsrv link set lo up; "
                 "ip netns exec gsrv iperf3 -s -D -p 5401 --pidfile /run/fs-iperf1.pid; "
                 "ip netns exec gsrv iperf3 -s -D -p 5402 --pidfile /run/fs-iperf2.pid")
    try:
        first = run_module("tc_shape", NS_ARGS, guest=in_ns(guest))
        assert first["changed"] and first["leaf"] == "fq_codel", first
        assert run_module("tc_shape", NS_ARGS, guest=in_ns(guest))["changed"] is False
        leaves = json.loads(guest["ssh"]("ip netns exec gcli tc -j qdisc show dev gA").stdout)
        assert sorted(q["kind"] for q in leaves if q.get("parent")) == ["fq_codel", "fq_codel"]
        out = guest["ssh"](
            "cd /tmp && (nsenter --net=/run/netns/gcli setpriv --reuid=fsnet --regid=fsnet --clear-groups "
            "iperf3 -c 10.77.0.2 -p 5401 -t 10 -O 2 -J > u.json &) ; "
            "nsenter --net=/run/netns/gcli iperf3 -c 10.77.0.2 -p 5402 -t 10 -O 2 -J > r.json; sleep 2; "
            "python3 -c \"import json; print(*[json.load(open(f))['end']['sum_received']['bits_per_second'] "
            "for f in ('u.json', 'r.json')])\"").stdout.split()
        user_bps, root_bps = float(out[0]), float(out[1])
        print("guest (fq_codel leaves): user uid %d (class %s) at 5mbit %.2f Mbit/s, root (default 10mbit) %.2f Mbit/s"
              % (BIG_UID, first["classes"][0]["classid"], user_bps / 1e6, root_bps / 1e6))
        assert first["classes"][0]["uid"] == BIG_UID
        assert abs(user_bps - 5e6) <= 0.5e6 and abs(root_bps - 10e6) <= 1e6
        # fill a socket, close it, again for 6 s: what is queued at close() has no owner; the receiver counts
        # every byte of every connection over a 14 s window
        put = "".join("echo %s | base64 -d > /tmp/%s; " % (base64.b64encode(text.encode()).decode(), name)
                      for name, text in (("fs-sink.py", SINK), ("fs-fill.py", FILL_AND_CLOSE)))
        out = guest["ssh"](
            put + "ip netns exec gsrv python3 /tmp/fs-sink.py 10.77.0.2 5409 14 > /tmp/fs-sink.out & "
            "until grep -q ready /tmp/fs-sink.out 2>/dev/null; do sleep 0.1; done; "
            "nsenter --net=/run/netns/gcli setpriv --reuid=fsnet --regid=fsnet --clear-groups "
            "python3 /tmp/fs-fill.py 10.77.0.2 5409 6; wait; tail -n 1 /tmp/fs-sink.out").stdout.split("\n", 1)
        queued, seen = int(out[0]), json.loads(out[1])
        rate = seen["bytes"] * 8 / max(seen["last"] - seen["first"], 1e-3)
        print("guest: fill-and-close for 6 s by a 5mbit user: %d bytes queued, %d received in %.1f s = %.2f Mbit/s"
              % (queued, seen["bytes"], seen["last"] - seen["first"], rate / 1e6))
        assert rate <= 5.5e6
    finally:
        run_module("tc_shape", {"state": "absent"}, guest=in_ns(guest))
        guest["ssh"]("kill $(cat /run/fs-iperf1.pid /run/fs-iperf2.pid); ip netns del gcli; ip netns del gsrv",
                     check=False)

"""A real PAM session as su or sshd opens one (libpam through ctypes), then the user's own process in it.

SCRIPT runs as root with python3 -c: argv SERVICE USER UID WHAT [PATH ...]. It opens a session of
/etc/pam.d/SERVICE for USER, then in a child as UID opens each PATH read-write (printing "open PATH OK" or the
errno name) and does WHAT: MiB to allocate (printing "survived" if not killed), or spin:SECONDS, a busy loop
printing "share" and the share of one CPU it got. Last line: JSON {start, open (PAM return codes), cgroup
(/proc/self/cgroup once the session is open), signal (the one that ended the child, or null)}.
The integration tests (tests/integration/conftest.py) and the fleet's checks on this machine (testbed/fleet.py)
run it; test_cgroupfs_guest puts it in a guest.
"""

SCRIPT = r'''
import ctypes, ctypes.util, errno, json, os, sys, time
service, user, uid, size = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), sys.argv[4]
pam = ctypes.CDLL(ctypes.util.find_library("pam"))
CONV = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
class Conv(ctypes.Structure):
    _fields_ = [("conv", CONV), ("appdata_ptr", ctypes.c_void_p)]
conv = Conv(CONV(lambda n, msg, resp, data: 19), None)  # no questions in a session stack: PAM_CONV_ERR
handle = ctypes.c_void_p()
started = pam.pam_start(service.encode(), user, ctypes.byref(conv), ctypes.byref(handle))
opened = pam.pam_open_session(handle, 0)
cgroup = open("/proc/self/cgroup").read()
child = os.fork()
if child == 0:  # what su or sshd does next: the user's own process
    os.setgid(uid)
    os.setuid(uid)
    for path in sys.argv[5:]:  # device files to open, as the user's program would
        try:
            os.close(os.open(path, os.O_RDWR))
            print("open", path, "OK", flush=True)
        except OSError as exc:
            print("open", path, errno.errorcode[exc.errno], flush=True)
    if size.startswith("spin:"):  # a busy loop: the share of one CPU it got
        t0, c0 = time.time(), time.process_time()
        while time.time() - t0 < int(size[5:]):
            pass
        print("share", (time.process_time() - c0) / (time.time() - t0), flush=True)
    else:
        block = bytearray(int(size) * 1024 * 1024)
        print("survived", flush=True)
    os._exit(0)
status = os.waitpid(child, 0)[1]
pam.pam_close_session(handle, 0)
pam.pam_end(handle, opened)
print(json.dumps({"start": started, "open": opened, "cgroup": cgroup, "signal": os.WTERMSIG(status)
                  if os.WIFSIGNALED(status) else None}))
'''

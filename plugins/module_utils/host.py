# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one seam between fairshare.resources logic and the host.

Host wraps whatever `module` it is given (an AnsibleModule in production,
anything with run_command/atomic_move/check_mode in tests) without importing
AnsibleModule. Every command goes through run() as an argument list with
LANG=C (change() for one that alters the host); every file through
read()/write_atomic(); kernel files through write_kernel(). Whatever alters the
host is recorded in `done`, so a run that fails half-way says what it changed
(partial()).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.fairshare.resources.plugins.module_utils.errors import HostError


class CommandError(HostError):
    def __init__(self, argv, rc, out, err):
        HostError.__init__(self, "%s failed (rc=%s): %s" % (" ".join(argv), rc, (err or out).strip()))
        self.argv, self.rc, self.out, self.err = argv, rc, out, err


class Host(object):
    def __init__(self, module):
        self.module = module
        self.check_mode = bool(getattr(module, "check_mode", False))
        self.commands = []
        self.done = []  # what this run altered, in order
        self._selinux = None

    def change(self, argv, data=None):
        """run() a command that alters the host, and record it."""
        out = self.run(argv, data=data)
        self.done.append(" ".join(argv))
        return out

    def partial(self, result, limit=50):
        """A failing module's result: changed when anything was altered before the failure,
        with what was (the first `limit` of it) and how much."""
        result = dict(result)
        result.update(changed=bool(self.done) or bool(result.get("changed")),
                      changes_made=self.done[:limit], changes_made_count=len(self.done))
        return result

    def run(self, argv, check=True, data=None):
        """Run argv (no shell); the program is looked up in PATH and the sbin dirs.

        A missing program is rc 127, an error only with check=True.
        """
        self.commands.append(list(argv))
        find = getattr(self.module, "get_bin_path", None)
        if find:
            path = find(argv[0], opt_dirs=["/usr/sbin", "/sbin", "/usr/local/sbin"])
            if path is None:
                if check:
                    raise CommandError(argv, 127, "", "%s: command not found" % argv[0])
                return 127, "", "%s: command not found" % argv[0]
            argv = [path] + list(argv[1:])
        rc, out, err = self.module.run_command(argv, data=data, environ_update={"LANG": "C", "LC_ALL": "C"})
        if check and rc != 0:
            raise CommandError(argv, rc, out, err)
        return out if check else (rc, out, err)

    @staticmethod
    def read(path):
        try:
            with open(path) as fh:
                return fh.read()
        except (IOError, OSError):
            return None

    @staticmethod
    def read_kernel(path):
        """A kernel file (cgroupfs, /proc) as text, None where it cannot be read: os.read without a
        Python file object, a third of open()'s cost - a call reads some 50,000 at 10,000 users."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks).decode("utf-8", "replace")
        except OSError:
            return None
        finally:
            os.close(fd)

    def write_atomic(self, path, text, mode=None, owner=None):
        """Write through a temporary file and a rename. mode None: a new file gets 0644 less the
        umask and an existing one keeps its mode (what atomic_move does); else exactly mode.
        owner: a uid for the new file (its group stays root's)."""
        import tempfile  # here, not at the top: the login resolver imports this module and never writes files
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=".fairshare-", dir=directory)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                lean = mode is not None and owner is not None and not self.selinux()
                if lean:  # fixed mode and owner (profile_host's per-user files, 10,000 of them): set on the open
                    os.fchmod(fh.fileno(), mode)  # file, then one rename; atomic_move would stat, chown and
                    os.fchown(fh.fileno(), owner, -1)  # chmod it again, and look for SELinux contexts
            if lean:
                os.rename(tmp, path)
                self.done.append("write %s" % path)
                return
            os.chmod(tmp, 0o644 if mode is None else mode)
            if owner is not None:
                os.chown(tmp, owner, -1)
            self.module.atomic_move(tmp, path)
            self.done.append("write %s" % path)
            if owner is not None:  # AnsibleModule.atomic_move gives a new file to the user running it
                os.chown(path, owner, -1)
            if mode is not None:  # atomic_move would give a new file the umask's mode, an old one its own
                os.chmod(path, mode)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def selinux(self):
        """True where SELinux is on (the module says; asked once): files then go through atomic_move, which
        gives them the right context."""
        if self._selinux is None:
            probe = getattr(self.module, "selinux_enabled", None)
            self._selinux = bool(probe()) if callable(probe) else False
        return self._selinux

    def link_atomic(self, path, target):
        """Make path a symbolic link to target, through a temporary link and a rename (a file there is replaced)."""
        tmp = os.path.join(os.path.dirname(path), ".fairshare-link-%d-%s" % (os.getpid(), os.urandom(4).hex()))
        os.symlink(target, tmp)  # fails where the name is taken: nothing is replaced by chance
        try:
            os.rename(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        self.done.append("link %s -> %s" % (path, target))

    def backup(self, path):
        """A dated copy beside the file (AnsibleModule.backup_local); returns its path."""
        return self.module.backup_local(path) if os.path.exists(path) else None

    def remove(self, path, prune=True):
        """Remove a file; with prune, its directory too when that is left empty (drop-in dirs)."""
        try:
            os.unlink(path)
        except OSError:
            return
        self.done.append("remove %s" % path)
        if not prune:
            return
        directory = os.path.dirname(path)
        try:
            os.rmdir(directory)  # only when empty: other drop-ins stay
        except OSError:
            pass

    def write_kernel(self, path, value):
        """One write of a kernel file (cgroupfs, /proc), through os.write as open() would do it (a first run
        at 10,000 users writes some 50,000): the kernel takes the value in that write and answers its errno."""
        data = str(value).encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        self.done.append("write %s" % path)

    def set_mode(self, path, mode, uid=None, gid=None):
        """chown (uid or gid None: left) and chmod an existing file, recorded."""
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
        os.chmod(path, mode)
        self.done.append("mode %o %s" % (mode, path))

    def mkdir(self, path):
        os.mkdir(path)
        self.done.append("mkdir %s" % path)

    def rmdir(self, path):
        os.rmdir(path)
        self.done.append("rmdir %s" % path)

    @staticmethod
    def stat(path):
        """os.stat of a path (a block device for cgroup_model.devnum_of)."""
        return os.stat(path)


class Changes(object):
    """Files a module wants, written only where they differ (content or mode), with diff and check mode."""

    def __init__(self, host):
        self.host, self.actions, self.diff = host, [], []

    def file(self, path, text, mode=0o644, prune=True, show=True, owner=None, old=False):
        """Write (text None: remove) a file where it differs; show False puts only the sizes in the diff.
        owner: the file's uid (None: root's, as written). old: its text now, where the caller has
        just read it (None: there is none); False reads it here."""
        old = self.host.read(path) if old is False else old
        st = os.stat(path) if old is not None else None
        same_mode = st is None or ((st.st_mode & 0o7777) == mode and (owner is None or st.st_uid == owner))
        if old == text and (text is None or same_mode):
            return False
        if old == text:
            self.actions.append("mode %o%s on %s" % (mode, "" if owner is None else ", owner %d" % owner, path))
            if not self.host.check_mode:
                self.host.set_mode(path, mode, uid=owner)
            return True
        self.actions.append(("remove %s" if text is None else "write %s") % path)
        if show:
            self.diff.append({"before_header": path, "after_header": path, "before": old or "", "after": text or ""})
        else:
            self.diff.append({"before_header": path, "after_header": path,
                              "before": "" if old is None else "(%d bytes)\n" % len(old),
                              "after": "" if text is None else "(%d bytes)\n" % len(text)})
        if not self.host.check_mode:
            if text is None:
                self.host.remove(path, prune=prune)
            else:
                self.host.write_atomic(path, text, mode=mode, owner=owner)
        return True

    def link(self, path, target, old):
        """Make path a link to target where it is not one already (old: the text it has now)."""
        if os.path.islink(path) and os.readlink(path) == target:
            return False
        self.actions.append("link %s -> %s" % (path, target))
        self.diff.append({"before_header": path, "after_header": path, "before": old or "",
                          "after": "(a link to %s)\n" % target})
        if not self.host.check_mode:
            self.host.link_atomic(path, target)
        return True

    def run(self, label, argv):
        self.actions.append(label)
        if not self.host.check_mode:
            self.host.change(argv)

    def summary(self, result, with_diff):
        """The module result with what was done: actions, changed, and the diff when asked for."""
        result.update(actions=self.actions, changed=bool(self.actions))
        if with_diff:
            result["diff"] = self.diff
        return result

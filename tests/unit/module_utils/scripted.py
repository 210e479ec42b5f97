"""A module stand-in whose commands answer from a script: the backends run against it need no root and
no QEMU, and every command they would run is recorded (argv and stdin)."""
import os


class ScriptedModule(object):
    """answers: {tuple(argv) or argv[0]: (rc, out, err)}; a command not in it fails the test (rc 127)."""

    def __init__(self, answers, check_mode=False):
        self.answers, self.check_mode = dict(answers), check_mode
        self.calls = []

    def get_bin_path(self, name, opt_dirs=None):
        return name

    def run_command(self, argv, data=None, environ_update=None):
        self.calls.append((list(argv), data))
        for key in (tuple(argv), argv[0]):
            if key in self.answers:
                answer = self.answers[key]
                return answer(argv, data) if callable(answer) else answer
        return 127, "", "not scripted: %s" % " ".join(argv)

    @staticmethod
    def atomic_move(src, dst):
        os.rename(src, dst)

    def backup_local(self, path):
        return None

    def ran(self, program):
        """The argv lists run of one program, in order."""
        return [argv for argv, _data in self.calls if argv[0] == program]

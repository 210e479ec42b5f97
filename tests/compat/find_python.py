"""Print the path of a Python X.Y interpreter for `make compat`, or say what is missing.

A real interpreter, not a pyenv shim (a shim answers only for pyenv's selected version):
python X.Y on PATH when it runs, else pyenv's own builds of X.Y (newest first).
"""
import glob
import os
import subprocess
import sys


def works(path, want):
    try:
        out = subprocess.run([path, "-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip() == want


def main(want):
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = ["/usr/bin/python" + want, "/usr/local/bin/python" + want]
    candidates += sorted(glob.glob(os.path.join(root, "versions", want + ".*", "bin", "python" + want)), reverse=True)
    for path in candidates:
        if os.path.exists(path) and works(path, want):
            print(path)
            return 0
    sys.stderr.write("make compat: no Python %s with venv here (looked at %s); install it (Debian 13 has 3.13, "
                     "pyenv install %s) or drop that line of tests/compat/versions.txt\n"
                     % (want, ", ".join(candidates) or "nothing", want))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

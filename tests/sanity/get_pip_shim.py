"""Offline stand-in for ansible-test's pip bootstrap script (get-pip-<version>.py).

ansible-test creates its sanity venvs without pip and downloads get-pip.py from a
host this machine can't reach; it also strips PIP_CERT from pip's environment.
`make sanity` installs this file where ansible-test caches that script. It
bootstraps pip from the interpreter's own ensurepip wheel, writes a venv-local
pip.conf carrying the CA bundle (and local wheel dirs) that ansible-test drops,
then installs the packages ansible-test asked for from the package registry.
"""
import ensurepip
import os
import subprocess
import sys

CERT = "@CERT@"
FIND_LINKS = "@FIND_LINKS@"

ensurepip.bootstrap(upgrade=False, default_pip=True)
with open(os.path.join(sys.prefix, "pip.conf"), "w") as fh:
    fh.write("[global]\n")
    if CERT:
        fh.write("cert = %s\n" % CERT)
    if FIND_LINKS:
        fh.write("find-links = %s\n" % FIND_LINKS)
# ensurepip points PIP_CONFIG_FILE at /dev/null for itself; give pip its config back.
env = dict((k, v) for k, v in os.environ.items() if not k.startswith("PIP_"))
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet"] + args, env=env))

"""Print the pip version this ansible-test bootstraps into its sanity venvs.

`make sanity` puts get_pip_shim.py where ansible-test caches get-pip-<version>.py; the
version differs between ansible-core releases (24.2 in 2.18 and 2.19, 25.2 in 2.20 and 2.21).
Run with the python of the venv whose ansible-test is used.
"""
import os
import re
import sys

import ansible_test

SOURCE = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")

with open(SOURCE) as fh:
    FOUND = re.findall(r"\bpip='([0-9.]+)'", fh.read())
if len(set(FOUND)) != 1:
    sys.exit("%s: expected one pip='X.Y' in get_venv_packages, found %s" % (SOURCE, FOUND))
print(FOUND[0])

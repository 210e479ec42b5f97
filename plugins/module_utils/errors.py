# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The three kinds of failure a fairshare.resources module reports (pure Python, no AnsibleModule import).

- InputError: what the caller gave is not allowed; the message names the field, the value and what is
  allowed. Nothing was changed (modules validate all input before their first change).
- HostError: the input is fine but this host cannot do it (a command failed, quotas are off, no default
  route, a directory that is not there). The module's result says what it changed before (Host.partial).
- VerificationError: the host took a write and reads back something else (a kernel that clamps or
  ignores a value); a kind of HostError.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class FairshareError(Exception):
    """Any failure a module reports with fail_json; kind says which of the three it is."""
    kind = "host"


class InputError(FairshareError, ValueError):
    """A value that is not what its field allows."""
    kind = "input"


class HostError(FairshareError):
    """This host cannot do what valid input asks."""
    kind = "host"


class VerificationError(HostError):
    """The host accepted a write and reads back another value."""
    kind = "verification"

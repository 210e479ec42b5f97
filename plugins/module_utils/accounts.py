# -*- coding: utf-8 -*-
# Copyright: fairshare.resources contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One way to look up the users and groups a module is given (no AnsibleModule here).

A name or a uid goes to NSS one at a time (getpwnam, getpwuid) while a call names few of them;
from BULK names on, the whole local database is read once (getpwall) and looked up in memory:
with the files backend every getpwnam reads /etc/passwd from the top, so 10,000 single lookups
read it 10,000 times (6.8 s measured at 10,000 users against 0.03 s for one getpwall). A name
the bulk read does not have (a directory user of SSSD or nslcd, which list no one by default)
still goes to NSS by itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import pwd

BULK = 32  # lookups from which one getpwall pays for itself


class NotFound(KeyError):
    pass


class Accounts(object):
    """user(value): a user name or a decimal uid -> pwd.struct_passwd; NotFound when NSS has none."""

    def __init__(self, expected=0, getpwall=pwd.getpwall, getpwnam=pwd.getpwnam, getpwuid=pwd.getpwuid):
        self._getpwnam, self._getpwuid = getpwnam, getpwuid
        self._by_name, self._by_uid = {}, {}
        if expected >= BULK:
            for entry in getpwall():
                self._by_name.setdefault(entry.pw_name, entry)
                self._by_uid.setdefault(entry.pw_uid, entry)

    def user(self, value):
        value = str(value)
        try:
            if value.isdigit():
                uid = int(value)
                return self._by_uid.get(uid) or self._keep(self._getpwuid(uid))
            return self._by_name.get(value) or self._keep(self._getpwnam(value))
        except (KeyError, ValueError, OverflowError):
            raise NotFound(value)

    def _keep(self, entry):
        self._by_name.setdefault(entry.pw_name, entry)
        self._by_uid.setdefault(entry.pw_uid, entry)
        return entry

    @staticmethod
    def group(name):
        try:
            return grp.getgrnam(name)
        except KeyError:
            raise NotFound(name)

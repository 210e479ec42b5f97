"""A directory of the test bed's own, for the guest tests of users no run can list (issue 13).

Debian's slapd on 127.0.0.1:3890 with its config and data in LDAP_DIR, and SSSD with
enumeration off (as SSSD ships it), so `getent passwd` lists none of its users. One user,
ldstu (uid 200001, an id-mapped directory user's range), in the directory group students.
The integration suite and the molecule `default` scenario run START in the guest as root, and
STOP after (it leaves no slapd, no sssd.conf, no cached users and no home behind).
"""
import shlex

USER, UID = "ldstu", 200001

# A directory of the test's own: Debian's slapd on 127.0.0.1:3890, its config and data in LDAP_DIR
LDAP_DIR = "/var/lib/fs-ldap"
LDAP_CONFIG = """dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: %(dir)s/slapd.pid

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbDirectory: %(dir)s/db
olcSuffix: dc=fairshare,dc=test
olcRootDN: cn=admin,dc=fairshare,dc=test
olcAccess: to * by * read
""" % {"dir": LDAP_DIR}
LDAP_DATA = """dn: dc=fairshare,dc=test
objectClass: dcObject
objectClass: organization
dc: fairshare
o: fairshare test directory

dn: ou=people,dc=fairshare,dc=test
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=fairshare,dc=test
objectClass: organizationalUnit
ou: groups

dn: uid=ldstu,ou=people,dc=fairshare,dc=test
objectClass: inetOrgPerson
objectClass: posixAccount
uid: ldstu
cn: ldstu
sn: Student
uidNumber: 200001
gidNumber: 200001
homeDirectory: /home/ldstu
loginShell: /bin/sh

dn: cn=ldstu,ou=groups,dc=fairshare,dc=test
objectClass: posixGroup
cn: ldstu
gidNumber: 200001

dn: cn=students,ou=groups,dc=fairshare,dc=test
objectClass: posixGroup
cn: students
gidNumber: 200100
memberUid: ldstu
"""
SSSD_CONF = """[sssd]
services = nss, pam
domains = lab

[domain/lab]
id_provider = ldap
auth_provider = none
access_provider = permit
ldap_uri = ldap://127.0.0.1:3890
ldap_search_base = dc=fairshare,dc=test
ldap_schema = rfc2307
ldap_id_use_start_tls = false
enumerate = false
cache_credentials = false
"""

START = ("set -e; pkill -F %(d)s/slapd.pid 2>/dev/null || true; rm -rf %(d)s; mkdir -p %(d)s/config %(d)s/db; "
         "printf %%s %(config)s > %(d)s/config.ldif; printf %%s %(data)s > %(d)s/data.ldif; "
         "slapadd -q -n0 -F %(d)s/config -l %(d)s/config.ldif; slapadd -q -n1 -F %(d)s/config -l %(d)s/data.ldif; "
         "slapd -h ldap://127.0.0.1:3890/ -F %(d)s/config; "
         "install -m 600 /dev/null /etc/sssd/sssd.conf; printf %%s %(sssd)s > /etc/sssd/sssd.conf; "
         "systemctl restart sssd; for i in $(seq 60); do getent passwd %(user)s && break; sleep 1; done"
         % {"d": LDAP_DIR, "config": shlex.quote(LDAP_CONFIG), "data": shlex.quote(LDAP_DATA),
            "sssd": shlex.quote(SSSD_CONF), "user": USER})
STOP = ("loginctl terminate-user %(user)s; sleep 1; pkill -F %(d)s/slapd.pid; systemctl stop sssd; "
        "rm -rf /etc/sssd/sssd.conf /var/lib/sss/db/* /home/%(user)s %(d)s" % {"d": LDAP_DIR, "user": USER})

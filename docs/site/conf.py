# Sphinx configuration of the collection's documentation site (`make docs`), started from
# what `antsibull-docs sphinx-init` writes: no intersphinx (this site is built offline), and
# myst-parser so that the guides in docs/*.md are pages of the site as they are.
project = 'fairshare.resources'
copyright = 'fairshare.resources contributors'
title = 'fairshare.resources'
html_short_title = 'fairshare.resources'

extensions = ['sphinx_antsibull_ext', 'myst_parser']
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
myst_heading_anchors = 3

pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

default_role = 'any'
nitpicky = True

# The collection pages antsibull-docs writes link to two labels of Ansible's own docs. That
# site's objects.inv can't be fetched here, so intersphinx gets an inventory of just those two
# labels, written next to this build (format: Sphinx inventory version 2).
import atexit
import os
import shutil
import tempfile
import zlib

ANSIBLE_DOCS = 'https://docs.ansible.com/projects/ansible/devel/'
ANSIBLE_LABELS = {
    'common_return_values': ('reference_appendices/common_return_values.html', 'Return Values'),
    'ansible_configuration_settings': ('reference_appendices/config.html', 'Ansible Configuration Settings'),
}


def _ansible_inventory():
    where = tempfile.mkdtemp(prefix='fairshare-docs-')
    atexit.register(shutil.rmtree, where, True)  # gone with the build
    path = os.path.join(where, 'ansible_devel.inv')
    lines = ''.join('%s std:label -1 %s#%s %s\n' % (name, page, name.replace('_', '-'), title)
                    for name, (page, title) in sorted(ANSIBLE_LABELS.items()))
    with open(path, 'wb') as fh:
        fh.write(b'# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n'
                 b'# The remainder of this file is compressed using zlib.\n')
        fh.write(zlib.compress(lines.encode()))
    return path


extensions.append('sphinx.ext.intersphinx')
intersphinx_mapping = {'ansible_devel': (ANSIBLE_DOCS, _ansible_inventory())}

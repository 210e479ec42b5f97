import os
import sys

# The collection is importable as ansible_collections.fairshare.resources from build/
# (the Makefile links it there); make that work for a bare `pytest tests/unit` too.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE = os.path.join(ROOT, "build")
LINK = os.path.join(TREE, "ansible_collections", "fairshare", "resources")
if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(os.path.relpath(ROOT, os.path.dirname(LINK)), LINK)
if TREE not in sys.path:
    sys.path.insert(0, TREE)

"""The test bed from nothing, as a newcomer's `make demo` meets it.

`fsguest.py start` builds the guest image on its first run in an empty cache directory and
must print exactly one JSON document on standard output (demo.py, molecule's create and the
guest fixture parse it whole), its progress on standard error. Until this test existed every
check ran with the image cached, and mkfs.ext4's "Creating regular file ..." on stdout broke
the first `make demo` on every fresh machine.

It runs first (conftest.py orders it so). Where the shared cache (FAIRSHARE_CACHE, else
~/.cache/fairshare) has no image yet - a fresh machine, CI - it builds into that cache, and every
later guest of the session uses the image it made: one build, not two. Where the image is there
already it builds into an empty cache of its own, so the first run is proven on every machine.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "testbed", "fsguest.py")
SHARED = os.path.expanduser(os.environ.get("FAIRSHARE_CACHE", "~/.cache/fairshare"))  # as fsguest.py finds it


def has_image(cache):
    images = os.path.join(cache, "images")
    return os.path.isdir(images) and any(os.path.exists(os.path.join(images, d, "done")) for d in os.listdir(images))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mmdebstrap, QEMU)")
def test_start_from_an_empty_cache_prints_one_json_document():
    own = has_image(SHARED)  # an image there already: build in an empty cache of this test's own
    cache = tempfile.mkdtemp(prefix="fairshare-fresh-cache-") if own else SHARED
    print("fsguest start from an empty cache: %s" % ("a cache of its own, %s" % cache if own else
                                                     "the shared cache %s, which the later guests use" % cache))
    env = dict(os.environ, FAIRSHARE_CACHE=cache)
    env.pop("FAIRSHARE_RUN_DIR", None)
    name = "fresh%d" % os.getpid()
    t0 = time.time()
    try:
        proc = subprocess.run([sys.executable, TOOL, "start", name], env=env, capture_output=True, text=True,
                              timeout=1500, check=False)
        took = time.time() - t0
        print("fsguest start from an empty cache: rc %d in %.0f s; stdout %d bytes"
              % (proc.returncode, took, len(proc.stdout)))
        assert proc.returncode == 0, proc.stderr[-3000:]
        # the image was built here, in this test, not taken from a cache
        assert "building it once" in proc.stderr, proc.stderr[-3000:]
        assert "[3/3] mkfs.ext4" in proc.stderr
        images = os.listdir(os.path.join(cache, "images"))
        assert len(images) == 1 and os.path.exists(os.path.join(cache, "images", images[0], "done"))
        # exactly one JSON document, one line, nothing before or after it
        assert proc.stdout.count("\n") == 1 and proc.stdout.endswith("\n"), repr(proc.stdout[:500])
        facts = json.loads(proc.stdout)
        assert facts["name"] == name and facts["port"] > 0 and os.path.exists(facts["key"])
        assert facts["dir"].startswith(cache)
        # and it is a guest one can use
        ssh = subprocess.run([sys.executable, TOOL, "ssh", name, "--", "cat", "/etc/hostname"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        assert ssh.stdout.strip() == "fairshare-guest", ssh.stderr
    finally:
        subprocess.run([sys.executable, TOOL, "stop", name], env=env, capture_output=True, check=False, timeout=120)
        if own:
            subprocess.run(["rm", "-rf", "--one-file-system", cache], check=False)

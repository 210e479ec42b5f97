# fairshare.resources: one Makefile for setup, demo and every test layer.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
PY := python3
# Debian packages the tests and the test bed need (testbed.md).
APT_PACKAGES := qemu-system-x86 qemu-utils ipxe-qemu mmdebstrap e2fsprogs openssh-client iproute2 \
	nftables iperf3 btrfs-progs quota xfsprogs util-linux
TREE := $(ROOT)/build/ansible_collections/fairshare/resources
SANITY_TREE := $(ROOT)/build/sanity/ansible_collections/fairshare/resources
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/build
export ANSIBLE_HOST_KEY_CHECKING := False
export ANSIBLE_LOCALHOST_WARNING := False
export ANSIBLE_INTERPRETER_PYTHON := auto_silent
export PATH := $(BIN):$(PATH)
ARTIFACTS := $(ROOT)/artifacts

.PHONY: help setup apt venv tree galaxy demo demo-host demo-clean unit integration sanity compat compat-venv compat-one docs lint build test molecule image images fleet fleet-pair clean \
	containers-setup molecule-containers

help:
	@echo "make demo        set up, then apply examples/policy.yml to a throw-away guest and show fairshare-usage --all"
	@echo "make demo-host   set up, then apply sample limits to two demo users on this host (demo-clean undoes it)"
	@echo "make test        set up, then unit + sanity + compat + lint + build + galaxy + docs + images + host tests + every molecule scenario"
	@echo "make images      every Debian generation's guest image (bullseye, bookworm, trixie, forky), built once and cached"
	@echo "make compat      ansible-core 2.18, 2.20, 2.21: unit, sanity and a converge on this host, each"
	@echo "make docs        the HTML documentation site in build/docs/html, checked in headless Chromium"
	@echo "make molecule    every molecule scenario (default, cgroup_v1, host, containers)"

setup: apt venv tree

apt:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; fi

$(BIN)/ansible: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(BIN)/ansible

# The collection seen as ansible_collections/fairshare/resources (a link to this checkout).
tree:
	@mkdir -p $(dir $(TREE))
	@ln -sfn ../../.. $(TREE)

# examples/policy.yml on a throw-away systemd guest (QEMU); --check --diff here where QEMU cannot run
demo: setup
	$(PY) testbed/demo.py

# sample limits for two demo users on this host itself (demo-clean removes them)
demo-host: setup
	$(BIN)/ansible-playbook -i localhost, -c local -e ansible_python_interpreter=$(BIN)/python playbooks/demo.yml

demo-clean: setup
	$(BIN)/ansible-playbook -i localhost, -c local -e ansible_python_interpreter=$(BIN)/python playbooks/demo.yml -e demo_state=absent

unit: venv tree
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -v -s --durations=30 tests/integration

# ansible-test sanity in its managed venvs: tests/sanity/get_pip_shim.py stands in for the
# get-pip download this network can't reach (README, "Sanity"). SANITY_BIN and SANITY_PYTHON
# pick the ansible-core and Python (`make compat` runs it for each release it tests).
SANITY_BIN ?= $(BIN)
SANITY_PYTHON ?= 3.11
sanity: venv
	@rm -rf $(dir $(SANITY_TREE)) && mkdir -p $(SANITY_TREE)
	git ls-files -co --exclude-standard | grep -v -E '^(molecule|testbed|benchmarks)/' | tar -cf - -T - | tar -xf - -C $(SANITY_TREE)
	cd $(SANITY_TREE) && git init -q && git add -A
	@mkdir -p $(HOME)/.ansible/test/cache
	pip=$$($(SANITY_BIN)/python tests/sanity/ansible_test_pip.py) && \
	sed -e "s|@CERT@|$${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}|" -e "s|@FIND_LINKS@|$${PIP_FIND_LINKS:-}|" \
	  tests/sanity/get_pip_shim.py > $(HOME)/.ansible/test/cache/get_pip_$${pip//./_}.py
	cd $(SANITY_TREE) && $(SANITY_BIN)/ansible-test sanity --python $(SANITY_PYTHON) --local --color no

# The other ansible-core releases of tests/compat/versions.txt, each in its own venv under
# build/compat with the Python it needs: unit tests, sanity and a converge of site.yml on this
# host (test_profiles_role.py runs with that release's ansible-playbook).
COMPAT := $(ROOT)/build/compat
COMPAT_VERSIONS := grep -v -E '^[[:space:]]*(\#|$$)' tests/compat/versions.txt
compat: setup
	@mkdir -p $(COMPAT); while read -r core python; do \
	  $(MAKE) --no-print-directory compat-venv CORE=$$core CORE_PYTHON=$$python > $(COMPAT)/venv-$$core.log 2>&1 & \
	done < <($(COMPAT_VERSIONS)); wait
	@failed=""; while read -r core python; do \
	  echo "== ansible-core $$core on Python $$python"; \
	  $(MAKE) --no-print-directory compat-one CORE=$$core CORE_PYTHON=$$python || failed="$$failed $$core"; \
	done < <($(COMPAT_VERSIONS)); \
	if [ -n "$$failed" ]; then echo "make compat: FAILED:$$failed"; exit 1; fi

# A release's venv (made for all of them at once by `make compat`: the installs wait on the network).
compat-venv:
	@test -n "$(CORE)" -a -n "$(CORE_PYTHON)"
	@if [ ! -x $(COMPAT)/$(CORE)/bin/ansible-test ]; then \
	  py=$$(python3 tests/compat/find_python.py $(CORE_PYTHON)) && rm -rf $(COMPAT)/$(CORE) && \
	  $$py -m venv $(COMPAT)/$(CORE) && \
	  $(COMPAT)/$(CORE)/bin/pip install -q ansible-core==$(CORE) -r tests/compat/requirements.txt; fi

compat-one: compat-venv
	$(COMPAT)/$(CORE)/bin/pytest -q -p no:cacheprovider tests/unit
	$(MAKE) --no-print-directory sanity SANITY_BIN=$(COMPAT)/$(CORE)/bin SANITY_PYTHON=$(CORE_PYTHON) \
	  SANITY_TREE=$(COMPAT)/sanity-$(CORE)/ansible_collections/fairshare/resources
	$(COMPAT)/$(CORE)/bin/pytest -v -s -p no:cacheprovider \
	  tests/integration/test_profiles_role.py::test_site_applies_the_resolved_profiles

# The documentation site: antsibull-docs writes the collection's pages (modules, filters,
# roles), the guides of docs/ join them as they are (myst-parser), Sphinx builds the HTML in
# build/docs/html with warnings as errors. tests/docs/test_site.py looks at it in Chromium.
DOCS := $(ROOT)/build/docs
GUIDES := profiles cgroup_limit disk_quota tc_shape security awx
docs: venv tree
	@dpkg -s chromium >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	$(BIN)/antsibull-docs lint-collection-docs --plugin-docs $(TREE)
	@rm -rf $(DOCS) && mkdir -p $(DOCS)/rst/guides && chmod og-w $(DOCS)/rst
	cp docs/site/index.rst $(DOCS)/rst/index.rst
	$(BIN)/antsibull-docs --config-file docs/site/antsibull-docs.cfg collection --use-current \
	  --dest-dir $(DOCS)/rst fairshare.resources
	for guide in $(GUIDES); do cp docs/$$guide.md $(DOCS)/rst/guides/; done
	$(BIN)/sphinx-build -q -b html -c docs/site -W --keep-going $(DOCS)/rst $(DOCS)/html
	$(BIN)/pytest -v -p no:cacheprovider tests/docs

lint: venv tree
	$(BIN)/ansible-lint --profile production

build: venv tree
	@rm -rf build/dist && mkdir -p build/dist
	$(BIN)/ansible-galaxy collection build --force --output-path build/dist .
	$(BIN)/ansible-galaxy collection install --force -p build/dist/installed build/dist/fairshare-resources-*.tar.gz
	ANSIBLE_COLLECTIONS_PATH=build/dist/installed $(BIN)/ansible-doc fairshare.resources.cgroup_limit | head -5

# What Galaxy does with an upload (galaxy-importer, offline: tests/galaxy/importer.cfg), and the
# changelog: its fragments lint clean and CHANGELOG.rst is what antsibull-changelog makes of them.
galaxy: build
	$(BIN)/antsibull-changelog lint
	@cp CHANGELOG.rst build/CHANGELOG.rst.committed
	$(BIN)/antsibull-changelog generate
	@if ! cmp -s CHANGELOG.rst build/CHANGELOG.rst.committed; then \
	  cp build/CHANGELOG.rst.committed CHANGELOG.rst; \
	  echo "CHANGELOG.rst is not what antsibull-changelog generate makes: run it and commit"; exit 1; fi
	cd build && GALAXY_IMPORTER_CONFIG=$(ROOT)/tests/galaxy/importer.cfg $(BIN)/python -m galaxy_importer.main \
	  dist/fairshare-resources-*.tar.gz 2>&1 | tee galaxy-importer.log | grep -v '^Loading '
	@grep -q '^Importer processing completed successfully' build/galaxy-importer.log

image: setup
	$(PY) testbed/fsguest.py build

# one site.yml run over a fleet of guests of every generation and this machine itself (testbed/fleet.py;
# five TCG guests on two cores, 20 min to converge and 20 more for the checks: too long for `make test`)
fleet: setup images
	$(BIN)/python testbed/fleet.py

# the fleet scenario as `make test` runs it: the same script over the two hosts no other layer puts in one
# inventory (Debian 12 booted with cgroup v1, and this machine without systemd), about 6.5 min
fleet-pair: setup images
	$(BIN)/python testbed/fleet.py --hosts bookworm-v1,host

# every Debian generation's guest image (bullseye, bookworm, trixie, forky), built in parallel once
# and cached; a layer of `make test` of its own, before the guests boot
images: setup
	$(PY) testbed/fsguest.py build-all

SCENARIOS := host default cgroup_v1
# The containers scenario needs podman (with runc), molecule's podman driver and the
# containers.podman collection (from the `ansible` package, kept apart in build/ext).
containers-setup: setup
	@dpkg -s podman runc >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
	@$(BIN)/pip show -q molecule-plugins >/dev/null 2>&1 || $(BIN)/pip install -q -r requirements-containers.txt
	@test -d build/ext/ansible_collections/containers/podman || \
	  $(BIN)/pip install -q --no-deps --target build/ext -r requirements-containers-collections.txt
	$(PY) testbed/fsguest.py container-image

molecule-containers: containers-setup
	@mkdir -p $(ARTIFACTS)
	CONTAINERS_CONF=$(ROOT)/molecule/containers/containers.conf \
	  $(BIN)/molecule test -s containers --platform-name fs-debian12 2>&1 | tee $(ARTIFACTS)/molecule-containers.log

$(addprefix molecule-,$(SCENARIOS)): molecule-%: setup
	@mkdir -p $(ARTIFACTS)
	$(BIN)/molecule test -s $* 2>&1 | tee $(ARTIFACTS)/molecule-$*.log

molecule: molecule-host molecule-default molecule-cgroup_v1 molecule-containers

TEST_LAYERS := unit sanity compat lint build galaxy docs images integration molecule-host molecule-default \
	molecule-cgroup_v1 molecule-containers fleet-pair
# Each layer in turn, timed; the times are printed at the end (the README quotes them).
test: setup
	@rm -f build/test-times.txt; mkdir -p build; failed=""; \
	for layer in $(TEST_LAYERS); do \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$layer || failed="$$failed $$layer"; \
	  echo "$$layer $$(( $$(date +%s) - start ))" >> build/test-times.txt; \
	done; \
	echo "make test: time per layer (s)"; column -t build/test-times.txt; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: all layers passed in $$(awk '{s += $$2} END {print s}' build/test-times.txt) s"

clean:
	rm -rf build .pytest_cache

# make run      set up .venv with what runs the PBX (requirements.txt) and the database,
#               print a first admin's password, run sipd + panel (either started again if it dies)
# make install  .venv with the tests' and deployment's tools too (requirements-dev.txt)
# make test     install what the tests need (Debian packages too, as root) and run them all
# make bench    benchmarks against Kamailio; figures go to docs/benchmarks.md by hand
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# What is installed, each stamped when it was: the runtime alone (make run), or
# the runtime and the tools (make install, test, lint, bench). The second holds the
# first, so installing it stamps both and a later `make run` installs nothing.
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
# Debian packages the tests and benchmarks drive for real.
TEST_DEBS := sip-tester sipsak chromium chromium-driver sqlite3 procps iproute2 debootstrap systemd-container openssh-client vagrant baresip nftables sipvicious openssl util-linux zbar-tools linphone-cli tshark kamailio kamailio-sqlite-modules kamailio-tls-modules espeak-ng sox libsox-fmt-mp3 asterisk-core-sounds-en-wav
BENCH_DEBS := kamailio kamailio-sqlite-modules sip-tester
# The benchmarks run sipd on the interpreter a deployment runs it on: a venv of
# Debian's python3, as ansible/roles/pbx makes the release's (pbx_python), with
# the runtime requirements only (bench/benchlib.py sipd_python says why).
DEPLOY_PYTHON ?= /usr/bin/python3
DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed-runtime

.PHONY: install run test lint bench deps-test deps-bench clean

install: $(DEV_STAMP)

$(RUNTIME_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements-dev.txt
	touch $(RUNTIME_STAMP) $(DEV_STAMP)

run: $(RUNTIME_STAMP)
	./pbxctl init --first-admin
	./pbxctl prompts build
	./pbxctl run

deps-test:
	@sh tools/apt-ensure.sh $(TEST_DEBS)

deps-bench: $(DEPLOY_STAMP)
	@sh tools/apt-ensure.sh $(BENCH_DEBS)

$(DEPLOY_STAMP): requirements.txt $(DEV_STAMP)
	test -x $(DEPLOY_VENV)/bin/python || $(DEPLOY_PYTHON) -m venv --without-pip $(DEPLOY_VENV)
	$(PY) -m pip --python $(DEPLOY_VENV)/bin/python install --quiet --disable-pip-version-check -r requirements.txt
	touch $(DEPLOY_STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: install deps-test lint
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: install deps-bench
	$(PY) bench/registrations.py
	$(PY) bench/memory.py
	$(PY) bench/calls.py
	$(PY) bench/calls.py --fork 3 --answer-after-ms 100
	$(PY) bench/outbound.py
	$(PY) bench/media.py
	$(PY) bench/endpoint.py

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) var

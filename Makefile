# Crowbar's front door. `make lab` brings up the whole system locally; `make test` runs the suite.
# Both install what they need on a fresh machine: Node 24 (into .tools/ when the machine's node is
# older than 22), npm packages from the lockfile, Debian packages, and the Go-built control plane.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

NODE_DIR := $(shell tools/ensure-node.sh)
export PATH := $(NODE_DIR):$(PATH)
export CROWBAR_BIN_DIR ?= $(HOME)/.cache/crowbar/bin/v1.36.3

APT_PACKAGES := kmod debconf openssl ca-certificates iproute2 iputils-ping procps openssh-server openssh-client jq graphviz \
  dnsutils knot-dnsutils nsd bind9 dnsmasq-base dnsperf \
  isc-dhcp-client isc-dhcp-relay tcpdump udhcpc busybox-static curl ipxe ipxe-qemu qemu-system-x86 qemu-utils ovmf cpio zstd kea-dhcp4-server kea-admin \
  radvd ndisc6 kea-dhcp6-server \
  openipmi ipmitool cloud-init python3-venv gcc libc6-dev xz-utils

.PHONY: help deps apt npm native bins sushy-tools generate docs check-generated lint typecheck unit integration test test-chaos lab test-lab-vms lab-down bench bench-annealer bench-write-cost bench-ipam bench-jig bench-dns bench-dhcp bench-provision discovery-image debian-mirror e2e-install clean

help:
	@echo "make lab        bring up a local Crowbar: control plane, CRDs, operator, example fleet"
	@echo "make lab VMS=N  the same, with N qemu VMs that PXE-boot discovery and become Nodes"
	@echo "make test-lab-vms  the lab with 2 VMs (BIOS, UEFI), checked and torn down (minutes)"
	@echo "make lab-down   stop a lab left behind"
	@echo "make test       install what is needed, then lint, type-check, unit and integration tests"
	@echo "make test-chaos the chaos suite in full: leader kills, partition (short form in make test)"
	@echo "make native     build the DNS and DHCP sidecars' native UDP loops (part of make deps)"
	@echo "make bins       build kube-apiserver, etcd, kube-controller-manager, kubectl, helm (cached)"
	@echo "make sushy-tools the Redfish emulator's venv for the power tests (cached)"
	@echo "make generate   regenerate TypeScript types from crds/"
	@echo "make docs       regenerate docs/api-reference.md and the noderole state diagram"
	@echo "make bench      benchmarks (ratios against a reference measured in the same run)"
	@echo "make bench-dhcp the DHCP sidecar against kea-dhcp4 and kea-dhcp6 with perfdhcp"
	@echo "make bench-provision  8 qemu VMs at once, power-on to discovery role active (not in make bench)"
	@echo "make discovery-image  build the discovery image (cached in ~/.cache/crowbar/discovery)"
	@echo "make e2e-install  a full install with Debian's real installer from a local mirror (not in make test)"

deps: apt npm native

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

npm: node_modules/.stamp

node_modules/.stamp: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# The sidecars' native UDP loops (recvmmsg/sendmmsg): the DNS sidecar's (answers from a table;
# ADR 0020) and the DHCP sidecar's (batches up to JS, IP_PKTINFO; ADR 0023), built with the
# machine's C compiler; rebuilt when a source or the headers' package changes.
NATIVE_UDP := dns-sidecar/native/build/crowbar_udp.node
NATIVE_DHCP_UDP := dhcp-sidecar/native/build/crowbar_dhcp_udp.node
native: $(NATIVE_UDP) $(NATIVE_DHCP_UDP)

$(NATIVE_UDP) $(NATIVE_DHCP_UDP) &: dns-sidecar/native/udp.c dhcp-sidecar/native/udp4.c tools/native/napi-addon.h tools/build-native.sh node_modules/.stamp | apt
	tools/build-native.sh

# The discovery image (our Sledgehammer) from Debian packages; cached, rebuilt when its recipe changes.
discovery-image: apt
	@tools/discovery-image/build.sh

bins:
	@tools/build-bins.sh >/dev/null

# The sushy-tools Redfish emulator (PyPI, pinned in tools/sushy-tools/requirements.txt) for the
# redfish power driver's tests: a venv in ~/.cache/crowbar/sushy-tools-2.2.0, built when missing.
sushy-tools: apt
	@tools/sushy-tools/ensure.sh >/dev/null

generate: npm
	node tools/generate-types.ts

check-generated: npm
	node tools/generate-types.ts --check
	node tools/generate-docs.ts --check

# docs/api-reference.md from crds/, and the noderole state diagram from the annealer's transitions
# (docs/images/noderole-states.{dot,svg}, drawn by Graphviz). CI fails when they are stale.
docs: deps
	node tools/generate-docs.ts

lint: npm
	npx eslint --max-warnings 0 .
	npx prettier --check . --log-level warn

typecheck: npm
	npx tsc -p tsconfig.json

unit: npm native
	npx vitest run --project unit

integration: deps bins sushy-tools
	npx vitest run --project integration

test: deps bins sushy-tools
	@t0=$$SECONDS; \
	rc=0; $(MAKE) --no-print-directory check-generated lint typecheck || rc=$$?; \
	npx vitest run --reporter=default --reporter=json --outputFile=.vitest-results.json || rc=$$?; \
	node tools/summarize-tests.ts .vitest-results.json || true; \
	echo "make test: done in $$((SECONDS - t0))s"; \
	exit $$rc

# The chaos suite in full (test/integration/chaos.test.ts; `make test` runs its short form): 200
# nodes x 5 roles and script roles on sshd machines, the leader SIGKILLed 20 times, a partition.
test-chaos: deps bins
	CROWBAR_CHAOS=full npx vitest run --project integration test/integration/chaos

bench: bench-annealer bench-ipam bench-jig bench-dns bench-dhcp

# N nodes x M roles (BENCH_NODES, BENCH_ROLES; default 1000 x 10) against the real API server.
# BENCH_FLOOR=0 leaves the floor out; BENCH_PROFILE_S=n profiles the API server in the reaction phase.
bench-annealer: deps bins
	node bench/annealer.ts

# One NodeRole status write's cost to the API server and etcd (latency, CPU per write) by object
# size (BENCH_WRITE_SIZES_KB, default 0,2,8,32,128) and by kind: merge patch, apply, JSON patch.
bench-write-cost: deps bins
	node bench/write-cost.ts

# The script jig vs OpenSSH's ssh client: BENCH_JIG_NODES sshd machines (default 50) in network
# namespaces x BENCH_JIG_ROLES script roles (default 4), inline executor, 10 runs at once (one per node).
bench-jig: deps
	node bench/jig.ts

# N addresses in one network (BENCH_IPAM_ADDRESSES; default 5000) allocated through the operator.
bench-ipam: deps bins
	node bench/ipam.ts

# dnsperf against the DNS sidecar, BIND9, dnsmasq and NSD serving the same zone of BENCH_DNS_NODES
# nodes (default 10000; A, AAAA, PTR), one after the other, BENCH_DNS_SECONDS each (default 10).
bench-dns: deps
	node bench/dns.ts
# perfdhcp's four-message exchange for BENCH_DHCP_CLIENTS reserved MACs (default 10000) against the
# DHCP sidecar and then kea-dhcp4 (memfile, same reservations) in cbdhcp-bench-* namespaces; then
# perfdhcp -6 (SOLICIT/ADVERTISE/REQUEST/REPLY) against the sidecar's DHCPv6 and kea-dhcp6.
bench-dhcp: deps
	node bench/dhcp.ts

# BENCH_PROVISION_VMS BIOS qemu VMs (default 8) powered on at once: PXE, discovery image,
# registration, discovery role over SSH; prints RESULT provision vms=... seconds=... p50_s p99_s and
# the load average (not in `make bench`: minutes of TCG).
bench-provision: deps bins discovery-image
	node bench/provision.ts

# `make lab VMS=N`: the lab also boots N qemu VMs that PXE-boot discovery and become Nodes.
VMS ?= 0
lab: deps bins
	CROWBAR_LAB_VMS=$(VMS) node lab/main.ts

# The lab with 2 VMs (BIOS, UEFI), checked and torn down, in a throwaway directory and namespaces of
# its own: discovery over PXE to Nodes with the lab power driver and discovery roles active (minutes
# under TCG: not in `make test`).
test-lab-vms: deps bins
	@d=$$(mktemp -d /tmp/crowbar-labvms-XXXXXX); rc=0; \
	CROWBAR_LAB_DIR=$$d CROWBAR_LAB_PREFIX=cblv-$$(openssl rand -hex 2) CROWBAR_LAB_DNS_PORT=53 \
	  CROWBAR_LAB_VMS=2 node lab/main.ts --check || rc=$$?; \
	rm -rf $$d; exit $$rc

# A partial Debian mirror (Debian's signed dists/ files and the pool files a d-i install needs),
# fetched through apt from the machine's apt source; cached in ~/.cache/crowbar/debian-mirror.
debian-mirror: apt
	@tools/debian-mirror.sh

# A full installation onto a qemu VM's disk with Debian's real installer, served that mirror by
# the boot sidecar, then first boot from the disk (test/e2e/install.test.ts; tens of minutes of
# TCG: not in `make test`).
e2e-install: deps bins discovery-image debian-mirror
	npx vitest run --config vitest.e2e.config.ts

lab-down:
	node lab/down.ts

clean:
	rm -rf node_modules .tools .lab

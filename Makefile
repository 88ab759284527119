# Airlock — build, run and test. Tools are pinned and installed into ./bin.
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

BUF_VERSION                ?= v1.75.0
PROTOC_GEN_GO_VERSION      ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.0
GRPCURL_VERSION            ?= v1.9.3
GOLANGCI_LINT_VERSION      ?= v2.15.0

BINARIES := issuer gateway stubmodel airlockctl

# The released gRPC contract that `buf breaking` holds every change against: an image built
# from the last release (`buf build '.git#ref=<release>' -o build/api-baseline.binpb`, now the
# first landing, 01ff6d2). Refresh it only when a release ships.
API_BASELINE := build/api-baseline.binpb

.PHONY: all build run demo test unit-test lint generate check-generated tools fuzz-short validate-deploy \
        compose-test compose-up compose-down images dist bench loadtest clean grpcurl

all: build

## build: the four binaries into ./bin
build:
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

## dist: static binaries (CGO_ENABLED=0) into ./dist for container images
dist:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o dist/ $(addprefix ./cmd/,$(BINARIES))

## run: issuer + gateway + stub model on the loopback defaults, until Ctrl-C
run: build
	./scripts/run.sh

## demo: the whole flow once; exits 0 only if text streamed back through the gateway
demo: build
	./scripts/run.sh --demo

## test: everything CI checks (lint, generated code fresh, race tests, short fuzz runs,
## Kubernetes manifests validated offline)
test: lint check-generated unit-test fuzz-short validate-deploy

unit-test:
	$(GO) test -race -count=1 -timeout 8m ./...

lint: $(BIN)/buf $(BIN)/golangci-lint
	$(GO) vet ./...
	$(BIN)/golangci-lint run ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/buf breaking --against $(API_BASELINE)

## generate: regenerate Go code from proto/ with local plugins only
generate: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
	$(BIN)/buf generate

check-generated: generate
	@git diff --exit-code -- pkg/api || { echo "generated code is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- pkg/api)" || { git status --porcelain -- pkg/api; echo "untracked generated files"; exit 1; }
	./scripts/check-python-stubs.sh $(BIN)/buf

## fuzz-short: run each fuzz target briefly (the seed corpora also run in unit-test)
FUZZ_TIME ?= 10s
fuzz-short:
	GO=$(GO) FUZZ_TIME=$(FUZZ_TIME) ./scripts/fuzz-short.sh

## validate-deploy: strict-decode deploy/k8s and its HA variant deploy/k8s/ha into k8s.io/api types and check invariants
## (deploy/validate is its own Go module, so k8s.io/api never enters the main one)
validate-deploy:
	cd deploy/validate && $(GO) vet ./... && $(GO) test -count=1 ./... && $(GO) run . ../k8s && $(GO) run . ../k8s/ha

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/golangci-lint

$(BIN)/buf:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(BIN)/golangci-lint:
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
$(BIN)/grpcurl:
	GOBIN=$(BIN) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

## grpcurl: install grpcurl into ./bin (the `make run` banner's second example uses it)
grpcurl: $(BIN)/grpcurl

## compose-test: build images and run the docker compose integration suite
compose-test: $(BIN)/grpcurl
	./scripts/compose-test.sh

## compose-up: issuer + gateway + stub under docker compose with mutual TLS: builds the images,
## makes a private CA, certificates and KEK, registers the stub, prints how to use it.
## AIRLOCK_PROJECT=name (default airlock-<user>) picks the compose project.
compose-up:
	./scripts/compose-test.sh up

## compose-down: stop the compose project and delete its volume and generated secrets
compose-down:
	./scripts/compose-test.sh down

clean:
	rm -rf $(BIN) dist data

## bench: the performance suite; prints every figure next to its target and writes BENCHMARKS.md
bench:
	./scripts/bench.sh

## loadtest: bounded mixed load on loopback against the real binaries (~60 s; LOADTEST_DURATION=5s for a quick run)
loadtest: build
	$(GO) build -o $(BIN)/ ./cmd/airlock-bench
	$(BIN)/airlock-bench loadtest --bin-dir $(BIN)

# mirror: `make demo` shows what mirrord does, in under a minute; `make run`
# starts mirrord on its embedded default; `make test` runs every check CI runs.

GO      ?= go
PKGS    ?= ./...
# The vendor SDK and the plugins are modules of their own (plugins/ceph too,
# tested with -tags pacific against CEPH_LAB).
MODULES ?= plugins/sdk plugins/example plugins/nfs
CEPH_LAB ?= $(CURDIR)/var/ceph-lab
# The third lab site (site-c) the Ceph layout tests (1:N, N:1) need.
IP_C ?= 127.0.0.3
# A second lab, on other loopback addresses: the Ceph plugin's tests run on
# both labs at once (test/ceph/labtests.sh), one test per lab.
CEPH_LAB2 ?= $(CURDIR)/var/ceph-lab2
LAB2_IPS ?= IP_A=127.0.0.4 IP_B=127.0.0.5 IP_C=127.0.0.6
# The Ceph plugin's interruption tests, the heaviest (each once took 10 GiB
# under -race, and two at once ran out of memory), run one after another on
# the first lab. The longest others start first on the second, so the labs
# end together.
CEPH_SERIAL ?= TestInterruptionKillJournal TestInterruptionKillSnapshot TestInterruptionCutSnapshot TestInterruptionCutJournal
CEPH_FIRST ?= TestConformanceSnapshotMode TestConformanceBinary TestConformanceJournal TestSourceLost

.PHONY: all build demo test unit deps lint generate check-generate check-alerts fmt run bench bench-churn bench-nfs ceph-lab-up ceph-lab-down fuzz faults

all: build

build:
	$(GO) build $(PKGS)

## test: the dependency rule, formatting, fresh wire_gen.go, the alert
## rules, vet, then every test with the race detector.
test: lint ceph-lab-up
	@set -e; trap '$(CURDIR)/test/ceph/cluster.sh down $(CEPH_LAB); $(CURDIR)/test/ceph/cluster.sh down $(CEPH_LAB2)' EXIT; export CEPH_LAB=$(CEPH_LAB); \
	$(GO) test -race -count=1 -timeout 30m $(PKGS); \
	for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GO) vet ./... && $(GO) test -race -count=1 ./...); done; \
	$(LAB2_IPS) $(CURDIR)/test/ceph/cluster.sh up $(CEPH_LAB2); \
	echo "== plugins/ceph, on the real clusters in $(CEPH_LAB) and $(CEPH_LAB2)"; \
	cd plugins/ceph && $(GO) vet -tags pacific ./... && $(GO) test -tags pacific -race -count=1 . && \
	SERIAL='$(CEPH_SERIAL)' FIRST='$(CEPH_FIRST)' $(CURDIR)/test/ceph/labtests.sh ./cephrbd $(CEPH_LAB) $(CEPH_LAB2)

## ceph-lab-up / ceph-lab-down: three single-node Ceph clusters on loopback
## for the Ceph plugin's tests (Debian packages installed when missing).
ceph-lab-up:
	@$(CURDIR)/test/ceph/cluster.sh install
	@IP_C=$(IP_C) $(CURDIR)/test/ceph/cluster.sh up $(CEPH_LAB)

ceph-lab-down:
	@$(CURDIR)/test/ceph/cluster.sh down $(CEPH_LAB)
	@$(CURDIR)/test/ceph/cluster.sh down $(CEPH_LAB2)

## unit: the fast tests only (core, app, fakes).
unit: deps
	$(GO) test -count=1 ./core/... ./ports/... ./app/... ./adapters/fake/...

## deps: core/ imports only ports/ and the standard library, and so on inward.
deps:
	@.ci/check-deps

lint: deps check-generate check-alerts
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)

## fuzz: every fuzz target (the decoders of etcd values, bus messages,
## keys and plugin answers) for FUZZTIME each; `go test` runs their seeds
## as plain tests. Found crashers land in the package's testdata/fuzz.
FUZZTIME ?= 30s
# dir:package, as the SDK is a module of its own.
FUZZ_PKGS ?= .:./core .:./app plugins/sdk:.
fuzz:
	@set -e; for p in $(FUZZ_PKGS); do d=$${p%%:*}; pkg=$${p#*:}; \
	for t in $$(cd $$d && $(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	echo "== $$d $$pkg $$t ($(FUZZTIME))"; \
	(cd $$d && $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg) || exit 1; \
	done; done

## bench: the 10,000-volume benchmark on embedded etcd (a few minutes) and
## the plugin call round trip.
bench:
	$(GO) test -run '^$$' -bench TenThousandVolumes -benchtime 1x -timeout 60m ./cmd/mirrord/
	$(GO) test -run '^$$' -bench 'PluginCall/interleaved|PluginWrapper' -benchtime 20s ./adapters/pluginhost/

## bench-churn: 10,000 mirror volumes on embedded etcd, then 3 minutes of
## operations (20/s: pause, resume, stop_and_delete and create again) on
## random volumes, sampled every 10 s: fails unless goroutines and heap stay
## flat, the operation latency stays within 2x the bare watch and stopping
## the daemon leaves none of its goroutines (docs/benchmarks.md). About 5
## minutes; MIRROR_BENCH_VOLUMES, MIRROR_BENCH_CHURN, MIRROR_BENCH_CHURN_RATE.
bench-churn:
	$(GO) test -run '^$$' -bench VolumeChurn -benchtime 1x -timeout 60m -v ./cmd/mirrord/

## faults: the fault suite's long form (make test runs each scenario
## once, in a short form); the figures are in docs/reliability.md. Crash
## anywhere (240 operations under kill -9, three forms); three daemons
## under kills and etcd cuts; plugin faults; servers down (etcd, NATS, two
## members of a 3-member etcd cluster down for 30 s, three trials each);
## on the Ceph lab (brought up as make test does): a site frozen for 60 s
## (20 s in make test) under mirror, pause, stop and destroy, and the crash
## test on Ceph (30 operations; 12 in make test); the
## load check (bench-churn). MIRROR_FAULTS_SEED=<seed> repeats a run whose
## seed a test printed.
faults:
	MIRROR_FAULTS=long $(GO) test -count=1 -timeout 30m -v -run 'TestCrashAnywhere' ./cmd/mirrord/
	MIRROR_FAULTS=long $(GO) test -race -count=1 -timeout 20m -run 'TestDaemonsUnderFaults' -v ./cmd/mirrord/
	MIRROR_FAULTS=long $(GO) test -count=1 -v -timeout 30m -run 'TestFault|TestPluginFaults' ./adapters/pluginhost/ ./cmd/mirrord/
	@l=$$(mktemp); trap 'rm -f "$$l"' EXIT; MIRROR_FAULTS=long $(GO) test -race -count=3 -timeout 30m -v -run 'TestEtcdOutageMidOperation|TestNATSOutageSnapshotEvents|TestEtcdClusterLosesLeaderThenQuorum' ./cmd/mirrord/ >"$$l" 2>&1 || { cat "$$l"; exit 1; }; grep -E '^(--- |ok)|servers_test' "$$l"
	@set -e; IP_C=$(IP_C) $(CURDIR)/test/ceph/cluster.sh up $(CEPH_LAB); trap '$(CURDIR)/test/ceph/cluster.sh down $(CEPH_LAB)' EXIT; export CEPH_LAB=$(CEPH_LAB); \
	MIRROR_FAULTS=long $(GO) test -count=1 -timeout 40m -v -run 'TestCephStorageDown|TestCephCrashAnywhere' ./cmd/mirrord/
	$(MAKE) bench-churn

## demo: builds mirrord, the nfs plugin (pinned by SHA256SUMS) and
## mirror-agent into a temporary directory, then shows mirrord replicating a
## file volume between two local directories: first copy, a delta, a
## snapshot made a recovery point, stop_and_delete (test/demo). It leaves
## no process and no file behind. Plugin files and directories are made
## 0755 whatever the umask: mirrord refuses ones others may write.
demo:
	@set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; trap 'exit 130' INT TERM; \
	echo "Building mirrord, the nfs plugin and mirror-agent..."; \
	mkdir -m 755 "$$d/plugins"; \
	$(GO) build -o "$$d/mirrord" ./cmd/mirrord; \
	$(GO) build -o "$$d/demo" ./test/demo; \
	(cd plugins/nfs && $(GO) build -o "$$d/mirror-agent" ./cmd/mirror-agent && $(GO) build -o "$$d/plugins/nfs" .); \
	chmod 755 "$$d/plugins/nfs"; \
	(cd "$$d/plugins" && sha256sum nfs > SHA256SUMS); \
	"$$d/demo" -mirrord "$$d/mirrord" -agent "$$d/mirror-agent" -plugin-dir "$$d/plugins" $(ARGS)

## bench-nfs: the file-volume plugin's delta sync and first copy of a 1 GiB
## file through its agent, next to rsync (a daemon on loopback) and cp, in
## one run (about a minute; 4 GiB in TMPDIR). rsync is installed if missing.
bench-nfs:
	@.ci/install-packages rsync
	cd plugins/nfs && $(GO) test -run '^$$' -bench FileVolume -benchtime 1x -timeout 30m ./bench/

## run: mirrord on its embedded default (in-process etcd on 127.0.0.1:2379,
## NATS with JetStream on 127.0.0.1:4222, data under var/mirrord) with the
## example plugin.
run:
	@mkdir -p var/plugins && chmod 755 var/plugins
	cd plugins/example && $(GO) build -o ../../var/plugins/example .
	@chmod 755 var/plugins/example
	$(GO) run ./cmd/mirrord --embedded var/mirrord --plugin-dir var/plugins $(ARGS)

## generate: regenerate wire_gen.go files and the plugin protocol's gRPC code
## (protoc from Debian's protobuf-compiler, installed if missing).
generate:
	$(GO) generate ./app/harness/... ./cmd/mirrord/...
	@.ci/install-packages protobuf-compiler
	cd plugins/sdk && $(GO) generate ./internal/pb/...

## check-generate: fail if regenerating wire changes a committed file (the
## protocol's generated code is checked by `make generate` + git diff, as it
## needs protoc).
check-generate:
	$(GO) generate ./app/harness/... ./cmd/mirrord/...
	@git diff --exit-code -- '*wire_gen.go' || { echo "wire_gen.go is stale: run make generate"; exit 1; }

## check-alerts: the shipped Prometheus alert rules are valid and pass
## their unit tests (promtool, taken from Debian's prometheus package
## into var/tools without installing the package: no server started).
check-alerts:
	@p=$$($(CURDIR)/.ci/install-promtool) && $$p check rules deploy/prometheus/alerts.yml && $$p test rules deploy/prometheus/alerts_test.yml

fmt:
	gofmt -w $$(git ls-files '*.go')

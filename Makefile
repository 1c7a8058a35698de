# Burnrate — the two commands that matter: `make demo` and `make test`.
# Both install what they need (Debian packages with apt-get, the Kafka broker
# jars with Maven, run by the test harness) on a fresh machine.

GO        ?= go
BIN       := bin/burnrate
FUZZTIME  ?= 5s
TESTFLAGS ?=
PKGS      := ./...

.PHONY: demo test unit e2e bench fuzz lint build deps clean

build:
	CGO_ENABLED=1 $(GO) build -o $(BIN) ./services/burnrate

# deps installs the system packages the demo and the tests run: Debian's
# clickhouse-server, Maven (the harness resolves Kafka's jars with it) and
# prometheus (for promtool, which checks and unit-tests the alert rules).
deps:
	@missing=""; \
	command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || missing="$$missing clickhouse-server clickhouse-client"; \
	command -v mvn >/dev/null 2>&1 || missing="$$missing maven"; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

demo: deps build
	./$(BIN) dev

# test runs unit, integration and e2e tests against a real Apache Kafka
# broker and a real ClickHouse server, then short fuzz runs.
test: deps lint
	$(GO) test -count=1 -timeout 15m $(TESTFLAGS) $(PKGS)
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

unit:
	$(GO) test -count=1 -short $(PKGS)

e2e: deps
	$(GO) test -count=1 -timeout 15m -v ./e2e/...

bench: deps
	$(GO) test -p 1 -run '^$$' -bench . -benchmem -count 1 $(PKGS)

# fuzz runs every Fuzz* target for FUZZTIME each (go test allows one target
# per run). Targets are found in the source, so listing starts no servers.
fuzz:
	@set -e; for file in $$(grep -rl --include='*_test.go' '^func Fuzz' services schemas streams e2e); do \
		pkg=./$$(dirname $$file); \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
			echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg > /tmp/burnrate-fuzz.log 2>&1 || { cat /tmp/burnrate-fuzz.log; exit 1; }; \
		done; \
	done

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
	$(GO) clean -testcache

#!/usr/bin/env bash
# The whole test suite: vet, then every test with the race detector, fuzz
# seed corpora included. Needs Go, git and a POSIX sh; .ci/run installs what
# a fresh machine lacks and then runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")"
go vet ./...
go test -race -count=1 -timeout 20m ./...

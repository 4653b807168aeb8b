#!/usr/bin/env bash
# Run the pinned helm, building it first when this machine has none.
#
#   deploy/helm/helm.sh template rtml deploy/helm/rtml -f deploy/helm/rtml/values-production.yaml
#   deploy/helm/helm.sh --path          # only print the binary's path (building it if needed)
#
# Which helm: $HELM when set (any helm 3 binary), else <checkout>/.cache/helm/<version>/helm,
# built there from the Go module proxy with `go install helm.sh/helm/v3/cmd/helm@<version>`
# when missing (about 3 minutes on 2 cores with a cold module cache; .cache/ is gitignored).
# Needs Go (1.26 builds it). Concurrent callers share one build (flock).
set -euo pipefail

HELM_VERSION=${RTML_HELM_VERSION:-v3.21.4}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR="$ROOT/.cache/helm/$HELM_VERSION"
HELM_BIN="$BIN_DIR/helm"

build() {
    local go
    go=$(command -v go || true)
    [[ -n "$go" || ! -x /usr/local/go/bin/go ]] || go=/usr/local/go/bin/go
    if [[ -z "$go" ]]; then
        echo "helm.sh: helm $HELM_VERSION is not built and Go is not installed; install Go, or set HELM" >&2
        exit 127
    fi
    mkdir -p "$BIN_DIR"
    echo "helm.sh: building helm $HELM_VERSION into $BIN_DIR (go install, a few minutes)" >&2
    # -X sets what `helm version` prints (a plain go install reports only "v3.21").
    GOBIN="$BIN_DIR" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" "$go" install \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
}

ensure() {
    if [[ -n "${HELM:-}" ]]; then
        HELM_BIN=$HELM
        return
    fi
    [[ -x "$HELM_BIN" ]] && return
    mkdir -p "$BIN_DIR"
    exec 9>"$BIN_DIR/.lock"
    flock 9
    [[ -x "$HELM_BIN" ]] || build
    flock -u 9
}

ensure
if [[ "${1:-}" == "--path" ]]; then
    echo "$HELM_BIN"
    exit 0
fi
# Keep helm's own state (repositories, plugins, cache) out of the user's home directory.
export HELM_CACHE_HOME="${HELM_CACHE_HOME:-$ROOT/.cache/helm/home/cache}"
export HELM_CONFIG_HOME="${HELM_CONFIG_HOME:-$ROOT/.cache/helm/home/config}"
export HELM_DATA_HOME="${HELM_DATA_HOME:-$ROOT/.cache/helm/home/data}"
exec "$HELM_BIN" "$@"

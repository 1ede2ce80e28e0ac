#!/usr/bin/env bash
# Installs the Debian 12 packages Mamori needs to build, run and test.
# Idempotent: packages already present are skipped, and nothing is fetched
# when everything is there. Needs root (or sudo) only when something is missing.
set -euo pipefail

# Build + runtime (see docs/DESIGN.md §5 for why each one is here).
PKGS_BUILD=(
  build-essential cmake pkg-config
  libssl-dev openssl
  mosquitto mosquitto-dev libmosquitto-dev
  libsqlite3-dev sqlite3
  libpq-dev                    # the PostgreSQL store (--store postgresql://...)
  libmicrohttpd-dev libgnutls28-dev
  libjansson-dev libsodium-dev
  libcurl4-openssl-dev ca-certificates
  python3                      # make run reads endpoints.json with it
)
# Tests: unit framework, fuzzing/sanitizer runtime, TLS scanner, leak
# checker, and the real MQTT/HTTP clients the integration tests drive.
PKGS_TEST=(
  libcmocka-dev clang libclang-rt-14-dev llvm
  sslscan valgrind procps iproute2
  mosquitto-clients curl
  # the TPM 2.0 keystore: OpenSSL's tpm2 provider, a software TPM and the
  # resource manager a device has as /dev/tpmrm0
  tpm2-openssl swtpm tpm2-tools tpm2-abrmd libtss2-tcti-swtpm0 libtss2-tcti-tabrmd0 dbus
  # the update hook backend, driven against the real RAUC (bundles are
  # squashfs images, mounted over a loop device)
  rauc squashfs-tools
  # the PostgreSQL store: a server each test starts for itself (scripts/pg.sh)
  postgresql
  # systemd-analyze checks the unit files of dist/systemd/
  systemd
  # the load balancer in front of several broker nodes (TCP, TLS passed through)
  haproxy
)

want=("${PKGS_BUILD[@]}")
if [ "${1:-}" = "--test" ]; then
  want+=("${PKGS_TEST[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# PostgreSQL's package would create and start a system-wide cluster on port
# 5432; Mamori's tests and scripts run servers of their own (scripts/pg.sh)
if printf '%s\n' "${missing[@]}" | grep -qx postgresql && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  $SUDO mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
$SUDO apt-get update -qq
# (a configuration file already there, as the one above, is kept)
$SUDO apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"

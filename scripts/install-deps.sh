#!/usr/bin/env bash
# Installs what building and testing Tributary needs on Debian: ZooKeeper (with Java),
# kcat, openssl (the TLS tests make their certificates with it), headless Chromium with its driver (the console's browser test), Python with a
# virtualenv holding the real Kafka clients and Selenium, and a Rust toolchain.
# Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
[ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeper)
command -v java >/dev/null || need_apt+=(default-jre-headless)
command -v kcat >/dev/null || need_apt+=(kcat)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)  # validates docker/ without an engine
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v cc >/dev/null || need_apt+=(build-essential)
command -v curl >/dev/null || need_apt+=(curl ca-certificates)
command -v openssl >/dev/null || need_apt+=(openssl)
# Headers for the shared benchmark harness's kbench (../shared/bench/build.sh, scripts/kbench.sh).
[ -f /usr/include/librdkafka/rdkafka.h ] || need_apt+=(librdkafka-dev)
# The console's browser test: Debian's headless Chromium and its WebDriver.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import kafka, confluent_kafka, kazoo, pytest, pytest_timeout, yaml, selenium' 2>/dev/null; then
  echo "installing the Python test clients into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r integration-tests/requirements.txt
fi

#!/usr/bin/env bash
# Runs client libraries' own integration test suites against a local Tributary, as the
# libraries' maintainers run them against Apache Kafka (issue 18). Not part of .ci/run.
#
#   scripts/client-suites.sh [kafka-python] [confluent-kafka] [librdkafka]   (default: all)
#
# Each suite gets a fresh cluster (ZooKeeper, coordinator, one broker) with the broker
# settings the suite's own fixture gives Kafka (see the *_SETTINGS below), and runs in its
# own virtualenv with the library version its tests were written for:
#   kafka-python            test/integration of tag $KAFKA_PYTHON_VERSION (KAFKA_URI=...)
#   confluent-kafka-python  tests/integration of tag v$CONFLUENT_KAFKA_VERSION (BROKERS=...,
#                           its "bring your own cluster" fixture); schema registry tests left out
#   librdkafka              the named tests ($LIBRDKAFKA_TESTS) of the librdkafka that the
#                           rdkafka crate vendors, linked statically against it
# Sources are cloned from GitHub unless KAFKA_PYTHON_SRC / CONFLUENT_KAFKA_SRC name a
# checkout of the matching tag. Test files that start their own Kafka (kafka-python's SSL and
# SASL fixtures spawn Java brokers) cannot use an external cluster and are left out.
#
# PYTEST_ARGS (e.g. "-k alter_configs") narrows the two pytest suites.
#
# Output: client-suites/<suite>.log (pytest -v / test-runner output) and one summary line per
# suite; broker logs in client-suites/<suite>-cluster/. Exit status 0 even when tests fail:
# the point is the record, which goes into the README ("Client libraries' own test suites").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KAFKA_PYTHON_VERSION=${KAFKA_PYTHON_VERSION:-3.0.11}
CONFLUENT_KAFKA_VERSION=${CONFLUENT_KAFKA_VERSION:-2.15.0}
LIBRDKAFKA_TESTS=${LIBRDKAFKA_TESTS:-0089 0102}
CACHE=${CLIENT_SUITES_CACHE:-$HOME/.cache/tributary-client-suites}
OUT=${OUT:-$ROOT/client-suites}
PORT=${PORT:-19092}
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(kafka-python confluent-kafka librdkafka)

if [ -z "${TRIBUTARY_BIN:-}" ]; then
  scripts/install-deps.sh
  export PATH="$HOME/.cargo/bin:$PATH"
  cargo build --release --bins
  TRIBUTARY_BIN=$ROOT/target/release
fi
# shellcheck source=scripts/zookeeper.sh
. scripts/zookeeper.sh
mkdir -p "$CACHE" "$OUT"

# What each suite's fixture configures on Kafka (kafka-python: servers/resources/default/
# kafka.properties and its ACL switch; confluent-kafka-python: tests/common TestUtils.broker_conf;
# librdkafka: trivup's defaults; trivup also sets min.insync.replicas, which the
# IncrementalAlterConfigs test expects to see as a non-default topic value, and its admin
# tests create and delete ACLs, so the cluster runs an authorizer open to all as
# kafka-python's fixture does). Broker id 0 because kafka-python's tests name it. Left out of
# kafka-python's: offsets.commit.timeout.ms (not a Tributary setting) and the KRaft keys; of
# confluent-kafka-python's: offsets.topic.min.isr (not a Kafka setting either: Kafka warns and
# ignores it, Tributary refuses unknown keys in a --config file) and the share-group keys.
KAFKA_PYTHON_SETTINGS="num.partitions=4
default.replication.factor=1
replica.lag.time.max.ms=1000
offsets.topic.replication.factor=1
offsets.topic.num.partitions=2
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.min.session.timeout.ms=1000
group.initial.rebalance.delay.ms=0
authorizer.class.name=kafka.security.authorizer.AclAuthorizer
allow.everyone.if.no.acl.found=true"
CONFLUENT_KAFKA_SETTINGS="min.insync.replicas=1
authorizer.class.name=kafka.security.authorizer.AclAuthorizer
allow.everyone.if.no.acl.found=true
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
offsets.topic.replication.factor=1"
LIBRDKAFKA_SETTINGS="offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1"

pids=()
stop_cluster() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
trap stop_cluster EXIT INT TERM

# start_cluster NAME SETTINGS: a fresh ZooKeeper, coordinator and broker 0 on $PORT.
start_cluster() {
  local dir="$OUT/$1-cluster"
  rm -rf "$dir"
  mkdir -p "$dir"
  printf '%s\n' "$2" >"$dir/server.properties"
  start_zookeeper "$dir" $((PORT + 100)) || { kill "$ZOOKEEPER_PID" 2>/dev/null; return 1; }
  pids+=("$ZOOKEEPER_PID")
  TRIBUTARY_ZOOKEEPER_CONNECT=127.0.0.1:$((PORT + 100)) TRIBUTARY_HTTP_LISTEN=127.0.0.1:$((PORT + 200)) \
    "$TRIBUTARY_BIN/coordinator" >"$dir/coordinator.log" 2>&1 &
  pids+=($!)
  TRIBUTARY_ZOOKEEPER_CONNECT=127.0.0.1:$((PORT + 100)) TRIBUTARY_BROKER_ID=0 \
  TRIBUTARY_LISTENERS=PLAINTEXT://127.0.0.1:$PORT TRIBUTARY_DATA_DIR="$dir/broker-0" \
    "$TRIBUTARY_BIN/broker" --config "$dir/server.properties" >"$dir/broker-0.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$((PORT + 200))/brokers" 2>/dev/null | grep -q '"id"'; then return 0; fi
    sleep 0.5
  done
  echo "the cluster for $1 did not come up; see $dir" >&2
  return 1
}

# venv NAME PACKAGES...: a virtualenv in the cache with these packages.
venv() {
  local dir="$CACHE/venv-$1"
  shift
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  "$dir/bin/pip" install -q "$@"
  VENV=$dir
}

# source_tree NAME REPO TAG OVERRIDE: a checkout of REPO at TAG (or the OVERRIDE directory).
source_tree() {
  if [ -n "$4" ]; then SRC=$4; return; fi
  SRC="$CACHE/$1-$3"
  [ -d "$SRC" ] || git clone -q --depth 1 --branch "$3" "https://github.com/$2" "$SRC"
}

summary() {  # summary NAME LOG: the last pytest result line
  printf '%-16s %s\n' "$1" "$(grep -E '^=+ .*(passed|failed|error).* in ' "$2" | tail -1 | tr -d '=')"
}

run_kafka_python() {
  source_tree kafka-python dpkp/kafka-python "$KAFKA_PYTHON_VERSION" "${KAFKA_PYTHON_SRC:-}"
  venv kafka-python "kafka-python==$KAFKA_PYTHON_VERSION" pytest pytest-mock pytest-timeout python-snappy zstandard lz4
  start_cluster kafka-python "$KAFKA_PYTHON_SETTINGS"
  mkdir -p "$CACHE/kafka-root"
  # The fixture wants a Kafka install only to start one; with KAFKA_URI it starts none.
  (cd "$SRC" && KAFKA_VERSION=3.9.0 KAFKA_URI="PLAINTEXT://127.0.0.1:$PORT" KAFKA_ROOT="$CACHE/kafka-root" \
    "$VENV/bin/python" -m pytest -p no:cacheprovider -v -rfEs --tb=short -W ignore -o log_level=WARNING --timeout 120 \
      --ignore test/integration/test_ssl_integration.py --ignore test/integration/test_sasl_integration.py \
      ${PYTEST_ARGS:-} test/integration) >"$OUT/kafka-python.log" 2>&1 || true
  stop_cluster
  summary kafka-python "$OUT/kafka-python.log"
}

run_confluent_kafka() {
  source_tree confluent-kafka-python confluentinc/confluent-kafka-python "v$CONFLUENT_KAFKA_VERSION" "${CONFLUENT_KAFKA_SRC:-}"
  venv confluent-kafka "confluent-kafka[schemaregistry,avro,json,protobuf]==$CONFLUENT_KAFKA_VERSION" trivup \
    pytest pytest-timeout pytest-asyncio requests-mock respx attrs async-timeout
  start_cluster confluent-kafka "$CONFLUENT_KAFKA_SETTINGS"
  # The installed confluent_kafka, not the checkout's unbuilt src/ package.
  (cd "$SRC" && BROKERS="127.0.0.1:$PORT" "$VENV/bin/python" -m pytest -p no:cacheprovider -v -rfEs --tb=short -W ignore \
      --timeout 120 --ignore tests/integration/schema_registry ${PYTEST_ARGS:-} tests/integration) >"$OUT/confluent-kafka.log" 2>&1 || true
  stop_cluster
  summary confluent-kafka "$OUT/confluent-kafka.log"
}

run_librdkafka() {
  # The librdkafka the rdkafka crate built (configured source and static libraries).
  local built
  built=$(ls -d "$ROOT"/target/*/build/rdkafka-sys-*/out/src/librdkafka.a 2>/dev/null | head -1)
  [ -n "$built" ] || { echo "no librdkafka build under target/: run cargo build first" >&2; return 1; }
  local tree="$CACHE/librdkafka"
  if [ ! -x "$tree/tests/test-runner" ]; then
    rm -rf "$tree"
    cp -r "$(dirname "$(dirname "$built")")" "$tree"
    # Only the static libraries, so the test runner cannot pick up another librdkafka.
    rm -f "$tree"/src/librdkafka*.so* "$tree"/src-cpp/librdkafka++*.so*
    make -C "$tree/tests" -j2 test-runner >"$CACHE/librdkafka-build.log" 2>&1 ||
      { echo "building librdkafka's test runner failed; see $CACHE/librdkafka-build.log" >&2; return 1; }
  fi
  start_cluster librdkafka "$LIBRDKAFKA_SETTINGS"
  echo "bootstrap.servers=127.0.0.1:$PORT" >"$tree/tests/test.conf"
  : >"$OUT/librdkafka.log"
  local t
  for t in $LIBRDKAFKA_TESTS; do
    (cd "$tree/tests" && TEST_KAFKA_VERSION=3.9.0 TESTS=$t timeout 600 ./test-runner) 2>&1 |
      grep -v 'test(s) running' >>"$OUT/librdkafka.log" || true
  done
  stop_cluster
  printf '%-16s %s\n' librdkafka "$(grep -cE 'Test [0-9a-z_]+ PASSED' "$OUT/librdkafka.log") of $(echo $LIBRDKAFKA_TESTS | wc -w) tests passed ($LIBRDKAFKA_TESTS)"
}

for s in "${SUITES[@]}"; do
  case "$s" in
    kafka-python) run_kafka_python ;;
    confluent-kafka) run_confluent_kafka ;;
    librdkafka) run_librdkafka ;;
    *) echo "unknown suite $s (kafka-python, confluent-kafka, librdkafka)" >&2; exit 2 ;;
  esac
done
echo "logs: $OUT"

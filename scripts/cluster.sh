#!/usr/bin/env bash
# Starts a local Tributary cluster in the foreground: ZooKeeper on 2181, the coordinator
# (admin API on http://127.0.0.1:8080) and one broker on localhost:9092. Installs what it
# needs, builds a release build, keeps data in ./local-cluster, and stops everything on
# Ctrl-C. Environment variables use the same names as docker/docker-compose.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins
# shellcheck source=scripts/zookeeper.sh
. scripts/zookeeper.sh

DIR="${TRIBUTARY_LOCAL_DIR:-$PWD/local-cluster}"
ZK_PORT="${ZK_PORT:-2181}"

pids=()
stop() {
  trap - EXIT INT TERM
  echo "stopping the cluster"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
}
trap stop EXIT INT TERM

start_zookeeper "$DIR" "$ZK_PORT" || { kill "$ZOOKEEPER_PID" 2>/dev/null; exit 1; }
pids+=("$ZOOKEEPER_PID")

export TRIBUTARY_ZOOKEEPER_CONNECT="${TRIBUTARY_ZOOKEEPER_CONNECT:-127.0.0.1:$ZK_PORT}"
TRIBUTARY_HTTP_LISTEN="${TRIBUTARY_HTTP_LISTEN:-127.0.0.1:8080}" \
TRIBUTARY_REST_LISTEN="${TRIBUTARY_REST_LISTEN:-127.0.0.1:8082}" \
  target/release/coordinator >"$DIR/coordinator.log" 2>&1 &
pids+=($!)
TRIBUTARY_BROKER_ID="${TRIBUTARY_BROKER_ID:-1}" \
TRIBUTARY_LISTENERS="${TRIBUTARY_LISTENERS:-PLAINTEXT://127.0.0.1:9092}" \
TRIBUTARY_ADVERTISED_LISTENERS="${TRIBUTARY_ADVERTISED_LISTENERS:-PLAINTEXT://localhost:9092}" \
TRIBUTARY_DATA_DIR="${TRIBUTARY_DATA_DIR:-$DIR/broker-1}" \
TRIBUTARY_OFFSETS_TOPIC_REPLICATION_FACTOR="${TRIBUTARY_OFFSETS_TOPIC_REPLICATION_FACTOR:-1}" \
TRIBUTARY_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="${TRIBUTARY_TRANSACTION_STATE_LOG_REPLICATION_FACTOR:-1}" \
TRIBUTARY_TRANSACTION_STATE_LOG_MIN_ISR="${TRIBUTARY_TRANSACTION_STATE_LOG_MIN_ISR:-1}" \
TRIBUTARY_METRICS_LISTEN="${TRIBUTARY_METRICS_LISTEN:-127.0.0.1:9404}" \
  target/release/broker >"$DIR/broker-1.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 60); do
  if curl -sf http://127.0.0.1:8080/brokers 2>/dev/null | grep -q '"id"'; then break; fi
  sleep 0.5
done
cat <<MSG
Tributary is running:
  Kafka clients:  bootstrap.servers=localhost:9092
  Console:        http://127.0.0.1:8080/
  Admin API:      curl http://127.0.0.1:8080/topics
  REST Proxy API: http://127.0.0.1:8082 (the REST Proxy's paths, e.g. POST /topics/<topic>)
  Metrics:        http://127.0.0.1:9404/metrics (broker), http://127.0.0.1:8080/metrics (cluster, lag)
  ZooKeeper:      127.0.0.1:$ZK_PORT  (zkCli.sh -server 127.0.0.1:$ZK_PORT ls /brokers/ids)
  Logs and data:  $DIR
Press Ctrl-C to stop.
MSG
wait

#!/usr/bin/env bash
# Entrypoint of Tributary's image. With a command (`broker ...`, `coordinator ...`) it runs
# that alone. Without one it is a kafka container: the broker and a coordinator, configured
# by the environment a Kafka image is given (KAFKA_*, KAFKA_CFG_*; the binaries read those
# themselves), so that a tutorial's compose file works with only its image: line changed.
#
# - ZooKeeper mode (KAFKA_ZOOKEEPER_CONNECT or KAFKA_CFG_ZOOKEEPER_CONNECT): broker and
#   coordinator use that ensemble. Several kafka containers give several coordinators; one
#   is the active controller, the others stand by.
# - Single-node mode (KRaft variables, no ZooKeeper address): a ZooKeeper of its own
#   (Debian's package) on 127.0.0.1, its data in the data volume; KAFKA_NODE_ID is the
#   broker id and a valid CLUSTER_ID becomes /cluster/id.
# - Both: refused, naming the variables.
#
# SIGTERM stops the coordinator (an active one hands the controller role over at once),
# then the broker, then the embedded ZooKeeper: in a single node the controller is gone
# before the broker leaves, so it does not mark every partition offline on the way out. If any of
# them dies, the rest are stopped and the container exits with its status, so Docker's
# restart policy applies. Lines are prefixed with the process's name (text logs only).
#
# For tests on a machine without Docker: TRIBUTARY_BIN_DIR (where broker and coordinator
# are), TRIBUTARY_VOLUME_ROOT (prefix of the images' volume paths), and
# TRIBUTARY_EMBEDDED_ZOOKEEPER_PORT (default 2181).
set -uo pipefail

BIN=${TRIBUTARY_BIN_DIR:-/usr/local/bin}
ROOT=${TRIBUTARY_VOLUME_ROOT:-}
ZK_CLASSPATH=${TRIBUTARY_ZOOKEEPER_CLASSPATH:-/etc/zookeeper/conf:/usr/share/java/zookeeper.jar}
ZK_PORT=${TRIBUTARY_EMBEDDED_ZOOKEEPER_PORT:-2181}

say() { echo "entrypoint | $*" >&2; }
refuse() { echo "entrypoint | $*" >&2; exit 2; }

# The name of the first variable that is set and not empty.
first_set() {
    local v
    for v in "$@"; do
        if [[ -n "${!v:-}" ]]; then echo "$v"; return 0; fi
    done
    return 1
}

if [[ $# -gt 0 ]]; then
    case "$1" in
        broker | coordinator) exec "$BIN/$1" "${@:2}" ;;
        *) exec "$@" ;;
    esac
fi

# ---- which mode -------------------------------------------------------------------------
zk_var=$(first_set TRIBUTARY_ZOOKEEPER_CONNECT KAFKA_CFG_ZOOKEEPER_CONNECT KAFKA_ZOOKEEPER_CONNECT) || zk_var=""
kraft_vars=()
for v in KAFKA_PROCESS_ROLES KAFKA_CFG_PROCESS_ROLES KAFKA_CONTROLLER_QUORUM_VOTERS KAFKA_CFG_CONTROLLER_QUORUM_VOTERS; do
    if [[ -n "${!v:-}" ]]; then kraft_vars+=("$v"); fi
done
if [[ -n "$zk_var" && ${#kraft_vars[@]} -gt 0 ]]; then
    refuse "both $zk_var (ZooKeeper mode) and ${kraft_vars[*]} (KRaft) are set; keep $zk_var for a cluster on that ZooKeeper, or remove it to run this container as a single node"
fi
single_node=0
if [[ -z "$zk_var" ]]; then
    if [[ ${#kraft_vars[@]} -eq 0 && -z "${TRIBUTARY_CONFIG:-}" ]]; then
        refuse "no ZooKeeper address: set KAFKA_ZOOKEEPER_CONNECT (or KAFKA_CFG_ZOOKEEPER_CONNECT), or give KRaft variables (KAFKA_PROCESS_ROLES, KAFKA_CONTROLLER_QUORUM_VOTERS) to run a single node with its own ZooKeeper"
    fi
    if [[ ${#kraft_vars[@]} -gt 0 ]]; then
        single_node=1
        roles=${KAFKA_CFG_PROCESS_ROLES:-${KAFKA_PROCESS_ROLES:-broker,controller}}
        if [[ ",${roles// /}," != *,broker,* ]]; then
            refuse "KAFKA_PROCESS_ROLES=$roles has no broker role; a Tributary container always runs a broker"
        fi
        voters=${KAFKA_CFG_CONTROLLER_QUORUM_VOTERS:-${KAFKA_CONTROLLER_QUORUM_VOTERS:-}}
        IFS=',' read -r -a voter_list <<< "$voters"
        if [[ ${#voter_list[@]} -gt 1 ]]; then
            refuse "KAFKA_CONTROLLER_QUORUM_VOTERS names ${#voter_list[@]} voters; without a ZooKeeper address a container runs as one node. For several brokers, run a ZooKeeper ensemble and set KAFKA_ZOOKEEPER_CONNECT"
        fi
    fi
fi

# ---- data directory: the image's volume layout unless the environment names one ---------
bitnami=0
if compgen -v KAFKA_CFG_ > /dev/null || [[ -n "${ALLOW_PLAINTEXT_LISTENER:-}" ]]; then bitnami=1; fi
if data_var=$(first_set TRIBUTARY_DATA_DIR KAFKA_CFG_LOG_DIRS KAFKA_LOG_DIRS KAFKA_CFG_LOG_DIR KAFKA_LOG_DIR); then
    data_dir=${!data_var}
elif [[ -n "${TRIBUTARY_CONFIG:-}" ]]; then
    data_dir=""
elif (( bitnami )); then
    data_dir=$ROOT/bitnami/kafka/data
else
    data_dir=$ROOT/var/lib/kafka/data
fi
if [[ -n "$data_dir" ]]; then
    if [[ -z "${data_var:-}" ]]; then export TRIBUTARY_DATA_DIR=$data_dir; fi
    mkdir -p "$data_dir" || refuse "cannot create the data directory $data_dir; mount a volume the container's user can write"
fi

# Kafka's stock server.properties (which the bitnami image starts from) sets
# offsets.topic.replication.factor=1; a single node needs it too.
if ! first_set TRIBUTARY_OFFSETS_TOPIC_REPLICATION_FACTOR KAFKA_CFG_OFFSETS_TOPIC_REPLICATION_FACTOR KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR > /dev/null; then
    if (( bitnami || single_node )); then export TRIBUTARY_OFFSETS_TOPIC_REPLICATION_FACTOR=1; fi
fi
# ... and transaction.state.log.replication.factor=1, transaction.state.log.min.isr=1.
if ! first_set TRIBUTARY_TRANSACTION_STATE_LOG_REPLICATION_FACTOR KAFKA_CFG_TRANSACTION_STATE_LOG_REPLICATION_FACTOR KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR > /dev/null; then
    if (( bitnami || single_node )); then export TRIBUTARY_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1; fi
fi
if ! first_set TRIBUTARY_TRANSACTION_STATE_LOG_MIN_ISR KAFKA_CFG_TRANSACTION_STATE_LOG_MIN_ISR KAFKA_TRANSACTION_STATE_LOG_MIN_ISR > /dev/null; then
    if (( bitnami || single_node )); then export TRIBUTARY_TRANSACTION_STATE_LOG_MIN_ISR=1; fi
fi

# The coordinator's controller id is the broker's id, as a ZooKeeper-era Kafka broker's is.
if id_var=$(first_set TRIBUTARY_BROKER_ID KAFKA_CFG_BROKER_ID KAFKA_BROKER_ID KAFKA_CFG_NODE_ID KAFKA_NODE_ID); then
    export TRIBUTARY_CONTROLLER_ID=${TRIBUTARY_CONTROLLER_ID:-${!id_var}}
fi
export TRIBUTARY_HTTP_LISTEN=${TRIBUTARY_HTTP_LISTEN:-0.0.0.0:8080}

# ---- processes --------------------------------------------------------------------------
prefix() {
    if [[ "${TRIBUTARY_LOG_FORMAT:-text}" == json ]]; then cat; else sed -u "s/^/$1 | /"; fi
}

zk_pid=""
broker_pid=""
coordinator_pid=""
# Whatever way this script ends, nothing it started outlives it.
leftovers() {
    local pid
    for pid in $coordinator_pid $broker_pid $zk_pid; do
        kill -KILL "$pid" 2> /dev/null
    done
}
trap leftovers EXIT

zk_ok() {
    local reply=""
    { exec 3<> "/dev/tcp/127.0.0.1/$ZK_PORT"; } 2> /dev/null || return 1
    printf ruok >&3
    read -r -t 2 reply <&3
    exec 3<&-
    [[ "$reply" == imok ]]
}

if (( single_node )); then
    zk_dir=$data_dir/zookeeper
    mkdir -p "$zk_dir/data"
    cat > "$zk_dir/zoo.cfg" <<EOF
tickTime=500
dataDir=$zk_dir/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
minSessionTimeout=1000
maxSessionTimeout=60000
EOF
    say "single-node mode (${kraft_vars[*]} set, no ZooKeeper address): starting a ZooKeeper of its own on 127.0.0.1:$ZK_PORT, data in $zk_dir"
    ZOO_LOG_DIR=$zk_dir java -Xmx256m -cp "$ZK_CLASSPATH" org.apache.zookeeper.server.quorum.QuorumPeerMain "$zk_dir/zoo.cfg" \
        > >(prefix zookeeper) 2>&1 &
    zk_pid=$!
    for _ in $(seq 1 300); do
        if zk_ok; then break; fi
        if ! kill -0 "$zk_pid" 2> /dev/null; then refuse "the embedded ZooKeeper exited; see the lines above"; fi
        sleep 0.2
    done
    zk_ok || refuse "the embedded ZooKeeper did not answer within 60 s"
    export TRIBUTARY_ZOOKEEPER_CONNECT=127.0.0.1:$ZK_PORT
    if [[ -n "${CLUSTER_ID:-}" && -z "${TRIBUTARY_CLUSTER_ID:-}" ]]; then
        if [[ "$CLUSTER_ID" =~ ^[A-Za-z0-9_-]{22}$ ]]; then
            # The broker gives a new cluster this id (cluster.id); a restart keeps it.
            export TRIBUTARY_CLUSTER_ID=$CLUSTER_ID
        else
            say "CLUSTER_ID=$CLUSTER_ID is not a Kafka cluster id (22 characters of base64url); a new cluster gets a random id"
        fi
    fi
fi

"$BIN/coordinator" > >(prefix coordinator) 2>&1 &
coordinator_pid=$!
"$BIN/broker" > >(prefix broker) 2>&1 &
broker_pid=$!

stopping=0
trap 'stopping=1' TERM INT
alive() { kill -0 "$1" 2> /dev/null; }
status=0
while :; do
    wait -n "$broker_pid" "$coordinator_pid" ${zk_pid:+"$zk_pid"}
    rc=$?
    if (( stopping )); then
        say "stopping: the coordinator, then the broker${zk_pid:+, then ZooKeeper}"
        break
    fi
    for name in broker coordinator zk; do
        pid_var=${name}_pid
        pid=${!pid_var}
        if [[ -n "$pid" ]] && ! alive "$pid"; then
            say "the $name exited (status $rc); stopping the rest so that the container exits"
            status=$(( rc == 0 ? 1 : rc ))
            break 2
        fi
    done
done

stop() {
    local pid=$1
    if [[ -n "$pid" ]] && alive "$pid"; then
        kill -TERM "$pid" 2> /dev/null
        wait "$pid"
        return $?
    fi
    wait "$pid" 2> /dev/null
    return 0
}
stop "$coordinator_pid"
stop "$broker_pid"
broker_rc=$?
stop "$zk_pid"
if (( stopping && status == 0 )); then status=$broker_rc; fi
say "stopped (status $status)"
exit "$status"

# Sourced by scripts/cluster.sh and scripts/kbench.sh: one local ZooKeeper for a cluster on
# this machine, from Debian's package.
#
#   start_zookeeper DIR PORT   writes DIR/zoo.cfg, starts ZooKeeper in the background with
#                              its data in DIR/zookeeper and its log in DIR/zookeeper.log,
#                              waits until it answers ruok, and sets ZOOKEEPER_PID.
start_zookeeper() {
  local dir=$1 port=$2
  mkdir -p "$dir/zookeeper"
  cat > "$dir/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/zookeeper
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,srvr
CFG
  java -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >"$dir/zookeeper.log" 2>&1 &
  ZOOKEEPER_PID=$!
  for _ in $(seq 1 60); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port" && echo ruok >&3 && grep -q imok <&3) 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "ZooKeeper did not answer on 127.0.0.1:$port within 30 s; see $dir/zookeeper.log" >&2
  return 1
}

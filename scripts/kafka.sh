#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker+controller) on 127.0.0.1 for tests.
#
# Usage: scripts/kafka.sh start|stop|restart|status|run CLASS [ARGS...]
#   eval "$(scripts/kafka.sh start)"   # start (or reuse) it; stdout is only
#                                      #   export KAFKA_BROKERS=127.0.0.1:9092
#   scripts/kafka.sh stop              # stop it (by pid file) and wait for it to exit
#   scripts/kafka.sh restart           # stop and start again, keeping the data (topics, records)
#   scripts/kafka.sh status            # exit 0 if it runs and answers, 1 if not
#   scripts/kafka.sh run org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#                                      # any main class on the broker's class path (CLI tools)
#
# The broker comes from Maven Central through `mvn` only (scripts/kafka/pom.xml): the jars are
# copied once into the cache folder, so a later start takes seconds. Every `start` of a broker
# that is not running formats a fresh, empty log folder: nothing survives a stop.
#
# Settings (environment):
#   KAFKA_PORT            broker listener port (9092); the controller listens on KAFKA_PORT+1
#   KAFKA_CONTROLLER_PORT controller listener port (KAFKA_PORT+1)
#   WEIR_KAFKA_HOME       jar cache (~/.cache/weir/kafka-$KAFKA_VERSION)
#   WEIR_KAFKA_DATA       data folder: config, KRaft logs, kafka.log, kafka.pid
#                         (/tmp/weir-kafka-$UID, or /tmp/weir-kafka-$UID-$KAFKA_PORT off 9092)
#   WEIR_KAFKA_HEAP       broker heap (512m)
#   WEIR_KAFKA_WAIT       seconds to wait for the broker to answer (60)
set -euo pipefail

KAFKA_VERSION=4.4.0   # pinned: newest 4.x on Maven Central (same as scripts/kafka/pom.xml)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
POM=$SCRIPT_DIR/kafka/pom.xml
PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
CACHE=${WEIR_KAFKA_HOME:-$HOME/.cache/weir/kafka-$KAFKA_VERSION}
JARS=$CACHE/jars
if [[ $PORT == 9092 ]]; then DEFAULT_DATA=/tmp/weir-kafka-$UID; else DEFAULT_DATA=/tmp/weir-kafka-$UID-$PORT; fi
DATA=${WEIR_KAFKA_DATA:-$DEFAULT_DATA}
HEAP=${WEIR_KAFKA_HEAP:-512m}
WAIT=${WEIR_KAFKA_WAIT:-60}
CONF=$DATA/server.properties
LOGDIR=$DATA/kraft-logs
LOG=$DATA/kafka.log
PIDFILE=$DATA/kafka.pid
BROKERS=127.0.0.1:$PORT

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# java with the broker's class path; tools log warnings only, to stderr.
kjava() {
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -Dorg.slf4j.simpleLogger.logFile=System.err \
    -cp "$JARS/*" "$@"
}

# Copy the broker's runtime jars into $JARS once (skipped when they are there).
install_jars() {
  [[ -f $JARS/.complete && $(<"$JARS/.complete") == "$KAFKA_VERSION" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  local t0=$SECONDS tmp=$CACHE/jars.tmp
  mkdir -p "$CACHE"
  rm -rf "$tmp"
  cp "$POM" "$CACHE/pom.xml"
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $JARS"
  # (Maven 3.8 prints bare colour resets even with -B: strip them.)
  (cd "$CACHE" && mvn -q -B dependency:copy-dependencies -Dkafka.version="$KAFKA_VERSION" \
    -DincludeScope=runtime -DoutputDirectory="$tmp") 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "mvn did not produce kafka_2.13-$KAFKA_VERSION.jar"
  echo "$KAFKA_VERSION" >"$tmp/.complete"
  rm -rf "$JARS"
  mv "$tmp" "$JARS"
  log "installed $(find "$JARS" -name '*.jar' | wc -l) jars in $((SECONDS - t0))s"
}

# Pid from the pid file if that process is alive and is this data folder's broker.
running_pid() {
  local pid
  [[ -f $PIDFILE ]] && pid=$(<"$PIDFILE") && [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $CONF" || return 1
  echo "$pid"
}

# True if a Kafka broker answers an ApiVersions v0 request on the port with error_code 0.
# Request: size=10, api_key=18, api_version=0, correlation_id=0x57454952, client_id=null.
answers() {
  local out bytes
  out=$(timeout "${1:-2}" bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
    printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x57\x45\x49\x52\xff\xff" >&3
    head -c 10 <&3 | od -An -tx1' "$PORT" 2>/dev/null) || return 1
  # Response: size (4 bytes), correlation_id (echoed), error_code (0).
  read -r -a bytes <<<"$out"
  [[ ${#bytes[@]} -eq 10 && ${bytes[*]:4} == "57 45 49 52 00 00" ]]
}

port_in_use() { timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null; }

write_config() {
  cat >"$CONF" <<EOF
# Written by scripts/kafka.sh: single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$LOGDIR
num.partitions=1
auto.create.topics.enable=false
# A single replica for the internal topics (without the transaction.state.log ones
# init_transactions times out); few partitions so the first group/transaction is quick.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Abort timed-out transactions within ~1 s of their timeout (default: checked every 10 s).
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
# The broker and its controller are one process: when the machine stalls (2 busy cores,
# a test's SIGSTOP of up to 45 s) the controller would fence its own broker on resume
# (default 9 s), a churn a cluster of several nodes does not have (there, another broker
# takes over). Then the metadata lists no broker for a moment, and librdkafka 2.12 drops
# the only broker it knows; a producer was seen delivering nothing for minutes after it.
broker.session.timeout.ms=60000
num.network.threads=2
num.io.threads=4
EOF
}

# Stop a broker that failed to come up, so the next start begins clean.
kill_broker() {
  log "stopping the broker (pid $1)"
  kill -KILL "$1" 2>/dev/null || true
  while kill -0 "$1" 2>/dev/null; do sleep 0.1; done
  rm -f "$PIDFILE"
}

# Wait until the broker logged that it started and answers ApiVersions; then list topics
# through the admin client (the controller quorum and metadata are up).
wait_ready() {
  local pid=$1 deadline=$((SECONDS + WAIT))
  until grep -q 'Kafka Server started' "$LOG" 2>/dev/null && answers 1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the broker (pid $pid) exited; tail of $LOG:"
      tail -n 40 "$LOG" >&2
      rm -f "$PIDFILE"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "the broker did not answer on $BROKERS within ${WAIT}s; tail of $LOG:"
      tail -n 40 "$LOG" >&2
      kill_broker "$pid"
      exit 1
    fi
    sleep 0.2
  done
}

admin_check() {
  if ! timeout 30 java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$JARS/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKERS" --list >/dev/null; then
    log "the admin client could not list topics on $BROKERS; tail of $LOG:"
    tail -n 40 "$LOG" >&2
    kill_broker "$1"
    exit 1
  fi
}

# Start the broker on the data folder as it is (formatted) and wait until it answers.
launch() {
  local pid
  # setsid: not in the caller's process group, so a Ctrl-C there does not reach the broker.
  # Not a process group leader here, so setsid execs java in place and $! is java's pid.
  setsid java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=info -Dorg.slf4j.simpleLogger.logFile=System.out \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS" \
    -cp "$JARS/*" kafka.Kafka "$CONF" >>"$LOG" 2>&1 </dev/null 9>&- &
  pid=$!
  disown "$pid" # no "Killed" job notice if it has to be stopped
  echo "$pid" >"$PIDFILE"
  wait_ready "$pid"
  admin_check "$pid"
}

start() {
  local pid t0=$SECONDS
  mkdir -p "$(dirname "$DATA")"
  # One start/stop at a time per data folder.
  exec 9>"$DATA.lock"
  flock -w 120 9 || die "could not lock $DATA.lock"
  if pid=$(running_pid); then
    wait_ready "$pid"
    log "reusing the broker already running on $BROKERS (pid $pid, log $LOG)"
    echo "export KAFKA_BROKERS=$BROKERS"
    return 0
  fi
  [[ -f $PIDFILE ]] && log "removing stale pid file $PIDFILE"
  rm -f "$PIDFILE"
  port_in_use "$PORT" && die "127.0.0.1:$PORT is in use by a process this script did not start"
  port_in_use "$CONTROLLER_PORT" &&
    die "127.0.0.1:$CONTROLLER_PORT (controller) is in use by a process this script did not start"
  command -v java >/dev/null || die "java not found (Java 17+ is needed)"
  local java_major
  java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [[ ${java_major:-0} -ge 17 ]] || die "Java 17+ is needed (java -version says ${java_major:-unknown})"
  install_jars

  rm -rf "$DATA"
  mkdir -p "$LOGDIR"
  write_config
  # A cluster id is a base64url-encoded 16-byte UUID (what `StorageTool random-uuid` prints);
  # passed as --cluster-id=ID because one starting with "-" would read as an option.
  local cluster_id
  cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  kjava kafka.tools.StorageTool format --standalone --cluster-id="$cluster_id" -c "$CONF" >"$DATA/format.log" 2>&1 || {
    cat "$DATA/format.log" >&2
    die "formatting $LOGDIR failed"
  }
  launch
  log "started Apache Kafka $KAFKA_VERSION on $BROKERS (pid $pid, log $LOG) in $((SECONDS - t0))s"
  echo "export KAFKA_BROKERS=$BROKERS"
}

stop() {
  local pid
  mkdir -p "$(dirname "$DATA")"
  exec 9>"$DATA.lock"
  flock -w 120 9 || die "could not lock $DATA.lock"
  if ! pid=$(running_pid); then
    [[ -f $PIDFILE ]] && log "removing stale pid file $PIDFILE"
    rm -f "$PIDFILE"
    log "no broker running for $DATA"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "the broker (pid $pid) did not exit within 30s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  log "stopped the broker (pid $pid)"
}

# Stop the broker and start it again on the same data folder: topics, records, committed
# offsets and transactions survive (for tests of a broker restart).
restart() {
  local t0=$SECONDS
  [[ -f $CONF ]] || die "no broker data in $DATA to restart (start one first)"
  stop
  mv -f "$LOG" "$LOG.before-restart" # wait_ready looks for this start's line
  launch
  log "restarted Apache Kafka $KAFKA_VERSION on $BROKERS in $((SECONDS - t0))s"
  echo "export KAFKA_BROKERS=$BROKERS"
}

status() {
  local pid
  if pid=$(running_pid); then
    if answers 2; then
      log "running: pid $pid on $BROKERS (log $LOG)"
      return 0
    fi
    log "pid $pid is alive but does not answer on $BROKERS (log $LOG)"
    return 1
  fi
  log "not running"
  return 1
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  status) status ;;
  run)
    shift
    [[ $# -ge 1 ]] || die "usage: $0 run CLASS [ARGS...]"
    install_jars
    kjava "$@"
    ;;
  *) die "usage: $0 start|stop|restart|status|run CLASS [ARGS...]" ;;
esac

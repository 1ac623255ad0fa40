#!/usr/bin/env bash
# Local S3-compatible server (moto) on 127.0.0.1 for tests and local use.
# Usage: scripts/s3-server.sh [start|stop|env]      (start is the default)
#   eval "$(scripts/s3-server.sh start)"   # start (or reuse) it and export the client env
# Settings: WEIR_S3_PORT (9000), WEIR_S3_BUCKET (weir-test), WEIR_S3_LOG (/tmp/weir-s3.log),
#           WEIR_S3_VENV (~/.cache/weir/moto-venv). Only stdout of start/env is the export lines.
set -euo pipefail

MOTO_VERSION=5.2.5   # pinned: newest moto on PyPI, works with CPython 3.11
PORT=${WEIR_S3_PORT:-9000}
BUCKET=${WEIR_S3_BUCKET:-weir-test}
VENV=${WEIR_S3_VENV:-$HOME/.cache/weir/moto-venv}
LOG=${WEIR_S3_LOG:-/tmp/weir-s3.log}
PIDFILE=/tmp/weir-s3-$PORT.pid
URL=http://127.0.0.1:$PORT

log() { echo "s3-server: $*" >&2; }

print_env() {
  cat <<EOF
export AWS_ENDPOINT=$URL
export AWS_ALLOW_HTTP=true
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_BUCKET=$BUCKET
export WEIR_S3_URL=s3://$BUCKET
EOF
}

# True if anything answers HTTP on the port (any status code counts).
answers() { curl -s --noproxy '*' -o /dev/null --max-time "${1:-2}" "$URL/"; }

# Pid from the pid file, if that process is alive and is a moto_server.
running_pid() {
  local pid
  [[ -f $PIDFILE ]] && pid=$(<"$PIDFILE") && [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server && echo "$pid"
}

# Create/upgrade the venv only when moto_server is missing or not the pinned version.
install_moto() {
  local have=""
  [[ -x $VENV/bin/moto_server ]] && have=$("$VENV/bin/python" -c \
    'from importlib.metadata import version; print(version("moto"))' 2>/dev/null || true)
  [[ $have == "$MOTO_VERSION" ]] && return 0
  local t0=$SECONDS
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  log "installed moto[server]==$MOTO_VERSION into $VENV in $((SECONDS - t0))s"
}

start() {
  if answers; then
    log "reusing the server already answering on $URL"
  else
    install_moto
    : >"$LOG"
    nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >>"$LOG" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    # Wait at most 30 s for it to answer; give up early if it dies.
    local deadline=$((SECONDS + 30))
    until answers 1; do
      if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
        log "moto_server did not come up on $URL; tail of $LOG:"
        tail -n 20 "$LOG" >&2
        kill "$pid" 2>/dev/null || true
        rm -f "$PIDFILE"
        exit 1
      fi
      sleep 0.2
    done
    log "started moto_server $MOTO_VERSION on $URL (pid $pid, log $LOG)"
  fi
  # Create the bucket; 409 (already exists/owned) is fine.
  local code
  code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 10 -X PUT "$URL/$BUCKET" || true)
  case $code in
    200 | 409) log "bucket $BUCKET ready (HTTP $code)" ;;
    *) log "creating bucket $BUCKET failed (HTTP ${code:-none})"; exit 1 ;;
  esac
  print_env
}

stop() {
  local pid
  if pid=$(running_pid); then
    kill "$pid"
    for _ in {1..25}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "stopped moto_server (pid $pid)"
  else
    log "no moto_server running from $PIDFILE"
  fi
  rm -f "$PIDFILE"
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  *) echo "usage: $0 [start|stop|env]" >&2; exit 2 ;;
esac

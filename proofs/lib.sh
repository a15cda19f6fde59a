# proofs/lib.sh: what every proof script shares (sourced, not run). Processes the script starts
# are recorded and stopped on exit; the database it makes is dropped on exit; every listener is on
# 127.0.0.1. Settings (environment): PROOF_PG (default postgres://postgres@127.0.0.1:5432),
# PROOF_SKIP_BUILD=1 (use the binaries already in CARGO_TARGET_DIR/debug), PROOF_KEEP=1 (keep
# the run directory and the database, for a look afterwards), PROOF_LONG=1 (each proof's long
# run, the one the README's figures come from, unless its own settings say otherwise).

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hexbroker/target}
PG=${PROOF_PG:-postgres://postgres@127.0.0.1:5432}
[[ $PG =~ ^postgres(ql)?://[^@/]+@(127\.0\.0\.1|localhost)(:[0-9]+)?$ ]] \
  || { echo "PROOF_PG must be postgres://USER@127.0.0.1[:PORT]" >&2; exit 2; }
PG_HOSTPORT=${PG##*@}
PG_HOST=${PG_HOSTPORT%%:*}
PG_PORT=5432
[[ $PG_HOSTPORT == *:* ]] && PG_PORT=${PG_HOSTPORT##*:}
PG_USER=${PG#*://}
PG_USER=${PG_USER%%@*}

short_or_long() { # short long: the first, or the second under PROOF_LONG
  if [[ -n ${PROOF_LONG:-} ]]; then echo "$2"; else echo "$1"; fi
}

log() { printf '[proof %s %s] %s\n' "$PROOF" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

RUN=$(mktemp -d "${TMPDIR:-/tmp}/hexbroker-proof.XXXXXX")
chmod 711 "$RUN"
PIDS=()
DB=
PRIVATE_PG=

stop_pid() { # pid [signal]: the signal (TERM), up to 10 s, then KILL; only pids this script started
  local pid=$1 i
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

forget_pid() { # pid: no longer stopped on exit (it ended, and was waited for)
  local kept=() p
  for p in "${PIDS[@]}"; do
    [[ $p == "$1" ]] || kept+=("$p")
  done
  PIDS=("${kept[@]}")
}

cleanup() {
  local status=$? i
  trap - EXIT INT TERM
  # A copy: stop_pid edits PIDS as it goes.
  local all=("${PIDS[@]}")
  for ((i = ${#all[@]} - 1; i >= 0; i--)); do
    [[ -z ${all[i]} ]] || stop_pid "${all[i]}"
  done
  if [[ -n ${PROOF_KEEP:-} ]]; then
    [[ -z $PRIVATE_PG ]] || private_postgres stop || true
    log "kept: run directory $RUN, database ${DB:-none}"
  else
    [[ -z $DB ]] || psql_db -d postgres -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
    [[ -z $PRIVATE_PG ]] || private_postgres stop || true
    rm -rf "$RUN"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM

start() { # name command...: in the background, output in $RUN/NAME.log; sets STARTED
  local name=$1
  shift
  "$@" >"$RUN/$name.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

PICKED=" "
free_port() { # VAR: a loopback port nothing answers on, not picked before
  local port i
  for ((i = 0; i < 200; i++)); do
    # Below Linux's ephemeral range (32768 and up), where a client socket's local port could
    # take it between this check and the bind.
    port=$((20000 + RANDOM % 12000))
    [[ $PICKED == *" $port "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      PICKED+="$port "
      printf -v "$1" '%s' "$port"
      return 0
    fi
  done
  die "no free port on 127.0.0.1"
}

wait_http() { # url pid name [status]: bounded (60 s) wait until url answers (with status, if given)
  local url=$1 pid=$2 name=$3 want=${4:-} i got
  for ((i = 0; i < 600; i++)); do
    got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
    [[ $got != 000 && (-z $want || $got == "$want") ]] && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$RUN/$name.log" >&2 || true; die "$name exited"; }
    sleep 0.1
  done
  tail -n 20 "$RUN/$name.log" >&2 || true
  die "$name did not answer ${want:-} on $url"
}

psql_db() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"; }

need_tools() { # command:package ...: installs what is missing with apt-get
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || [[ -x /usr/sbin/${pair%%:*} ]] || need+=("${pair#*:}")
  done
  ((${#need[@]})) || return 0
  log "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >"$RUN/apt.log" 2>&1 \
    || { apt-get update -q >>"$RUN/apt.log" 2>&1 && apt-get install -y -q "${need[@]}" >>"$RUN/apt.log" 2>&1; } \
    || { tail -n 20 "$RUN/apt.log" >&2; die "apt-get install ${need[*]} failed"; }
}

# A private Postgres cluster, for proofs that stop the database: initdb and pg_ctl as user
# `postgres`, data in $RUN/pg, on a free loopback port, no Unix socket. The shared server is never
# touched. `private_postgres init` creates and starts it and points PG (and psql_db) at it;
# `stop` (fast: running sessions are cut, as in a crash of the network or a failover) and `start`
# take it away and bring it back; cleanup stops it.
private_postgres() { # init | start | stop
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -x $bin/pg_ctl ]] || die "no pg_ctl under /usr/lib/postgresql/*/bin"
  local as=(runuser -u postgres --)
  [[ $(id -un) == postgres ]] && as=()
  case $1 in
    init)
      free_port PRIVATE_PG_PORT
      mkdir -p "$RUN/pg"
      chown postgres "$RUN/pg" 2>/dev/null || true
      "${as[@]}" "$bin/initdb" -D "$RUN/pg/data" -U postgres -A trust >"$RUN/initdb.log" 2>&1 \
        || { tail "$RUN/initdb.log" >&2; die "initdb failed"; }
      PRIVATE_PG=$RUN/pg/data
      PG=postgres://postgres@127.0.0.1:$PRIVATE_PG_PORT PG_HOST=127.0.0.1 PG_PORT=$PRIVATE_PG_PORT PG_USER=postgres
      private_postgres start
      ;;
    start)
      "${as[@]}" "$bin/pg_ctl" -D "$PRIVATE_PG" -l "$RUN/pg/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $PRIVATE_PG_PORT -c unix_socket_directories='' -c fsync=off" \
        start >/dev/null || { tail "$RUN/pg/server.log" >&2; die "the private Postgres did not start"; }
      ;;
    stop) "${as[@]}" "$bin/pg_ctl" -D "$PRIVATE_PG" -m fast -w -t 30 stop >/dev/null ;;
  esac
}

# A webhook receiver on 127.0.0.1: appends each delivery's body (one line) to $RUN/received.jsonl
# and answers 200, or 503 while $RUN/receiver.closed exists; RECEIVER_DELAY (seconds) makes it
# slow. Sets RECEIVER_URL.
start_receiver() {
  free_port RECEIVER_PORT
  start receiver python3 -c '
import http.server, os, sys, time, threading
port, out, closed, delay = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        time.sleep(delay)
        status = 503 if os.path.exists(closed) else 200
        if status == 200:
            with lock, open(out, "ab") as f:
                f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
' "$RECEIVER_PORT" "$RUN/received.jsonl" "$RUN/receiver.closed" "${RECEIVER_DELAY:-0}"
  touch "$RUN/received.jsonl"
  wait_http "http://127.0.0.1:$RECEIVER_PORT/" "$STARTED" receiver 200
  RECEIVER_URL=http://127.0.0.1:$RECEIVER_PORT/hook
}

# Connects each token of FILE ($RUN/tokens.txt) through hexbroker at URL with API_KEY; sets IDS
# and ID_LIST.
connect_tokens() { # url [file]
  local token answer id
  IDS=()
  while read -r token; do
    answer=$(curl -s --max-time 30 "$1/v1/connect" -H "Authorization: Bearer $API_KEY" \
      -H 'content-type: application/json' \
      -d "{\"subdomain\":\"demo\",\"token\":\"$token\",\"end_user_id\":\"proof-${#IDS[@]}\"}")
    id=$(jq -r '.id // empty' <<<"$answer")
    [[ -n $id ]] || die "connect failed: $answer"
    IDS+=("$id")
  done <"${2:-$RUN/tokens.txt}"
  ID_LIST=$(IFS=,; echo "${IDS[*]}")
}

fresh_database() { # sets DB and DATABASE_URL
  DB=hexbroker_proof_${PROOF//-/_}_$$
  psql_db -d postgres -c "create database $DB" >/dev/null
  DATABASE_URL=$PG/$DB
}

build() { # the debug binaries (what `cargo test` builds anyway) and the proof helper
  if [[ -z ${PROOF_SKIP_BUILD:-} ]]; then
    log "cargo build (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build -q -p hexbroker -p fake-hex --bins --example proof_tokens) >"$RUN/build.log" 2>&1 \
      || { tail -n 30 "$RUN/build.log" >&2; die "build failed"; }
  fi
  HEXBROKER=$CARGO_TARGET_DIR/debug/hexbroker
  FAKE_HEX=$CARGO_TARGET_DIR/debug/fake-hex
  PROOF_TOKENS=$CARGO_TARGET_DIR/debug/examples/proof_tokens
  [[ -x $HEXBROKER && -x $FAKE_HEX && -x $PROOF_TOKENS ]] || die "binaries missing in $CARGO_TARGET_DIR/debug"
}

key_entry() { # id: a fresh HEXBROKER_ENCRYPTION_KEYS entry with that id
  local generated
  generated=$("$HEXBROKER" encryption-key generate)
  echo "$1:${generated#*:}"
}

# Sets HB to `env` with the proof's hexbroker environment and the given keys: an external command,
# so that `start NAME "${HB[@]}" ...` records the pid of the program itself (env execs it), and a
# signal sent to that pid reaches it, not a subshell around it.
hb_env() { # keys
  HB=(env "HEXBROKER_DATABASE_URL=$DATABASE_URL" "HEXBROKER_ENCRYPTION_KEYS=$1" "HEXBROKER_HEX_URL=$HEX_URL"
    "HEXBROKER_LOG=${HEXBROKER_LOG:-warn}")
}

# Runs a hexbroker command (in the foreground) with the proof's environment and the given keys.
hb() { # keys command...
  hb_env "$1"
  shift
  "${HB[@]}" "$@"
}

summary() { # requests failed faults lost: the one line every proof ends with
  echo "proof $PROOF: requests $1, failed $2, faults survived $3, data lost $4"
}

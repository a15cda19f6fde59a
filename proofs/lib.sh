# proofs/lib.sh: what every proof script shares (sourced, not run). Processes the script starts
# are recorded and stopped on exit; the database it makes is dropped on exit; every listener is on
# 127.0.0.1. Settings (environment): PROOF_PG (default postgres://postgres@127.0.0.1:5432),
# PROOF_SKIP_BUILD=1 (use the binaries already in CARGO_TARGET_DIR/debug), PROOF_KEEP=1 (keep
# the run directory and the database, for a look afterwards).

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

log() { printf '[proof %s %s] %s\n' "$PROOF" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

RUN=$(mktemp -d "${TMPDIR:-/tmp}/hexbroker-proof.XXXXXX")
chmod 711 "$RUN"
PIDS=()
DB=

stop_pid() { # pid [signal]: the signal (TERM), up to 10 s, then KILL; only pids this script started
  local pid=$1 i
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${PIDS[@]}"; do
    [[ $p == "$pid" ]] || kept+=("$p")
  done
  PIDS=("${kept[@]}")
}

cleanup() {
  local status=$? i
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${PIDS[i]}"
  done
  if [[ -n ${PROOF_KEEP:-} ]]; then
    log "kept: run directory $RUN, database ${DB:-none}"
  else
    [[ -z $DB ]] || psql_db -d postgres -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
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
    port=$((20000 + RANDOM % 40000))
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

fresh_database() { # sets DB and DATABASE_URL
  DB=hexbroker_proof_${PROOF//-/_}_$$
  psql_db -d postgres -c "create database $DB" >/dev/null
  DATABASE_URL=$PG/$DB
}

build() { # the debug binaries (what `cargo test` builds anyway) and the proof helper
  if [[ -z ${PROOF_SKIP_BUILD:-} ]]; then
    log "cargo build (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build -q -p hexbroker -p fake-hex --example proof_tokens) >"$RUN/build.log" 2>&1 \
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

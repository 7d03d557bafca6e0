#!/usr/bin/env bash
# A call between two `duet` processes on 127.0.0.1, through a `duet serve` of its own on a
# temporary database: bob answers (`duet answer --auto --json`), alice calls him for
# CALL_SECONDS (10), and both reports are printed as one JSON object {"alice": ..., "bob": ...},
# in the loopback report's shape. Arguments go to both sides, e.g.
#
#   scripts/call.sh --impair loss=5%,jitter=30ms,seed=1
#
# DUET names the binary (target/release/duet); STATS=FILE writes alice's getStats-shaped
# lines to FILE (see the README's "Stats files and plots").
set -euo pipefail

DUET=${DUET:-target/release/duet}
CALL_SECONDS=${CALL_SECONDS:-10}
[ -x "$DUET" ] || { echo "call.sh: no $DUET; run cargo build --release -p duet first" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

db="$dir/duet.db"
alice_token=$("$DUET" user add alice --db "$db")
bob_token=$("$DUET" user add bob --db "$db")
"$DUET" serve --listen 127.0.0.1:0 --db "$db" 2>"$dir/serve.log" &
pids+=($!)
wait_for() { # FILE TEXT
    for _ in $(seq 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "call.sh: no \"$2\" in $1:" >&2
    cat "$1" >&2
    exit 1
}
wait_for "$dir/serve.log" "signaling on"
url=$(grep -o 'ws://[^ ]*' "$dir/serve.log" | head -n 1)

as() { # USER TOKEN ARGS...
    local user=$1 token=$2
    shift 2
    DUET_SERVER=$url DUET_USER=$user DUET_TOKEN=$token DUET_CONFIG="$dir/none.json" "$DUET" "$@"
}
as alice "$alice_token" contact add bob >/dev/null
as bob "$bob_token" contact accept alice >/dev/null

as bob "$bob_token" answer --auto --json "$@" >"$dir/bob.json" 2>"$dir/bob.log" &
bob=$!
pids+=("$bob")
wait_for "$dir/bob.log" "waiting for a call"
stats=()
[ -n "${STATS:-}" ] && stats=(--stats "$STATS")
as alice "$alice_token" call bob --seconds "$CALL_SECONDS" --json "${stats[@]}" "$@" \
    >"$dir/alice.json" 2>"$dir/alice.log" || { cat "$dir/alice.log" >&2; exit 1; }
wait "$bob" || { cat "$dir/bob.log" >&2; exit 1; }
printf '{"alice":%s,"bob":%s}\n' "$(cat "$dir/alice.json")" "$(cat "$dir/bob.json")"

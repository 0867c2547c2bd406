#!/usr/bin/env bash
# A scripted chat on loopback: a server on a free port, two clients driven through pipes,
# one admin line. Prints what each side saw, then stops everything it started. The server's key
# and the clients' known-servers file live in the demo's temporary directory: nothing under $HOME
# is read or written.
#   bash tools/demo.sh            (builds the release binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin chat-server --bin chat-client
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The server's console is a FIFO we write admin lines into.
mkfifo "$work/console"
"$bin/chat-server" --bind 127.0.0.1:0 --key "$work/server.key" --db "$work/history.db" --history-on-join 0 <"$work/console" >"$work/console.out" 2>"$work/server.log" &
pids+=($!)
exec 3>"$work/console"
for _ in $(seq 50); do
    grep -q '^listening on ' "$work/server.log" 2>/dev/null && break
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$work/server.log" | head -n1)
[ -n "$addr" ] || { echo "demo: the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }
echo "server listening on $addr"

# bob stays a little longer than alice, so he sees her leave.
{ sleep 0.5; echo "hi alice, bob here"; sleep 1.5; echo "/who"; sleep 1; } |
    "$bin/chat-client" --server "$addr" --known-servers "$work/known_servers" --name bob >"$work/bob.out" 2>&1 &
pids+=($!)
sleep 0.2
{ sleep 0.8; echo "hello everyone"; echo "/msg bob psst"; sleep 0.5; } |
    "$bin/chat-client" --server "$addr" --known-servers "$work/known_servers" --name alice >"$work/alice.out" 2>&1 &
pids+=($!)
sleep 1
echo "the server restarts at 15:00" >&3
sleep 2.5
exec 3>&-

for who in alice bob; do
    echo "--- what $who saw"
    cat "$work/$who.out"
done
echo "--- the server's log"
cat "$work/server.log"
echo "--- the server's console replies"
cat "$work/console.out"

# Sourced by the benchmarks (after ROOT and log() are set): what several of them need.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The median of numbers on stdin, one per line; nothing for no input.
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# rotate REP ITEMS...: the items rotated by REP (cases alternate between repetitions).
rotate() {
  local k=$1 i; shift; local a=("$@") n=$#
  for ((i = 0; i < n; i++)); do echo "${a[$(((i + k) % n))]}"; done
}

# find_peer: nginx-lua-prometheus, unmodified, from ../shared/peers (BENCH_PEER_DIR):
# sets PEERDIR (a Lua path entry), PEER (true/false) and PEER_REV (its commit). When it
# is absent the benchmark says so and leaves the peer's column out.
find_peer() {
  PEERDIR=${BENCH_PEER_DIR:-$ROOT/../shared/peers/nginx-lua-prometheus}
  if [ -f "$PEERDIR/prometheus.lua" ]; then
    PEERDIR=$(cd "$PEERDIR" && pwd); PEER=true
    PEER_REV=$(sed -n 's/.*commit \([0-9a-f]\{40\}\).*/\1/p' "$PEERDIR/SOURCE.md" | sed -n 1p)
  else
    log "the peer is not at $PEERDIR: its column is left out"
    PEERDIR=$ROOT/bench; PEER=false; PEER_REV=""
  fi
}

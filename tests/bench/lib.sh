# Shared by the benchmark scripts (sourced, not run): fresh clusters on loopback, and the
# CPU their brokers use. Each script gives its own `port_base`, so two scripts never
# fight over ports: node I listens for Kafka on port_base+I, for gRPC on port_base+20+I
# and for the admin API on port_base+40+I. Started nodes are recorded in `pids`.

pids=()

kafka_port() { echo $((port_base + $1)); }
rpc_port() { echo $((port_base + 20 + $1)); }
admin_port() { echo $((port_base + 40 + $1)); }

# start_nodes BIN N DATA LOGS: N fresh voters, node I's data in DATA/I (emptied first) and
# its output appended to LOGS/node-I.log; returns once every one is ready.
start_nodes() {
    local bin="$1" n="$2" data="$3" logs="$4" voters="" i deadline
    for i in $(seq 1 "$n"); do voters="$voters${voters:+,}$i@127.0.0.1:$(rpc_port "$i")"; done
    rm -rf "$data"
    mkdir -p "$logs"
    for i in $(seq 1 "$n"); do
        "$bin" serve --node-id "$i" --voters "$voters" --data-dir "$data/$i" \
            --listeners "PLAINTEXT://127.0.0.1:$(kafka_port "$i")" \
            --rpc-listener "127.0.0.1:$(rpc_port "$i")" \
            --admin-listener "127.0.0.1:$(admin_port "$i")" >>"$logs/node-$i.log" 2>&1 &
        pids+=("$!")
    done
    for i in $(seq 1 "$n"); do
        deadline=$((SECONDS + 60))
        until curl -fs "http://127.0.0.1:$(admin_port "$i")/readyz" >/dev/null; do
            if [ "$SECONDS" -ge "$deadline" ]; then echo "node $i not ready" >&2; exit 1; fi
            sleep 0.2 # polling readiness with a deadline
        done
    done
}

stop_nodes() {
    local p
    for p in "${pids[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    pids=()
}

# cpu_ticks: CPU time (user + system, in clock ticks) the running nodes have used so far.
# After the command name, utime and stime are the 12th and 13th fields.
cpu_ticks() {
    local total=0 p
    for p in "${pids[@]:-}"; do
        [ -n "$p" ] && total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}

# sample_memory FILE: appends "unix-seconds Dirty-KiB Writeback-KiB" of the whole machine
# to FILE every 0.2 s until killed, so a latency spike can be laid against writeback.
sample_memory() {
    while :; do
        awk -v t="$(date +%s.%N)" '/^Dirty:/ {d = $2} /^Writeback:/ {w = $2}
            END {print t, d, w}' /proc/meminfo >>"$1"
        sleep 0.2 # a sampling period, not a synchronisation
    done
}

# settle_memory: on a VM with free page reporting (tests/bench/vm_memory.sh), waits until
# the memory freed by the previous run (a deleted topic's page cache) has been handed
# back to the host, at most 60 s: the host takes it in 2-second passes, and a run started
# meanwhile shares the cores with them. Elsewhere it returns at once.
settle_memory() {
    local file=/sys/module/page_reporting/parameters/reported_kib last now quiet=0
    [ -r "$file" ] || return 0
    local deadline=$((SECONDS + 60))
    last="$(cat "$file")"
    while [ "$quiet" -lt 2 ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 2.5 # one reporting pass, polling with a deadline
        now="$(cat "$file")"
        if [ "$now" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; fi
        last="$now"
    done
}

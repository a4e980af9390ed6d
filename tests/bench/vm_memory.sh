#!/usr/bin/env bash
# This VM's free page reporting, which the benchmark figures depend on (issue 34): the
# guest hands every free 2 MiB block back to the host within about 2 s, and the next
# write that lands on it (a new page-cache page, most often) waits for the host to
# back it again. See docs/benchmarks.md, "What this machine's memory does to every figure".
#   tests/bench/vm_memory.sh            prints the state and how much was handed back
#   tests/bench/vm_memory.sh off [GIB]  stops the reporting (as root) and touches GIB
#                                       (default 20) of free memory, so it is backed again
#   tests/bench/vm_memory.sh on [ORDER] reporting again, of blocks of 2^ORDER pages
#                                       (default 9, this machine's setting at boot)
# Only for measuring: it changes a kernel setting of the whole machine until `on`.
set -euo pipefail
params=/sys/module/page_reporting/parameters
if [ ! -d "$params" ]; then
    echo "no free page reporting on this kernel: benchmark figures are not affected"
    exit 0
fi
case "${1:-show}" in
show)
    echo "page_reporting_order $(cat "$params/page_reporting_order") (off when above 10)," \
        "handed back so far: $(($(cat "$params/reported_kib") / 1024 / 1024)) GiB"
    ;;
off)
    echo 11 >"$params/page_reporting_order"
    fill="${TMPDIR:-/dev/shm}/vm-memory-fill"
    # tmpfs pages are written, so every page is faulted in, then freed at once.
    dd if=/dev/zero of="$fill" bs=1M count=$((${2:-20} * 1024)) status=none
    rm -f "$fill"
    "$0" show
    ;;
on)
    echo "${2:-9}" >"$params/page_reporting_order"
    "$0" show
    ;;
*)
    echo "usage: $0 [show | off [GIB] | on [ORDER]]" >&2
    exit 2
    ;;
esac

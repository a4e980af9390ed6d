"""tests/bench/latency.sh's table: every round, then the medians per build; with a
markdown path, also written there between the latency markers.
   latency_report.py RESULTS.jsonl SECONDS HEAD_REV BASE_REV [MARKDOWN]"""
import datetime
import json
import os
import re
import statistics
import sys

results, seconds, head_rev, base_rev = sys.argv[1:5]
markdown = sys.argv[5] if len(sys.argv) > 5 else None
rows = [json.loads(l) for l in open(results) if l.strip()]
# The p99 of each one-second progress window, for the median second: a run's p99 over
# the whole run is set by its worst seconds, which on shared cores are when something
# else ran.
WINDOW = re.compile(r"ack p50 [\d.]+ ms p99 ([\d.]+) ms")
for r in rows:
    path = os.path.join(os.path.dirname(results), f"half-{r['build']}-{r['round']}.progress")
    p99s = [float(m.group(1)) for m in map(WINDOW.search, open(path)) if m]
    r["p99_second"] = statistics.median(p99s) if p99s else float("nan")
builds = [b for b in ("base", "head") if any(r["build"] == b for r in rows)]
rev = {"base": base_rev, "head": head_rev}
rounds = max(r["round"] for r in rows)


def line(build, label, r):
    return (f"| {build} `{rev[build]}` | {label} | {r['peak']:,.0f} | {r['records_per_sec']:,.0f} "
            f"| {r['p50']:.1f} | {r['p99']:.1f} | **{r.get('steady_p99', float('nan')):.1f}** "
            f"| {r['p99_9']:.1f} | {r['p99_second']:.1f} "
            f"| {r['broker_cores']:.2f} | {r['client_cores']:.2f} "
            f"| {r.get('stall_seconds', 0):.0f} | {r.get('writeback_mib', 0):.0f} |")


table = [
    "| build | round | peak records/s | half-rate records/s | p50 ms | p99 ms "
    "| p99 after the first 2 s, ms | p99.9 ms "
    "| p99 of the median second, ms | broker CPU (3 nodes), cores | client CPU, cores "
    "| seconds with an ack over 50 ms | peak Writeback, MiB |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
medians = {}
for b in builds:
    mine = sorted((r for r in rows if r["build"] == b), key=lambda r: r["round"])
    for r in mine:
        table.append(line(b, str(r["round"]), r))
    med = {k: statistics.median(r[k] for r in mine)
           for k in ("peak", "records_per_sec", "p50", "p99", "steady_p99", "p99_9", "p99_second",
                     "broker_cores",
                     "client_cores", "stall_seconds", "writeback_mib")
           if all(k in r for r in mine)}
    medians[b] = med
    table.append(line(b, "**median**", med))
errors = sum(r["errors"] for r in rows)

text = [
    "<!-- latency:start -->",
    f"Measured with `tests/bench/latency.sh {seconds} {rounds}"
    + (f" {base_rev}`" if "base" in builds else "`")
    + f" on {datetime.date.today().isoformat()}: three release nodes on loopback, a topic "
    "of 6 partitions with RF 3 and min.insync.replicas=2, 1 KiB records, acks=all, two "
    "producer threads of `fjord bench produce` (librdkafka, linger.ms=5). Each round starts "
    f"a fresh cluster, measures its peak for {seconds} s, deletes that topic and syncs, then "
    f"produces to a new topic at half the peak for {seconds} s (`--throughput`, which paces "
    "each thread with sleeps). Latency is from the send to the delivery report. CPU is the "
    "half-rate run's, in cores: the three brokers together (utime + stime from "
    "/proc/PID/stat) and the client (the shell's `time`), over the client's wall time. "
    "The client also prints the p99 of every second; the median of those shows a typical "
    "second, while the run's p99 is set by its worst ones. The first 2 s of records "
    "(`--warmup-records`) are the warm-up: the run's p99 counts them, the steady-state p99 "
    "beside it does not. Dirty and Writeback (the whole "
    "machine's, /proc/meminfo) are sampled every 0.2 s during the half-rate run. On a VM "
    "with free page reporting, each run starts once the memory freed before it has been "
    "handed back to the host (`settle_memory` in tests/bench/lib.sh)."
    + (f" The brokers' data is under {os.environ['DATA_ROOT']}."
       if os.environ.get("DATA_ROOT") else "")
    + (" The base's and the head's brokers alternate round by round; the client is the "
       "head's in both." if "base" in builds else "")
    + " The client and the three brokers share the machine's two cores, with other "
    "builds running at times, so figures are noisy: compare medians.",
    "",
    *table,
    "",
    f"Delivery errors over all runs: {errors}.",
    "<!-- latency:end -->",
]
out = "\n".join(text)
print(out)
if markdown:
    doc = open(markdown).read()
    if "<!-- latency:start -->" in doc:
        doc = re.sub(r"<!-- latency:start -->.*<!-- latency:end -->", lambda _: out, doc,
                     flags=re.S)
    else:
        doc = doc.rstrip("\n") + (
            "\n\n## Latency at half the three-node peak (issue 34, item 3)\n\n" + out + "\n")
    open(markdown, "w").write(doc)

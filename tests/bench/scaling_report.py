"""Turns the scaling bench's JSON lines into docs/scaling.md and a throughput plot."""
import datetime
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

source, seconds, markdown, png = sys.argv[1:5]
rows = [json.loads(line) for line in open(source) if line.startswith("{")]
nodes = [r["nodes"] for r in rows]

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(nodes, [r["produce_mb_per_sec"] for r in rows], marker="o", label="produce (acks=1)")
ax.plot(nodes, [r["consume_mb_per_sec"] for r in rows], marker="s", label="consume")
ax.set_xlabel("nodes (one 2-core machine)")
ax.set_ylabel("MB/s")
ax.set_xticks(nodes)
ax.set_ylim(bottom=0)
ax.set_title("Fixed workload as the cluster grows (balanced after each step)")
ax.legend()
fig.tight_layout()
fig.savefig(png, dpi=100)

lines = [
    "# Scaling experiment",
    "",
    f"Measured on {datetime.date.today().isoformat()} with `tests/bench/scaling.sh {seconds}` on the",
    "2-core test machine: every node and the client run on the same two cores, on loopback.",
    "One librdkafka producer writes 1 KiB records round-robin over 15 partitions (RF 1,",
    f"acks=1) for {seconds} s, then one consumer reads them back. The cluster starts with one",
    "node; two nodes join (as learners) and `fjord cluster balance --execute --wait` moves",
    "partitions and preferred leaders onto them, then two more.",
    "",
    "On two cores the absolute figures are bounded by the CPU, not by the cluster: every",
    "node and the client share the same two cores, so once both are busy more nodes add",
    "little (3 to 5 nodes here). One node does less than three because a single broker",
    "process and a single client connection carry all the work; spread over three",
    "brokers, librdkafka pipelines to each in parallel. On separate machines each node",
    "brings its own cores and disk. The experiment also shows that the load spreads: each",
    "node's share of the produced bytes (`fjord_produced_bytes_total`) after balancing,",
    "and the max/min ratio across nodes (target at most 1.3).",
    "",
    f"![throughput per cluster size]({os.path.basename(png)})",
    "",
    "| nodes | produce MB/s | consume MB/s | produced MB per node | max/min |",
    "|---|---|---|---|---|",
]
for r in rows:
    per_node = ", ".join(
        f"{k}: {v / 1e6:.0f}" for k, v in sorted(r["bytes_in_per_node"].items(), key=lambda kv: int(kv[0]))
    )
    lines.append(
        f"| {r['nodes']} | {r['produce_mb_per_sec']:.1f} | {r['consume_mb_per_sec']:.1f} | {per_node} | {r['max_min_ratio']:.2f} |"
    )
lines.append("")
open(markdown, "w").write("\n".join(lines))

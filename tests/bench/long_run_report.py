"""tests/bench/long_run.sh's plot and summary: throughput per second from the client's
progress lines, with Dirty, Writeback and the node's RSS from the samples, over time.
   long_run_report.py OUT_DIR PNG [MARKDOWN]"""
import datetime
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

source, png = sys.argv[1:3]
markdown = sys.argv[3] if len(sys.argv) > 3 else None
run = json.load(open(os.path.join(source, "run.json")))
summary = json.loads(open(os.path.join(source, "summary.out")).read().splitlines()[-1])
t0 = run["started"]
disk = json.load(open(os.path.join(source, "baseline.json")))["disk_write_mb_per_sec"]
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20

# "<epoch> produce   12.0 s:   551234 records/s   538.32 MB/s ..."
PROGRESS = re.compile(r"^([\d.]+) \w+\s+([\d.]+) s:\s+([\d.]+) records/s\s+([\d.]+) MB/s")
points = []  # (seconds since start, MB/s over the second before, records/s)
for line in open(os.path.join(source, "progress.txt")):
    m = PROGRESS.match(line)
    if m:
        points.append((float(m.group(1)) - t0, float(m.group(4)), float(m.group(3))))

samples = []  # (seconds, rss MiB, dirty MiB, writeback MiB, bg threshold MiB, threshold MiB)
cpu = []  # (seconds, node cores, machine busy cores) over the second before
prev = None
for line in open(os.path.join(source, "samples.txt")).read().splitlines()[1:]:
    f = line.split()
    if len(f) == 8:
        t, rss, dirty, wb, bg, th, node, busy = map(float, f)
        samples.append((t - t0, rss / 1024, dirty / 1024, wb / 1024, bg * PAGE_MIB,
                        th * PAGE_MIB))
        if prev and node > 0:
            dt = (t - prev[0]) * run["clk_tck"]
            cpu.append((t - t0, (node - prev[1]) / dt, (busy - prev[2]) / dt))
        prev = (t, node, busy) if node > 0 else None

end = run["ended"] - t0
drained = run["drained"] - t0

# Each progress line covers about one second; the last one may be shorter.
first = [p[1] for p in points if p[0] <= 10.5]
rest = [p[1] for p in points[len(first):]]
windows = [sum(p[1] for p in points[i:i + 10]) / 10 for i in range(len(points) - 9)]
worst = min(range(len(windows)), key=windows.__getitem__) if windows else None
mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
peak_dirty = max(s[2] for s in samples)
peak_wb = max(s[3] for s in samples)
bg = max(s[4] for s in samples)
th = max(s[5] for s in samples)
cores = sum(map(float, run["client_time"].split()[1:])) / float(run["client_time"].split()[0])

fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 8), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 2, 3]})
top.plot([p[0] for p in points], [p[1] for p in points], marker=".", label="produce MB/s")
top.axhline(summary["mb_per_sec"], color="grey", linestyle="--",
            label=f"average {summary['mb_per_sec']:.0f} MB/s")
top.axhline(disk, color="black", linestyle=":",
            label=f"disk: sequential write until fsync, {disk:.0f} MB/s")
top.set_ylabel("MB/s (MiB, per second)")
top.set_ylim(bottom=0)
top.legend(fontsize=8, loc="lower left")
top.set_title(f"{run['gb']} GiB of 1 KiB records, acks=1, one node, 6 partitions "
              f"({run['rev']}, {datetime.date.today().isoformat()})", fontsize=9)
middle.plot([c[0] for c in cpu], [c[2] for c in cpu], label="machine, busy (all processes)")
middle.plot([c[0] for c in cpu], [c[1] for c in cpu], label="node")
middle.axhline(os.cpu_count(), color="grey", linestyle=":", label=f"{os.cpu_count()} cores")
middle.set_ylabel("CPU, cores")
middle.set_ylim(0, os.cpu_count() * 1.1)
middle.legend(fontsize=7, loc="lower left")
ts = [s[0] for s in samples]
bottom.plot(ts, [s[2] for s in samples], label="Dirty")
bottom.plot(ts, [s[3] for s in samples], label="Writeback")
bottom.plot(ts, [s[1] for s in samples], label="node RSS")
bottom.plot(ts, [s[4] for s in samples], color="grey", linestyle=":",
            label="dirty_background threshold")
bottom.plot(ts, [s[5] for s in samples], color="black", linestyle=":",
            label="dirty (throttling) threshold")
bottom.set_ylabel("MiB (log scale)")
bottom.set_yscale("log")
bottom.set_xlabel("seconds since the producer started")
bottom.set_ylim(bottom=1)
bottom.legend(fontsize=7, loc="center left")
for ax in (top, middle, bottom):
    ax.axvline(end, color="red", linewidth=0.8)
bottom.text(end, bottom.get_ylim()[1] * 0.8, "producer done ", color="red", fontsize=7,
            va="top", ha="right")
fig.tight_layout()
os.makedirs(os.path.dirname(png), exist_ok=True)
fig.savefig(png, dpi=90)

rel_png = os.path.relpath(png, os.path.dirname(markdown) if markdown else ".")
lines = [
    "<!-- long-run:start -->",
    f"Measured with `tests/bench/long_run.sh {run['gb']}` on "
    f"{datetime.date.today().isoformat()} (`{run['rev']}`): {run['records']:,} records of "
    f"1 KiB ({run['gb']} GiB) produced into one release node, 6 partitions, acks=1, two "
    "producer threads of `fjord bench produce`, starting after a `sync`. Throughput is the "
    "client's per-second progress line; Dirty and Writeback come from /proc/meminfo and the "
    "kernel's thresholds from /proc/vmstat, sampled every second (they are the whole "
    "machine's: other writers show there too). After the run every file of the node is "
    "fsynced, timed. The client and the broker share the machine's two cores, and other "
    "sessions built and benchmarked on it meanwhile.",
    "",
    f"![throughput, Dirty and Writeback over time]({rel_png})",
    "",
    "| measure | value |",
    "|---|---:|",
    f"| first 10 s, MB/s | {mean(first):,.0f} |",
    f"| after the first 10 s ({len(rest)} s), MB/s | {mean(rest):,.0f} |",
]
if worst is not None:
    lines.append(f"| slowest 10 s window (from {points[worst][0] - 1:.0f} s), MB/s | "
                 f"{windows[worst]:,.0f} |")
lines += [
    f"| disk alone: sequential write until fsync (`fjord bench baseline`), MB/s | {disk:,.0f} |",
    f"| whole run: {summary['seconds']:.1f} s, MB/s | {summary['mb_per_sec']:,.0f} "
    f"({summary['records_per_sec']:,.0f} records/s) |",
    f"| ack latency p50 / p99 / max, ms | {summary['latency_ms']['p50']:.1f} / "
    f"{summary['latency_ms']['p99']:.1f} / {summary['latency_ms']['max']:.1f} |",
    f"| peak Dirty / Writeback, MiB | {peak_dirty:,.0f} / {peak_wb:,.0f} |",
    f"| kernel thresholds: background / throttling, MiB | {bg:,.0f} / {th:,.0f} |",
    f"| fsync of all the node's files after the producer finished, s | "
    f"{run['drained'] - run['sync_started']:.1f} |",
    f"| node peak RSS, MiB | {run['peak_rss_kib'] / 1024:.0f} |",
    f"| client CPU, cores | {cores:.2f} |",
    f"| node CPU / machine busy, median second, cores | "
    f"{sorted(c[1] for c in cpu)[len(cpu) // 2]:.2f} / "
    f"{sorted(c[2] for c in cpu)[len(cpu) // 2]:.2f} |",
    "<!-- long-run:end -->",
]
text = "\n".join(lines)
print(text)
if markdown:
    doc = open(markdown).read()
    if "<!-- long-run:start -->" in doc:
        doc = re.sub(r"<!-- long-run:start -->.*<!-- long-run:end -->", lambda _: text, doc,
                     flags=re.S)
    else:
        doc = doc.rstrip("\n") + (
            "\n\n## A long produce run: page cache and writeback (issue 34, item 5)\n\n"
            + text + "\n")
    open(markdown, "w").write(doc)

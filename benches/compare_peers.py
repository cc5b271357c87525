#!/usr/bin/env python3
"""Runs db_bench for Strata and its peers in one go and writes the comparison table.

Build first (RocksDB compiles from source, about 18 minutes on 2 cores; it needs
libclang: `apt-get install libclang-dev`):

    cargo build --release -p strata-bench --features peers --bin db_bench

then:

    python3 benches/compare_peers.py --out docs/benchmarks.md

Every engine runs the same db_bench invocation (same flags, same harness); the raw
output of each run is kept in --logs. The markdown goes between the markers
`<!-- peers-table:begin -->` and `<!-- peers-table:end -->` of --out (appended with
the markers when they are missing), or to stdout with --out=-.
"""

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys

MAIN_SUITE = "fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom"
LINE = re.compile(r"^(?P<name>\w+)\s*:\s*(?P<micros>[\d.]+) micros/op (?P<ops>\d+) ops/sec")
MBS = re.compile(r";\s*([\d.]+) MB/s")
P99 = re.compile(r"P99: ([\d.]+)")
STATS = re.compile(r"write_amp=(\S+) space_amp=(\S+)")
RECOVER = re.compile(r"^recover\s*:.*open_ms=([\d.]+).*missing=(\d+)")


def run(binary, engine, flags, logs, label):
    """Runs db_bench once; returns {benchmark: {ops, mbs, p99, wamp, samp}}."""
    cmd = [binary, f"--engine={engine}", "--histogram=1", "--stats=1"] + flags
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    with open(os.path.join(logs, f"{label}-{engine}.log"), "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + proc.stderr + proc.stdout)
    if proc.returncode != 0:
        print(f"  {engine} failed ({proc.returncode}): {proc.stderr[-500:]}", file=sys.stderr)
        return {}
    results, current = {}, None
    for line in proc.stdout.splitlines():
        m = RECOVER.match(line)
        if m:
            current = results.setdefault("recover", {})
            current.update(open_ms=float(m.group(1)), missing=int(m.group(2)))
            continue
        m = LINE.match(line)
        if m:
            current = results.setdefault(m.group("name"), {})
            mbs = MBS.search(line)
            current.update(ops=int(m.group("ops")), mbs=mbs.group(1) if mbs else None)
            continue
        if current is None:
            continue
        if line.startswith("Percentiles:"):
            m = P99.search(line)
            current["p99"] = float(m.group(1)) if m else None
        elif line.startswith("Stats:"):
            m = STATS.search(line)
            if m:
                current.update(wamp=m.group(1), samp=m.group(2))
    return results


def fmt(v, spec="{:,}"):
    return "-" if v is None else spec.format(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/db_bench")
    ap.add_argument("--engines", default="strata,rocksdb,fjall,sled,sqlite")
    ap.add_argument("--num", type=int, default=1_000_000)
    ap.add_argument("--value_size", type=int, default=100)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--sync_threads", type=int, default=16)
    ap.add_argument("--big", type=int, default=0,
                    help="also fillrandom,readrandom at this --num (strata, rocksdb, fjall)")
    ap.add_argument("--logs", default="target/peers-logs")
    ap.add_argument("--out", default="-")
    args = ap.parse_args()
    os.makedirs(args.logs, exist_ok=True)
    engines = args.engines.split(",")
    common = [f"--num={args.num}", f"--value_size={args.value_size}"]

    rows = []  # (benchmark, threads, engine, result)
    for threads in [int(t) for t in args.threads.split(",")]:
        for engine in engines:
            res = run(args.bin, engine,
                      common + [f"--benchmarks={MAIN_SUITE}", f"--threads={threads}"],
                      args.logs, f"main-t{threads}")
            for bench in MAIN_SUITE.split(","):
                rows.append((bench, threads, engine, res.get(bench)))
    for engine in engines:
        res = run(args.bin, engine,
                  common + ["--benchmarks=fillsync", f"--threads={args.sync_threads}"],
                  args.logs, f"fillsync-t{args.sync_threads}")
        rows.append(("fillsync", args.sync_threads, engine, res.get("fillsync")))
    recover = {}
    for engine in engines:
        res = run(args.bin, engine, common + ["--benchmarks=recover"], args.logs, "recover")
        recover[engine] = res.get("recover")
    big_rows = []
    if args.big:
        for engine in [e for e in engines if e in ("strata", "rocksdb", "fjall")]:
            res = run(args.bin, engine,
                      [f"--num={args.big}", f"--reads={min(args.big, 1_000_000)}",
                       f"--value_size={args.value_size}",
                       "--benchmarks=fillrandom,readrandom"],
                      args.logs, f"big-{args.big}")
            for bench in ("fillrandom", "readrandom"):
                big_rows.append((bench, 1, engine, res.get(bench)))

    out = []
    date = datetime.date.today().isoformat()
    cpu = platform.processor() or platform.machine()
    out.append(f"Run on {date}, {os.cpu_count()} CPUs ({cpu}), with "
               f"`python3 benches/compare_peers.py --num={args.num} --threads={args.threads}"
               f"{f' --big={args.big}' if args.big else ''}`; raw output in `{args.logs}/`.\n")

    def summary(table_rows, title):
        out.append(f"\n{title}\n")
        out.append("| benchmark | threads | strata ops/s | best peer | peer ops/s | strata ÷ best | strata P99 µs | best peer P99 µs |")
        out.append("|---|---|---|---|---|---|---|---|")
        keys = []
        for bench, threads, _, _ in table_rows:
            if (bench, threads) not in keys:
                keys.append((bench, threads))
        for bench, threads in keys:
            by_engine = {e: r for b, t, e, r in table_rows if (b, t) == (bench, threads) and r}
            mine = by_engine.get("strata")
            peers = {e: r for e, r in by_engine.items() if e != "strata"}
            if not peers:
                continue
            best = max(peers, key=lambda e: peers[e]["ops"])
            best_p99 = min((r.get("p99") for r in peers.values() if r.get("p99") is not None), default=None)
            ratio = f"{mine['ops'] / peers[best]['ops']:.2f}×" if mine else "-"
            out.append(f"| {bench} | {threads} | {fmt(mine and mine['ops'])} | {best} | "
                       f"{fmt(peers[best]['ops'])} | {ratio} | {fmt(mine and mine.get('p99'), '{:.1f}')} | "
                       f"{fmt(best_p99, '{:.1f}')} |")

    def detail(table_rows, title):
        out.append(f"\n{title}\n")
        out.append("| benchmark | threads | engine | ops/s | MB/s | P99 µs | write amp | space amp |")
        out.append("|---|---|---|---|---|---|---|---|")
        for bench, threads, engine, r in table_rows:
            if not r:
                out.append(f"| {bench} | {threads} | {engine} | failed | | | | |")
                continue
            out.append(f"| {bench} | {threads} | {engine} | {fmt(r['ops'])} | {r.get('mbs') or '-'} | "
                       f"{fmt(r.get('p99'), '{:.1f}')} | {r.get('wamp', '-')} | {r.get('samp', '-')} |")

    summary(rows, f"Summary (`--num={args.num} --value_size={args.value_size}`):")
    out.append("\n`recover` (a child writes `--num` entries and is SIGKILLed; time to reopen):\n")
    out.append("| engine | open ms | missing |")
    out.append("|---|---|---|")
    for engine in engines:
        r = recover.get(engine)
        out.append(f"| {engine} | {fmt(r and r['open_ms'], '{:.1f}')} | {fmt(r and r['missing'])} |")
    if big_rows:
        summary(big_rows, f"Large (`--num={args.big} --reads={min(args.big, 1_000_000)}`):")
    detail(rows + big_rows, "Every engine and benchmark:")
    text = "\n".join(out) + "\n"

    if args.out == "-":
        print(text)
        return
    begin, end = "<!-- peers-table:begin -->", "<!-- peers-table:end -->"
    doc = open(args.out).read() if os.path.exists(args.out) else ""
    block = f"{begin}\n{text}{end}"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    with open(args.out, "w") as f:
        f.write(doc)
    print(f"wrote the table into {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

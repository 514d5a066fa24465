#!/usr/bin/env python3
"""Side by side: the same module and message through the reference loader and through ao-cu, in one run.

Per-message time: each side runs the set-up messages (boot, and a Grow with --grow) followed by N
measured messages and reports the evaluation time of the N alone (inside `handle`: `ao-cu eval --timing
--time-from K`, `tests/oracle/run.cjs --time-from K`), so start-up, compilation, the set-up messages and
I/O are left out on both sides. Between two timed messages neither side does more than write the result
line (the reference driver's memory hash is off: `--memory-hash none`; hashing ~100 MB there evicted the
caches before every timed reference message). The sides run in `--repeat` interleaved rounds (ao-cu, then
each reference mode) and each row gives the median with the spread; ratios are of medians (these
machines are shared and noisy). Outputs must be identical, or the harness exits. Reference modes: `hot` (one instance, no memory copies:
the loader's fast path) and `cu` (the reference CU's way: memory passed in and out for every message).

Default: the Lua test process built from source (tests/modules/build.sh), message `Action=Eval`.
It installs what it needs when missing: the reference loader (npm ci in tests/oracle, pinned), the Lua
test process (tests/modules/build.sh) and the release ao-cu.
Any module: --module PATH --format FORMAT (e.g. aos 2, locally; never committed).
How cost grows: --grow 0,64,256 (MiB the Lua test process grows its memory by first) and --data-kb 1,64,512
(message size) give one table per combination.

    python3 bench/side_by_side.py [--module M --format F] [-n 200] [--repeat 5] [--modes hot,cu] [--grow L] [--data-kb L]
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PID = "KzXTVvxEXQVVE1zx0T5N2TxZPG_ncoG6fjqyiIRKu_c"
OWNER = "vh-NTHVvlKZqRxc8LyyTNok65yQ55a_PJ1zWLb9G2JI"
MODULE_ID = "ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s"


def message(i, data, tags):
    return {"Id": PID if i == 0 else ("M%05d" % i + "x" * 43)[:43], "Signature": "sig", "Data": data,
            "Owner": OWNER, "Target": PID, "Anchor": "0" * 32, "From": OWNER, "Tags": tags, "Epoch": 0,
            "Nonce": i, "Timestamp": 1700000000000 + i, "Block-Height": 1393008 + i, "Hash-Chain": "hc",
            "Cron": False, "Read-Only": False}


def logs(n, code, grow_mb=0):
    """The short log (boot, then a Grow of `grow_mb` MiB if any) and the full one (the same + n Evals)."""
    ptags = [{"name": "Type", "value": "Process"}, {"name": "Module", "value": MODULE_ID},
             {"name": "Name", "value": "bench"}]
    env = {"Process": {"Id": PID, "Owner": OWNER, "Tags": ptags},
           "Module": {"Id": MODULE_ID, "Owner": OWNER, "Tags": []}}
    prefix = [{"msg": message(0, "", ptags), "env": env}]
    if grow_mb:
        tags = [{"name": "Action", "value": "Grow"}, {"name": "MB", "value": str(grow_mb)}]
        prefix.append({"msg": message(1, "", tags), "env": env})
    first = len(prefix)
    evals = [{"msg": message(i, code, [{"name": "Action", "value": "Eval"}]), "env": env}
             for i in range(first, first + n)]
    return prefix, prefix + evals


def measure(args, grow_mb, data_kb):
    """Per-message time of each side for one memory size and message size: [(side, seconds)]."""
    code = args.code
    if data_kb:
        # A Lua comment pads the message's Data to about `data_kb` KiB (parsed, otherwise inert).
        code = code + "\n--" + "a" * max(0, data_kb * 1024 - len(code) - 3)
    short, full = logs(args.n, code, grow_mb)
    tmp = tempfile.mkdtemp()
    paths = []
    for name, lines in (("short", short), ("full", full)):
        p = os.path.join(tmp, name + ".jsonl")
        with open(p, "w") as f:
            f.write("\n".join(json.dumps(l) for l in lines) + "\n")
        paths.append(p)

    def run_once(cmd, side):
        # Each side times the measured messages itself (`--time-from`: evaluation inside `handle`, without
        # start-up, set-up messages or I/O), so a Grow of hundreds of MiB in the set-up, whose time varies
        # by seconds, cannot swamp the figure.
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{run.stderr[-2000:]}")
        m = re.search(r"evaluation from message \d+: ([0-9.]+) ms", run.stderr)
        if not m:
            sys.exit(f"no timing from {side}:\n{run.stderr[-2000:]}")
        return float(m.group(1)) / 1000 / args.n, run.stdout.splitlines()

    cache = os.path.join(tmp, "cache")
    # Neither side does anything between two timed messages but write the result line: the reference
    # driver hashes no memory (`--memory-hash none`) and ao-cu adds no MemoryHash.
    sides = [("ao-cu (hot instance, Cranelift AOT)",
              [args.ao_cu, "eval", "--module", args.module, "--format", args.format, "--messages", paths[1],
               "--cache-dir", cache, "--timing", "--time-from", str(len(short))])]
    for mode in args.modes.split(","):
        sides.append((f"reference ao-loader 0.0.49, mode {mode}",
                      ["node", os.path.join(REPO, "tests/oracle/run.cjs"), "--module", args.module,
                       "--format", args.format, "--mode", mode, "--messages", paths[1],
                       "--time-from", str(len(short)), "--memory-hash", "none"]))
    # The AOT cache is filled outside the measured rounds, so no round pays for Cranelift.
    run_once(sides[0][1], sides[0][0])
    # Interleaved rounds (ao-cu, then each reference mode, `repeat` times): a burst of load from the
    # shared machine falls on both sides alike instead of on one side's whole series.
    times = {name: [] for name, _ in sides}
    outputs = {}
    for _ in range(args.repeat):
        for name, cmd in sides:
            t, out = run_once(cmd, name)
            times[name].append(t)
            outputs[name] = [json.loads(l).get("Output") for l in out]
    ours_name = sides[0][0]
    for name, _ in sides[1:]:
        same = outputs[name] == outputs[ours_name]
        print(f"outputs identical to the reference ({name}): {same}", file=sys.stderr)
        if not same:
            sys.exit(f"outputs differ from {name} at memory +{grow_mb} MiB, data {data_kb} KiB")
    rows = [(name, times[name]) for name, _ in sides]
    for name, ts in rows:
        print(f"  {name}: {' '.join(f'{t * 1000:.3f}' for t in ts)} ms/message", file=sys.stderr)
    return rows


def ensure_installed(args):
    """Installs what the harness needs when it is missing: the reference loader (pinned in
    tests/oracle/package-lock.json), the Lua test process built from source, and the release ao-cu."""
    oracle = os.path.join(REPO, "tests/oracle")
    if not os.path.isdir(os.path.join(oracle, "node_modules", "@permaweb", "ao-loader")):
        print("installing the reference loader (npm ci in tests/oracle)", file=sys.stderr)
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=oracle, check=True)
    default_module = os.path.join(REPO, "tests/modules/build/lua-process.wasm")
    if args.module == default_module and not os.path.isfile(default_module):
        print("building the Lua test process (tests/modules/build.sh)", file=sys.stderr)
        subprocess.run(["bash", os.path.join(REPO, "tests/modules/build.sh")], cwd=REPO, check=True)
    if args.ao_cu == os.path.join(REPO, "target/release/ao-cu") and not os.path.isfile(args.ao_cu):
        print("building ao-cu (cargo build --release -p ao-cu)", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-p", "ao-cu"], cwd=REPO, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", default=os.path.join(REPO, "tests/modules/build/lua-process.wasm"))
    ap.add_argument("--format", default="wasm32-unknown-emscripten2")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5, help="interleaved runs per side (median and spread)")
    ap.add_argument("--json", action="store_true", help="also print each table's raw times as a JSON line")
    ap.add_argument("--modes", default="hot,cu")
    ap.add_argument("--code", default="x = (x or 0) + 1; return x")
    ap.add_argument("--grow", default="0",
                    help="MiB the process grows its memory by before the measured messages (Lua test process "
                         "Action=Grow); a comma list gives one row per size, e.g. 0,64,256")
    ap.add_argument("--data-kb", default="0",
                    help="pad each message's Data to this many KiB; a comma list gives one row per size")
    ap.add_argument("--ao-cu", default=os.path.join(REPO, "target/release/ao-cu"))
    args = ap.parse_args()
    ensure_installed(args)

    grows = [int(g) for g in args.grow.split(",")]
    sizes = [int(k) for k in args.data_kb.split(",")]
    print(f"module {os.path.basename(args.module)} ({args.format}), {args.n} messages, code {args.code!r}")
    for grow_mb in grows:
        for data_kb in sizes:
            rows = measure(args, grow_mb, data_kb)
            ours = statistics.median(rows[0][1])
            print(f"-- memory +{grow_mb} MiB, message data {data_kb or '<1'} KiB, {args.repeat} interleaved runs")
            print(f"{'side':45} {'median ms/msg':>14} {'min-max':>17} {'time / ao-cu time':>18}")
            for name, ts in rows:
                med = statistics.median(ts)
                spread = f"{min(ts) * 1000:.3f}-{max(ts) * 1000:.3f}"
                print(f"{name:45} {med * 1000:14.3f} {spread:>17} {med / ours:17.2f}x", flush=True)
            if args.json:
                print(json.dumps({"grow_mb": grow_mb, "data_kb": data_kb,
                                  "sides": {name: ts for name, ts in rows}}), flush=True)

if __name__ == "__main__":
    main()

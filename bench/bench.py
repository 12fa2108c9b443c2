#!/usr/bin/env python3
"""Side-by-side start/stop latency: sliverd against bare namespaces, bubblewrap and runc.

Run as root. For each runtime, N iterations (after a few unrecorded warm-up ones) of:

  create->running  time from asking for a container until its first process runs
  destroy          time to tear it down again (where the runtime has such a step)

  sliverd  `create` with start=true over the control socket (returns once the sliver's init
           runs), then `destroy`; slivers are named bench_sNNN. Needs --socket (and a daemon
           running there with --image registered); skipped otherwise.
  unshare  `unshare --user --map-root-user --pid --fork --mount --net --uts --ipc --cgroup
           --mount-proc true`: bare namespaces, no root filesystem. The time is to exit of
           `true`, i.e. creation + run + teardown; no separate destroy.
  bwrap    `bwrap --unshare-all --ro-bind IMAGE_DIR / --proc /proc --dev /dev /bin/true`:
           likewise timed to exit; no separate destroy.
  runc     an OCI bundle in a temporary directory (rootfs = copy of IMAGE_DIR, `runc spec`
           with args `/bin/sleep 1000`, no terminal); `runc run --detach benchrunc-NNN` and
           `runc delete --force benchrunc-NNN`, with --root in the temporary directory.

Statistics: median, and p90 by nearest rank (the ceil(0.9*N)-th smallest sample).
Everything made (slivers, runc containers, temporary directories) is removed on exit.

Example:
  python3 bench/bench.py --image-dir /var/lib/sliverd/images/busybox \\
      --socket /run/sliverd/sliverd.sock --image busybox --iterations 20
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

RUNTIMES = ("sliverd", "unshare", "bwrap", "runc")


class BenchError(Exception):
    pass


def now_ms():
    return time.perf_counter_ns() / 1e6


def summarize(samples):
    """(median, p90) of a list of milliseconds, or None when there are no samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return statistics.median(ordered), p90


def run_checked(argv, what, **kwargs):
    """Run argv with no stdin/stdout; raise BenchError naming `what` if it fails."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=err, **kwargs)
        if proc.returncode != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip().splitlines()
            raise BenchError(f"{what}: {' '.join(argv)} exited {proc.returncode}: "
                             f"{msg[-1] if msg else '(no output)'}")


# --- sliverd ---------------------------------------------------------------------------

class SliverdClient:
    """A connection to sliverd's control socket (newline-delimited JSON, version 1)."""

    def __init__(self, path, timeout=120.0):
        # 120 s per request: a create that has not answered by then counts as failed.
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise BenchError(f"sliverd: cannot connect to {path}: {e}") from e
        self.reader = self.sock.makefile("rb")

    def call(self, op, **args):
        request = {"v": 1, "op": op, **args}
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
            line = self.reader.readline()
            if not line:
                raise BenchError(f"sliverd: connection closed while waiting for the answer to {op}")
            reply = json.loads(line)
        except (OSError, ValueError) as e:
            raise BenchError(f"sliverd: {op} {args.get('name', '')}: {type(e).__name__}: {e}") from e
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise BenchError(f"sliverd: {op} {args.get('name', '')}: "
                             f"{err.get('code', '?')}: {err.get('message', line.decode().strip())}")
        return reply.get("result")

    def close(self):
        try:
            self.reader.close()
        finally:
            self.sock.close()


def bench_sliverd(args, total, record):
    client = SliverdClient(args.socket)
    alive = set()
    try:
        info = client.call("ping")
        print(f"sliverd: version {info.get('version', '?')}, pid {info.get('pid', '?')}",
              file=sys.stderr)
        stale = [s.get("name") for s in client.call("list") or []
                 if re.fullmatch(r"bench_s\d{3,}", str(s.get("name", "")))]
        for name in stale:
            print(f"sliverd: destroying leftover {name} from an earlier run", file=sys.stderr)
            client.call("destroy", name=name)
        for i in range(total):
            name = f"bench_s{i:03d}"
            t0 = now_ms()
            alive.add(name)
            sliver = client.call("create", name=name, image=args.image, attributes={},
                                 start=True)
            t1 = now_ms()
            if isinstance(sliver, dict) and sliver.get("state") not in (None, "running"):
                raise BenchError(f"sliverd: create {name} answered state {sliver.get('state')!r}")
            client.call("destroy", name=name)
            t2 = now_ms()
            alive.discard(name)
            record(i, t1 - t0, t2 - t1)
    finally:
        client.close()
        if alive:
            # A fresh connection: the old one may be out of step after an error or timeout.
            try:
                cleaner = SliverdClient(args.socket)
            except BenchError as e:
                print(f"sliverd: cannot clean up {sorted(alive)}: {e}", file=sys.stderr)
            else:
                for name in sorted(alive):
                    try:
                        cleaner.call("destroy", name=name)
                    except BenchError as e:
                        if "not_found" not in str(e):
                            print(f"sliverd: cleanup of {name} failed: {e}", file=sys.stderr)
                cleaner.close()


# --- peers -----------------------------------------------------------------------------

UNSHARE_ARGV = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount",
                "--net", "--uts", "--ipc", "--cgroup", "--mount-proc", "true"]


def bench_oneshot(argv, name):
    def run(args, total, record):
        for i in range(total):
            t0 = now_ms()
            run_checked(argv(args), name)
            record(i, now_ms() - t0, None)
    return run


def bwrap_argv(args):
    return ["bwrap", "--unshare-all", "--ro-bind", args.image_dir, "/",
            "--proc", "/proc", "--dev", "/dev", "/bin/true"]


def bench_runc(args, total, record, tmp):
    root = os.path.join(tmp, "runc-root")
    bundle = os.path.join(tmp, "bundle")
    os.makedirs(root, mode=0o700)
    os.makedirs(bundle)
    run_checked(["cp", "-a", "--", args.image_dir, os.path.join(bundle, "rootfs")],
                "runc: copying the image")
    run_checked(["runc", "spec", "--bundle", bundle], "runc spec")
    config_path = os.path.join(bundle, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["process"]["args"] = ["/bin/sleep", "1000"]
    config["process"]["terminal"] = False
    config["root"]["path"] = "rootfs"
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)

    runc = ["runc", "--root", root]
    started = set()
    try:
        for i in range(total):
            cid = f"benchrunc-{i:03d}"
            t0 = now_ms()
            started.add(cid)
            run_checked(runc + ["run", "--detach", "--bundle", bundle, cid], "runc run")
            t1 = now_ms()
            run_checked(runc + ["delete", "--force", cid], "runc delete")
            t2 = now_ms()
            started.discard(cid)
            record(i, t1 - t0, t2 - t1)
    finally:
        # Everything still known to this runc root, not just what this loop remembers.
        listed = subprocess.run(runc + ["list", "-q"], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True)
        leftovers = started | set(listed.stdout.split())
        for cid in sorted(leftovers):
            subprocess.run(runc + ["delete", "--force", cid], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- main ------------------------------------------------------------------------------

def fmt(v):
    return "n/a" if v is None else f"{v:.1f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", "-n", type=int, default=20,
                    help="recorded iterations per runtime (default 20)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="unrecorded iterations run first (default 1)")
    ap.add_argument("--socket", help="sliverd control socket; without it sliverd is skipped")
    ap.add_argument("--image", default="busybox",
                    help="sliverd image name to create slivers from (default busybox)")
    ap.add_argument("--image-dir",
                    help="root filesystem directory for bwrap and runc (e.g. the directory "
                         "registered as --image); without it bwrap and runc are skipped")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES),
                    help=f"comma-separated subset of {','.join(RUNTIMES)} (default all)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        ap.error("must run as root")
    if args.iterations < 1 or args.warmup < 0:
        ap.error("--iterations must be >= 1 and --warmup >= 0")
    wanted = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    for r in wanted:
        if r not in RUNTIMES:
            ap.error(f"unknown runtime {r!r}; choose from {','.join(RUNTIMES)}")
    if args.image_dir:
        args.image_dir = os.path.abspath(args.image_dir)
        if not os.path.isfile(os.path.join(args.image_dir, "bin", "true")) and \
                not os.path.islink(os.path.join(args.image_dir, "bin", "true")):
            ap.error(f"--image-dir {args.image_dir} has no bin/true")

    # SIGTERM/SIGHUP unwind through the finally blocks like Ctrl-C does.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    total = args.warmup + args.iterations
    results = {}   # runtime -> (create samples, destroy samples)
    notes = []
    tmp = tempfile.mkdtemp(prefix="sliverd-bench-")
    try:
        for rt in RUNTIMES:
            if rt not in wanted:
                continue
            if rt == "sliverd" and not args.socket:
                notes.append("sliverd: skipped (no --socket)")
                continue
            if rt in ("bwrap", "runc") and not args.image_dir:
                notes.append(f"{rt}: skipped (no --image-dir)")
                continue
            tool = {"sliverd": None, "unshare": "unshare", "bwrap": "bwrap", "runc": "runc"}[rt]
            if tool and not shutil.which(tool):
                notes.append(f"{rt}: skipped ({tool} not found)")
                continue

            creates, destroys = [], []

            def record(i, create_ms, destroy_ms):
                if i < args.warmup:
                    return
                creates.append(create_ms)
                if destroy_ms is not None:
                    destroys.append(destroy_ms)

            print(f"{rt}: {args.warmup} warm-up + {args.iterations} iterations ...",
                  file=sys.stderr)
            try:
                if rt == "sliverd":
                    bench_sliverd(args, total, record)
                elif rt == "unshare":
                    bench_oneshot(lambda a: UNSHARE_ARGV, "unshare")(args, total, record)
                elif rt == "bwrap":
                    bench_oneshot(bwrap_argv, "bwrap")(args, total, record)
                else:
                    bench_runc(args, total, record, tmp)
            except BenchError as e:
                notes.append(f"{rt}: FAILED: {e}")
                print(f"{rt}: FAILED: {e}", file=sys.stderr)
                continue
            results[rt] = (creates, destroys)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    stats = {rt: (summarize(c), summarize(d)) for rt, (c, d) in results.items()}
    print(f"\n{args.iterations} iterations per runtime ({args.warmup} warm-up not counted); "
          f"kernel {os.uname().release}\n")
    print("| runtime | create→running median ms | p90 | destroy median ms | p90 |")
    print("|---|---:|---:|---:|---:|")
    labels = {"sliverd": "Sliverd", "unshare": "unshare (bare namespaces)¹",
              "bwrap": "bwrap¹", "runc": "runc"}
    for rt in RUNTIMES:
        if rt not in stats:
            continue
        c, d = stats[rt]
        print(f"| {labels[rt]} | {fmt(c[0])} | {fmt(c[1])} | "
              f"{fmt(d[0] if d else None)} | {fmt(d[1] if d else None)} |")
    if "unshare" in stats or "bwrap" in stats:
        print("\n¹ timed until the command exits (create + run `true` + teardown); "
              "no separate destroy step.")

    if "sliverd" in stats:
        sc, sd = stats["sliverd"]
        print()
        if "bwrap" in stats:
            print(f"- Sliverd/bwrap create→running (median): {ratio(sc[0], stats['bwrap'][0][0])}")
        if "runc" in stats:
            rc_, rd_ = stats["runc"]
            print(f"- Sliverd/runc create→running (median): {ratio(sc[0], rc_[0])}; "
                  f"destroy (median): {ratio(sd[0] if sd else None, rd_[0] if rd_ else None)}")
    if notes:
        print()
        for n in notes:
            print(f"- note: {n}")
    return 1 if any("FAILED" in n for n in notes) else 0


if __name__ == "__main__":
    sys.exit(main())

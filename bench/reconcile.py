#!/usr/bin/env python3
"""CPU cost of reconciling a node that already matches its snapshot (issue 6: < 1 s for 1000).

Run by bench/reconcile against a throw-away sliverd (release build) provisioned by plcd. It
  1. writes plcd's data file with N slices bound to node 12 (1 ssh key, cpu_share, pids_max,
     memlock_hard and one tag Sliverd does not implement each), and `sliverctl sync`s once:
     the daemon creates N real slivers (timed, for information);
  2. runs K more syncs of the same data and measures, per sync,
       daemon CPU  - user+system time of every sliverd thread (/proc/PID/task/*/schedstat, ns),
                     i.e. receiving the fetched snapshot, decoding the JSON envelope, mapping,
                     planning against the N records, the admin-keys check and the answer;
       fetch CPU   - user+system time of the `sliverd --fetch-snapshot` child (the daemon's
                     reaped children: cutime+cstime of /proc/PID/stat, 10 ms ticks): GetSession
                     is skipped (session kept), GetSlivers over HTTP and its XML-RPC decoding;
       wall        - the whole sync round trip, including plcd building the answer;
     and checks that each of these syncs did nothing (0 created/updated/started/destroyed);
  3. publishes an empty slice list and syncs: every sliver is destroyed (timed).
"""

import argparse
import json
import os
import socket
import statistics
import sys
import time

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICVqF3hMrDpRDboVK5VSSb+/BjII6JfpbNoIeZEI8sL4 bench@example.org"


def call(path, request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall((json.dumps(dict(v=1, **request)) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                raise SystemExit("sliverd closed the connection")
            data += chunk
    answer = json.loads(data)
    if not answer.get("ok"):
        raise SystemExit(f"sliverd: {answer.get('error')}")
    return answer["result"]


def thread_cpu_ns(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that just ended
    return total


def children_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); cutime and cstime are fields 16 and 17.
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def publish(path, count):
    slices = [{"name": f"bench_s{i:04d}", "slice_id": 1000 + i, "nodes": [12], "expires": 2000000000,
               "keys": [{"key_type": "ssh", "key": KEY}],
               "attributes": [{"tagname": "vref", "value": "busybox"}, {"tagname": "cpu_share", "value": str(1 + i % 4)},
                              {"tagname": "pids_max", "value": "256"}, {"tagname": "memlock_hard", "value": "262144"},
                              {"tagname": "vsys", "value": "vif_up"}]} for i in range(count)]
    # No fixed timestamp: plcd answers with its clock, as PLCAPI does.
    data = {"nodes": [{"node_id": 12, "node_key": "bench-node-key", "hostname": "bench.test"}], "slices": slices}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--pid", type=int, required=True, help="sliverd's pid")
    parser.add_argument("--plc-data", required=True, help="plcd's data file")
    parser.add_argument("--slivers", type=int, default=1000)
    parser.add_argument("--syncs", type=int, default=5)
    args = parser.parse_args()

    publish(args.plc_data, args.slivers)
    start = time.monotonic()
    report = call(args.socket, {"op": "sync"})
    created = (report.get("reconcile") or {}).get("created", 0)
    print(f"create: {created} slivers in {time.monotonic() - start:.1f} s (wall)"
          + (f"; failed: {report['reconcile']['failed']}" if report.get("reconcile", {}).get("failed") else ""))
    if report.get("error") or created != args.slivers:
        raise SystemExit(f"the first sync did not create {args.slivers} slivers: {json.dumps(report)[:500]}")

    daemon, child, wall = [], [], []
    for _ in range(args.syncs):
        cpu0, kids0, t0 = thread_cpu_ns(args.pid), children_cpu_s(args.pid), time.monotonic()
        report = call(args.socket, {"op": "sync"})
        t1, kids1, cpu1 = time.monotonic(), children_cpu_s(args.pid), thread_cpu_ns(args.pid)
        r = report.get("reconcile") or {}
        if not report.get("applied") or any(r.get(k) for k in ("created", "updated", "started", "destroyed", "failed")):
            raise SystemExit(f"a sync of the matching snapshot did something: {json.dumps(report)[:500]}")
        daemon.append((cpu1 - cpu0) / 1e6)
        child.append((kids1 - kids0) * 1000)
        wall.append((t1 - t0) * 1000)

    print(f"reconcile of a {args.slivers}-sliver snapshot that matches the node ({args.syncs} syncs, median / max):")
    print(f"  daemon CPU   {statistics.median(daemon):8.1f} / {max(daemon):8.1f} ms")
    print(f"  fetch CPU    {statistics.median(child):8.1f} / {max(child):8.1f} ms  (child process, 10 ms ticks)")
    print(f"  total CPU    {statistics.median([d + c for d, c in zip(daemon, child)]):8.1f} ms  (limit: 1000 ms)")
    print(f"  wall         {statistics.median(wall):8.1f} / {max(wall):8.1f} ms  (includes plcd building the answer)")

    publish(args.plc_data, 0)
    start = time.monotonic()
    report = call(args.socket, {"op": "sync"})
    print(f"destroy: {(report.get('reconcile') or {}).get('destroyed', 0)} slivers in {time.monotonic() - start:.1f} s (wall)")
    return 0 if statistics.median([d + c for d, c in zip(daemon, child)]) < 1000 else 1


if __name__ == "__main__":
    sys.exit(main())

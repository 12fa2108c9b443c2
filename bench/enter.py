#!/usr/bin/env python3
"""Entering a running container: `vsh SLICE -- true` against nsenter, runc exec and lxc-attach.

Run as root with a running sliverd (bench/run does all of it). For each runtime, N timed runs
(after one warm-up) of a command that enters the container and runs /bin/true:

  vsh          vsh --socket VSH_SOCKET SLICE -- true   (through sliverd: cgroups, all namespaces,
               capabilities, no_new_privs, seccomp, rlimits, new session: the full login path)
  nsenter      nsenter -a -t INIT_PID true             (namespaces only: the lower bound)
  runc exec    runc --root R exec ID true              (a runc container from the same image)
  lxc-attach   lxc-attach -P P -n NAME -- /bin/true    (an LXC busybox container, no network)

Prints a Markdown table with median and p90 in ms and the ratios vsh/nsenter and vsh/runc exec.
Everything made here is removed on exit.
"""
import argparse, json, math, os, shutil, socket, statistics, subprocess, sys, tempfile, time


def ms(cmd, n, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        out.append((time.perf_counter_ns() - t) / 1e6)
    out.sort()
    return statistics.median(out), out[max(0, math.ceil(0.9 * len(out)) - 1)]


def call(sock_path, request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        s.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if not reply.get("ok"):
        raise RuntimeError(reply.get("error"))
    return reply["result"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--vsh-socket", required=True)
    ap.add_argument("--vsh", required=True)
    ap.add_argument("--image", default="busybox")
    ap.add_argument("--image-dir", required=True)
    ap.add_argument("--iterations", type=int, default=30)
    a = ap.parse_args()
    n = a.iterations
    tmp = tempfile.mkdtemp(prefix="sliverd-bench-enter-")
    rows, notes = [], []
    slice_name = "bench_enter"
    runc_root, runc_id = os.path.join(tmp, "runc"), "benchenter"
    lxc_path, lxc_name = os.path.join(tmp, "lxc"), "benchenter"
    try:
        view = call(a.socket, {"v": 1, "op": "create", "name": slice_name, "image": a.image})
        pid = view["init_pid"]
        rows.append(("vsh (Sliverd)", ms([a.vsh, "--socket", a.vsh_socket, slice_name, "--", "true"], n)))
        rows.append(("nsenter -a", ms(["nsenter", "-a", "-t", str(pid), "true"], n)))
        if shutil.which("runc"):
            bundle = os.path.join(tmp, "bundle")
            os.makedirs(bundle)
            shutil.copytree(a.image_dir, os.path.join(bundle, "rootfs"), symlinks=True)
            subprocess.run(["runc", "spec"], cwd=bundle, check=True)
            spec = json.load(open(os.path.join(bundle, "config.json")))
            spec["process"]["args"] = ["/bin/sleep", "100000"]
            spec["process"]["terminal"] = False
            json.dump(spec, open(os.path.join(bundle, "config.json"), "w"))
            subprocess.run(["runc", "--root", runc_root, "run", "--detach", runc_id], cwd=bundle, check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rows.append(("runc exec", ms(["runc", "--root", runc_root, "exec", runc_id, "/bin/true"], n)))
        else:
            notes.append("runc not installed: not measured")
        if shutil.which("lxc-create"):
            os.makedirs(lxc_path)
            subprocess.run(["lxc-create", "-P", lxc_path, "-n", lxc_name, "-t", "busybox"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            conf = os.path.join(lxc_path, lxc_name, "config")
            lines = [l for l in open(conf) if not l.startswith(("lxc.net.0", "lxc.apparmor"))]
            # No network (no host bridge touched) and no AppArmor on these machines.
            lines += ["lxc.net.0.type = empty\n", "lxc.apparmor.profile = unconfined\n"]
            open(conf, "w").writelines(lines)
            subprocess.run(["lxc-start", "-P", lxc_path, "-n", lxc_name, "-d"], check=True)
            rows.append(("lxc-attach", ms(["lxc-attach", "-P", lxc_path, "-n", lxc_name, "--", "/bin/true"], n)))
        else:
            # Not installed by bench/run: on a systemd host Debian's lxc starts lxc-net (a bridge,
            # lxcbr0, with dnsmasq), which a benchmark has no business adding to a node.
            notes.append("lxc not installed (apt-get install lxc; note that it enables lxc-net, a host bridge): lxc-attach not measured")
    finally:
        try:
            call(a.socket, {"v": 1, "op": "destroy", "name": slice_name})
        except Exception:
            pass
        subprocess.run(["runc", "--root", runc_root, "delete", "--force", runc_id], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.path.isdir(os.path.join(lxc_path, lxc_name)):
            subprocess.run(["lxc-stop", "-P", lxc_path, "-n", lxc_name, "-k"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(["lxc-destroy", "-P", lxc_path, "-n", lxc_name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{n} runs each (1 warm-up not counted): enter a running container and run true\n")
    print("| command | median ms | p90 ms |\n|---|---:|---:|")
    for name, (med, p90) in rows:
        print(f"| {name} | {med:.1f} | {p90:.1f} |")
    res = dict(rows)
    v = res["vsh (Sliverd)"][0]
    print(f"\n- vsh/nsenter (median): {v / res['nsenter -a'][0]:.2f}x (target <= 1.5x)")
    if "runc exec" in res:
        print(f"- vsh/runc exec (median): {v / res['runc exec'][0]:.2f}x (target <= 0.25x)")
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    sys.exit(main())

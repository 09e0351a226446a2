"""Helpers of scripts/bench: starting targets, running clients, measuring
CPU, and the statistics of side-by-side rounds."""
import json, os, re, resource, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
IOLAB = os.path.join(TARGET_DIR, "release", "iolab")
GIB = 1 << 30
# Where the individual `iolab bench` calls store their runs (a scratch notebook).
SCRATCH_DB = None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def need(prog):
    if shutil.which(prog) is None:
        sys.exit(f"scripts/bench: {prog} is missing (run ./scripts/test once to install the peers)")


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        p = subprocess.Popen(args, stdout=kw.pop("stdout", subprocess.DEVNULL), stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        """Stops one of them (SIGKILL: tgtd ignores SIGTERM)."""
        try:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=5)
        except Exception:
            pass

    def stop_all(self):
        for p in self.procs:
            try:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=5)
            except Exception:
                pass


def in_netns(netns, args):
    """`args` run inside network namespace `netns` (as is when None)."""
    return (["ip", "netns", "exec", netns] if netns else []) + list(args)


def start_tgtd(procs, tmp, addr="127.0.0.1", netns=None):
    """tgtd serving a 1 GiB file in /dev/shm as LUN 1 of one target."""
    port = free_port()
    img = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else tmp, f"iolab-bench-tgtd-{port}.img")
    with open(img, "wb") as f:
        f.truncate(GIB)
    urls, pid = start_tgtd_stores(procs, [(img, None, None)], addr, netns, port)
    return urls[0], img, pid


def start_tgtd_stores(procs, stores, addr="127.0.0.1", netns=None, port=None):
    """tgtd with one target per (file, bstype, bsoflags) in `stores`, LUN 1
    each, on ADDR:PORT; returns their URLs and tgtd's pid."""
    port = port or free_port()
    ctl = port % 30000 + 1
    tgtd = procs.start(in_netns(netns, ["tgtd", "-f", "-C", str(ctl), "--iscsi", f"portal={addr}:{port}"]))
    adm = in_netns(netns, ["tgtadm", "-C", str(ctl), "--lld", "iscsi"])
    for _ in range(100):
        if subprocess.run(adm + ["--op", "show", "--mode", "target"], capture_output=True).returncode == 0:
            break
        time.sleep(0.05)
    urls = []
    for tid, (img, bstype, bsoflags) in enumerate(stores, start=1):
        iqn = f"iqn.2026-11.bench:tgtd{tid}"
        subprocess.run(adm + ["--op", "new", "--mode", "target", "--tid", str(tid), "-T", iqn], check=True)
        lu = adm + ["--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", "1", "-b", img]
        lu += ["--bstype", bstype] if bstype else []
        lu += ["--bsoflags", bsoflags] if bsoflags else []
        subprocess.run(lu, check=True, capture_output=True)
        subprocess.run(adm + ["--op", "bind", "--mode", "target", "--tid", str(tid), "-I", "ALL"], check=True)
        urls.append(f"iscsi://{addr}:{port}/{iqn}/1")
    return urls, tgtd.pid


def start_iolab(procs, extra=(), listen="127.0.0.1:0", netns=None, backing=("--ramdisk", "1G")):
    p = procs.start(in_netns(netns, [IOLAB, "target", "serve", "--listen", listen, *backing, *extra]),
                    stdout=subprocess.PIPE, env=dict(os.environ, IOLAB_LOG="warn"))
    line = p.stdout.readline().decode()
    while line.startswith("metrics "):
        line = p.stdout.readline().decode()
    m = re.match(r"lun (\S+)", line)
    if not m:
        sys.exit(f"iolab target serve did not start: {line!r}")
    return m.group(1), p


def qemu_bench(url, size, depth, write, count, netns=None):
    args = in_netns(netns, ["qemu-img", "bench"]) + ["-f", "raw", "-c", str(count), "-d", str(depth), "-s", str(size)]
    if write:
        args.append("-w")
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=600)
    m = re.search(r"Run completed in ([\d.]+) seconds", out.stdout)
    if not m:
        raise RuntimeError(f"qemu-img bench failed: {out.stdout}{out.stderr}")
    secs = float(m.group(1))
    return {"mbps": count * size / secs / 1e6, "iops": count / secs}


def scratch_db():
    """The `--db` option of an iolab command whose run goes to the scratch notebook."""
    return ["--db", SCRATCH_DB] if SCRATCH_DB else []


def iolab_bench(url, size, depth, mode, seconds, connections=1, sessions=1, netns=None, pattern="seq", span=None):
    args = in_netns(netns, [IOLAB]) + scratch_db() + [
        "bench", url, "--mode", mode, "--bs", str(size), "--threads", str(depth), "--time", f"{seconds}s",
        "--connections", str(connections), "--sessions", str(sessions), "--pattern", pattern, "--json",
        "--heartbeat", "1h"]
    args += ["--range", str(span)] if span else []
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, env=dict(os.environ, IOLAB_LOG="warn"))
    if out.returncode != 0:
        raise RuntimeError(f"iolab bench failed: {out.stdout}{out.stderr}")
    j = json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])
    b = j["read_bytes"] + j["write_bytes"]
    t = j["read_transfers"] + j["write_transfers"]
    return {"mbps": b / j["seconds"] / 1e6, "iops": t / j["seconds"], "p50_us": j["latency_us"]["p50"],
            "cell": cell_of(j, mode, size, depth, connections, sessions)}


def cell_of(j, mode, size, depth, connections, sessions):
    """One `iolab bench --json` result as a notebook cell."""
    lat = j["latency_us"]
    return {"mode": mode, "lun": 0, "connections": connections, "sessions": sessions, "block_bytes": size,
            "threads": depth, "seconds": j["seconds"], "read_bytes": j["read_bytes"],
            "read_transfers": j["read_transfers"], "write_bytes": j["write_bytes"],
            "write_transfers": j["write_transfers"], "errors": j["errors"], "p50_us": lat["p50"],
            "p99_us": lat["p99"], "p999_us": lat["p999"], "max_us": lat["max"]}


def with_cpu(target_pid, fn, *args, **kw):
    """Runs one client measurement and adds the CPU it cost, as % of one core
    over its wall time: the target process's (from /proc) and the client's
    (the waited-for child's rusage)."""
    hz = os.sysconf("SC_CLK_TCK")
    q0 = run_delay_ns(target_pid)
    t0, c0, w0 = proc_ticks(target_pid), resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    r = fn(*args, **kw)
    t1, c1, w1 = proc_ticks(target_pid), resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    wall = w1 - w0
    r["target_cpu_pct"] = 100.0 * (t1 - t0) / hz / wall
    # Time the target's threads were runnable but waited for a CPU.
    r["target_runq_wait_pct"] = 100.0 * (run_delay_ns(target_pid) - q0) / 1e9 / wall
    r["client_cpu_pct"] = 100.0 * (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime) / wall
    return r


def with_corunner(fn, *args, **kw):
    """Runs one measurement while a busy loop takes one core (what a lab host
    doing anything else, or a guest with overcommitted vCPUs, gives the target)."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        return fn(*args, **kw)
    finally:
        busy.kill()
        busy.wait()


def target_case(targets, pids, size, depth, write, count, rounds, corunner=False, netns=None):
    """qemu-img on tgtd and on iolab, alternating for `rounds` rounds (with a
    busy loop on one core when `corunner`), side by side."""
    runs = {"tgtd": [], "iolab": []}
    for _ in range(rounds):
        for t in ("tgtd", "iolab"):
            args = (pids[t], qemu_bench, targets[t], size, depth, write, count, netns)
            runs[t].append(with_corunner(with_cpu, *args) if corunner else with_cpu(*args))
    return side_by_side(runs, depth)


def side_by_side(runs, depth):
    """A target case from both targets' runs: medians, CPU, the ratio and its rounds."""
    c = {t: {"mbps": med(r, "mbps"), "iops": med(r, "iops"), **cpu_of(r)} for t, r in runs.items()}
    c["ratio_iolab_over_tgtd"] = c["iolab"]["iops"] / c["tgtd"]["iops"]
    c["round_ratios"] = round_ratios(runs["iolab"], runs["tgtd"])
    if depth == 1:
        # Latency at one outstanding I/O: lower is better.
        c["latency_ratio_iolab_over_tgtd"] = c["tgtd"]["iops"] / c["iolab"]["iops"]
    return c


def print_target(name, c):
    print(f"target  {name:<16} tgtd {c['tgtd']['mbps']:9.1f} MB/s {c['tgtd']['iops']:9.0f} IOPS | "
          f"iolab {c['iolab']['mbps']:9.1f} MB/s {c['iolab']['iops']:9.0f} IOPS | ratio {c['ratio_iolab_over_tgtd']:.2f}"
          f" ({spread(c['round_ratios'])})"
          f" | target CPU {c['tgtd']['target_cpu_pct']:.0f}% / {c['iolab']['target_cpu_pct']:.0f}% (waiting for a CPU "
          f"{c['tgtd']['target_runq_wait_pct']:.0f}% / {c['iolab']['target_runq_wait_pct']:.0f}%)", flush=True)


def cpu_of(runs):
    """Median CPU of a case's runs (see with_cpu)."""
    return {"target_cpu_pct": med(runs, "target_cpu_pct"), "client_cpu_pct": med(runs, "client_cpu_pct"),
            "target_runq_wait_pct": med(runs, "target_runq_wait_pct")}


def round_ratios(num, den, key="iops"):
    """The ratio of each alternation (round i of one side over round i of
    the other): its spread shows how much of a median ratio is noise."""
    return [a[key] / b[key] for a, b in zip(num, den)]


def spread(ratios):
    return f"rounds {min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else "1 round"


def median_run(xs):
    """The run with the median IOPS (its cell is stored)."""
    return sorted(xs, key=lambda x: x["iops"])[len(xs) // 2]


def host_facts():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(re.search(r"MemTotal:\s+(\d+) kB", f.read()).group(1)) * 1024
    return {"kernel": os.uname().release, "cpu_model": model, "cores": os.cpu_count() or 1, "memory_bytes": mem}


def store_run(results, cells, started_ms, db):
    """Stores iolab's cells as one run through `iolab runs import`; returns its output line."""
    body = "# scripts/bench: the side-by-side results as JSON\n" + "".join(
        f"# {line}\n" for line in json.dumps(results, indent=1).splitlines())
    run = {"profile_name": "scripts/bench", "profile_body": body, "started_ms": started_ms,
           "ended_ms": int(time.time() * 1000), "host": host_facts(), "cells": cells}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(run, f)
        path = f.name
    try:
        out = subprocess.run([IOLAB] + (["--db", db] if db else []) + ["runs", "import", path],
                             capture_output=True, text=True, env=dict(os.environ, IOLAB_LOG="warn"))
        if out.returncode != 0:
            raise RuntimeError(f"iolab runs import failed: {out.stdout}{out.stderr}")
        return out.stdout.strip()
    finally:
        os.remove(path)


def thread_ticks(pid, tid=None):
    """utime + stime of a thread (the process's main thread by default), in clock ticks."""
    path = f"/proc/{pid}/task/{tid or pid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run_delay_ns(pid):
    """Nanoseconds the process's threads (those alive now) have spent
    runnable, waiting for a CPU (/proc/PID/task/*/schedstat, field 2)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def console_cpu(seconds):
    """The console's own CPU (its main thread: event loop and rendering; the
    engines run on tokio worker threads) while idle and while 16 connections
    stream on the Connections screen's chart at 4 Hz, as % of one core.
    Driven in tmux."""
    need("tmux")
    hz = os.sysconf("SC_CLK_TCK")
    name = f"iolab-bench-console-{os.getpid()}"
    state = tempfile.mkdtemp(prefix="iolab-bench-console-")
    binary = IOLAB
    pane = subprocess.run(["tmux", "new-session", "-d", "-P", "-F", "#{pane_pid}", "-s", name, "-x", "130", "-y", "36",
                           f"env XDG_STATE_HOME={state} XDG_DATA_HOME={state} {binary}"],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        def screen():
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
        deadline = time.time() + 30
        while "embedded target ready" not in screen():
            if time.time() > deadline:
                raise RuntimeError("the console did not come up:\n" + screen())
            time.sleep(0.2)
        pid = int(pane)
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != "iolab" and kids:
                pid = int(kids[0])

        def measure(secs):
            t0, p0, w0 = thread_ticks(pid), proc_ticks(pid), time.time()
            time.sleep(secs)
            t1, p1, w1 = thread_ticks(pid), proc_ticks(pid), time.time()
            return 100.0 * (t1 - t0) / hz / (w1 - w0), 100.0 * (p1 - p0) / hz / (w1 - w0)

        time.sleep(2)
        idle, idle_all = measure(seconds)
        # 16 connections (4 sessions x 4) from outside on the embedded target,
        # charted on the Connections screen, every line and the total at 4 Hz.
        m = re.search(r"(iscsi://127\.0\.0\.1:\d+/\S+/0)", screen())
        if not m:
            raise RuntimeError("no LUN URL on the console's screen:\n" + screen())
        subprocess.run(["tmux", "send-keys", "-t", name, "2"])
        load = subprocess.Popen([IOLAB, "--db", os.path.join(state, "load.db"), "bench", m.group(1), "--mode", "read",
                                 "--bs", "64K", "--threads", "32", "--time", f"{min(seconds, 20) + 6}s",
                                 "--connections", "4", "--sessions", "4", "--heartbeat", "1h"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, IOLAB_LOG="warn"))
        try:
            deadline = time.time() + 20
            while "Connections (16)" not in screen():
                if time.time() > deadline:
                    raise RuntimeError("16 connections never showed:\n" + screen())
                time.sleep(0.2)
            time.sleep(1)
            busy, busy_all = measure(min(seconds, 20))
            conns = int(re.search(r"Connections \((\d+)\)", screen()).group(1))
        finally:
            load.wait()
        return {"idle_console_pct": idle, "idle_process_pct": idle_all, "streaming_connections": conns,
                "streaming_console_pct": busy, "streaming_process_pct": busy_all}
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


class Scraper:
    """GETs /metrics every `every` seconds in a thread, as Prometheus would."""

    def __init__(self, port, every=1.0):
        import threading
        self.port, self.every, self.count, self.bytes = port, every, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import urllib.request
        while not self.stop.wait(self.every):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                self.bytes += len(r.read())
                self.count += 1

    def close(self):
        self.stop.set()
        self.thread.join()


def metrics_cost(procs, rounds, count):
    """4 KiB QD64 reads (qemu-img) on two identical targets, one serving
    --metrics scraped every second, alternating: the IOPS ratio is what
    being watched costs."""
    plain_url, plain = start_iolab(procs)
    mport = free_port()
    watched_url, watched = start_iolab(procs, ["--metrics", f"127.0.0.1:{mport}"])
    for url in (plain_url, watched_url):
        qemu_bench(url, 256 * 1024, 64, True, 256 * 2**20 // (256 * 1024))
    # Each scrape renders qemu-img's connection while it runs (and the ended
    # ones, kept for the exporter's 60 s grace).
    runs = {"plain": [], "watched": []}
    scraper = Scraper(mport)
    try:
        for _ in range(rounds):
            runs["plain"].append(with_cpu(plain.pid, qemu_bench, plain_url, 4096, 64, False, count))
            runs["watched"].append(with_cpu(watched.pid, qemu_bench, watched_url, 4096, 64, False, count))
    finally:
        scraper.close()
    c = {t: {"iops": med(r, "iops"), **cpu_of(r)} for t, r in runs.items()}
    c["ratio_watched_over_plain"] = c["watched"]["iops"] / c["plain"]["iops"]
    c["round_ratios"] = round_ratios(runs["watched"], runs["plain"])
    c["scrapes"] = scraper.count
    c["scrape_bytes_avg"] = scraper.bytes / max(scraper.count, 1)
    return c


def med(xs, key):
    return statistics.median(x[key] for x in xs)



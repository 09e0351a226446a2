"""Many sessions, for scripts/bench: 1, 16, 64 and 256 concurrent sessions
on one target (loopback), aggregate 4 KiB read IOPS and 256 KiB read MB/s
with max(64, sessions) I/Os outstanding over all of them (the embedded
initiator's --sessions on iolab's target; concurrent qemu-img processes on
tgtd, up to 64), the target's resident memory and CPU per session while
they run, whether every session logged in, and the memory each of 256
nearly idle sessions adds to a fresh target.

Beside them, the bare TCP exchange with the same connections, the same
requests in flight and the same bytes (a 48-byte command, a 48-byte header
and the block back; `tcp_pingpong`, no SCSI or iSCSI work): the ceiling an
iSCSI pair can approach with N connections on this machine."""
import json, os, re, statistics, subprocess, threading, time

from benchkit import GIB, iolab_bench, qemu_bench, start_iolab, start_tgtd, with_cpu
import benchkit

COUNTS = (1, 16, 64, 256)
BHS = 48
PINGPONG = os.path.join(benchkit.TARGET_DIR, "release", "examples", "tcp_pingpong")


def bare_tcp(addr, n, size, seconds):
    """tcp_pingpong's exchanges per second: n connections, max(64, n) in flight over all."""
    out = subprocess.run([PINGPONG, "run", addr, str(n), str(max(1, 64 // n)), str(seconds), str(BHS + size)],
                         capture_output=True, text=True, timeout=seconds + 60, check=True)
    r = json.loads(out.stdout.splitlines()[-1])
    return r["ops"] / r["seconds"]


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


class RssPeak:
    """Samples a process's resident memory every 50 ms until closed."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, rss(pid), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(0.05):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except OSError:
                return

    def close(self):
        self.stop.set()
        self.thread.join()
        return self.peak


def ours(url, pid, n, size, seconds, threads=None):
    before = rss(pid)
    peak = RssPeak(pid)
    try:
        r = with_cpu(pid, iolab_bench, url, size, threads or max(64, n), "read", seconds, sessions=n)
        ok = True
    except RuntimeError as e:
        r, ok = {"mbps": 0.0, "iops": 0.0, "target_cpu_pct": 0.0, "error": str(e)[-400:]}, False
    top = peak.close()
    cpu = r["target_cpu_pct"]
    return {"mbps": r["mbps"], "iops": r["iops"], "all_logged_in": ok, "rss_before": before, "rss_peak": top,
            "rss_per_session": (top - before) / n, "target_cpu_pct": cpu, "target_cpu_pct_per_session": cpu / n,
            **({"error": r["error"]} if not ok else {})}


def tgtd_many(url, pid, n, size, seconds_hint):
    """n qemu-img processes at once, 64/n outstanding each; aggregate over the wall time."""
    depth = max(1, 64 // n)
    per = max(200, int((60_000 if size == 4096 else 2_000) * seconds_hint / n))
    before, w0 = rss(pid), time.time()
    procs = [subprocess.Popen(["qemu-img", "bench", "-f", "raw", "-c", str(per), "-d", str(depth), "-s", str(size),
                               url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]
    ok = all(p.wait(timeout=600) == 0 for p in procs)
    wall = time.time() - w0
    total = n * per
    return {"mbps": total * size / wall / 1e6, "iops": total / wall, "all_logged_in": ok, "rss_before": before}


def run(procs, rounds, seconds, quick):
    results = {"iolab": {}, "tgtd": {}, "bare_tcp": {}}
    # 256 sessions that are nearly idle (one 512-byte read outstanding over
    # all of them) on a fresh target: what each adds to its memory.
    url, p = start_iolab(procs, backing=("--ramdisk", "64M"))
    try:
        time.sleep(0.5)
        idle = ours(url, p.pid, 256, 512, seconds, threads=1)
    finally:
        procs.stop(p)
    results["iolab"]["idle_256"] = idle
    print(f"sessions idle      256: RSS +{idle['rss_per_session'] / 1024:.0f} KiB/session (target <= 256; "
          f"{idle['rss_before'] / 2**20:.1f} MiB before), logged in: {'all' if idle['all_logged_in'] else 'NOT ALL'}",
          flush=True)
    pp = procs.start([PINGPONG, "serve", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        addr = pp.stdout.readline().split()[1]
        for size, label in ((4096, "read_4k"), (256 * 1024, "read_256k")):
            for n in COUNTS:
                ops = statistics.median(bare_tcp(addr, n, size, seconds) for _ in range(rounds))
                results["bare_tcp"][f"{label}_{n}"] = {"ops": ops, "mbps": ops * size / 1e6}
            one = results["bare_tcp"][f"{label}_1"]["ops"]
            for n in COUNTS:
                b = results["bare_tcp"][f"{label}_{n}"]
                b["vs_1_connection"] = b["ops"] / one
                print(f"sessions {label:<9} {n:>3}: bare TCP exchange {b['ops']:8.0f}/s ({b['vs_1_connection']:.2f}x of "
                      f"1 connection)", flush=True)
    finally:
        procs.stop(pp)
    url, p = start_iolab(procs)
    tgtd_url, tgtd_img, tgtd_pid = start_tgtd(procs, benchkit.tempfile.gettempdir())
    try:
        for u in (url, tgtd_url):
            qemu_bench(u, 256 * 1024, 64, True, GIB // (256 * 1024))
        for size, label in ((4096, "read_4k"), (256 * 1024, "read_256k")):
            for n in COUNTS:
                xs = [ours(url, p.pid, n, size, seconds) for _ in range(rounds)]
                best = max(xs, key=lambda x: x["iops"])
                mid = sorted(xs, key=lambda x: x["iops"])[len(xs) // 2]
                results["iolab"][f"{label}_{n}"] = {**mid, "all_logged_in": all(x["all_logged_in"] for x in xs),
                                                   "best_iops": best["iops"]}
                if n <= 64:
                    ts = [tgtd_many(tgtd_url, tgtd_pid, n, size, seconds) for _ in range(rounds)]
                    results["tgtd"][f"{label}_{n}"] = {"mbps": statistics.median(t["mbps"] for t in ts),
                                                      "iops": statistics.median(t["iops"] for t in ts),
                                                      "all_logged_in": all(t["all_logged_in"] for t in ts)}
            one = results["iolab"][f"{label}_1"]["best_iops"]
            for n in COUNTS:
                x = results["iolab"][f"{label}_{n}"]
                x["vs_1_session_peak"] = x["iops"] / one
                x["vs_bare_tcp"] = x["iops"] / results["bare_tcp"][f"{label}_{n}"]["ops"]
                t = results["tgtd"].get(f"{label}_{n}")
                print(f"sessions {label:<9} {n:>3}: iolab {x['mbps']:7.0f} MB/s {x['iops']:8.0f} IOPS "
                      f"({x['vs_1_session_peak']:.2f}x of 1 session's peak) logged in: "
                      f"{'all' if x['all_logged_in'] else 'NOT ALL'} | RSS +{x['rss_per_session'] / 1024:.0f} KiB/session, "
                      f"CPU {x['target_cpu_pct_per_session']:.2f}%/session, {x['vs_bare_tcp']:.2f}x of bare TCP" +
                      (f" | tgtd {t['mbps']:7.0f} MB/s {t['iops']:8.0f} IOPS" if t else " | tgtd not run (256 processes)"),
                      flush=True)
    finally:
        procs.stop(p)
        try:
            os.remove(tgtd_img)
        except OSError:
            pass
    return results

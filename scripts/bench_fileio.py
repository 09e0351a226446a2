"""FILEIO cases of scripts/bench: a file on this machine's disk (not tmpfs),
buffered and O_DIRECT, iolab's target against tgtd's `rdwr` (buffered and
with O_DIRECT) and `aio` backing stores on the same kind of file; 256 KiB
sequential and 4 KiB random, 64 outstanding I/Os, one client for all
(iolab bench: qemu-img bench has no random pattern). The ceiling is fio on
the file itself, locally, with the same pattern (io_uring)."""
import json, os, subprocess

from benchkit import GIB, cpu_of, iolab_bench, med, need, qemu_bench, round_ratios, spread, start_iolab, \
    start_tgtd_stores, with_cpu

CASES = {
    "read_256k_seq": (256 * 1024, "read", "seq"),
    "write_256k_seq": (256 * 1024, "write", "seq"),
    "randread_4k": (4096, "read", "random"),
    "randwrite_4k": (4096, "write", "random"),
}


def disk_dir():
    """A directory on a disk file system (O_DIRECT works, the page cache is real)."""
    for d in ("/var/tmp", os.path.expanduser("~")):
        if os.path.isdir(d) and os.access(d, os.W_OK):
            return d
    raise RuntimeError("no writable directory on a disk file system")


def fio_ceiling(path, size, mode, pattern, direct, seconds):
    """fio on the file itself: io_uring (asynchronous for buffered I/O too,
    unlike libaio), 64 outstanding, the same size and pattern."""
    rw = {("read", "seq"): "read", ("write", "seq"): "write", ("read", "random"): "randread",
          ("write", "random"): "randwrite"}[(mode, pattern)]
    out = subprocess.run(["fio", "--name=ceiling", f"--filename={path}", f"--rw={rw}", f"--bs={size}",
                          "--iodepth=64", "--ioengine=io_uring", f"--direct={1 if direct else 0}", f"--size={GIB}",
                          f"--runtime={seconds}", "--time_based", "--output-format=json"],
                         capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"fio failed: {out.stderr}")
    job = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]
    side = job["read" if mode == "read" else "write"]
    return {"iops": side["iops"], "mbps": side["bw_bytes"] / 1e6}


def run(procs, rounds, seconds):
    """Returns the cases' results: per backing mode and case, every target's
    median, the ratio of ours to tgtd's best store and the fio ceiling."""
    need("fio")
    d = disk_dir()
    tag = os.getpid()
    ours_img, tgtd_img = os.path.join(d, f"iolab-bench-ours-{tag}.img"), os.path.join(d, f"iolab-bench-tgtd-{tag}.img")
    results = {}
    try:
        for img in (ours_img, tgtd_img):
            with open(img, "wb") as f:
                f.truncate(GIB)
        ours = {}
        for name, extra in (("buffered", []), ("direct", ["--direct"])):
            url, p = start_iolab(procs, backing=("--fileio", f"{ours_img}:1G", *extra))
            ours[name] = (url, p.pid)
        (rdwr, rdwr_direct, aio), tgtd_pid = start_tgtd_stores(
            procs, [(tgtd_img, "rdwr", None), (tgtd_img, "rdwr", "direct"), (tgtd_img, "aio", None)])
        # Written through once, so reads find data, not holes.
        for url in (ours["direct"][0], rdwr_direct):
            qemu_bench(url, 1 << 20, 16, True, GIB >> 20)
        groups = {
            "buffered": {"iolab": ours["buffered"], "tgtd rdwr": (rdwr, tgtd_pid)},
            "direct": {"iolab": ours["direct"], "tgtd rdwr": (rdwr_direct, tgtd_pid), "tgtd aio": (aio, tgtd_pid)},
        }
        for mode_name, targets in groups.items():
            for case, (size, mode, pattern) in CASES.items():
                runs = {t: [] for t in targets}
                for _ in range(rounds):
                    for t, (url, pid) in targets.items():
                        runs[t].append(with_cpu(pid, iolab_bench, url, size, 64, mode, seconds, pattern=pattern,
                                                span=GIB))
                c = {t: {"mbps": med(r, "mbps"), "iops": med(r, "iops"), **cpu_of(r)} for t, r in runs.items()}
                best = max((t for t in targets if t != "iolab"), key=lambda t: c[t]["iops"])
                c["tgtd_best_store"] = best
                c["ratio_iolab_over_tgtd_best"] = c["iolab"]["iops"] / c[best]["iops"]
                c["round_ratios"] = round_ratios(runs["iolab"], runs[best])
                c["fio_local"] = fio_ceiling(ours_img, size, mode, pattern, mode_name == "direct", seconds)
                c["iolab_over_fio"] = c["iolab"]["iops"] / c["fio_local"]["iops"]
                results[f"{mode_name}_{case}"] = c
                print(f"fileio {mode_name:<8} {case:<15} " + " | ".join(
                    f"{t} {c[t]['mbps']:8.1f} MB/s {c[t]['iops']:8.0f} IOPS" for t in targets) +
                    f" | ours/{best} {c['ratio_iolab_over_tgtd_best']:.2f} ({spread(c['round_ratios'])}; target >= 1.5)"
                    f" | fio {c['fio_local']['iops']:.0f} IOPS, ours {c['iolab_over_fio']:.0%}", flush=True)
    finally:
        for img in (ours_img, tgtd_img):
            try:
                os.remove(img)
            except OSError:
                pass
    return results

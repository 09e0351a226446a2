"""The seed page's topology on one machine, for scripts/bench: the target in
network namespace A, the client in B, joined by a veth pair (`iolab lab
netns up`), once with MTU 1500 and the namespaces' default sysctls and once
with MTU 9000 and the seed's sysctls applied by `iolab tune apply seed`.
Per configuration: the best TCP figure over the pair (iperf3 -Z, one and two
streams) as the ceiling, qemu-img 256 KiB reads and writes on iolab's
target and on tgtd side by side (also with a busy loop on one core), and in
the seed configuration our initiator against qemu-img, MC/S 1-4 connections
for READ, WRITE and READ+WRITE (the seed page's table), and the MSS of every
connection."""
import json, os, re, subprocess, time

from benchkit import GIB, IOLAB, cpu_of, iolab_bench, med, qemu_bench, round_ratios, scratch_db, spread, \
    start_iolab, start_tgtd, target_case, with_cpu
import benchkit

LAB = "bench"
NS_A, NS_B = f"iolab-{LAB}-a", f"iolab-{LAB}-b"
ADDR_A = "10.77.0.1"
IFACE = "lab0"


def iolab_cmd(*args, check=True):
    out = subprocess.run([IOLAB] + scratch_db() + list(args), capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"iolab {' '.join(args)} failed: {out.stdout}{out.stderr}")
    return out


def iperf(streams, seconds):
    """The best TCP throughput from B to A over the pair (MB/s): iperf3 with
    -Z (sendfile: no copy on the sender), `streams` parallel streams."""
    port = benchkit.free_port()
    srv = subprocess.Popen(["ip", "netns", "exec", NS_A, "iperf3", "-s", "-1", "-B", ADDR_A, "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            out = subprocess.run(["ip", "netns", "exec", NS_B, "iperf3", "-c", ADDR_A, "-p", str(port), "-Z", "-P",
                                  str(streams), "-t", str(seconds), "-J"], capture_output=True, text=True,
                                 timeout=seconds + 60)
            try:
                # Before the server listens the client reports an error (in
                # the JSON, with exit status 0 on some versions): try again.
                return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
            except (ValueError, KeyError):
                time.sleep(0.1)
        raise RuntimeError(f"iperf3 over the veth pair failed: {out.stdout}{out.stderr}")
    finally:
        srv.kill()
        srv.wait()


def mss_of_connections(url, port, seconds):
    """The MSS of each of 4 MC/S connections while they carry reads (ss in A)."""
    bench = subprocess.Popen(benchkit.in_netns(NS_B, [IOLAB]) + scratch_db() +
                             ["bench", url, "--mode", "read", "--bs", "256k", "--threads", "64", "--time",
                              f"{max(seconds, 2)}s", "--connections", "4", "--heartbeat", "1h"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        out = subprocess.run(["ip", "netns", "exec", NS_A, "ss", "-tin", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True).stdout
    finally:
        bench.wait()
    return [int(m) for m in re.findall(r"\bmss:(\d+)", out)]


def run(procs, tmp, rounds, seconds, quick):
    up = subprocess.run([IOLAB, "lab", "netns", "up", "--name", LAB], capture_output=True, text=True)
    if up.returncode != 0:
        raise RuntimeError(f"iolab lab netns up failed: {up.stdout}{up.stderr}")
    results = {}
    try:
        for config in ("mtu1500_defaults", "mtu9000_seed"):
            seed = config == "mtu9000_seed"
            if seed:
                for ns in (NS_A, NS_B):
                    iolab_cmd("tune", "apply", "seed", "--netns", ns, "--iface", IFACE, "--mtu", "9000")
            c = {"tcp_ceiling_mbps": {n: iperf(n, seconds) for n in (1, 2)}}
            ours_url, ours = start_iolab(procs, listen=f"{ADDR_A}:0", netns=NS_A)
            tgtd_url, tgtd_img, tgtd_pid = start_tgtd(procs, tmp, addr=ADDR_A, netns=NS_A)
            targets, pids = {"tgtd": tgtd_url, "iolab": ours_url}, {"tgtd": tgtd_pid, "iolab": ours.pid}
            try:
                for url in targets.values():
                    qemu_bench(url, 256 * 1024, 64, True, GIB // (256 * 1024), NS_B)
                big = 2 * GIB // (256 * 1024) if not quick else 2048
                read_rounds = rounds if quick else max(rounds, 8)
                kib256 = 256 * 1024
                c["read_256k"] = target_case(targets, pids, kib256, 64, False, big, read_rounds, netns=NS_B)
                c["write_256k"] = target_case(targets, pids, kib256, 64, True, big // 2, rounds, netns=NS_B)
                c["read_256k_corunner"] = target_case(targets, pids, kib256, 64, False, big // 2, rounds,
                                                      corunner=True, netns=NS_B)
                c["write_256k_corunner"] = target_case(targets, pids, kib256, 64, True, big // 4, rounds,
                                                       corunner=True, netns=NS_B)
                tcp = max(c["tcp_ceiling_mbps"].values())
                for k in ("read_256k", "write_256k", "read_256k_corunner", "write_256k_corunner"):
                    x = c[k]
                    print(f"veth {config:<16} {k:<20} tgtd {x['tgtd']['mbps']:7.0f} MB/s | iolab {x['iolab']['mbps']:7.0f}"
                          f" MB/s | ratio {x['ratio_iolab_over_tgtd']:.2f} ({spread(x['round_ratios'])}) | target CPU "
                          f"{x['tgtd']['target_cpu_pct']:.0f}% / {x['iolab']['target_cpu_pct']:.0f}% (waiting for a CPU "
                          f"{x['tgtd']['target_runq_wait_pct']:.0f}% / {x['iolab']['target_runq_wait_pct']:.0f}%)", flush=True)
                print(f"veth {config:<16} TCP ceiling (iperf3 -Z) 1 stream {c['tcp_ceiling_mbps'][1]:.0f} MB/s, 2 streams "
                      f"{c['tcp_ceiling_mbps'][2]:.0f}; iolab 256 KiB read = {c['read_256k']['iolab']['mbps'] / tcp:.0%} "
                      f"of the best", flush=True)
                if seed:
                    ours_i, theirs = [], []
                    for _ in range(rounds):
                        ours_i.append(with_cpu(ours.pid, iolab_bench, ours_url, 256 * 1024, 64, "read", seconds,
                                               netns=NS_B))
                        theirs.append(with_cpu(ours.pid, qemu_bench, ours_url, 256 * 1024, 64, False, big // 2, NS_B))
                    c["initiator_read_256k"] = {
                        "iolab_bench": {"mbps": med(ours_i, "mbps"), **cpu_of(ours_i)},
                        "qemu_img": {"mbps": med(theirs, "mbps"), **cpu_of(theirs)},
                        "ratio_iolab_over_libiscsi": med(ours_i, "mbps") / med(theirs, "mbps"),
                        "round_ratios": round_ratios(ours_i, theirs, "mbps")}
                    x = c["initiator_read_256k"]
                    print(f"veth {config:<16} initiator 256 KiB read: iolab {x['iolab_bench']['mbps']:.0f} MB/s | "
                          f"qemu-img {x['qemu_img']['mbps']:.0f} | ratio {x['ratio_iolab_over_libiscsi']:.2f} "
                          f"({spread(x['round_ratios'])}; target >= 1.2)", flush=True)
                    mcs = {}
                    for mode in ("read", "write", "rw"):
                        by_n = {n: [] for n in (1, 2, 3, 4)}
                        for _ in range(rounds):
                            for n in by_n:
                                by_n[n].append(with_cpu(ours.pid, iolab_bench, ours_url, 256 * 1024, 64, mode, seconds,
                                                        connections=n, netns=NS_B))
                        mcs[mode] = {n: {"mbps": med(xs, "mbps"), "iops": med(xs, "iops"), **cpu_of(xs)}
                                     for n, xs in by_n.items()}
                        mcs[mode]["2_vs_1"] = mcs[mode][2]["mbps"] / mcs[mode][1]["mbps"]
                        mcs[mode]["2_vs_1_round_ratios"] = round_ratios(by_n[2], by_n[1], "mbps")
                        print(f"veth {config:<16} MC/S {mode:<5} " + ", ".join(
                            f"{n} conn {mcs[mode][n]['mbps']:.0f} MB/s {mcs[mode][n]['iops']:.0f} IOPS" for n in by_n) +
                              f"; 2 vs 1 {mcs[mode]['2_vs_1']:.2f} ({spread(mcs[mode]['2_vs_1_round_ratios'])})",
                              flush=True)
                    c["mcs_256k"] = mcs
                    port = int(re.search(r":(\d+)/", ours_url).group(1))
                    c["mss"] = mss_of_connections(ours_url, port, seconds)
                    print(f"veth {config:<16} MSS of 4 connections: {c['mss']} (target 8960 each)", flush=True)
            finally:
                procs.stop(ours)
                for p in list(procs.procs):
                    if p.pid == tgtd_pid:
                        procs.stop(p)
                try:
                    os.remove(tgtd_img)
                except OSError:
                    pass
            results[config] = c
    finally:
        subprocess.run([IOLAB, "lab", "netns", "down", "--name", LAB], capture_output=True)
    return results

//! The bare TCP exchange under an iSCSI read, for `scripts/bench`'s
//! many-sessions group: what N connections can move on this machine when
//! each request is a 48-byte command and each answer the bytes of a Data-In
//! PDU with status (48 + the block), with no SCSI and no iSCSI processing.
//! It is the ceiling an iSCSI target and initiator pair can approach with
//! the same number of connections and the same requests in flight, built
//! like iolab's target (one single-threaded runtime per core, connections
//! spread over them: `lab_core::shards`) on both sides.
//!
//! ```text
//! tcp_pingpong serve ADDR:PORT                     prints "listening ADDR:PORT"
//! tcp_pingpong run ADDR:PORT CONNS DEPTH SECONDS RESPONSE_BYTES
//!                                                  prints {"ops":N,"seconds":S}
//! ```
//! `serve` answers every complete 48-byte request with RESPONSE_BYTES bytes
//! (the size is the request's first 4 bytes, big-endian); `run` keeps DEPTH
//! requests in flight on each of CONNS connections for SECONDS seconds.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iolab_lab_core::shards::Shards;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST: usize = 48;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", addr] => serve(addr),
        ["run", addr, conns, depth, secs, resp] => run(addr, conns, depth, secs, resp),
        _ => Err("usage: tcp_pingpong serve ADDR:PORT | run ADDR:PORT CONNS DEPTH SECONDS RESPONSE_BYTES".into()),
    };
    if let Err(e) = result {
        eprintln!("tcp_pingpong: {e}");
        std::process::exit(2);
    }
}

type Failure = Box<dyn std::error::Error>;

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, Failure> {
    s.parse()
        .map_err(|_| format!("{what}: not a number: {s}").into())
}

/// One single-threaded runtime per core (iolab's own load shards).
fn shards() -> Result<Shards, Failure> {
    Ok(Shards::start(
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )?)
}

/// Runs `work` on connection `i`'s shard.
fn place<F, Fut>(shards: &Shards, i: usize, s: std::net::TcpStream, work: F)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    shards.handle(i).spawn(async move {
        if s.set_nonblocking(true).is_err() {
            return;
        }
        if let Ok(s) = TcpStream::from_std(s) {
            let _ = s.set_nodelay(true);
            work(s).await;
        }
    });
}

fn serve(addr: &str) -> Result<(), Failure> {
    let listener = std::net::TcpListener::bind(addr)?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let shards = shards()?;
    for (i, s) in listener.incoming().enumerate() {
        place(&shards, i, s?, answer);
    }
    Ok(())
}

/// The bytes answers are cut from (written as they are, never refilled).
const ANSWER_CHUNK: usize = 4 << 20;

/// Reads requests as they come and answers all that arrived together, in
/// writes of up to 4 MiB (as a target sends the answers it has corked).
async fn answer(mut s: TcpStream) {
    let mut inbuf = vec![0u8; 64 * 1024];
    let zeros = vec![0u8; ANSWER_CHUNK];
    let mut have = 0;
    loop {
        match s.read(&mut inbuf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        let whole = have / REQUEST * REQUEST;
        let mut owed: usize = inbuf[..whole]
            .chunks_exact(REQUEST)
            .map(|req| u32::from_be_bytes([req[0], req[1], req[2], req[3]]) as usize)
            .sum();
        inbuf.copy_within(whole..have, 0);
        have -= whole;
        while owed > 0 {
            let n = owed.min(ANSWER_CHUNK);
            if s.write_all(&zeros[..n]).await.is_err() {
                return;
            }
            owed -= n;
        }
    }
}

fn run(addr: &str, conns: &str, depth: &str, secs: &str, resp: &str) -> Result<(), Failure> {
    let addr: SocketAddr = addr.parse()?;
    let conns: usize = parse(conns, "CONNS")?;
    let depth: usize = parse(depth, "DEPTH")?;
    let secs: f64 = parse(secs, "SECONDS")?;
    let resp: u32 = parse(resp, "RESPONSE_BYTES")?;
    if conns == 0 || depth == 0 || resp == 0 {
        return Err("CONNS, DEPTH and RESPONSE_BYTES must be at least 1".into());
    }
    let ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let shards = shards()?;
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        streams.push(std::net::TcpStream::connect(addr)?);
    }
    let t0 = Instant::now();
    for (i, s) in streams.into_iter().enumerate() {
        let (ops, stop) = (ops.clone(), stop.clone());
        place(&shards, i, s, move |s| ask(s, depth, resp, ops, stop));
    }
    std::thread::sleep(Duration::from_secs_f64(secs));
    let done = ops.load(Ordering::Relaxed);
    let seconds = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    println!("{{\"ops\":{done},\"seconds\":{seconds:.3}}}");
    Ok(())
}

/// Keeps `depth` requests in flight: one more for every answer that ends.
async fn ask(
    mut s: TcpStream,
    depth: usize,
    resp: u32,
    ops: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut req = [0u8; REQUEST];
    req[..4].copy_from_slice(&resp.to_be_bytes());
    let burst: Vec<u8> = req.iter().copied().cycle().take(REQUEST * depth).collect();
    if s.write_all(&burst).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut partial = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n as u64,
        };
        partial += n;
        let whole = partial / u64::from(resp);
        partial %= u64::from(resp);
        if whole > 0 {
            ops.fetch_add(whole, Ordering::Relaxed);
            let again = REQUEST * (whole as usize).min(depth);
            if s.write_all(&burst[..again]).await.is_err() {
                return;
            }
        }
    }
}

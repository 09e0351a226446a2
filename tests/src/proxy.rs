//! A loopback TCP proxy whose individual connections a test can cut, to
//! simulate one failing path of a multi-connection session.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Everything the initiator sent, and how much of it before the freeze.
type Recording = Arc<Mutex<(Vec<u8>, Option<usize>)>>;

pub struct Proxy {
    pub port: u16,
    conns: Arc<Mutex<Vec<(TcpStream, TcpStream)>>>,
    frozen: Arc<AtomicBool>,
    sent: Recording,
}

/// Forwards `from` to `to`. Initiator-to-target bytes are also recorded in
/// `record` (with the length at the moment of freezing); while `frozen`,
/// target-to-initiator bytes are swallowed (a target that stopped answering).
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    frozen: Arc<AtomicBool>,
    record: Option<Recording>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let is_frozen = frozen.load(Ordering::SeqCst);
                match &record {
                    None if is_frozen => continue,
                    None => {}
                    Some(r) => {
                        let mut r = r.lock().unwrap_or_else(|e| e.into_inner());
                        if is_frozen && r.1.is_none() {
                            r.1 = Some(r.0.len());
                        }
                        r.0.extend_from_slice(&buf[..n]);
                    }
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Proxy {
    /// Forwards 127.0.0.1:<port> to `upstream` until dropped.
    pub fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = l.local_addr().expect("addr").port();
        let conns: Arc<Mutex<Vec<(TcpStream, TcpStream)>>> = Arc::new(Mutex::new(Vec::new()));
        let c2 = conns.clone();
        let frozen = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new((Vec::new(), None)));
        let (f2, r2) = (frozen.clone(), sent.clone());
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    break;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c_r), Ok(s_w), Ok(s_r), Ok(c_w)) = (
                    client.try_clone(),
                    server.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                ) else {
                    break;
                };
                c2.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((client, server));
                let (f_up, f_down, rec) = (f2.clone(), f2.clone(), r2.clone());
                std::thread::spawn(move || pump(c_r, s_w, f_up, Some(rec)));
                std::thread::spawn(move || pump(s_r, c_w, f_down, None));
            }
        });
        Proxy {
            port,
            conns,
            frozen,
            sent,
        }
    }

    /// From now on nothing the target sends reaches the initiator (the
    /// connections stay open); what the initiator sends is recorded.
    pub fn freeze_replies(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// `url` (an `iscsi://` URL of the upstream target) through this proxy.
    pub fn url_for(&self, url: &str) -> String {
        url.replacen(
            &crate::portal_of(url),
            &format!("127.0.0.1:{}", self.port),
            1,
        )
    }

    /// What initiators sent (no digests), as the headers of their PDUs, each
    /// marked with whether it was sent after [`Proxy::freeze_replies`]. All
    /// connections go into one recording, so this reads right only while
    /// one connection at a time sends.
    pub fn headers_sent(&self) -> Vec<([u8; 48], bool)> {
        let (bytes, frozen_at) = self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = Vec::new();
        let mut at = 0;
        while at + 48 <= bytes.len() {
            let mut h = [0u8; 48];
            h.copy_from_slice(&bytes[at..at + 48]);
            let ahs = h[4] as usize * 4;
            let data = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
            out.push((h, frozen_at.is_some_and(|f| at >= f)));
            at += 48 + ahs + data.div_ceil(4) * 4;
        }
        out
    }

    pub fn connection_count(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Cuts the `i`-th proxied connection (both directions), as a failed link would.
    pub fn cut(&self, i: usize) {
        if let Some((c, s)) = self.conns.lock().unwrap_or_else(|e| e.into_inner()).get(i) {
            let _ = c.shutdown(Shutdown::Both);
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

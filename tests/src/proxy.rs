//! A loopback TCP proxy whose individual connections a test can cut, to
//! simulate one failing path of a multi-connection session.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct Proxy {
    pub port: u16,
    conns: Arc<Mutex<Vec<(TcpStream, TcpStream)>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
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
                std::thread::spawn(move || pump(c_r, s_w));
                std::thread::spawn(move || pump(s_r, c_w));
            }
        });
        Proxy { port, conns }
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

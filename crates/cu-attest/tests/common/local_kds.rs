//! A local key distribution service for tests: HTTP/1.1 on 127.0.0.1, std only. Shared with `ao-cu`'s
//! tests, which include this file by path.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::samples::{milan_report, sample};

/// A tiny HTTP/1.1 server on loopback that answers from `route` and records request targets. It stops when
/// dropped, after 30 s, or after 50 connections, whichever comes first.
pub struct LocalKds {
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl LocalKds {
    pub fn start(route: impl Fn(&str) -> (u16, Vec<u8>) + Send + 'static) -> LocalKds {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut served = 0;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline && served < 50 {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                served += 1;
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                seen2.lock().unwrap().push(target.clone());
                let (status, body) = route(&target);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(&body);
            }
        });
        LocalKds { url, seen, stop }
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for LocalKds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// AMD's KDS as far as the Milan sample needs it: its VCEK (for its chip at its reported TCB) and the Milan
/// chain; 404 for anything else.
pub fn milan_route(target: &str) -> (u16, Vec<u8>) {
    let chip = hex::encode(milan_report().chip_id);
    if target == format!("/vcek/v1/Milan/{chip}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115") {
        (200, sample("vcek_milan.der"))
    } else if target == "/vcek/v1/Milan/cert_chain" {
        (200, sample("cert_chain_milan"))
    } else {
        (404, b"not found".to_vec())
    }
}

//! The listener under connection floods (issue 19, finding 13): connections are capped per
//! client address and in total, and idle keep-alive connections are closed, while a
//! request in flight (an SSE stream) keeps its connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use warden_testkit::harness::{fixture_stdio_upstream, warden, Client};

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").split('/').next().unwrap().to_string()
}

/// Send one keep-alive request for `/healthz`; true when a whole answer came back.
fn healthz(s: &mut TcpStream) -> bool {
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    matches!(s.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
}

/// True when the server has closed `s` (end of stream or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn connections_are_capped_per_client_and_idle_ones_closed() {
    let w =
        warden("max_connections_per_client = 4\nconnection_idle_secs = 1", &fixture_stdio_upstream("fx", Some(""), ""));
    let a = addr(&w.url);
    // The harness's own readiness probe is a connection too: let Warden see it closed.
    std::thread::sleep(Duration::from_millis(300));
    let mut held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&a).unwrap()).collect();
    for s in &mut held {
        assert!(healthz(s), "the first four are served");
    }
    // The fifth from the same address is closed at once, unserved.
    let mut fifth = TcpStream::connect(&a).unwrap();
    assert!(!healthz(&mut fifth), "a fifth connection is not served");
    // Idle keep-alive connections are closed after the idle time, which gives the places back.
    let t = Instant::now();
    for s in &mut held {
        assert!(closed_within(s, Duration::from_secs(5)), "an idle connection is closed");
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    // Their places are given back once the client side is closed too (Warden lingers a moment
    // on a closed connection so that a client still sending reads the answer).
    drop(held);
    drop(fifth);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut again = TcpStream::connect(&a).unwrap();
        if healthz(&mut again) {
            break;
        }
        assert!(Instant::now() < deadline, "room again once the idle ones are gone");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn a_stream_in_flight_keeps_its_connection() {
    let w = warden("connection_idle_secs = 1", &fixture_stdio_upstream("fx", Some(""), ""));
    let c = {
        let mut c = Client::new(&w.url);
        c.initialize().await;
        c
    };
    // The standalone SSE stream (GET) stays open well past the idle time.
    let mut r = c.request(reqwest::Method::GET).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let open = tokio::time::timeout(Duration::from_millis(2500), async {
        loop {
            match r.chunk().await {
                Ok(Some(_)) => continue,
                _ => return false,
            }
        }
    })
    .await;
    assert!(open.is_err(), "the stream ended while in flight: {open:?}");
}

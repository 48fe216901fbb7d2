//! The SSE streams of one HTTP session — the session's [`Outbound`]: a stream per request (or a
//! JSON answer that turns into one), the standalone stream (a 2025 GET, or a 2026
//! `subscriptions/listen`), events kept for `Last-Event-ID` resumption within byte bounds, and
//! where a message that names no request goes.

use crate::rpc::Outbound;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use warden_protocol::jsonrpc::{Id, Message};
use warden_protocol::sse;

const MAX_EVENTS_PER_STREAM: usize = 1024;
const MAX_DONE_STREAMS: usize = 16;
/// Bytes of events kept for replay (`Last-Event-ID`) per stream and per session: past them the
/// oldest events go (a stream's newest event, its answer, is always kept), and finished streams
/// are forgotten oldest first. A session holds at most the session bound plus the newest event
/// of each of its open streams.
const MAX_REPLAY_BYTES_PER_STREAM: usize = 4 << 20;
const MAX_REPLAY_BYTES_PER_SESSION: usize = 16 << 20;

/// All SSE streams of one session; the session's [`Outbound`].
pub(super) struct Streams {
    pub(super) inner: Mutex<StreamsInner>,
    /// Bytes of events kept for replay in all streams (changed under `inner`'s lock).
    pub(super) retained: AtomicUsize,
    pub(super) priming: bool,
    pub(super) retry_ms: u64,
    /// A stateless caller's pooled session: nothing that names no request goes out as a
    /// request (its questions are multi round-trips; the standalone stream is a listen's).
    pub(super) pooled: bool,
}

#[derive(Default)]
pub(super) struct StreamsInner {
    pub(super) next: u64,
    pub(super) map: HashMap<u64, Stream>,
    pub(super) standalone: Option<u64>,
    pub(super) done_order: VecDeque<u64>,
}

pub(super) struct Stream {
    /// The request this stream answers (None: the standalone GET stream).
    pub(super) request: Option<Id>,
    pub(super) events: VecDeque<(u64, Bytes)>,
    /// Bytes in `events`.
    pub(super) bytes: usize,
    pub(super) next_seq: u64,
    pub(super) live: Option<mpsc::UnboundedSender<Bytes>>,
    pub(super) done: bool,
    /// JSON mode that turns into SSE when anything but the answer is sent first.
    pub(super) lazy: bool,
    /// JSON mode: where the answer's HTTP status goes, when its error has one.
    pub(super) status: Option<JsonStatus>,
}

/// The HTTP status of a JSON-mode stream's answer, set before the answer is sent.
pub(super) type JsonStatus = std::sync::Arc<std::sync::OnceLock<warden_protocol::jsonrpc::HttpStatus>>;

impl Streams {
    pub(super) fn new(priming: bool, retry_ms: u64, pooled: bool) -> Streams {
        Streams { inner: Mutex::new(StreamsInner::default()), retained: AtomicUsize::new(0), priming, retry_ms, pooled }
    }

    pub(super) fn event_id(stream: u64, seq: u64) -> String {
        format!("{stream}-{seq}")
    }

    pub(super) fn alloc(&self, inner: &mut StreamsInner, request: Option<Id>) -> u64 {
        inner.next += 1;
        let s = inner.next;
        inner.map.insert(
            s,
            Stream {
                request,
                events: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                live: None,
                done: false,
                lazy: false,
                status: None,
            },
        );
        s
    }

    /// A new SSE stream answering `request` (POST) — with a priming event when the session's
    /// revision supports resumption.
    pub(super) fn open(&self, request: Option<Id>) -> (u64, mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.inner.lock();
        let s = self.alloc(&mut inner, request);
        if self.priming {
            let _ = tx.send(Bytes::from(sse::encode(Some(&Self::event_id(s, 0)), "", Some(self.retry_ms))));
        }
        inner.map.get_mut(&s).expect("just inserted").live = Some(tx);
        (s, rx)
    }

    /// A stream whose single payload is the JSON response (Accept without text/event-stream):
    /// related messages that arrive first go to the standalone stream instead. The response's
    /// HTTP status, when its error carries one, is in the returned cell before it is sent.
    pub(super) fn open_json(&self, request: Id, lazy: bool) -> (u64, mpsc::UnboundedReceiver<Bytes>, JsonStatus) {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = JsonStatus::default();
        let mut inner = self.inner.lock();
        let s = self.alloc(&mut inner, Some(request));
        let st = inner.map.get_mut(&s).expect("just inserted");
        st.live = Some(tx);
        st.next_seq = u64::MAX; // marks JSON mode
        st.lazy = lazy;
        st.status = Some(status.clone());
        (s, rx, status)
    }

    /// Turn a lazy JSON-mode stream into an SSE stream (priming event first).
    pub(super) fn upgrade(&self, s: u64) {
        let mut inner = self.inner.lock();
        if let Some(st) = inner.map.get_mut(&s) {
            self.upgrade_locked(st, s);
        }
    }

    pub(super) fn upgrade_locked(&self, st: &mut Stream, s: u64) {
        if st.lazy && st.next_seq == u64::MAX && !st.done {
            st.next_seq = 1;
            st.lazy = false;
            if self.priming {
                if let Some(l) = &st.live {
                    let _ = l.send(Bytes::from(sse::encode(Some(&Self::event_id(s, 0)), "", Some(self.retry_ms))));
                }
            }
        }
    }

    pub(super) fn open_standalone(&self) -> Option<mpsc::UnboundedReceiver<Bytes>> {
        self.attach_standalone(true)
    }

    /// Attach the standalone stream; with `backlog`, what queued while none was attached is
    /// delivered first (a 2025 GET), else dropped (a 2026 `subscriptions/listen` starts now).
    pub(super) fn attach_standalone(&self, backlog: bool) -> Option<mpsc::UnboundedReceiver<Bytes>> {
        let mut inner = self.inner.lock();
        if let Some(s) = inner.standalone {
            if inner.map.get(&s).map(|st| st.live.as_ref().is_some_and(|l| !l.is_closed())).unwrap_or(false) {
                return None;
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let s = match inner.standalone {
            Some(s) if inner.map.contains_key(&s) => s,
            _ => {
                let s = self.alloc(&mut inner, None);
                inner.standalone = Some(s);
                s
            }
        };
        if self.priming {
            let _ = tx.send(Bytes::from(sse::encode(Some(&Self::event_id(s, 0)), "", Some(self.retry_ms))));
        }
        // undelivered messages queued while no standalone stream was attached
        let st = inner.map.get_mut(&s).expect("exists");
        self.retained.fetch_sub(std::mem::take(&mut st.bytes), Ordering::Relaxed);
        for (_, ev) in st.events.drain(..) {
            if backlog {
                let _ = tx.send(ev);
            }
        }
        st.live = Some(tx);
        Some(rx)
    }

    /// Resume the stream named by `last` after that event; None if the id names no stream of
    /// this session.
    pub(super) fn resume(&self, last: &str) -> Option<mpsc::UnboundedReceiver<Bytes>> {
        let (s, seq) = last.split_once('-')?;
        let (s, seq): (u64, u64) = (s.parse().ok()?, seq.parse().ok()?);
        let mut inner = self.inner.lock();
        let standalone = inner.standalone == Some(s);
        let st = inner.map.get_mut(&s)?;
        if st.next_seq == u64::MAX || (standalone && st.live.as_ref().is_some_and(|l| !l.is_closed())) {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        for (n, ev) in st.events.iter() {
            if *n > seq {
                let _ = tx.send(ev.clone());
            }
        }
        if !st.done {
            st.live = Some(tx);
        }
        Some(rx)
    }

    /// Send a keep-alive comment on live streams; true if any stream is live.
    pub(super) fn keepalive(&self) -> bool {
        let mut inner = self.inner.lock();
        let mut any = false;
        for st in inner.map.values_mut() {
            if let Some(l) = &st.live {
                if st.next_seq != u64::MAX && l.send(Bytes::from_static(b": keep-alive\n\n")).is_err() {
                    st.live = None;
                } else {
                    any = true;
                }
            }
        }
        any
    }

    pub(super) fn close_all(&self) {
        let mut inner = self.inner.lock();
        inner.map.clear();
        inner.standalone = None;
        self.retained.store(0, Ordering::Relaxed);
    }

    pub(super) fn push(&self, st: &mut Stream, s: u64, json: String) -> bool {
        if st.next_seq == u64::MAX {
            // JSON mode: only the response itself is carried.
            return match st.live.take() {
                Some(l) => l.send(Bytes::from(json)).is_ok(),
                None => false,
            };
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let ev = Bytes::from(sse::encode(Some(&Self::event_id(s, seq)), &json, None));
        if let Some(l) = &st.live {
            if l.send(ev.clone()).is_err() {
                st.live = None;
            }
        }
        st.bytes += ev.len();
        let total = self.retained.fetch_add(ev.len(), Ordering::Relaxed) + ev.len();
        st.events.push_back((seq, ev));
        // Oldest first; the newest event (an answer) always stays.
        let mut dropped = 0;
        while st.events.len() > 1
            && (st.events.len() > MAX_EVENTS_PER_STREAM
                || st.bytes > MAX_REPLAY_BYTES_PER_STREAM
                || total - dropped > MAX_REPLAY_BYTES_PER_SESSION)
        {
            let (_, old) = st.events.pop_front().expect("more than one");
            st.bytes -= old.len();
            dropped += old.len();
        }
        self.retained.fetch_sub(dropped, Ordering::Relaxed);
        true
    }

    pub(super) fn finish(&self, inner: &mut StreamsInner, s: u64) {
        if let Some(st) = inner.map.get_mut(&s) {
            st.done = true;
            st.live = None;
        }
        inner.done_order.push_back(s);
        while inner.done_order.len() > MAX_DONE_STREAMS
            || (inner.done_order.len() > 1 && self.retained.load(Ordering::Relaxed) > MAX_REPLAY_BYTES_PER_SESSION)
        {
            if let Some(old) = inner.done_order.pop_front() {
                if let Some(gone) = inner.map.remove(&old) {
                    self.retained.fetch_sub(gone.bytes, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Outbound for Streams {
    fn send(&self, stream: Option<u64>, msg: Message) -> bool {
        let mut inner = self.inner.lock();
        let closes = |st: &Stream| match (&msg, &st.request) {
            (Message::Response { id, .. } | Message::Error { id, .. }, Some(r)) => id == r,
            _ => false,
        };
        // 1. the stream of the related request, if it is still open (JSON-mode streams carry
        //    only their response)
        if let Some(s) = stream {
            if let Some(st) = inner.map.get_mut(&s) {
                if st.lazy && !closes(st) {
                    self.upgrade_locked(st, s);
                }
                if !st.done && (st.next_seq != u64::MAX || closes(st)) {
                    let done = closes(st);
                    if let (u64::MAX, Some(cell), Message::Error { error, .. }) = (st.next_seq, &st.status, &msg) {
                        if let Some(h) = error.http {
                            let _ = cell.set(h);
                        }
                    }
                    let ok = self.push(st, s, msg.to_json());
                    if done {
                        self.finish(&mut inner, s);
                    }
                    return ok;
                }
            }
            if matches!(msg, Message::Response { .. } | Message::Error { .. }) {
                return false;
            }
        }
        if self.pooled && matches!(msg, Message::Request { .. }) {
            return false;
        }
        // 2. the standalone stream if live, 3. any open SSE request stream (newest first),
        // 4. queue on the standalone stream for when it (re)attaches
        let json = msg.to_json();
        if let Some(s) = inner.standalone {
            if let Some(st) = inner.map.get_mut(&s) {
                if st.live.as_ref().is_some_and(|l| !l.is_closed()) {
                    return self.push(st, s, json);
                }
            }
        }
        // (a request still in its JSON grace window counts: it is turned into an SSE stream, as
        // for a message related to it; a request whose client accepts JSON only cannot carry it)
        let newest_open = inner
            .map
            .iter()
            .filter(|(_, st)| {
                !st.done && st.request.is_some() && (st.next_seq != u64::MAX || st.lazy) && st.live.is_some()
            })
            .map(|(s, _)| *s)
            .max();
        if let Some(s) = newest_open {
            let st = inner.map.get_mut(&s).expect("found above");
            self.upgrade_locked(st, s);
            return self.push(st, s, json);
        }
        if matches!(msg, Message::Request { .. }) {
            return false;
        }
        let s = match inner.standalone {
            Some(s) => s,
            None => {
                let s = self.alloc(&mut inner, None);
                inner.standalone = Some(s);
                s
            }
        };
        let st = inner.map.get_mut(&s).expect("exists");
        self.push(st, s, json)
    }

    fn close_stream(&self, stream: u64) {
        let mut inner = self.inner.lock();
        if inner.map.get(&stream).is_some_and(|st| st.request.is_some() && !st.done) {
            self.finish(&mut inner, stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumption_replays_only_the_named_stream_after_the_event() {
        let st = streams();
        let (a, _rxa) = st.open(Some(Id::Num(1)));
        let (b, _rxb) = st.open(Some(Id::Num(2)));
        let note = |n: i64| Message::Notification {
            method: "notifications/progress".into(),
            params: Some(serde_json::json!({"n": n})),
        };
        assert!(st.send(Some(a), note(1)));
        assert!(st.send(Some(b), note(2)));
        assert!(st.send(Some(a), note(3)));
        let mut rx = st.resume(&format!("{a}-1")).unwrap();
        let got = rx.try_recv().unwrap();
        assert!(std::str::from_utf8(&got).unwrap().contains("\"n\":3"));
        assert!(rx.try_recv().is_err(), "no event of stream b, nothing before the id");
        assert!(st.resume("999-0").is_none());
        assert!(st.resume("garbage").is_none());
    }

    /// A server request with no related stream (a stdio upstream cannot say which call it
    /// belongs to) while the only request stream is still in its JSON grace window: it goes on
    /// that stream, turned into SSE, not refused ("no open stream"; a flaky test found it).
    #[test]
    fn an_unrelated_server_request_upgrades_a_request_stream_in_its_grace_window() {
        let st = streams();
        let (a, mut rx, _) = st.open_json(Id::Num(1), true);
        let req = Message::Request { id: Id::Str("w1".into()), method: "sampling/createMessage".into(), params: None };
        assert!(st.send(None, req), "delivered");
        let priming = rx.try_recv().unwrap();
        assert!(std::str::from_utf8(&priming).unwrap().starts_with(&format!("id: {a}-0")), "{priming:?}");
        assert!(std::str::from_utf8(&rx.try_recv().unwrap()).unwrap().contains("sampling/createMessage"));
        // A JSON-only request (not lazy) cannot carry it.
        let st = streams();
        let (_b, _rxb, _) = st.open_json(Id::Num(2), false);
        let req = Message::Request { id: Id::Str("w2".into()), method: "sampling/createMessage".into(), params: None };
        assert!(!st.send(None, req));
    }

    fn streams() -> Streams {
        Streams {
            inner: Mutex::new(StreamsInner::default()),
            retained: AtomicUsize::new(0),
            priming: true,
            retry_ms: 500,
            pooled: false,
        }
    }

    /// Issue 19, finding 13: events kept for replay are bounded in bytes, per stream and per
    /// session, whatever their count; a stream's newest event stays replayable.
    #[test]
    fn replay_is_bounded_in_bytes() {
        let st = streams();
        let big = |n: i64| Message::Notification {
            method: "notifications/message".into(),
            params: Some(serde_json::json!({"n": n, "data": "x".repeat(512 << 10)})),
        };
        let (a, _rxa) = st.open(Some(Id::Num(1)));
        for n in 0..40 {
            assert!(st.send(Some(a), big(n)));
        }
        let kept = st.inner.lock().map[&a].bytes;
        assert!(kept <= MAX_REPLAY_BYTES_PER_STREAM, "{kept}");
        assert!(kept > MAX_REPLAY_BYTES_PER_STREAM / 2);
        // Many streams: the session's total stays bounded.
        for i in 2..40 {
            let (s, _rx) = st.open(Some(Id::Num(i)));
            for n in 0..4 {
                st.send(Some(s), big(n));
            }
            st.send(Some(s), Message::Response { id: Id::Num(i), result: serde_json::json!({}) });
        }
        let total = st.retained.load(Ordering::Relaxed);
        let counted: usize = st.inner.lock().map.values().map(|s| s.bytes).sum();
        assert_eq!(total, counted, "the running total is exact");
        assert!(total <= MAX_REPLAY_BYTES_PER_SESSION + MAX_REPLAY_BYTES_PER_STREAM, "{total}");
        // The newest event of the first stream is still there to replay.
        let mut rx = st.resume(&format!("{a}-39")).unwrap();
        assert!(std::str::from_utf8(&rx.try_recv().unwrap()).unwrap().contains("\"n\":39"));
    }
}

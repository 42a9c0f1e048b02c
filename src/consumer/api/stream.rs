//! `GET /telemetry/stream`: Server-Sent Events, one event per new snapshot.
//!
//! Each event is `id: <snapshot id>` and `data: <the ListMetrics JSON>` on
//! one line (unnamed, so `EventSource.onmessage` sees it); a comment line
//! every [`HEARTBEAT`] keeps proxies from closing an idle stream, and a bare
//! `:` every [`LIVENESS`] notices a client that left. A client that reconnects with `Last-Event-ID` naming the
//! current snapshot waits for the next one; otherwise the current snapshot
//! is sent at once. Subscribers are capped (`STREAM_MAX_SUBSCRIBERS`, 503
//! beyond) and each runs on a thread of its own, never a request worker;
//! one whose client stops reading is let go by the socket's write timeout.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::filter::{Filter, Format};
use crate::clock;
use crate::consumer::store::State;
use crate::consumer::store::fabric::Fabric;
use crate::http::{Request, Response};

/// How often an idle stream gets a `: heartbeat` comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// How often a bare `:` comment checks that the client is still there.
pub const LIVENESS: Duration = Duration::from_secs(1);

/// The subscriber cap and count, shared by the routes.
pub struct Subscribers {
    max: usize,
    count: AtomicUsize,
}

/// Holds a subscriber's place until dropped.
struct Seat(Arc<Subscribers>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Subscribers {
    pub fn new(max: usize) -> Arc<Subscribers> {
        Arc::new(Subscribers {
            max,
            count: AtomicUsize::new(0),
        })
    }

    /// Subscribers streaming now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn take(self: &Arc<Self>) -> Option<Seat> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Seat(self.clone()))
    }
}

/// The answer to a stream request: the event stream (each event the whole
/// table, or the `ListMetrics` filter the query gives), 400 for a bad
/// query, 503 when full.
pub fn subscribe(state: &Arc<State>, subscribers: &Arc<Subscribers>, req: &Request) -> Response {
    // Events are JSON: a query asking for CSV is refused, not ignored.
    let filter = match Filter::parse(&req.query) {
        Ok(f) if f.format == Format::Csv => {
            return Response::error(400, "invalid format: csv (the stream sends JSON events)");
        }
        Ok(f) if f.is_whole_table() => None,
        Ok(f) => Some(f),
        Err(e) => return Response::error(400, &e.to_string()),
    };
    // A field the current table lacks is refused now, not in every event.
    if let (Some(f), Some(snap)) = (&filter, state.store.load()) {
        if let Err(e) = f.select(&snap, &[]) {
            return Response::error(400, &e.to_string());
        }
    }
    let Some(seat) = subscribers.take() else {
        return Response::error(503, "too many stream subscribers").header("Retry-After", "5");
    };
    let last_sent = req.header("Last-Event-ID").map(str::to_string);
    let state = state.clone();
    Response::streaming(
        200,
        "text/event-stream",
        Box::new(move |w: &mut dyn Write| {
            let _seat = seat;
            let _ = run(&state, w, last_sent, HEARTBEAT, filter.as_ref());
        }),
    )
}

/// One event's `data:` for `snap`.
fn data(snap: &Fabric, filter: Option<&Filter>, now_ms: u64) -> Vec<u8> {
    match filter {
        None => snap
            .list_body(now_ms, &[], "")
            .iter()
            .flat_map(|c| c.bytes().to_vec())
            .collect(),
        Some(f) => match f.select(snap, &[]) {
            Ok(page) => page.json(snap, snap.age_ms(now_ms), "").into_bytes(),
            Err(e) => crate::json::error_body(&e.to_string()).into_bytes(),
        },
    }
}

/// Writes events until the client goes away (a write fails).
fn run(
    state: &State,
    w: &mut dyn Write,
    mut last_sent: Option<String>,
    heartbeat: Duration,
    filter: Option<&Filter>,
) -> std::io::Result<()> {
    // Tell EventSource clients how soon to come back after a drop.
    w.write_all(b"retry: 2000\n\n")?;
    w.flush()?;
    let mut version = state.store.version();
    loop {
        if let Some(snap) = state.store.load() {
            if last_sent.as_deref() != Some(snap.id()) {
                let mut event = format!("id: {}\ndata: ", snap.id()).into_bytes();
                event.extend(data(&snap, filter, clock::epoch_ms()));
                event.extend_from_slice(b"\n\n");
                w.write_all(&event)?;
                w.flush()?;
                last_sent = Some(snap.id().to_string());
            }
        }
        // Wait for the next snapshot a second at a time: each second a bare
        // comment line finds out whether the client is still there (a gone
        // client fails the second write after it left), so its seat is
        // freed within seconds; every `heartbeat` a named one keeps proxies
        // from closing an idle stream.
        let waited = std::time::Instant::now();
        loop {
            let newer = state.store.wait_newer(version, LIVENESS.min(heartbeat));
            if newer != version {
                version = newer;
                break;
            }
            let line: &[u8] = if waited.elapsed() >= heartbeat {
                b": heartbeat\n\n"
            } else {
                b":\n"
            };
            w.write_all(line)?;
            w.flush()?;
            if waited.elapsed() >= heartbeat {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::store::snapshot::{Limits, Origin, Snapshot};
    use std::sync::Mutex;

    /// A writer the test can read while the stream runs, failing on demand.
    #[derive(Clone, Default)]
    struct Pipe(Arc<Mutex<(Vec<u8>, bool)>>);

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut p = self.0.lock().unwrap();
            if p.1 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            p.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn snapshot(id: &str) -> Arc<Fabric> {
        let origin = Origin {
            id: id.into(),
            producer_ts_ms: None,
            fetched_ms: clock::epoch_ms(),
        };
        let snap = Snapshot::parse(b"switch_id,a\nx,1\n", origin, Limits { max_rows: 9 });
        Arc::new(snap.unwrap().into())
    }

    fn text(p: &Pipe) -> String {
        String::from_utf8(p.0.lock().unwrap().0.clone()).unwrap()
    }

    fn until(p: &Pipe, what: &str) {
        for _ in 0..500 {
            if text(p).contains(what) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("never saw {what:?} in {:?}", text(p));
    }

    #[test]
    fn events_heartbeats_and_resume() {
        let state = Arc::new(State::default());
        state.store.store(snapshot("s1"));
        let pipe = Pipe::default();
        let runner = {
            let (state, mut pipe) = (state.clone(), pipe.clone());
            std::thread::spawn(move || {
                run(&state, &mut pipe, None, Duration::from_millis(50), None)
            })
        };
        until(&pipe, "id: s1\ndata: {\"snapshot_id\":\"s1\"");
        until(&pipe, ": heartbeat\n\n");
        state.store.store(snapshot("s2"));
        until(&pipe, "id: s2\n");
        pipe.0.lock().unwrap().1 = true; // the client goes away
        assert!(runner.join().unwrap().is_err());
        assert_eq!(text(&pipe).matches("\ndata: {").count(), 2);

        // Resuming at the current snapshot waits for the next.
        let pipe = Pipe::default();
        let runner = {
            let (state, mut pipe) = (state.clone(), pipe.clone());
            std::thread::spawn(move || {
                run(
                    &state,
                    &mut pipe,
                    Some("s2".into()),
                    Duration::from_millis(20),
                    None,
                )
            })
        };
        until(&pipe, ": heartbeat");
        assert!(!text(&pipe).contains("id: s2"));
        state.store.store(snapshot("s3"));
        until(&pipe, "id: s3\n");
        pipe.0.lock().unwrap().1 = true;
        let _ = runner.join();
    }

    #[test]
    fn a_filtered_stream_sends_the_filtered_form() {
        let state = Arc::new(State::default());
        state.store.store(snapshot("f1"));
        let filter = Filter::parse("fields=a&limit=1").unwrap();
        let pipe = Pipe::default();
        let runner = {
            let (state, mut pipe) = (state.clone(), pipe.clone());
            std::thread::spawn(move || {
                run(
                    &state,
                    &mut pipe,
                    None,
                    Duration::from_millis(20),
                    Some(&filter),
                )
            })
        };
        until(&pipe, "\"total\":1");
        pipe.0.lock().unwrap().1 = true;
        let _ = runner.join();
    }

    #[test]
    fn a_query_for_csv_is_refused_not_ignored() {
        let state = Arc::new(State::default());
        let subs = Subscribers::new(4);
        for q in ["format=csv", "format=CSV&limit=1"] {
            let resp = subscribe(
                &state,
                &subs,
                &Request::get(&format!("/telemetry/stream?{q}")),
            );
            assert_eq!(resp.status, 400, "{q}");
        }
        assert_eq!(subs.count(), 0);
        let resp = subscribe(
            &state,
            &subs,
            &Request::get("/telemetry/stream?format=json&limit=1"),
        );
        assert_eq!(resp.status, 200);
    }

    #[test]
    fn subscribers_are_capped() {
        let subs = Subscribers::new(2);
        let a = subs.take().unwrap();
        let _b = subs.take().unwrap();
        assert!(subs.take().is_none());
        drop(a);
        assert_eq!(subs.count(), 1);
        assert!(subs.take().is_some());
    }
}

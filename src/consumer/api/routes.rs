//! metrics_server's routes: `/telemetry/ListMetrics` (its query parameters
//! are read in `filter`), `/telemetry/GetMetric`, `/telemetry/History` (its
//! points kept in `history`), `/stats` and `/health`, as pure functions of a
//! request and the state.
//!
//! The data endpoints answer conditional requests: an `If-None-Match`
//! naming the entity tag the answer would carry (weak comparison, so
//! `W/"…"` counts; also `*` and a list) turns its 200 into a 304 with the
//! same headers. Only a 200 becomes a 304: a request that would be refused
//! (400, 404) or that we cannot vouch for (503: no snapshot, or stale data)
//! gets that answer whatever its preconditions (RFC 9110 §13.2.1). The JSON
//! answers carry `"<snapshot_id>"`; the CSV ones `"<snapshot_id>-csv"`, since
//! with `Accept: text/csv` one URL has two representations (`Vary: Accept`)
//! and a cache holding both must learn from a 304 which one is current.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::filter::{Filter, Format};
use super::metrics;
use super::page::Page;
use super::stats;
use super::stream;
use crate::clock;
use crate::consumer::store::State;
use crate::consumer::store::fabric::Fabric;
use crate::consumer::store::history;
use crate::consumer::store::snapshot::Snapshot;
use crate::gzip;
use crate::http::{self, Request, Response};
use crate::json;
use crate::query;
use crate::server::Handler;

const LIST: &str = "/telemetry/ListMetrics";
const GET: &str = "/telemetry/GetMetric";
const STATS: &str = "/stats";
const HEALTH: &str = "/health";
const READY: &str = "/ready";
const METRICS: &str = "/metrics";
const STREAM: &str = "/telemetry/stream";
const HISTORY: &str = "/telemetry/History";
const PAGE: &str = "/";

/// How old data may be before the API stops vouching for it.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// Data endpoints answer 503 "data stale" past this (`MAX_STALE_MS`).
    pub max_stale: Option<Duration>,
    /// `/ready` is 200 only within this (`READY_MAX_AGE_MS`).
    pub ready_max_age: Duration,
}

impl Default for Freshness {
    fn default() -> Freshness {
        Freshness {
            max_stale: None,
            ready_max_age: Duration::from_secs(60),
        }
    }
}

pub struct Routes {
    state: Arc<State>,
    freshness: Freshness,
    page: Page,
    /// The `/metrics` fabric block of the current snapshot.
    exposition: metrics::FabricCache,
    /// Clients on `/telemetry/stream` (`STREAM_MAX_SUBSCRIBERS`).
    subscribers: Arc<stream::Subscribers>,
}

/// Stream clients allowed unless told otherwise (the knob's default).
const DEFAULT_SUBSCRIBERS: usize = 64;

impl Routes {
    pub fn new(state: Arc<State>, freshness: Freshness) -> Routes {
        let page = Page::new(freshness.ready_max_age.as_millis() as u64);
        Routes {
            state,
            freshness,
            page,
            exposition: Default::default(),
            subscribers: stream::Subscribers::new(DEFAULT_SUBSCRIBERS),
        }
    }

    /// The same, typing keyed rows' columns in `/metrics` as `counters`
    /// says (`COUNTER_COLUMNS`).
    pub fn with_counters(mut self, counters: metrics::Counters) -> Routes {
        self.exposition = metrics::FabricCache::default().with_counters(counters);
        self
    }

    /// The same, allowing `max` stream clients (`STREAM_MAX_SUBSCRIBERS`).
    pub fn with_subscribers(mut self, max: usize) -> Routes {
        self.subscribers = stream::Subscribers::new(max);
        self
    }

    /// The fabric a data endpoint may answer from at `now`, with the parts
    /// too old to serve (`MAX_STALE_MS`, per shard) marked; or the 503 that
    /// says why none can be: no snapshot yet, or every shard too old.
    fn fresh(&self, now: u64) -> Result<Served, Response> {
        let Some(fabric) = self.state.store.load() else {
            return Err(no_snapshot());
        };
        let stale: Vec<bool> = match self.freshness.max_stale {
            None => vec![false; fabric.parts().len()],
            Some(max) => {
                let max = max.as_millis() as u64;
                fabric
                    .parts()
                    .iter()
                    .map(|p| p.snap.age_ms(now) > max)
                    .collect()
            }
        };
        if stale.iter().all(|&s| s) {
            let age = fabric.age_ms(now);
            let max = self.freshness.max_stale.map_or(0, |m| m.as_millis() as u64);
            let body =
                format!("{{\"error\":\"data stale\",\"age_ms\":{age},\"max_stale_ms\":{max}}}");
            return Err(data_headers(Response::json(503, body), &fabric.etag, age));
        }
        Ok(Served { fabric, stale })
    }

    /// The `"missing_shards"` member of a ListMetrics answer made of
    /// `served`: the stale shards and those that have sent nothing yet;
    /// empty when none is missing (and always with one upstream).
    fn missing_shards(&self, served: &Served) -> String {
        if !self.state.sharded() {
            return String::new();
        }
        let parts = served.fabric.parts();
        let missing = self
            .state
            .shards
            .iter()
            .enumerate()
            .filter_map(|(i, shard)| {
                let why = match parts.iter().position(|p| p.shard == i) {
                    None => "no snapshot yet",
                    Some(k) if served.stale[k] => "data stale",
                    Some(_) => return None,
                };
                Some((shard.url.as_str(), why))
            });
        match upstream_errors(missing) {
            list if list == "[]" => String::new(),
            list => format!(",\"missing_shards\":{list}"),
        }
    }

    fn ready(&self) -> Response {
        let max = self.freshness.ready_max_age.as_millis() as u64;
        let now = clock::epoch_ms();
        let polls = self.state.stats.polls();
        // Each upstream's reason not to be ready, if it has one.
        let why = |i: usize, snap: Option<Arc<Snapshot>>| match snap {
            None => Some("no snapshot yet"),
            Some(s) if s.age_ms(now) > max => Some("data stale"),
            Some(_) if polls.get(i).is_some_and(|p| p.breaker == "open") => {
                Some("upstream circuit open")
            }
            Some(_) => None,
        };
        if self.state.sharded() {
            let not_ready: Vec<(&str, &str)> = (self.state.shards.iter().enumerate())
                .filter_map(|(i, shard)| Some((shard.url.as_str(), why(i, shard.snap.load())?)))
                .collect();
            let age = self.state.store.load().map_or(0, |f| f.age_ms(now));
            if not_ready.is_empty() {
                return Response::json(200, format!("{{\"ready\":true,\"age_ms\":{age}}}"));
            }
            let body = format!(
                "{{\"ready\":false,\"shards_not_ready\":{},\"age_ms\":{age},\"max_age_ms\":{max}}}",
                upstream_errors(not_ready.into_iter())
            );
            return Response::json(503, body);
        }
        let snap = self.state.shards.first().and_then(|s| s.snap.load());
        let Some(age) = snap.as_ref().map(|s| s.age_ms(now)) else {
            return Response::json(503, "{\"ready\":false,\"error\":\"no snapshot yet\"}");
        };
        let Some(reason) = why(0, snap) else {
            return Response::json(200, format!("{{\"ready\":true,\"age_ms\":{age}}}"));
        };
        let body = format!(
            "{{\"ready\":false,\"error\":\"{reason}\",\"age_ms\":{age},\"max_age_ms\":{max}}}"
        );
        Response::json(503, body)
    }

    /// The whole table pre-rendered, or, with filter, paging or CSV
    /// parameters, an answer rendered for this request (see `filter`).
    fn list_metrics(&self, req: &Request) -> Response {
        let filter = match Filter::from_request(req) {
            Ok(f) => f,
            Err(e) => return Response::error(400, &e.to_string()),
        };
        let now = clock::epoch_ms();
        let served = match self.fresh(now) {
            Ok(served) => served,
            Err(resp) => return resp,
        };
        let missing = self.missing_shards(&served);
        let Served { fabric, stale } = served;
        let whole = filter.is_whole_table();
        let mut resp = if whole && filter.format == Format::Json {
            Response::json_chunks(200, fabric.list_body(now, &stale, &missing))
        } else {
            match filter.render(&fabric, now, &stale, &missing) {
                Ok(resp) => resp,
                Err(e) => return Response::error(400, &e.to_string()),
            }
        };
        // gzip if asked for: the whole table's deflated once per snapshot,
        // a filtered answer (made for this request anyway) now.
        let gzip = gzip::accepted(req.headers_named("Accept-Encoding"))
            .then(|| match (whole, filter.format) {
                (true, Format::Json) => fabric.list_body_gzip(now, &stale, &missing),
                (true, Format::Csv) => fabric.csv_table_gzip(&stale),
                _ => gzip::compress(&resp.body_bytes()),
            })
            .flatten();
        let etag = match (filter.format, gzip.is_some()) {
            (Format::Json, false) => &fabric.etag,
            (Format::Csv, false) => &fabric.csv_etag,
            (Format::Json, true) => &fabric.etag_gz,
            (Format::Csv, true) => &fabric.csv_etag_gz,
        };
        if let Some(body) = gzip {
            resp.body = body;
            resp = resp.header("Content-Encoding", "gzip");
        }
        let age = fabric.served_age_ms(now, &stale);
        // JSON or CSV by Accept, plain or gzip: caches keep them apart.
        let resp = data_headers(resp, etag, age).header("Vary", "Accept, Accept-Encoding");
        not_modified_if_current(req, resp, etag)
    }

    /// The answer of GetMetric or History: `answer` given the row's id,
    /// the metric and where they are, once the query is read (refused
    /// with `refuse` if it says so, else as `cell` says).
    fn with_cell(
        &self,
        req: &Request,
        refuse: Option<Response>,
        answer: impl FnOnce(&str, &str, Cell) -> Response,
    ) -> Response {
        let params = match query::strict(&req.query, CELL_PARAMS) {
            Ok(p) => p,
            Err(e) => return Response::error(400, &e.to_string()),
        };
        let (asked, switch_id, metric) = match row_and_metric(&params) {
            Ok(both) => both,
            Err(resp) => return resp,
        };
        if let Some(resp) = refuse {
            return resp;
        }
        match self.cell(asked, switch_id, metric, clock::epoch_ms()) {
            Ok(cell) => answer(switch_id, metric, cell),
            Err(resp) => resp,
        }
    }

    fn get_metric(&self, req: &Request) -> Response {
        self.with_cell(req, None, |switch_id, metric, cell| {
            self.metric_answer(req, switch_id, metric, cell)
        })
    }

    fn metric_answer(&self, req: &Request, switch_id: &str, metric: &str, cell: Cell) -> Response {
        let Cell {
            fabric,
            row,
            col,
            age,
            ..
        } = cell;
        let etag = &fabric.etag;
        let cells = fabric.cells(row);
        let value = cells.get(col);
        if !cells.has(col) {
            let msg = format!(
                "metric {} not reported for {}",
                json::clip(metric, 128),
                json::clip(switch_id, 128)
            );
            return data_headers(Response::error(404, &msg), etag, age);
        }
        let mut body = String::with_capacity(96 + switch_id.len() + metric.len());
        body.push_str("{\"");
        body.push_str(fabric.id_name);
        body.push_str("\":");
        json::push_str(&mut body, switch_id);
        body.push_str(",\"metric\":");
        json::push_str(&mut body, metric);
        body.push_str(",\"value\":");
        body.push_str(value);
        body.push_str(",\"snapshot_id\":");
        json::push_str(&mut body, fabric.id());
        body.push_str(",\"age_ms\":");
        let _ = write!(body, "{age}");
        body.push('}');
        let resp = data_headers(Response::json(200, body), etag, age);
        not_modified_if_current(req, resp, etag)
    }

    /// `/telemetry/History`: the switch's points from its own shard's
    /// history, refused as GetMetric would be (see `history`).
    fn history(&self, req: &Request) -> Response {
        let off = (self.state.history_snapshots() == 0)
            .then(|| Response::error(404, "history is off (HISTORY_SNAPSHOTS=0)"));
        self.with_cell(req, off, |switch_id, metric, cell| {
            self.history_answer(req, switch_id, metric, cell)
        })
    }

    fn history_answer(&self, req: &Request, switch_id: &str, metric: &str, cell: Cell) -> Response {
        let Cell {
            fabric,
            part,
            age,
            col,
            ..
        } = cell;
        let etag = &fabric.etag;
        if fabric.kinds.get(col).is_some_and(|k| k.is_text()) {
            let msg = format!(
                "{} is text, not a value: history keeps values",
                json::clip(metric, 128)
            );
            return data_headers(Response::error(400, &msg), etag, age);
        }
        let part = &fabric.parts()[part];
        let entries = self
            .state
            .shards
            .get(part.shard)
            .map(|s| s.history.entries())
            .unwrap_or_default();
        let body = history::body(&entries, part.snap.id(), fabric.id_name, switch_id, metric);
        let etag = &history::etag(fabric.id(), &entries);
        let resp = data_headers(Response::json(200, body), etag, age);
        not_modified_if_current(req, resp, etag)
    }

    /// Where `switch_id` × `metric` is in the fabric served at `now`, or
    /// the answer that says why it cannot be read: 503 (no snapshot yet,
    /// or the switch's shard is stale) or 404 (unknown row or metric; the
    /// row named as the client did, `asked`: `id` or `switch_id`).
    fn cell(&self, asked: &str, switch_id: &str, metric: &str, now: u64) -> Result<Cell, Response> {
        let Served { fabric, stale } = self.fresh(now)?;
        let Some(row) = fabric.row(switch_id) else {
            let msg = format!("unknown {asked}: {}", json::clip(switch_id, 128));
            return Err(data_headers(
                Response::error(404, &msg),
                &fabric.etag,
                fabric.age_ms(now),
            ));
        };
        // The switch's own shard says how old its numbers are.
        let part = fabric.part_of(row);
        let age = fabric.parts()[part].snap.age_ms(now);
        if stale[part] {
            let max = self.freshness.max_stale.map_or(0, |m| m.as_millis() as u64);
            let body =
                format!("{{\"error\":\"data stale\",\"age_ms\":{age},\"max_stale_ms\":{max}}}");
            return Err(data_headers(Response::json(503, body), &fabric.etag, age));
        }
        let Some(col) = fabric.column(metric) else {
            let msg = format!("unknown metric: {}", json::clip(metric, 128));
            return Err(data_headers(Response::error(404, &msg), &fabric.etag, age));
        };
        Ok(Cell {
            fabric,
            row,
            col,
            part,
            age,
        })
    }

    fn stats(&self) -> Response {
        let fabric = self.state.store.load();
        let urls: Vec<String> = self.state.shards.iter().map(|s| s.url.clone()).collect();
        let history = self.state.history_figures();
        let body = stats::render(
            &self.state.stats,
            fabric.as_deref(),
            clock::epoch_ms(),
            &urls,
            history,
            self.state.upstream_tls(),
        );
        Response::json(200, body)
    }
}

/// What GetMetric and History take: the row (`id`, or its original name
/// `switch_id`) and the metric.
const CELL_PARAMS: &[&str] = &["id", "switch_id", "metric"];

/// The row and `metric` parameters, both required and non-empty, with the
/// row's parameter name as given (`id` or `switch_id`); or the 400 naming
/// the first one missing, or both row names given.
fn row_and_metric<'a>(
    params: &'a [(&'static str, std::borrow::Cow<'a, str>)],
) -> Result<(&'static str, &'a str, &'a str), Response> {
    let given = |name: &str| params.iter().any(|(k, _)| *k == name);
    if given("id") && given("switch_id") {
        return Err(Response::error(
            400,
            "id and switch_id are the same parameter: give one",
        ));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
            .filter(|v| !v.is_empty())
    };
    let (asked, row) = match param("id") {
        Some(id) => ("id", Some(id)),
        None if given("id") => ("id", None),
        None => ("switch_id", param("switch_id")),
    };
    match (row, param("metric")) {
        (Some(row), Some(metric)) => Ok((asked, row, metric)),
        (None, _) => Err(Response::error(
            400,
            &format!("missing query parameter: {asked}"),
        )),
        (Some(_), None) => Err(Response::error(400, "missing query parameter: metric")),
    }
}

/// A switch × metric of the fabric served: its row, column, part (shard)
/// and that part's age.
struct Cell {
    fabric: Arc<Fabric>,
    row: usize,
    col: usize,
    part: usize,
    age: u64,
}

/// A fabric a data answer may be made of, and which of its parts are too
/// old to serve.
struct Served {
    fabric: Arc<Fabric>,
    stale: Vec<bool>,
}

/// `[{"upstream":"…","error":"…"},…]`: shards and what is wrong with each.
fn upstream_errors<'a>(items: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("[");
    for (i, (url, why)) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"upstream\":");
        json::push_str(&mut out, url);
        out.push_str(",\"error\":");
        json::push_str(&mut out, why);
        out.push('}');
    }
    out.push(']');
    out
}

/// The headers every data answer carries: which snapshot (as the entity tag
/// `etag` of this representation), how old (`age_ms`), and that a cache may
/// keep it but must ask again (with `If-None-Match`) before each use.
fn data_headers(resp: Response, etag: &str, age_ms: u64) -> Response {
    resp.header("ETag", etag.to_string())
        .header("X-Data-Age-Ms", age_ms.to_string())
        .header("Cache-Control", "no-cache")
}

/// `resp` as a 304 if it is a 200 and an `If-None-Match` of `req` names
/// `etag` (the quoted tag `resp` carries). The 304 keeps every header and
/// the body, which the writer does not send but counts, so the 304's
/// `Content-Length` is the 200's, as RFC 9110 §8.6 allows.
fn not_modified_if_current(req: &Request, mut resp: Response, etag: &str) -> Response {
    let tag = etag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(etag);
    if resp.status == 200
        && req
            .headers_named("If-None-Match")
            .any(|h| http::if_none_match(h, tag))
    {
        resp.status = 304;
    }
    resp
}

fn no_snapshot() -> Response {
    Response::error(503, "no snapshot yet")
}

impl Handler for Routes {
    fn handle(&self, req: &Request) -> Response {
        let path = req.path.as_str();
        if ![
            LIST, GET, HISTORY, STATS, HEALTH, READY, METRICS, STREAM, PAGE,
        ]
        .contains(&path)
        {
            return Response::unknown_path(path);
        }
        if !req.is_read() {
            return Response::method_not_allowed(&req.method);
        }
        // Only the data endpoints take parameters, and read their own.
        if ![LIST, GET, HISTORY, STREAM].contains(&path) {
            if let Err(e) = query::strict(&req.query, &[]) {
                return Response::error(400, &e.to_string());
            }
        }
        match path {
            LIST => self.list_metrics(req),
            GET => self.get_metric(req),
            HISTORY => self.history(req),
            STATS => self.stats(),
            READY => self.ready(),
            STREAM => stream::subscribe(&self.state, &self.subscribers, req),
            PAGE => self.page.response(),
            METRICS => {
                let (state, now) = (&self.state, clock::epoch_ms());
                let mut resp = Response::new(200)
                    .header("Content-Type", crate::prometheus::CONTENT_TYPE)
                    .header("Vary", "Accept-Encoding");
                let gzip = gzip::accepted(req.headers_named("Accept-Encoding"))
                    .then(|| metrics::render_gzip(state, &self.exposition, now))
                    .flatten();
                match gzip {
                    Some(body) => {
                        resp.body = body;
                        resp = resp.header("Content-Encoding", "gzip");
                    }
                    None => resp.body = metrics::render(state, &self.exposition, now),
                }
                resp
            }
            _ => Response::json(200, "{\"ok\":true}"),
        }
    }

    fn observe(&self, req: &Request, status: u16, elapsed: Duration) {
        self.state.stats.record_request(&req.path, status, elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::store::snapshot::{Limits, Origin};
    use serde_json::Value;

    fn routes_with(csv: Option<&str>) -> Routes {
        routes_fresh(csv, Freshness::default())
    }

    fn routes_fresh(csv: Option<&str>, freshness: Freshness) -> Routes {
        let state = Arc::new(State::default());
        if let Some(csv) = csv {
            let origin = Origin {
                id: "snap-1".into(),
                producer_ts_ms: Some(clock::epoch_ms() - 2_000),
                fetched_ms: clock::epoch_ms(),
            };
            let snap = Snapshot::parse(csv.as_bytes(), origin, Limits { max_rows: 100 }).unwrap();
            state.publish(0, Arc::new(snap));
        }
        Routes::new(state, freshness)
    }

    fn routes() -> Routes {
        routes_with(Some(
            "switch_id,bandwidth_gbps,cpu_util_pct,packet_errors\nsw-000,121.5,34.1,0\nsw-001,118.3,36.5,1\n",
        ))
    }

    fn body(resp: &Response) -> Value {
        serde_json::from_slice(&resp.body_bytes()).unwrap()
    }

    #[test]
    fn get_metric_answers_with_the_csv_number() {
        let r = routes();
        let resp = r.handle(&Request::get(
            "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct",
        ));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header_value("etag"), Some("\"snap-1\""));
        let age: u64 = resp.header_value("x-data-age-ms").unwrap().parse().unwrap();
        assert!((2_000..60_000).contains(&age));
        let v = body(&resp);
        assert_eq!(v["switch_id"], "sw-000");
        assert_eq!(v["metric"], "cpu_util_pct");
        assert_eq!(v["value"], 34.1);
        assert_eq!(v["snapshot_id"], "snap-1");
        assert!(v["age_ms"].as_u64().unwrap() >= 2_000);
        let resp = r.handle(&Request::get(
            "/telemetry/GetMetric?metric=packet_errors&switch_id=sw-000",
        ));
        let text = String::from_utf8(resp.body_bytes()).unwrap();
        assert!(text.contains("\"value\":0,"), "{text}");
    }

    /// A state of `urls.len()` shards keeping `keep` snapshots of history.
    fn history_state(shards: usize, keep: usize) -> Arc<State> {
        let urls: Vec<String> = (0..shards).map(|i| format!("http://u{i}/c")).collect();
        Arc::new(State::new(&urls).with_history(keep))
    }

    fn publish(state: &State, shard: usize, id: &str, ts: u64, csv: &str) {
        let origin = Origin {
            id: id.into(),
            producer_ts_ms: Some(ts),
            fetched_ms: clock::epoch_ms(),
        };
        let snap = Snapshot::parse(csv.as_bytes(), origin, Limits { max_rows: 100 }).unwrap();
        state.publish(shard, Arc::new(snap));
    }

    #[test]
    fn history_answers_the_points_oldest_first_with_get_metrics_errors() {
        let state = history_state(1, 3);
        let r = Routes::new(state.clone(), Freshness::default());
        let target = "/telemetry/History?switch_id=sw-000&metric=a";
        assert_eq!(r.handle(&Request::get(target)).status, 503);
        let now = clock::epoch_ms();
        for (i, v) in ["1.50", "-0", "1e3", "121.5", "7"].iter().enumerate() {
            let csv = format!("switch_id,a,b\nsw-000,{v},0\nsw-001,{i},1\n");
            publish(&state, 0, &format!("s{i}"), now - 5_000 + i as u64, &csv);
        }
        let ok = r.handle(&Request::get(target));
        assert_eq!(ok.status, 200);
        let text = String::from_utf8(ok.body_bytes()).unwrap();
        let (t0, t1, t2) = (now - 4_998, now - 4_997, now - 4_996);
        assert_eq!(
            text,
            format!(
                "{{\"switch_id\":\"sw-000\",\"metric\":\"a\",\"points\":[[{t0},1e3],[{t1},121.5],[{t2},7]]}}"
            )
        );
        let tag = ok.header_value("etag").unwrap().to_string();
        let entries = state.shards[0].history.entries();
        assert_eq!(tag, history::etag("s4", &entries));
        assert!(tag.starts_with("\"s4-h"), "{tag}");
        assert_eq!(ok.header_value("cache-control"), Some("no-cache"));
        let age: u64 = ok.header_value("x-data-age-ms").unwrap().parse().unwrap();
        assert!(age >= 4_996, "{age}");
        let weak = format!("W/{tag}");
        for inm in [tag.as_str(), weak.as_str(), "*"] {
            let resp = r.handle(&Request::get(target).with_header("If-None-Match", inm));
            assert_304_of(&resp, &ok, inm);
        }
        // The data's own tag names the data, not these points.
        for inm in ["\"s3\"", "\"s4\""] {
            let resp = r.handle(&Request::get(target).with_header("If-None-Match", inm));
            assert_eq!(resp.status, 200, "{inm}");
        }
        for (q, status, msg) in [
            ("", 400, "missing query parameter: switch_id"),
            ("switch_id=sw-000", 400, "missing query parameter: metric"),
            (
                "switch_id=sw-000&metric=",
                400,
                "missing query parameter: metric",
            ),
            (
                "switch_id=%zz&metric=a",
                400,
                "malformed query string: bad %-escape",
            ),
            (
                "switch_id=sw-000&metric=a&limit=1",
                400,
                "unknown query parameter: limit (want one of id, switch_id, metric)",
            ),
            (
                "switch_id=sw-000&metric=a&metric=b",
                400,
                "repeated query parameter: metric",
            ),
            (
                "switch_id=sw-999&metric=a",
                404,
                "unknown switch_id: sw-999",
            ),
            ("switch_id=sw-000&metric=nope", 404, "unknown metric: nope"),
        ] {
            let resp = r.handle(
                &Request::get(&format!("/telemetry/History?{q}")).with_header("If-None-Match", "*"),
            );
            assert_eq!(
                (resp.status, body(&resp)["error"].as_str()),
                (status, Some(msg)),
                "{q}"
            );
            // 404s are data answers, naming the snapshot.
            let tagged = resp.header_value("etag").is_some();
            assert_eq!(tagged, status == 404, "{q}");
        }
        // Stale: 503, as GetMetric.
        let strict = Freshness {
            max_stale: Some(Duration::from_millis(500)),
            ..Freshness::default()
        };
        let resp = Routes::new(state, strict).handle(&Request::get(target));
        assert_eq!(
            (resp.status, body(&resp)["error"].as_str()),
            (503, Some("data stale"))
        );
    }

    #[test]
    fn history_off_keeps_nothing_and_says_so() {
        let state = history_state(1, 0);
        publish(&state, 0, "s0", clock::epoch_ms(), "switch_id,a\nx,1\n");
        assert_eq!(state.history_figures(), Default::default());
        let r = Routes::new(state, Freshness::default());
        let resp = r.handle(&Request::get("/telemetry/History?switch_id=x&metric=a"));
        assert_eq!(resp.status, 404);
        assert_eq!(body(&resp)["error"], "history is off (HISTORY_SNAPSHOTS=0)");
        let resp = r.handle(&Request::get("/telemetry/History?switch_id=x"));
        assert_eq!(resp.status, 400);
        let v = body(&r.handle(&Request::get("/stats")));
        assert_eq!(
            v["history"],
            serde_json::json!({"snapshots":0,"entries":0,"bytes":0})
        );
    }

    #[test]
    fn a_switchs_history_follows_its_own_shard() {
        let state = history_state(2, 10);
        let now = clock::epoch_ms();
        // Shard 0 ticks three times, shard 1 once; both send `dup`, which
        // is shard 0's.
        publish(&state, 1, "b0", now - 100, "switch_id,m\nb,10\ndup,99\n");
        for i in 0..3u64 {
            let csv = format!("switch_id,m\na,{i}\ndup,{i}.5\n");
            publish(&state, 0, &format!("a{i}"), now - 50 + i, &csv);
        }
        assert_eq!(state.shards[0].history.entries().len(), 3);
        assert_eq!(state.shards[1].history.entries().len(), 1);
        let f = state.history_figures();
        assert_eq!((f.snapshots, f.entries), (10, 4));
        assert!(f.bytes > 0);
        let r = Routes::new(state.clone(), Freshness::default());
        let points = |sw: &str| {
            let resp = r.handle(&Request::get(&format!(
                "/telemetry/History?switch_id={sw}&metric=m"
            )));
            assert_eq!(resp.status, 200, "{sw}");
            let data = state.store.load().unwrap().etag.clone();
            let tag = resp.header_value("etag").unwrap_or_default();
            assert!(
                tag.starts_with(&format!("{}-h", data.trim_end_matches('"'))),
                "{tag}"
            );
            body(&resp)["points"].clone()
        };
        assert_eq!(points("b"), serde_json::json!([[now - 100, 10]]));
        assert_eq!(points("a").as_array().unwrap().len(), 3);
        assert_eq!(
            points("dup"),
            serde_json::json!([[now - 50, 0.5], [now - 49, 1.5], [now - 48, 2.5]])
        );
        let v = body(&r.handle(&Request::get("/stats")));
        assert_eq!(v["history"]["entries"], 4);
    }

    #[test]
    fn get_metric_errors() {
        let r = routes();
        for (q, status, msg) in [
            ("", 400, "missing query parameter: switch_id"),
            ("switch_id=sw-000", 400, "missing query parameter: metric"),
            (
                "switch_id=&metric=x",
                400,
                "missing query parameter: switch_id",
            ),
            (
                "switch_id=sw-000&metric=",
                400,
                "missing query parameter: metric",
            ),
            (
                "switch_id=%zz&metric=x",
                400,
                "malformed query string: bad %-escape",
            ),
            (
                "switch_id=sw-999&metric=cpu_util_pct",
                404,
                "unknown switch_id: sw-999",
            ),
            ("switch_id=sw-000&metric=nope", 404, "unknown metric: nope"),
            (
                "switch_id=sw-000&metric=cpu_util_pct&switch_id=sw-001",
                400,
                "repeated query parameter: switch_id",
            ),
            (
                "switch_id=sw-000&metric=cpu_util_pct&format=csv",
                400,
                "unknown query parameter: format (want one of id, switch_id, metric)",
            ),
            (
                "switch_id=sw-000&metric=switch_id",
                404,
                "unknown metric: switch_id",
            ),
        ] {
            let resp = r.handle(&Request::get(&format!("/telemetry/GetMetric?{q}")));
            assert_eq!(resp.status, status, "{q}");
            assert_eq!(resp.header_value("content-type"), Some("application/json"));
            assert_eq!(body(&resp)["error"], msg, "{q}");
        }
    }

    #[test]
    fn before_the_first_snapshot_data_endpoints_answer_503() {
        let r = routes_with(None);
        for target in [
            "/telemetry/ListMetrics",
            "/telemetry/GetMetric?switch_id=a&metric=b",
        ] {
            let resp = r.handle(&Request::get(target));
            assert_eq!(resp.status, 503, "{target}");
            assert_eq!(body(&resp)["error"], "no snapshot yet");
        }
        assert_eq!(r.handle(&Request::get("/health")).status, 200);
        assert_eq!(r.handle(&Request::get("/stats")).status, 200);
    }

    #[test]
    fn list_metrics_is_the_whole_table() {
        let resp = routes().handle(&Request::get("/telemetry/ListMetrics"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header_value("etag"), Some("\"snap-1\""));
        let v = body(&resp);
        assert_eq!(v["snapshot_id"], "snap-1");
        assert_eq!(
            v["fields"],
            serde_json::json!(["bandwidth_gbps", "cpu_util_pct", "packet_errors"])
        );
        assert_eq!(v["items"].as_array().unwrap().len(), 2);
        assert_eq!(v["items"][1]["switch_id"], "sw-001");
        assert_eq!(v["items"][1]["packet_errors"], 1);
        let header_age: u64 = resp.header_value("x-data-age-ms").unwrap().parse().unwrap();
        assert!(v["age_ms"].as_u64().unwrap() >= header_age);
    }

    /// Routes over a snapshot stamped in the future, so its age is always 0
    /// and bodies can be compared byte for byte.
    fn routes_ageless() -> (Routes, Arc<Fabric>) {
        let state = Arc::new(State::default());
        let origin = Origin {
            id: "snap-0".into(),
            producer_ts_ms: Some(clock::epoch_ms() + 3_600_000),
            fetched_ms: clock::epoch_ms(),
        };
        let csv = "switch_id,a,b\nsw-000,1.50,0\n\"x,\"\"y\"\"\",2,1e3\nsw-001,3,4\n";
        let snap = Snapshot::parse(csv.as_bytes(), origin, Limits { max_rows: 10 }).unwrap();
        state.publish(0, Arc::new(snap));
        let fabric = state.store.load().unwrap();
        (Routes::new(state, Freshness::default()), fabric)
    }

    fn list(r: &Routes, query: &str, accept: Option<&str>) -> Response {
        let mut req = Request::get(&format!("/telemetry/ListMetrics?{query}"));
        if let Some(a) = accept {
            req = req.with_header("Accept", a);
        }
        r.handle(&req)
    }

    fn text(resp: &Response) -> String {
        String::from_utf8(resp.body_bytes()).unwrap()
    }

    #[test]
    fn list_metrics_default_is_the_prerendered_body() {
        let (r, snap) = routes_ageless();
        let want: Vec<u8> = snap
            .list_body(0, &[], "")
            .iter()
            .flat_map(|c| c.bytes().to_vec())
            .collect();
        // The same document a page of every row is: `total` and all.
        let page = Filter::parse("").unwrap().select(&snap, &[]).unwrap();
        assert_eq!(String::from_utf8_lossy(&want), page.json(&snap, 0, ""));
        for (query, accept) in [
            ("", None),
            ("format=json", None),
            ("format=json", Some("text/csv")),
            ("format=JSON&&", None),
            ("", Some("*/*")),
            ("", Some("application/json")),
        ] {
            let resp = list(&r, query, accept);
            assert_eq!(resp.status, 200, "{query}");
            assert_eq!(resp.body_bytes(), want, "{query} {accept:?}");
            // The shared, pre-rendered parts: no per-request rendering.
            let again = list(&r, query, accept);
            assert!(crate::http::shares_pieces(&resp.body, &again.body, 3));
            assert_eq!(resp.header_value("content-type"), Some(crate::http::JSON));
            assert_eq!(resp.header_value("etag"), Some("\"snap-0\""));
            assert_eq!(resp.header_value("x-data-age-ms"), Some("0"));
        }
    }

    #[test]
    fn list_metrics_filters_and_pages() {
        let (r, _) = routes_ageless();
        let resp = list(&r, "fields=b&switch_prefix=sw-&limit=1", None);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header_value("etag"), Some("\"snap-0\""));
        assert_eq!(resp.header_value("x-data-age-ms"), Some("0"));
        assert_eq!(
            text(&resp),
            "{\"snapshot_id\":\"snap-0\",\"age_ms\":0,\"total\":2,\"next_offset\":1,\
             \"fields\":[\"b\"],\"items\":[{\"switch_id\":\"sw-000\",\"b\":0}]}"
        );
        let v = body(&list(&r, "switch_id=sw-001%2Csw-000,nope&offset=1", None));
        assert_eq!(v["total"], 2);
        assert_eq!(v["next_offset"], Value::Null);
        assert_eq!(
            v["items"],
            serde_json::json!([{"switch_id":"sw-001","a":3,"b":4}])
        );
    }

    #[test]
    fn list_metrics_csv_by_format_or_accept() {
        let (r, snap) = routes_ageless();
        for (query, accept) in [
            ("format=csv", None),
            ("", Some("text/csv")),
            ("format=csv", Some("application/json")),
        ] {
            let resp = list(&r, query, accept);
            assert_eq!(resp.status, 200);
            assert_eq!(
                resp.header_value("content-type"),
                Some("text/csv; charset=utf-8")
            );
            assert_eq!(resp.header_value("etag"), Some("\"snap-0-csv\""));
            assert_eq!(resp.header_value("x-data-age-ms"), Some("0"));
            let body = resp.body_bytes();
            let mut reader = crate::csv::Reader::new(&body).unwrap();
            let mut rec = Vec::new();
            assert!(reader.read_record(&mut rec).unwrap());
            assert_eq!(rec, ["switch_id", "a", "b"]);
            let mut row = 0;
            while reader.read_record(&mut rec).unwrap() {
                assert_eq!(rec[0], snap.switch_id(row));
                assert_eq!(rec[1], snap.number(row, 0));
                assert_eq!(rec[2], snap.number(row, 1));
                row += 1;
            }
            assert_eq!(row, 3);
        }
        let resp = list(&r, "format=csv&fields=b,a&switch_id=sw-001", None);
        assert_eq!(text(&resp), "switch_id,b,a\nsw-001,4,3\n");
        assert_eq!(resp.header_value("x-total-count"), Some("1"));
    }

    /// `target` with these `If-None-Match` header lines.
    fn conditional(r: &Routes, target: &str, inm: &[&str], accept: Option<&str>) -> Response {
        let mut req = Request::get(target);
        for v in inm {
            req = req.with_header("If-None-Match", v);
        }
        if let Some(a) = accept {
            req = req.with_header("Accept", a);
        }
        r.handle(&req)
    }

    /// A 304 that is the 200 but for its status: same headers (ETag, age,
    /// Vary, Cache-Control), and the body kept for its Content-Length.
    fn assert_304_of(not_modified: &Response, ok: &Response, why: &str) {
        assert_eq!(ok.status, 200, "{why}");
        assert_eq!(not_modified.status, 304, "{why}");
        assert_eq!(not_modified.headers, ok.headers, "{why}");
        assert_eq!(not_modified.body_bytes(), ok.body_bytes(), "{why}");
    }

    #[test]
    fn get_metric_is_not_modified_while_the_snapshot_is_current() {
        let (r, _) = routes_ageless();
        let target = "/telemetry/GetMetric?switch_id=sw-001&metric=b";
        let ok = r.handle(&Request::get(target));
        assert_eq!(ok.header_value("etag"), Some("\"snap-0\""));
        assert_eq!(ok.header_value("cache-control"), Some("no-cache"));
        for inm in [
            &["\"snap-0\""][..],
            &["W/\"snap-0\""],
            &["*"],
            &["\"old\", \"snap-0\""],
            &["\"a,b\",W/\"snap-0\""],
            &["\"old\"", "W/\"snap-0\""],
        ] {
            let resp = conditional(&r, target, inm, None);
            assert_304_of(&resp, &ok, &format!("{inm:?}"));
        }
        for inm in [
            &["\"snap-1\""][..],
            &["\"snap-0-csv\""],
            &["\"snap-0"],
            &["\"*\""],
            &[""],
        ] {
            let resp = conditional(&r, target, inm, None);
            assert_eq!(resp.status, 200, "{inm:?}");
        }
        let head = r.handle(&Request::new("HEAD", target).with_header("If-None-Match", "*"));
        assert_eq!(head.status, 304);
    }

    #[test]
    fn list_metrics_is_not_modified_in_every_form_with_its_own_tag() {
        let (r, _) = routes_ageless();
        const JSON_TAG: &str = "\"snap-0\"";
        const CSV_TAG: &str = "\"snap-0-csv\"";
        for (target, accept, tag) in [
            ("/telemetry/ListMetrics", None, JSON_TAG),
            (
                "/telemetry/ListMetrics?format=json",
                Some("text/csv"),
                JSON_TAG,
            ),
            ("/telemetry/ListMetrics?fields=b&limit=1", None, JSON_TAG),
            ("/telemetry/ListMetrics", Some("text/csv"), CSV_TAG),
            ("/telemetry/ListMetrics?format=csv", None, CSV_TAG),
            (
                "/telemetry/ListMetrics?switch_prefix=sw-&format=csv",
                None,
                CSV_TAG,
            ),
        ] {
            let why = format!("{target} Accept {accept:?}");
            let ok = conditional(&r, target, &[], accept);
            assert_eq!(ok.header_value("etag"), Some(tag), "{why}");
            assert_eq!(
                ok.header_value("vary"),
                Some("Accept, Accept-Encoding"),
                "{why}"
            );
            assert_eq!(ok.header_value("cache-control"), Some("no-cache"), "{why}");
            let weak = format!("W/{tag}");
            let listed = format!("\"x\", {tag}");
            for inm in [tag, weak.as_str(), "*", listed.as_str()] {
                let resp = conditional(&r, target, &[inm], accept);
                assert_304_of(&resp, &ok, &format!("{why} If-None-Match {inm}"));
            }
            // The other representation's tag is not this one's.
            let other = if tag == JSON_TAG { CSV_TAG } else { JSON_TAG };
            let resp = conditional(&r, target, &[other], accept);
            assert_eq!(resp.status, 200, "{why} If-None-Match {other}");
            // A cache holding both names both; the 304 says which is current.
            let both = format!("{JSON_TAG}, {CSV_TAG}");
            let resp = conditional(&r, target, &[&both], accept);
            assert_eq!(resp.status, 304, "{why}");
            assert_eq!(resp.header_value("etag"), Some(tag), "{why}");
        }
    }

    #[test]
    fn preconditions_never_hide_an_error() {
        // No snapshot yet: 503, whatever the request names.
        let none = routes_with(None);
        for target in [
            "/telemetry/ListMetrics",
            "/telemetry/ListMetrics?format=csv",
            "/telemetry/GetMetric?switch_id=a&metric=b",
        ] {
            let resp = conditional(&none, target, &["*"], None);
            assert_eq!(resp.status, 503, "{target}");
        }
        // Stale data (2 s old, 0.5 s allowed): 503 even for the current tag.
        let strict = Freshness {
            max_stale: Some(Duration::from_millis(500)),
            ..Freshness::default()
        };
        let stale = routes_fresh(Some("switch_id,a\nsw-000,1\n"), strict);
        for (target, tag) in [
            ("/telemetry/ListMetrics", "\"snap-1\""),
            ("/telemetry/ListMetrics?format=csv", "\"snap-1-csv\""),
            (
                "/telemetry/GetMetric?switch_id=sw-000&metric=a",
                "\"snap-1\"",
            ),
        ] {
            for inm in [tag, "*"] {
                let resp = conditional(&stale, target, &[inm], None);
                assert_eq!(resp.status, 503, "{target} {inm}");
                assert_eq!(body(&resp)["error"], "data stale");
            }
        }
        // Bad requests stay 400, unknown names 404.
        let (r, _) = routes_ageless();
        for (target, status) in [
            ("/telemetry/ListMetrics?limit=0", 400),
            ("/telemetry/ListMetrics?fields=nope", 400),
            ("/telemetry/ListMetrics?format=csv&fields=nope", 400),
            ("/telemetry/ListMetrics?x=%zz", 400),
            ("/telemetry/GetMetric?switch_id=sw-000", 400),
            ("/telemetry/GetMetric?switch_id=%zz&metric=a", 400),
            ("/telemetry/GetMetric?switch_id=sw-999&metric=a", 404),
            ("/telemetry/GetMetric?switch_id=sw-000&metric=zz", 404),
        ] {
            for inm in ["*", "\"snap-0\"", "\"snap-0-csv\""] {
                let resp = conditional(&r, target, &[inm], None);
                assert_eq!(resp.status, status, "{target} {inm}");
            }
        }
    }

    #[test]
    fn list_metrics_bad_parameters_are_400_naming_the_value() {
        let (r, _) = routes_ageless();
        for (query, msg) in [
            ("fields=a,nope", "unknown field: nope"),
            ("fields=a,,b", "empty element in fields: a,,b"),
            ("limit=0", "invalid limit: 0 (want an integer 1..=100000)"),
            (
                "limit=abc",
                "invalid limit: abc (want an integer 1..=100000)",
            ),
            (
                "offset=-3",
                "invalid offset: -3 (want a non-negative integer)",
            ),
            ("format=xml", "invalid format: xml (want json or csv)"),
            ("format=csv&fields=zz", "unknown field: zz"),
            ("x=%zz", "malformed query string: bad %-escape"),
        ] {
            let resp = list(&r, query, None);
            assert_eq!(resp.status, 400, "{query}");
            assert_eq!(resp.header_value("content-type"), Some(crate::http::JSON));
            assert_eq!(body(&resp)["error"], msg, "{query}");
        }
        // Syntax is checked before the snapshot; names need one.
        let none = routes_with(None);
        assert_eq!(list(&none, "limit=0", None).status, 400);
        assert_eq!(list(&none, "fields=nope&format=csv", None).status, 503);
    }

    #[test]
    fn filtered_and_csv_answers_respect_staleness() {
        let strict = Freshness {
            max_stale: Some(Duration::from_millis(500)),
            ..Freshness::default()
        };
        let r = routes_fresh(Some("switch_id,a\nsw-000,1\n"), strict);
        for query in ["limit=1", "format=csv", "fields=a&switch_id=sw-000"] {
            let resp = list(&r, query, None);
            assert_eq!(resp.status, 503, "{query}");
            assert_eq!(body(&resp)["error"], "data stale");
        }
    }

    fn gunzip(resp: &Response) -> Vec<u8> {
        use std::io::Read;
        let body = resp.body_bytes();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn list_metrics_in_gzip_has_its_own_tag_and_the_same_content() {
        let (r, snap) = routes_ageless();
        let gz = |target: &str, accept: Option<&str>, inm: Option<&str>| {
            let mut req = Request::get(target).with_header("Accept-Encoding", "gzip, br");
            if let Some(a) = accept {
                req = req.with_header("Accept", a);
            }
            if let Some(t) = inm {
                req = req.with_header("If-None-Match", t);
            }
            r.handle(&req)
        };
        for (target, accept, tag) in [
            ("/telemetry/ListMetrics", None, "\"snap-0-gz\""),
            (
                "/telemetry/ListMetrics",
                Some("text/csv"),
                "\"snap-0-csv-gz\"",
            ),
            (
                "/telemetry/ListMetrics?format=csv",
                None,
                "\"snap-0-csv-gz\"",
            ),
            (
                "/telemetry/ListMetrics?sort=-a&limit=2",
                None,
                "\"snap-0-gz\"",
            ),
            (
                "/telemetry/ListMetrics?fields=b&format=csv",
                None,
                "\"snap-0-csv-gz\"",
            ),
        ] {
            let plain = conditional(&r, target, &[], accept);
            let resp = gz(target, accept, None);
            assert_eq!(resp.status, 200, "{target}");
            assert_eq!(resp.header_value("content-encoding"), Some("gzip"));
            assert_eq!(resp.header_value("etag"), Some(tag), "{target}");
            assert_eq!(resp.header_value("vary"), Some("Accept, Accept-Encoding"));
            assert_eq!(gunzip(&resp), plain.body_bytes(), "{target}");
            assert_eq!(plain.header_value("content-encoding"), None);
            // Each form's tag makes a 304 of that form only.
            assert_eq!(gz(target, accept, Some(tag)).status, 304, "{target}");
            let plain_tag = plain.header_value("etag").unwrap();
            assert_eq!(gz(target, accept, Some(plain_tag)).status, 200, "{target}");
            assert_eq!(conditional(&r, target, &[tag], accept).status, 200);
        }
        // The whole table's deflated parts are shared between requests.
        let a = gz("/telemetry/ListMetrics", None, None);
        let b = gz("/telemetry/ListMetrics", None, None);
        assert!(crate::http::shares_pieces(&a.body, &b.body, 2));
        assert_eq!(snap.rows(), 3);
        // Refused gzip stays plain; errors are never compressed.
        let req = Request::get("/telemetry/ListMetrics").with_header("Accept-Encoding", "gzip;q=0");
        assert_eq!(r.handle(&req).header_value("content-encoding"), None);
        let resp = gz("/telemetry/ListMetrics?limit=0", None, None);
        assert_eq!(
            (resp.status, resp.header_value("content-encoding")),
            (400, None)
        );
    }

    #[test]
    fn endpoints_without_parameters_refuse_any() {
        let r = routes();
        for path in ["/stats", "/health", "/ready", "/metrics"] {
            let resp = r.handle(&Request::get(&format!("{path}?verbose=1")));
            assert_eq!(resp.status, 400, "{path}");
            assert_eq!(
                body(&resp)["error"],
                "unknown query parameter: verbose (this endpoint takes none)"
            );
            // An empty query (`/health?`) is no parameter at all.
            assert_eq!(r.handle(&Request::get(&format!("{path}?"))).status, 200);
        }
    }

    #[test]
    fn unknown_paths_and_methods() {
        let r = routes();
        let resp = r.handle(&Request::get("/telemetry/Nope"));
        assert_eq!(resp.status, 404);
        assert_eq!(body(&resp)["error"], "unknown path: /telemetry/Nope");
        let resp = r.handle(&Request::new("DELETE", "/telemetry/ListMetrics"));
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header_value("allow"), Some("GET, HEAD"));
        assert_eq!(r.handle(&Request::new("HEAD", "/stats")).status, 200);
    }

    #[test]
    fn stale_data_is_refused_when_a_limit_is_set() {
        // The test snapshot is 2 s old.
        let csv = Some("switch_id,a\nsw-000,1\n");
        let strict = Freshness {
            max_stale: Some(Duration::from_millis(500)),
            ..Freshness::default()
        };
        let r = routes_fresh(csv, strict);
        for target in [
            "/telemetry/ListMetrics",
            "/telemetry/GetMetric?switch_id=sw-000&metric=a",
        ] {
            let resp = r.handle(&Request::get(target));
            assert_eq!(resp.status, 503, "{target}");
            let v = body(&resp);
            assert_eq!(v["error"], "data stale");
            assert!(v["age_ms"].as_u64().unwrap() >= 2_000);
            assert_eq!(v["max_stale_ms"], 500);
        }
        let lenient = Freshness {
            max_stale: Some(Duration::from_secs(60)),
            ..Freshness::default()
        };
        let r = routes_fresh(csv, lenient);
        assert_eq!(
            r.handle(&Request::get("/telemetry/ListMetrics")).status,
            200
        );
    }

    #[test]
    fn ready_says_why_not() {
        let v = body(&routes_with(None).handle(&Request::get("/ready")));
        assert_eq!(
            v,
            serde_json::json!({"ready": false, "error": "no snapshot yet"})
        );
        let r = routes();
        let resp = r.handle(&Request::get("/ready"));
        assert_eq!(resp.status, 200);
        assert_eq!(body(&resp)["ready"], true);
        r.state.stats.update_poll(0, |p| p.breaker = "open");
        let resp = r.handle(&Request::get("/ready"));
        assert_eq!(resp.status, 503);
        assert_eq!(body(&resp)["error"], "upstream circuit open");
        let strict = Freshness {
            ready_max_age: Duration::from_millis(100),
            ..Freshness::default()
        };
        let resp = routes_fresh(Some("switch_id,a\nx,1\n"), strict).handle(&Request::get("/ready"));
        assert_eq!(resp.status, 503);
        assert_eq!(body(&resp)["error"], "data stale");
    }

    #[test]
    fn observe_feeds_stats() {
        let r = routes();
        let req = Request::get("/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct");
        r.observe(&req, 200, Duration::from_micros(250));
        let v = body(&r.handle(&Request::get("/stats")));
        assert_eq!(v["endpoints"]["/telemetry/GetMetric"]["count"], 1);
        assert_eq!(v["endpoints"]["/telemetry/GetMetric"]["p99_ms"], 0.25);
        assert_eq!(v["snapshot"]["snapshot_id"], "snap-1");
    }
}

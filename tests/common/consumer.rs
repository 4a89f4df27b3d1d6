//! A consumer for forwarded deliveries on a loopback port: it records what
//! arrives and the most requests ever in flight per organisation, and
//! answers as a test scripts it. A batch (`X-Gatehouse-Batch`) is recorded
//! as one arrival per delivery it carries, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::HeaderMap;

/// One request as the consumer saw it.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub guid: String,
    pub org: String,
    pub attempt: u32,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
    /// Set when the delivery came in a batch.
    pub batch: Option<BatchInfo>,
}

/// Where in which batch request a delivery came.
#[derive(Clone, Debug)]
pub struct BatchInfo {
    /// The batch requests' count so far, from 0.
    pub request: usize,
    pub index: usize,
    pub size: usize,
    /// The whole request body, as signed.
    pub body: Arc<Vec<u8>>,
}

/// Decides the answer to a batch (its deliveries, in order): status and
/// body.
pub type BatchScript = Arc<dyn Fn(&[Arrival]) -> (u16, String) + Send + Sync>;

/// Decides the answer to each arrival (status and extra headers).
pub type Script = Arc<dyn Fn(&Arrival, usize) -> (u16, Vec<(&'static str, String)>) + Send + Sync>;

#[derive(Clone)]
pub struct Consumer {
    pub url: String,
    pub arrivals: Arc<Mutex<Vec<Arrival>>>,
    pub max_in_flight: Arc<Mutex<HashMap<String, usize>>>,
    pub max_total_in_flight: Arc<Mutex<usize>>,
}

#[derive(Clone)]
struct St {
    c: Consumer,
    in_flight: Arc<Mutex<(HashMap<String, usize>, usize)>>,
    delay: Duration,
    script: Script,
    batch_script: BatchScript,
    batches: Arc<Mutex<usize>>,
}

fn org_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/repository/owner/login")
                .and_then(|o| o.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| "-".into())
}

/// One request in flight for its organisation (and in the total, unless
/// a batch), until dropped: however the handler ends, a cancelled one
/// included (hyper drops it when its sender dies mid-request, and that
/// request is over then).
struct Counted {
    in_flight: Arc<Mutex<(HashMap<String, usize>, usize)>>,
    org: String,
    total: bool,
}

impl Counted {
    fn start(s: &St, org: &str, total: bool) -> Counted {
        let mut f = s.in_flight.lock().unwrap();
        let n = f.0.entry(org.to_string()).or_insert(0);
        *n += 1;
        let n = *n;
        let mut m = s.c.max_in_flight.lock().unwrap();
        let e = m.entry(org.to_string()).or_insert(0);
        *e = (*e).max(n);
        if total {
            f.1 += 1;
            let mut t = s.c.max_total_in_flight.lock().unwrap();
            *t = (*t).max(f.1);
        }
        Counted {
            in_flight: s.in_flight.clone(),
            org: org.to_string(),
            total,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut f = self.in_flight.lock().unwrap();
        *f.0.get_mut(&self.org).unwrap() -= 1;
        if self.total {
            f.1 -= 1;
        }
    }
}

async fn receive(State(s): State<St>, headers: HeaderMap, body: bytes::Bytes) -> Response {
    if headers.contains_key("x-gatehouse-batch") {
        return receive_batch(s, headers, body).await;
    }
    let arrival = Arrival {
        guid: headers
            .get("x-github-delivery")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        org: org_of(&body),
        attempt: headers
            .get("x-gatehouse-attempt")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        headers,
        body: body.to_vec(),
        at: Instant::now(),
        batch: None,
    };
    let counted = Counted::start(&s, &arrival.org, true);
    tokio::time::sleep(s.delay).await;
    let seen =
        s.c.arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.guid == arrival.guid)
            .count();
    let (status, extra) = (s.script)(&arrival, seen);
    s.c.arrivals.lock().unwrap().push(arrival.clone());
    drop(counted);
    let mut r = http::StatusCode::from_u16(status).unwrap().into_response();
    for (k, v) in extra {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    r
}

/// A batch: JSON array or NDJSON of `{"headers", "payload"}`.
async fn receive_batch(s: St, headers: HeaderMap, body: bytes::Bytes) -> Response {
    let ndjson = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/x-ndjson");
    let items: Vec<serde_json::Value> = if ndjson {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("an NDJSON line"))
            .collect()
    } else {
        serde_json::from_slice(&body).expect("a JSON array")
    };
    let request = {
        let mut n = s.batches.lock().unwrap();
        *n += 1;
        *n - 1
    };
    let whole = Arc::new(body.to_vec());
    let size = items.len();
    let arrivals: Vec<Arrival> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let h = &item["headers"];
            let payload = serde_json::to_vec(&item["payload"]).unwrap();
            Arrival {
                guid: h["x-github-delivery"].as_str().unwrap_or("").to_string(),
                org: org_of(&payload),
                attempt: h["x-gatehouse-attempt"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                headers: headers.clone(),
                body: payload,
                at: Instant::now(),
                batch: Some(BatchInfo {
                    request,
                    index,
                    size,
                    body: whole.clone(),
                }),
            }
        })
        .collect();
    let org = arrivals.first().map_or("-".to_string(), |a| a.org.clone());
    let counted = Counted::start(&s, &org, false);
    tokio::time::sleep(s.delay).await;
    let (status, answer) = (s.batch_script)(&arrivals);
    s.c.arrivals.lock().unwrap().extend(arrivals);
    drop(counted);
    (http::StatusCode::from_u16(status).unwrap(), answer).into_response()
}

pub async fn start(delay: Duration, script: Script) -> Consumer {
    start_with(delay, script, Arc::new(|_| (200, String::new()))).await
}

/// A consumer that answers batches as `batches` says.
pub async fn start_with(delay: Duration, script: Script, batches: BatchScript) -> Consumer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = Consumer {
        url: format!("http://{}/hook", listener.local_addr().unwrap()),
        arrivals: Arc::default(),
        max_in_flight: Arc::default(),
        max_total_in_flight: Arc::default(),
    };
    let st = St {
        c: c.clone(),
        in_flight: Arc::default(),
        delay,
        script,
        batch_script: batches,
        batches: Arc::default(),
    };
    let app = Router::new().route("/hook", post(receive)).with_state(st);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    c
}

pub fn always(status: u16) -> Script {
    Arc::new(move |_, _| (status, vec![]))
}

/// 500 while `up` is false (a consumer that is down), 200 once it is set.
pub fn up_when(up: Arc<std::sync::atomic::AtomicBool>) -> Script {
    Arc::new(move |_, _| {
        let ok = up.load(std::sync::atomic::Ordering::SeqCst);
        (if ok { 200 } else { 500 }, vec![])
    })
}

impl Consumer {
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }

    /// Waits (bounded) until `f` holds for the arrivals so far.
    pub async fn wait_for(&self, what: &str, limit: Duration, f: impl Fn(&[Arrival]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if f(&self.arrivals()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {} arrivals",
                self.arrivals().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

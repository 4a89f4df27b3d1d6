//! Storm mode: many deliveries from the fixture corpus across several
//! organisations, at a given concurrency or rate, with a share of
//! duplicates (same GUID again) and of out-of-order sends; reports what the
//! target acknowledged. Bounded by count and by `max_secs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::build_request;
use crate::config::ContentType;
use crate::templates::{Rewriter, Templates, assign_owner};

#[derive(Debug, Clone)]
pub struct Storm {
    pub target_url: String,
    pub secret: Option<String>,
    pub hook_id: i64,
    pub content_type: ContentType,
    /// Distinct deliveries (duplicates come on top).
    pub deliveries: usize,
    /// Organisations `org-0` .. `org-{n-1}` the corpus is spread across.
    pub orgs: usize,
    pub concurrency: usize,
    /// Deliveries per second; None = as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// Share of deliveries sent a second time with the same GUID.
    pub duplicate_share: f64,
    /// Share of deliveries swapped with the next one of the same org.
    pub out_of_order_share: f64,
    pub seed: u64,
    pub timeout: Duration,
    pub max_secs: u64,
}

impl Storm {
    pub fn new(target_url: &str, secret: Option<&str>, deliveries: usize) -> Storm {
        Storm {
            target_url: target_url.to_string(),
            secret: secret.map(String::from),
            hook_id: 1,
            content_type: ContentType::Json,
            deliveries,
            orgs: 4,
            concurrency: 16,
            rate: None,
            duplicate_share: 0.0,
            out_of_order_share: 0.0,
            seed: 1,
            timeout: Duration::from_secs(10),
            max_secs: 300,
        }
    }
}

/// One send in a storm.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    pub guid: String,
    pub org: String,
    pub event: String,
    /// Position of this delivery in its org's intended order.
    pub seq: usize,
    pub duplicate: bool,
    /// 0 when no answer came (refused, reset, timed out).
    pub status: u16,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub sent: usize,
    pub duplicates_sent: usize,
    pub out_of_order: usize,
    /// Distinct GUIDs the target answered 2xx for at least once.
    pub acked_guids: usize,
    pub status_counts: BTreeMap<u16, usize>,
    pub no_answer: usize,
    pub elapsed_secs: f64,
    pub per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub sends: Vec<Sent>,
}

struct Planned {
    guid: String,
    org: String,
    event: String,
    seq: usize,
    duplicate: bool,
    payload: Arc<Value>,
}

fn plan(templates: &Templates, s: &Storm) -> (Vec<Planned>, usize) {
    let corpus = templates.corpus();
    let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed);
    let orgs = s.orgs.max(1);
    let mut per_org: Vec<Vec<Planned>> = (0..orgs).map(|_| Vec::new()).collect();
    let mut cache: BTreeMap<(usize, usize), Arc<Value>> = BTreeMap::new();
    for i in 0..s.deliveries {
        let o = i % orgs;
        let c = (i / orgs) % corpus.len().max(1);
        let (event, file) = &corpus[c];
        let org = format!("org-{o}");
        let payload = cache
            .entry((o, c))
            .or_insert_with(|| {
                let raw = templates.payload(event, file).unwrap_or(Value::Null);
                let mut v =
                    Rewriter::for_repo("https://api.github.com", &org, "hello-world").apply(&raw);
                assign_owner(&mut v, &org);
                Arc::new(v)
            })
            .clone();
        let seq = per_org[o].len();
        per_org[o].push(Planned {
            guid: uuid::Uuid::new_v4().to_string(),
            org,
            event: event.clone(),
            seq,
            duplicate: false,
            payload,
        });
    }
    let mut swapped = 0;
    for list in &mut per_org {
        let mut j = 0;
        while j + 1 < list.len() {
            if rng.random_bool(s.out_of_order_share.clamp(0.0, 1.0)) {
                list.swap(j, j + 1);
                swapped += 1;
                j += 2;
            } else {
                j += 1;
            }
        }
    }
    // Interleave orgs round-robin, as events from many orgs arrive mixed.
    let mut order = Vec::with_capacity(s.deliveries);
    let longest = per_org.iter().map(Vec::len).max().unwrap_or(0);
    let mut iters: Vec<_> = per_org.into_iter().map(|l| l.into_iter()).collect();
    for _ in 0..longest {
        for it in &mut iters {
            if let Some(p) = it.next() {
                order.push(p);
            }
        }
    }
    // Duplicates: the same GUID and body again, a few places later.
    let mut dups: Vec<(usize, Planned)> = Vec::new();
    for (i, p) in order.iter().enumerate() {
        if rng.random_bool(s.duplicate_share.clamp(0.0, 1.0)) {
            let at = i + rng.random_range(1..=5usize);
            dups.push((
                at,
                Planned {
                    guid: p.guid.clone(),
                    org: p.org.clone(),
                    event: p.event.clone(),
                    seq: p.seq,
                    duplicate: true,
                    payload: p.payload.clone(),
                },
            ));
        }
    }
    dups.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (at, p) in dups {
        let at = at.min(order.len());
        order.insert(at, p);
    }
    (order, swapped)
}

/// Runs a storm against `s.target_url` and reports every send.
pub async fn run(templates: &Templates, s: Storm) -> StormReport {
    let (order, swapped) = plan(templates, &s);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(s.concurrency.max(1))
        .build()
        .expect("http client");
    let slots = Arc::new(Semaphore::new(s.concurrency.max(1)));
    let sends = Arc::new(Mutex::new(Vec::with_capacity(order.len())));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(s.max_secs);
    let s = Arc::new(s);
    let mut tasks = Vec::with_capacity(order.len());
    for (i, p) in order.into_iter().enumerate() {
        if Instant::now() > deadline {
            break;
        }
        if let Some(rate) = s.rate.filter(|r| *r > 0.0) {
            let at = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(at.into()).await;
        }
        let permit = slots.clone().acquire_owned().await.expect("open semaphore");
        let (client, sends, s) = (client.clone(), sends.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let (headers, body) = build_request(
                s.content_type,
                s.secret.as_deref(),
                &p.event,
                &p.guid,
                s.hook_id,
                ("integration", s.hook_id),
                &p.payload,
            );
            let mut req = client.post(&s.target_url).timeout(s.timeout).body(body);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let t = Instant::now();
            let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
            sends.lock().await.push(Sent {
                guid: p.guid,
                org: p.org,
                event: p.event,
                seq: p.seq,
                duplicate: p.duplicate,
                status,
                latency_ms: t.elapsed().as_secs_f64() * 1000.0,
            });
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sends = std::mem::take(&mut *sends.lock().await);
    let mut status_counts = BTreeMap::new();
    let mut acked = std::collections::HashSet::new();
    for x in &sends {
        *status_counts.entry(x.status).or_insert(0) += 1;
        if (200..300).contains(&x.status) {
            acked.insert(x.guid.clone());
        }
    }
    let mut lat: Vec<f64> = sends.iter().map(|x| x.latency_ms).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    StormReport {
        sent: sends.len(),
        duplicates_sent: sends.iter().filter(|x| x.duplicate).count(),
        out_of_order: swapped,
        acked_guids: acked.len(),
        no_answer: status_counts.get(&0).copied().unwrap_or(0),
        status_counts,
        elapsed_secs: elapsed,
        per_sec: sends.len() as f64 / elapsed.max(1e-9),
        latency_p50_ms: pct(0.5),
        latency_p99_ms: pct(0.99),
        latency_max_ms: lat.last().copied().unwrap_or(0.0),
        sends,
    }
}

//! The event stream (B15): the 100-batch buffer, resume rules, topic filters and NDJSON framing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::Nomad;
use super::model::JobRecord;
use crate::{Clock, Server, SimInstant};

/// One event (`structs.Event`).
#[derive(Debug, Clone)]
pub struct Event {
    /// `Topic`.
    pub topic: &'static str,
    /// `Type`: the Raft message that caused it.
    pub typ: &'static str,
    /// `Key`.
    pub key: String,
    /// `Namespace`.
    pub namespace: String,
    /// `FilterKeys`.
    pub filter_keys: Vec<String>,
    /// `Index`.
    pub index: u64,
    /// `Payload`.
    pub payload: Payload,
}

/// An event payload. Job payloads are rendered only when a subscriber selects them, so that
/// registers stay cheap when nobody listens.
#[derive(Clone)]
pub enum Payload {
    /// Ready JSON.
    Json(Value),
    /// `{"Job": …}`, with `"Deleted": true` on purge.
    Job(Box<JobRecord>, bool),
    /// Rendered on demand from a snapshot taken at the write (deployments, allocations).
    Render(Arc<dyn Fn(&Clock) -> Value + Send + Sync>),
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Json(v) => write!(f, "Json({v})"),
            Payload::Job(j, d) => write!(f, "Job({}, deleted: {d})", j.id),
            Payload::Render(_) => f.write_str("Render(..)"),
        }
    }
}

impl Event {
    fn to_json(&self, clock: &Clock) -> Value {
        let payload = match &self.payload {
            Payload::Json(v) => v.clone(),
            Payload::Render(f) => f(clock),
            Payload::Job(rec, false) => json!({"Job": rec.render()}),
            Payload::Job(rec, true) => {
                let mut job = rec.render();
                if let Value::Object(m) = &mut job {
                    m.insert("Stop".into(), json!(true));
                }
                json!({"Job": job, "Deleted": true})
            }
        };
        json!({"Topic": self.topic, "Type": self.typ, "Key": self.key, "Namespace": self.namespace,
            "FilterKeys": if self.filter_keys.is_empty() { Value::Null } else { json!(self.filter_keys) },
            "Index": self.index, "Payload": payload})
    }
}

/// One state-store transaction's events.
#[derive(Debug)]
pub struct Batch {
    /// Raft index.
    pub index: u64,
    /// Events, in order.
    pub events: Vec<Event>,
}

/// The bounded buffer of recent batches (`event_buffer_size`, 100 by default).
#[derive(Debug)]
pub struct EventBuffer {
    batches: VecDeque<Arc<Batch>>,
    first_seq: u64,
    cap: usize,
}

impl EventBuffer {
    /// An empty buffer holding at most `cap` batches.
    pub fn new(cap: usize) -> EventBuffer {
        EventBuffer { batches: VecDeque::new(), first_seq: 0, cap }
    }

    /// Appends a batch, dropping the oldest beyond the capacity.
    pub fn push(&mut self, index: u64, events: Vec<Event>) {
        if self.batches.len() == self.cap {
            self.batches.pop_front();
            self.first_seq += 1;
        }
        self.batches.push_back(Arc::new(Batch { index, events }));
    }

    /// The sequence number to start a subscription at for `?index=N` (`StartAtClosest`):
    /// 0 → the oldest batch; otherwise the first batch with Index ≥ N, or the newest batch
    /// when every buffered batch is older than N.
    pub fn start_seq(&self, index: u64) -> u64 {
        if index == 0 {
            return self.first_seq;
        }
        match self.batches.iter().position(|b| b.index >= index) {
            Some(p) => self.first_seq + p as u64,
            None if self.batches.is_empty() => self.first_seq,
            None => self.first_seq + self.batches.len() as u64 - 1,
        }
    }

    /// Batches from `seq` on, and the next seq; `None` when the batch at `seq` has already been dropped from the
    /// buffer. Nomad does not skip a slow reader ahead: the dropped item's `droppedCh` is closed and the reader's
    /// next `Next` fails with "event dropped from buffer", which ends the subscription, so the client sees its
    /// stream close and must relist (N:nomad/stream/event_buffer.go `bufferItem.Next`, `advanceHead`: "Slow
    /// readers will eventually be forced to reconnect").
    pub fn read_from(&self, seq: u64) -> Option<(Vec<Arc<Batch>>, u64)> {
        if seq < self.first_seq {
            return None;
        }
        let skip = (seq - self.first_seq) as usize;
        let out: Vec<Arc<Batch>> = self.batches.iter().skip(skip).cloned().collect();
        Some((out, self.first_seq + self.batches.len() as u64))
    }
}

/// What a subscriber asked for.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Topic → keys; `None` = every topic.
    pub topics: Option<BTreeMap<String, Vec<String>>>,
    /// Namespaces whose events pass (events without namespace always pass).
    pub namespaces: Vec<String>,
}

impl Filter {
    /// Parses repeated `topic=<Topic>[:<Key>]` values.
    pub fn parse_topics(values: &[String]) -> Result<Option<BTreeMap<String, Vec<String>>>, String> {
        if values.is_empty() {
            return Ok(None);
        }
        let mut topics: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for v in values {
            // `parseTopic` in command/agent/event_endpoint.go: no `:` means `Topic:*`.
            let parts: Vec<&str> = v.split(':').collect();
            let (topic, key) = match parts.as_slice() {
                [t] => (*t, "*"),
                [t, k] => (*t, *k),
                _ => {
                    return Err(format!(
                        "Invalid topic query: error parsing topics: Invalid key value pair for topic: {v}"
                    ));
                }
            };
            topics.entry(topic.to_string()).or_default().push(key.to_string());
        }
        Ok(Some(topics))
    }

    /// The events of `batch` that pass, once per matching key (B15 duplicates rule).
    fn select(&self, batch: &Batch, clock: &Clock) -> Vec<Value> {
        let mut out = Vec::new();
        for ev in &batch.events {
            if !ev.namespace.is_empty() && !self.namespaces.iter().any(|n| n == &ev.namespace) {
                continue;
            }
            let keys = match &self.topics {
                None => {
                    out.push(ev.to_json(clock));
                    continue;
                }
                Some(t) => match t.get(ev.topic).or_else(|| t.get("*")) {
                    Some(k) => k,
                    None => continue,
                },
            };
            if keys.len() == 1 && keys[0] == "*" {
                out.push(ev.to_json(clock));
                continue;
            }
            for k in keys {
                if *k == ev.key || ev.filter_keys.iter().any(|f| !f.is_empty() && f == k) {
                    out.push(ev.to_json(clock));
                }
            }
        }
        out
    }
}

/// The heartbeat period (sim time).
const HEARTBEAT: Duration = Duration::from_secs(30);

struct StreamState {
    nomad: Arc<Nomad>,
    filter: Filter,
    seq: u64,
    rx: tokio::sync::watch::Receiver<u64>,
    leader: tokio::sync::watch::Receiver<bool>,
    next_heartbeat: SimInstant,
    queue: VecDeque<Bytes>,
    done: bool,
    cuts: tokio::sync::watch::Receiver<super::StreamCut>,
    cut: bool,
}

/// The error that ends a cut stream: hyper then closes the connection without the final chunk, so the client
/// sees the body end abruptly.
fn cut_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "event stream cut by POST /_sim/nomad/event-stream/cut")
}

/// The NDJSON body of a subscription: `{}` at once, then frames and a `{}` every 30 s (sim),
/// until shutdown or leader loss (a clean end), or a cut (an abrupt end: an error item).
pub fn stream(
    nomad: Arc<Nomad>,
    filter: Filter,
    index: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (seq, rx) = {
        let st = nomad.lock();
        (st.events.start_seq(index), nomad.index_rx.clone())
    };
    let now = nomad.shared.clock.now();
    let leader = nomad.shared.leader_watch(Server::Nomad);
    let mut queue = VecDeque::new();
    queue.push_back(Bytes::from_static(b"{}\n"));
    let mut cuts = nomad.stream_cuts.subscribe();
    // Opened inside a cut window: cut right after the first `{}`.
    let cut = cuts.borrow_and_update().until.is_some_and(|until| now < until);
    let state =
        StreamState { nomad, filter, seq, rx, leader, next_heartbeat: now + HEARTBEAT, queue, done: false, cuts, cut };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(b) = s.queue.pop_front() {
                return Some((Ok(b), s));
            }
            if s.cut {
                s.cut = false;
                s.done = true;
                // Pending once first, so hyper flushes what was sent (headers, `{}`) before the connection dies.
                tokio::task::yield_now().await;
                return Some((Err(cut_error()), s));
            }
            if s.done {
                return None;
            }
            s.rx.borrow_and_update();
            let Some((batches, next)) = s.nomad.lock().events.read_from(s.seq) else {
                // This reader fell more than the buffer behind: Nomad ends the subscription (see `read_from`).
                s.done = true;
                continue;
            };
            s.seq = next;
            for b in batches {
                let events = s.filter.select(&b, &s.nomad.shared.clock);
                if !events.is_empty() {
                    let mut line = serde_json::to_vec(&json!({"Index": b.index, "Events": events})).unwrap_or_default();
                    line.push(b'\n');
                    s.queue.push_back(Bytes::from(line));
                }
            }
            if !s.queue.is_empty() {
                continue;
            }
            let clock = s.nomad.shared.clock.clone();
            let shutdown = s.nomad.shutdown.clone();
            tokio::select! {
                _ = clock.sleep_until(s.next_heartbeat) => {
                    s.next_heartbeat = clock.now() + HEARTBEAT;
                    s.queue.push_back(Bytes::from_static(b"{}\n"));
                }
                r = s.rx.changed() => { if r.is_err() { s.done = true; } }
                r = s.leader.changed() => {
                    if r.is_err() || !*s.leader.borrow_and_update() { s.done = true; }
                }
                _ = shutdown.cancelled() => { s.done = true; }
                r = s.cuts.changed() => {
                    // Frames already queued are dropped: the connection dies mid-stream.
                    s.queue.clear();
                    if r.is_ok() { s.cut = true; } else { s.done = true; }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue #7, 2.0): the simulator used to skip a slow reader ahead to the oldest retained batch, so
    /// the batches in between (a deployment's `successful` update among them) were lost without a trace and the app
    /// stayed `Progressing` forever. Nomad ends such a subscription instead.
    #[test]
    fn buffer_should_refuse_a_reader_whose_next_batch_was_dropped() {
        let mut buffer = EventBuffer::new(3);
        let start = buffer.start_seq(0);
        for index in 1..=3 {
            buffer.push(index, Vec::new());
        }
        let (batches, next) = buffer.read_from(start).expect("nothing dropped yet");
        assert_eq!(batches.iter().map(|b| b.index).collect::<Vec<_>>(), [1, 2, 3]);
        buffer.push(4, Vec::new());
        buffer.push(5, Vec::new());
        let (batches, _) = buffer.read_from(next).expect("a reader that kept up reads on");
        assert_eq!(batches.iter().map(|b| b.index).collect::<Vec<_>>(), [4, 5]);
        assert!(buffer.read_from(start).is_none(), "a reader left behind at batch 1 (dropped) must be cut off");
        assert!(buffer.read_from(start + 2).is_some(), "batch 3 is still retained");
    }
}

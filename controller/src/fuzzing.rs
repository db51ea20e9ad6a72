//! Entry points for the fuzz targets in `fuzz/` (issue #9) and for the test that replays their corpus on the stable
//! toolchain (`controller/tests/fuzz_corpus.rs`). Each takes untrusted bytes the way Drover receives them and must
//! never panic, whatever they hold: a panic is a bug, an error is the expected answer to garbage.

use crate::consul::KvPair;
use crate::nomad::seen::Reported;
use crate::nomad::types::Frame;
use crate::store;

/// The installation prefix the targets use.
const PREFIX: &str = "drover";

/// A record as stored at a KV key: parsed, validated, rendered and hashed ([`crate::app::Record::load`]); also the
/// same bytes as a multi-document file, the way `drover apply` reads one.
pub fn record(bytes: &[u8]) {
    let key = crate::app::AppKey { namespace: "default".into(), name: "web".into() };
    let _ = crate::app::Record::load(PREFIX, &key, bytes, 1);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = crate::app::parse_documents(text);
    }
}

/// The body of a Consul KV listing (`GET /v1/kv/<prefix>?recurse`), decoded and applied to the records store as the
/// records watch does.
pub fn consul_listing(bytes: &[u8]) {
    let Ok(entries) = serde_json::from_slice::<Vec<KvPair>>(bytes) else { return };
    let (mut writer, records) = store::records(PREFIX);
    let _ = writer.apply_snapshot(&entries);
    let _ = records.len();
}

/// NDJSON lines of the Nomad event stream (`GET /v1/event/stream`), decoded frame by frame and passed through the
/// watcher's duplicate filter into live events.
pub fn nomad_events(bytes: &[u8]) {
    let mut reported = Reported::with_limit(8);
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(frame) = serde_json::from_slice::<Frame>(line) else { continue };
        for event in &frame.events {
            let _ = reported.accept(event);
        }
        reported.end_frame(frame.index);
    }
}

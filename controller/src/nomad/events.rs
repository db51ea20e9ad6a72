//! The `/v1/event/stream` reader: NDJSON frames over a raw body that ends when Nomad closes the connection.
//!
//! Nomad sends `{}` at once and every 30 s (B15). In v2.0.x the 200 and headers are written before the ACL checks,
//! so a refused subscription is a 200 that closes without any `{}`; a stalled server simply goes quiet. The reader
//! therefore treats every end of the body, and any silence longer than the heartbeat plus a margin, as a drop
//! (C23). There is no clean end: the stream is meant to run forever.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use futures::{Stream, StreamExt as _};

use super::Error;
use super::types::Frame;

/// Nomad's heartbeat period.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// How long the stream may be silent before it counts as dropped: one heartbeat plus the server's 10 s write
/// deadline plus 5 s of network slack.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// The longest line accepted; a frame is one state-store transaction, so this is generous.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// The raw body: chunks of bytes, or an I/O error.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// Why the stream is considered gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The response headers did not arrive in time.
    NoHeaders,
    /// The body ended before the first `{}`: typically an ACL or subscribe failure in v2.0.x (B15).
    EndedBeforeHeartbeat,
    /// The body ended after the stream had started (leader change, token change, server stall).
    Ended,
    /// Nothing arrived for longer than [`SILENCE_LIMIT`].
    Silent,
    /// Reading the body failed.
    ReadFailed,
    /// A line grew beyond [`MAX_LINE`].
    LineTooLong,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoHeaders => "no response headers",
            Self::EndedBeforeHeartbeat => "connection closed before the first heartbeat",
            Self::Ended => "connection closed",
            Self::Silent => "no heartbeat within the silence limit",
            Self::ReadFailed => "reading the body failed",
            Self::LineTooLong => "a line exceeded the size limit",
        })
    }
}

/// A subscribed event stream, read frame by frame.
pub struct EventStream {
    body: ByteStream,
    buf: BytesMut,
    saw_heartbeat: bool,
    silence_limit: Duration,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("buffered", &self.buf.len())
            .field("saw_heartbeat", &self.saw_heartbeat)
            .finish()
    }
}

impl EventStream {
    /// Wraps a response body.
    pub fn new(body: ByteStream) -> Self {
        Self { body, buf: BytesMut::new(), saw_heartbeat: false, silence_limit: SILENCE_LIMIT }
    }

    /// Overrides [`SILENCE_LIMIT`].
    pub fn with_silence_limit(mut self, limit: Duration) -> Self {
        self.silence_limit = limit;
        self
    }

    /// Whether the first `{}` arrived: the subscription was accepted.
    pub fn saw_heartbeat(&self) -> bool {
        self.saw_heartbeat
    }

    /// The next frame, heartbeats included ([`Frame::is_heartbeat`]). Every end of the stream is an
    /// [`Error::StreamDropped`]; a line that is not JSON is [`Error::StreamDecode`].
    pub async fn next_frame(&mut self) -> Result<Frame, Error> {
        loop {
            if let Some(line) = self.take_line() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let frame: Frame = serde_json::from_slice(&line).map_err(|source| Error::StreamDecode { source })?;
                if frame.is_heartbeat() {
                    self.saw_heartbeat = true;
                }
                return Ok(frame);
            }
            let dropped = |reason| Error::StreamDropped { reason };
            match tokio::time::timeout(self.silence_limit, self.body.next()).await {
                Err(_) => return Err(dropped(DropReason::Silent)),
                Ok(None) if self.saw_heartbeat => return Err(dropped(DropReason::Ended)),
                Ok(None) => return Err(dropped(DropReason::EndedBeforeHeartbeat)),
                Ok(Some(Err(_))) => return Err(dropped(DropReason::ReadFailed)),
                Ok(Some(Ok(chunk))) => {
                    self.buf.extend_from_slice(&chunk);
                    if self.buf.len() > MAX_LINE && !self.buf.contains(&b'\n') {
                        return Err(dropped(DropReason::LineTooLong));
                    }
                }
            }
        }
    }

    /// Splits off the first complete line (without its `\n`), if there is one.
    fn take_line(&mut self) -> Option<Bytes> {
        let end = self.buf.iter().position(|b| *b == b'\n')?;
        let line = self.buf.split_to(end).freeze();
        self.buf.advance(1);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// A body fed by the test, chunk by chunk; dropping the sender ends it.
    fn body() -> (mpsc::UnboundedSender<Result<Bytes, io::Error>>, EventStream) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        (tx, EventStream::new(Box::pin(stream)))
    }

    fn send(tx: &mpsc::UnboundedSender<Result<Bytes, io::Error>>, text: &str) {
        tx.send(Ok(Bytes::copy_from_slice(text.as_bytes()))).unwrap();
    }

    fn reason(err: Error) -> DropReason {
        match err {
            Error::StreamDropped { reason } => reason,
            other => panic!("expected a drop, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn event_stream_should_split_frames_across_chunks_and_report_heartbeats() {
        let (tx, mut stream) = body();
        send(&tx, "{}\n{\"Index\":812,\"Ev");
        send(&tx, "ents\":[{\"Topic\":\"Job\",\"Type\":\"JobRegistered\",\"Key\":\"web\",\"Index\":812,");
        send(&tx, "\"Payload\":{\"Job\":{\"ID\":\"web\"}}}]}\n\n{}\n");
        let first = stream.next_frame().await.unwrap();
        assert!(first.is_heartbeat() && stream.saw_heartbeat());
        let frame = stream.next_frame().await.unwrap();
        assert_eq!(frame.index, 812);
        assert_eq!(frame.events[0].topic, "Job");
        assert_eq!(frame.events[0].payload["Job"]["ID"], "web");
        assert!(stream.next_frame().await.unwrap().is_heartbeat());
    }

    #[tokio::test(start_paused = true)]
    async fn event_stream_should_treat_eof_before_first_heartbeat_as_a_refused_subscription() {
        let (tx, mut stream) = body();
        drop(tx);
        assert_eq!(reason(stream.next_frame().await.unwrap_err()), DropReason::EndedBeforeHeartbeat);
        let (tx, mut stream) = body();
        send(&tx, "{}\n");
        drop(tx);
        stream.next_frame().await.unwrap();
        assert_eq!(reason(stream.next_frame().await.unwrap_err()), DropReason::Ended);
    }

    #[tokio::test(start_paused = true)]
    async fn event_stream_should_drop_after_silence_beyond_the_limit_but_not_before() {
        let (tx, mut stream) = body();
        send(&tx, "{}\n");
        stream.next_frame().await.unwrap();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(HEARTBEAT).await;
            send(&tx, "{}\n");
            // Then silence, with the connection still open.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let started = tokio::time::Instant::now();
        assert!(stream.next_frame().await.unwrap().is_heartbeat(), "a heartbeat after 30 s is on time");
        assert_eq!(reason(stream.next_frame().await.unwrap_err()), DropReason::Silent);
        assert_eq!(started.elapsed(), HEARTBEAT + SILENCE_LIMIT);
        sender.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn event_stream_should_reject_a_line_that_is_not_json() {
        let (tx, mut stream) = body();
        send(&tx, "{}\nnot json\n");
        stream.next_frame().await.unwrap();
        assert!(matches!(stream.next_frame().await.unwrap_err(), Error::StreamDecode { .. }));
    }
}

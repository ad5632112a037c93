//! Turning a streamed HTTP body into a [`ChatStream`]: framing (SSE,
//! NDJSON, AWS event-stream), a per-provider decoder, the call deadline and
//! an idle timeout.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
#[cfg(feature = "ollama")]
use bytes::BytesMut;
#[cfg(any(feature = "openai", feature = "google", feature = "anthropic"))]
use eventsource_stream::{Event, EventStreamError, Eventsource as _};
use futures_util::{Stream, StreamExt as _, stream};
use tokio::time::{Instant, timeout_at};

use super::transport::transport_error;
use super::{ChatChunk, ChatStream, ProviderError};
#[cfg(feature = "bedrock")]
use aws_eventstream::{Message, MessageDecoder};

/// A stream that sends nothing for this long is abandoned with
/// [`ProviderError::Timeout`] (keep-alive comments and pings count as
/// activity).
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A boxed stream of received bytes.
pub(crate) type ByteStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

/// A provider's stream decoder: frames in, chunks out.
pub(crate) trait ChunkDecoder: Send + 'static {
    /// One unit of the wire format (an SSE event, an NDJSON line, a frame).
    type Frame: Send + 'static;

    /// Handles one frame, appending chunks to `out`.
    fn on_frame(
        &mut self,
        frame: Self::Frame,
        out: &mut Vec<ChatChunk>,
    ) -> Result<(), ProviderError>;

    /// Whether the terminal event has been seen (reading stops).
    fn is_done(&self) -> bool;

    /// The body ended; emit the final chunk or report a cut stream.
    fn on_eof(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError>;
}

/// The bytes of a response body.
pub(crate) fn response_bytes(response: reqwest::Response) -> ByteStream {
    Box::pin(response.bytes_stream().map(|r| r.map_err(transport_error)))
}

#[cfg(any(feature = "openai", feature = "google", feature = "anthropic"))]
/// Server-sent events of a byte stream (comments skipped, `\r\n` handled).
pub(crate) fn sse_frames(
    bytes: ByteStream,
) -> impl Stream<Item = Result<Event, ProviderError>> + Send {
    bytes.eventsource().map(|r| {
        r.map_err(|e| match e {
            EventStreamError::Transport(e) => e,
            EventStreamError::Utf8(e) => ProviderError::Decode {
                message: format!("event stream is not UTF-8: {e}"),
            },
            EventStreamError::Parser(e) => ProviderError::Decode {
                message: format!("malformed event stream: {e}"),
            },
        })
    })
}

#[cfg(feature = "ollama")]
/// Non-empty `\n`-terminated lines of a byte stream; a last line without
/// `\n` is emitted at the end.
pub(crate) fn ndjson_frames(
    bytes: ByteStream,
) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send {
    struct State {
        bytes: ByteStream,
        buffer: BytesMut,
        lines: VecDeque<Bytes>,
        ended: bool,
    }
    let state = State {
        bytes,
        buffer: BytesMut::new(),
        lines: VecDeque::new(),
        ended: false,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(line) = st.lines.pop_front() {
                return Some((Ok(line), st));
            }
            if st.ended {
                return None;
            }
            match st.bytes.next().await {
                Some(Ok(chunk)) => {
                    st.buffer.extend_from_slice(&chunk);
                    while let Some(pos) = st.buffer.iter().position(|b| *b == b'\n') {
                        let line = st.buffer.split_to(pos + 1).freeze();
                        let line = trim_line(line);
                        if !line.is_empty() {
                            st.lines.push_back(line);
                        }
                    }
                }
                Some(Err(e)) => {
                    st.ended = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.ended = true;
                    let rest = trim_line(st.buffer.split().freeze());
                    if !rest.is_empty() {
                        st.lines.push_back(rest);
                    }
                }
            }
        }
    })
}

#[cfg(feature = "ollama")]
fn trim_line(line: Bytes) -> Bytes {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    line.slice(..end)
}

#[cfg(feature = "bedrock")]
/// AWS event-stream messages of a byte stream.
pub(crate) fn eventstream_frames(
    bytes: ByteStream,
) -> impl Stream<Item = Result<Message, ProviderError>> + Send {
    struct State {
        bytes: ByteStream,
        decoder: MessageDecoder,
        ended: bool,
    }
    let state = State {
        bytes,
        decoder: MessageDecoder::new(),
        ended: false,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if st.ended {
                return None;
            }
            match st.decoder.next_message() {
                Ok(Some(message)) => return Some((Ok(message), st)),
                Ok(None) => {}
                Err(e) => {
                    st.ended = true;
                    return Some((
                        Err(ProviderError::Decode {
                            message: e.to_string(),
                        }),
                        st,
                    ));
                }
            }
            match st.bytes.next().await {
                Some(Ok(chunk)) => st.decoder.push(&chunk),
                Some(Err(e)) => {
                    st.ended = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.ended = true;
                    if st.decoder.finish().is_err() {
                        return Some((
                            Err(ProviderError::Transport {
                                message: "the event stream was cut inside a frame".to_owned(),
                            }),
                            st,
                        ));
                    }
                    return None;
                }
            }
        }
    })
}

/// Runs `decoder` over `frames`, bounded by `deadline` overall and by
/// `idle` between frames. After an error or the terminal chunk the stream
/// ends.
pub(crate) fn drive<S, D>(frames: S, decoder: D, deadline: Instant, idle: Duration) -> ChatStream
where
    S: Stream<Item = Result<D::Frame, ProviderError>> + Send + 'static,
    D: ChunkDecoder,
{
    struct State<S, D> {
        frames: std::pin::Pin<Box<S>>,
        decoder: D,
        pending: VecDeque<Result<ChatChunk, ProviderError>>,
        ended: bool,
    }
    let state = State {
        frames: Box::pin(frames),
        decoder,
        pending: VecDeque::new(),
        ended: false,
    };
    Box::pin(stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            let wake = deadline.min(Instant::now() + idle);
            let mut out = Vec::new();
            let result = match timeout_at(wake, st.frames.next()).await {
                Err(_) => Err(ProviderError::Timeout),
                Ok(Some(Ok(frame))) => st.decoder.on_frame(frame, &mut out),
                Ok(Some(Err(e))) => Err(e),
                Ok(None) => {
                    st.ended = true;
                    st.decoder.on_eof(&mut out)
                }
            };
            st.pending.extend(out.into_iter().map(Ok));
            match result {
                Ok(()) => {
                    if st.decoder.is_done() {
                        st.ended = true;
                    }
                }
                Err(e) => {
                    st.pending.push_back(Err(e));
                    st.ended = true;
                }
            }
        }
    }))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers to run decoders over byte chunks in tests.

    use super::*;
    use crate::{FinishReason, Usage};

    /// What a stream produced.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Outcome {
        /// Concatenated deltas.
        pub text: String,
        /// The terminal chunk's contents.
        pub done: Option<(FinishReason, Usage)>,
        /// The error that ended it.
        pub error: Option<ProviderError>,
        /// How many items came after the first error or done (must be 0).
        pub after_end: usize,
    }

    /// A byte stream from fixed chunks.
    pub(crate) fn bytes_of(chunks: Vec<Vec<u8>>) -> ByteStream {
        Box::pin(stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c)))))
    }

    /// `data` cut at the given (sorted, deduplicated) offsets.
    pub(crate) fn split_at(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut out = Vec::new();
        let mut start = 0;
        for cut in cuts {
            out.push(data[start..cut].to_vec());
            start = cut;
        }
        out.push(data[start..].to_vec());
        out
    }

    /// Drains a chat stream on a fresh runtime.
    pub(crate) fn collect(stream: impl FnOnce() -> ChatStream) -> Outcome {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut s = stream();
            let mut outcome = Outcome {
                text: String::new(),
                done: None,
                error: None,
                after_end: 0,
            };
            while let Some(item) = s.next().await {
                if outcome.done.is_some() || outcome.error.is_some() {
                    outcome.after_end += 1;
                    continue;
                }
                match item {
                    Ok(ChatChunk::Delta { text }) => outcome.text.push_str(&text),
                    Ok(ChatChunk::Done {
                        finish_reason,
                        usage,
                    }) => outcome.done = Some((finish_reason, usage)),
                    Err(e) => outcome.error = Some(e),
                }
            }
            outcome
        })
    }

    /// A deadline far away.
    pub(crate) fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }
}

#[cfg(all(test, feature = "ollama"))]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::{FinishReason, Usage};

    struct Lines(Vec<String>, bool);

    impl ChunkDecoder for Lines {
        type Frame = Bytes;
        fn on_frame(
            &mut self,
            frame: Bytes,
            out: &mut Vec<ChatChunk>,
        ) -> Result<(), ProviderError> {
            let line = String::from_utf8_lossy(&frame).into_owned();
            if line == "END" {
                self.1 = true;
                out.push(ChatChunk::Done {
                    finish_reason: FinishReason::Stop,
                    usage: Usage::default(),
                });
            } else if line == "FAIL" {
                return Err(ProviderError::Upstream {
                    status: 200,
                    message: "fail".into(),
                });
            } else {
                self.0.push(line.clone());
                out.push(ChatChunk::Delta { text: line });
            }
            Ok(())
        }
        fn is_done(&self) -> bool {
            self.1
        }
        fn on_eof(&mut self, _: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
            Err(ProviderError::Transport {
                message: "cut".into(),
            })
        }
    }

    #[test]
    fn ndjson_lines_survive_any_split_and_stop_at_the_end_marker() {
        let data = b"a\r\n\nbb\nEND\nignored\n".to_vec();
        for cut in 0..data.len() {
            let chunks = split_at(&data, &[cut, cut + 3]);
            let out = collect(|| {
                drive(
                    ndjson_frames(bytes_of(chunks)),
                    Lines(vec![], false),
                    far(),
                    STREAM_IDLE_TIMEOUT,
                )
            });
            assert_eq!(out.text, "abb");
            assert!(out.done.is_some() && out.error.is_none());
            assert_eq!(out.after_end, 0);
        }
    }

    #[test]
    fn errors_and_cut_streams_end_the_stream() {
        let out = collect(|| {
            drive(
                ndjson_frames(bytes_of(vec![b"a\nFAIL\nb\n".to_vec()])),
                Lines(vec![], false),
                far(),
                STREAM_IDLE_TIMEOUT,
            )
        });
        assert_eq!(out.text, "a");
        assert!(matches!(out.error, Some(ProviderError::Upstream { .. })));
        let out = collect(|| {
            drive(
                ndjson_frames(bytes_of(vec![b"a\nb".to_vec()])),
                Lines(vec![], false),
                far(),
                STREAM_IDLE_TIMEOUT,
            )
        });
        assert_eq!(out.text, "ab");
        assert!(matches!(out.error, Some(ProviderError::Transport { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_times_out() {
        let silent: ByteStream = Box::pin(stream::pending());
        let mut s = drive(
            ndjson_frames(silent),
            Lines(vec![], false),
            far(),
            Duration::from_secs(5),
        );
        assert_eq!(s.next().await, Some(Err(ProviderError::Timeout)));
        assert_eq!(s.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_bounds_a_trickling_stream() {
        let trickle: ByteStream = Box::pin(stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok(Bytes::from_static(b"x\n")), ()))
        }));
        let deadline = Instant::now() + Duration::from_millis(3500);
        let mut s = drive(
            ndjson_frames(trickle),
            Lines(vec![], false),
            deadline,
            Duration::from_secs(5),
        );
        let mut deltas = 0;
        loop {
            match s.next().await {
                Some(Ok(ChatChunk::Delta { .. })) => deltas += 1,
                Some(Err(ProviderError::Timeout)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(deltas, 3);
    }
}

#[cfg(all(test, feature = "bedrock"))]
mod eventstream_tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn a_frame_cut_inside_an_event_stream_is_a_transport_error() {
        let frame = aws_eventstream::encode(&Message::default()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let items: Vec<_> = runtime.block_on(
            eventstream_frames(bytes_of(vec![frame.clone(), frame[..5].to_vec()])).collect(),
        );
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(matches!(items[1], Err(ProviderError::Transport { .. })));
    }
}

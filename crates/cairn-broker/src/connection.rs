//! One client connection: frames in, responses out, in request order.
//!
//! ## Framing
//! Every request is a 4-byte big-endian size followed by that many bytes: a request header
//! (v0–v2; v2 adds tagged fields) and the body. The size is checked against
//! `socket.request.max.bytes` before any buffer grows for it. A frame up to
//! [`WHOLE_FRAME_RESERVE_BYTES`] gets its whole buffer at once (read without a copy as it
//! grows; the untouched capacity costs no memory); a larger one grows with what arrives, at
//! most doubling what was received or by [`READ_CHUNK_BYTES`], so a peer that announces a
//! huge frame and sends nothing costs nothing.
//!
//! ## Pipelining
//! Clients send several requests before reading responses (librdkafka up to 5 produce
//! requests, plus metadata and fetch). Each decoded request becomes a future in a
//! `FuturesOrdered`: futures are first polled in arrival order (so appends happen in the
//! order sent), may finish in any order (a parked fetch does not block a produce
//! behind it from being appended), and responses are written strictly in request order,
//! each as `writev`s of its chunks ([`crate::response`]: a Fetch response's records are
//! not copied into it).
//!
//! ## Bad input
//! A frame that does not decode, an unknown API key or an unsupported version of any API
//! but ApiVersions closes this connection with a warning naming the peer; ApiVersions at
//! an unknown version is answered with UNSUPPORTED_VERSION and our ranges (KIP-511), as
//! Kafka does.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::INFLIGHT_REQUESTS_PER_CONNECTION_MAX;
use crate::handlers::{self, RequestContext};
use crate::response::{ChunkedBuf, EncodedResponse, SHARE_MIN_BYTES, write_response};
use crate::server::Broker;

/// Most bytes the read buffer grows by per read while no frame size is known, and the
/// first growth for a frame larger than [`WHOLE_FRAME_RESERVE_BYTES`].
pub const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Frames up to this size get their whole buffer as soon as their size is read (produce
/// requests are about 1 MB with librdkafka's defaults). Unwritten capacity is not touched,
/// so it costs address space, not memory, while a peer is slow to send.
pub const WHOLE_FRAME_RESERVE_BYTES: usize = 8 * 1024 * 1024;

/// Serves one connection until the peer closes it, it misbehaves, or the broker stops.
pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::debug!(%peer, "connection opened");
    metrics::counter!(crate::metrics::CONNECTIONS_ACCEPTED).increment(1);
    let open = metrics::gauge!(crate::metrics::CONNECTIONS);
    open.increment(1.0);
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut inflight = FuturesOrdered::new();
    let max_frame = broker.config.socket_request_max_bytes;
    let mut reading = true;
    let outcome: Result<(), String> = loop {
        if !reading && inflight.is_empty() {
            break Ok(());
        }
        tokio::select! {
            Some(response) = inflight.next(), if !inflight.is_empty() => {
                let response: Result<Option<EncodedResponse>, String> = response;
                match response {
                    Ok(Some(encoded)) => {
                        if let Err(e) = write_response(&mut writer, &encoded).await {
                            break Err(format!("write failed: {e}"));
                        }
                    }
                    Ok(None) => {}
                    Err(reason) => break Err(reason),
                }
            }
            frame = read_frame(&mut reader, &mut buf, max_frame), if reading && inflight.len() < INFLIGHT_REQUESTS_PER_CONNECTION_MAX => {
                match frame {
                    Ok(Some(frame)) => match decode(frame) {
                        Ok(Decoded::Request { api_key, version, correlation_id, client_id, request }) => {
                            let ctx = RequestContext { broker: broker.clone(), api_key, version, correlation_id, client_id, peer };
                            inflight.push_back(handle(ctx, *request));
                        }
                        Ok(Decoded::Immediate(bytes)) => {
                            inflight.push_back(Box::pin(async move { Ok(Some(bytes)) }));
                        }
                        Err(reason) => break Err(reason),
                    },
                    Ok(None) => reading = false,
                    Err(reason) => break Err(reason),
                }
            }
            _ = shutdown.changed() => break Ok(()),
        }
    };
    open.decrement(1.0);
    match outcome {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(reason) => {
            metrics::counter!(crate::metrics::REQUEST_ERRORS, "reason" => error_reason(&reason))
                .increment(1);
            tracing::warn!(%peer, "closing connection: {reason}");
        }
    }
}

/// A response to write (`Ok(None)`: none is due, as for acks=0), or why the connection
/// must close.
type ResponseFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<EncodedResponse>, String>> + Send>,
>;

/// Requests (other than fetches) taking at least this long are logged.
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_secs(2);

fn handle(ctx: RequestContext, request: RequestKind) -> ResponseFuture {
    Box::pin(async move {
        let correlation_id = ctx.correlation_id;
        let api_key = ctx.api_key;
        let version = ctx.version;
        let started = std::time::Instant::now();
        let api = crate::metrics::api_label(api_key);
        let peer = ctx.peer;
        let response = handlers::dispatch(ctx, request).await;
        let elapsed = started.elapsed();
        metrics::counter!(crate::metrics::REQUESTS, "api" => api).increment(1);
        metrics::histogram!(crate::metrics::REQUEST_DURATION, "api" => api)
            .record(elapsed.as_secs_f64());
        if elapsed >= SLOW_REQUEST && !matches!(api_key, ApiKey::Fetch) {
            // Fetches park by design; anything else this slow holds up the responses
            // after it on the connection (they are sent in request order).
            tracing::info!(%peer, ?api_key, version, correlation_id, elapsed_ms = elapsed.as_millis() as u64, "slow request");
        }
        let Some(response) = response else {
            return Ok(None);
        };
        match encode_response(api_key, version, correlation_id, &response) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) => {
                // Our own response failed to encode: a bug (tests/version_sweep.rs guards
                // against it). Closing the connection makes the client retry at once
                // instead of waiting out its request timeout.
                tracing::error!(?api_key, version, error = %e, "failed to encode response");
                Err(format!(
                    "failed to encode the {api_key:?} v{version} response: {e}"
                ))
            }
        }
    })
}

/// A low-cardinality label for why a connection was closed.
fn error_reason(reason: &str) -> &'static str {
    if reason.starts_with("read failed")
        || reason.starts_with("write failed")
        || reason.starts_with("peer closed")
    {
        "io"
    } else if reason.starts_with("request size") {
        "oversized"
    } else if reason.starts_with("unknown API key") || reason.contains("not supported") {
        "unsupported"
    } else {
        "malformed"
    }
}

/// A decoded request frame.
pub enum Decoded {
    Request {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        client_id: Option<String>,
        request: Box<RequestKind>,
    },
    /// An answer that needs no handler (ApiVersions at an unsupported version).
    Immediate(EncodedResponse),
}

/// Decodes one request frame (without its size prefix). Pure: no broker state, so the
/// fuzz and property tests drive exactly this. `Err` carries why the connection closes.
pub fn decode(mut frame: Bytes) -> Result<Decoded, String> {
    if frame.len() < 8 {
        return Err(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        ));
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key =
        ApiKey::try_from(api_key_raw).map_err(|_| format!("unknown API key {api_key_raw}"))?;
    let supported = handlers::supported_versions(api_key);
    if !supported.is_some_and(|r| r.min <= version && version <= r.max) {
        if api_key == ApiKey::ApiVersions {
            let response = handlers::api_versions::unsupported_version_response();
            let bytes = encode_response(
                api_key,
                0,
                correlation_id,
                &ResponseKind::ApiVersions(response),
            )
            .map_err(|e| format!("encoding ApiVersions error response: {e}"))?;
            return Ok(Decoded::Immediate(bytes));
        }
        return Err(match supported {
            Some(r) => format!(
                "{api_key:?} v{version} is not supported (supported: v{}-v{})",
                r.min, r.max
            ),
            None => format!("{api_key:?} is not supported by this broker"),
        });
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| format!("malformed {api_key:?} v{version} request header: {e}"))?;
    let request = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| format!("malformed {api_key:?} v{version} request: {e:#}"))?;
    if frame.has_remaining() {
        tracing::debug!(
            ?api_key,
            version,
            trailing = frame.remaining(),
            "request has trailing bytes"
        );
    }
    Ok(Decoded::Request {
        api_key,
        version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        request: Box::new(request),
    })
}

/// Size prefix, response header and body, ready to write. A Fetch response's records of
/// at least [`crate::response::SHARE_MIN_BYTES`] are not copied: they become chunks of
/// their own, sharing the buffers the log read them into.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> anyhow::Result<EncodedResponse> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(version);
    if let ResponseKind::Fetch(fetch) = response {
        let shared = shared_records(response);
        let mut buf = ChunkedBuf::new(owned_capacity_hint(response), &shared);
        buf.put_i32(0);
        header.encode(&mut buf, header_version)?;
        fetch.encode(&mut buf, version)?;
        return Ok(buf.finish_with_size_prefix());
    }
    let mut bytes = BytesMut::with_capacity(owned_capacity_hint(response));
    bytes.put_i32(0);
    header.encode(&mut bytes, header_version)?;
    response.encode(&mut bytes, version)?;
    let size = (bytes.len() - 4) as i32;
    bytes[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(EncodedResponse::from(bytes.freeze()))
}

/// The record buffers of a Fetch response that are worth sharing rather than copying.
fn shared_records(response: &ResponseKind) -> Vec<Bytes> {
    match response {
        ResponseKind::Fetch(fetch) => fetch
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.clone())
            .filter(|r| r.len() >= SHARE_MIN_BYTES)
            .collect(),
        _ => Vec::new(),
    }
}

/// Bytes to reserve for the owned part of an encoded response, so that it is not copied
/// again as it grows: for a Fetch response the records that are copied (the small ones)
/// plus room for the per-partition fields.
fn owned_capacity_hint(response: &ResponseKind) -> usize {
    match response {
        ResponseKind::Fetch(fetch) => {
            let partitions = fetch.responses.iter().flat_map(|t| t.partitions.iter());
            512 + partitions
                .map(|p| {
                    let copied = p.records.as_ref().map_or(0, |r| {
                        if r.len() < SHARE_MIN_BYTES {
                            r.len()
                        } else {
                            0
                        }
                    });
                    128 + copied
                })
                .sum::<usize>()
        }
        _ => 256,
    }
}

/// Reads one frame (without its size prefix). `Ok(None)` is a clean end of stream.
/// Cancel-safe: partial input stays in `buf`.
async fn read_frame(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<Bytes>, String> {
    loop {
        if buf.len() >= 4 {
            let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if size < 0 || size as usize > max_frame {
                return Err(format!(
                    "request size {size} is outside 0..={max_frame} (socket.request.max.bytes)"
                ));
            }
            let total = 4 + size as usize;
            if buf.len() >= total {
                let mut frame = buf.split_to(total);
                frame.advance(4);
                return Ok(Some(frame.freeze()));
            }
            // Room for the whole frame at once up to WHOLE_FRAME_RESERVE_BYTES, so that a
            // produce request is read into one buffer without being copied as it grows;
            // beyond, growth follows what actually arrived (at most doubling).
            let missing = total - buf.len();
            buf.reserve(if total <= WHOLE_FRAME_RESERVE_BYTES {
                missing
            } else {
                missing.min(buf.len().max(READ_CHUNK_BYTES))
            });
        } else {
            buf.reserve(READ_CHUNK_BYTES.min(64 * 1024));
        }
        match reader.read_buf(buf).await {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => {
                return Err(format!(
                    "peer closed the connection mid-request ({} bytes pending)",
                    buf.len()
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use proptest::prelude::*;

    fn frame<R: Encodable>(key: ApiKey, version: i16, request: &R) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(9)
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        request.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_every_version_of_served_requests() {
        for v in 0..=4 {
            let f = frame(ApiKey::ApiVersions, v, &ApiVersionsRequest::default());
            assert!(matches!(decode(f), Ok(Decoded::Request { version, .. }) if version == v));
        }
        for v in 0..=13 {
            let f = frame(ApiKey::Metadata, v, &MetadataRequest::default());
            assert!(
                matches!(
                    decode(f),
                    Ok(Decoded::Request {
                        correlation_id: 9,
                        ..
                    })
                ),
                "Metadata v{v}"
            );
        }
    }

    #[test]
    fn api_versions_at_unknown_version_is_answered() {
        let mut f = BytesMut::new();
        f.put_i16(ApiKey::ApiVersions as i16);
        f.put_i16(77);
        f.put_i32(3);
        f.put_i16(-1);
        assert!(matches!(decode(f.freeze()), Ok(Decoded::Immediate(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic the decoder: they decode or give a reason.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(Bytes::from(bytes));
        }

        /// Arbitrary bodies behind a valid header of every served API never panic.
        #[test]
        fn arbitrary_bodies_never_panic(api in 0usize..handlers::APIS.len(), v in 0i16..20, body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let spec = handlers::APIS[api];
            let version = spec.versions.min + v % (spec.versions.max - spec.versions.min + 1);
            let mut f = BytesMut::new();
            f.put_i16(spec.key as i16);
            f.put_i16(version);
            f.put_i32(1);
            f.put_i16(-1);
            if spec.key.request_header_version(version) >= 2 {
                f.put_u8(0);
            }
            f.put_slice(&body);
            let _ = decode(f.freeze());
        }
    }
}

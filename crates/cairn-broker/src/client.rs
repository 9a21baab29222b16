//! A small async Kafka-protocol client connection, used by the replica fetchers (a
//! follower fetches from its leader with the Kafka Fetch API itself) and by the `cairn`
//! command-line tools.
//!
//! It owns the wire: a request is a 4-byte big-endian size, a request header (v1 or v2,
//! as [`ApiKey::request_header_version`] says for the chosen API version) and the body;
//! a response is a 4-byte size, a response header (v0 or v1) whose correlation id must
//! match the request's, and the body.
//!
//! Version negotiation follows the protocol guide: the first request on every connection
//! is ApiVersions v3; a broker too old for v3 answers UNSUPPORTED_VERSION with a v0 body
//! that still lists its ranges, and we retry at the highest version it serves (v0 if it
//! lists none). Every later request is sent at the highest version both the broker and the
//! `kafka-protocol` crate speak; a caller that can only build some versions caps it.
//!
//! Invariants: requests on one connection are strictly sequential (one in flight), so
//! the response read next belongs to the request just written, which the correlation id
//! check asserts; no response larger than [`RESPONSE_BYTES_MAX`] is allocated.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response we accept. Fetch responses are bounded by the `max_bytes` we ask
/// for (at most 64 MiB); anything larger is a broken or hostile peer, refused before
/// allocating it.
pub const RESPONSE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// How long to wait for a TCP connection to a broker.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// ApiVersions version we try first: v3 is the first flexible one (KIP-511), which
/// every broker since Kafka 2.4 serves.
const API_VERSIONS_FIRST_VERSION: i16 = 3;

/// One TCP connection to one broker, with the API version ranges it advertised.
pub struct Connection {
    /// `host:port` we connected to, for error messages.
    addr: String,
    stream: TcpStream,
    /// Correlation id of the next request.
    next_correlation_id: i32,
    /// API key -> versions the broker serves.
    api_versions: HashMap<i16, VersionRange>,
    /// How long one request may take before we give up on the broker.
    request_timeout: Duration,
    /// The `client.id` sent in every request header, so broker logs name us.
    client_id: StrBytes,
}

impl Connection {
    /// Connects to `addr` as `cairn-cli` and learns the broker's API versions.
    pub async fn connect(addr: &str, request_timeout: Duration) -> anyhow::Result<Connection> {
        Self::connect_as(addr, request_timeout, "cairn-cli").await
    }

    /// Connects to `addr` with `client_id` in every request header and learns the
    /// broker's API versions.
    pub async fn connect_as(
        addr: &str,
        request_timeout: Duration,
        client_id: &str,
    ) -> anyhow::Result<Connection> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                anyhow::anyhow!("timed out after {CONNECT_TIMEOUT:?} connecting to {addr}")
            })?
            .with_context(|| {
                format!("cannot connect to {addr}: is a Kafka-compatible broker listening there?")
            })?;
        stream.set_nodelay(true).ok();
        let mut connection = Connection {
            addr: addr.to_owned(),
            stream,
            next_correlation_id: 0,
            api_versions: HashMap::new(),
            request_timeout,
            client_id: StrBytes::from_string(client_id.to_owned()),
        };
        connection.negotiate_api_versions().await?;
        Ok(connection)
    }

    /// The broker address of this connection.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn negotiate_api_versions(&mut self) -> anyhow::Result<()> {
        let mut version = API_VERSIONS_FIRST_VERSION;
        loop {
            let mut request = ApiVersionsRequest::default();
            if version >= 3 {
                request.client_software_name = StrBytes::from_static_str("cairn");
                request.client_software_version =
                    StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            }
            let mut body = self.round_trip(&request, version).await?;
            // error_code is the first field of every ApiVersions response version.
            let error_code = if body.len() >= 2 {
                i16::from_be_bytes([body[0], body[1]])
            } else {
                0
            };
            if error_code == ResponseError::UnsupportedVersion.code() && version > 0 {
                // The broker answered in v0 whatever we asked (KIP-511); its list says
                // which ApiVersions versions it does serve.
                let response = ApiVersionsResponse::decode(&mut body, 0)
                    .with_context(|| format!("{}: malformed ApiVersions v0 response", self.addr))?;
                let broker_max = response
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map(|k| k.max_version)
                    .unwrap_or(0);
                version = broker_max.clamp(0, version - 1);
                continue;
            }
            let response = ApiVersionsResponse::decode(&mut body, version).with_context(|| {
                format!("{}: malformed ApiVersions v{version} response", self.addr)
            })?;
            if let Some(error) = ResponseError::try_from_code(response.error_code) {
                bail!(
                    "{}: ApiVersions failed: {error} (error code {})",
                    self.addr,
                    error.code()
                );
            }
            self.api_versions = response
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect();
            return Ok(());
        }
    }

    /// The highest version of `R` that both the broker and this client speak, at most
    /// `cap` (for commands that cannot build every version).
    pub fn version_capped<R: Request>(&self, cap: i16) -> anyhow::Result<i16> {
        let name = api_name(R::KEY);
        let ours = VersionRange {
            min: R::VERSIONS.min,
            max: R::VERSIONS.max.min(cap),
        };
        let Some(theirs) = self.api_versions.get(&R::KEY) else {
            bail!(
                "the broker at {} does not serve the {name} API, which this command needs",
                self.addr
            );
        };
        let both = ours.intersect(theirs);
        if both.is_empty() {
            bail!(
                "the broker at {} serves {name} versions {theirs} but this client speaks {ours}: no common version",
                self.addr
            );
        }
        Ok(both.max)
    }

    /// The highest version of `R` that both the broker and this client speak.
    pub fn version<R: Request>(&self) -> anyhow::Result<i16> {
        self.version_capped::<R>(i16::MAX)
    }

    /// Sends `request` at the highest common version and returns the response.
    /// Use [`Connection::send_at`] when the request's fields depend on the version.
    pub async fn send<R: Request>(&mut self, request: &R) -> anyhow::Result<R::Response> {
        let version = self.version::<R>()?;
        self.send_at(request, version).await
    }

    /// Sends `request` at `version` (from [`Connection::version`]) and decodes the response.
    pub async fn send_at<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> anyhow::Result<R::Response> {
        let mut body = self.round_trip(request, version).await?;
        R::Response::decode(&mut body, version).with_context(|| {
            format!(
                "{}: malformed {} v{version} response",
                self.addr,
                api_name(R::KEY)
            )
        })
    }

    /// Sends `request` and reads no response: for Produce with acks=0, which the broker
    /// does not answer.
    pub async fn send_without_response<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> anyhow::Result<()> {
        let (frame, _) = self.frame(request, version)?;
        self.write_frame(&frame).await
    }

    fn frame<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<(BytesMut, i32)> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let header_version = match ApiKey::try_from(R::KEY) {
            Ok(key) => key.request_header_version(version),
            Err(()) => R::header_version(version),
        };
        let mut frame = BytesMut::new();
        frame.put_i32(0); // size, filled in below
        header
            .encode(&mut frame, header_version)
            .context("cannot encode request header")?;
        request
            .encode(&mut frame, version)
            .with_context(|| format!("cannot encode {} v{version} request", api_name(R::KEY)))?;
        let size = i32::try_from(frame.len() - 4).context("request larger than 2 GiB")?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        Ok((frame, correlation_id))
    }

    async fn write_frame(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let addr = &self.addr;
        tokio::time::timeout(self.request_timeout, self.stream.write_all(frame))
            .await
            .map_err(|_| anyhow::anyhow!("{addr}: timed out sending a request"))?
            .with_context(|| format!("{addr}: connection lost while sending a request"))
    }

    /// Writes one request and reads its response; returns the response body.
    async fn round_trip<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<Bytes> {
        let (frame, correlation_id) = self.frame(request, version)?;
        self.write_frame(&frame).await?;
        let timeout = self.request_timeout;
        let addr = self.addr.clone();
        let mut frame = tokio::time::timeout(timeout, read_frame(&mut self.stream))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{addr}: no {} response within {timeout:?}; the broker may be overloaded or stuck",
                    api_name(R::KEY)
                )
            })?
            .with_context(|| {
                format!(
                    "{addr}: connection lost waiting for the {} v{version} response (a broker closes the \
                     connection on a request it cannot parse)",
                    api_name(R::KEY)
                )
            })?;
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .with_context(|| format!("{addr}: malformed response header"))?;
        if header.correlation_id != correlation_id {
            bail!(
                "{addr}: response correlation id {} does not match request {correlation_id}",
                header.correlation_id
            );
        }
        Ok(frame)
    }
}

pub async fn read_frame(stream: &mut TcpStream) -> anyhow::Result<Bytes> {
    let size = stream.read_i32().await?;
    let size =
        usize::try_from(size).map_err(|_| anyhow::anyhow!("negative response size {size}"))?;
    if size > RESPONSE_BYTES_MAX {
        bail!("response of {size} bytes exceeds the {RESPONSE_BYTES_MAX}-byte limit");
    }
    let mut frame = vec![0u8; size];
    stream.read_exact(&mut frame).await?;
    Ok(Bytes::from(frame))
}

/// The name of API key `key`, e.g. `Produce`.
pub fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(key) => format!("{key:?}"),
        Err(()) => format!("API key {key}"),
    }
}

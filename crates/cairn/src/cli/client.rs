//! A small async Kafka-protocol client: one [`Connection`] per broker and a [`Cluster`]
//! that knows, from Metadata, which broker leads which partition.
//!
//! It owns the wire: a request is a 4-byte big-endian size, a request header (v1 or v2,
//! as [`ApiKey::request_header_version`] says for the chosen API version) and the body;
//! a response is a 4-byte size, a response header (v0 or v1) whose correlation id must
//! match the request's, and the body. It must not know any command's flags: the
//! commands in `topic`, `produce` and `consume` build requests and read responses.
//!
//! Version negotiation follows the protocol guide: the first request on every connection
//! is ApiVersions v3; a broker too old for v3 answers UNSUPPORTED_VERSION with a v0 body
//! that still lists its ranges, and we retry at the highest version it serves (v0 if it
//! lists none). Every later request is sent at the highest version both the broker and the
//! `kafka-protocol` crate speak; a command that can only build some versions caps it.
//!
//! Invariants: requests on one connection are strictly sequential (one in flight), so
//! the response read next belongs to the request just written, which the correlation id
//! check asserts; no response larger than [`RESPONSE_BYTES_MAX`] is allocated.
//! Called from the `cairn` binary's tokio runtime; nothing here survives the process.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader, TopicName,
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

/// The `client.id` sent in every request header, so broker logs name us.
const CLIENT_ID: &str = "cairn-cli";

/// ApiVersions version we try first: v3 is the first flexible one (KIP-511), which
/// every broker since Kafka 2.4 serves.
const API_VERSIONS_FIRST_VERSION: i16 = 3;

/// Metadata retries while a topic has no leader yet (just auto-created or created).
const METADATA_RETRIES_MAX: u32 = 20;
/// Pause between those retries.
const METADATA_RETRY_BACKOFF: Duration = Duration::from_millis(250);

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
}

impl Connection {
    /// Connects to `addr` and learns the broker's API versions.
    pub async fn connect(addr: &str, request_timeout: Duration) -> anyhow::Result<Connection> {
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
                    "{}: ApiVersions failed: {}",
                    self.addr,
                    explain(error.code(), None)
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
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
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

async fn read_frame(stream: &mut TcpStream) -> anyhow::Result<Bytes> {
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

/// A Kafka cluster seen from a bootstrap broker: Metadata, plus connections to partition
/// leaders (which may be other brokers than the bootstrap one).
pub struct Cluster {
    bootstrap: Connection,
    /// node id -> `host:port` from the last Metadata response.
    brokers: BTreeMap<i32, String>,
    connections: HashMap<i32, Connection>,
    request_timeout: Duration,
}

impl Cluster {
    /// Connects to the bootstrap broker.
    pub async fn connect(bootstrap: &str, request_timeout: Duration) -> anyhow::Result<Cluster> {
        Ok(Cluster {
            bootstrap: Connection::connect(bootstrap, request_timeout).await?,
            brokers: BTreeMap::new(),
            connections: HashMap::new(),
            request_timeout,
        })
    }

    /// The connection to the bootstrap broker, for cluster-wide requests.
    pub fn bootstrap(&mut self) -> &mut Connection {
        &mut self.bootstrap
    }

    /// Sends Metadata for `topics` (all topics if `None`) and remembers the brokers.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
        allow_auto_topic_creation: bool,
    ) -> anyhow::Result<MetadataResponse> {
        let version = self.bootstrap.version::<MetadataRequest>()?;
        let mut request = MetadataRequest::default();
        request.topics = match topics {
            Some(names) => Some(
                names
                    .iter()
                    .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
                    .collect(),
            ),
            // v0 has no null array: an empty one means all topics.
            None if version == 0 => Some(Vec::new()),
            None => None,
        };
        // Before v4 the broker decides auto-creation; the field must stay at its default.
        request.allow_auto_topic_creation = allow_auto_topic_creation || version < 4;
        let response = self.bootstrap.send_at(&request, version).await?;
        for broker in &response.brokers {
            self.brokers
                .insert(broker.node_id.0, format!("{}:{}", broker.host, broker.port));
        }
        Ok(response)
    }

    /// Metadata of one topic, waiting (a bounded number of times) until every partition
    /// has a leader, as it does not yet just after creation.
    pub async fn topic(
        &mut self,
        name: &str,
        allow_auto_topic_creation: bool,
    ) -> anyhow::Result<MetadataResponseTopic> {
        let names = [name.to_owned()];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = self
                .metadata(Some(&names), allow_auto_topic_creation)
                .await?;
            let topic = response
                .topics
                .into_iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
                .with_context(|| format!("Metadata response does not mention topic '{name}'"))?;
            let error = ResponseError::try_from_code(topic.error_code);
            let leaderless = topic.partitions.is_empty()
                || topic.partitions.iter().any(|p| {
                    p.leader_id.0 < 0 || ResponseError::try_from_code(p.error_code).is_some()
                });
            let waiting = match error {
                None => leaderless,
                Some(ResponseError::LeaderNotAvailable) => true,
                // Just auto-created: some brokers answer this until the topic is visible.
                Some(ResponseError::UnknownTopicOrPartition) => {
                    allow_auto_topic_creation && attempt < 4
                }
                Some(_) => false,
            };
            if waiting && attempt < METADATA_RETRIES_MAX {
                tokio::time::sleep(METADATA_RETRY_BACKOFF).await;
                continue;
            }
            if let Some(error) = error {
                bail!("topic '{name}': {}", explain(error.code(), None));
            }
            if leaderless {
                bail!(
                    "topic '{name}': some partitions still have no leader after {attempt} attempts; \
                     check that the brokers hosting them are up"
                );
            }
            return Ok(topic);
        }
    }

    /// A connection to broker `node_id`, opened on first use and then reused.
    pub async fn broker(&mut self, node_id: i32) -> anyhow::Result<&mut Connection> {
        if !self.connections.contains_key(&node_id) {
            let connection = self.open(node_id).await?;
            self.connections.insert(node_id, connection);
        }
        Ok(self.connections.get_mut(&node_id).expect("inserted above"))
    }

    /// Forgets the connection to `node_id` (after it failed) so the next use reconnects.
    pub fn drop_broker(&mut self, node_id: i32) {
        self.connections.remove(&node_id);
    }

    /// A new connection to broker `node_id` that the caller owns (for a task of its own).
    pub async fn open(&self, node_id: i32) -> anyhow::Result<Connection> {
        let addr = self.brokers.get(&node_id).with_context(|| {
            format!("broker {node_id} leads a partition but is not in the Metadata broker list")
        })?;
        Connection::connect(addr, self.request_timeout)
            .await
            .with_context(|| {
                format!("broker {node_id} at {addr} (the address it advertises in Metadata)")
            })
    }
}

/// A topic name for a request.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// The name of API key `key`, e.g. `Produce`.
pub fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(key) => format!("{key:?}"),
        Err(()) => format!("API key {key}"),
    }
}

/// Kafka's name of an error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_ERROR_CODE_{code}"),
        Some(error) => screaming_snake_case(&error.to_string()),
    }
}

fn screaming_snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// `NAME (error code N): broker message. what to do`, for any nonzero error code.
pub fn explain(code: i16, message: Option<&str>) -> String {
    let mut text = format!("{} (error code {code})", error_name(code));
    if let Some(message) = message.filter(|m| !m.is_empty()) {
        text.push_str(": ");
        text.push_str(message);
    }
    if let Some(hint) = ResponseError::try_from_code(code).and_then(hint) {
        text.push_str(" — ");
        text.push_str(hint);
    }
    text
}

/// What a user can do about an error, where we know.
fn hint(error: ResponseError) -> Option<&'static str> {
    use ResponseError as E;
    Some(match error {
        E::UnknownTopicOrPartition => {
            "the topic or partition does not exist: create it with `cairn topic create`, or check the name with `cairn topic list`"
        }
        E::UnknownTopicId => "the topic was deleted or recreated; run the command again",
        E::TopicAlreadyExists => {
            "pick another name, or delete the topic first with `cairn topic delete`"
        }
        E::InvalidTopicException => {
            "topic names are 1-249 characters of ASCII letters, digits, '.', '_' and '-', and not '.' or '..'"
        }
        E::InvalidPartitions => "the partition count must be at least 1",
        E::InvalidReplicationFactor => {
            "the replication factor must be at least 1 and at most the number of brokers"
        }
        E::InvalidConfig | E::PolicyViolation => {
            "check the --config keys and values against the broker's topic configs"
        }
        E::LeaderNotAvailable
        | E::NotLeaderOrFollower
        | E::FencedLeaderEpoch
        | E::UnknownLeaderEpoch => "partition leadership is moving; retry in a moment",
        E::MessageTooLarge | E::RecordListTooLarge => {
            "a batch exceeds the topic's max.message.bytes: send smaller lines, lower --batch-max-bytes, or raise the limit"
        }
        E::CorruptMessage => "the broker rejected the batch as corrupt (bad CRC or framing)",
        E::OffsetOutOfRange => {
            "the offset is outside the partition's log; use --from-beginning, or an offset between the log start and end"
        }
        E::InvalidRequiredAcks => "--acks must be all, 1 or 0",
        E::NotEnoughReplicas | E::NotEnoughReplicasAfterAppend => {
            "fewer in-sync replicas than min.insync.replicas; bring brokers back or use --acks 1"
        }
        E::RequestTimedOut => {
            "the broker did not finish in time; the request may or may not have taken effect"
        }
        E::UnsupportedCompressionType => {
            "the broker does not accept this --compression codec; try another"
        }
        E::UnsupportedVersion => "the broker does not serve this API version",
        E::TopicAuthorizationFailed | E::ClusterAuthorizationFailed => {
            "the broker requires authorization, but this client connects without SASL or TLS"
        }
        E::TopicDeletionDisabled => "the broker has delete.topic.enable=false",
        E::InvalidRequest => {
            "the broker could not parse the request; please report this with the broker's log"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(17), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
    }

    #[test]
    fn explain_names_code_message_and_hint() {
        let text = explain(36, Some("Topic 'a' already exists."));
        assert!(
            text.starts_with("TOPIC_ALREADY_EXISTS (error code 36): Topic 'a' already exists. — "),
            "{text}"
        );
    }

    /// A broker too old for ApiVersions v3 answers UNSUPPORTED_VERSION in v0 (KIP-511);
    /// the client retries at the highest version it lists and then uses its ranges.
    #[tokio::test]
    async fn api_versions_falls_back_for_an_old_broker() {
        use kafka_protocol::messages::api_versions_response::ApiVersion;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let ranges = vec![
                ApiVersion::default()
                    .with_api_key(18)
                    .with_min_version(0)
                    .with_max_version(2),
                ApiVersion::default()
                    .with_api_key(3)
                    .with_min_version(0)
                    .with_max_version(8),
            ];
            let mut seen_versions = Vec::new();
            for answer in [ResponseError::UnsupportedVersion.code(), 0] {
                let mut frame = read_frame(&mut socket).await.unwrap();
                let header = RequestHeader::decode(&mut frame, 1).unwrap();
                assert_eq!(header.request_api_key, 18);
                seen_versions.push(header.request_api_version);
                // UNSUPPORTED_VERSION is always encoded as v0; success at the asked version.
                let body_version = if answer == 0 {
                    header.request_api_version
                } else {
                    0
                };
                let response = ApiVersionsResponse::default()
                    .with_error_code(answer)
                    .with_api_keys(ranges.clone());
                let mut out = BytesMut::new();
                out.put_i32(0);
                ResponseHeader::default()
                    .with_correlation_id(header.correlation_id)
                    .encode(&mut out, 0)
                    .unwrap();
                response.encode(&mut out, body_version).unwrap();
                let size = (out.len() - 4) as i32;
                out[..4].copy_from_slice(&size.to_be_bytes());
                socket.write_all(&out).await.unwrap();
            }
            seen_versions
        });
        let connection = Connection::connect(&addr, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(broker.await.unwrap(), [3, 2]);
        assert_eq!(connection.version::<MetadataRequest>().unwrap(), 8);
        let error = connection
            .version::<kafka_protocol::messages::FetchRequest>()
            .unwrap_err();
        assert!(
            error.to_string().contains("does not serve the Fetch API"),
            "{error}"
        );
    }

    #[test]
    fn api_names() {
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(18), "ApiVersions");
    }
}

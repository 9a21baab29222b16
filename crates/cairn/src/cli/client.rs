//! The command-line tools' view of a Kafka cluster: a [`Cluster`] that knows, from
//! Metadata, which broker leads which partition, over [`Connection`]s (the wire itself is
//! `cairn_broker::client`). It must not know any command's flags: the commands in `topic`,
//! `produce` and `consume` build requests and read responses, and format errors with
//! [`explain`]. Called from the `cairn` binary's tokio runtime; nothing here survives the
//! process.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

pub use cairn_broker::client::Connection;

/// Metadata retries while a topic has no leader yet (just auto-created or created).
const METADATA_RETRIES_MAX: u32 = 20;
/// Pause between those retries.
const METADATA_RETRY_BACKOFF: Duration = Duration::from_millis(250);

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
    use bytes::{BufMut, BytesMut};
    use cairn_broker::client::{api_name, read_frame};
    use kafka_protocol::messages::{ApiVersionsResponse, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable};
    use tokio::io::AsyncWriteExt;

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

//! `cairn cluster status`: the health of a cluster at a glance, over the Kafka protocol.
//!
//! - The metadata quorum from DescribeQuorum (`__cluster_metadata`-0): leader, term,
//!   commit index (the high watermark) and every voter's applied index (its
//!   `log_end_offset`; -1 when the voter did not answer) with its lag = commit index −
//!   applied index. Observers (brokers outside the voters that follow the log) are listed
//!   apart, with the applied index they reported at their last fetch and their lag. A
//!   broker that does not serve DescribeQuorum (a ZooKeeper-mode Kafka) gets the rest of
//!   the report and a note instead.
//! - The brokers from Metadata, which leaves fenced brokers out: every id that appears in a
//!   partition's replica set but not in Metadata's broker list is shown as
//!   `fenced/offline`.
//! - Every partition's leader, replicas and ISR, with counts and lists of the
//!   under-replicated (ISR smaller than the replica set) and offline (leader -1 or
//!   LEADER_NOT_AVAILABLE) ones.
//!
//! A human report by default; `--json` prints one JSON object (schema below, in
//! [`report_json`]) for scripts and tests. The exit status is 0 whenever the report could
//! be made, whatever the cluster's health.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};

use super::client::{Cluster, error_name, explain, topic_name};

/// The metadata log's topic, whose partition 0 is the quorum (as in Kafka's KRaft).
const METADATA_TOPIC: &str = "__cluster_metadata";

/// Show the health of a cluster: metadata quorum, brokers, partition replication.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  cairn cluster status --bootstrap 127.0.0.1:9092
  cairn cluster status --json | jq '.under_replicated'")]
pub struct ClusterArgs {
    /// Bootstrap broker host:port.
    #[arg(
        short,
        long,
        default_value = "127.0.0.1:9092",
        env = "CAIRN_BOOTSTRAP",
        global = true
    )]
    pub bootstrap: String,
    /// How long to wait for each broker response.
    #[arg(long, default_value_t = 30_000, value_name = "MS", global = true)]
    pub request_timeout_ms: u64,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The cluster subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Quorum voters and their lag, brokers, and under-replicated and offline partitions.
    Status(StatusArgs),
}

/// `cairn cluster status`
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs `cairn cluster ...`.
pub async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let mut cluster = Cluster::connect(&args.bootstrap, timeout).await?;
    match args.command {
        ClusterCommand::Status(status) => {
            let report = gather(&mut cluster).await?;
            let text = if status.json {
                report_json(&report).to_string()
            } else {
                report_text(&report)
            };
            outln!("{}", text.trim_end())?;
            Ok(())
        }
    }
}

/// One voter (or observer) of the quorum.
#[derive(Debug, Clone, PartialEq)]
struct Voter {
    id: i32,
    /// Applied Raft index; `None` when unknown (the voter did not answer).
    applied_index: Option<i64>,
    observer: bool,
}

/// The quorum as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq)]
struct QuorumView {
    leader_id: i32,
    term: i32,
    commit_index: i64,
    voters: Vec<Voter>,
}

#[derive(Debug, Clone, PartialEq)]
struct BrokerView {
    id: i32,
    /// `host:port` and rack, for brokers in Metadata's broker list.
    address: Option<(String, i32, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq)]
struct PartitionView {
    topic: String,
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    offline_replicas: Vec<i32>,
    error_code: i16,
}

impl PartitionView {
    fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }

    fn offline(&self) -> bool {
        self.leader < 0
            || ResponseError::try_from_code(self.error_code)
                == Some(ResponseError::LeaderNotAvailable)
    }

    fn status(&self) -> &'static str {
        if self.offline() {
            "offline"
        } else if self.under_replicated() {
            "under-replicated"
        } else {
            "ok"
        }
    }

    fn name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// Everything `cluster status` prints.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    /// The quorum, or why it could not be described.
    quorum: Result<QuorumView, String>,
    controller_id: i32,
    brokers: Vec<BrokerView>,
    partitions: Vec<PartitionView>,
    /// Topics Metadata answered with an error: (name, error).
    topic_errors: Vec<(String, String)>,
}

impl Report {
    fn under_replicated(&self) -> Vec<&PartitionView> {
        self.partitions
            .iter()
            .filter(|p| p.under_replicated())
            .collect()
    }

    fn offline(&self) -> Vec<&PartitionView> {
        self.partitions.iter().filter(|p| p.offline()).collect()
    }
}

async fn gather(cluster: &mut Cluster) -> anyhow::Result<Report> {
    let quorum = describe_quorum(cluster).await;
    let metadata = cluster.metadata(None, false).await?;
    let mut partitions = Vec::new();
    let mut topic_errors = Vec::new();
    for topic in &metadata.topics {
        let name = topic
            .name
            .as_ref()
            .map_or_else(|| topic.topic_id.to_string(), |n| n.0.to_string());
        // LEADER_NOT_AVAILABLE at topic level still lists the partitions.
        if topic.error_code != 0
            && ResponseError::try_from_code(topic.error_code)
                != Some(ResponseError::LeaderNotAvailable)
        {
            topic_errors.push((name, explain(topic.error_code, None)));
            continue;
        }
        for p in &topic.partitions {
            partitions.push(PartitionView {
                topic: name.clone(),
                partition: p.partition_index,
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                error_code: p.error_code,
            });
        }
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let mut brokers: BTreeMap<i32, BrokerView> = metadata
        .brokers
        .iter()
        .map(|b| {
            (
                b.node_id.0,
                BrokerView {
                    id: b.node_id.0,
                    address: Some((
                        b.host.to_string(),
                        b.port,
                        b.rack.as_ref().map(|r| r.to_string()),
                    )),
                },
            )
        })
        .collect();
    for id in partitions.iter().flat_map(|p| &p.replicas) {
        brokers.entry(*id).or_insert(BrokerView {
            id: *id,
            address: None,
        });
    }
    Ok(Report {
        quorum,
        controller_id: metadata.controller_id.0,
        brokers: brokers.into_values().collect(),
        partitions,
        topic_errors,
    })
}

/// DescribeQuorum of `__cluster_metadata`-0 on the bootstrap broker.
async fn describe_quorum(cluster: &mut Cluster) -> Result<QuorumView, String> {
    let connection = cluster.bootstrap();
    let version = connection
        .version::<DescribeQuorumRequest>()
        .map_err(|e| e.to_string())?;
    let request = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(topic_name(METADATA_TOPIC))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ]);
    let response = connection
        .send_at(&request, version)
        .await
        .map_err(|e| format!("DescribeQuorum failed: {e:#}"))?;
    quorum_view(response)
}

fn quorum_view(response: DescribeQuorumResponse) -> Result<QuorumView, String> {
    if response.error_code != 0 {
        return Err(format!(
            "DescribeQuorum: {}",
            explain(response.error_code, response.error_message.as_deref())
        ));
    }
    let partition = response
        .topics
        .into_iter()
        .find(|t| t.topic_name.0.as_str() == METADATA_TOPIC)
        .and_then(|t| t.partitions.into_iter().find(|p| p.partition_index == 0))
        .ok_or_else(|| format!("DescribeQuorum did not describe {METADATA_TOPIC}-0"))?;
    if partition.error_code != 0 {
        return Err(format!(
            "DescribeQuorum: {}",
            explain(partition.error_code, partition.error_message.as_deref())
        ));
    }
    let voter = |r: &ReplicaState, observer: bool| Voter {
        id: r.replica_id.0,
        applied_index: (r.log_end_offset >= 0).then_some(r.log_end_offset),
        observer,
    };
    let mut voters: Vec<Voter> = partition
        .current_voters
        .iter()
        .map(|r| voter(r, false))
        .collect();
    voters.extend(partition.observers.iter().map(|r| voter(r, true)));
    Ok(QuorumView {
        leader_id: partition.leader_id.0,
        term: partition.leader_epoch,
        commit_index: partition.high_watermark,
        voters,
    })
}

/// Left-aligned columns two spaces apart (as `cairn group`'s tables).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for cells in std::iter::once(&header).chain(rows) {
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out.push('\n');
    }
    out
}

fn ids(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".to_owned();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn names(partitions: &[&PartitionView]) -> String {
    if partitions.is_empty() {
        return "none".to_owned();
    }
    partitions
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(" ")
}

fn role(quorum: &QuorumView, voter: &Voter) -> &'static str {
    if voter.observer {
        "observer"
    } else if voter.id == quorum.leader_id {
        "leader"
    } else {
        "follower"
    }
}

fn report_text(report: &Report) -> String {
    let mut out = String::new();
    match &report.quorum {
        Ok(q) => {
            let leader = if q.leader_id < 0 {
                "none".to_owned()
            } else {
                q.leader_id.to_string()
            };
            let _ = writeln!(
                out,
                "Metadata quorum ({METADATA_TOPIC}-0): leader {leader}, term {}, commit index {}",
                q.term, q.commit_index
            );
            let rows: Vec<Vec<String>> = q
                .voters
                .iter()
                .filter(|v| !v.observer)
                .map(|v| {
                    vec![
                        v.id.to_string(),
                        role(q, v).to_owned(),
                        v.applied_index
                            .map_or("unreachable".to_owned(), |a| a.to_string()),
                        v.applied_index
                            .map_or("-".to_owned(), |a| (q.commit_index - a).to_string()),
                    ]
                })
                .collect();
            out.push_str(&table(&["VOTER", "ROLE", "APPLIED-INDEX", "LAG"], &rows));
            let observers: Vec<Vec<String>> = q
                .voters
                .iter()
                .filter(|v| v.observer)
                .map(|v| {
                    let applied = v.applied_index.unwrap_or(0);
                    vec![
                        v.id.to_string(),
                        applied.to_string(),
                        (q.commit_index - applied).max(0).to_string(),
                    ]
                })
                .collect();
            if !observers.is_empty() {
                let _ = writeln!(out, "Observers (brokers following the metadata log):");
                out.push_str(&table(&["OBSERVER", "APPLIED-INDEX", "LAG"], &observers));
            }
        }
        Err(why) => {
            let _ = writeln!(out, "Metadata quorum: not described ({why})");
        }
    }
    out.push('\n');

    let online = report
        .brokers
        .iter()
        .filter(|b| b.address.is_some())
        .count();
    let _ = writeln!(
        out,
        "Brokers: {online} online, {} fenced/offline (controller {})",
        report.brokers.len() - online,
        report.controller_id
    );
    let rows: Vec<Vec<String>> = report
        .brokers
        .iter()
        .map(|b| match &b.address {
            Some((host, port, rack)) => vec![
                b.id.to_string(),
                format!("{host}:{port}"),
                rack.clone().unwrap_or_else(|| "-".to_owned()),
                "online".to_owned(),
            ],
            None => vec![
                b.id.to_string(),
                "-".to_owned(),
                "-".to_owned(),
                "fenced/offline".to_owned(),
            ],
        })
        .collect();
    out.push_str(&table(&["ID", "ADDRESS", "RACK", "STATUS"], &rows));
    out.push('\n');

    let under = report.under_replicated();
    let offline = report.offline();
    let _ = writeln!(
        out,
        "Partitions: {}, under-replicated: {}, offline: {}",
        report.partitions.len(),
        under.len(),
        offline.len()
    );
    if !report.partitions.is_empty() {
        let rows: Vec<Vec<String>> = report
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.topic.clone(),
                    p.partition.to_string(),
                    p.leader.to_string(),
                    ids(&p.replicas),
                    ids(&p.isr),
                    p.status().to_owned(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR", "STATUS"],
            &rows,
        ));
    }
    let _ = writeln!(out, "Under-replicated: {}", names(&under));
    let _ = writeln!(out, "Offline: {}", names(&offline));
    for (topic, error) in &report.topic_errors {
        let _ = writeln!(out, "Topic '{topic}' not described: {error}");
    }
    out
}

/// The `--json` form:
///
/// ```json
/// {"quorum": {"topic": "__cluster_metadata", "partition": 0, "leader_id": 1, "term": 3,
///             "commit_index": 42,
///             "voters": [{"id": 1, "role": "leader", "applied_index": 42, "lag": 0,
///                         "reachable": true}, ...],
///             "observers": [{"id": 4, "applied_index": 41, "lag": 1}, ...],
///             "error": null},
///  "controller_id": 1,
///  "brokers": [{"id": 1, "host": "h", "port": 9092, "rack": null, "status": "online"},
///              {"id": 3, "host": null, "port": null, "rack": null,
///               "status": "fenced/offline"}],
///  "partitions": [{"topic": "t", "partition": 0, "leader": 1, "leader_epoch": 0,
///                  "replicas": [1,2,3], "isr": [1,2,3], "offline_replicas": [],
///                  "error": "NONE", "status": "ok"}],
///  "summary": {"brokers": 3, "online_brokers": 2, "partitions": 1,
///              "under_replicated": 0, "offline": 0},
///  "under_replicated": ["t-0"], "offline": [], "topic_errors": []}
/// ```
///
/// An unreachable voter has `applied_index` -1, `lag` null and `reachable` false. An
/// observer's `applied_index` is the one it reported at its last fetch from the leader.
/// When DescribeQuorum failed, `quorum` is `{"error": "..."}`.
fn report_json(report: &Report) -> Json {
    let quorum = match &report.quorum {
        Ok(q) => Json::obj([
            ("topic", Json::str(METADATA_TOPIC)),
            ("partition", Json::Int(0)),
            ("leader_id", Json::Int(q.leader_id.into())),
            ("term", Json::Int(q.term.into())),
            ("commit_index", Json::Int(q.commit_index)),
            (
                "voters",
                Json::Arr(
                    q.voters
                        .iter()
                        .filter(|v| !v.observer)
                        .map(|v| {
                            Json::obj([
                                ("id", Json::Int(v.id.into())),
                                ("role", Json::str(role(q, v))),
                                ("applied_index", Json::Int(v.applied_index.unwrap_or(-1))),
                                (
                                    "lag",
                                    v.applied_index
                                        .map_or(Json::Null, |a| Json::Int(q.commit_index - a)),
                                ),
                                ("reachable", Json::Bool(v.applied_index.is_some())),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "observers",
                Json::Arr(
                    q.voters
                        .iter()
                        .filter(|v| v.observer)
                        .map(|v| {
                            let applied = v.applied_index.unwrap_or(0);
                            Json::obj([
                                ("id", Json::Int(v.id.into())),
                                ("applied_index", Json::Int(applied)),
                                ("lag", Json::Int((q.commit_index - applied).max(0))),
                            ])
                        })
                        .collect(),
                ),
            ),
            ("error", Json::Null),
        ]),
        Err(why) => Json::obj([("error", Json::str(why))]),
    };
    let brokers = report
        .brokers
        .iter()
        .map(|b| {
            let (host, port, rack, status) = match &b.address {
                Some((host, port, rack)) => (
                    Json::str(host),
                    Json::Int((*port).into()),
                    rack.as_deref().map_or(Json::Null, Json::str),
                    "online",
                ),
                None => (Json::Null, Json::Null, Json::Null, "fenced/offline"),
            };
            Json::obj([
                ("id", Json::Int(b.id.into())),
                ("host", host),
                ("port", port),
                ("rack", rack),
                ("status", Json::str(status)),
            ])
        })
        .collect();
    let int_list = |ids: &[i32]| Json::Arr(ids.iter().map(|i| Json::Int((*i).into())).collect());
    let partitions = report
        .partitions
        .iter()
        .map(|p| {
            Json::obj([
                ("topic", Json::str(&p.topic)),
                ("partition", Json::Int(p.partition.into())),
                ("leader", Json::Int(p.leader.into())),
                ("leader_epoch", Json::Int(p.leader_epoch.into())),
                ("replicas", int_list(&p.replicas)),
                ("isr", int_list(&p.isr)),
                ("offline_replicas", int_list(&p.offline_replicas)),
                ("error", Json::str(&error_name(p.error_code))),
                ("status", Json::str(p.status())),
            ])
        })
        .collect();
    let under = report.under_replicated();
    let offline = report.offline();
    let name_list =
        |ps: &[&PartitionView]| Json::Arr(ps.iter().map(|p| Json::str(&p.name())).collect());
    let online = report
        .brokers
        .iter()
        .filter(|b| b.address.is_some())
        .count();
    Json::obj([
        ("quorum", quorum),
        ("controller_id", Json::Int(report.controller_id.into())),
        ("brokers", Json::Arr(brokers)),
        ("partitions", Json::Arr(partitions)),
        (
            "summary",
            Json::obj([
                ("brokers", Json::Int(report.brokers.len() as i64)),
                ("online_brokers", Json::Int(online as i64)),
                ("partitions", Json::Int(report.partitions.len() as i64)),
                ("under_replicated", Json::Int(under.len() as i64)),
                ("offline", Json::Int(offline.len() as i64)),
            ]),
        ),
        ("under_replicated", name_list(&under)),
        ("offline", name_list(&offline)),
        (
            "topic_errors",
            Json::Arr(
                report
                    .topic_errors
                    .iter()
                    .map(|(topic, error)| {
                        Json::obj([("topic", Json::str(topic)), ("error", Json::str(error))])
                    })
                    .collect(),
            ),
        ),
    ])
}

/// A JSON value, written by hand: the CLI has no JSON library and needs only output.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    fn str(s: &str) -> Json {
        Json::Str(s.to_owned())
    }

    fn obj<const N: usize>(fields: [(&'static str, Json); N]) -> Json {
        Json::Obj(fields.into())
    }

    fn write(&self, out: &mut String, indent: usize) {
        let pad = |out: &mut String, n: usize| out.extend(std::iter::repeat_n(' ', n));
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Str(s) => write_json_string(out, s),
            Json::Arr(items) if items.is_empty() => out.push_str("[]"),
            // Arrays of scalars on one line: replica lists stay readable.
            Json::Arr(items)
                if items
                    .iter()
                    .all(|i| !matches!(i, Json::Arr(_) | Json::Obj(_))) =>
            {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out, indent);
                }
                out.push(']');
            }
            Json::Arr(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    pad(out, indent + 2);
                    item.write(out, indent + 2);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push(']');
            }
            Json::Obj(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Obj(fields) => {
                out.push_str("{\n");
                for (i, (key, value)) in fields.iter().enumerate() {
                    pad(out, indent + 2);
                    write_json_string(out, key);
                    out.push_str(": ");
                    value.write(out, indent + 2);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push('}');
            }
        }
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        self.write(&mut out, 0);
        f.write_str(&out)
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::messages::describe_quorum_response::{
        PartitionData as QuorumPartition, TopicData as QuorumTopic,
    };

    use super::*;

    fn partition(
        topic: &str,
        index: i32,
        leader: i32,
        replicas: &[i32],
        isr: &[i32],
    ) -> PartitionView {
        PartitionView {
            topic: topic.to_owned(),
            partition: index,
            leader,
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline_replicas: Vec::new(),
            error_code: if leader < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            },
        }
    }

    fn report() -> Report {
        Report {
            quorum: Ok(QuorumView {
                leader_id: 1,
                term: 4,
                commit_index: 40,
                voters: vec![
                    Voter {
                        id: 1,
                        applied_index: Some(40),
                        observer: false,
                    },
                    Voter {
                        id: 2,
                        applied_index: Some(37),
                        observer: false,
                    },
                    Voter {
                        id: 3,
                        applied_index: None,
                        observer: false,
                    },
                    Voter {
                        id: 4,
                        applied_index: Some(38),
                        observer: true,
                    },
                ],
            }),
            controller_id: 1,
            brokers: vec![
                BrokerView {
                    id: 1,
                    address: Some(("h1".into(), 9092, None)),
                },
                BrokerView {
                    id: 2,
                    address: Some(("h2".into(), 9092, Some("r\"2".into()))),
                },
                BrokerView {
                    id: 3,
                    address: None,
                },
            ],
            partitions: vec![
                partition("t", 0, 1, &[1, 2, 3], &[1, 2]),
                partition("t", 1, 2, &[2, 1], &[2, 1]),
                partition("u", 0, -1, &[3], &[3]),
            ],
            topic_errors: Vec::new(),
        }
    }

    #[test]
    fn text_report() {
        let text = report_text(&report());
        assert!(
            text.starts_with(
                "Metadata quorum (__cluster_metadata-0): leader 1, term 4, commit index 40\n"
            ),
            "{text}"
        );
        let voter_rows: Vec<Vec<&str>> = text
            .lines()
            .skip(1)
            .take(4)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            voter_rows,
            [
                vec!["VOTER", "ROLE", "APPLIED-INDEX", "LAG"],
                vec!["1", "leader", "40", "0"],
                vec!["2", "follower", "37", "3"],
                vec!["3", "follower", "unreachable", "-"],
            ]
        );
        let observer_rows: Vec<Vec<&str>> = text
            .lines()
            .skip(6)
            .take(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            observer_rows,
            [
                vec!["OBSERVER", "APPLIED-INDEX", "LAG"],
                vec!["4", "38", "2"]
            ]
        );
        assert!(
            text.contains("Brokers: 2 online, 1 fenced/offline (controller 1)"),
            "{text}"
        );
        assert!(text.contains("3   -        -     fenced/offline"), "{text}");
        assert!(
            text.contains("Partitions: 3, under-replicated: 1, offline: 1"),
            "{text}"
        );
        assert!(text.contains("Under-replicated: t-0\n"), "{text}");
        assert!(text.contains("Offline: u-0\n"), "{text}");
        let t0 = text.lines().find(|l| l.starts_with("t      0")).unwrap();
        assert_eq!(
            t0.split_whitespace().collect::<Vec<_>>(),
            ["t", "0", "1", "1,2,3", "1,2", "under-replicated"]
        );
    }

    #[test]
    fn json_report() {
        let json = report_json(&report()).to_string();
        let compact: String = json.split_whitespace().collect();
        for expected in [
            r#""leader_id": 1"#,
            r#""commit_index": 40"#,
            r#""role": "follower",
          "applied_index": -1,
          "lag": null,
          "reachable": false"#,
            r#""observers": [{"id": 4, "applied_index": 38, "lag": 2}]"#,
            r#""rack": "r\"2""#,
            r#""status": "fenced/offline""#,
            r#""replicas": [1, 2, 3]"#,
            r#""isr": [1, 2]"#,
            r#""error": "LEADER_NOT_AVAILABLE""#,
            r#""under_replicated": ["t-0"]"#,
            r#""offline": ["u-0"]"#,
            r#""topic_errors": []"#,
        ] {
            let expected: String = expected.split_whitespace().collect();
            assert!(compact.contains(&expected), "{expected} not in {json}");
        }
        assert!(json.starts_with("{\n  \"quorum\": {\n"), "{json}");
        assert!(json.ends_with("\n}"), "{json}");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        write_json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn quorum_from_describe_quorum() {
        let response = DescribeQuorumResponse::default().with_topics(vec![
            QuorumTopic::default()
                .with_topic_name(topic_name(METADATA_TOPIC))
                .with_partitions(vec![
                    QuorumPartition::default()
                        .with_leader_id(BrokerId(2))
                        .with_leader_epoch(7)
                        .with_high_watermark(99)
                        .with_current_voters(vec![
                            ReplicaState::default()
                                .with_replica_id(BrokerId(1))
                                .with_log_end_offset(-1),
                            ReplicaState::default()
                                .with_replica_id(BrokerId(2))
                                .with_log_end_offset(99),
                        ])
                        .with_observers(vec![
                            ReplicaState::default()
                                .with_replica_id(BrokerId(4))
                                .with_log_end_offset(97),
                        ]),
                ]),
        ]);
        let q = quorum_view(response).unwrap();
        assert_eq!((q.leader_id, q.term, q.commit_index), (2, 7, 99));
        assert_eq!(q.voters[0].applied_index, None);
        assert_eq!(q.voters[1].applied_index, Some(99));
        assert_eq!(
            q.voters[2],
            Voter {
                id: 4,
                applied_index: Some(97),
                observer: true
            }
        );

        let refused = DescribeQuorumResponse::default()
            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
        assert!(
            quorum_view(refused)
                .unwrap_err()
                .contains("UNKNOWN_TOPIC_OR_PARTITION")
        );
    }
}

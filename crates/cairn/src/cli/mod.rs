//! Kafka-protocol client commands: `cairn topic`, `cairn produce`, `cairn consume`,
//! `cairn group`, `cairn cluster`.
//!
//! They speak only the Kafka protocol (via the `kafka-protocol` crate), never Cairn's
//! internals, so they work against any Kafka-compatible broker: Cairn, Apache Kafka,
//! Redpanda. They must not link broker state: everything goes over TCP.
//!
//! - `client`: connections, ApiVersions negotiation, framing, Metadata and leaders,
//!   and error messages that name the Kafka error code and what to do about it.
//! - `topic`: CreateTopics, Metadata (list, describe), DescribeConfigs, DeleteTopics.
//! - `produce`: stdin lines to v2 record batches, partitioned like Kafka's producer
//!   (`partitioner`: murmur2 of the key).
//! - `consume`: ListOffsets then a Fetch long-poll loop, one task per leader.
//! - `group`: consumer groups through their coordinator (FindCoordinator, ListGroups,
//!   DescribeGroups, OffsetFetch, OffsetCommit, DeleteGroups) and ListOffsets for lag.
//! - `cluster`: `cluster status`, the quorum (DescribeQuorum), brokers and partition
//!   replication (Metadata).
//! - `reassign`: `partition reassign`, `partition list-reassignments` and `broker
//!   decommission` (AlterPartitionReassignments, ListPartitionReassignments, Metadata).
//!
//! `main.rs` calls [`topic`], [`produce`], [`consume`] and [`group`] on its tokio runtime, one
//! command per process; nothing here keeps state across runs.

/// `println!` that returns the write error instead of panicking, so that a closed
/// stdout (`cairn topic list | head`) ends the command quietly (see [`is_broken_pipe`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod client;
mod cluster;
mod consume;
mod group;
mod partitioner;
mod produce;
mod reassign;
mod topic;

pub use cluster::ClusterArgs;
pub use consume::{ConsumeArgs, consume};
pub use group::GroupArgs;
pub use produce::{ProduceArgs, produce};
pub use reassign::{BrokerArgs, PartitionArgs};
pub use topic::TopicArgs;

/// Runs `cairn topic ...`.
pub async fn topic(args: TopicArgs) -> anyhow::Result<()> {
    match topic::topic(args).await {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        result => result,
    }
}

/// Runs `cairn group ...`.
pub async fn group(args: GroupArgs) -> anyhow::Result<()> {
    match group::group(args).await {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        result => result,
    }
}

/// Runs `cairn cluster ...`.
pub async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    match cluster::cluster(args).await {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        result => result,
    }
}

/// Runs `cairn partition ...` (reassignments).
pub async fn partition(args: PartitionArgs) -> anyhow::Result<()> {
    match reassign::partition(args).await {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        result => result,
    }
}

/// Runs `cairn broker ...` (decommissioning).
pub async fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    match reassign::broker(args).await {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        result => result,
    }
}

/// Whether `e` is a write to a stdout whose reader went away (`| head`): the reader
/// has what it wanted, so it is not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Parses `key=value` (for `--config` and `--header`); the key must not be empty, the
/// value may be, and may itself contain `=`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::produce::{Acks, CompressionArg};
    use super::topic::TopicCommand;
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Command {
        Topic(TopicArgs),
        Produce(ProduceArgs),
        Consume(ConsumeArgs),
        Cluster(ClusterArgs),
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("cairn").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cluster_status_flags() {
        let Command::Cluster(args) =
            parse(&["cluster", "status", "--json", "--bootstrap", "h:1"]).unwrap()
        else {
            panic!("not cluster")
        };
        assert_eq!(args.bootstrap, "h:1");
        let cluster::ClusterCommand::Status(status) = args.command;
        assert!(status.json);
        assert!(parse(&["cluster"]).is_err(), "a subcommand is required");
    }

    #[test]
    fn key_value() {
        assert_eq!(parse_key_value("a=b"), Ok(("a".into(), "b".into())));
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), "".into())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }

    #[test]
    fn topic_create() {
        let Command::Topic(args) = parse(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "-r",
            "1",
            "--config",
            "retention.ms=1000",
            "-c",
            "cleanup.policy=compact",
            "-b",
            "h:1",
        ])
        .unwrap() else {
            panic!("not topic")
        };
        assert_eq!(args.bootstrap, "h:1");
        let TopicCommand::Create(create) = args.command else {
            panic!("not create")
        };
        assert_eq!(create.name, "orders");
        assert_eq!(create.partitions, Some(3));
        assert_eq!(create.replication_factor, Some(1));
        assert_eq!(
            create.configs,
            [
                ("retention.ms".to_owned(), "1000".to_owned()),
                ("cleanup.policy".to_owned(), "compact".to_owned())
            ]
        );
        assert!(parse(&["topic", "create", "t", "--partitions", "0"]).is_err());
        assert!(parse(&["topic", "create", "t", "--config", "nokey"]).is_err());
    }

    #[test]
    fn topic_other_subcommands() {
        assert!(matches!(
            parse(&["topic", "list"]).unwrap(),
            Command::Topic(TopicArgs {
                command: TopicCommand::List(_),
                ..
            })
        ));
        let Command::Topic(TopicArgs {
            command: TopicCommand::Describe(d),
            ..
        }) = parse(&["topic", "describe", "a", "b"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(d.names, ["a", "b"]);
        assert!(parse(&["topic", "delete"]).is_err(), "delete needs a name");
        assert!(parse(&["topic"]).is_err(), "a subcommand is required");
    }

    #[test]
    fn produce_flags() {
        let Command::Produce(args) = parse(&[
            "produce",
            "t",
            "-p",
            "2",
            "--key-separator",
            ":",
            "-H",
            "a=1",
            "--header",
            "b=",
            "--acks",
            "0",
            "--compression",
            "zstd",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(args.topic, "t");
        assert_eq!(args.partition, Some(2));
        assert_eq!(args.key_separator.as_deref(), Some(":"));
        assert_eq!(
            args.headers,
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), String::new())
            ]
        );
        assert_eq!(args.acks, Acks::None);
        assert_eq!(args.compression, CompressionArg::Zstd);

        let Command::Produce(args) = parse(&["produce", "t"]).unwrap() else {
            panic!()
        };
        assert_eq!(args.acks, Acks::All);
        assert_eq!(args.acks.wire(), -1);
        assert_eq!(args.compression, CompressionArg::None);
        assert_eq!(args.key_separator, None);
        assert_eq!(args.batch_max_records, 1000);

        for (acks, wire) in [("all", -1), ("-1", -1), ("1", 1), ("0", 0)] {
            let Command::Produce(args) = parse(&["produce", "t", "--acks", acks]).unwrap() else {
                panic!()
            };
            assert_eq!(args.acks.wire(), wire);
        }
        assert!(parse(&["produce", "t", "--acks", "2"]).is_err());
        assert!(parse(&["produce", "t", "--compression", "brotli"]).is_err());
        assert!(parse(&["produce", "t", "--partition", "-1"]).is_err());
        assert!(parse(&["produce", "t", "--key-separator", ""]).is_err());
        assert!(parse(&["produce"]).is_err(), "the topic is required");
    }

    #[test]
    fn consume_flags() {
        let Command::Consume(args) = parse(&[
            "consume",
            "t",
            "--from-beginning",
            "--max-messages",
            "10",
            "--print-key",
            "--print-headers",
            "--timeout-ms",
            "500",
        ])
        .unwrap() else {
            panic!()
        };
        assert!(args.from_beginning);
        assert_eq!(args.partition, None);
        assert_eq!(args.offset, None);
        assert_eq!(args.max_messages, Some(10));
        assert_eq!(args.timeout_ms, Some(500));
        assert!(args.print_key && args.print_headers);
        assert_eq!(args.key_separator, "\t");

        let Command::Consume(args) = parse(&["consume", "t", "-p", "1", "--offset", "42"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(args.partition, Some(1));
        assert_eq!(args.offset, Some(42));
        assert!(parse(&["consume", "t", "--from-beginning", "--offset", "3"]).is_err());
        assert!(parse(&["consume", "t", "--offset", "-3"]).is_err());
    }
}

//! Partition reassignment (KIP-455) over the Kafka protocol:
//!
//! - `cairn partition reassign --topic T --partition P --replicas 1,2,3` starts moving a
//!   partition to new replicas (AlterPartitionReassignments); `--cancel` cancels the one
//!   in progress; `--wait` waits until it is done.
//! - `cairn partition list-reassignments` lists the reassignments in progress
//!   (ListPartitionReassignments).
//! - `cairn partition elect-leaders [--topic T [--partition P]...]` moves leadership back
//!   to the preferred replicas (ElectLeaders, preferred election) of every partition, of
//!   one topic, or of the partitions named, and reports each partition elected; it fails
//!   if any named partition could not be elected (ELECTION_NOT_NEEDED is not a failure).
//! - `cairn broker decommission N` moves every replica off broker N: for each partition
//!   with a replica on N, N is replaced by the live broker (in Metadata's broker list)
//!   hosting the fewest replicas that does not already hold one of the partition, all in
//!   one AlterPartitionReassignments; then it waits until none of those reassignments is
//!   in progress and no partition has a replica on N, and reports what moved. A partition
//!   already on every other live broker cannot keep its replication factor: the command
//!   refuses, or with `--allow-shrink` drops the replica on N (one replica fewer).
//!   Topics created afterwards may still place replicas on N while it runs: stop it once
//!   decommissioned.
//!
//! Works against any broker that serves these APIs (Cairn, Apache Kafka 2.4+).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
};

use super::client::{Cluster, explain, topic_name};

/// How often `--wait` and `decommission` look at the reassignments in progress.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Move partitions to other brokers (partition reassignment, KIP-455).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  cairn partition reassign --topic orders --partition 0 --replicas 2,3 --wait
  cairn partition reassign --topic orders --partition 0 --cancel
  cairn partition list-reassignments
  cairn partition elect-leaders --topic orders")]
pub struct PartitionArgs {
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
    pub command: PartitionCommand,
}

/// The partition subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PartitionCommand {
    /// Start (or replace, or cancel) moving one partition to new replicas.
    Reassign(ReassignArgs),
    /// List the partition reassignments in progress.
    ListReassignments(ListArgs),
    /// Move leadership back to each partition's preferred replica (its first replica).
    ElectLeaders(ElectArgs),
}

/// `cairn partition elect-leaders`
#[derive(clap::Args, Debug)]
pub struct ElectArgs {
    /// Only this topic's partitions (default: every partition of the cluster).
    #[arg(long)]
    pub topic: Option<String>,
    /// Only these partitions of `--topic` (repeatable or comma-separated).
    #[arg(long, requires = "topic", value_delimiter = ',',
          value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Vec<i32>,
}

/// `cairn partition reassign`
#[derive(clap::Args, Debug)]
pub struct ReassignArgs {
    #[arg(long)]
    pub topic: String,
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: i32,
    /// The new replicas, comma-separated broker ids; the first is the preferred leader.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "cancel",
        conflicts_with = "cancel"
    )]
    pub replicas: Vec<i32>,
    /// Cancel the reassignment in progress: back to the original replicas.
    #[arg(long)]
    pub cancel: bool,
    /// Wait until the reassignment is complete.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value_t = 300_000, value_name = "MS")]
    pub timeout_ms: u64,
}

/// `cairn partition list-reassignments`
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only this topic's partitions.
    #[arg(long)]
    pub topic: Option<String>,
}

/// Decommission brokers.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  cairn broker decommission 3 --bootstrap 127.0.0.1:9092")]
pub struct BrokerArgs {
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
    pub command: BrokerCommand,
}

/// The broker subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BrokerCommand {
    /// Move every partition replica off a broker, then wait until that is done.
    Decommission(DecommissionArgs),
}

/// `cairn broker decommission`
#[derive(clap::Args, Debug)]
pub struct DecommissionArgs {
    /// The broker id to move replicas off.
    #[arg(value_parser = clap::value_parser!(i32).range(0..))]
    pub broker: i32,
    /// Start the moves and return without waiting for them to finish.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the moves to finish.
    #[arg(long, default_value_t = 600_000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Where no other live broker can take a partition's replica (it is on all of them
    /// already), drop the replica, lowering that partition's replication factor.
    #[arg(long)]
    pub allow_shrink: bool,
}

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ongoing {
    replicas: Vec<i32>,
    adding: Vec<i32>,
    removing: Vec<i32>,
}

type Key = (String, i32);

/// Runs `cairn partition ...`.
pub async fn partition(args: PartitionArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let mut cluster = Cluster::connect(&args.bootstrap, timeout).await?;
    match args.command {
        PartitionCommand::Reassign(r) => {
            let target = (!r.cancel).then(|| r.replicas.clone());
            let key = (r.topic.clone(), r.partition);
            let errors = alter(&mut cluster, &[(key.clone(), target.clone())]).await?;
            if let Some(error) = errors.get(&key) {
                bail!("{}-{}: {error}", r.topic, r.partition);
            }
            match &target {
                Some(t) => outln!(
                    "reassignment of {}-{} to replicas {} started",
                    r.topic,
                    r.partition,
                    join(t)
                )?,
                None => outln!("reassignment of {}-{} cancelled", r.topic, r.partition)?,
            }
            if r.wait {
                let started = Instant::now();
                wait(
                    &mut cluster,
                    &BTreeSet::from([key]),
                    None,
                    Duration::from_millis(r.timeout_ms),
                )
                .await?;
                outln!(
                    "reassignment of {}-{} complete after {:.1} s",
                    r.topic,
                    r.partition,
                    started.elapsed().as_secs_f64()
                )?;
            }
            Ok(())
        }
        PartitionCommand::ElectLeaders(e) => elect_leaders(&mut cluster, e).await,
        PartitionCommand::ListReassignments(l) => {
            let ongoing = list(&mut cluster).await?;
            let rows: Vec<_> = ongoing
                .iter()
                .filter(|((t, _), _)| l.topic.as_ref().is_none_or(|want| want == t))
                .collect();
            if rows.is_empty() {
                outln!("no partition reassignment in progress")?;
                return Ok(());
            }
            outln!(
                "{:<30} {:>9}  {:<16} {:<12} {:<12}",
                "TOPIC",
                "PARTITION",
                "REPLICAS",
                "ADDING",
                "REMOVING"
            )?;
            for ((topic, partition), o) in rows {
                outln!(
                    "{topic:<30} {partition:>9}  {:<16} {:<12} {:<12}",
                    join(&o.replicas),
                    join(&o.adding),
                    join(&o.removing)
                )?;
            }
            Ok(())
        }
    }
}

/// `cairn partition elect-leaders`: one ElectLeaders request (preferred election).
async fn elect_leaders(cluster: &mut Cluster, e: ElectArgs) -> anyhow::Result<()> {
    let partitions = match (&e.topic, e.partition.is_empty()) {
        (None, _) => None,
        (Some(topic), false) => Some(vec![(topic.clone(), e.partition.clone())]),
        (Some(topic), true) => {
            let metadata = cluster
                .metadata(Some(std::slice::from_ref(topic)), false)
                .await?;
            let t = metadata
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
                .with_context(|| format!("topic '{topic}' is not in the Metadata response"))?;
            if t.error_code != 0 {
                bail!("topic '{topic}': {}", explain(t.error_code, None));
            }
            Some(vec![(
                topic.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )])
        }
    };
    let named = partitions.is_some();
    let request = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_timeout_ms(60_000)
        .with_topic_partitions(partitions.map(|ps| {
            ps.into_iter()
                .map(|(topic, partitions)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(&topic))
                        .with_partitions(partitions)
                })
                .collect()
        }));
    let response: ElectLeadersResponse = cluster
        .bootstrap()
        .send(&request)
        .await
        .context("ElectLeaders")?;
    if response.error_code != 0 {
        bail!("ElectLeaders: {}", explain(response.error_code, None));
    }
    let election_not_needed = kafka_protocol::error::ResponseError::ElectionNotNeeded.code();
    let (mut elected, mut not_needed, mut failed) = (0, 0, Vec::new());
    for t in &response.replica_election_results {
        for p in &t.partition_result {
            let name = format!("{}-{}", t.topic.as_str(), p.partition_id);
            match p.error_code {
                0 => {
                    elected += 1;
                    outln!("{name}: leadership moved to its preferred replica")?;
                }
                code if code == election_not_needed => not_needed += 1,
                code => failed.push(format!(
                    "{name}: {}",
                    explain(code, p.error_message.as_ref().map(|m| m.as_str()))
                )),
            }
        }
    }
    let already = if named {
        format!("; {not_needed} already led by their preferred replica")
    } else {
        String::new()
    };
    outln!("{elected} partition(s) elected{already}")?;
    if !failed.is_empty() {
        bail!("not elected:\n{}", failed.join("\n"));
    }
    Ok(())
}

/// Runs `cairn broker ...`.
pub async fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let mut cluster = Cluster::connect(&args.bootstrap, timeout).await?;
    let BrokerCommand::Decommission(d) = args.command;
    decommission(&mut cluster, d).await
}

async fn decommission(cluster: &mut Cluster, d: DecommissionArgs) -> anyhow::Result<()> {
    let gone = d.broker;
    let started = Instant::now();
    let (live, placements) = placements(cluster).await?;
    let ongoing = list(cluster).await?;
    let live: BTreeSet<i32> = live.into_iter().filter(|&b| b != gone).collect();
    if live.is_empty() {
        bail!("no live broker other than {gone} to move replicas to");
    }
    // Each partition's replicas as they will be: the target of a reassignment in progress.
    let targets: BTreeMap<Key, Vec<i32>> = placements
        .into_iter()
        .map(|(key, replicas)| {
            let target = match ongoing.get(&key) {
                Some(o) => replicas
                    .into_iter()
                    .filter(|r| !o.removing.contains(r))
                    .collect(),
                None => replicas,
            };
            (key, target)
        })
        .collect();
    let moves = plan_decommission(gone, &live, &targets, d.allow_shrink)?;
    if moves.is_empty() && !targets.values().flatten().any(|&r| r == gone) {
        outln!("broker {gone} hosts no partition replica: nothing to move")?;
        return Ok(());
    }
    let requests: Vec<(Key, Option<Vec<i32>>)> = moves
        .iter()
        .map(|(key, target)| (key.clone(), Some(target.clone())))
        .collect();
    let errors = if requests.is_empty() {
        BTreeMap::new()
    } else {
        alter(cluster, &requests).await?
    };
    for ((topic, partition), target) in &moves {
        match errors.get(&(topic.clone(), *partition)) {
            Some(error) => outln!("{topic}-{partition}: not moved: {error}")?,
            None => outln!(
                "{topic}-{partition}: {} -> {}",
                join(&targets[&(topic.clone(), *partition)]),
                join(target)
            )?,
        }
    }
    if !errors.is_empty() {
        bail!(
            "{} of {} partitions could not be moved off broker {gone}",
            errors.len(),
            moves.len()
        );
    }
    if d.no_wait {
        outln!(
            "{} reassignments started; follow them with `cairn partition list-reassignments`",
            moves.len()
        )?;
        return Ok(());
    }
    let keys: BTreeSet<Key> = moves.keys().cloned().collect();
    wait(
        cluster,
        &keys,
        Some(gone),
        Duration::from_millis(d.timeout_ms),
    )
    .await?;
    outln!(
        "broker {gone} decommissioned: {} partitions moved in {:.1} s; it hosts no replica",
        moves.len(),
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// For each partition whose (target) replicas include `gone`, the replicas with `gone`
/// replaced by the broker of `live` hosting the fewest replicas (counting the moves
/// planned so far; the lowest id among equals) that does not hold one of the partition
/// already. Where there is no such broker, with `allow_shrink` the replica is dropped (if
/// others remain); otherwise the plan fails, naming the partition.
fn plan_decommission(
    gone: i32,
    live: &BTreeSet<i32>,
    targets: &BTreeMap<Key, Vec<i32>>,
    allow_shrink: bool,
) -> anyhow::Result<BTreeMap<Key, Vec<i32>>> {
    let mut load: BTreeMap<i32, usize> = live.iter().map(|&b| (b, 0)).collect();
    for r in targets.values().flatten() {
        if let Some(n) = load.get_mut(r) {
            *n += 1;
        }
    }
    let mut moves = BTreeMap::new();
    for (key, replicas) in targets {
        let Some(at) = replicas.iter().position(|&r| r == gone) else {
            continue;
        };
        let Some((&to, _)) = load
            .iter()
            .filter(|(b, _)| !replicas.contains(b))
            .min_by_key(|(b, n)| (**n, **b))
        else {
            if allow_shrink && replicas.len() > 1 {
                let target = replicas.iter().copied().filter(|&r| r != gone).collect();
                moves.insert(key.clone(), target);
                continue;
            }
            bail!(
                "{}-{} has replicas {} and no other live broker can take the one on {gone}{}",
                key.0,
                key.1,
                join(replicas),
                if replicas.len() > 1 {
                    " (--allow-shrink drops it, lowering the replication factor)"
                } else {
                    ""
                }
            );
        };
        *load.get_mut(&to).expect("a live broker") += 1;
        let mut target = replicas.clone();
        target[at] = to;
        moves.insert(key.clone(), target);
    }
    Ok(moves)
}

/// The live brokers (Metadata's broker list) and every partition's replicas.
async fn placements(cluster: &mut Cluster) -> anyhow::Result<(Vec<i32>, BTreeMap<Key, Vec<i32>>)> {
    let metadata = cluster.metadata(None, false).await?;
    let live = metadata.brokers.iter().map(|b| b.node_id.0).collect();
    let mut partitions = BTreeMap::new();
    for topic in &metadata.topics {
        let Some(name) = &topic.name else { continue };
        for p in &topic.partitions {
            partitions.insert(
                (name.0.to_string(), p.partition_index),
                p.replica_nodes.iter().map(|b| b.0).collect(),
            );
        }
    }
    Ok((live, partitions))
}

/// The reassignments in progress.
async fn list(cluster: &mut Cluster) -> anyhow::Result<BTreeMap<Key, Ongoing>> {
    let request = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(None::<Vec<ListPartitionReassignmentsTopics>>);
    let response = cluster
        .bootstrap()
        .send(&request)
        .await
        .context("ListPartitionReassignments")?;
    if response.error_code != 0 {
        bail!(
            "ListPartitionReassignments: {}",
            explain(
                response.error_code,
                response.error_message.as_ref().map(|m| m.as_str())
            )
        );
    }
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect();
    Ok(response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    (t.name.0.to_string(), p.partition_index),
                    Ongoing {
                        replicas: ids(&p.replicas),
                        adding: ids(&p.adding_replicas),
                        removing: ids(&p.removing_replicas),
                    },
                )
            })
        })
        .collect())
}

/// Sends one AlterPartitionReassignments for `moves` (target `None`: cancel); returns the
/// partitions that were refused, with why.
async fn alter(
    cluster: &mut Cluster,
    moves: &[(Key, Option<Vec<i32>>)],
) -> anyhow::Result<BTreeMap<Key, String>> {
    let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
    for ((topic, partition), target) in moves {
        topics.entry(topic).or_default().push(
            ReassignablePartition::default()
                .with_partition_index(*partition)
                .with_replicas(
                    target
                        .as_ref()
                        .map(|t| t.iter().copied().map(BrokerId).collect()),
                ),
        );
    }
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(60_000)
        .with_allow_replication_factor_change(true)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    ReassignableTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response: AlterPartitionReassignmentsResponse = cluster
        .bootstrap()
        .send(&request)
        .await
        .context("AlterPartitionReassignments")?;
    if response.error_code != 0 {
        bail!(
            "AlterPartitionReassignments: {}",
            explain(
                response.error_code,
                response.error_message.as_ref().map(|m| m.as_str())
            )
        );
    }
    let mut errors = BTreeMap::new();
    for t in &response.responses {
        for p in &t.partitions {
            if p.error_code != 0 {
                errors.insert(
                    (t.name.0.to_string(), p.partition_index),
                    explain(p.error_code, p.error_message.as_ref().map(|m| m.as_str())),
                );
            }
        }
    }
    Ok(errors)
}

/// Waits until none of `keys` has a reassignment in progress and, with `gone`, no
/// partition in Metadata has a replica on that broker.
async fn wait(
    cluster: &mut Cluster,
    keys: &BTreeSet<Key>,
    gone: Option<i32>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let ongoing = list(cluster).await?;
        let pending: Vec<&Key> = keys.iter().filter(|k| ongoing.contains_key(*k)).collect();
        let mut left: Vec<String> = pending.iter().map(|(t, p)| format!("{t}-{p}")).collect();
        if pending.is_empty() {
            if let Some(gone) = gone {
                let (_, placements) = placements(cluster).await?;
                left.extend(
                    placements
                        .iter()
                        .filter(|(_, replicas)| replicas.contains(&gone))
                        .map(|((t, p), _)| format!("{t}-{p}")),
                );
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "still in progress after {} ms: {}; the new replicas may still be catching up (see `cairn partition list-reassignments`)",
                timeout.as_millis(),
                left.join(", ")
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `1,2,3`
fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> Key {
        ("t".to_owned(), p)
    }

    #[test]
    fn decommission_moves_each_replica_to_the_least_loaded_broker_not_in_the_set() {
        let live = BTreeSet::from([1, 2, 4]);
        let targets = BTreeMap::from([
            (key(0), vec![3, 1]),
            (key(1), vec![1, 3]),
            (key(2), vec![2, 3]),
            (key(3), vec![1, 2]),
        ]);
        let moves = plan_decommission(3, &live, &targets, false).unwrap();
        assert_eq!(
            moves,
            BTreeMap::from([
                // Loads before: 1 holds 3 replicas, 2 holds 2, 4 none.
                (key(0), vec![4, 1]),
                // 4 holds 1 now, 2 holds 2.
                (key(1), vec![1, 4]),
                // 2 is in the set; 4 (2 replicas) is less loaded than 1 (3).
                (key(2), vec![2, 4]),
            ])
        );
        assert!(plan_decommission(3, &BTreeSet::from([1]), &targets, false).is_err());
        assert_eq!(
            plan_decommission(3, &BTreeSet::from([1]), &targets, true).unwrap(),
            BTreeMap::from([(key(0), vec![1]), (key(1), vec![1]), (key(2), vec![2, 1])])
        );
        assert!(
            plan_decommission(3, &live, &BTreeMap::from([(key(0), vec![3])]), true).is_ok(),
            "a single replica moves"
        );
        assert!(
            plan_decommission(
                3,
                &BTreeSet::new(),
                &BTreeMap::from([(key(0), vec![3])]),
                true
            )
            .is_err(),
            "a single replica with nowhere to go"
        );
        assert_eq!(
            plan_decommission(9, &live, &targets, false).unwrap(),
            BTreeMap::new()
        );
    }
}

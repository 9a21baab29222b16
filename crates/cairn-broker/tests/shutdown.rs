//! `ReplicaManager::shutdown` against metadata that keeps arriving: once the logs are
//! closed, no later `apply_metadata` may open one again. (A broker did: controlled shutdown
//! commits leadership changes, their apply reopened the partitions the shutdown had just
//! drained, and the close trimming an index under the second mapping was a SIGBUS.)

use cairn_broker::group_commit::GroupCommitter;
use cairn_broker::replica_manager::ReplicaManager;
use cairn_log::LogConfig;
use cairn_meta::{ClusterState, MetadataRecord, controller};

fn apply(state: &mut ClusterState, records: Vec<MetadataRecord>) {
    for r in &records {
        state.apply(r);
    }
}

fn create_topic(state: &mut ClusterState, name: &str, id: u128) {
    let records = controller::create_topic(
        state,
        name,
        2,
        1,
        Default::default(),
        uuid::Uuid::from_u128(id),
        0,
    )
    .unwrap();
    apply(state, records);
}

#[test]
fn no_log_opens_after_shutdown() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _enter = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let mut state = ClusterState::default();
    apply(
        &mut state,
        vec![MetadataRecord::InitCluster {
            cluster_id: "shutdown".into(),
        }],
    );
    let registration =
        controller::register_broker(&state, 1, "127.0.0.1", 9092, None, uuid::Uuid::from_u128(1))
            .unwrap();
    apply(&mut state, registration);
    create_topic(&mut state, "before", 1);

    let manager = ReplicaManager::new(1, dir.path(), LogConfig::default(), GroupCommitter::start());
    manager.apply_metadata(&state, 0).unwrap();
    assert_eq!(
        manager.all().len(),
        2,
        "both partitions open before the shutdown"
    );

    manager.shutdown();
    assert!(manager.all().is_empty(), "shutdown closes every log");

    // Newer metadata, naming the closed partitions and a new topic, arrives afterwards.
    create_topic(&mut state, "after", 2);
    manager.apply_metadata(&state, 0).unwrap();
    assert!(
        manager.all().is_empty(),
        "a log was opened after the shutdown: {:?}",
        manager
            .all()
            .iter()
            .map(|p| format!("{}-{}", p.topic, p.index))
            .collect::<Vec<_>>()
    );
    assert!(
        !dir.path().join("after-0").exists(),
        "the new topic's directory was created after the shutdown"
    );
}

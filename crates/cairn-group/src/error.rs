//! [`GroupError`]: every refusal of the group coordinator, each the twin of one Kafka
//! error code (the broker owns the mapping to numbers).

/// Why the coordinator refused a request (or one partition or member of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group id is empty (INVALID_GROUP_ID).
    #[error("the group id must not be empty")]
    InvalidGroupId,
    /// The member id is not a member of the group (UNKNOWN_MEMBER_ID).
    #[error("member '{member_id}' is not a member of group '{group_id}'")]
    UnknownMemberId { group_id: String, member_id: String },
    /// KIP-394: a dynamic member's first JoinGroup gets its id and must join again with it
    /// (MEMBER_ID_REQUIRED).
    #[error("join again with the member id '{member_id}'")]
    MemberIdRequired { member_id: String },
    /// The request names a generation other than the group's (ILLEGAL_GENERATION).
    #[error("generation {generation_id} is not the current generation {current_generation_id}")]
    IllegalGeneration {
        generation_id: i32,
        current_generation_id: i32,
    },
    /// The group is rebalancing; the member must join again (REBALANCE_IN_PROGRESS).
    #[error("group '{group_id}' is rebalancing")]
    RebalanceInProgress { group_id: String },
    /// Another member now holds this `group.instance.id` (FENCED_INSTANCE_ID).
    #[error(
        "instance '{group_instance_id}' is now member '{current_member_id}', not '{member_id}'"
    )]
    FencedInstanceId {
        group_instance_id: String,
        member_id: String,
        current_member_id: String,
    },
    /// Protocol type differs from the group's, or no protocol is supported by every member
    /// (INCONSISTENT_GROUP_PROTOCOL).
    #[error("protocol type or protocols are inconsistent with group '{group_id}'")]
    InconsistentGroupProtocol { group_id: String },
    /// The session timeout is outside the broker's `group.min/max.session.timeout.ms`
    /// (INVALID_SESSION_TIMEOUT).
    #[error("session timeout {session_timeout_ms} ms is outside [{min_ms}, {max_ms}]")]
    InvalidSessionTimeout {
        session_timeout_ms: i32,
        min_ms: i32,
        max_ms: i32,
    },
    /// `group.max.size` members already (GROUP_MAX_SIZE_REACHED).
    #[error("group '{group_id}' already has {max_size} members (group.max.size)")]
    GroupMaxSizeReached { group_id: String, max_size: usize },
    /// The group is being removed; the client should look the coordinator up again
    /// (COORDINATOR_NOT_AVAILABLE).
    #[error("group '{group_id}' is dead")]
    CoordinatorNotAvailable { group_id: String },
    /// The group does not exist (GROUP_ID_NOT_FOUND).
    #[error("group '{group_id}' does not exist")]
    GroupIdNotFound { group_id: String },
    /// DeleteGroups or OffsetDelete on a group that has members (NON_EMPTY_GROUP).
    #[error("group '{group_id}' has members")]
    NonEmptyGroup { group_id: String },
    /// OffsetDelete of a topic the group's members subscribe to (GROUP_SUBSCRIBED_TO_TOPIC).
    #[error("group '{group_id}' is subscribed to topic '{topic}'")]
    GroupSubscribedToTopic { group_id: String, topic: String },
    /// Commit metadata longer than `offset.metadata.max.bytes` (OFFSET_METADATA_TOO_LARGE).
    #[error("offset metadata of {bytes} bytes exceeds {max_bytes} bytes")]
    OffsetMetadataTooLarge { bytes: usize, max_bytes: usize },
    /// OffsetFetch with `require_stable`: a transaction that committed an offset of this
    /// partition is not decided yet; retry (UNSTABLE_OFFSET_COMMIT).
    #[error(
        "group '{group_id}' has a pending transactional offset for {topic}-{partition}: retry once the transaction is committed or aborted"
    )]
    UnstableOffsetCommit {
        group_id: String,
        topic: String,
        partition: i32,
    },
    /// Protocol metadata or an assignment larger than the configured bound (INVALID_REQUEST).
    #[error("{what} of {bytes} bytes exceeds {max_bytes} bytes")]
    MemberMetadataTooLarge {
        what: &'static str,
        bytes: usize,
        max_bytes: usize,
    },
}

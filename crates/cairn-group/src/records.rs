//! The records the coordinator keeps in `__consumer_offsets`, in Kafka's own key and value
//! formats, so that Kafka tooling (and a log dumped from Kafka) reads them unchanged.
//!
//! All integers are big-endian; a `string` is an `i16` length then UTF-8 bytes, a nullable
//! string has length -1 for null; `bytes` is an `i32` length then the bytes; an array is an
//! `i32` count then its elements. A tombstone (value `None`) deletes its key; the topic is
//! compacted, so the last value per key is what survives.
//!
//! ```text
//! OffsetCommitKey    v1: i16 version=1, string group, string topic, i32 partition
//! GroupMetadataKey   v2: i16 version=2, string group
//! OffsetCommitValue  v1: i16 1, i64 offset, string metadata, i64 commit_ts, i64 expire_ts
//!                    v3: i16 3, i64 offset, i32 leader_epoch, string metadata, i64 commit_ts
//!                    (v0: offset, metadata, commit_ts; v2: like v1 without expire_ts)
//! GroupMetadataValue v3: i16 3, string protocol_type, i32 generation,
//!                    nullable string protocol, nullable string leader,
//!                    i64 current_state_timestamp,
//!                    [string member_id, nullable string group_instance_id,
//!                     string client_id, string client_host, i32 rebalance_timeout_ms,
//!                     i32 session_timeout_ms, bytes subscription, bytes assignment]
//!                    (v0 lacks the rebalance timeout, state timestamp and instance id;
//!                     v1 adds the rebalance timeout; v2 the state timestamp)
//! ```
//! We write OffsetCommitValue v3 (v1 when an explicit retention was asked for, the only
//! version with an expire timestamp) and GroupMetadataValue v3; we read v0–v3 of both.

use bytes::Bytes;

/// One committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when the client did not send one.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set only by OffsetCommit v2–v4 with an explicit `retention_time_ms`.
    pub expire_timestamp_ms: Option<i64>,
}

/// One member as stored in a group's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's membership as of its last completed generation (or its emptiness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// Empty string when the group never had members (Kafka writes "").
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// A record of `__consumer_offsets`: its key, and its value or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    Offset {
        group_id: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group_id: String,
        value: Option<GroupValue>,
    },
}

/// Why a stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable __consumer_offsets record: {0}")]
pub struct RecordFormatError(pub String);

impl GroupRecord {
    /// The group this record belongs to.
    pub fn group_id(&self) -> &str {
        match self {
            GroupRecord::Offset { group_id, .. } | GroupRecord::Group { group_id, .. } => group_id,
        }
    }

    /// Kafka's key and value bytes (value `None` is a tombstone).
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            GroupRecord::Offset {
                group_id,
                topic,
                partition,
                value,
            } => {
                let mut key = Vec::new();
                put_i16(&mut key, 1);
                put_str(&mut key, group_id);
                put_str(&mut key, topic);
                put_i32(&mut key, *partition);
                let value = value.as_ref().map(|v| {
                    let mut out = Vec::new();
                    match v.expire_timestamp_ms {
                        Some(expire) => {
                            put_i16(&mut out, 1);
                            put_i64(&mut out, v.offset);
                            put_str(&mut out, &v.metadata);
                            put_i64(&mut out, v.commit_timestamp_ms);
                            put_i64(&mut out, expire);
                        }
                        None => {
                            put_i16(&mut out, 3);
                            put_i64(&mut out, v.offset);
                            put_i32(&mut out, v.leader_epoch);
                            put_str(&mut out, &v.metadata);
                            put_i64(&mut out, v.commit_timestamp_ms);
                        }
                    }
                    out
                });
                (key, value)
            }
            GroupRecord::Group { group_id, value } => {
                let mut key = Vec::new();
                put_i16(&mut key, 2);
                put_str(&mut key, group_id);
                let value = value.as_ref().map(|g| {
                    let mut out = Vec::new();
                    put_i16(&mut out, 3);
                    put_str(&mut out, &g.protocol_type);
                    put_i32(&mut out, g.generation_id);
                    put_nullable_str(&mut out, g.protocol_name.as_deref());
                    put_nullable_str(&mut out, g.leader_id.as_deref());
                    put_i64(&mut out, g.current_state_timestamp_ms);
                    put_i32(&mut out, g.members.len() as i32);
                    for m in &g.members {
                        put_str(&mut out, &m.member_id);
                        put_nullable_str(&mut out, m.group_instance_id.as_deref());
                        put_str(&mut out, &m.client_id);
                        put_str(&mut out, &m.client_host);
                        put_i32(&mut out, m.rebalance_timeout_ms);
                        put_i32(&mut out, m.session_timeout_ms);
                        put_bytes(&mut out, &m.subscription);
                        put_bytes(&mut out, &m.assignment);
                    }
                    out
                });
                (key, value)
            }
        }
    }

    /// Reads a record from its key and value; `Ok(None)` for keys of other kinds that a
    /// newer Kafka may write (transaction markers' keys, KIP-848 records), which we skip.
    pub fn decode(
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<GroupRecord>, RecordFormatError> {
        let mut k = Reader { buf: key, pos: 0 };
        let key_version = k.i16()?;
        match key_version {
            0 | 1 => {
                let group_id = k.string()?;
                let topic = k.string()?;
                let partition = k.i32()?;
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_offset_value(v)?),
                };
                Ok(Some(GroupRecord::Offset {
                    group_id,
                    topic,
                    partition,
                    value,
                }))
            }
            2 => {
                let group_id = k.string()?;
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_group_value(v)?),
                };
                Ok(Some(GroupRecord::Group { group_id, value }))
            }
            _ => Ok(None),
        }
    }
}

fn decode_offset_value(v: &[u8]) -> Result<OffsetValue, RecordFormatError> {
    let mut r = Reader { buf: v, pos: 0 };
    let version = r.i16()?;
    let offset = r.i64()?;
    let (leader_epoch, metadata, commit, expire) = match version {
        0 | 2 => (-1, r.string()?, r.i64()?, None),
        1 => {
            let metadata = r.string()?;
            let commit = r.i64()?;
            let expire = r.i64()?;
            (-1, metadata, commit, (expire >= 0).then_some(expire))
        }
        3 => {
            let epoch = r.i32()?;
            (epoch, r.string()?, r.i64()?, None)
        }
        other => {
            return Err(RecordFormatError(format!(
                "OffsetCommitValue version {other} is not supported"
            )));
        }
    };
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms: commit,
        expire_timestamp_ms: expire,
    })
}

fn decode_group_value(v: &[u8]) -> Result<GroupValue, RecordFormatError> {
    let mut r = Reader { buf: v, pos: 0 };
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordFormatError(format!(
            "GroupMetadataValue version {version} is not supported"
        )));
    }
    let protocol_type = r.string()?;
    let generation_id = r.i32()?;
    let protocol_name = r.nullable_string()?;
    let leader_id = r.nullable_string()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?;
    if count < 0 || count as usize > r.buf.len() {
        return Err(RecordFormatError(format!("member count {count}")));
    }
    let mut members = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        let subscription = Bytes::copy_from_slice(r.bytes()?);
        let assignment = Bytes::copy_from_slice(r.bytes()?);
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation_id,
        protocol_name,
        leader_id,
        current_state_timestamp_ms,
        members,
    })
}

/// The topics of a `consumer` protocol subscription (ConsumerProtocolSubscription, every
/// version starts `i16 version, [string topic]`); `None` if it does not parse.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader {
        buf: metadata,
        pos: 0,
    };
    r.i16().ok()?;
    let count = r.i32().ok()?;
    if count < 0 || count as usize > metadata.len() {
        return None;
    }
    (0..count).map(|_| r.string().ok()).collect()
}

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings are bounded by the request decoder (i16 lengths on the wire) and by our own
    // limits on metadata; a longer one here is a bug.
    assert!(s.len() <= i16::MAX as usize, "string of {} bytes", s.len());
    put_i16(out, s.len() as i16);
    out.extend_from_slice(s.as_bytes());
}
fn put_nullable_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => put_i16(out, -1),
    }
}
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_i32(out, b.len() as i32);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordFormatError> {
        if self.buf.len() - self.pos < n {
            return Err(RecordFormatError(format!(
                "needs {n} bytes at {} of {}",
                self.pos,
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn i16(&mut self) -> Result<i16, RecordFormatError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, RecordFormatError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, RecordFormatError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn nullable_string(&mut self) -> Result<Option<String>, RecordFormatError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let s = self.take(len as usize)?;
        String::from_utf8(s.to_vec())
            .map(Some)
            .map_err(|_| RecordFormatError("string is not UTF-8".into()))
    }
    fn string(&mut self) -> Result<String, RecordFormatError> {
        self.nullable_string()?
            .ok_or_else(|| RecordFormatError("null string where one is required".into()))
    }
    fn bytes(&mut self) -> Result<&'a [u8], RecordFormatError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(&[]);
        }
        self.take(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_round_trip_in_both_written_versions() {
        for expire in [None, Some(99)] {
            let r = GroupRecord::Offset {
                group_id: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetValue {
                    offset: 42,
                    leader_epoch: if expire.is_some() { -1 } else { 7 },
                    metadata: "meta".into(),
                    commit_timestamp_ms: 1000,
                    expire_timestamp_ms: expire,
                }),
            };
            let (k, v) = r.encode();
            assert_eq!(GroupRecord::decode(&k, v.as_deref()).unwrap(), Some(r));
        }
    }

    #[test]
    fn offset_key_is_kafkas_layout() {
        let (k, v) = GroupRecord::Offset {
            group_id: "g".into(),
            topic: "t".into(),
            partition: 1,
            value: None,
        }
        .encode();
        assert_eq!(k, [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1]);
        assert_eq!(v, None);
    }

    #[test]
    fn group_records_round_trip() {
        let r = GroupRecord::Group {
            group_id: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation_id: 4,
                protocol_name: Some("range".into()),
                leader_id: Some("m1".into()),
                current_state_timestamp_ms: 5,
                members: vec![MemberValue {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        };
        let (k, v) = r.encode();
        assert_eq!(GroupRecord::decode(&k, v.as_deref()).unwrap(), Some(r));
        let tomb = GroupRecord::Group {
            group_id: "g".into(),
            value: None,
        };
        let (k, v) = tomb.encode();
        assert_eq!(GroupRecord::decode(&k, v.as_deref()).unwrap(), Some(tomb));
    }

    #[test]
    fn truncated_values_are_errors_not_panics() {
        let (k, v) = GroupRecord::Group {
            group_id: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation_id: 1,
                protocol_name: None,
                leader_id: None,
                current_state_timestamp_ms: 0,
                members: vec![],
            }),
        }
        .encode();
        let v = v.unwrap();
        for cut in 0..v.len() {
            assert!(GroupRecord::decode(&k, Some(&v[..cut])).is_err());
        }
    }

    #[test]
    fn consumer_subscription_topics() {
        // version 1, two topics, then user data and owned partitions we do not read.
        let mut m = vec![0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c'];
        m.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(subscription_topics(&m), Some(vec!["a".into(), "bc".into()]));
        assert_eq!(subscription_topics(&m[..5]), None);
    }
}

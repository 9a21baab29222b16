//! Delivery bookkeeping for test producers: a librdkafka producer context that records
//! every acknowledged record (partition, offset, sequence number, when) and every failed
//! one, so that tests can check each acknowledged record afterwards.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};

/// One acknowledged record.
#[derive(Clone, Debug)]
pub struct Acked {
    pub partition: i32,
    pub offset: i64,
    pub seq: u64,
    pub at: Instant,
}

/// What the delivery reports said.
#[derive(Default)]
pub struct Recorder {
    pub acked: Mutex<Vec<Acked>>,
    pub failed: Mutex<Vec<(u64, String)>>,
}

/// The producer context: each record's opaque is its sequence number.
pub struct Recording(pub Arc<Recorder>);

impl ClientContext for Recording {}

impl ProducerContext for Recording {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Box<u64>) {
        match result {
            Ok(m) => self.0.acked.lock().unwrap().push(Acked {
                partition: m.partition(),
                offset: m.offset(),
                seq: *seq,
                at: Instant::now(),
            }),
            Err((e, _)) => self.0.failed.lock().unwrap().push((*seq, e.to_string())),
        }
    }
}

/// The value of record number `seq`.
pub fn value_of(seq: u64) -> String {
    format!("seq-{seq}")
}

//! DescribeTransactions (key 65, v0): the coordinator's view of transactional ids
//! (`kafka-transactions.sh describe`, admin clients). Each id is answered by its
//! coordinator only: NOT_COORDINATOR elsewhere, TRANSACTIONAL_ID_NOT_FOUND for an id it
//! does not know, COORDINATOR_LOAD_IN_PROGRESS while its partition loads.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

pub async fn handle(
    ctx: RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let broker = &ctx.broker;
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let state = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_transaction_state(StrBytes::from_static_str(""))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        states.push(
            match broker.txn_coordinator.describe(broker, id.0.as_str()).await {
                Ok(m) => {
                    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                    for tp in &m.partitions {
                        topics.entry(&tp.topic).or_default().push(tp.partition);
                    }
                    let topics = topics
                        .into_iter()
                        .map(|(t, partitions)| {
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(t.to_owned())))
                                .with_partitions(partitions)
                        })
                        .collect();
                    let started = if m.state == cairn_txn::TxnState::Ongoing {
                        m.txn_start_ms
                    } else {
                        -1
                    };
                    state
                        .with_transaction_state(StrBytes::from_static_str(m.state.as_str()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(started)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.producer_epoch)
                        .with_topics(topics)
                }
                Err(e) => state.with_error_code(e.code.code()),
            },
        );
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

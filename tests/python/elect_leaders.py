#!/usr/bin/env python3
"""Preferred leader election through confluent-kafka's `AdminClient.elect_leaders`
(librdkafka's ElectLeaders request). Run by tests/reassignment.rs against three brokers,
after it has moved the leadership of TOPIC-PARTITION away from its preferred replica:

    python3 tests/python/elect_leaders.py BOOTSTRAP TOPIC PARTITION

Checks, in order: electing TOPIC-PARTITION succeeds while a partition that does not
exist and a topic that does not exist are UNKNOWN_TOPIC_OR_PARTITION (librdkafka: UNKNOWN_TOPIC_OR_PART) in the same call;
electing it again is ELECTION_NOT_NEEDED; an election of every partition (None) leaves
no partition in error; an unclean election of a partition with a leader is
ELECTION_NOT_NEEDED. Exits non-zero naming the first mismatch.
"""

import sys

from confluent_kafka import ElectionType, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient


def outcome(error):
    """The Kafka error name of one partition's result, or OK."""
    if error is None:
        return "OK"
    if isinstance(error, KafkaException):
        error = error.args[0]
    return error.name()


def elect(admin, election_type, partitions):
    results = admin.elect_leaders(election_type, partitions).result(timeout=60)
    return {(tp.topic, tp.partition): outcome(e) for tp, e in results.items()}


def expect(what, got, want):
    print(f"{what}: {got}", flush=True)
    if got != want:
        sys.exit(f"{what}: expected {want}, got {got}")


def main():
    bootstrap, topic, partition = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    expect(
        "preferred election",
        elect(
            admin,
            ElectionType.PREFERRED,
            [
                TopicPartition(topic, partition),
                TopicPartition(topic, 99),
                TopicPartition("no-such-topic", 0),
            ],
        ),
        {
            (topic, partition): "OK",
            (topic, 99): "UNKNOWN_TOPIC_OR_PART",
            ("no-such-topic", 0): "UNKNOWN_TOPIC_OR_PART",
        },
    )
    expect(
        "the same election again",
        elect(admin, ElectionType.PREFERRED, [TopicPartition(topic, partition)]),
        {(topic, partition): "ELECTION_NOT_NEEDED"},
    )
    everything = elect(admin, ElectionType.PREFERRED, None)
    expect(
        "every partition: failures",
        {k: v for k, v in everything.items() if v != "OK"},
        {},
    )
    expect(
        "unclean election of a led partition",
        elect(admin, ElectionType.UNCLEAN, [TopicPartition(topic, partition)]),
        {(topic, partition): "ELECTION_NOT_NEEDED"},
    )


if __name__ == "__main__":
    main()

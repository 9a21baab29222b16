#!/usr/bin/env python3
"""Drives a Cairn broker with confluent-kafka (the Python binding of librdkafka, with
the librdkafka its wheel bundles). Run by tests/other_clients.rs; by hand:

    python3 tests/python/confluent_kafka_client.py 127.0.0.1:9092

Covers: admin create topic (3 partitions) / list / describe_topics / describe_configs /
incremental_alter_configs / describe_cluster (DescribeCluster API) / list_offsets /
delete_records / delete topic; produce keyed records with headers, acks=all, with every
codec librdkafka has (none, gzip, snappy, lz4, zstd; failing if librdkafka falls back to
sending a codec uncompressed); consume them back from the beginning with manual
assignment (no group), then as a consumer group (subscribe, commit, committed, close) with
list/describe/list offsets/delete consumer groups; offsets_for_times. Exits non-zero with a message naming the first mismatch.
"""

import logging
import sys
import time
import uuid

import confluent_kafka
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

PARTITIONS = 3
PER_CODEC = 30
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
TIMEOUT_S = 30
VERSION = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"


def fail(msg):
    print(f"FAIL ({VERSION}): {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def step(msg):
    print(f"confluent-kafka: {msg}", flush=True)


class Uncompressed(logging.Handler):
    """Collects librdkafka's debug lines saying it sent a batch uncompressed because it
    believes the broker lacks the codec. librdkafka infers LZ4 support from FindCoordinator
    being in ApiVersions: before Cairn served the group APIs, lz4 went out uncompressed."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        line = record.getMessage()
        if "not compressing batch" in line:
            self.lines.append(line)


def result(future, what):
    try:
        return future.result(timeout=TIMEOUT_S)
    except KafkaException as e:
        fail(f"{what}: {e}")
    except Exception as e:  # timeouts and the like
        fail(f"{what}: {type(e).__name__}: {e}")


def wait_for(what, predicate, timeout_s=TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def main():
    if len(sys.argv) != 2:
        print("usage: confluent_kafka_client.py HOST:PORT", file=sys.stderr)
        sys.exit(2)
    bootstrap = sys.argv[1]
    topic = f"ck-{uuid.uuid4().hex[:8]}"
    base = {"bootstrap.servers": bootstrap, "client.id": "cairn-confluent-kafka-test"}
    step(VERSION)

    # --- admin ---------------------------------------------------------------------------
    admin = AdminClient(base)
    cluster = result(admin.describe_cluster(request_timeout=TIMEOUT_S), "describe_cluster")
    check(len(cluster.nodes) == 1, f"describe_cluster nodes: {cluster.nodes}")
    check(cluster.controller is not None and cluster.controller.id == cluster.nodes[0].id,
          f"describe_cluster controller {cluster.controller} is not the only node")
    check(cluster.cluster_id, f"describe_cluster: empty cluster id")
    check(cluster.cluster_id == admin.list_topics(timeout=TIMEOUT_S).cluster_id,
          "DescribeCluster and Metadata disagree on the cluster id")
    step(f"describe_cluster: id {cluster.cluster_id}, node {cluster.nodes[0]}, "
         f"controller {cluster.controller.id}")

    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                            replication_factor=1,
                                            config={"retention.ms": "86400000"})],
                                  operation_timeout=TIMEOUT_S)
    result(futures[topic], "create_topics")
    md = admin.list_topics(timeout=TIMEOUT_S)
    check(topic in md.topics, f"list_topics lacks {topic}")
    check(len(md.topics[topic].partitions) == PARTITIONS,
          f"list_topics: {len(md.topics[topic].partitions)} partitions")
    step(f"created {topic} with {PARTITIONS} partitions")

    resource = ConfigResource(ResourceType.TOPIC, topic)

    def describe():
        return result(admin.describe_configs([resource])[resource], "describe_configs")

    configs = describe()
    check(configs["retention.ms"].value == "86400000",
          f"retention.ms: {configs['retention.ms']}")
    check(not configs["retention.ms"].is_default, "retention.ms reported as a default")
    check(configs["cleanup.policy"].value == "delete", f"cleanup.policy: {configs['cleanup.policy']}")
    step(f"describe_configs: {len(configs)} entries")

    # cleanup.policy is SET first: Cairn's APPEND to a key the topic does not override
    # starts from an empty list instead of the default ("delete"), unlike Kafka.
    alter = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET),
    ])
    result(admin.incremental_alter_configs([alter])[alter], "incremental_alter_configs")
    alter = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    result(admin.incremental_alter_configs([alter])[alter], "incremental_alter_configs")
    configs = describe()
    check(configs["retention.ms"].value == "3600000",
          f"retention.ms after SET: {configs['retention.ms']}")
    check(sorted(configs["cleanup.policy"].value.split(",")) == ["compact", "delete"],
          f"cleanup.policy after APPEND compact: {configs['cleanup.policy']}")
    alter = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SUBTRACT),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    result(admin.incremental_alter_configs([alter])[alter], "incremental_alter_configs")
    configs = describe()
    check(configs["cleanup.policy"].value == "delete",
          f"cleanup.policy after SUBTRACT compact: {configs['cleanup.policy']}")
    check(configs["retention.ms"].value != "3600000" and configs["retention.ms"].is_default,
          f"retention.ms after DELETE: {configs['retention.ms']}")
    bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
    ])
    try:
        admin.incremental_alter_configs([bad])[bad].result(timeout=TIMEOUT_S)
        fail("incremental_alter_configs accepted an unknown config")
    except KafkaException as e:
        step(f"unknown config refused: {e.args[0].name()}")
    step("incremental_alter_configs SET, APPEND, SUBTRACT, DELETE took effect")

    # --- produce -------------------------------------------------------------------------
    sent = {}
    acked = []

    def on_delivery(err, msg):
        if err is not None:
            fail(f"delivery of {msg.key()!r} failed: {err}")
        acked.append((msg.key(), msg.partition(), msg.offset()))

    before_ms = int(time.time() * 1000) - 1
    for codec in CODECS:
        watcher = Uncompressed()
        logger = logging.getLogger(f"librdkafka-{codec}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(watcher)
        producer = Producer({**base, "acks": "all", "linger.ms": 5,
                             "compression.type": codec, "message.timeout.ms": TIMEOUT_S * 1000,
                             "debug": "msg", "logger": logger})
        for i in range(PER_CODEC):
            key = f"{codec}-key-{i}".encode()
            value = f"{codec} value {i} ".encode() * (1 + i % 7)
            headers = [("codec", codec.encode()), ("index", str(i).encode())]
            sent[key] = (value, headers)
            producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
        remaining = producer.flush(TIMEOUT_S)
        check(remaining == 0, f"{remaining} {codec} records still unacknowledged")
        check(not watcher.lines, f"librdkafka sent {codec} batches uncompressed: {watcher.lines[:1]}")
        step(f"produced {PER_CODEC} records with compression {codec}")
    after_ms = int(time.time() * 1000) + 1
    check(len(acked) == len(sent), f"{len(acked)} of {len(sent)} acknowledged")

    # --- consume, manual assignment ----------------------------------------------------------
    # group.id is only a name here: assign() starts no group protocol and nothing is
    # committed (librdkafka logs that it finds no coordinator, harmlessly).
    consumer = Consumer({**base, "group.id": "cairn-unused", "enable.auto.commit": False,
                         "enable.auto.offset.store": False, "enable.partition.eof": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    seen = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < len(sent) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            fail(f"consume error: {msg.error()}")
        check(msg.key() not in seen, f"duplicate {msg.key()!r}")
        seen[msg.key()] = (msg.value(), msg.headers() or [], msg.partition(), msg.offset(),
                           msg.timestamp()[1])
    check(len(seen) == len(sent), f"consumed {len(seen)} of {len(sent)}")
    for key, (value, headers) in sent.items():
        got_value, got_headers, _, _, ts = seen[key]
        check(got_value == value, f"{key!r}: value differs")
        check(got_headers == headers, f"{key!r}: headers {got_headers} != {headers}")
        check(before_ms <= ts <= after_ms, f"{key!r}: timestamp {ts} outside the produce window")
    for key, partition, offset in acked:
        check(seen[key][2:4] == (partition, offset),
              f"{key!r} acknowledged at {partition}/{offset} but read at {seen[key][2:4]}")
    step(f"consumed all {len(seen)} records back at their acknowledged offsets")

    # --- consumer group: subscribe, read everything, commit, leave ---------------------------
    group = f"{topic}-group"
    member = Consumer({**base, "group.id": group, "auto.offset.reset": "earliest",
                       "enable.auto.commit": False, "session.timeout.ms": 10000,
                       "heartbeat.interval.ms": 1000})
    member.subscribe([topic])
    in_group = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(in_group) < len(sent) and time.monotonic() < deadline:
        msg = member.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            fail(f"group consume error: {msg.error()}")
        in_group[msg.key()] = (msg.partition(), msg.offset())
    check(len(in_group) == len(sent), f"group member read {len(in_group)} of {len(sent)}")
    for key, where in in_group.items():
        check(seen[key][2:4] == where, f"{key!r} read by the group at {where}, not {seen[key][2:4]}")
    check(sorted(tp.partition for tp in member.assignment()) == list(range(PARTITIONS)),
          f"assignment of the only member: {member.assignment()}")
    member.commit(asynchronous=False)
    committed = member.committed([TopicPartition(topic, p) for p in range(PARTITIONS)],
                                 timeout=TIMEOUT_S)
    counts = {p: sum(1 for v in seen.values() if v[2] == p) for p in range(PARTITIONS)}
    for tp in committed:
        check(tp.offset == counts[tp.partition],
              f"committed offset of partition {tp.partition}: {tp.offset} != {counts[tp.partition]}")
    member.close()  # LeaveGroup
    from confluent_kafka import ConsumerGroupTopicPartitions
    listed = result(admin.list_consumer_groups(request_timeout=TIMEOUT_S), "list_consumer_groups")
    check(any(g.group_id == group for g in listed.valid),
          f"list_consumer_groups lacks {group}: {[g.group_id for g in listed.valid]}")
    described = result(admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group],
                       "describe_consumer_groups")
    check(described.state.name == "EMPTY" and not described.members,
          f"describe_consumer_groups after close: {described.state} {described.members}")
    offsets = result(admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])],
        request_timeout=TIMEOUT_S)[group], "list_consumer_group_offsets")
    for tp in offsets.topic_partitions:
        check(tp.offset == counts[tp.partition],
              f"list_consumer_group_offsets partition {tp.partition}: {tp.offset}")
    result(admin.delete_consumer_groups([group], request_timeout=TIMEOUT_S)[group],
           "delete_consumer_groups")
    listed = result(admin.list_consumer_groups(request_timeout=TIMEOUT_S), "list_consumer_groups")
    check(not any(g.group_id == group for g in listed.valid), f"{group} listed after deletion")
    step(f"consumer group {group} read all {len(in_group)} records, committed "
         f"{[counts[p] for p in range(PARTITIONS)]}, was listed, described and deleted")

    # --- ListOffsets -----------------------------------------------------------------------
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def list_offsets(spec):
        futures = admin.list_offsets({tp: spec for tp in tps}, request_timeout=TIMEOUT_S)
        return {tp.partition: result(f, "list_offsets") for tp, f in futures.items()}

    for p, info in list_offsets(OffsetSpec.earliest()).items():
        check(info.offset == 0, f"earliest of partition {p}: {info.offset}")
    for p, info in list_offsets(OffsetSpec.latest()).items():
        check(info.offset == counts[p], f"latest of partition {p}: {info.offset} != {counts[p]}")
    for p, info in list_offsets(OffsetSpec.max_timestamp()).items():
        if counts[p]:
            newest = max(v[4] for v in seen.values() if v[2] == p)
            check(info.timestamp == newest,
                  f"max_timestamp of partition {p}: {info.timestamp} != {newest}")
    for p, info in list_offsets(OffsetSpec.for_timestamp(before_ms)).items():
        expected = 0 if counts[p] else -1
        check(info.offset == expected, f"for_timestamp({before_ms}) of partition {p}: {info.offset}")
    for p, info in list_offsets(OffsetSpec.for_timestamp(after_ms + 60_000)).items():
        check(info.offset == -1, f"for_timestamp(future) of partition {p}: {info.offset}")
    by_time = consumer.offsets_for_times([TopicPartition(topic, p, before_ms) for p in range(PARTITIONS)],
                                         timeout=TIMEOUT_S)
    for tp in by_time:
        expected = 0 if counts[tp.partition] else -1
        check(tp.offset == expected and tp.error is None,
              f"offsets_for_times({before_ms}) of partition {tp.partition}: {tp.offset} {tp.error}")
    step("ListOffsets earliest/latest/max timestamp/by time, offsets_for_times all match")

    # --- DeleteRecords ---------------------------------------------------------------------
    target = max(range(PARTITIONS), key=lambda p: counts[p])
    cut = counts[target] // 2
    futures = admin.delete_records([TopicPartition(topic, target, cut)],
                                   request_timeout=TIMEOUT_S, operation_timeout=TIMEOUT_S)
    deleted = result(next(iter(futures.values())), "delete_records")
    check(deleted.low_watermark == cut, f"delete_records low watermark {deleted.low_watermark} != {cut}")
    earliest = list_offsets(OffsetSpec.earliest())[target].offset
    check(earliest == cut, f"earliest after delete_records: {earliest} != {cut}")
    consumer.close()
    # A fresh consumer told to start at offset 0, now below the log start: the broker
    # answers OFFSET_OUT_OF_RANGE and auto.offset.reset=earliest moves it to the cut.
    consumer = Consumer({**base, "group.id": "cairn-unused", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": False})
    consumer.assign([TopicPartition(topic, target, 0)])
    first = None
    deadline = time.monotonic() + TIMEOUT_S
    while first is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            first = msg.offset()
    check(first == cut, f"first record read after delete_records is at {first}, not {cut}")
    consumer.close()
    beyond = admin.delete_records([TopicPartition(topic, target, counts[target] + 10)],
                                  request_timeout=TIMEOUT_S)
    try:
        next(iter(beyond.values())).result(timeout=TIMEOUT_S)
        fail("delete_records beyond the high watermark succeeded")
    except KafkaException as e:
        step(f"delete_records beyond the end refused: {e.args[0].name()}")
    step(f"delete_records moved partition {target}'s start to {cut}")

    # --- delete the topic ------------------------------------------------------------------
    result(admin.delete_topics([topic], operation_timeout=TIMEOUT_S)[topic], "delete_topics")
    wait_for("the topic to leave list_topics",
             lambda: topic not in admin.list_topics(timeout=TIMEOUT_S).topics)
    step("deleted the topic")
    print(f"PASS {VERSION}: codecs {CODECS}", flush=True)


if __name__ == "__main__":
    main()

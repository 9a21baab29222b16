#!/usr/bin/env python3
"""Drives a Cairn broker with kafka-python, a pure-Python implementation of the Kafka
protocol (no librdkafka). Run by tests/other_clients.rs; by hand:

    python3 tests/python/kafka_python_client.py 127.0.0.1:9092

Covers: admin create topic (3 partitions) / list / describe configs / alter configs
(IncrementalAlterConfigs) / delete records / delete topic; produce keyed records with
headers, acks=all, once per compression codec the installed codec modules allow; consume
them back from the beginning with manual partition assignment (no consumer group);
ListOffsets by time (offsets_for_times), earliest and latest; describe_log_dirs (sizes
of the partitions on disk). Exits non-zero with a
message naming the first mismatch.
"""

import glob
import os
import sys
import time
import uuid

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    AlterConfigOp,
    ConfigResource,
    ConfigResourceType,
    KafkaAdminClient,
    NewTopic,
)
from kafka import codec

PARTITIONS = 3
PER_CODEC = 30
TIMEOUT_S = 30


def fail(msg):
    print(f"FAIL (kafka-python {kafka.__version__}): {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def step(msg):
    print(f"kafka-python: {msg}", flush=True)


def codecs():
    """Every codec kafka-python can use here, and the ones it cannot (module missing)."""
    available = [("none", True), ("gzip", codec.has_gzip()), ("snappy", codec.has_snappy()),
                 ("lz4", codec.has_lz4()), ("zstd", codec.has_zstd())]
    return [c for c, ok in available if ok], [c for c, ok in available if not ok]


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
        print("usage: kafka_python_client.py HOST:PORT", file=sys.stderr)
        sys.exit(2)
    bootstrap = sys.argv[1]
    topic = f"kp-{uuid.uuid4().hex[:8]}"
    common = dict(bootstrap_servers=bootstrap, client_id="cairn-kafka-python-test",
                  request_timeout_ms=TIMEOUT_S * 1000)

    # --- admin: create, list, describe configs --------------------------------------
    admin = KafkaAdminClient(**common)
    step(f"connected; broker version detected as {admin._manager.broker_version}")
    cluster = admin.describe_cluster()
    check(len(cluster["brokers"]) == 1, f"describe_cluster: one broker expected, got {cluster}")
    step(f"describe_cluster: {cluster['brokers']}, cluster id {cluster.get('cluster_id')}")

    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1,
                                  topic_configs={"retention.ms": "86400000"})])
    check(topic in admin.list_topics(), f"list_topics does not show {topic}")
    described = admin.describe_topics([topic])
    check(len(described) == 1 and len(described[0]["partitions"]) == PARTITIONS,
          f"describe_topics: {PARTITIONS} partitions expected, got {described}")
    step(f"created {topic} with {PARTITIONS} partitions")

    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    check(configs.get("retention.ms", {}).get("value") == "86400000",
          f"describe_configs retention.ms: {configs.get('retention.ms')}")
    check("cleanup.policy" in configs, f"describe_configs lacks cleanup.policy: {sorted(configs)}")
    step(f"describe_configs: {len(configs)} entries, retention.ms=86400000")

    # IncrementalAlterConfigs: kafka-python picks it when the broker advertises it.
    check(admin._check_incremental_alter_configs_support(),
          "IncrementalAlterConfigs not advertised by the broker")
    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={
        "retention.ms": (AlterConfigOp.SET, "3600000"),
        "max.message.bytes": (AlterConfigOp.SET, "2000000"),
    })])
    check(result == {"topic": {topic: "OK"}}, f"incremental alter_configs: {result}")
    configs = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    check(configs["retention.ms"]["value"] == "3600000",
          f"retention.ms after alter: {configs['retention.ms']}")
    check(configs["max.message.bytes"]["value"] == "2000000",
          f"max.message.bytes after alter: {configs['max.message.bytes']}")
    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={
        "max.message.bytes": (AlterConfigOp.DELETE, None),
    })])
    check(result == {"topic": {topic: "OK"}}, f"incremental alter_configs DELETE: {result}")
    configs = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    check(configs["max.message.bytes"]["value"] != "2000000",
          f"max.message.bytes not reset by DELETE: {configs['max.message.bytes']}")
    step("incremental alter_configs SET and DELETE took effect")

    # --- produce every codec, keyed, with headers, acks=all -------------------------
    usable, missing = codecs()
    if missing:
        step(f"codecs skipped (python module missing): {missing}")
    sent = {}  # (key) -> (value, headers, codec)
    before_ms = int(time.time() * 1000) - 1
    for c in usable:
        # kafka-python 3 turns idempotence on by default (KIP-679): InitProducerId,
        # then producer id and sequence numbers in every batch.
        producer = KafkaProducer(acks="all",
                                 compression_type=None if c == "none" else c,
                                 linger_ms=5, **common)
        futures = []
        for i in range(PER_CODEC):
            key = f"{c}-key-{i}".encode()
            value = f"{c} value {i} ".encode() * (1 + i % 7)
            headers = [("codec", c.encode()), ("index", str(i).encode())]
            sent[key] = (value, headers, c)
            futures.append(producer.send(topic, key=key, value=value, headers=headers))
        for f in futures:
            md = f.get(timeout=TIMEOUT_S)
            check(0 <= md.partition < PARTITIONS and md.offset >= 0, f"bad metadata {md}")
        producer.close()
        step(f"produced {PER_CODEC} records with compression {c}")
    after_ms = int(time.time() * 1000) + 1

    # --- consume from the beginning, manual assignment, no group ---------------------
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", **common)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    seen = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < len(sent) and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                check(r.key not in seen, f"duplicate record {r.key!r} at {tp} offset {r.offset}")
                seen[r.key] = (r.value, list(r.headers), tp.partition, r.offset, r.timestamp)
    check(len(seen) == len(sent), f"consumed {len(seen)} of {len(sent)} records")
    for key, (value, headers, c) in sent.items():
        got_value, got_headers, _, _, ts = seen[key]
        check(got_value == value, f"{key!r}: value {got_value!r} != {value!r}")
        check(got_headers == headers, f"{key!r}: headers {got_headers} != {headers}")
        check(before_ms <= ts <= after_ms, f"{key!r}: timestamp {ts} outside the produce window")
    # Same key, same partition (murmur2 partitioner, like the Java client).
    step(f"consumed all {len(seen)} records back (values, headers, timestamps match)")

    # --- ListOffsets: earliest, latest, by time --------------------------------------
    earliest = consumer.beginning_offsets(tps)
    latest = consumer.end_offsets(tps)
    counts = {p: sum(1 for v in seen.values() if v[2] == p) for p in range(PARTITIONS)}
    for tp in tps:
        check(earliest[tp] == 0, f"earliest offset of {tp}: {earliest[tp]}")
        check(latest[tp] == counts[tp.partition], f"latest offset of {tp}: {latest[tp]} "
              f"but {counts[tp.partition]} records consumed")
    by_time = consumer.offsets_for_times({tp: before_ms for tp in tps})
    for tp in tps:
        if counts[tp.partition] == 0:
            check(by_time[tp] is None, f"offsets_for_times on empty {tp}: {by_time[tp]}")
        else:
            check(by_time[tp] is not None and by_time[tp].offset == 0,
                  f"offsets_for_times({before_ms}) on {tp}: {by_time[tp]}")
    future = consumer.offsets_for_times({tp: after_ms + 60_000 for tp in tps})
    for tp in tps:
        check(future[tp] is None, f"offsets_for_times(future) on {tp}: {future[tp]}")
    # A timestamp in the middle of one partition: the first record at or after it.
    p0 = [v for v in seen.values() if v[2] == 0]
    if len(p0) >= 2:
        p0.sort(key=lambda v: v[3])
        mid = p0[len(p0) // 2]
        got = consumer.offsets_for_times({tps[0]: mid[4]})[tps[0]]
        first = min(v[3] for v in p0 if v[4] >= mid[4])
        check(got is not None and got.offset == first,
              f"offsets_for_times({mid[4]}) on partition 0: {got}, expected offset {first}")
    step("ListOffsets earliest/latest/by time match what was consumed")

    # --- DescribeLogDirs: the partitions on disk, with their sizes ---------------------
    def log_dir_partitions(answer):
        """{(topic, partition): (size, offset_lag)} over every broker and log dir."""
        out = {}
        for broker in answer:
            for d in broker["log_dirs"]:
                check(d["error_code"] == 0, f"describe_log_dirs error: {d}")
                for t in d["topics"]:
                    for p in t["partitions"]:
                        out[(t["name"], p["partition_index"])] = (p["partition_size"],
                                                                  p["offset_lag"])
        return out

    answer = admin.describe_log_dirs({topic: list(range(PARTITIONS)) + [99]})
    step(f"describe_log_dirs: {answer}")
    check(len(answer) == 1 and len(answer[0]["log_dirs"]) == 1,
          f"describe_log_dirs: one broker with one log dir expected, got {answer}")
    check(answer[0]["log_dirs"][0]["log_dir"].startswith("/"),
          f"describe_log_dirs: log_dir not an absolute path: {answer}")
    log_dir = answer[0]["log_dirs"][0]
    if "total_bytes" in log_dir:  # v4
        check(log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0,
              f"describe_log_dirs: total/usable bytes {log_dir}")
    sizes = log_dir_partitions(answer)
    check(set(sizes) == {(topic, p) for p in range(PARTITIONS)},
          f"describe_log_dirs for {topic}: partitions {sorted(sizes)}")
    for p in range(PARTITIONS):
        size, lag = sizes[(topic, p)]
        check(lag == 0, f"describe_log_dirs {topic}-{p}: offset_lag {lag}")
        check((size > 0) == (counts[p] > 0),
              f"describe_log_dirs {topic}-{p}: size {size} with {counts[p]} records")
        # The broker runs on this machine (tests/other_clients.rs): its segment files
        # are there to measure.
        on_disk = sum(os.path.getsize(f) for f in
                      glob.glob(os.path.join(log_dir["log_dir"], f"{topic}-{p}", "*.log")))
        check(size == on_disk, f"describe_log_dirs {topic}-{p}: size {size}, "
              f"but its .log files hold {on_disk} bytes")
    everything = log_dir_partitions(admin.describe_log_dirs())
    check(all((topic, p) in everything for p in range(PARTITIONS)),
          f"describe_log_dirs() does not list {topic}: {sorted(everything)}")
    step(f"describe_log_dirs: sizes {[sizes[(topic, p)][0] for p in range(PARTITIONS)]} bytes")

    # --- DeleteRecords -----------------------------------------------------------------
    target = max(range(PARTITIONS), key=lambda p: counts[p])
    cut = counts[target] // 2
    tp = TopicPartition(topic, target)
    deleted = admin.delete_records({tp: cut})
    check(tp in deleted, f"delete_records result lacks {tp}: {deleted}")
    low = deleted[tp]["low_watermark"] if isinstance(deleted[tp], dict) else deleted[tp]
    check(low == cut, f"delete_records low watermark {low} != {cut} ({deleted[tp]})")
    consumer.seek_to_beginning(tp)
    check(consumer.beginning_offsets([tp])[tp] == cut,
          f"earliest after delete_records: {consumer.beginning_offsets([tp])[tp]} != {cut}")
    consumer.close()
    step(f"delete_records moved partition {target}'s start to {cut}")

    # --- delete the topic --------------------------------------------------------------
    admin.delete_topics([topic])
    wait_for("the topic to leave list_topics", lambda: topic not in admin.list_topics())
    admin.close()
    step("deleted the topic")
    print(f"PASS kafka-python {kafka.__version__}: codecs {usable}"
          + (f", skipped {missing}" if missing else ""), flush=True)


if __name__ == "__main__":
    main()

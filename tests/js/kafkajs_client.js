#!/usr/bin/env node
// Drives a Cairn broker with kafkajs, a pure-JavaScript implementation of the Kafka
// protocol. Run by tests/other_clients.rs; by hand (after `npm ci` in tests/js):
//
//     node tests/js/kafkajs_client.js 127.0.0.1:9092
//
// Covers: admin create topic (3 partitions) / list / metadata / describe configs /
// AlterConfigs / describeCluster / ListOffsets (earliest, latest, by time; v3, the
// highest kafkajs speaks) / DeleteRecords / delete topic; produce keyed records with headers, acks=all, with no
// compression, gzip (built in) and snappy (kafkajs-snappy, pure JS); lz4 and zstd need
// native add-ons for kafkajs and are not tested. Reads everything back from the
// beginning twice: with plain Fetch requests on kafkajs's own cluster/broker layer
// (manual assignment: kafkajs's consumer always joins a group), then with a consumer
// group (join, sync, heartbeats, auto-commit, leave), whose committed offsets, state and
// listing are checked before the group is deleted.
// Exits non-zero with a message naming the first mismatch.

'use strict'

const { Kafka, CompressionTypes, CompressionCodecs, ConfigResourceTypes, Partitioners, logLevel } =
  require('kafkajs')
const Cluster = require('kafkajs/src/cluster')
const { createLogger } = require('kafkajs/src/loggers')
const LoggerConsole = require('kafkajs/src/loggers/console')
const socketFactory = require('kafkajs/src/network/socketFactory')
const kafkajsVersion = require('kafkajs/package.json').version

const PARTITIONS = 3
const PER_CODEC = 30
const TIMEOUT_MS = 30000

const codecs = [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]
const skipped = ['lz4', 'zstd']
try {
  CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy')
  codecs.push(['snappy', CompressionTypes.Snappy])
} catch (e) {
  skipped.push('snappy')
}

class Mismatch extends Error {}

function check (cond, msg) {
  if (!cond) throw new Mismatch(msg)
}

function step (msg) {
  console.log(`kafkajs: ${msg}`)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function waitFor (what, predicate) {
  const deadline = Date.now() + TIMEOUT_MS
  for (;;) {
    if (await predicate()) return
    if (Date.now() > deadline) throw new Mismatch(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

async function configsOf (admin, topic) {
  const { resources } = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    includeSynonyms: false
  })
  check(resources.length === 1 && resources[0].errorCode === 0,
    `describeConfigs: ${JSON.stringify(resources)}`)
  return Object.fromEntries(resources[0].configEntries.map(e => [e.configName, e]))
}

// Reads the partition from `offset` to its high watermark with Fetch requests.
async function readPartition (cluster, topic, partition, offset) {
  const leader = cluster.findTopicPartitionMetadata(topic).find(p => p.partitionId === partition).leader
  const broker = await cluster.findBroker({ nodeId: String(leader) })
  const records = []
  let next = offset
  const deadline = Date.now() + TIMEOUT_MS
  for (;;) {
    const response = await broker.fetch({
      replicaId: -1,
      isolationLevel: 0,
      maxWaitTime: 100,
      minBytes: 1,
      maxBytes: 1 << 20,
      topics: [{ topic, partitions: [{ partition, fetchOffset: String(next), maxBytes: 1 << 20 }] }]
    })
    const p = response.responses[0].partitions[0]
    for (const m of p.messages) {
      const o = Number(m.offset)
      // A batch may start before the requested offset.
      if (o < next) continue
      check(o === next, `partition ${partition}: offset ${o} follows ${next - 1}`)
      records.push({ partition, ...m, offset: o })
      next = o + 1
    }
    if (next >= Number(p.highWatermark)) return records
    check(Date.now() < deadline, `partition ${partition}: stuck at ${next} of ${p.highWatermark}`)
  }
}

async function main () {
  const bootstrap = process.argv[2]
  if (!bootstrap || process.argv.length !== 3) {
    console.error('usage: kafkajs_client.js HOST:PORT')
    process.exit(2)
  }
  const topic = `kjs-${Math.random().toString(16).slice(2, 10)}`
  const clientId = 'cairn-kafkajs-test'
  const retry = { retries: 5, initialRetryTime: 100 }
  const kafka = new Kafka({ clientId, brokers: [bootstrap], logLevel: logLevel.WARN, retry })
  step(`kafkajs ${kafkajsVersion}`)

  // --- admin ---------------------------------------------------------------------------
  const admin = kafka.admin()
  await admin.connect()
  const cluster = await admin.describeCluster()
  check(cluster.brokers.length === 1, `describeCluster brokers: ${JSON.stringify(cluster)}`)
  check(cluster.controller === cluster.brokers[0].nodeId, `controller: ${JSON.stringify(cluster)}`)
  check(cluster.clusterId, 'describeCluster: no cluster id')
  step(`describeCluster: ${JSON.stringify(cluster)}`)

  const created = await admin.createTopics({
    topics: [{
      topic,
      numPartitions: PARTITIONS,
      replicationFactor: 1,
      configEntries: [{ name: 'retention.ms', value: '86400000' }]
    }],
    waitForLeaders: true,
    timeout: TIMEOUT_MS
  })
  check(created === true, `createTopics returned ${created}`)
  check((await admin.listTopics()).includes(topic), `listTopics lacks ${topic}`)
  const { topics: md } = await admin.fetchTopicMetadata({ topics: [topic] })
  check(md.length === 1 && md[0].partitions.length === PARTITIONS,
    `fetchTopicMetadata: ${JSON.stringify(md)}`)
  step(`created ${topic} with ${PARTITIONS} partitions`)

  let configs = await configsOf(admin, topic)
  check(configs['retention.ms'] && configs['retention.ms'].configValue === '86400000',
    `retention.ms: ${JSON.stringify(configs['retention.ms'])}`)
  check(configs['retention.ms'].isDefault === false, 'retention.ms reported as a default')
  check(configs['cleanup.policy'] && configs['cleanup.policy'].configValue === 'delete',
    `cleanup.policy: ${JSON.stringify(configs['cleanup.policy'])}`)
  step(`describeConfigs: ${Object.keys(configs).length} entries`)

  // AlterConfigs (not incremental): the listed keys replace every override.
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{
      type: ConfigResourceTypes.TOPIC,
      name: topic,
      configEntries: [{ name: 'max.message.bytes', value: '2000000' }]
    }]
  })
  configs = await configsOf(admin, topic)
  check(configs['max.message.bytes'].configValue === '2000000',
    `max.message.bytes after alterConfigs: ${JSON.stringify(configs['max.message.bytes'])}`)
  check(configs['retention.ms'].isDefault === true && configs['retention.ms'].configValue !== '86400000',
    `retention.ms not reset by a full alterConfigs: ${JSON.stringify(configs['retention.ms'])}`)
  step('alterConfigs replaced the overrides')

  // --- produce ---------------------------------------------------------------------------
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
    retry
  })
  await producer.connect()
  const sent = new Map()
  const beforeMs = Date.now() - 1
  for (const [name, compression] of codecs) {
    const messages = []
    for (let i = 0; i < PER_CODEC; i++) {
      const key = `${name}-key-${i}`
      const value = `${name} value ${i} `.repeat(1 + i % 7)
      const headers = { codec: name, index: String(i) }
      sent.set(key, { value, headers })
      messages.push({ key, value, headers })
    }
    const meta = await producer.send({ topic, acks: -1, compression, timeout: TIMEOUT_MS, messages })
    for (const m of meta) {
      check(m.errorCode === 0 && Number(m.baseOffset) >= 0, `send metadata: ${JSON.stringify(m)}`)
    }
    step(`produced ${PER_CODEC} records with compression ${name}`)
  }
  const afterMs = Date.now() + 1
  await producer.disconnect()

  // --- read back, no group ----------------------------------------------------------------
  const raw = new Cluster({
    logger: createLogger({ level: logLevel.WARN, logCreator: LoggerConsole }),
    socketFactory: socketFactory(),
    brokers: [bootstrap],
    clientId,
    connectionTimeout: 3000,
    requestTimeout: TIMEOUT_MS,
    enforceRequestTimeout: true,
    metadataMaxAge: 300000,
    allowAutoTopicCreation: false,
    retry
  })
  await raw.connect()
  await raw.addTargetTopic(topic)
  await raw.refreshMetadata()
  const seen = new Map()
  const counts = {}
  const timestamps = {}
  for (let p = 0; p < PARTITIONS; p++) {
    const records = await readPartition(raw, topic, p, 0)
    counts[p] = records.length
    timestamps[p] = records.map(r => Number(r.timestamp))
    for (const r of records) {
      const key = r.key.toString()
      check(!seen.has(key), `duplicate ${key}`)
      seen.set(key, r)
    }
  }
  check(seen.size === sent.size, `read ${seen.size} of ${sent.size} records`)
  for (const [key, { value, headers }] of sent) {
    const r = seen.get(key)
    check(r.value.toString() === value, `${key}: value differs`)
    const got = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, v.toString()]))
    check(JSON.stringify(got) === JSON.stringify(headers),
      `${key}: headers ${JSON.stringify(got)} != ${JSON.stringify(headers)}`)
    const ts = Number(r.timestamp)
    check(beforeMs <= ts && ts <= afterMs, `${key}: timestamp ${ts} outside the produce window`)
  }
  step(`read all ${seen.size} records back with Fetch (values, headers, timestamps match)`)

  // --- ListOffsets (v3, the highest kafkajs speaks) ---------------------------------------
  for (const o of await admin.fetchTopicOffsets(topic)) {
    check(Number(o.low) === 0, `low offset of partition ${o.partition}: ${o.low}`)
    check(Number(o.high) === counts[o.partition],
      `high offset of partition ${o.partition}: ${o.high} != ${counts[o.partition]}`)
  }
  for (const o of await admin.fetchTopicOffsetsByTimestamp(topic, beforeMs)) {
    check(Number(o.offset) === 0, `offset by time ${beforeMs} of partition ${o.partition}: ${o.offset}`)
  }
  // After every record: kafkajs maps the broker's -1 to the high watermark.
  for (const o of await admin.fetchTopicOffsetsByTimestamp(topic, afterMs + 60000)) {
    check(Number(o.offset) === counts[o.partition],
      `offset by time (future) of partition ${o.partition}: ${o.offset}`)
  }
  const p0 = timestamps[0]
  if (p0.length >= 2) {
    const mid = p0[Math.floor(p0.length / 2)]
    const expected = p0.findIndex(t => t >= mid)
    const got = (await admin.fetchTopicOffsetsByTimestamp(topic, mid)).find(o => o.partition === 0)
    check(Number(got.offset) === expected,
      `offset by time ${mid} of partition 0: ${got.offset} != ${expected}`)
  }
  step('ListOffsets earliest/latest/by time match what was read')

  // --- consumer group: subscribe, read everything, commit, leave -------------------------
  const groupId = `${topic}-group`
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000, retry })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const consumed = new Map()
  await consumer.run({
    autoCommit: true,
    eachMessage: async ({ partition, message }) => {
      consumed.set(message.key.toString(), { partition, offset: Number(message.offset) })
    }
  })
  await waitFor(`the group consumer to read all ${sent.size} records`, async () => consumed.size === sent.size)
  for (const [key, r] of consumed) {
    const s = seen.get(key)
    check(s && s.partition === r.partition && s.offset === r.offset,
      `group consumer read ${key} at ${r.partition}/${r.offset}`)
  }
  await consumer.disconnect() // commits what was read, then LeaveGroup
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] })
  for (const p of committed.partitions) {
    check(Number(p.offset) === counts[p.partition],
      `committed offset of partition ${p.partition}: ${p.offset} != ${counts[p.partition]}`)
  }
  const { groups: described } = await admin.describeGroups([groupId])
  check(described.length === 1 && described[0].state === 'Empty' && described[0].members.length === 0,
    `describeGroups after the member left: ${JSON.stringify(described)}`)
  const { groups: listed } = await admin.listGroups()
  check(listed.some(g => g.groupId === groupId), `listGroups lacks ${groupId}: ${JSON.stringify(listed)}`)
  await admin.deleteGroups([groupId])
  const { groups: listedAfter } = await admin.listGroups()
  check(!listedAfter.some(g => g.groupId === groupId), `listGroups still has ${groupId} after deleteGroups`)
  step(`consumer group ${groupId} read all ${consumed.size} records, committed ` +
    `${JSON.stringify(committed.partitions.map(p => Number(p.offset)))}, was described, listed and deleted`)

  // --- DeleteRecords ----------------------------------------------------------------------
  const target = [...Array(PARTITIONS).keys()].reduce((a, b) => (counts[b] > counts[a] ? b : a))
  const cut = Math.floor(counts[target] / 2)
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: target, offset: String(cut) }] })
  const low = (await admin.fetchTopicOffsets(topic)).find(o => o.partition === target).low
  check(Number(low) === cut, `low offset after deleteTopicRecords: ${low} != ${cut}`)
  let refused = null
  try {
    await readPartition(raw, topic, target, cut - 1)
  } catch (e) {
    refused = e
  }
  check(refused && refused.type === 'OFFSET_OUT_OF_RANGE',
    `fetch below the log start: ${refused ? refused.type || refused : 'no error'}`)
  const rest = await readPartition(raw, topic, target, cut)
  check(rest.length === counts[target] - cut && rest[0].offset === cut,
    `after deleteTopicRecords read ${rest.length} records from ${rest.length && rest[0].offset}`)
  step(`deleteTopicRecords moved partition ${target}'s start to ${cut}; a fetch below it is OFFSET_OUT_OF_RANGE`)
  await raw.disconnect()

  // --- delete the topic -------------------------------------------------------------------
  await admin.deleteTopics({ topics: [topic], timeout: TIMEOUT_MS })
  await waitFor('the topic to leave listTopics', async () => !(await admin.listTopics()).includes(topic))
  await admin.disconnect()
  step('deleted the topic')
  console.log(`PASS kafkajs ${kafkajsVersion}: codecs ${codecs.map(c => c[0]).join(',')}; ` +
    `not tested: ${skipped.join(',')}`)
}

main().then(
  () => process.exit(0),
  e => {
    const what = e instanceof Mismatch ? e.message : (e && e.stack) || String(e)
    console.log(`FAIL (kafkajs ${kafkajsVersion}): ${what}`)
    process.exit(1)
  }
)

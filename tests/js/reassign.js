#!/usr/bin/env node
// Moves partition 0 of a topic to other brokers with kafkajs's admin client
// (AlterPartitionReassignments, ListPartitionReassignments). Run by tests/reassignment.rs
// against three brokers while a producer keeps writing; by hand (after `npm ci` in
// tests/js):
//
//     node tests/js/reassign.js 127.0.0.1:9092[,host:port...] TOPIC
//
// The partition's replicas [a, b] (replication factor 2) move to [b, c], c being a
// broker that holds none. Before that, refusals are checked: an unregistered broker and a
// repeated one (INVALID_REPLICA_ASSIGNMENT), an unknown topic and partition
// (UNKNOWN_TOPIC_OR_PARTITION). While the move is in progress, the listing must show it as
// Kafka does (replicas [b, c, a], adding [c], removing [a]); the script lists until no
// reassignment is left, then waits until Metadata shows replicas [b, c]. It prints
// `PLAN a b c` first and `DONE` last; exits non-zero with a message on the first mismatch.

'use strict'

const { Kafka, logLevel } = require('kafkajs')

const TIMEOUT_MS = 60000

class Mismatch extends Error {}

function check (cond, msg) {
  if (!cond) throw new Mismatch(msg)
}

function step (msg) {
  console.log(`kafkajs: ${msg}`)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)

async function expectRefusal (what, promise, type) {
  let error = null
  try {
    await promise
  } catch (e) {
    error = e
  }
  check(error !== null, `${what}: accepted, expected ${type}`)
  const types = (error.errors || [error]).map(e => e.type)
  check(types.length === 1 && types[0] === type,
    `${what}: expected ${type}, got ${types.join(',')} (${error.message})`)
  step(`${what}: refused with ${type}`)
}

async function main () {
  const [bootstrap, topic] = process.argv.slice(2)
  check(bootstrap && topic, 'usage: reassign.js BOOTSTRAP TOPIC')
  const kafka = new Kafka({
    clientId: 'cairn-reassign',
    brokers: bootstrap.split(','),
    logLevel: logLevel.WARN,
    retry: { retries: 10 }
  })
  const admin = kafka.admin()
  await admin.connect()
  try {
    const partitionReplicas = async () => {
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
      const p = topics[0].partitions.find(p => p.partitionId === 0)
      check(p, `${topic}-0 missing from Metadata`)
      return p.replicas
    }
    const replicas = await partitionReplicas()
    check(replicas.length === 2, `${topic}-0 has replicas ${replicas}, expected 2`)
    const [a, b] = replicas
    const cluster = await admin.describeCluster()
    const others = cluster.brokers.map(x => x.nodeId).filter(id => !replicas.includes(id)).sort()
    check(others.length >= 1, `no broker outside ${replicas}: ${JSON.stringify(cluster.brokers)}`)
    const c = others[0]
    console.log(`PLAN ${a} ${b} ${c}`)

    const alter = (t, partition, replicas) => admin.alterPartitionReassignments({
      topics: [{ topic: t, partitionAssignment: [{ partition, replicas }] }],
      timeout: 30000
    })
    await expectRefusal('unregistered broker', alter(topic, 0, [b, 99]), 'INVALID_REPLICA_ASSIGNMENT')
    await expectRefusal('repeated broker', alter(topic, 0, [b, b]), 'INVALID_REPLICA_ASSIGNMENT')
    await expectRefusal('unknown topic', alter('no-such-topic', 0, [b, c]), 'UNKNOWN_TOPIC_OR_PARTITION')
    await expectRefusal('unknown partition', alter(topic, 99, [b, c]), 'UNKNOWN_TOPIC_OR_PARTITION')
    const before = await admin.listPartitionReassignments({})
    check(before.topics.length === 0, `reassignments before any: ${JSON.stringify(before)}`)

    await alter(topic, 0, [b, c])
    step(`reassignment of ${topic}-0 from [${a},${b}] to [${b},${c}] accepted`)

    const deadline = Date.now() + TIMEOUT_MS
    let listings = 0
    let seenInProgress = false
    for (;;) {
      const listed = await admin.listPartitionReassignments({})
      listings++
      if (listed.topics.length === 0) break
      const t = listed.topics.find(t => t.name === topic)
      check(t && listed.topics.length === 1, `unexpected listing ${JSON.stringify(listed)}`)
      const p = t.partitions.find(p => p.partition === 0)
      check(p && t.partitions.length === 1, `unexpected listing ${JSON.stringify(listed)}`)
      check(same(p.replicas, [b, c, a]) && same(p.addingReplicas, [c]) && same(p.removingReplicas, [a]),
        `in progress: expected replicas [${b},${c},${a}] adding [${c}] removing [${a}], got ${JSON.stringify(p)}`)
      if (!seenInProgress) step(`in progress: ${JSON.stringify(p)}`)
      seenInProgress = true
      check(Date.now() < deadline, `reassignment still listed after ${TIMEOUT_MS} ms: ${JSON.stringify(listed)}`)
      await sleep(100)
    }
    step(`no reassignment left after ${listings} listings (seen in progress: ${seenInProgress})`)
    // The listing and Metadata may come from different brokers: wait for Metadata too.
    for (;;) {
      const now = await partitionReplicas()
      if (same(now, [b, c])) break
      check(Date.now() < deadline, `Metadata still shows replicas ${now}, expected [${b},${c}]`)
      await sleep(100)
    }
    step(`Metadata shows ${topic}-0 on [${b},${c}]`)
    console.log('DONE')
  } finally {
    await admin.disconnect()
  }
}

main().catch(e => {
  console.error(e instanceof Mismatch ? `MISMATCH: ${e.message}` : e)
  process.exit(1)
})

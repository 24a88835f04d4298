#!/usr/bin/env node
// KafkaJS round trip against a Kafka-compatible broker (Strata).
//
//   node produce_consume.js BOOTSTRAP TOPIC COUNT [--timeout SECONDS] [--partitions N]
//                           [--produce-only] [--idempotent]
//
// 1. creates TOPIC with the admin client (3 partitions by default)
// 2. produces COUNT messages, each with a key, headers (text and binary) and an explicit
//    timestamp, spread round-robin over the partitions, in several sends; one of the sends
//    uses GZIP (kafkajs' built-in codec)
// 3. checks the produce responses' base offsets and the partitions' offsets (ListOffsets)
// 4. consumes the topic from the beginning with a consumer group (kafkajs has no
//    group-less consumer) and checks that every message comes back exactly once, at the
//    offset it was written to, with the same key, value, headers and timestamp; then
//    commits the end offsets and reads them back with the admin client (OffsetFetch);
//    --produce-only stops after step 3 (no consumer group needed)
// --idempotent: the producer is kafkajs' idempotent one (InitProducerId, sequence numbers)
//
// Prints one line of JSON (the summary) on stdout; kafkajs' own log goes to stderr
// (level from KAFKAJS_LOG_LEVEL: nothing, error, warn, info, debug; default info).
// Exit status: 0 all good, 1 mismatch, 2 timeout, 3 error (exception), 64 bad usage.

'use strict';

const { Kafka, CompressionTypes, logLevel, Partitioners } = require('kafkajs');
const kafkajsVersion = require('kafkajs/package.json').version;

function usage(msg) {
  if (msg) process.stderr.write(`produce_consume.js: ${msg}\n`);
  process.stderr.write('usage: node produce_consume.js BOOTSTRAP TOPIC COUNT [--timeout SECONDS] [--partitions N] [--produce-only] [--idempotent]\n');
  process.exit(64);
}

const positional = [];
const opts = { timeout: 60, partitions: 3, produceOnly: false, idempotent: false };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--timeout' || a === '--partitions') {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      opts[a.slice(2)] = Number(argv[++i]);
    } else if (a === '--produce-only') {
      opts.produceOnly = true;
    } else if (a === '--idempotent') {
      opts.idempotent = true;
    } else if (a.startsWith('--')) {
      usage(`unknown option ${a}`);
    } else {
      positional.push(a);
    }
  }
}
if (positional.length !== 3) usage('expected BOOTSTRAP TOPIC COUNT');
const [bootstrap, topic, countArg] = positional;
const count = Number(countArg);
if (!Number.isInteger(count) || count < 2) usage('COUNT must be an integer >= 2');
if (!Number.isInteger(opts.partitions) || opts.partitions < 1) usage('--partitions must be >= 1');
if (!(opts.timeout > 0)) usage('--timeout must be > 0');
const numPartitions = opts.partitions;

const started = Date.now();
const summary = {
  ok: false,
  client: 'kafkajs',
  client_version: kafkajsVersion,
  bootstrap,
  topic,
  partitions: numPartitions,
  mode: opts.produceOnly ? 'produce-only' : 'produce-consume',
  idempotent: opts.idempotent,
  produced: 0,
  produce_sends: 0,
  gzip_messages: 0,
  consumed: 0,
  unique_consumed: 0,
  duplicates: 0,
  missing: 0,
  unexpected: 0,
  mismatches: 0,
  problems: [],
  offsets: {},
  phase: 'start',
  elapsed_ms: 0,
};
const MAX_PROBLEMS = 20;
function problem(text) {
  if (summary.problems.length < MAX_PROBLEMS) summary.problems.push(text);
  else if (summary.problems.length === MAX_PROBLEMS) summary.problems.push('... (more problems not listed)');
}

let finished = false;
function finish(code) {
  if (finished) return;
  finished = true;
  if (!opts.produceOnly && (summary.phase.startsWith('consume') || ['commit', 'disconnect', 'fetch-committed', 'done'].includes(summary.phase))) {
    summary.unique_consumed = seen.size;
    summary.missing = count - seen.size;
  }
  summary.elapsed_ms = Date.now() - started;
  process.stdout.write(JSON.stringify(summary) + '\n');
  // process.exit can cut a pending stdout write to a pipe; exit once it is flushed
  process.stdout.write('', () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}

const watchdog = setTimeout(() => {
  problem(`timed out after ${opts.timeout} s in phase "${summary.phase}"`);
  summary.error = 'timeout';
  finish(2);
}, opts.timeout * 1000);

// kafkajs' log to stderr as JSON lines, so stdout holds only the summary
const levelNames = { nothing: logLevel.NOTHING, error: logLevel.ERROR, warn: logLevel.WARN, info: logLevel.INFO, debug: logLevel.DEBUG };
const wantedLevel = levelNames[(process.env.KAFKAJS_LOG_LEVEL || 'info').toLowerCase()] ?? logLevel.INFO;
const levelLabel = { [logLevel.ERROR]: 'ERROR', [logLevel.WARN]: 'WARN', [logLevel.INFO]: 'INFO', [logLevel.DEBUG]: 'DEBUG' };
const logCreator = () => ({ namespace, level, log }) => {
  const { message, timestamp, ...extra } = log;
  process.stderr.write(`${timestamp} ${levelLabel[level] || level} [${namespace}] ${message} ${JSON.stringify(extra)}\n`);
};

const kafka = new Kafka({
  clientId: 'strata-compat-kafkajs',
  brokers: bootstrap.split(','),
  connectionTimeout: 5000,
  requestTimeout: 15000,
  retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 2000 },
  logLevel: wantedLevel,
  logCreator,
});

// ---- the messages -------------------------------------------------------------------

const baseTimestamp = Date.now() - 60 * 1000; // distinct, recognisable CreateTime per message
const binaryHeader = Buffer.from([0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff]);

function expectedMessage(i) {
  const filler = 'abcdefghij'.repeat(1 + ((i * 37) % 50)); // 10..500 bytes, compressible
  return {
    key: `key-${i}`,
    value: `value-${i}-${filler}`,
    headers: { idx: String(i), source: 'kafkajs', bin: binaryHeader },
    timestamp: String(baseTimestamp + i),
    partition: i % numPartitions,
    // sends are sequential and acked, so partition p holds p, p+P, p+2P, ... in order
    offset: Math.floor(i / numPartitions),
  };
}

const expected = [];
for (let i = 0; i < count; i++) expected.push(expectedMessage(i));

// sends of up to 100 messages, at least 2 sends; the second one is GZIP-compressed
const chunkSize = Math.max(1, Math.min(100, Math.ceil(count / 4)));
const chunks = [];
for (let i = 0; i < count; i += chunkSize) chunks.push(expected.slice(i, i + chunkSize));
const GZIP_CHUNK = 1;

const seen = new Map(); // key -> times consumed

// ---- the run ------------------------------------------------------------------------

async function createTopic(admin) {
  summary.phase = 'create-topic';
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: 10000,
  });
  summary.topic_created = created; // false: it already existed
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  const t = meta.topics.find((x) => x.name === topic);
  const n = t ? t.partitions.length : 0;
  if (n !== numPartitions) {
    throw new Error(`metadata shows ${n} partitions for ${topic}, expected ${numPartitions}`);
  }
}

async function produce(producer) {
  summary.phase = 'produce';
  for (let c = 0; c < chunks.length; c++) {
    const chunk = chunks[c];
    const gzip = c === GZIP_CHUNK;
    const result = await producer.send({
      topic,
      acks: -1,
      timeout: 10000,
      compression: gzip ? CompressionTypes.GZIP : CompressionTypes.None,
      messages: chunk.map((m) => ({
        key: m.key,
        value: m.value,
        headers: m.headers,
        timestamp: m.timestamp,
        partition: m.partition,
      })),
    });
    summary.produce_sends += 1;
    summary.produced += chunk.length;
    if (gzip) summary.gzip_messages += chunk.length;
    // each partition's base offset must be the offset of its first message in this send
    for (const r of result) {
      if (r.topicName !== topic) problem(`send ${c}: response names topic ${r.topicName}`);
      if (r.errorCode !== 0) problem(`send ${c}: partition ${r.partition} error code ${r.errorCode}`);
      const first = chunk.find((m) => m.partition === r.partition);
      if (!first) {
        problem(`send ${c}: response for partition ${r.partition} that got no message`);
        summary.mismatches += 1;
      } else if (String(r.baseOffset) !== String(first.offset)) {
        problem(`send ${c}: partition ${r.partition} base offset ${r.baseOffset}, expected ${first.offset}`);
        summary.mismatches += 1;
      }
    }
    const partitionsSent = new Set(chunk.map((m) => m.partition));
    if (result.length !== partitionsSent.size) {
      problem(`send ${c}: ${result.length} partition results for ${partitionsSent.size} partitions`);
      summary.mismatches += 1;
    }
  }
}

async function checkOffsets(admin) {
  summary.phase = 'list-offsets';
  const offsets = await admin.fetchTopicOffsets(topic); // ListOffsets earliest + latest
  const perPartition = new Array(numPartitions).fill(0);
  for (const m of expected) perPartition[m.partition] += 1;
  for (const o of offsets) {
    summary.offsets[o.partition] = { low: Number(o.low), high: Number(o.high) };
    const want = perPartition[o.partition];
    if (Number(o.low) !== 0 || Number(o.high) !== want) {
      problem(`partition ${o.partition}: offsets low=${o.low} high=${o.high}, expected 0 and ${want}`);
      summary.mismatches += 1;
    }
  }
  if (offsets.length !== numPartitions) {
    problem(`ListOffsets returned ${offsets.length} partitions, expected ${numPartitions}`);
    summary.mismatches += 1;
  }
}

async function checkCommitted(admin, groupId) {
  summary.phase = 'fetch-committed';
  const result = await admin.fetchOffsets({ groupId, topics: [topic] }); // OffsetFetch
  const t = result.find((x) => x.topic === topic);
  const committed = {};
  for (const p of (t ? t.partitions : [])) committed[p.partition] = Number(p.offset);
  summary.committed = committed;
  for (const [partition, o] of Object.entries(summary.offsets)) {
    if (committed[partition] !== o.high) {
      problem(`partition ${partition}: committed offset ${committed[partition]}, expected ${o.high}`);
      summary.mismatches += 1;
    }
  }
}

function headerText(v) {
  if (v === undefined || v === null) return v;
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
}

function compareMessage(partition, message) {
  const key = message.key === null ? null : message.key.toString('utf8');
  const m = key !== null && key.startsWith('key-') ? expected[Number(key.slice(4))] : undefined;
  if (!m || m.key !== key) {
    summary.unexpected += 1;
    problem(`unexpected message at ${partition}/${message.offset}: key ${JSON.stringify(key)}`);
    return null;
  }
  const diffs = [];
  if (partition !== m.partition) diffs.push(`partition ${partition} != ${m.partition}`);
  if (String(message.offset) !== String(m.offset)) diffs.push(`offset ${message.offset} != ${m.offset}`);
  const value = message.value === null ? null : message.value.toString('utf8');
  if (value !== m.value) diffs.push(`value differs (${value === null ? 'null' : value.length + ' bytes'})`);
  if (String(message.timestamp) !== m.timestamp) diffs.push(`timestamp ${message.timestamp} != ${m.timestamp}`);
  const h = message.headers || {};
  const names = Object.keys(h).sort();
  if (JSON.stringify(names) !== JSON.stringify(Object.keys(m.headers).sort())) {
    diffs.push(`header names ${JSON.stringify(names)}`);
  } else {
    if (headerText(h.idx) !== m.headers.idx) diffs.push(`header idx ${headerText(h.idx)}`);
    if (headerText(h.source) !== m.headers.source) diffs.push(`header source ${headerText(h.source)}`);
    if (!Buffer.isBuffer(h.bin) || !h.bin.equals(binaryHeader)) diffs.push(`header bin ${JSON.stringify(h.bin)}`);
  }
  if (diffs.length) {
    summary.mismatches += 1;
    problem(`${m.key}: ${diffs.join('; ')}`);
  }
  return m;
}

async function consume(consumer) {
  summary.phase = 'consume';
  const lastOffset = new Map(); // partition -> last offset consumed
  let resolveDone;
  const done = new Promise((resolve) => { resolveDone = resolve; });

  consumer.on(consumer.events.CRASH, (e) => {
    problem(`consumer crashed: ${e.payload && e.payload.error ? e.payload.error.message : JSON.stringify(e.payload)}`);
  });

  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    autoCommit: true,
    eachMessage: async ({ topic: t, partition, message }) => {
      summary.consumed += 1;
      if (t !== topic) {
        summary.unexpected += 1;
        problem(`message from topic ${t}`);
        return;
      }
      const prev = lastOffset.get(partition);
      if (prev !== undefined && Number(message.offset) <= prev) {
        problem(`partition ${partition}: offset ${message.offset} after ${prev}`);
      }
      lastOffset.set(partition, Number(message.offset));
      const m = compareMessage(partition, message);
      if (m) {
        const n = (seen.get(m.key) || 0) + 1;
        seen.set(m.key, n);
        if (n > 1) {
          summary.duplicates += 1;
          problem(`${m.key} consumed ${n} times`);
        }
      }
      if (seen.size === count) resolveDone();
    },
  });

  await done;
  // keep reading a little longer: a duplicate after the last new message must show too
  summary.phase = 'consume-linger';
  await new Promise((r) => setTimeout(r, 1500));
  summary.unique_consumed = seen.size;
  summary.missing = count - seen.size;
}

async function main() {
  const admin = kafka.admin();
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
    ...(opts.idempotent ? { idempotent: true, maxInFlightRequests: 1 } : {}),
  });
  const groupId = `strata-compat-kafkajs-${topic}-${process.pid}-${Date.now()}`;
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000, maxWaitTimeInMs: 500 });
  if (!opts.produceOnly) summary.group_id = groupId;

  summary.phase = 'connect';
  await admin.connect();
  await createTopic(admin);
  await producer.connect();
  await produce(producer);
  await producer.disconnect();
  await checkOffsets(admin);
  if (!opts.produceOnly) {
    await consumer.connect();
    await consume(consumer);
    summary.phase = 'commit';
    await consumer.commitOffsets(Object.entries(summary.offsets).map(([partition, o]) => (
      { topic, partition: Number(partition), offset: String(o.high) })));
    summary.phase = 'disconnect';
    await consumer.disconnect();
    await checkCommitted(admin, groupId);
  }
  summary.phase = 'disconnect';
  await admin.disconnect();
  summary.phase = 'done';
}

main().then(
  () => {
    clearTimeout(watchdog);
    summary.ok = summary.produced === count &&
      (opts.produceOnly || summary.unique_consumed === count) &&
      summary.duplicates === 0 && summary.missing === 0 && summary.unexpected === 0 &&
      summary.mismatches === 0 && summary.problems.length === 0;
    finish(summary.ok ? 0 : 1);
  },
  (err) => {
    clearTimeout(watchdog);
    summary.error = `${err && err.name ? err.name + ': ' : ''}${err && err.message ? err.message : String(err)}`;
    if (err && err.type) summary.error_type = err.type; // kafkajs' name of the Kafka error code
    problem(`error in phase "${summary.phase}": ${summary.error}`);
    if (err && err.stack) process.stderr.write(err.stack + '\n');
    finish(3);
  },
);

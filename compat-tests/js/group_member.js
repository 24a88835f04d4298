#!/usr/bin/env node
// One member of a consumer group, for the group-churn test (test_group_kafkajs.py): KafkaJS
// against a Kafka-compatible broker (Strata).
//
//   node group_member.js BOOTSTRAP TOPIC GROUP NAME [--timeout SECONDS]
//
// Subscribes to TOPIC in GROUP (from the beginning when the group has no committed offset) and
// consumes until SIGTERM. Every message it processes is one line of JSON on stdout:
// {"p":PARTITION,"o":OFFSET,"v":"VALUE"}. autoCommit is off and eachBatch is used with
// eachBatchAutoResolve off: the messages of a fetched batch are processed one by one
// (resolveOffset() each; it stops early when the consumer is stopping), then the last processed
// offset + 1 is committed (commitOffsetsIfNecessary(offsets), an OffsetCommit) before eachBatch
// returns — so before kafkajs heartbeats, hears of a rebalance and rejoins, and before it leaves
// the group on disconnect: a partition's next owner starts exactly after the last processed
// message. (A commit after every message would be exact too, but costs a round trip each.)
// Everything else is a JSON line with an "event" field: started, assigned (GROUP_JOIN;
// "assignment" lists the partitions it owns from then on), rebalancing (it owns nothing until the
// next assigned), commit-failed, crash, stopping, closed, error.
//
// SIGTERM: consumer.disconnect() — ends the batch in hand (committing what was processed), stops
// fetching, leaves the group (LeaveGroup) — then {"event":"closed"} and exit status 0. kafkajs' own log goes to stderr (level
// from KAFKAJS_LOG_LEVEL: nothing, error, warn, info, debug; default info).
// Exit status: 0 clean close, 2 timeout, 3 error, 64 bad usage.

'use strict';

const { Kafka, logLevel } = require('kafkajs');
const kafkajsVersion = require('kafkajs/package.json').version;

function usage(msg) {
  if (msg) process.stderr.write(`group_member.js: ${msg}\n`);
  process.stderr.write('usage: node group_member.js BOOTSTRAP TOPIC GROUP NAME [--timeout SECONDS]\n');
  process.exit(64);
}

const positional = [];
const opts = { timeout: 150 };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--timeout') {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      opts.timeout = Number(argv[++i]);
    } else if (a.startsWith('--')) {
      usage(`unknown option ${a}`);
    } else {
      positional.push(a);
    }
  }
}
if (positional.length !== 4) usage('expected BOOTSTRAP TOPIC GROUP NAME');
const [bootstrap, topic, groupId, name] = positional;
if (!(opts.timeout > 0)) usage('--timeout must be > 0');

// stdout is a pipe: writes are synchronous on Linux, so nothing is lost at exit
function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}
function event(kind, fields = {}) {
  emit({ event: kind, name, t: Date.now(), ...fields });
}
function errorText(e) {
  return `${e && e.name ? e.name + ': ' : ''}${e && e.message ? e.message : String(e)}`;
}

let records = 0;
let assignment = [];

let finished = false;
function finish(code) {
  if (finished) return;
  finished = true;
  process.stdout.write('', () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}

const watchdog = setTimeout(() => {
  event('error', { error: `timed out after ${opts.timeout} s` });
  finish(2);
}, opts.timeout * 1000);

const levelNames = { nothing: logLevel.NOTHING, error: logLevel.ERROR, warn: logLevel.WARN, info: logLevel.INFO, debug: logLevel.DEBUG };
const wantedLevel = levelNames[(process.env.KAFKAJS_LOG_LEVEL || 'info').toLowerCase()] ?? logLevel.INFO;
const levelLabel = { [logLevel.ERROR]: 'ERROR', [logLevel.WARN]: 'WARN', [logLevel.INFO]: 'INFO', [logLevel.DEBUG]: 'DEBUG' };
const logCreator = () => ({ namespace, level, log }) => {
  const { message, timestamp, ...extra } = log;
  process.stderr.write(`${timestamp} ${levelLabel[level] || level} [${namespace}] ${message} ${JSON.stringify(extra)}\n`);
};

const kafka = new Kafka({
  clientId: `strata-compat-kafkajs-${name}`,
  brokers: bootstrap.split(','),
  connectionTimeout: 5000,
  requestTimeout: 15000,
  retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 2000 },
  logLevel: wantedLevel,
  logCreator,
});

// a short heartbeat interval: members learn of a rebalance (a join, a leave) within half a second
const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500, maxWaitTimeInMs: 200 });

consumer.on(consumer.events.GROUP_JOIN, (e) => {
  const mine = (e.payload.memberAssignment && e.payload.memberAssignment[topic]) || [];
  assignment = [...mine].sort((a, b) => a - b);
  event('assigned', { assignment, member_id: e.payload.memberId, leader: e.payload.isLeader });
});
consumer.on(consumer.events.REBALANCING, () => {
  assignment = [];
  event('rebalancing', { assignment });
});
consumer.on(consumer.events.CRASH, (e) => {
  event('crash', { error: errorText(e.payload && e.payload.error), restart: e.payload && e.payload.restart });
});

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  event('stopping', { records, assignment });
  try {
    await consumer.disconnect();
    clearTimeout(watchdog);
    assignment = [];
    event('closed', { records, assignment });
    finish(0);
  } catch (e) {
    event('error', { error: `disconnect: ${errorText(e)}` });
    finish(3);
  }
}
process.on('SIGTERM', stop);

async function main() {
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  event('started', { client_version: kafkajsVersion, assignment });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary, isRunning, isStale }) => {
      let last = null;
      for (const message of batch.messages) {
        if (!isRunning() || isStale()) break;
        // "processing" a message is writing it down
        emit({ p: batch.partition, o: Number(message.offset), v: message.value === null ? '' : message.value.toString('utf8') });
        records += 1;
        resolveOffset(message.offset);
        last = message.offset;
      }
      if (last === null) return;
      const next = String(Number(last) + 1);
      try {
        // with offsets given, this commits them now (the group's OffsetCommit), running or stopping
        await commitOffsetsIfNecessary({ topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }] });
      } catch (e) {
        // kafkajs hands these messages out again: they would be processed twice
        event('commit-failed', { partition: batch.partition, offset: next, error: errorText(e), type: e && e.type });
        throw e;
      }
    },
  });
}

main().catch((e) => {
  event('error', { error: errorText(e) });
  if (e && e.stack) process.stderr.write(e.stack + '\n');
  finish(3);
});

// KafkaJS over SASL against a Kafka-compatible broker (Strata).
//
//   node sasl_client.js BOOTSTRAP TOPIC COUNT MECHANISM USER PASSWORD [CA_FILE]
//
// MECHANISM is kafkajs' name: plain, scram-sha-256 or scram-sha-512. With CA_FILE (PEM) the
// connection is TLS (SASL_SSL), the broker verified against that CA. Creates the topic (1
// partition), produces COUNT messages, reads them back with a consumer group. Prints one
// line of JSON on stdout: {"ok", "produced", "consumed", "error"}; exit status 0 when every
// message came back, 1 otherwise, 3 on an error.

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, countText, mechanism, username, password, caFile] = process.argv.slice(2);
const count = Number(countText);
const summary = { ok: false, produced: 0, consumed: 0 };

function finish(code) {
  process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(code));
}
setTimeout(() => { summary.error = 'timeout'; finish(3); }, 60000).unref();

const kafka = new Kafka({
  clientId: 'strata-compat-kafkajs-sasl',
  brokers: [bootstrap],
  ssl: caFile ? { ca: [fs.readFileSync(caFile, 'utf-8')] } : false,
  sasl: { mechanism, username, password },
  connectionTimeout: 5000,
  requestTimeout: 15000,
  retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1000 },
  logLevel: logLevel.WARN,
});

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] });
  await admin.disconnect();
  const producer = kafka.producer();
  await producer.connect();
  const messages = Array.from({ length: count }, (_, i) => ({ key: `k${i}`, value: `v${i}` }));
  await producer.send({ topic, messages });
  summary.produced = count;
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `${topic}-group` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  await new Promise((resolve) => {
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.add(message.value.toString());
        if (seen.size >= count) resolve();
      },
    });
  });
  summary.consumed = seen.size;
  await consumer.disconnect();
  summary.ok = seen.size === count;
  finish(summary.ok ? 0 : 1);
}

main().catch((e) => {
  summary.error = `${e.name}: ${e.message}`;
  finish(3);
});

// Apache Kafka Java client (kafka-clients 4.3.0): idempotent and transactional producers and
// the transaction admin APIs against a Kafka-compatible broker (Strata). Used by
// compat-tests/test_transactions.py.
//
//   java -cp 'lib/*:BUILD_DIR' Transactional MODE --bootstrap HOST:PORT [options]
//
// produce  --topic T --partitions P --count N [--chunk C] [--pause-ms MS] [--timeout S]
//     The producer's DEFAULT settings (4.x: enable.idempotence=true, acks=all), with only
//     delivery.timeout.ms raised so it keeps retrying while the broker restarts. Message i
//     goes to partition i % P with the value "j-P-SEQ" (SEQ: 0, 1, ... per partition), in
//     chunks of C messages with a pause after each. Prints {"event": "progress", "sent": n,
//     "acked": n} after each chunk and at the end one summary line: acked, failed, errors
//     and "offsets": {partition: [offset of SEQ 0, offset of SEQ 1, ...]}.
//
// copy  --input T --output T --group G --txn-id X [--batch B] [--abort-batch K] [--timeout S]
//     A consume-transform-produce loop: a read_committed consumer of the group G (manual
//     commits) and a producer with transactional.id X. Each poll (at most B records) is one
//     transaction: the records go to the output topic as "T:" + value, same partition and
//     key, then sendOffsetsToTransaction(next offsets, consumer.groupMetadata()) and
//     commitTransaction(). The K-th transaction is flushed and then aborted instead, and the
//     consumer seeks back to the group's committed offsets, so those records are processed
//     again by the next transaction. Stops once its positions reach the input's end offsets.
//     Summary: transactions, committed records, aborted values, per-partition positions.
//
// admin  --topic T --txn-id X
//     A transactional producer writes to partitions 0 and 1 and, while the transaction is
//     open, the Admin client's listTransactions(), describeTransactions() and
//     describeProducers() are recorded; then it commits and records them again.
//
// Every mode prints JSON lines on stdout (the last is the summary, with "ok" and "problems");
// the client's log goes to stderr (log4j2.properties). Exit status: 0 ok, 1 problems, 2
// timeout, 3 exception, 64 bad usage.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeProducersResult;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;

public class Transactional {

    static final int MAX_PROBLEMS = 20;
    static final Map<String, String> opts = new HashMap<>();
    static final Map<String, Object> summary = new LinkedHashMap<>();
    static final List<String> problems = new ArrayList<>();
    static volatile String phase = "start";

    static void problem(String text) {
        synchronized (problems) {
            if (problems.size() < MAX_PROBLEMS) problems.add(text);
            else if (problems.size() == MAX_PROBLEMS) problems.add("... (more problems not listed)");
        }
    }

    static void log(String text) {
        System.err.println("[Transactional] " + text);
    }

    static String opt(String name) {
        String v = opts.get(name);
        if (v == null) usage("missing --" + name);
        return v;
    }

    static String opt(String name, String dflt) {
        return opts.getOrDefault(name, dflt);
    }

    static void usage(String why) {
        System.err.println("usage: Transactional produce|copy|admin --bootstrap HOST:PORT ...: " + why);
        System.exit(64);
    }

    static synchronized void emit(Map<String, Object> line) {
        System.out.println(Json.json(line));
        System.out.flush();
    }

    static void event(String name, Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("event", name);
        for (int i = 0; i + 1 < kv.length; i += 2) m.put((String) kv[i], kv[i + 1]);
        emit(m);
    }

    static void finish(int code) {
        summary.put("event", "summary");
        summary.put("phase", phase);
        synchronized (problems) {
            summary.put("problems", new ArrayList<>(problems));
            summary.put("ok", code == 0 && problems.isEmpty());
        }
        emit(summary);
        System.exit(code != 0 ? code : (problems.isEmpty() ? 0 : 1));
    }

    public static void main(String[] args) {
        if (args.length < 1) usage("no mode");
        String mode = args[0];
        for (int i = 1; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) usage("bad argument " + args[i]);
            opts.put(args[i].substring(2), args[++i]);
        }
        opt("bootstrap");
        summary.put("mode", mode);
        summary.put("client_version", AppInfoParser.getVersion());
        int timeout = Integer.parseInt(opt("timeout", "120"));
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(timeout * 1000L);
            } catch (InterruptedException e) {
                return;
            }
            problem("timed out after " + timeout + " s in phase " + phase);
            finish(2);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
        try {
            switch (mode) {
                case "produce": produce(); break;
                case "copy": copy(); break;
                case "admin": admin(); break;
                default: usage("unknown mode " + mode);
            }
            phase = "done";
            finish(0);
        } catch (Throwable t) {
            log("exception in phase " + phase + ": " + t);
            t.printStackTrace(System.err);
            problem("exception in phase " + phase + ": " + t);
            finish(3);
        }
    }

    static Properties producerProps() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, opt("bootstrap"));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return p;
    }

    static Properties consumerProps() {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, opt("bootstrap"));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return p;
    }

    static Admin adminClient() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, opt("bootstrap"));
        return Admin.create(p);
    }

    // ---- produce: the idempotent producer on its defaults ---------------------------------
    static void produce() throws Exception {
        String topic = opt("topic");
        int partitions = Integer.parseInt(opt("partitions"));
        int count = Integer.parseInt(opt("count"));
        int chunk = Integer.parseInt(opt("chunk", "1000"));
        long pauseMs = Long.parseLong(opt("pause-ms", "0"));
        long[][] offsets = new long[partitions][];
        for (int p = 0; p < partitions; p++) {
            offsets[p] = new long[(count - p + partitions - 1) / partitions];
            java.util.Arrays.fill(offsets[p], -1);
        }
        AtomicInteger acked = new AtomicInteger();
        AtomicInteger failed = new AtomicInteger();
        Map<String, Integer> errors = new TreeMap<>();
        Properties props = producerProps();
        // defaults otherwise: acks=all, enable.idempotence=true, retries=MAX_INT
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "300000");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        phase = "produce";
        long t0 = System.nanoTime();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < count; i++) {
                final int p = i % partitions;
                final int seq = i / partitions;
                byte[] value = String.format("j-%d-%06d", p, seq).getBytes(StandardCharsets.UTF_8);
                producer.send(new ProducerRecord<>(topic, p, null, value), (md, e) -> {
                    if (e == null) {
                        offsets[p][seq] = md.offset();
                        acked.incrementAndGet();
                    } else {
                        failed.incrementAndGet();
                        synchronized (errors) {
                            errors.merge(e.getClass().getSimpleName() + ": " + e.getMessage(), 1, Integer::sum);
                        }
                    }
                });
                if ((i + 1) % chunk == 0 || i + 1 == count) {
                    event("progress", "sent", i + 1, "acked", acked.get(), "failed", failed.get());
                    if (pauseMs > 0) Thread.sleep(pauseMs);
                }
            }
            phase = "flush";
            producer.flush();
        }
        summary.put("produce_ms", (System.nanoTime() - t0) / 1_000_000);
        summary.put("acked", acked.get());
        summary.put("failed", failed.get());
        summary.put("errors", errors);
        if (acked.get() != count) problem(acked.get() + " of " + count + " acknowledged");
        Map<String, Object> byPartition = new LinkedHashMap<>();
        for (int p = 0; p < partitions; p++) byPartition.put(Integer.toString(p), offsets[p]);
        summary.put("offsets", byPartition);
    }

    // ---- copy: consume-transform-produce in transactions ------------------------------------
    static void copy() throws Exception {
        String input = opt("input");
        String output = opt("output");
        String group = opt("group");
        String txnId = opt("txn-id");
        int batch = Integer.parseInt(opt("batch", "200"));
        int abortBatch = Integer.parseInt(opt("abort-batch", "-1"));

        Properties cp = consumerProps();
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, Integer.toString(batch));
        Properties pp = producerProps();
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);

        int transactions = 0, committedRecords = 0;
        List<String> abortedValues = new ArrayList<>();
        List<Integer> batchSizes = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp);
             KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
            phase = "init-transactions";
            producer.initTransactions();
            event("initialized");
            phase = "subscribe";
            consumer.subscribe(List.of(input));
            int partitions = consumer.partitionsFor(input).size();
            Map<TopicPartition, Long> end = null;
            while (true) {
                phase = "poll";
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(500));
                if (records.isEmpty()) {
                    Set<TopicPartition> assigned = consumer.assignment();
                    if (assigned.size() < partitions) continue;
                    if (end == null) end = consumer.endOffsets(assigned, Duration.ofSeconds(15));
                    boolean done = true;
                    for (TopicPartition tp : assigned) {
                        if (consumer.position(tp, Duration.ofSeconds(15)) < end.get(tp)) done = false;
                    }
                    if (done) break;
                    continue;
                }
                transactions++;
                boolean abort = transactions == abortBatch;
                phase = "transaction-" + transactions;
                producer.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                List<String> values = new ArrayList<>();
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    String v = new String(r.value(), StandardCharsets.UTF_8);
                    values.add(v);
                    producer.send(new ProducerRecord<>(output, r.partition(), r.key(),
                            ("T:" + v).getBytes(StandardCharsets.UTF_8)));
                    next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                producer.sendOffsetsToTransaction(next, consumer.groupMetadata());
                batchSizes.add(records.count());
                if (abort) {
                    // the records reach the log first, so a read_uncommitted reader sees them
                    producer.flush();
                    producer.abortTransaction();
                    abortedValues.addAll(values);
                    // rewind to what the group committed: the aborted records get processed again
                    Set<TopicPartition> assigned = consumer.assignment();
                    Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(assigned, Duration.ofSeconds(15));
                    Map<String, Object> rewound = new TreeMap<>();
                    for (TopicPartition tp : assigned) {
                        OffsetAndMetadata om = committed.get(tp);
                        if (om == null) {
                            consumer.seekToBeginning(List.of(tp));
                            rewound.put(Integer.toString(tp.partition()), "beginning");
                        } else {
                            consumer.seek(tp, om.offset());
                            rewound.put(Integer.toString(tp.partition()), om.offset());
                        }
                    }
                    event("aborted", "transaction", transactions, "records", values.size(), "rewound", rewound);
                } else {
                    producer.commitTransaction();
                    committedRecords += values.size();
                    event("committed", "transaction", transactions, "records", values.size());
                }
            }
            phase = "positions";
            Map<String, Object> positions = new TreeMap<>();
            for (TopicPartition tp : consumer.assignment()) {
                positions.put(Integer.toString(tp.partition()), consumer.position(tp));
            }
            summary.put("positions", positions);
            Map<String, Object> ends = new TreeMap<>();
            for (Map.Entry<TopicPartition, Long> e : end.entrySet()) ends.put(Integer.toString(e.getKey().partition()), e.getValue());
            summary.put("end_offsets", ends);
            phase = "close";
        }
        summary.put("transactions", transactions);
        summary.put("committed_records", committedRecords);
        summary.put("batch_sizes", batchSizes);
        summary.put("aborted_values", abortedValues);
        if (abortBatch > 0 && abortedValues.isEmpty()) problem("no transaction was aborted");
    }

    // ---- admin: ListTransactions, DescribeTransactions, DescribeProducers ---------------------
    static Map<String, Object> adminView(Admin admin, String txnId, String topic) throws Exception {
        Map<String, Object> view = new LinkedHashMap<>();
        Map<String, Object> listed = new TreeMap<>();
        for (TransactionListing l : admin.listTransactions().all().get(15, TimeUnit.SECONDS)) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("state", l.state().toString());
            m.put("producer_id", l.producerId());
            listed.put(l.transactionalId(), m);
        }
        view.put("listed", listed);
        TransactionDescription d = admin.describeTransactions(List.of(txnId)).description(txnId).get(15, TimeUnit.SECONDS);
        Map<String, Object> described = new LinkedHashMap<>();
        described.put("state", d.state().toString());
        described.put("producer_id", d.producerId());
        described.put("producer_epoch", d.producerEpoch());
        described.put("timeout_ms", d.transactionTimeoutMs());
        described.put("start_ms", d.transactionStartTimeMs().isPresent() ? d.transactionStartTimeMs().getAsLong() : null);
        List<String> tps = new ArrayList<>();
        for (TopicPartition tp : d.topicPartitions()) tps.add(tp.topic() + "-" + tp.partition());
        tps.sort(null);
        described.put("partitions", tps);
        view.put("described", described);
        List<TopicPartition> parts = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1));
        DescribeProducersResult pr = admin.describeProducers(parts);
        Map<String, Object> producers = new TreeMap<>();
        for (Map.Entry<TopicPartition, DescribeProducersResult.PartitionProducerState> e : pr.all().get(15, TimeUnit.SECONDS).entrySet()) {
            List<Object> states = new ArrayList<>();
            for (ProducerState s : e.getValue().activeProducers()) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("producer_id", s.producerId());
                m.put("producer_epoch", s.producerEpoch());
                m.put("last_sequence", s.lastSequence());
                m.put("txn_start_offset", s.currentTransactionStartOffset().isPresent()
                        ? s.currentTransactionStartOffset().getAsLong() : null);
                states.add(m);
            }
            producers.put(Integer.toString(e.getKey().partition()), states);
        }
        view.put("producers", producers);
        return view;
    }

    static void admin() throws Exception {
        String topic = opt("topic");
        String txnId = opt("txn-id");
        Properties pp = producerProps();
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        try (Admin admin = adminClient(); KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
            phase = "init-transactions";
            producer.initTransactions();
            phase = "produce";
            producer.beginTransaction();
            for (int i = 0; i < 10; i++) {
                producer.send(new ProducerRecord<>(topic, i % 2, null, ("admin-" + i).getBytes(StandardCharsets.UTF_8)));
            }
            producer.flush();
            phase = "describe-ongoing";
            summary.put("ongoing", adminView(admin, txnId, topic));
            phase = "commit";
            producer.commitTransaction();
            phase = "describe-committed";
            summary.put("committed", adminView(admin, txnId, topic));
        }
    }
}

// Apache Kafka Java client (kafka-clients 4.3.0) round trip against a Kafka-compatible
// broker (Strata).
//
//   java -cp 'lib/*:BUILD_DIR' ProduceConsume --bootstrap HOST:PORT --topic T --count N
//        [--compression none|gzip|snappy|lz4|zstd] [--consume assign|group]
//        [--group-protocol classic|consumer] [--partitions P] [--timeout SECONDS]
//
// 1. creates the topic with the Admin client (P partitions, default 3; an existing topic
//    is used as it is, if it has P partitions)
// 2. produces N keyed messages (with headers) with the producer's DEFAULT settings —
//    in 4.x that is enable.idempotence=true, acks=all, so InitProducerId comes first —
//    with only compression.type changed when --compression is given; waits for every ack
// 3. consumes them:
//    --consume assign (default): no group.id; assign() of every partition +
//       seekToBeginning(), so no group coordinator is involved
//    --consume group: group.id + subscribe() + auto.offset.reset=earliest, then
//       commitSync() and a check of committed() (needs the group coordinator), then the
//       Admin client's describeConsumerGroups() while the consumer is still a member;
//       --group-protocol sets the consumer's group.protocol: classic (default; JoinGroup,
//       SyncGroup, Heartbeat) or consumer (KIP-848: ConsumerGroupHeartbeat, the broker assigns)
// 4. checks each message came back exactly once, at the partition and offset its ack
//    named, with the same key, value, headers and timestamp; checks the end offsets
//
// Prints one line of JSON (the summary) on stdout; the client's log goes to stderr through
// log4j2 (see log4j2.properties, level from -Dstrata.log.level, default WARN).
// Exit status: 0 all good, 1 mismatch, 2 timeout, 3 error (exception), 64 bad usage.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;

public class ProduceConsume {

    static final int MAX_PROBLEMS = 20;

    // ---- options ------------------------------------------------------------------------
    static String bootstrap;
    static String topic;
    static int count = -1;
    static String compression = "none";
    static String consumeMode = "assign";
    static String groupProtocol = "classic";
    static int partitions = 3;
    static int timeoutSeconds = 90;

    // ---- summary (printed as JSON) --------------------------------------------------------
    static final Map<String, Object> summary = new LinkedHashMap<>();
    static final List<String> problems = new ArrayList<>();
    static volatile String phase = "start";
    static final long started = System.nanoTime();
    static int consumed = 0, duplicates = 0, unexpected = 0, mismatches = 0;
    static final Map<String, Integer> seen = new HashMap<>(); // key -> times consumed
    static boolean finished = false;

    static final byte[] BINARY_HEADER = {0x00, 0x01, 0x7f, (byte) 0x80, (byte) 0xfe, (byte) 0xff};

    static final class Expected {
        final int index;
        final String key;
        final String value;
        final long timestamp;
        int partition = -1; // from the producer's ack
        long offset = -1;

        Expected(int i, long baseTimestamp) {
            index = i;
            key = "key-" + i;
            StringBuilder sb = new StringBuilder("value-" + i + "-");
            int reps = 1 + (i * 37) % 50; // 10..500 bytes, compressible
            for (int r = 0; r < reps; r++) sb.append("abcdefghij");
            value = sb.toString();
            timestamp = baseTimestamp + i;
        }
    }

    static List<Expected> expected = new ArrayList<>();

    static void problem(String text) {
        synchronized (problems) {
            if (problems.size() < MAX_PROBLEMS) problems.add(text);
            else if (problems.size() == MAX_PROBLEMS) problems.add("... (more problems not listed)");
        }
    }

    static void log(String text) {
        System.err.println("[ProduceConsume] " + text);
    }

    static void usage(String msg) {
        if (msg != null) System.err.println("ProduceConsume: " + msg);
        System.err.println("usage: ProduceConsume --bootstrap HOST:PORT --topic T --count N"
                + " [--compression none|gzip|snappy|lz4|zstd] [--consume assign|group]"
                + " [--group-protocol classic|consumer] [--partitions P] [--timeout SECONDS]");
        System.exit(64);
    }

    static void parseArgs(String[] args) {
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (i + 1 >= args.length) usage(a + " needs a value");
            String v = args[++i];
            switch (a) {
                case "--bootstrap": bootstrap = v; break;
                case "--topic": topic = v; break;
                case "--count": count = Integer.parseInt(v); break;
                case "--compression": compression = v; break;
                case "--consume": consumeMode = v; break;
                case "--group-protocol": groupProtocol = v; break;
                case "--partitions": partitions = Integer.parseInt(v); break;
                case "--timeout": timeoutSeconds = Integer.parseInt(v); break;
                default: usage("unknown option " + a);
            }
        }
        if (bootstrap == null || topic == null || count < 1) usage("--bootstrap, --topic and --count (>= 1) are needed");
        if (!Arrays.asList("none", "gzip", "snappy", "lz4", "zstd").contains(compression)) usage("bad --compression " + compression);
        if (!consumeMode.equals("assign") && !consumeMode.equals("group")) usage("bad --consume " + consumeMode);
        if (!groupProtocol.equals("classic") && !groupProtocol.equals("consumer")) usage("bad --group-protocol " + groupProtocol);
        if (!groupProtocol.equals("classic") && !consumeMode.equals("group")) usage("--group-protocol needs --consume group");
        if (partitions < 1 || timeoutSeconds < 1) usage("--partitions and --timeout must be >= 1");
    }

    // ---- JSON -------------------------------------------------------------------------------
    static String json(Object o) {
        if (o == null) return "null";
        if (o instanceof Number || o instanceof Boolean) return o.toString();
        if (o instanceof Map) {
            StringBuilder sb = new StringBuilder("{");
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) {
                if (!first) sb.append(',');
                first = false;
                sb.append(json(String.valueOf(e.getKey()))).append(':').append(json(e.getValue()));
            }
            return sb.append('}').toString();
        }
        if (o instanceof Collection) {
            StringBuilder sb = new StringBuilder("[");
            boolean first = true;
            for (Object x : (Collection<?>) o) {
                if (!first) sb.append(',');
                first = false;
                sb.append(json(x));
            }
            return sb.append(']').toString();
        }
        String s = o.toString();
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
            }
        }
        return sb.append('"').toString();
    }

    static synchronized void finish(int code) {
        if (finished) return;
        finished = true;
        summary.put("ok", code == 0);
        summary.put("phase", phase);
        summary.put("consumed", consumed);
        synchronized (seen) {
            summary.put("unique_consumed", seen.size());
            summary.put("missing", phase.startsWith("consume") || phase.equals("done") ? count - seen.size() : 0);
        }
        summary.put("duplicates", duplicates);
        summary.put("unexpected", unexpected);
        summary.put("mismatches", mismatches);
        synchronized (problems) {
            summary.put("problems", new ArrayList<>(problems));
        }
        summary.put("elapsed_ms", (System.nanoTime() - started) / 1_000_000);
        System.out.println(json(summary));
        System.out.flush();
        // halt: the client's threads must not keep a failed run alive
        Runtime.getRuntime().halt(code);
    }

    // ---- the run ----------------------------------------------------------------------------
    public static void main(String[] args) {
        parseArgs(args);
        summary.put("ok", false);
        summary.put("client", "java");
        summary.put("client_version", AppInfoParser.getVersion());
        summary.put("bootstrap", bootstrap);
        summary.put("topic", topic);
        summary.put("partitions", partitions);
        summary.put("compression", compression);
        summary.put("consume", consumeMode);
        summary.put("count", count);

        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(timeoutSeconds * 1000L);
            } catch (InterruptedException e) {
                return;
            }
            problem("timed out after " + timeoutSeconds + " s in phase \"" + phase + "\"");
            summary.put("error", "timeout");
            finish(2);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();

        try {
            run();
            boolean ok;
            synchronized (seen) {
                ok = seen.size() == count && duplicates == 0 && unexpected == 0 && mismatches == 0;
            }
            synchronized (problems) {
                ok = ok && problems.isEmpty();
            }
            finish(ok ? 0 : 1);
        } catch (Throwable t) {
            Throwable cause = (t instanceof ExecutionException && t.getCause() != null) ? t.getCause() : t;
            summary.put("error", cause.getClass().getName() + ": " + cause.getMessage());
            problem("error in phase \"" + phase + "\": " + cause.getClass().getSimpleName() + ": " + cause.getMessage());
            t.printStackTrace();
            finish(3);
        }
    }

    static void run() throws Exception {
        long baseTimestamp = System.currentTimeMillis() - 60_000;
        for (int i = 0; i < count; i++) expected.add(new Expected(i, baseTimestamp));

        createTopic();
        produce();
        if (consumeMode.equals("assign")) consumeAssigned();
        else consumeGroup();
        phase = "done";
    }

    static void createTopic() throws Exception {
        phase = "create-topic";
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "strata-compat-java-admin");
        try (Admin admin = Admin.create(p)) {
            boolean created = true;
            try {
                admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) throw e;
                created = false;
            }
            summary.put("topic_created", created);
            // the new topic's metadata can lag its creation by a moment; wait for it
            long deadline = System.currentTimeMillis() + 15_000;
            while (true) {
                try {
                    TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic);
                    int n = d.partitions().size();
                    if (n != partitions) throw new IllegalStateException("topic " + topic + " has " + n + " partitions, expected " + partitions);
                    break;
                } catch (ExecutionException e) {
                    if (System.currentTimeMillis() > deadline) throw e;
                    Thread.sleep(200);
                }
            }
        }
    }

    static void produce() throws Exception {
        phase = "produce";
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "strata-compat-java-producer");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        if (!compression.equals("none")) p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        // everything else stays at the client's defaults (idempotence on, acks=all, ...)
        long t0 = System.nanoTime();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> futures = new ArrayList<>(count);
            for (Expected e : expected) {
                RecordHeaders headers = new RecordHeaders();
                headers.add("idx", Integer.toString(e.index).getBytes(StandardCharsets.UTF_8));
                headers.add("source", "java".getBytes(StandardCharsets.UTF_8));
                headers.add("bin", BINARY_HEADER);
                // partition left to the client's partitioner (murmur2 of the key)
                futures.add(producer.send(new ProducerRecord<>(topic, null, e.timestamp,
                        e.key.getBytes(StandardCharsets.UTF_8), e.value.getBytes(StandardCharsets.UTF_8), headers)));
            }
            producer.flush();
            Map<TopicPartition, List<Long>> offsetsByPartition = new HashMap<>();
            for (int i = 0; i < count; i++) {
                RecordMetadata md = futures.get(i).get(30, TimeUnit.SECONDS);
                Expected e = expected.get(i);
                e.partition = md.partition();
                e.offset = md.offset();
                if (!md.topic().equals(topic)) problem(e.key + ": ack names topic " + md.topic());
                if (md.offset() < 0) problem(e.key + ": ack has no offset (" + md.offset() + ")");
                if (md.timestamp() != e.timestamp) {
                    problem(e.key + ": ack timestamp " + md.timestamp() + " != " + e.timestamp);
                    mismatches++;
                }
                offsetsByPartition.computeIfAbsent(new TopicPartition(topic, md.partition()), k -> new ArrayList<>()).add(md.offset());
            }
            // per partition, acked offsets must be distinct (a fresh topic: 0..n-1, in send order)
            Map<String, Object> acked = new LinkedHashMap<>();
            for (Map.Entry<TopicPartition, List<Long>> en : offsetsByPartition.entrySet()) {
                List<Long> offs = en.getValue();
                for (int j = 1; j < offs.size(); j++) {
                    if (offs.get(j) <= offs.get(j - 1)) {
                        problem("partition " + en.getKey().partition() + ": acked offset " + offs.get(j) + " after " + offs.get(j - 1));
                        mismatches++;
                    }
                }
                acked.put(Integer.toString(en.getKey().partition()), offs.size());
            }
            summary.put("acked_per_partition", acked);
        }
        summary.put("produced", count);
        summary.put("produce_ms", (System.nanoTime() - t0) / 1_000_000);
    }

    static Properties consumerProps() {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "strata-compat-java-consumer");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        // small fetches, so a run of a few thousand messages takes several Fetch round trips
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, "65536");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "200");
        return p;
    }

    static List<TopicPartition> allPartitions(KafkaConsumer<byte[], byte[]> consumer) {
        List<TopicPartition> tps = new ArrayList<>();
        consumer.partitionsFor(topic, Duration.ofSeconds(15)).forEach(pi -> tps.add(new TopicPartition(topic, pi.partition())));
        tps.sort((a, b) -> Integer.compare(a.partition(), b.partition()));
        return tps;
    }

    static void checkEndOffsets(KafkaConsumer<byte[], byte[]> consumer, List<TopicPartition> tps) {
        phase = "list-offsets";
        Map<TopicPartition, Long> begin = consumer.beginningOffsets(tps, Duration.ofSeconds(15));
        Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(15));
        Map<String, Object> offsets = new LinkedHashMap<>();
        for (TopicPartition tp : tps) {
            long want = expected.stream().filter(e -> e.partition == tp.partition()).mapToLong(e -> e.offset + 1).max().orElse(0);
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("low", begin.get(tp));
            o.put("high", end.get(tp));
            offsets.put(Integer.toString(tp.partition()), o);
            if (end.get(tp) == null || end.get(tp) != want) {
                problem("partition " + tp.partition() + ": end offset " + end.get(tp) + ", expected " + want);
                mismatches++;
            }
            if (begin.get(tp) == null || begin.get(tp) != 0L) {
                problem("partition " + tp.partition() + ": beginning offset " + begin.get(tp) + ", expected 0");
                mismatches++;
            }
        }
        summary.put("offsets", offsets);
    }

    static Map<String, Expected> byKey() {
        Map<String, Expected> m = new HashMap<>();
        for (Expected e : expected) m.put(e.key, e);
        return m;
    }

    static void check(ConsumerRecord<byte[], byte[]> r, Map<String, Expected> byKey, Map<Integer, Long> lastOffset) {
        consumed++;
        if (!r.topic().equals(topic)) {
            unexpected++;
            problem("record from topic " + r.topic());
            return;
        }
        Long prev = lastOffset.get(r.partition());
        if (prev != null && r.offset() <= prev) problem("partition " + r.partition() + ": offset " + r.offset() + " after " + prev);
        lastOffset.put(r.partition(), r.offset());
        String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
        Expected e = key == null ? null : byKey.get(key);
        if (e == null) {
            unexpected++;
            problem("unexpected record at " + r.partition() + "/" + r.offset() + ": key " + key);
            return;
        }
        List<String> diffs = new ArrayList<>();
        if (r.partition() != e.partition) diffs.add("partition " + r.partition() + " != " + e.partition);
        if (r.offset() != e.offset) diffs.add("offset " + r.offset() + " != " + e.offset);
        String value = r.value() == null ? null : new String(r.value(), StandardCharsets.UTF_8);
        if (!e.value.equals(value)) diffs.add("value differs (" + (value == null ? "null" : value.length() + " bytes") + ")");
        if (r.timestamp() != e.timestamp) diffs.add("timestamp " + r.timestamp() + " != " + e.timestamp);
        if (!r.timestampType().name.equals("CreateTime")) diffs.add("timestamp type " + r.timestampType());
        Header[] hs = r.headers().toArray();
        if (hs.length != 3) {
            diffs.add(hs.length + " headers");
        } else {
            if (!"idx".equals(hs[0].key()) || !Integer.toString(e.index).equals(new String(hs[0].value(), StandardCharsets.UTF_8)))
                diffs.add("header 0 " + hs[0].key());
            if (!"source".equals(hs[1].key()) || !"java".equals(new String(hs[1].value(), StandardCharsets.UTF_8)))
                diffs.add("header 1 " + hs[1].key());
            if (!"bin".equals(hs[2].key()) || !Arrays.equals(BINARY_HEADER, hs[2].value()))
                diffs.add("header 2 " + hs[2].key());
        }
        if (!diffs.isEmpty()) {
            mismatches++;
            problem(e.key + ": " + String.join("; ", diffs));
        }
        synchronized (seen) {
            int n = seen.merge(e.key, 1, Integer::sum);
            if (n > 1) {
                duplicates++;
                problem(e.key + " consumed " + n + " times");
            }
        }
    }

    // poll until every message is in, then a little longer so a duplicate would show too
    static void pollAll(KafkaConsumer<byte[], byte[]> consumer) {
        phase = "consume";
        Map<String, Expected> byKey = byKey();
        Map<Integer, Long> lastOffset = new HashMap<>();
        long t0 = System.nanoTime();
        while (true) {
            int have;
            synchronized (seen) {
                have = seen.size();
            }
            if (have == count) break;
            ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(500));
            for (ConsumerRecord<byte[], byte[]> r : records) check(r, byKey, lastOffset);
        }
        summary.put("consume_ms", (System.nanoTime() - t0) / 1_000_000);
        phase = "consume-linger";
        long lingerUntil = System.nanoTime() + 1_500_000_000L;
        while (System.nanoTime() < lingerUntil) {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(300))) check(r, byKey, lastOffset);
        }
    }

    static void consumeAssigned() {
        phase = "consume-setup";
        Properties p = consumerProps();
        // no group.id: assign() and seek only, no group coordinator involved
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = allPartitions(consumer);
            if (tps.size() != partitions) throw new IllegalStateException("partitionsFor gave " + tps.size() + " partitions");
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            pollAll(consumer);
            checkEndOffsets(consumer, tps);
        }
    }

    static void consumeGroup() throws Exception {
        phase = "consume-setup";
        Properties p = consumerProps();
        String groupId = "strata-compat-java-" + topic + "-" + ProcessHandle.current().pid() + "-" + System.currentTimeMillis();
        summary.put("group_id", groupId);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
        summary.put("group_protocol", groupProtocol);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = allPartitions(consumer);
            consumer.subscribe(List.of(topic));
            pollAll(consumer);
            checkEndOffsets(consumer, tps);
            summary.put("assignment", consumer.assignment().size());
            if (consumer.assignment().size() != partitions) {
                problem("assignment has " + consumer.assignment().size() + " partitions, expected " + partitions);
            }
            phase = "commit";
            consumer.commitSync(Duration.ofSeconds(15));
            Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(new java.util.HashSet<>(tps), Duration.ofSeconds(15));
            for (TopicPartition tp : tps) {
                long want = expected.stream().filter(e -> e.partition == tp.partition()).mapToLong(e -> e.offset + 1).max().orElse(0);
                OffsetAndMetadata om = committed.get(tp);
                long got = om == null ? -1 : om.offset();
                // a partition that got no message has nothing to commit
                if (want > 0 && got != want) {
                    problem("partition " + tp.partition() + ": committed offset " + got + ", expected " + want);
                    mismatches++;
                }
            }
            describeGroup(groupId);
            phase = "leave-group";
        }
    }

    // while the consumer is still a member: how the Admin client sees the group (DescribeGroups for
    // a classic group, ConsumerGroupDescribe for a consumer-protocol one)
    static void describeGroup(String groupId) throws Exception {
        phase = "describe-group";
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "strata-compat-java-admin");
        try (Admin admin = Admin.create(p)) {
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(groupId)).describedGroups().get(groupId)
                    .get(15, TimeUnit.SECONDS);
            summary.put("group_type", d.type().name());
            summary.put("group_state", d.groupState().name());
            summary.put("group_members", d.members().size());
            List<Integer> assigned = new ArrayList<>();
            for (MemberDescription m : d.members()) {
                for (TopicPartition tp : m.assignment().topicPartitions()) assigned.add(tp.partition());
            }
            assigned.sort(null);
            summary.put("group_assignment", assigned);
        }
    }
}

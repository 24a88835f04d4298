// Apache Kafka Java client (kafka-clients 4.3.0): growing a topic and describing its
// partitions and log dirs against a Kafka-compatible broker (Strata). Used by
// compat-tests/test_partitions_admin.py.
//
//   java -cp 'lib/*:BUILD_DIR' PartitionsAdmin MODE --bootstrap HOST:PORT --topic T [options]
//
// admin  --topic T (an existing topic with 1 partition)
//     describeTopics (DescribeTopicPartitions on 4.x; once with the authorized operations),
//     createPartitions validateOnly to 3
//     (nothing changes), to 3, to 2 (refused), to 5 with an assignment naming broker 1
//     (refused) and naming broker 0 (accepted), describeLogDirs before and after producing
//     to partition 4. Records the partition counts, the errors' classes and messages and the
//     log dir's sizes.
//
// group  --topic T (an existing topic with 1 partition) --group-protocol classic|consumer
//     A consumer of a new group subscribes to T and waits for partition 0; a producer is
//     created; the Admin client grows T to 3 partitions; the producer writes one record to
//     partition 2 and the consumer must be assigned partitions 0-2 and read that record.
//
// Prints one JSON summary line on stdout (with "ok" and "problems"); the client's log goes
// to stderr. Exit status: 0 ok, 1 problems, 3 exception, 64 bad usage.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.CreatePartitionsOptions;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class PartitionsAdmin {

    static final Map<String, String> opts = new HashMap<>();
    static final Map<String, Object> summary = new LinkedHashMap<>();
    static final List<String> problems = new ArrayList<>();

    static String opt(String name) {
        String v = opts.get(name);
        if (v == null) usage("missing --" + name);
        return v;
    }

    static void usage(String why) {
        System.err.println("usage: PartitionsAdmin admin|group --bootstrap HOST:PORT --topic T: " + why);
        System.exit(64);
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, opt("bootstrap"));
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        return Admin.create(p);
    }

    static Map<String, Object> describe(Admin admin, String topic) throws Exception {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(20, TimeUnit.SECONDS).get(topic);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("partitions", d.partitions().size());
        out.put("internal", d.isInternal());
        out.put("topic_id", String.valueOf(d.topicId()));
        List<Object> leaders = new ArrayList<>();
        for (TopicPartitionInfo p : d.partitions()) {
            leaders.add(List.of(p.partition(), p.leader() == null ? -1 : p.leader().id(),
                                p.replicas().size(), p.isr().size()));
        }
        out.put("leaders", leaders);
        return out;
    }

    /** The failure of a createPartitions call: [exception class, message], or null on success. */
    static List<String> grow(Admin admin, String topic, NewPartitions np, boolean validateOnly) throws Exception {
        try {
            admin.createPartitions(Map.of(topic, np), new CreatePartitionsOptions().validateOnly(validateOnly))
                 .all().get(20, TimeUnit.SECONDS);
            return null;
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            return List.of(c.getClass().getSimpleName(), String.valueOf(c.getMessage()));
        }
    }

    static Map<String, Object> logDirs(Admin admin, String topic) throws Exception {
        Map<Integer, Map<String, LogDirDescription>> all =
            admin.describeLogDirs(List.of(0)).allDescriptions().get(20, TimeUnit.SECONDS);
        Map<String, Object> out = new LinkedHashMap<>();
        Map<String, LogDirDescription> dirs = all.getOrDefault(0, Map.of());
        out.put("dirs", dirs.size());
        for (Map.Entry<String, LogDirDescription> e : dirs.entrySet()) {
            LogDirDescription d = e.getValue();
            out.put("path", e.getKey());
            out.put("error", d.error() == null ? null : d.error().getClass().getSimpleName());
            out.put("total", d.totalBytes().orElse(-1));
            out.put("usable", d.usableBytes().orElse(-1));
            Map<String, Object> sizes = new TreeMap<>();
            for (Map.Entry<TopicPartition, ReplicaInfo> r : d.replicaInfos().entrySet()) {
                if (!r.getKey().topic().equals(topic)) continue;
                sizes.put(String.valueOf(r.getKey().partition()),
                          List.of(r.getValue().size(), r.getValue().offsetLag(), r.getValue().isFuture()));
            }
            out.put("sizes", sizes);
        }
        return out;
    }

    static KafkaProducer<byte[], byte[]> producer() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, opt("bootstrap"));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
        return new KafkaProducer<>(p);
    }

    static void adminMode() throws Exception {
        String topic = opt("topic");
        try (Admin admin = admin(); KafkaProducer<byte[], byte[]> producer = producer()) {
            summary.put("before", describe(admin, topic));
            TopicDescription withOps = admin.describeTopics(List.of(topic),
                    new DescribeTopicsOptions().includeAuthorizedOperations(true))
                .allTopicNames().get(20, TimeUnit.SECONDS).get(topic);
            Set<String> ops = new TreeSet<>();
            if (withOps.authorizedOperations() != null) {
                for (AclOperation op : withOps.authorizedOperations()) ops.add(op.name());
            }
            summary.put("operations", new ArrayList<>(ops));
            summary.put("validate_only", grow(admin, topic, NewPartitions.increaseTo(3), true));
            summary.put("after_validate_only", describe(admin, topic).get("partitions"));
            summary.put("grow", grow(admin, topic, NewPartitions.increaseTo(3), false));
            summary.put("after_grow", describe(admin, topic));
            summary.put("shrink", grow(admin, topic, NewPartitions.increaseTo(2), false));
            summary.put("same", grow(admin, topic, NewPartitions.increaseTo(3), false));
            summary.put("bad_assignment",
                grow(admin, topic, NewPartitions.increaseTo(5, List.of(List.of(1), List.of(0))), false));
            summary.put("good_assignment",
                grow(admin, topic, NewPartitions.increaseTo(5, List.of(List.of(0), List.of(0))), false));
            summary.put("after_assignment", describe(admin, topic).get("partitions"));
            summary.put("missing", grow(admin, topic + "-missing", NewPartitions.increaseTo(2), false));
            summary.put("log_dirs_before", logDirs(admin, topic));
            byte[] value = new byte[1000];
            for (int i = 0; i < 50; i++) {
                producer.send(new ProducerRecord<>(topic, 4, null, value)).get(20, TimeUnit.SECONDS);
            }
            summary.put("log_dirs_after", logDirs(admin, topic));
        }
    }

    static void groupMode() throws Exception {
        String topic = opt("topic");
        String protocol = opt("group-protocol");
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, opt("bootstrap"));
        c.put(ConsumerConfig.GROUP_ID_CONFIG, opt("group"));
        c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        // The classic protocol learns of new partitions from the leader's metadata refresh.
        c.put(ConsumerConfig.METADATA_MAX_AGE_CONFIG, "1000");
        try (Admin admin = admin(); KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c);
             KafkaProducer<byte[], byte[]> producer = producer()) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 30_000;
            while (consumer.assignment().isEmpty() && System.currentTimeMillis() < deadline) {
                consumer.poll(Duration.ofMillis(200));
            }
            summary.put("assigned_before", partitions(consumer.assignment()));
            producer.partitionsFor(topic);
            summary.put("grow", grow(admin, topic, NewPartitions.increaseTo(3), false));
            RecordMetadata md = producer.send(new ProducerRecord<>(topic, 2, null,
                "on-new-partition".getBytes(StandardCharsets.UTF_8))).get(20, TimeUnit.SECONDS);
            summary.put("produced", List.of(md.partition(), md.offset()));
            List<Object> read = new ArrayList<>();
            deadline = System.currentTimeMillis() + 45_000;
            while (read.isEmpty() && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    read.add(List.of(r.partition(), r.offset(), new String(r.value(), StandardCharsets.UTF_8)));
                }
            }
            summary.put("read", read);
            summary.put("assigned_after", partitions(consumer.assignment()));
        }
    }

    static List<Integer> partitions(Set<TopicPartition> tps) {
        Set<Integer> s = new TreeSet<>();
        for (TopicPartition tp : tps) s.add(tp.partition());
        return new ArrayList<>(s);
    }

    public static void main(String[] args) {
        if (args.length < 1) usage("no mode");
        String mode = args[0];
        for (int i = 1; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) usage("bad argument " + args[i]);
            opts.put(args[i].substring(2), args[++i]);
        }
        int code = 0;
        try {
            if (mode.equals("admin")) adminMode();
            else if (mode.equals("group")) groupMode();
            else usage("unknown mode " + mode);
        } catch (Exception e) {
            problems.add(e.toString());
            code = 3;
        }
        summary.put("problems", problems);
        summary.put("ok", problems.isEmpty());
        System.out.println(Json.json(summary));
        System.out.flush();
        System.exit(code);
    }
}

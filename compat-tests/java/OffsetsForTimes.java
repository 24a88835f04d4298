// Java client (kafka-clients 4.3.0): timestamp lookups inside one compressed batch.
//
//   java -cp 'lib/*:BUILD_DIR' OffsetsForTimes --bootstrap HOST:PORT --topic T
//        --compression gzip|snappy|lz4|zstd --count N --base-ts MS --max-at M --query K
//
// The topic must exist with one partition. Produces N records in one batch (one send per
// record, then flush; linger.ms keeps them together) with timestamps BASE + 10*i, except
// record M, which gets BASE + 1,000,000 (the largest). Then asks, for BASE + 10*K (K < M):
// the consumer's offsetsForTimes, the Admin client's listOffsets(forTimestamp), and
// listOffsets(maxTimestamp). Prints one line of JSON; exit status 0 unless an exception.

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class OffsetsForTimes {
    public static void main(String[] args) throws Exception {
        Map<String, String> opt = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            opt.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        }
        String bootstrap = opt.get("bootstrap");
        String topic = opt.get("topic");
        int count = Integer.parseInt(opt.get("count"));
        long base = Long.parseLong(opt.get("base-ts"));
        int maxAt = Integer.parseInt(opt.get("max-at"));
        int query = Integer.parseInt(opt.get("query"));
        TopicPartition tp = new TopicPartition(topic, 0);

        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, opt.get("compression"));
        p.put(ProducerConfig.LINGER_MS_CONFIG, "2000");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, "1000000");
        List<Long> offsets = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer =
                 new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                long ts = i == maxAt ? base + 1_000_000L : base + 10L * i;
                byte[] value = ("record " + i + " ").repeat(20).getBytes();
                sent.add(producer.send(new ProducerRecord<>(topic, 0, ts, ("k" + i).getBytes(), value)));
            }
            producer.flush();
            for (Future<RecordMetadata> f : sent) {
                offsets.add(f.get().offset());
            }
        }

        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        long consumerOffset;
        long consumerTs;
        try (KafkaConsumer<byte[], byte[]> consumer =
                 new KafkaConsumer<>(c, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            Map<TopicPartition, Long> q = new HashMap<>();
            q.put(tp, base + 10L * query);
            OffsetAndTimestamp found = consumer.offsetsForTimes(q, Duration.ofSeconds(30)).get(tp);
            consumerOffset = found == null ? -1 : found.offset();
            consumerTs = found == null ? -1 : found.timestamp();
        }

        Properties a = new Properties();
        a.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        long adminOffset;
        long maxOffset;
        long maxTs;
        try (Admin admin = Admin.create(a)) {
            Map<TopicPartition, OffsetSpec> q = new HashMap<>();
            q.put(tp, OffsetSpec.forTimestamp(base + 10L * query));
            ListOffsetsResult.ListOffsetsResultInfo r = admin.listOffsets(q).partitionResult(tp).get();
            adminOffset = r.offset();
            q.put(tp, OffsetSpec.maxTimestamp());
            ListOffsetsResult.ListOffsetsResultInfo m = admin.listOffsets(q).partitionResult(tp).get();
            maxOffset = m.offset();
            maxTs = m.timestamp();
        }
        System.out.println("{\"offsets\": " + offsets + ", \"consumer_offset\": " + consumerOffset
            + ", \"consumer_timestamp\": " + consumerTs + ", \"admin_offset\": " + adminOffset
            + ", \"max_offset\": " + maxOffset + ", \"max_timestamp\": " + maxTs + "}");
    }
}

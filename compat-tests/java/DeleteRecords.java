// Apache Kafka Java client (kafka-clients 4.3.0): the Admin client's deleteRecords() against a
// Kafka-compatible broker (Strata). Used by compat-tests/test_delete_records.py.
//
//   java -cp 'lib/*:BUILD_DIR' DeleteRecords --bootstrap HOST:PORT --topic T --partition P --offset O
//
// Deletes the records of T-P before offset O (-1: all of them, beforeOffset(-1)), then reads
// the partition's beginning and end offsets and its first record with a consumer
// (auto.offset.reset=earliest, manual assignment). Prints one JSON line: "low_watermark"
// (or "error", the exception's class name), "beginning", "end", "first_offset" (-1 when
// nothing was read). Exit status: 0 answered (also with an error), 3 exception, 64 bad usage.

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class DeleteRecords {
    public static void main(String[] args) throws Exception {
        String bootstrap = null, topic = null;
        int partition = 0;
        long offset = 0;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--bootstrap" -> bootstrap = args[i + 1];
                case "--topic" -> topic = args[i + 1];
                case "--partition" -> partition = Integer.parseInt(args[i + 1]);
                case "--offset" -> offset = Long.parseLong(args[i + 1]);
                default -> {
                    System.err.println("unknown option " + args[i]);
                    System.exit(64);
                }
            }
        }
        if (bootstrap == null || topic == null) {
            System.err.println("--bootstrap and --topic are required");
            System.exit(64);
        }
        TopicPartition tp = new TopicPartition(topic, partition);
        StringBuilder out = new StringBuilder("{");
        try {
            Properties props = new Properties();
            props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            try (Admin admin = Admin.create(props)) {
                try {
                    DeletedRecords deleted = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(offset)))
                            .lowWatermarks().get(tp).get(30, TimeUnit.SECONDS);
                    out.append("\"low_watermark\": ").append(deleted.lowWatermark());
                } catch (ExecutionException e) {
                    out.append("\"error\": \"").append(e.getCause().getClass().getSimpleName()).append("\"");
                }
            }
            Properties c = new Properties();
            c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
            c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
            try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
                List<TopicPartition> tps = List.of(tp);
                long beginning = consumer.beginningOffsets(tps).get(tp);
                long end = consumer.endOffsets(tps).get(tp);
                consumer.assign(tps);
                consumer.seekToBeginning(tps);
                long first = -1;
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                while (first < 0 && beginning < end && System.nanoTime() < deadline) {
                    ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(500));
                    if (!records.isEmpty()) {
                        first = records.iterator().next().offset();
                    }
                }
                out.append(", \"beginning\": ").append(beginning)
                        .append(", \"end\": ").append(end)
                        .append(", \"first_offset\": ").append(first);
            }
        } catch (Exception e) {
            e.printStackTrace();
            System.exit(3);
        }
        System.out.println(out.append("}"));
    }
}

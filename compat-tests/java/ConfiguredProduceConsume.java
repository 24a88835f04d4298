// Produces N messages to one partition with the Java client and reads them back, every
// client (admin, producer, consumer) configured from a properties file on top of the
// bootstrap address: security settings (security.protocol=SSL, ssl.truststore.*, ...) are
// what the tests change.
//
//   java -cp 'lib/*:BUILD_DIR' ConfiguredProduceConsume --bootstrap HOST:PORT --topic T
//        --count N --client-config FILE [--timeout SECONDS] [--group GROUP]
//
// With --group the consumer subscribes as a member of GROUP and commits what it read;
// otherwise it reads the partition with assign().
// Prints one JSON line: {"ok", "produced", "consumed", "error", "phase"}; exit status 0 when
// every message came back in order with its value.

import java.io.FileInputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class ConfiguredProduceConsume {
    static String bootstrap, topic, clientConfig, group;
    static int count = 0, timeoutSeconds = 60;
    static String phase = "start";

    static Properties props() throws Exception {
        Properties p = new Properties();
        try (FileInputStream in = new FileInputStream(clientConfig)) {
            p.load(in);
        }
        p.put("bootstrap.servers", bootstrap);
        return p;
    }

    public static void main(String[] args) {
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--bootstrap": bootstrap = args[i + 1]; break;
                case "--topic": topic = args[i + 1]; break;
                case "--count": count = Integer.parseInt(args[i + 1]); break;
                case "--client-config": clientConfig = args[i + 1]; break;
                case "--timeout": timeoutSeconds = Integer.parseInt(args[i + 1]); break;
                case "--group": group = args[i + 1]; break;
                default: System.err.println("unknown option " + args[i]); System.exit(2);
            }
        }
        if (bootstrap == null || topic == null || clientConfig == null || count < 1) {
            System.err.println("usage: ConfiguredProduceConsume --bootstrap HOST:PORT --topic T --count N --client-config FILE");
            System.exit(2);
        }
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(timeoutSeconds * 1000L);
            } catch (InterruptedException e) {
                return;
            }
            System.out.println(Json.json(Map.of("ok", false, "phase", phase, "error", "watchdog: no result in " + timeoutSeconds + "s")));
            System.out.flush();
            Runtime.getRuntime().halt(3);
        });
        watchdog.setDaemon(true);
        watchdog.start();
        Map<String, Object> summary = new LinkedHashMap<>();
        int consumed = 0;
        try {
            phase = "create-topic";
            try (Admin admin = Admin.create(props())) {
                admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
            }
            phase = "produce";
            Properties pp = props();
            pp.put("key.serializer", ByteArraySerializer.class.getName());
            pp.put("value.serializer", ByteArraySerializer.class.getName());
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
                List<Future<RecordMetadata>> acks = new ArrayList<>();
                for (int i = 0; i < count; i++) {
                    acks.add(producer.send(new ProducerRecord<>(topic, 0, null, ("value-" + i).getBytes(StandardCharsets.UTF_8))));
                }
                for (Future<RecordMetadata> f : acks) f.get(30, TimeUnit.SECONDS);
            }
            summary.put("produced", count);
            phase = "consume";
            Properties cp = props();
            cp.put("key.deserializer", ByteArrayDeserializer.class.getName());
            cp.put("value.deserializer", ByteArrayDeserializer.class.getName());
            if (group != null) {
                cp.put("group.id", group);
                cp.put("auto.offset.reset", "earliest");
                cp.put("enable.auto.commit", "false");
            }
            try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp)) {
                TopicPartition tp = new TopicPartition(topic, 0);
                if (group != null) {
                    consumer.subscribe(List.of(topic));
                } else {
                    consumer.assign(List.of(tp));
                    consumer.seekToBeginning(List.of(tp));
                }
                long deadline = System.currentTimeMillis() + 30_000;
                while (consumed < count && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                        String v = new String(r.value(), StandardCharsets.UTF_8);
                        if (r.offset() != consumed || !v.equals("value-" + consumed)) {
                            throw new IllegalStateException("offset " + r.offset() + " holds " + v + ", expected value-" + consumed);
                        }
                        consumed++;
                    }
                }
                if (group != null) {
                    phase = "commit";
                    consumer.commitSync(Duration.ofSeconds(30));
                }
            }
            phase = "done";
            summary.put("consumed", consumed);
            summary.put("ok", consumed == count);
        } catch (Exception e) {
            summary.put("ok", false);
            summary.put("consumed", consumed);
            summary.put("error", e.toString());
        }
        summary.put("phase", phase);
        System.out.println(Json.json(summary));
        System.out.flush();
        System.exit(Boolean.TRUE.equals(summary.get("ok")) ? 0 : 1);
    }
}

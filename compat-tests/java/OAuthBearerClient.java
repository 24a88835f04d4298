// The Apache Kafka Java client over SASL/OAUTHBEARER against a Kafka-compatible broker
// (Strata).
//
//   java -Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=file:TOKEN \
//        -cp 'lib/*:BUILD_DIR' OAuthBearerClient --bootstrap HOST:PORT --topic T --count N
//        [--property name=value ...]
//
// Every client (Admin, producer, consumer) uses security.protocol SASL_PLAINTEXT,
// sasl.mechanism OAUTHBEARER and the given properties on top (the login callback handler,
// the token endpoint, the JAAS config). Creates the topic (1 partition), produces N
// messages, reads them back with assign() + seekToBeginning().
//
// Prints one line of JSON on stdout: {"ok", "produced", "consumed", "error"}.
// Exit status: 0 all good, 1 fewer messages than produced, 3 error (the message in "error").

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class OAuthBearerClient {
    public static void main(String[] args) {
        Map<String, String> opt = new LinkedHashMap<>();
        Properties common = new Properties();
        common.put("security.protocol", "SASL_PLAINTEXT");
        common.put("sasl.mechanism", "OAUTHBEARER");
        common.put("request.timeout.ms", "15000");
        common.put("default.api.timeout.ms", "30000");
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (args[i].equals("--property")) {
                String kv = args[i + 1];
                int eq = kv.indexOf('=');
                common.put(kv.substring(0, eq), kv.substring(eq + 1));
            } else {
                opt.put(args[i].substring(2), args[i + 1]);
            }
        }
        common.put("bootstrap.servers", opt.get("bootstrap"));
        String topic = opt.get("topic");
        int count = Integer.parseInt(opt.getOrDefault("count", "10"));
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("ok", false);
        summary.put("produced", 0);
        summary.put("consumed", 0);
        int status = 0;
        try {
            try (Admin admin = Admin.create(common)) {
                try {
                    admin.createTopics(Collections.singletonList(new NewTopic(topic, 1, (short) 1))).all().get();
                } catch (java.util.concurrent.ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) throw e;
                }
            }
            Properties p = new Properties();
            p.putAll(common);
            p.put("key.serializer", StringSerializer.class.getName());
            p.put("value.serializer", StringSerializer.class.getName());
            int produced = 0;
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                List<Future<RecordMetadata>> acks = new ArrayList<>();
                for (int i = 0; i < count; i++) acks.add(producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
                for (Future<RecordMetadata> f : acks) { f.get(); produced++; }
            }
            summary.put("produced", produced);
            Properties c = new Properties();
            c.putAll(common);
            c.put("key.deserializer", StringDeserializer.class.getName());
            c.put("value.deserializer", StringDeserializer.class.getName());
            int consumed = 0;
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
                TopicPartition tp = new TopicPartition(topic, 0);
                consumer.assign(Collections.singletonList(tp));
                consumer.seekToBeginning(Collections.singletonList(tp));
                long deadline = System.currentTimeMillis() + 30_000;
                while (consumed < produced && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        if (r.value().equals("v" + consumed)) consumed++;
                    }
                }
            }
            summary.put("consumed", consumed);
            summary.put("ok", produced == count && consumed == count);
            if (consumed != count) status = 1;
        } catch (Exception e) {
            Throwable root = e;
            while (root.getCause() != null && root.getCause() != root) root = root.getCause();
            summary.put("error", root.getClass().getSimpleName() + ": " + root.getMessage());
            status = 3;
        }
        System.out.println(Json.json(summary));
        System.exit(status);
    }
}

// The Apache Kafka Java client over SASL against a Kafka-compatible broker (Strata).
//
//   java -cp 'lib/*:BUILD_DIR' SaslClient --bootstrap HOST:PORT --topic T --count N
//        --mechanism SCRAM-SHA-512|SCRAM-SHA-256|PLAIN --user U --password P
//        [--protocol SASL_PLAINTEXT|SASL_SSL] [--property name=value ...]
//
// Creates the topic (1 partition) with the Admin client, produces N messages with the
// producer's default settings, reads them back with assign() + seekToBeginning(). Every
// client logs in with the JAAS config built from --mechanism/--user/--password.
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

public final class SaslClient {
    public static void main(String[] args) {
        Map<String, String> opt = new LinkedHashMap<>();
        List<String> extra = new ArrayList<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (args[i].equals("--property")) extra.add(args[i + 1]);
            else opt.put(args[i].substring(2), args[i + 1]);
        }
        String mechanism = opt.getOrDefault("mechanism", "SCRAM-SHA-512");
        String module = mechanism.equals("PLAIN")
            ? "org.apache.kafka.common.security.plain.PlainLoginModule"
            : "org.apache.kafka.common.security.scram.ScramLoginModule";
        Properties common = new Properties();
        common.put("bootstrap.servers", opt.get("bootstrap"));
        common.put("security.protocol", opt.getOrDefault("protocol", "SASL_PLAINTEXT"));
        common.put("sasl.mechanism", mechanism);
        common.put("sasl.jaas.config", module + " required username=\"" + escape(opt.get("user"))
            + "\" password=\"" + escape(opt.get("password")) + "\";");
        common.put("request.timeout.ms", "15000");
        common.put("default.api.timeout.ms", "30000");
        for (String kv : extra) {
            int eq = kv.indexOf('=');
            common.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        String topic = opt.get("topic");
        int count = Integer.parseInt(opt.getOrDefault("count", "10"));
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("ok", false);
        summary.put("produced", 0);
        summary.put("consumed", 0);
        int code = 0;
        try {
            try (Admin admin = Admin.create(common)) {
                try {
                    admin.createTopics(Collections.singleton(new NewTopic(topic, 1, (short) 1))).all().get();
                } catch (java.util.concurrent.ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) throw e;
                }
            }
            Properties p = new Properties();
            p.putAll(common);
            p.put("key.serializer", StringSerializer.class.getName());
            p.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                List<Future<RecordMetadata>> acks = new ArrayList<>();
                for (int i = 0; i < count; i++) acks.add(producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
                for (Future<RecordMetadata> f : acks) f.get();
                summary.put("produced", count);
            }
            Properties c = new Properties();
            c.putAll(common);
            c.put("key.deserializer", StringDeserializer.class.getName());
            c.put("value.deserializer", StringDeserializer.class.getName());
            int consumed = 0;
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
                TopicPartition tp = new TopicPartition(topic, 0);
                consumer.assign(Collections.singleton(tp));
                consumer.seekToBeginning(Collections.singleton(tp));
                long deadline = System.currentTimeMillis() + 30_000;
                while (consumed < count && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        if (r.value().equals("v" + r.offset())) consumed++;
                    }
                }
            }
            summary.put("consumed", consumed);
            summary.put("ok", consumed == count);
            code = consumed == count ? 0 : 1;
        } catch (Exception e) {
            Throwable t = e;
            while (t.getCause() != null && t.getMessage() != null && !t.getClass().getName().contains("Authentication")) {
                t = t.getCause();
            }
            summary.put("error", t.getClass().getName() + ": " + t.getMessage());
            code = 3;
        }
        System.out.println(Json.json(summary));
        System.out.flush();
        System.exit(code);
    }

    private static String escape(String s) {
        return s.replace("\\", "\\\\").replace("\"", "\\\"");
    }
}

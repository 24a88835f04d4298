// One member of a consumer group, for the group-churn test (test_java.py): Apache Kafka Java
// client (kafka-clients 4.3.0) against a Kafka-compatible broker (Strata).
//
//   java -cp 'lib/*:BUILD_DIR' GroupMember --bootstrap HOST:PORT --topic T --group G
//        [--group-protocol classic|consumer] [--name NAME] [--timeout SECONDS]
//
// subscribe()s to T in group G (group.protocol as given, default classic; enable.auto.commit=false,
// auto.offset.reset=earliest) and polls until SIGTERM. Every message it processes is one line of
// JSON on stdout: {"p":PARTITION,"o":OFFSET,"v":"VALUE"}. It commits what it processed
// synchronously in onPartitionsRevoked (so the next owner starts right after) and when it closes.
// Everything else is a JSON line with an "event" field: started, assigned, revoked, lost, commit,
// commit-failed, stopping, closed, error; "assignment" in an event lists the partitions it owns
// from then on.
//
// SIGTERM: a shutdown hook calls wakeup(); the poll loop ends, commits, close()s the consumer
// (which leaves the group) and prints {"event":"closed"}; then the hook ends the JVM with status 0
// (3 if something failed, 4 if closing hung). The client's log goes to stderr (log4j2.properties).
// Exit status 2: the --timeout watchdog fired; 64: bad usage.

import java.io.BufferedOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.utils.AppInfoParser;

public class GroupMember {

    static String bootstrap, topic, group, name = "member";
    static String groupProtocol = "classic";
    static int timeoutSeconds = 150;

    static final PrintStream out = new PrintStream(
            new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16), false, StandardCharsets.UTF_8);
    static KafkaConsumer<byte[], byte[]> consumer;
    // next offset to process, per partition owned now (what a commit of "everything processed" sends)
    static final Map<TopicPartition, Long> processed = new HashMap<>();
    static final TreeSet<Integer> owned = new TreeSet<>();
    static volatile boolean stopping = false;
    static final CountDownLatch done = new CountDownLatch(1);
    static volatile int exitCode = 3;
    static long records = 0;

    static void usage(String msg) {
        System.err.println("GroupMember: " + msg);
        System.err.println("usage: GroupMember --bootstrap HOST:PORT --topic T --group G"
                + " [--group-protocol classic|consumer] [--name NAME] [--timeout SECONDS]");
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
                case "--group": group = v; break;
                case "--group-protocol": groupProtocol = v; break;
                case "--name": name = v; break;
                case "--timeout": timeoutSeconds = Integer.parseInt(v); break;
                default: usage("unknown option " + a);
            }
        }
        if (bootstrap == null || topic == null || group == null) usage("--bootstrap, --topic and --group are needed");
        if (!groupProtocol.equals("classic") && !groupProtocol.equals("consumer")) usage("bad --group-protocol " + groupProtocol);
        if (timeoutSeconds < 1) usage("--timeout must be >= 1");
    }

    // ---- JSON lines on stdout ---------------------------------------------------------------
    static String str(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') sb.append('\\').append(c);
            else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
            else sb.append(c);
        }
        return sb.append('"').toString();
    }

    static String partitions(Collection<TopicPartition> tps) {
        TreeSet<Integer> ps = new TreeSet<>();
        for (TopicPartition tp : tps) ps.add(tp.partition());
        return ps.toString().replace(" ", "");
    }

    static String offsets(Map<TopicPartition, OffsetAndMetadata> offs) {
        StringBuilder sb = new StringBuilder("{");
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) {
            if (sb.length() > 1) sb.append(',');
            sb.append('"').append(e.getKey().partition()).append("\":").append(e.getValue().offset());
        }
        return sb.append('}').toString();
    }

    /** One event line; `fields` is the rest of the JSON object (starting with a comma) or "". */
    static void event(String kind, String fields) {
        synchronized (out) {
            out.println("{\"event\":" + str(kind) + ",\"name\":" + str(name) + ",\"t\":" + System.currentTimeMillis() + fields + "}");
            out.flush();
        }
    }

    static String assignmentField() {
        return ",\"assignment\":" + owned.toString().replace(" ", "");
    }

    static String error(Throwable t) {
        return t.getClass().getSimpleName() + ": " + t.getMessage();
    }

    // ---- commits ------------------------------------------------------------------------------
    /** commitSync of what was processed in `tps`; a wakeup() that lands here is retried. */
    static void commit(Collection<TopicPartition> tps, String why) {
        Map<TopicPartition, OffsetAndMetadata> offs = new LinkedHashMap<>();
        for (TopicPartition tp : tps) {
            Long next = processed.get(tp);
            if (next != null) offs.put(tp, new OffsetAndMetadata(next));
        }
        if (offs.isEmpty()) return;
        for (int attempt = 1; ; attempt++) {
            try {
                consumer.commitSync(offs, Duration.ofSeconds(15));
                event("commit", ",\"why\":" + str(why) + ",\"offsets\":" + offsets(offs));
                return;
            } catch (WakeupException e) {
                // the shutdown hook's wakeup() hit this commit instead of poll(): commit anyway
                if (attempt >= 3) throw e;
            } catch (RuntimeException e) {
                event("commit-failed", ",\"why\":" + str(why) + ",\"offsets\":" + offsets(offs) + ",\"error\":" + str(error(e)));
                return;
            }
        }
    }

    static final ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            commit(partitions, "revoke");
            for (TopicPartition tp : partitions) {
                owned.remove(tp.partition());
                processed.remove(tp);
            }
            event("revoked", ",\"partitions\":" + partitions(partitions) + assignmentField());
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            for (TopicPartition tp : partitions) owned.add(tp.partition());
            event("assigned", ",\"partitions\":" + partitions(partitions) + assignmentField());
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            // the group moved on without us: a commit would be refused, the next owner re-reads
            for (TopicPartition tp : partitions) {
                owned.remove(tp.partition());
                processed.remove(tp);
            }
            event("lost", ",\"partitions\":" + partitions(partitions) + assignmentField());
        }
    };

    // ---- the run ----------------------------------------------------------------------------
    public static void main(String[] args) {
        parseArgs(args);
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "strata-compat-java-" + name);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "200");
        if (groupProtocol.equals("classic")) {
            // a rebalance is noticed within a heartbeat; the consumer protocol takes both from the broker
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        }

        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(timeoutSeconds * 1000L);
            } catch (InterruptedException e) {
                return;
            }
            event("error", ",\"error\":" + str("timed out after " + timeoutSeconds + " s"));
            Runtime.getRuntime().halt(2);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();

        try {
            consumer = new KafkaConsumer<>(p);
        } catch (RuntimeException e) {
            event("error", ",\"error\":" + str(error(e)));
            Runtime.getRuntime().halt(3);
        }
        event("started", ",\"client_version\":" + str(AppInfoParser.getVersion()) + ",\"group_protocol\":" + str(groupProtocol)
                + ",\"pid\":" + ProcessHandle.current().pid() + assignmentField());

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stopping = true;
            consumer.wakeup();
            boolean finished = false;
            try {
                finished = done.await(40, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                // fall through
            }
            if (!finished) event("error", ",\"error\":\"closing took more than 40 s\"");
            synchronized (out) {
                out.flush();
            }
            Runtime.getRuntime().halt(finished ? exitCode : 4);
        }, "shutdown"));

        try {
            consumer.subscribe(List.of(topic), listener);
            while (!stopping) {
                ConsumerRecords<byte[], byte[]> batch;
                try {
                    batch = consumer.poll(Duration.ofMillis(200));
                } catch (WakeupException e) {
                    break;
                }
                synchronized (out) {
                    for (ConsumerRecord<byte[], byte[]> r : batch) {
                        // "processing" a message is writing it down
                        String value = r.value() == null ? "" : new String(r.value(), StandardCharsets.UTF_8);
                        out.println("{\"p\":" + r.partition() + ",\"o\":" + r.offset() + ",\"v\":" + str(value) + "}");
                        processed.put(new TopicPartition(r.topic(), r.partition()), r.offset() + 1);
                        records++;
                    }
                    out.flush();
                }
            }
            event("stopping", ",\"records\":" + records + assignmentField());
            List<TopicPartition> mine = new ArrayList<>(processed.keySet());
            commit(mine, "close");
            // close() leaves the group; it calls onPartitionsRevoked first (which commits again)
            consumer.close(CloseOptions.timeout(Duration.ofSeconds(20)));
            owned.clear();
            event("closed", ",\"records\":" + records + assignmentField());
            exitCode = 0;
        } catch (Throwable t) {
            event("error", ",\"error\":" + str(error(t)));
            t.printStackTrace();
            exitCode = 3;
        } finally {
            synchronized (out) {
                out.flush();
            }
            done.countDown();
        }
        // without SIGTERM the loop only ends by an exception; with it, the shutdown hook halts
        if (!stopping) Runtime.getRuntime().halt(exitCode);
    }
}

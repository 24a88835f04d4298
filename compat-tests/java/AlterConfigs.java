// Apache Kafka Java client (kafka-clients 4.3.0): the Admin client's incrementalAlterConfigs()
// and describeConfigs() against a Kafka-compatible broker (Strata). Used by
// compat-tests/test_alter_configs.py.
//
//   java -cp 'lib/*:BUILD_DIR' AlterConfigs --bootstrap HOST:PORT --topic T --group G
//
// Creates topic T, then: SET / APPEND / SUBTRACT / DELETE on its configs and reads each change
// back; validateOnly changes nothing; a bad value is InvalidConfigurationException naming the
// key; the cluster-wide default (BROKER "") and this broker's own value (BROKER "0") change
// the topic's retention.ms, with DescribeConfigs' sources and synonyms in Kafka's order; a
// read-only broker config is InvalidRequestException; a group's consumer.heartbeat.interval.ms
// is GROUP_CONFIG, and one below the broker's bound is refused.
//
// Prints one JSON line on stdout: {"ok": bool, "problems": [...], "steps": n}. Exit status:
// 0 ok, 1 problems, 3 exception, 64 bad usage.

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterConfigsOptions;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidRequestException;

public class AlterConfigs {
    static final List<String> problems = new ArrayList<>();
    static int steps = 0;
    static Admin admin;

    static void check(boolean ok, String what) {
        steps++;
        if (!ok) problems.add(what);
    }

    static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') sb.append('\\').append(c);
            else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
            else sb.append(c);
        }
        return sb.append('"').toString();
    }

    static void alter(ConfigResource r, boolean validateOnly, AlterConfigOp... ops) throws Exception {
        Map<ConfigResource, Collection<AlterConfigOp>> m = new HashMap<>();
        m.put(r, List.of(ops));
        admin.incrementalAlterConfigs(m, new AlterConfigsOptions().validateOnly(validateOnly))
            .all().get(20, TimeUnit.SECONDS);
    }

    static AlterConfigOp op(String name, String value, AlterConfigOp.OpType type) {
        return new AlterConfigOp(new ConfigEntry(name, value), type);
    }

    /** The failure of an alter, or null when it succeeded. */
    static Throwable refusal(ConfigResource r, AlterConfigOp... ops) throws Exception {
        try {
            alter(r, false, ops);
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        }
    }

    static Config describe(ConfigResource r) throws Exception {
        return admin.describeConfigs(List.of(r), new DescribeConfigsOptions().includeSynonyms(true))
            .all().get(20, TimeUnit.SECONDS).get(r);
    }

    static String describeEntry(ConfigEntry e) {
        return e == null ? "missing" : e.name() + "=" + e.value() + " " + e.source() + " " + e.synonyms();
    }

    public static void main(String[] args) {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) opts.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        String bootstrap = opts.get("bootstrap"), topic = opts.get("topic"), group = opts.get("group");
        if (bootstrap == null || topic == null || group == null) {
            System.err.println("usage: AlterConfigs --bootstrap HOST:PORT --topic T --group G");
            System.exit(64);
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "strata-compat-java-admin");
        try (Admin a = Admin.create(p)) {
            admin = a;
            run(topic, group);
        } catch (Exception e) {
            e.printStackTrace();
            problems.add("exception: " + e);
            System.out.println("{\"ok\": false, \"problems\": [" + quote(String.valueOf(e)) + "], \"steps\": " + steps + "}");
            System.exit(3);
        }
        StringBuilder sb = new StringBuilder("{\"ok\": ").append(problems.isEmpty()).append(", \"problems\": [");
        for (int i = 0; i < problems.size(); i++) sb.append(i > 0 ? ", " : "").append(quote(problems.get(i)));
        sb.append("], \"steps\": ").append(steps).append("}");
        System.out.println(sb);
        System.exit(problems.isEmpty() ? 0 : 1);
    }

    static void run(String topic, String group) throws Exception {
        admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(20, TimeUnit.SECONDS);
        ConfigResource t = new ConfigResource(ConfigResource.Type.TOPIC, topic);

        alter(t, false, op("retention.ms", "3600000", AlterConfigOp.OpType.SET),
            op("cleanup.policy", "compact", AlterConfigOp.OpType.APPEND));
        Config c = describe(t);
        ConfigEntry ret = c.get("retention.ms");
        check(ret != null && "3600000".equals(ret.value()) && ret.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
            "SET retention.ms: " + describeEntry(ret));
        check("delete,compact".equals(c.get("cleanup.policy").value()), "APPEND cleanup.policy: " + describeEntry(c.get("cleanup.policy")));

        alter(t, false, op("cleanup.policy", "delete", AlterConfigOp.OpType.SUBTRACT),
            op("retention.ms", null, AlterConfigOp.OpType.DELETE));
        c = describe(t);
        check("compact".equals(c.get("cleanup.policy").value()), "SUBTRACT cleanup.policy: " + describeEntry(c.get("cleanup.policy")));
        check(c.get("retention.ms").source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG,
            "DELETE retention.ms: " + describeEntry(c.get("retention.ms")));

        alter(t, true, op("segment.ms", "1000", AlterConfigOp.OpType.SET));
        check(!"1000".equals(describe(t).get("segment.ms").value()), "validateOnly changed segment.ms");

        Throwable bad = refusal(t, op("cleanup.policy", "forever", AlterConfigOp.OpType.SET));
        check(bad instanceof InvalidConfigurationException && bad.getMessage().contains("cleanup.policy"),
            "bad cleanup.policy: " + bad);
        bad = refusal(t, op("max.message.bytes", "-3", AlterConfigOp.OpType.SET));
        check(bad instanceof InvalidConfigurationException && bad.getMessage().contains("max.message.bytes"),
            "negative max.message.bytes: " + bad);

        // The cluster-wide default, then this broker's own value on top of it.
        ConfigResource cluster = new ConfigResource(ConfigResource.Type.BROKER, "");
        ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, "0");
        alter(cluster, false, op("log.retention.ms", "7200000", AlterConfigOp.OpType.SET));
        Config defaults = describe(cluster);
        check(defaults.entries().size() == 1, "the cluster default lists only what was set: " + defaults.entries());
        ConfigEntry d = defaults.get("log.retention.ms");
        check(d != null && "7200000".equals(d.value()) && d.source() == ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
            "cluster default: " + describeEntry(d));
        alter(broker, false, op("log.retention.ms", "10800000", AlterConfigOp.OpType.SET));
        ret = describe(t).get("retention.ms");
        List<ConfigEntry.ConfigSource> sources = new ArrayList<>();
        for (ConfigEntry.ConfigSynonym s : ret.synonyms()) sources.add(s.source());
        check("10800000".equals(ret.value()) && ret.source() == ConfigEntry.ConfigSource.DYNAMIC_BROKER_CONFIG,
            "broker value on the topic: " + describeEntry(ret));
        check(sources.equals(List.of(ConfigEntry.ConfigSource.DYNAMIC_BROKER_CONFIG,
                ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, ConfigEntry.ConfigSource.DEFAULT_CONFIG)),
            "synonym order: " + ret.synonyms());
        bad = refusal(broker, op("num.partitions", "3", AlterConfigOp.OpType.SET));
        check(bad instanceof InvalidRequestException && bad.getMessage().contains("num.partitions"),
            "read-only broker config: " + bad);
        alter(broker, false, op("log.retention.ms", null, AlterConfigOp.OpType.DELETE));
        alter(cluster, false, op("log.retention.ms", null, AlterConfigOp.OpType.DELETE));
        check(describe(t).get("retention.ms").source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG,
            "after deleting both: " + describeEntry(describe(t).get("retention.ms")));
        check(describe(cluster).entries().isEmpty(), "cluster default empty again");

        // A group's own config (KIP-848).
        ConfigResource g = new ConfigResource(ConfigResource.Type.GROUP, group);
        alter(g, false, op("consumer.heartbeat.interval.ms", "6000", AlterConfigOp.OpType.SET));
        ConfigEntry hb = describe(g).get("consumer.heartbeat.interval.ms");
        check(hb != null && "6000".equals(hb.value()) && hb.source() == ConfigEntry.ConfigSource.DYNAMIC_GROUP_CONFIG,
            "group heartbeat interval: " + describeEntry(hb));
        bad = refusal(g, op("consumer.session.timeout.ms", "1000", AlterConfigOp.OpType.SET));
        check(bad instanceof InvalidConfigurationException && bad.getMessage().contains("consumer.session.timeout.ms"),
            "session timeout below the broker's minimum: " + bad);
    }
}

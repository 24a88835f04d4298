import org.apache.kafka.common.utils.Time;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.connect.connector.policy.ConnectorClientConfigOverridePolicy;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.runtime.Herder;
import org.apache.kafka.connect.runtime.Worker;
import org.apache.kafka.connect.runtime.WorkerConfig;
import org.apache.kafka.connect.runtime.distributed.DistributedConfig;
import org.apache.kafka.connect.runtime.distributed.DistributedHerder;
import org.apache.kafka.connect.runtime.isolation.LoaderSwap;
import org.apache.kafka.connect.runtime.isolation.Plugins;
import org.apache.kafka.connect.runtime.rest.entities.ConnectorInfo;
import org.apache.kafka.connect.runtime.rest.entities.ConnectorStateInfo;
import org.apache.kafka.connect.storage.Converter;
import org.apache.kafka.connect.storage.KafkaConfigBackingStore;
import org.apache.kafka.connect.storage.KafkaOffsetBackingStore;
import org.apache.kafka.connect.storage.KafkaStatusBackingStore;
import org.apache.kafka.connect.util.ConnectUtils;
import org.apache.kafka.connect.util.FutureCallback;
import org.apache.kafka.connect.util.SharedTopicAdmin;

import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A Kafka Connect worker in distributed mode without its REST server: the herder, worker and
 * Kafka-backed config/offset/status stores are built as ConnectDistributed builds them.
 *
 * Usage: ConnectWorker worker.properties [connector.properties ...]
 *
 * Each connector file (with a "name" key) is submitted through the herder's
 * putConnectorConfig, as a REST PUT /connectors/NAME/config would. The program prints
 * "CONNECTOR name STATE tasks=[...]" lines once all connectors run, then runs until
 * SIGTERM or stdin closes, and stops the herder cleanly.
 */
public class ConnectWorker {
    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: ConnectWorker worker.properties [connector.properties ...]");
            System.exit(1);
        }
        Map<String, String> workerProps = Utils.propsToStringMap(Utils.loadProps(args[0]));
        Plugins plugins = new Plugins(workerProps);
        DistributedHerder herder;
        try (LoaderSwap swap = plugins.withClassLoader(plugins.delegatingLoader())) {
            DistributedConfig config = new DistributedConfig(workerProps);
            String clusterId = config.kafkaClusterId();
            String workerId = "strata-compat-worker:" + ProcessHandle.current().pid();
            ConnectorClientConfigOverridePolicy policy = plugins.newPlugin(
                    config.getString(WorkerConfig.CONNECTOR_CLIENT_POLICY_CLASS_CONFIG),
                    config, ConnectorClientConfigOverridePolicy.class);

            String clientIdBase = ConnectUtils.clientIdBase(config);
            Map<String, Object> adminProps = new HashMap<>(config.originals());
            ConnectUtils.addMetricsContextProperties(adminProps, config, clusterId);
            adminProps.put("client.id", clientIdBase + "shared-admin");
            SharedTopicAdmin sharedAdmin = new SharedTopicAdmin(adminProps);

            KafkaOffsetBackingStore offsets = new KafkaOffsetBackingStore(sharedAdmin, () -> clientIdBase,
                    plugins.newInternalConverter(true, JsonConverter.class.getName(),
                            Map.of("schemas.enable", "false")));
            offsets.configure(config);
            Worker worker = new Worker(workerId, Time.SYSTEM, plugins, config, offsets, policy);
            Converter internal = worker.getInternalValueConverter();
            KafkaStatusBackingStore status = new KafkaStatusBackingStore(Time.SYSTEM, internal, sharedAdmin, clientIdBase);
            status.configure(config);
            KafkaConfigBackingStore configs = new KafkaConfigBackingStore(internal, config,
                    worker.configTransformer(), sharedAdmin, clientIdBase);
            // No REST server: the URL is only what other workers would forward requests to.
            herder = new DistributedHerder(config, Time.SYSTEM, worker, clusterId, status, configs,
                    "http://127.0.0.1:1/", null, policy, java.util.List.of(), sharedAdmin);
        }
        herder.start();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            herder.stop();
            stopped.countDown();
        }));

        for (int i = 1; i < args.length; i++) {
            Map<String, String> props = Utils.propsToStringMap(Utils.loadProps(args[i]));
            String name = props.get("name");
            FutureCallback<Herder.Created<ConnectorInfo>> cb = new FutureCallback<>();
            herder.putConnectorConfig(name, props, true, cb);
            Herder.Created<ConnectorInfo> created = cb.get(60, TimeUnit.SECONDS);
            System.out.println("PUT " + name + " created=" + created.created());
        }
        // Report once every connector (submitted now or restored from the config topic) runs.
        long deadline = System.currentTimeMillis() + 60_000;
        while (System.currentTimeMillis() < deadline) {
            FutureCallback<java.util.Collection<String>> names = new FutureCallback<>();
            herder.connectors(names);
            java.util.Collection<String> all;
            try {
                all = names.get(10, TimeUnit.SECONDS);
            } catch (Exception e) {
                Thread.sleep(200);
                continue;
            }
            StringBuilder report = new StringBuilder();
            boolean running = !all.isEmpty();
            for (String name : all) {
                ConnectorStateInfo s;
                try {
                    s = herder.connectorStatus(name);
                } catch (Exception e) {
                    running = false;
                    break;
                }
                boolean tasksUp = !s.tasks().isEmpty()
                        && s.tasks().stream().allMatch(t -> t.state().equals("RUNNING"));
                running &= s.connector().state().equals("RUNNING") && tasksUp;
                report.append("CONNECTOR ").append(name).append(' ').append(s.connector().state())
                        .append(" tasks=").append(s.tasks().stream().map(t -> t.state()).toList()).append('\n');
            }
            if (running) {
                System.out.print(report);
                System.out.println("READY");
                System.out.flush();
                break;
            }
            Thread.sleep(200);
        }
        // Run until stdin closes (the test's handle) or SIGTERM.
        Thread stdin = new Thread(() -> {
            try {
                while (System.in.read() >= 0) { }
            } catch (Exception ignored) { }
            System.exit(0);
        });
        stdin.setDaemon(true);
        stdin.start();
        stopped.await();
    }
}

// Apache Kafka Java client (kafka-clients 4.3.0): the Admin ACL calls kafka-acls.sh makes,
// against a Kafka-compatible broker (Strata) run with an authorizer. Used by
// compat-tests/test_acls.py.
//
//   java -cp 'lib/*:BUILD_DIR' AclsAdmin --bootstrap HOST:PORT --principal User:NAME
//
// Creates ALLOW READ on the prefix "java-" and DENY WRITE on the literal topic "java-secret"
// for the principal, plus one invalid binding (a CLUSTER resource not named kafka-cluster);
// describes everything for the principal and the bindings that MATCH the topic
// "java-orders"; deletes the DENY and records what each step answered, with the error class
// of the invalid creation.
//
// Prints one JSON summary line on stdout (with "ok" and "problems"); the client's log goes
// to stderr. Exit status: 0 ok, 1 problems, 3 exception, 64 bad usage.

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.CreateAclsResult;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;

public class AclsAdmin {

    static final Map<String, String> opts = new HashMap<>();
    static final Map<String, Object> summary = new LinkedHashMap<>();
    static final List<String> problems = new ArrayList<>();

    static String opt(String name) {
        String v = opts.get(name);
        if (v == null) {
            System.err.println("usage: AclsAdmin --bootstrap HOST:PORT --principal User:NAME: missing --" + name);
            System.exit(64);
        }
        return v;
    }

    /** "TYPE:PATTERN:name principal host OPERATION PERMISSION", sorted, for comparisons. */
    static List<String> show(java.util.Collection<AclBinding> bindings) {
        TreeSet<String> out = new TreeSet<>();
        for (AclBinding b : bindings) {
            out.add(b.pattern().resourceType() + ":" + b.pattern().patternType() + ":" + b.pattern().name() + " "
                    + b.entry().principal() + " " + b.entry().host() + " " + b.entry().operation() + " "
                    + b.entry().permissionType());
        }
        return new ArrayList<>(out);
    }

    public static void main(String[] args) {
        for (int i = 0; i + 1 < args.length; i += 2) opts.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        String principal = opt("principal");
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, opt("bootstrap"));
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        int status = 0;
        try (Admin admin = Admin.create(p)) {
            AclBinding read = new AclBinding(new ResourcePattern(ResourceType.TOPIC, "java-", PatternType.PREFIXED),
                new AccessControlEntry(principal, "*", AclOperation.READ, AclPermissionType.ALLOW));
            AclBinding deny = new AclBinding(new ResourcePattern(ResourceType.TOPIC, "java-secret", PatternType.LITERAL),
                new AccessControlEntry(principal, "*", AclOperation.WRITE, AclPermissionType.DENY));
            AclBinding invalid = new AclBinding(new ResourcePattern(ResourceType.CLUSTER, "not-the-cluster",
                PatternType.LITERAL), new AccessControlEntry(principal, "*", AclOperation.ALTER, AclPermissionType.ALLOW));
            CreateAclsResult created = admin.createAcls(List.of(read, deny, invalid));
            created.values().get(read).get(20, TimeUnit.SECONDS);
            created.values().get(deny).get(20, TimeUnit.SECONDS);
            try {
                created.values().get(invalid).get(20, TimeUnit.SECONDS);
                summary.put("invalid", null);
            } catch (ExecutionException e) {
                summary.put("invalid", List.of(e.getCause().getClass().getSimpleName(),
                                               String.valueOf(e.getCause().getMessage())));
            }
            AclBindingFilter mine = new AclBindingFilter(ResourcePatternFilter.ANY,
                new AccessControlEntryFilter(principal, null, AclOperation.ANY, AclPermissionType.ANY));
            summary.put("mine", show(admin.describeAcls(mine).values().get(20, TimeUnit.SECONDS)));
            AclBindingFilter match = new AclBindingFilter(
                new ResourcePatternFilter(ResourceType.TOPIC, "java-orders", PatternType.MATCH),
                AccessControlEntryFilter.ANY);
            summary.put("match", show(admin.describeAcls(match).values().get(20, TimeUnit.SECONDS)));
            summary.put("deleted", show(admin.deleteAcls(List.of(deny.toFilter())).all().get(20, TimeUnit.SECONDS)));
            summary.put("after", show(admin.describeAcls(mine).values().get(20, TimeUnit.SECONDS)));
        } catch (Exception e) {
            problems.add("exception: " + e);
            e.printStackTrace();
            status = 3;
        }
        summary.put("ok", problems.isEmpty());
        summary.put("problems", problems);
        System.out.println(Json.json(summary));
        System.exit(status != 0 ? status : problems.isEmpty() ? 0 : 1);
    }
}

// Creates ACLs through Kafka's public Admin API in one JVM (aiokafka has no ACL calls).
// Run in source-file mode: java -cp '<libs>/*' SecurityAdmin.java client.properties acls.tsv
// Each line of acls.tsv: principal, resource type, pattern type, resource name, operation.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class SecurityAdmin {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (var in = Files.newInputStream(Path.of(args[0]))) {
            props.load(in);
        }
        List<AclBinding> acls = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(args[1]))) {
            if (line.isBlank()) {
                continue;
            }
            String[] f = line.split("\t");
            ResourcePattern pattern = new ResourcePattern(
                    ResourceType.fromString(f[1]), f[3], PatternType.fromString(f[2]));
            AccessControlEntry entry = new AccessControlEntry(
                    f[0], "*", AclOperation.fromString(f[4]), AclPermissionType.ALLOW);
            acls.add(new AclBinding(pattern, entry));
        }
        try (Admin admin = Admin.create(props)) {
            admin.createAcls(acls).all().get();
        }
        System.out.println("created " + acls.size() + " ACLs");
    }
}

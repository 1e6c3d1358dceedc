package graphrisk.neo4jlocal;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.QueryExecutionException;
import org.neo4j.io.ByteUnit;

/**
 * graphrisk's local Neo4j: Neo4j 5 (community) in this JVM, serving Bolt only.
 *
 * <p>Usage: {@code Main --home DIR --bolt-port P [--database NAME] [--user NAME] [--auth none|password]
 * [--plugins DIR] [--pagecache 256m]}. With {@code --auth password} the password is read from the
 * environment variable {@code GRAPHRISK_LOCAL_SERVER_PASSWORD}, so it never shows in {@code ps}.
 * Prints {@code READY bolt://127.0.0.1:P} once Bolt accepts connections; SIGTERM or SIGINT shut the
 * database down cleanly (a shutdown hook) before the JVM exits.
 */
public final class Main {
    static final String PASSWORD_ENV = "GRAPHRISK_LOCAL_SERVER_PASSWORD";

    private Main() {}

    public static void main(String[] argv) throws Exception {
        Args args = Args.parse(argv);
        Files.createDirectories(args.home);

        DatabaseManagementServiceBuilder builder = new DatabaseManagementServiceBuilder(args.home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", args.boltPort))
                .setConfig(HttpConnector.enabled, false)
                .setConfig(HttpsConnector.enabled, false)
                // Community edition holds one user database: it takes the configured name, so
                // clients use the same database name on Neo4j as on ArcadeDB.
                .setConfig(GraphDatabaseSettings.initial_default_database, args.database)
                .setConfig(GraphDatabaseSettings.auth_enabled, args.password != null)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.parse(args.pagecache))
                .setConfig(GraphDatabaseSettings.shutdown_transaction_end_timeout, Duration.ofSeconds(5));
        if (args.plugins != null) {
            builder.setConfig(GraphDatabaseSettings.plugin_dir, args.plugins.toAbsolutePath())
                    .setConfig(GraphDatabaseSettings.procedure_unrestricted, java.util.List.of("apoc.*"));
        }
        DatabaseManagementService dbms = builder.build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            // The JVM runs this on SIGTERM/SIGINT: close the store files before it exits.
            dbms.shutdown();
            stopped.countDown();
        }, "neo4j-shutdown"));

        if (args.password != null) {
            setPassword(dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME), args.user, args.password);
        }
        // Waits until the user database is online, so a client connecting after READY finds it.
        GraphDatabaseService db = dbms.database(args.database);
        db.executeTransactionally("RETURN 1");
        System.out.println("READY bolt://127.0.0.1:" + args.boltPort);
        System.out.flush();
        stopped.await();
    }

    /** Gives {@code user} the password, creating the user if it is not the built-in one. */
    private static void setPassword(GraphDatabaseService system, String user, String password) {
        Map<String, Object> params = Map.of("user", user, "password", password);
        if (!"neo4j".equals(user)) {
            // Community edition has no roles: every authenticated user may do everything.
            system.executeTransactionally(
                    "CREATE USER $user IF NOT EXISTS SET PASSWORD $password CHANGE NOT REQUIRED", params);
        }
        try {
            system.executeTransactionally("ALTER USER $user SET PASSWORD $password CHANGE NOT REQUIRED", params);
        } catch (QueryExecutionException e) {
            // A restart on the same data folder with the same password: Neo4j refuses to "change"
            // a password to itself, and that is the state we want.
            if (!e.getMessage().contains("cannot be the same")) {
                throw e;
            }
        }
    }

    /** The command line, parsed. */
    private record Args(Path home, int boltPort, String database, String user, String password, Path plugins,
                        String pagecache) {
        static Args parse(String[] argv) {
            Path home = null;
            Path plugins = null;
            int boltPort = 7687;
            String database = "neo4j";
            String user = "neo4j";
            String auth = "password";
            String pagecache = "256m";
            for (int i = 0; i < argv.length; i++) {
                String value = i + 1 < argv.length ? argv[i + 1] : null;
                switch (argv[i]) {
                    case "--home" -> home = Path.of(require(argv[i], value));
                    case "--bolt-port" -> boltPort = Integer.parseInt(require(argv[i], value));
                    case "--database" -> database = require(argv[i], value);
                    case "--user" -> user = require(argv[i], value);
                    case "--auth" -> auth = require(argv[i], value);
                    case "--plugins" -> plugins = Path.of(require(argv[i], value));
                    case "--pagecache" -> pagecache = require(argv[i], value);
                    default -> throw new IllegalArgumentException("unknown option " + argv[i]);
                }
                i++;
            }
            if (home == null) {
                throw new IllegalArgumentException("--home is required");
            }
            String password = null;
            if ("password".equals(auth)) {
                password = System.getenv(PASSWORD_ENV);
                if (password == null || password.isEmpty()) {
                    throw new IllegalArgumentException("--auth password needs " + PASSWORD_ENV + " set");
                }
            } else if (!"none".equals(auth)) {
                throw new IllegalArgumentException("--auth must be none or password, not " + auth);
            }
            return new Args(home, boltPort, database, user, password, plugins, pagecache);
        }

        private static String require(String option, String value) {
            if (value == null) {
                throw new IllegalArgumentException(option + " needs a value");
            }
            return value;
        }
    }
}

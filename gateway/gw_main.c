/*
 * gateway/gw_main.c: the `sluice` command: `init` and `serve` for the gateway, and the
 * client commands (gw_cli.c). Every command has --help.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"

static const struct {
    const char *topic;
    const char *text;
} help[] = {
    {"", "usage: sluice COMMAND [ARGS]\n"
         "\n"
         "Gateway:\n"
         "  init      create a data directory: keys, TLS certificate, embedded PostgreSQL,\n"
         "            schema, and the first admin token\n"
         "  serve     run the HTTPS gateway until SIGTERM or SIGINT\n"
         "\n"
         "Client (reads SLUICE_ADDR, SLUICE_TOKEN, SLUICE_CACERT):\n"
         "  whoami                         who the token belongs to\n"
         "  principal create|list|show|update|token|revoke\n"
         "  dataset create|list|show|upload|fetch|delete\n"
         "                                 datasets, their versions and their rows\n"
         "  audit export|verify            the audit trail; verify also works offline\n"
         "  keys public|rotate             signing keys; rotate the master key\n"
         "  store scrub                    check every stored chunk, repair fragments\n"
         "  policy put|get|delete|explain  dataset and global policies; explain a decision\n"
         "  retention set                  how long a dataset's versions live\n"
         "  hold set|clear                 legal holds (role auditor or admin)\n"
         "  job submit|list|status|result|wait|cancel\n"
         "                                 governed compute: train or extract features\n"
         "  receipt verify                 check a job's signed receipt (also offline)\n"
         "\n"
         "  version                        print the version\n"
         "\n"
         "`sluice COMMAND --help` describes a command. Client read commands take\n"
         "--output json for the server's JSON as it is; every client command takes\n"
         "--purpose WORD (or SLUICE_PURPOSE), sent as X-Sluice-Purpose for policies that\n"
         "require a purpose of use.\n"},
    {"init", "usage: sluice init --data-dir DIR [--listen HOST:PORT] [--db CONNINFO]\n"
             "                   [--tls-cert FILE --tls-key FILE] [--user NAME]\n"
             "\n"
             "Creates DIR (which must not exist or be empty): a 32-byte master key\n"
             "(DIR/keys/master.1.key, mode 0600; or SLUICE_MASTER_KEY, base64, when set), an\n"
             "Ed25519 signing key, a self-signed ECDSA P-256 certificate for 127.0.0.1, ::1\n"
             "and localhost (DIR/tls/cert.pem) unless --tls-cert/--tls-key are given, an\n"
             "embedded PostgreSQL cluster on a Unix socket inside DIR (unless --db), the schema,\n"
             "and the first admin principal. Its token is printed once on standard output and\n"
             "left in DIR/admin.token (mode 0600).\n"
             "\n"
             "  --listen HOST:PORT  address serve listens on (default 127.0.0.1:8443)\n"
             "  --db CONNINFO       use this PostgreSQL server instead of an embedded one; the\n"
             "                      role must be able to create roles and own the schema\n"
             "  --user NAME         unprivileged user for PostgreSQL and the gateway when run\n"
             "                      as root (default sluice)\n"
             "  --storage DIR,...   directories for dataset fragments, one fragment of every\n"
             "                      chunk in each (default DIR/storage); absolute paths,\n"
             "                      created when missing; fixed for the data directory's life\n"
             "  --parity M          Reed-Solomon parity fragments per chunk, kept in the last M\n"
             "                      storage directories: any M directories may be lost\n"
             "                      (default 0; fewer than the number of directories)\n"},
    {"serve", "usage: sluice serve --data-dir DIR [--listen HOST:PORT] [--db CONNINFO] [options]\n"
              "\n"
              "Runs the HTTPS gateway in the foreground. Starts the embedded PostgreSQL (unless\n"
              "--db), applies new migrations (refusing a database newer than this binary), and\n"
              "when started as root drops to the unprivileged user after opening its socket.\n"
              "SIGTERM or SIGINT stops it cleanly: in-flight requests finish, the audit queue\n"
              "drains, and the embedded PostgreSQL stops.\n"
              "\n"
              "  --max-connections N     concurrent connections (default 512)\n"
              "  --conn-timeout S        idle seconds before a connection is closed (default 30)\n"
              "  --audit-bound-ms MS     how long an answer waits for its audit event before it\n"
              "                          becomes 503 (default 2000)\n"
              "  --db-pool N             database connections for handlers (default 8)\n"
              "  --auth-fail-burst N     failed authentications allowed per address at once (20)\n"
              "  --auth-fail-per-min R   refill rate of that allowance per minute (30)\n"
              "  --max-token-ttl-days D  longest token lifetime an admin may choose (365)\n"
              "  --retention-sweep-s S   seconds between looks for versions past their\n"
              "                          retention's max_days, which are shredded (60)\n"
              "  --job-workers N         compute jobs this gateway runs at once (1; 0: none)\n"
              "  --zone-bin PATH         the zone executable (sluice-zone beside sluice)\n"
              "  --zone-mem-mib N        a zone's address space in MiB (4096)\n"
              "  --zone-threads N        a zone's OpenBLAS threads (the processors online)\n"
              "  --user NAME             unprivileged user when run as root (default sluice)\n"
              "  --log-level L           debug, info, warning or error (default info)\n"},
    {"whoami", "usage: sluice whoami [--output json]\n\nShows the principal of SLUICE_TOKEN: "
               "name, kind, roles, attributes and when the token expires.\n"},
    {"principal",
     "usage: sluice principal create NAME [--kind user|service] [--role R]... [--attr K=V]...\n"
     "                                [--ttl SECONDS]\n"
     "       sluice principal list [--limit N] [--after CURSOR]\n"
     "       sluice principal show NAME\n"
     "       sluice principal update NAME [--role R]... [--attr K=V]... [--disable|--enable]\n"
     "       sluice principal token NAME [--ttl SECONDS]\n"
     "       sluice principal revoke TOKEN_ID\n"
     "\n"
     "Manages principals (role admin). create and token print a new token once; store it\n"
     "then. Built-in roles: admin, owner, trainer, auditor, monitor. update replaces the\n"
     "roles or attributes given. revoke stops a token at once. All take --output json.\n"},
    {"audit",
     "usage: sluice audit export [--format jsonl|csv] [--since T] [--until T]\n"
     "                           [--principal P] [--dataset D] [--action A]\n"
     "                           [--decision allow|deny|error] [--out FILE]\n"
     "       sluice audit verify                       (asks the server)\n"
     "       sluice audit verify --file EXPORT.jsonl --public-key KEY [--partial]\n"
     "\n"
     "export streams events (role auditor or admin); jsonl carries each signed checkpoint\n"
     "after the event it covers. verify with --file checks an unfiltered jsonl export\n"
     "offline, with no server: every hash, the chain, and every checkpoint signature.\n"
     "KEY is the base64 key of /v1/keys/public, or a file holding it (or that endpoint's\n"
     "JSON). --partial accepts an export that starts after seq 1. Exit status 0 when the\n"
     "trail verifies, 1 when it does not.\n"},
    {"dataset",
     "usage: sluice dataset create NAME --classification C [--description TEXT]\n"
     "                             [--column NAME[:TYPE][:TAG,TAG...]]...\n"
     "       sluice dataset list [--limit N] [--after CURSOR]\n"
     "       sluice dataset show NAME [--version V]\n"
     "       sluice dataset upload NAME FILE\n"
     "       sluice dataset fetch NAME [--version V] [--format csv|jsonl|npy]\n"
     "                            [--columns A,B...] [--limit N] [--offset N] [--out FILE]\n"
     "       sluice dataset delete NAME VERSION\n"
     "\n"
     "create makes a dataset (role owner or admin) and its caller the owner. C is public,\n"
     "internal, confidential or restricted. Each --column declares a column in order: TYPE\n"
     "is float64, int64, bool or string; TAGs are free words (pii, label and id mean\n"
     "something to the built-in rules). Tags without a type: NAME::pii,id.\n"
     "\n"
     "list shows the datasets whose metadata you may see; show one, its columns and live\n"
     "versions, or with --version (a number or latest) that version's summary.\n"
     "\n"
     "upload sends FILE (- for standard input), a CSV with a header row, as the next\n"
     "version; it is streamed, never held in memory. A refused line is named in the error.\n"
     "\n"
     "fetch streams rows of a version (default latest) to standard output, or to FILE: the\n"
     "rows go to FILE.tmp, renamed to FILE only when the whole answer has arrived; a\n"
     "transfer that ends early exits with status 1 and leaves no FILE. FILE is readable by\n"
     "its owner only. --offset counts rows after the policy's row filters.\n"
     "\n"
     "delete destroys a version's key (crypto-shredding): its rows can never be read again.\n"
     "It is refused (423) under a legal hold or before the retention's min_days; in\n"
     "governance mode an admin may delete early with --bypass-governance.\n"
     "\n"
     "On a terminal, upload and fetch draw a progress bar on standard error. Names match\n"
     "^[a-z][a-z0-9_.-]{0,62}$. All take --output json (the server's answer as it is).\n"
     "Exit status 1 on an error from the server, 2 on a usage error.\n"},
    {"keys", "usage: sluice keys public [--output json]\n"
             "       sluice keys rotate [--output json]\n"
             "\n"
             "public lists the Ed25519 keys that sign audit checkpoints and receipts, retired\n"
             "ones included. rotate (role admin) makes a new master key version and rewraps\n"
             "every data key and the token key under it in one transaction; the previous\n"
             "master key versions are then retired.\n"},
    {"policy",
     "usage: sluice policy put DATASET FILE\n"
     "       sluice policy put --global NAME FILE\n"
     "       sluice policy get DATASET\n"
     "       sluice policy get --global [NAME]\n"
     "       sluice policy delete --global NAME\n"
     "       sluice policy explain --principal P --action A --dataset D [--purpose W]\n"
     "                             [--columns A,B...]\n"
     "\n"
     "put sends a policy document (FILE, - for standard input; JSON as in API.md) as the\n"
     "dataset's new policy version (dataset.manage) or, with --global, as global policy\n"
     "NAME (role admin; {\"applies_to\": {\"classifications\", \"tags\"}, \"statements\"}).\n"
     "A document that does not validate is refused whole, naming the statement and field.\n"
     "get prints the current document and its version (dataset.manage or audit.read), or\n"
     "the global policies (role admin or auditor). explain asks how a request would be\n"
     "decided, without making it (role admin or auditor, or the dataset's owner): the\n"
     "decision, the statements that decided, the columns denied and masked, the row\n"
     "filter and the policy versions. Deny by default; a deny wins over any allow; every\n"
     "applying statement's restrictions hold, and of several masks the strictest wins\n"
     "(null > redact > hash > year > partial). All take --output json.\n"},
    {"retention",
     "usage: sluice retention set DATASET [--min-days N] [--max-days M]\n"
     "                            --mode governance|compliance [--bypass-governance]\n"
     "\n"
     "Sets how long the dataset's versions live, counted from each version's upload\n"
     "(dataset.manage; days may be fractional): no version is deleted before min_days;\n"
     "after max_days the sweeper crypto-shreds it (each shred an audit event), unless a\n"
     "legal hold is on. compliance: nobody can shorten it later (lower min_days, bring\n"
     "max_days forward or add one, or turn it into governance): 409. governance: only an\n"
     "admin can, with --bypass-governance (X-Sluice-Bypass-Governance: true, audited);\n"
     "the same flag lets an admin delete a version early (sluice dataset delete).\n"},
    {"hold", "usage: sluice hold set DATASET --reason TEXT\n"
             "       sluice hold clear DATASET [--reason TEXT]\n"
             "\n"
             "A legal hold (role auditor or admin) blocks every deletion of the dataset's\n"
             "versions, retention's expiry and the bypass included, until it is cleared.\n"},
    {"job", "usage: sluice job submit --file SPEC.json [--wait]\n"
            "       sluice job list\n"
            "       sluice job status ID\n"
            "       sluice job wait ID [--timeout S]\n"
            "       sluice job result ID [--out FILE]\n"
            "       sluice job cancel ID\n"
            "\n"
            "Governed compute. submit sends a job spec (API.md: kind train with features, label,\n"
            "model and validation; or kind features with columns and optional privacy) and\n"
            "prints its id; the policy must allow compute.train or compute.features for the\n"
            "purpose (--purpose or the spec's). The rows never leave: a sandboxed zone trains on\n"
            "the masked, filtered view, and only what the release rules let out comes back.\n"
            "wait polls until the job ends (a progress line on a terminal; exit status 0 when it\n"
            "succeeded). result prints the model or statistics with the signed receipt (only\n"
            "the job's principal may). cancel stops a queued or running job.\n"},
    {"receipt",
     "usage: sluice receipt verify --file R.json [--public-key KEY]\n"
     "\n"
     "Verifies a job's receipt (the file may be the receipt or the job's whole result).\n"
     "With --public-key (base64, the JSON of /v1/keys/public, or a file holding either) it\n"
     "runs offline, with no server; without, the server checks it. Exit status 0 when the\n"
     "signature holds; any change to any field makes it fail.\n"},
    {"store", "usage: sluice store scrub [--output json]\n"
              "\n"
              "Reads back every fragment of every chunk of every live version (role admin),\n"
              "rewrites the fragments that are missing or damaged from the others, and lists\n"
              "what it repaired and what it could not. Exit status 1 when a chunk is\n"
              "unrecoverable.\n"},
};

void
gw_usage(const char *topic)
{
    size_t i;

    for (i = 0; i < sizeof help / sizeof help[0]; i++)
        if (strcmp(help[i].topic, topic) == 0) {
            fputs(help[i].text, stdout);
            return;
        }
    fputs(help[0].text, stdout);
}

static int
wants_help(int argc, char **argv)
{
    int i;

    for (i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

static int
bad_usage(const char *cmd, const char *what)
{
    fprintf(stderr, "sluice %s: %s\n(see sluice %s --help)\n", cmd, what, cmd);
    return 2;
}

static int
int_opt(const char *cmd, const char *name, const char *v, int64_t lo, int64_t hi, int64_t *out)
{
    char msg[160];

    if (v == NULL || sl_parse_i64(v, lo, hi, out) != SL_OK) {
        snprintf(msg, sizeof msg, "%s needs an integer from %lld to %lld", name, (long long)lo,
                 (long long)hi);
        return bad_usage(cmd, msg);
    }
    return 0;
}

/* Parses init/serve options into cfg; returns 0 or an exit status. */
static int
gateway_opts(const char *cmd, int argc, char **argv, gw_config *cfg, int *tls_given, int *have_dir)
{
    int i, rc;
    int64_t v;

    for (i = 0; i < argc; i++) {
        const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                \
    do {                                                      \
        if (val == NULL)                                      \
            return bad_usage(cmd, "an option needs a value"); \
        i++;                                                  \
    } while (0)
        if (strcmp(o, "--data-dir") == 0) {
            NEED();
            if (strlen(val) >= sizeof cfg->data_dir - 64)
                return bad_usage(cmd, "--data-dir path too long");
            snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", val);
            *have_dir = 1;
        } else if (strcmp(o, "--listen") == 0) {
            NEED();
            snprintf(cfg->listen, sizeof cfg->listen, "%s", val);
        } else if (strcmp(o, "--db") == 0) {
            NEED();
            if (strlen(val) >= sizeof cfg->conninfo)
                return bad_usage(cmd, "--db connection string too long");
            snprintf(cfg->conninfo, sizeof cfg->conninfo, "%s", val);
            cfg->embedded_pg = 0;
        } else if (strcmp(o, "--tls-cert") == 0 && strcmp(cmd, "init") == 0) {
            NEED();
            snprintf(cfg->tls_cert, sizeof cfg->tls_cert, "%s", val);
            (*tls_given)++;
        } else if (strcmp(o, "--tls-key") == 0 && strcmp(cmd, "init") == 0) {
            NEED();
            snprintf(cfg->tls_key, sizeof cfg->tls_key, "%s", val);
            (*tls_given)++;
        } else if (strcmp(o, "--storage") == 0 && strcmp(cmd, "init") == 0) {
            NEED();
            if (strlen(val) >= sizeof cfg->storage)
                return bad_usage(cmd, "--storage list too long");
            snprintf(cfg->storage, sizeof cfg->storage, "%s", val);
        } else if (strcmp(o, "--parity") == 0 && strcmp(cmd, "init") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 0, 31, &v)) != 0)
                return rc;
            cfg->parity = (int)v;
        } else if (strcmp(o, "--user") == 0) {
            NEED();
            snprintf(cfg->run_as, sizeof cfg->run_as, "%s", val);
        } else if (strcmp(o, "--max-connections") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 1, 100000, &v)) != 0)
                return rc;
            cfg->max_connections = (int)v;
        } else if (strcmp(o, "--conn-timeout") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 1, 3600, &v)) != 0)
                return rc;
            cfg->conn_timeout_s = (int)v;
        } else if (strcmp(o, "--audit-bound-ms") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 10, 60000, &v)) != 0)
                return rc;
            cfg->audit_bound_ms = (int)v;
        } else if (strcmp(o, "--db-pool") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 1, 64, &v)) != 0)
                return rc;
            cfg->db_pool = (int)v;
        } else if (strcmp(o, "--auth-fail-burst") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 1, 100000, &v)) != 0)
                return rc;
            cfg->auth_fail_burst = (int)v;
        } else if (strcmp(o, "--auth-fail-per-min") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 1, 1000000, &v)) != 0)
                return rc;
            cfg->auth_fail_per_min = (double)v;
        } else if (strcmp(o, "--retention-sweep-s") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 1, 86400, &v)) != 0)
                return rc;
            cfg->retention_sweep_s = (int)v;
        } else if (strcmp(o, "--job-workers") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 0, 64, &v)) != 0)
                return rc;
            cfg->job_workers = (int)v;
        } else if (strcmp(o, "--zone-mem-mib") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 64, 1 << 20, &v)) != 0)
                return rc;
            cfg->zone_mem_mib = (int)v;
        } else if (strcmp(o, "--zone-threads") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 1, 256, &v)) != 0)
                return rc;
            cfg->zone_threads = (int)v;
        } else if (strcmp(o, "--zone-bin") == 0) {
            NEED();
            if (strlen(val) >= sizeof cfg->zone_bin || val[0] != '/') {
                fprintf(stderr, "sluice %s: --zone-bin takes an absolute path\n", cmd);
                return 2;
            }
            snprintf(cfg->zone_bin, sizeof cfg->zone_bin, "%s", val);
        } else if (strcmp(o, "--max-token-ttl-days") == 0) {
            NEED();
            if ((rc = int_opt(cmd, o, val, 1, SL_HARD_MAX_TOKEN_TTL_DAYS, &v)) != 0)
                return rc;
            cfg->max_token_ttl_s = v * 86400;
        } else if (strcmp(o, "--log-level") == 0) {
            NEED();
            if (strcmp(val, "debug") == 0)
                sl_log_set_level(SL_LOG_DEBUG);
            else if (strcmp(val, "info") == 0)
                sl_log_set_level(SL_LOG_INFO);
            else if (strcmp(val, "warning") == 0)
                sl_log_set_level(SL_LOG_WARN);
            else if (strcmp(val, "error") == 0)
                sl_log_set_level(SL_LOG_ERROR);
            else
                return bad_usage(cmd, "--log-level is debug, info, warning or error");
        } else {
            char msg[160];
            snprintf(msg, sizeof msg, "unknown option %.100s", o);
            return bad_usage(cmd, msg);
        }
#undef NEED
    }
    return 0;
}

static int
cmd_init(int argc, char **argv)
{
    gw_config cfg;
    sl_err err;
    int tls = 0, have_dir = 0, rc;

    gw_config_defaults(&cfg);
    if ((rc = gateway_opts("init", argc, argv, &cfg, &tls, &have_dir)) != 0)
        return rc;
    if (!have_dir)
        return bad_usage("init", "--data-dir DIR is required");
    if (tls == 1)
        return bad_usage("init", "--tls-cert and --tls-key go together");
    sl_err_clear(&err);
    if (gw_init(&cfg, tls == 2, &err) != SL_OK) {
        fprintf(stderr, "sluice init: %s\n", err.msg);
        if (err.detail[0])
            fprintf(stderr, "  detail: %s\n", err.detail);
        return 1;
    }
    fprintf(stderr,
            "sluice init: data directory %s ready; the admin token above is also in "
            "%s/admin.token\n",
            cfg.data_dir, cfg.data_dir);
    return 0;
}

static int
cmd_serve(int argc, char **argv)
{
    gw_config cfg, flags;
    sl_err err;
    int tls = 0, have_dir = 0, rc;

    gw_config_defaults(&flags);
    if ((rc = gateway_opts("serve", argc, argv, &flags, &tls, &have_dir)) != 0)
        return rc;
    if (!have_dir)
        return bad_usage("serve", "--data-dir DIR is required");
    /* the data directory's settings, then the flags given now */
    cfg = flags;
    gw_config_defaults(&cfg);
    memcpy(cfg.data_dir, flags.data_dir, sizeof cfg.data_dir);
    sl_err_clear(&err);
    if (gw_config_load(&cfg, &err) != SL_OK) {
        fprintf(stderr, "sluice serve: %s\n", err.msg);
        return 1;
    }
    {
        gw_config def;
        gw_config_defaults(&def);
        if (strcmp(flags.listen, def.listen) != 0)
            memcpy(cfg.listen, flags.listen, sizeof cfg.listen);
        if (!flags.embedded_pg) {
            memcpy(cfg.conninfo, flags.conninfo, sizeof cfg.conninfo);
            cfg.embedded_pg = 0;
        }
        if (strcmp(flags.run_as, def.run_as) != 0)
            memcpy(cfg.run_as, flags.run_as, sizeof cfg.run_as);
        cfg.max_connections = flags.max_connections;
        cfg.conn_timeout_s = flags.conn_timeout_s;
        cfg.audit_bound_ms = flags.audit_bound_ms;
        cfg.db_pool = flags.db_pool;
        cfg.auth_fail_burst = flags.auth_fail_burst;
        cfg.auth_fail_per_min = flags.auth_fail_per_min;
        cfg.max_token_ttl_s = flags.max_token_ttl_s;
        cfg.retention_sweep_s = flags.retention_sweep_s;
        cfg.job_workers = flags.job_workers;
        cfg.zone_mem_mib = flags.zone_mem_mib;
        cfg.zone_threads = flags.zone_threads;
        memcpy(cfg.zone_bin, flags.zone_bin, sizeof cfg.zone_bin);
    }
    return gw_serve(&cfg);
}

int
gw_main(int argc, char **argv)
{
    const char *cmd;

    if (cry_init() != SL_OK) {
        fprintf(stderr, "sluice: libsodium could not start\n");
        return 1;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        gw_usage(argc > 2 ? argv[2] : "");
        return argc < 2 ? 2 : 0;
    }
    cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    if (wants_help(argc - 2, argv + 2)) {
        gw_usage(cmd);
        return 0;
    }
    if (strcmp(cmd, "init") == 0)
        return cmd_init(argc - 2, argv + 2);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    return gw_cli_main(cmd, argc - 2, argv + 2);
}

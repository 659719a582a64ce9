/*
 * gateway/gw_datadir.c: the data directory: configuration, key files, the TLS
 * certificate, and `sluice init`, which makes all of them, the embedded cluster, the
 * schema and the first admin.
 *
 * Layout (when run as root, DIR is root's 0711 and pg/ belongs to the run-as user):
 *   config.json          settings recorded by init (0600: --db may carry a password)
 *   keys/master.1.key    master key version 1, 32 raw bytes (0600)
 *   keys/signing.ID.key  Ed25519 secret key (0600); keys/signing.ID.pub its base64 key
 *   tls/cert.pem, tls/key.pem (0600)
 *   admin.token          the first admin token (0600)
 *   pg/data, pg/run, pg/log  the embedded PostgreSQL cluster
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "st.h"

void
gw_config_defaults(gw_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen, sizeof cfg->listen, "%s", GW_DEFAULT_LISTEN);
    snprintf(cfg->run_as, sizeof cfg->run_as, "%s", GW_DEFAULT_USER);
    cfg->embedded_pg = 1;
    cfg->max_connections = SL_DEFAULT_MAX_CONNECTIONS;
    cfg->conn_timeout_s = SL_DEFAULT_CONN_TIMEOUT_S;
    cfg->audit_bound_ms = SL_DEFAULT_AUDIT_BOUND_MS;
    cfg->db_pool = SL_DEFAULT_DB_POOL;
    cfg->auth_fail_burst = SL_DEFAULT_AUTH_FAIL_BURST;
    cfg->auth_fail_per_min = SL_DEFAULT_AUTH_FAIL_PER_MIN;
    cfg->max_token_ttl_s = (int64_t)SL_DEFAULT_MAX_TOKEN_TTL_DAYS * 86400;
    cfg->master_key_version = 1;
    cfg->retention_sweep_s = SL_DEFAULT_RETENTION_SWEEP_S;
    cfg->job_workers = 1;
    cfg->zone_mem_mib = 4096;
    cfg->zone_threads = 0;
}

sl_code
gw_user_lookup(const char *name, uid_t *uid, gid_t *gid, sl_err *err)
{
    struct passwd pw, *res = NULL;
    char buf[4096];

    if (getpwnam_r(name, &pw, buf, sizeof buf, &res) != 0 || res == NULL)
        return sl_err_set(err, SL_EIO,
                          "running as root needs the unprivileged system user \"%s\" "
                          "(scripts/deps.sh creates it; or pass --user NAME)",
                          name);
    if (pw.pw_uid == 0)
        return sl_err_set(err, SL_EIO, "user \"%s\" is root; an unprivileged user is needed", name);
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    return SL_OK;
}

sl_code
gw_file_read(const char *path, size_t max, char **out, size_t *len, sl_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    char *buf;
    size_t got = 0;

    *out = NULL;
    if (fd < 0)
        return sl_err_set(err, SL_EIO, "could not open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        close(fd);
        return sl_err_set(err, SL_EIO, "%s is not a regular file of at most %zu bytes", path, max);
    }
    buf = sl_xmalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    if (len != NULL)
        *len = got;
    return SL_OK;
}

sl_code
gw_file_write(const char *path, const void *p, size_t n, mode_t mode, sl_err *err)
{
    char tmp[PATH_MAX];
    int fd;
    size_t off = 0;

    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return sl_err_set(err, SL_EIO, "path too long: %s", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return sl_err_set(err, SL_EIO, "could not create %s: %s", tmp, strerror(errno));
    if (fchmod(fd, mode) != 0) {
        close(fd);
        return sl_err_set(err, SL_EIO, "could not chmod %s", tmp);
    }
    while (off < n) {
        ssize_t w = write(fd, (const char *)p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return sl_err_set(err, SL_EIO, "could not write %s: %s", tmp, strerror(errno));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return sl_err_set(err, SL_EIO, "could not write %s: %s", path, strerror(errno));
    }
    return SL_OK;
}

static sl_code
save_config(const gw_config *cfg, sl_err *err)
{
    char path[PATH_MAX + 16], *text;
    json_t *j;
    sl_code rc;

    j = json_pack(
        "{s:s, s:s?, s:s, s:b, s:i, s:s, s:s?, s:s?, s:s, s:i}", "listen", cfg->listen, "db",
        cfg->embedded_pg ? NULL : cfg->conninfo, "run_as", cfg->run_as, "embedded_pg",
        cfg->embedded_pg, "master_key_version", cfg->master_key_version, "signing_key_id",
        cfg->signing_key_id, "tls_cert", cfg->tls_cert[0] ? cfg->tls_cert : NULL, "tls_key",
        cfg->tls_key[0] ? cfg->tls_key : NULL, "storage", cfg->storage, "parity", cfg->parity);
    text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    snprintf(path, sizeof path, "%s/config.json", cfg->data_dir);
    /* 0600: a --db connection string may hold a password */
    rc = gw_file_write(path, text, strlen(text), 0600, err);
    free(text);
    return rc;
}

sl_code
gw_config_load(gw_config *cfg, sl_err *err)
{
    char path[PATH_MAX + 16], *text = NULL;
    json_error_t je;
    json_t *j, *v;
    sl_code rc;

    snprintf(path, sizeof path, "%s/config.json", cfg->data_dir);
    if ((rc = gw_file_read(path, 65536, &text, NULL, err)) != SL_OK) {
        sl_err_set(err, SL_EIO, "%s is not a sluice data directory (run sluice init)",
                   cfg->data_dir);
        return SL_EIO;
    }
    j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!json_is_object(j)) {
        json_decref(j);
        return sl_err_set(err, SL_EIO, "%s is not valid JSON", path);
    }
    if (json_is_string(v = json_object_get(j, "listen")))
        snprintf(cfg->listen, sizeof cfg->listen, "%s", json_string_value(v));
    if (json_is_string(v = json_object_get(j, "run_as")))
        snprintf(cfg->run_as, sizeof cfg->run_as, "%s", json_string_value(v));
    if (json_is_string(v = json_object_get(j, "db"))) {
        snprintf(cfg->conninfo, sizeof cfg->conninfo, "%s", json_string_value(v));
        cfg->embedded_pg = 0;
    } else {
        cfg->embedded_pg = 1;
        gw_pg_conninfo(cfg->data_dir, cfg->conninfo, sizeof cfg->conninfo);
    }
    if (json_is_integer(v = json_object_get(j, "master_key_version")))
        cfg->master_key_version = (int)json_integer_value(v);
    if (json_is_string(v = json_object_get(j, "signing_key_id")))
        snprintf(cfg->signing_key_id, sizeof cfg->signing_key_id, "%s", json_string_value(v));
    if (json_is_string(v = json_object_get(j, "tls_cert")))
        snprintf(cfg->tls_cert, sizeof cfg->tls_cert, "%s", json_string_value(v));
    if (json_is_string(v = json_object_get(j, "tls_key")))
        snprintf(cfg->tls_key, sizeof cfg->tls_key, "%s", json_string_value(v));
    if (json_is_string(v = json_object_get(j, "storage")))
        snprintf(cfg->storage, sizeof cfg->storage, "%s", json_string_value(v));
    if (json_is_integer(v = json_object_get(j, "parity")))
        cfg->parity = (int)json_integer_value(v);
    json_decref(j);
    if (cfg->storage[0] == '\0') /* made before storage was configurable */
        snprintf(cfg->storage, sizeof cfg->storage, "%s/storage", cfg->data_dir);
    if (cfg->tls_cert[0] == '\0')
        snprintf(cfg->tls_cert, sizeof cfg->tls_cert, "%s/tls/cert.pem", cfg->data_dir);
    if (cfg->tls_key[0] == '\0')
        snprintf(cfg->tls_key, sizeof cfg->tls_key, "%s/tls/key.pem", cfg->data_dir);
    return SL_OK;
}

/* Adds a master key version to the ring (the current one is the highest). */
static sl_code
hold_master(gw_keys *keys, int version, cry_key *k, sl_err *err)
{
    if (keys->nmasters == GW_MAX_MASTERS) {
        cry_key_free(k);
        return sl_err_set(err, SL_EIO, "more than %d master key versions in keys/", GW_MAX_MASTERS);
    }
    keys->masters[keys->nmasters].version = version;
    keys->masters[keys->nmasters].key = k;
    keys->nmasters++;
    if (version > keys->master_version) {
        keys->master_version = version;
        keys->master = k;
    }
    return SL_OK;
}

/*
 * The master keys: SLUICE_MASTER_KEY (base64; one version, that of config.json) when
 * set, else every keys/master.N.key (the highest N is current; older versions stay until
 * nothing is wrapped by them).
 */
static sl_code
load_masters(const gw_config *cfg, gw_keys *keys, sl_err *err)
{
    const char *env = getenv("SLUICE_MASTER_KEY");
    char dir[PATH_MAX + 8], path[PATH_MAX + 300], *raw = NULL;
    struct dirent *d;
    DIR *dh;
    size_t len = 0;
    sl_code rc = SL_OK;

    if (env != NULL && *env != '\0') {
        cry_key *k = cry_key_new(SL_MASTER_KEY_BYTES + 8);
        size_t got = 0;
        if (cry_unb64(env, strlen(env), k->p, k->n, &got) != SL_OK || got != SL_MASTER_KEY_BYTES) {
            cry_key_free(k);
            return sl_err_set(err, SL_EINVALID, "SLUICE_MASTER_KEY must be the base64 of 32 bytes");
        }
        k->n = SL_MASTER_KEY_BYTES;
        keys->master_from_env = 1;
        return hold_master(keys, cfg->master_key_version, k, err);
    }
    snprintf(dir, sizeof dir, "%s/keys", cfg->data_dir);
    if ((dh = opendir(dir)) == NULL)
        return sl_err_set(err, SL_EIO, "could not open %s: %s", dir, strerror(errno));
    while (rc == SL_OK && (d = readdir(dh)) != NULL) {
        int64_t v;
        char num[16];
        size_t n = strlen(d->d_name);
        if (n < 12 || n > 7 + 9 + 4 || strncmp(d->d_name, "master.", 7) != 0 ||
            strcmp(d->d_name + n - 4, ".key") != 0)
            continue;
        memcpy(num, d->d_name + 7, n - 11);
        num[n - 11] = '\0';
        if (sl_parse_i64(num, 1, 1000000, &v) != SL_OK)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, d->d_name);
        if ((rc = gw_file_read(path, 64, &raw, &len, err)) != SL_OK)
            break;
        if (len != SL_MASTER_KEY_BYTES)
            rc = sl_err_set(err, SL_EIO, "%s must hold exactly 32 bytes", path);
        else
            rc = hold_master(keys, (int)v, cry_key_dup(raw, len), err);
        sodium_memzero(raw, len);
        free(raw);
        raw = NULL;
    }
    closedir(dh);
    if (rc == SL_OK && keys->nmasters == 0)
        rc = sl_err_set(err, SL_EIO, "no master key in %s (keys/master.N.key)", dir);
    return rc;
}

static sl_code
load_pubkeys(const gw_config *cfg, gw_keys *keys, sl_err *err)
{
    char dir[PATH_MAX + 8], path[PATH_MAX + 300];
    struct dirent *d;
    DIR *dh;

    snprintf(dir, sizeof dir, "%s/keys", cfg->data_dir);
    if ((dh = opendir(dir)) == NULL)
        return sl_err_set(err, SL_EIO, "could not open %s: %s", dir, strerror(errno));
    while ((d = readdir(dh)) != NULL && keys->npub < GW_MAX_KEYS) {
        size_t n = strlen(d->d_name), got = 0;
        char *text = NULL;
        gw_pubkey *pk = &keys->pub[keys->npub];
        if (n != 8 + CRY_KEY_ID_HEX + 4 || strncmp(d->d_name, "signing.", 8) != 0 ||
            strcmp(d->d_name + n - 4, ".pub") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, d->d_name);
        if (gw_file_read(path, 256, &text, &got, err) != SL_OK)
            continue;
        while (got > 0 && (text[got - 1] == '\n' || text[got - 1] == ' '))
            text[--got] = '\0';
        if (cry_unb64(text, got, pk->pk, sizeof pk->pk, &got) == SL_OK &&
            got == CRY_SIGN_PK_BYTES) {
            cry_key_id(pk->pk, pk->id);
            pk->active = strcmp(pk->id, cfg->signing_key_id) == 0;
            keys->npub++;
        }
        free(text);
    }
    closedir(dh);
    return SL_OK;
}

sl_code
gw_keys_load(const gw_config *cfg, gw_keys *keys, sl_err *err)
{
    char path[PATH_MAX + 64], *raw = NULL;
    unsigned char pk[CRY_SIGN_PK_BYTES];
    size_t len = 0;
    sl_code rc;

    memset(keys, 0, sizeof *keys);
    pthread_mutex_init(&keys->lock, NULL);
    keys->lock_ready = 1;
    keys->keyd_fd = -1;
    if ((rc = load_masters(cfg, keys, err)) != SL_OK)
        return rc;
    snprintf(path, sizeof path, "%s/keys/signing.%s.key", cfg->data_dir, cfg->signing_key_id);
    if ((rc = gw_file_read(path, 128, &raw, &len, err)) != SL_OK)
        return rc;
    if (len != CRY_SIGN_SK_BYTES) {
        sodium_memzero(raw, len);
        free(raw);
        return sl_err_set(err, SL_EIO, "%s must hold a 64-byte Ed25519 key", path);
    }
    keys->signing = cry_key_dup(raw, len);
    sodium_memzero(raw, len);
    free(raw);
    cry_sign_pk(keys->signing, pk);
    cry_key_id(pk, keys->signing_id);
    if (strcmp(keys->signing_id, cfg->signing_key_id) != 0)
        return sl_err_set(err, SL_EIO, "signing key file does not match its id %s",
                          cfg->signing_key_id);
    return load_pubkeys(cfg, keys, err);
}

sl_code
gw_keys_token(const gw_config *cfg, gw_keys *keys, sl_err *err)
{
    static const char aad[] = GW_AAD_TOKEN_KEY;
    unsigned char *blob = NULL;
    size_t len = 0;
    int ver = 0;
    PGconn *c = NULL;
    sl_code rc;

    if ((rc = db_connect(cfg->conninfo, 1, &c, err)) != SL_OK)
        return rc;
    rc = db_wrapped_key_get(c, "token-hmac", &ver, &blob, &len, err);
    if (rc == SL_ENOTFOUND) {
        cry_key *k = cry_key_random(CRY_KEY_BYTES);
        unsigned char w[CRY_KEY_BYTES + CRY_WRAP_OVERHEAD];
        gw_master_wrap(keys, aad, k->p, k->n, w, &ver);
        rc = db_wrapped_key_put(c, "token-hmac", ver, w, sizeof w, err);
        if (rc == SL_OK)
            keys->token = k;
        else
            cry_key_free(k);
    } else if (rc == SL_OK) {
        if (gw_master_unwrap(keys, ver, aad, blob, len, &keys->token) != SL_OK)
            rc = sl_err_set(err, SL_EIO,
                            "could not unwrap the token key: wrong master key for this database "
                            "(or its version %d is missing from keys/)",
                            ver);
    }
    free(blob);
    PQfinish(c);
    return rc;
}

void
gw_keys_free(gw_keys *keys)
{
    int i;

    for (i = 0; i < keys->nmasters; i++)
        cry_key_free(keys->masters[i].key);
    if (keys->lock_ready)
        pthread_mutex_destroy(&keys->lock);
    cry_key_free(keys->token);
    cry_key_free(keys->signing);
    memset(keys, 0, sizeof *keys);
}

static sl_code
mkdir_mode(const char *path, mode_t mode, sl_err *err)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return sl_err_set(err, SL_EIO, "could not create %s: %s", path, strerror(errno));
    if (chmod(path, mode) != 0)
        return sl_err_set(err, SL_EIO, "could not chmod %s: %s", path, strerror(errno));
    return SL_OK;
}

static sl_code
make_keys(gw_config *cfg, sl_err *err)
{
    char path[PATH_MAX + 64], b64[64];
    unsigned char pk[CRY_SIGN_PK_BYTES];
    cry_key *sk = NULL, *mk;
    sl_code rc;

    if (getenv("SLUICE_MASTER_KEY") == NULL) {
        mk = cry_key_random(SL_MASTER_KEY_BYTES);
        snprintf(path, sizeof path, "%s/keys/master.%d.key", cfg->data_dir,
                 cfg->master_key_version);
        rc = gw_file_write(path, mk->p, mk->n, 0600, err);
        cry_key_free(mk);
        if (rc != SL_OK)
            return rc;
    }
    cry_sign_keypair(pk, &sk);
    cry_key_id(pk, cfg->signing_key_id);
    snprintf(path, sizeof path, "%s/keys/signing.%s.key", cfg->data_dir, cfg->signing_key_id);
    rc = gw_file_write(path, sk->p, sk->n, 0600, err);
    cry_key_free(sk);
    if (rc != SL_OK)
        return rc;
    cry_b64(pk, sizeof pk, b64);
    snprintf(path, sizeof path, "%s/keys/signing.%s.pub", cfg->data_dir, cfg->signing_key_id);
    strncat(b64, "\n", sizeof b64 - strlen(b64) - 1);
    return gw_file_write(path, b64, strlen(b64), 0644, err);
}

int
gw_storage_dirs(const gw_config *cfg, char *buf, size_t n, const char **dirs, int max)
{
    char *p, *save = NULL;
    int count = 0;

    snprintf(buf, n, "%s", cfg->storage);
    for (p = strtok_r(buf, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
        if (count == max)
            return max + 1;
        dirs[count++] = p;
    }
    return count;
}

/* The storage directories: made (0700) and, when run as root, given to the run-as user,
 * who writes the fragments. */
static sl_code
make_storage(gw_config *cfg, sl_err *err)
{
    char buf[sizeof cfg->storage];
    const char *dirs[ST_MAX_FRAGMENTS];
    int n, i, j;
    uid_t uid = 0;
    gid_t gid = 0;
    sl_code rc;

    if (cfg->storage[0] == '\0')
        snprintf(cfg->storage, sizeof cfg->storage, "%s/storage", cfg->data_dir);
    n = gw_storage_dirs(cfg, buf, sizeof buf, dirs, ST_MAX_FRAGMENTS);
    if (n < 1 || n > ST_MAX_FRAGMENTS)
        return sl_err_set(err, SL_EINVALID, "--storage takes 1 to %d directories",
                          ST_MAX_FRAGMENTS);
    if (cfg->parity >= n)
        return sl_err_set(err, SL_EINVALID,
                          "--parity %d needs more than %d storage directories (it has %d)",
                          cfg->parity, cfg->parity, n);
    for (i = 0; i < n; i++) {
        if (dirs[i][0] != '/' || strlen(dirs[i]) > 512)
            return sl_err_set(err, SL_EINVALID, "storage directories must be absolute paths");
        for (j = 0; j < i; j++)
            if (strcmp(dirs[i], dirs[j]) == 0)
                return sl_err_set(err, SL_EINVALID, "storage directory %s is named twice", dirs[i]);
    }
    if (geteuid() == 0 && (rc = gw_user_lookup(cfg->run_as, &uid, &gid, err)) != SL_OK)
        return rc;
    for (i = 0; i < n; i++) {
        if ((rc = mkdir_mode(dirs[i], 0700, err)) != SL_OK)
            return rc;
        if (geteuid() == 0 && chown(dirs[i], uid, gid) != 0)
            return sl_err_set(err, SL_EIO, "could not chown %s: %s", dirs[i], strerror(errno));
    }
    return SL_OK;
}

static sl_code
make_tls(gw_config *cfg, sl_err *err)
{
    static const char *const dns[] = {"localhost"};
    static const char *const ips[] = {"127.0.0.1", "::1"};
    char *cert = NULL, *key = NULL;
    sl_code rc;

    if ((rc = cry_tls_selfsigned(dns, 1, ips, 2, 825, &cert, &key, err)) != SL_OK)
        return rc;
    snprintf(cfg->tls_cert, sizeof cfg->tls_cert, "%s/tls/cert.pem", cfg->data_dir);
    snprintf(cfg->tls_key, sizeof cfg->tls_key, "%s/tls/key.pem", cfg->data_dir);
    rc = gw_file_write(cfg->tls_key, key, strlen(key), 0600, err);
    if (rc == SL_OK)
        rc = gw_file_write(cfg->tls_cert, cert, strlen(cert), 0644, err);
    free(cert);
    cry_pem_free(key);
    return rc;
}

/* Creates the database of the embedded cluster (connected to "postgres"). */
static sl_code
create_database(const gw_config *cfg, sl_err *err)
{
    char conninfo[PATH_MAX + 128];
    PGconn *c = NULL;
    sl_code rc;

    snprintf(conninfo, sizeof conninfo, "host=%s/pg/run dbname=postgres user=%s", cfg->data_dir,
             GW_PG_SUPERUSER);
    if ((rc = db_connect(conninfo, 0, &c, err)) != SL_OK)
        return rc;
    rc = db_exec(c, "CREATE DATABASE " GW_PG_DBNAME " ENCODING 'UTF8' TEMPLATE template0", err);
    PQfinish(c);
    return rc;
}

/* The first admin and its token, printed once and left in DIR/admin.token. */
static sl_code
make_admin(const gw_config *cfg, gw_keys *keys, sl_err *err)
{
    char id[CRY_TOKEN_ID_HEX + 1], secret[CRY_TOKEN_SECRET_HEX + 1], token[CRY_TOKEN_LEN + 2];
    char path[PATH_MAX + 16];
    unsigned char hash[CRY_HASH_BYTES];
    json_t *roles = json_pack("[s]", "admin"), *attrs = json_object();
    int64_t pid = 0;
    PGconn *c = NULL;
    sl_code rc;

    if ((rc = db_connect(cfg->conninfo, 1, &c, err)) != SL_OK)
        goto out;
    if ((rc = db_principal_insert(c, "admin", "user", roles, attrs, &pid, err)) != SL_OK)
        goto out;
    cry_token_new(id, secret, token);
    cry_token_hash(keys->token, id, secret, hash);
    rc = db_token_insert(c, id, pid, hash, sl_now_us() + SL_DEFAULT_TOKEN_TTL_S * 1000000, err);
    if (rc != SL_OK)
        goto out;
    snprintf(path, sizeof path, "%s/admin.token", cfg->data_dir);
    strncat(token, "\n", 2);
    if ((rc = gw_file_write(path, token, strlen(token), 0600, err)) != SL_OK)
        goto out;
    printf("%s", token);
    fflush(stdout);
out:
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(token, sizeof token);
    json_decref(roles);
    json_decref(attrs);
    PQfinish(c);
    return rc;
}

sl_code
gw_init(gw_config *cfg, int tls_given, sl_err *err)
{
    char path[PATH_MAX + 16];
    gw_keys keys;
    struct stat st;
    int pg_started = 0;
    sl_code rc;

    memset(&keys, 0, sizeof keys);
    if (stat(cfg->data_dir, &st) == 0) {
        DIR *d = opendir(cfg->data_dir);
        struct dirent *e;
        int empty = 1;
        while (d != NULL && (e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                empty = 0;
        if (d != NULL)
            closedir(d);
        if (!empty)
            return sl_err_set(err, SL_ECONFLICT,
                              "%s exists and is not empty; refusing to "
                              "initialise over it",
                              cfg->data_dir);
    }
    if (geteuid() == 0) {
        uid_t uid;
        gid_t gid;
        if (cfg->embedded_pg && (rc = gw_user_lookup(cfg->run_as, &uid, &gid, err)) != SL_OK)
            return rc;
    }
    if ((rc = mkdir_mode(cfg->data_dir, geteuid() == 0 ? 0711 : 0700, err)) != SL_OK)
        return rc;
    snprintf(path, sizeof path, "%s/keys", cfg->data_dir);
    if ((rc = mkdir_mode(path, 0700, err)) != SL_OK)
        return rc;
    snprintf(path, sizeof path, "%s/tls", cfg->data_dir);
    if ((rc = mkdir_mode(path, 0755, err)) != SL_OK)
        return rc;
    if ((rc = make_keys(cfg, err)) != SL_OK)
        return rc;
    if (!tls_given && (rc = make_tls(cfg, err)) != SL_OK)
        return rc;
    if ((rc = make_storage(cfg, err)) != SL_OK)
        return rc;
    if (cfg->embedded_pg) {
        gw_pg_conninfo(cfg->data_dir, cfg->conninfo, sizeof cfg->conninfo);
        if ((rc = gw_pg_initdb(cfg, err)) != SL_OK)
            return rc;
        if ((rc = gw_pg_start(cfg, err)) != SL_OK)
            return rc;
        pg_started = 1;
        if ((rc = create_database(cfg, err)) != SL_OK)
            goto out;
    }
    if ((rc = save_config(cfg, err)) != SL_OK)
        goto out;
    if ((rc = db_migrate(cfg->conninfo, NULL, err)) != SL_OK)
        goto out;
    if ((rc = gw_keys_load(cfg, &keys, err)) != SL_OK ||
        (rc = gw_keys_token(cfg, &keys, err)) != SL_OK)
        goto out;
    rc = make_admin(cfg, &keys, err);
out:
    gw_keys_free(&keys);
    if (pg_started) {
        sl_err e2;
        if (gw_pg_stop(cfg, &e2) != SL_OK)
            sl_warn("could not stop the embedded PostgreSQL: %s", e2.msg);
    }
    return rc;
}

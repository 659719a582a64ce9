/*
 * gateway/gw_pg.c: the embedded PostgreSQL cluster: initdb, start and stop with
 * pg_ctl, listening only on a Unix socket inside the data directory. PostgreSQL refuses
 * to run as root, so when we are root its programs run as the unprivileged user.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"

static const char *
pg_bindir(void)
{
    const char *env = getenv("SLUICE_PG_BINDIR");

    if (env != NULL && *env != '\0')
        return env;
    return "/usr/lib/postgresql/15/bin";
}

void
gw_pg_conninfo(const char *data_dir, char *out, size_t n)
{
    snprintf(out, n, "host=%s/pg/run dbname=%s user=%s connect_timeout=5", data_dir, GW_PG_DBNAME,
             GW_PG_SUPERUSER);
}

/* Runs a program of the PostgreSQL bin directory, as the unprivileged user when root. */
static sl_code
run_pg(const gw_config *cfg, const char *prog, char *const args[], sl_err *err)
{
    char path[PATH_MAX], *argv[32];
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t pid;
    int status, i, devnull;

    snprintf(path, sizeof path, "%s/%s", pg_bindir(), prog);
    if (access(path, X_OK) != 0)
        return sl_err_set(err, SL_EIO, "PostgreSQL program %s not found (set SLUICE_PG_BINDIR)",
                          path);
    if (geteuid() == 0 && gw_user_lookup(cfg->run_as, &uid, &gid, err) != SL_OK)
        return err->code;
    argv[0] = path;
    for (i = 0; args[i] != NULL && i < 30; i++)
        argv[i + 1] = args[i];
    argv[i + 1] = NULL;
    pid = fork();
    if (pid < 0)
        return sl_err_set(err, SL_EIO, "could not fork: %s", strerror(errno));
    if (pid == 0) {
        char *const envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "LANG=C.UTF-8", NULL};
        if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) {
            _exit(126);
        }
        /* chatter on stdout is dropped; errors still reach our stderr */
        devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        if (chdir("/") != 0)
            _exit(126);
        execve(path, argv, envp);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return sl_err_set(err, SL_EIO, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return sl_err_set(err, SL_EIO, "%s failed (exit status %d)", prog,
                          WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return SL_OK;
}

static sl_code
mkdir_owned(const gw_config *cfg, const char *path, mode_t mode, sl_err *err)
{
    uid_t uid;
    gid_t gid;

    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return sl_err_set(err, SL_EIO, "could not create %s: %s", path, strerror(errno));
    if (chmod(path, mode) != 0)
        return sl_err_set(err, SL_EIO, "could not chmod %s: %s", path, strerror(errno));
    if (geteuid() == 0) {
        if (gw_user_lookup(cfg->run_as, &uid, &gid, err) != SL_OK)
            return err->code;
        if (chown(path, uid, gid) != 0)
            return sl_err_set(err, SL_EIO, "could not chown %s: %s", path, strerror(errno));
    }
    return SL_OK;
}

/* When root: every directory above DIR must let the unprivileged user pass. */
static sl_code
check_traversable(const gw_config *cfg, sl_err *err)
{
    char path[PATH_MAX], *slash;
    struct stat st;
    uid_t uid;
    gid_t gid;

    if (geteuid() != 0)
        return SL_OK;
    if (gw_user_lookup(cfg->run_as, &uid, &gid, err) != SL_OK)
        return err->code;
    if (realpath(cfg->data_dir, path) == NULL)
        return sl_err_set(err, SL_EIO, "cannot resolve %s: %s", cfg->data_dir, strerror(errno));
    while ((slash = strrchr(path, '/')) != NULL) {
        if (slash == path)
            slash[1] = '\0';
        else
            *slash = '\0';
        if (stat(path, &st) != 0)
            break;
        if (!(st.st_mode & S_IXOTH) && !(st.st_uid == uid && (st.st_mode & S_IXUSR)) &&
            !(st.st_gid == gid && (st.st_mode & S_IXGRP)))
            return sl_err_set(err, SL_EIO,
                              "user %s cannot reach the data directory: %s is not searchable "
                              "by it (chmod o+x %s, or choose another place)",
                              cfg->run_as, path, path);
        if (slash == path)
            break;
    }
    return SL_OK;
}

sl_code
gw_pg_initdb(const gw_config *cfg, sl_err *err)
{
    char pg[PATH_MAX], data[PATH_MAX], run[PATH_MAX], log[PATH_MAX], conf[PATH_MAX + 64];
    char *args[] = {"-D",
                    data,
                    "-U",
                    GW_PG_SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=reject",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--data-checksums",
                    "--no-instructions",
                    NULL};
    FILE *f;
    sl_code rc;

    snprintf(pg, sizeof pg, "%s/pg", cfg->data_dir);
    snprintf(data, sizeof data, "%s/pg/data", cfg->data_dir);
    snprintf(run, sizeof run, "%s/pg/run", cfg->data_dir);
    snprintf(log, sizeof log, "%s/pg/log", cfg->data_dir);
    if (strlen(run) + strlen("/.s.PGSQL.5432") >= 107)
        return sl_err_set(err, SL_EINVALID,
                          "data directory path too long for a Unix socket (%zu bytes; use a "
                          "shorter path)",
                          strlen(cfg->data_dir));
    if ((rc = check_traversable(cfg, err)) != SL_OK)
        return rc;
    if ((rc = mkdir_owned(cfg, pg, 0700, err)) != SL_OK ||
        (rc = mkdir_owned(cfg, run, 0700, err)) != SL_OK ||
        (rc = mkdir_owned(cfg, log, 0700, err)) != SL_OK)
        return rc;
    if ((rc = run_pg(cfg, "initdb", args, err)) != SL_OK)
        return rc;
    /* Only the Unix socket inside the data directory; no TCP at all. */
    snprintf(conf, sizeof conf, "%s/postgresql.conf", data);
    f = fopen(conf, "a");
    if (f == NULL)
        return sl_err_set(err, SL_EIO, "could not open %s: %s", conf, strerror(errno));
    fprintf(f,
            "\n# sluice: embedded cluster, Unix socket only\n"
            "listen_addresses = ''\n"
            "unix_socket_directories = '%s'\n"
            "unix_socket_permissions = 0700\n"
            "max_connections = 100\n"
            "logging_collector = off\n"
            "log_min_messages = warning\n"
            "log_statement = 'none'\n"
            "log_min_error_statement = panic\n"
            "password_encryption = 'scram-sha-256'\n",
            run);
    if (fclose(f) != 0)
        return sl_err_set(err, SL_EIO, "could not write %s", conf);
    return SL_OK;
}

sl_code
gw_pg_start(const gw_config *cfg, sl_err *err)
{
    char data[PATH_MAX], log[PATH_MAX];
    char *args[] = {"-D", data, "-l", log, "-w", "-t", "60", "-s", "start", NULL};
    char *status[] = {"-D", data, "-s", "status", NULL};
    sl_err ignored;

    snprintf(data, sizeof data, "%s/pg/data", cfg->data_dir);
    snprintf(log, sizeof log, "%s/pg/log/postgresql.log", cfg->data_dir);
    /* A cluster still running here was left by a gateway that died without stopping it
     * (killed): the caller holds the data directory's serve lock, so no live gateway
     * uses it. It is stopped (its crash recovery is PostgreSQL's) and started anew. */
    if (run_pg(cfg, "pg_ctl", status, &ignored) == SL_OK) {
        sl_warn("the embedded PostgreSQL was left running by a gateway that did not stop; "
                "restarting it");
        if (gw_pg_stop(cfg, err) != SL_OK)
            return err->code;
    }
    return run_pg(cfg, "pg_ctl", args, err);
}

sl_code
gw_pg_stop(const gw_config *cfg, sl_err *err)
{
    char data[PATH_MAX];
    char *args[] = {"-D", data, "-m", "fast", "-w", "-t", "60", "-s", "stop", NULL};

    snprintf(data, sizeof data, "%s/pg/data", cfg->data_dir);
    return run_pg(cfg, "pg_ctl", args, err);
}

/* store.c — the search's SQLite database (see store.h; the schema is the `migrations` table
 * below and docs/search.md).
 *
 * Every sqlite3_* call is checked. Statements go through the small q_* layer: a bind failure is
 * remembered and reported at the step, and every failure message reads
 *   "search DB '<path>': <what the statement was for> failed: <sqlite message> (<what to do>)". */
#include "store.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum { BUSY_TIMEOUT_MS = 10000 }; /* how long a connection waits for another's lock */

struct ast_store {
    sqlite3 *db;
    char *path;
    int readonly;
    int version;          /* schema version after open */
    long pid;             /* lock identity of this process */
    char host[256];
    char proc_start[32];  /* /proc/self/stat starttime: tells a reused pid apart */
    double last_beat;     /* ast_now_sec() of the last lock heartbeat written */
};

/* ast_store_touch writes at most one heartbeat per this many seconds (each is a commit with an
 * fsync; the stale limit is AST_STORE_STALE_LOCK_SECONDS). */
#define TOUCH_MIN_SECONDS 10.0

/* ---- schema: one migration step per version ------------------------------------------------ */
typedef struct {
    int version;
    const char *what;
    const char *sql;
} migration;

static const migration migrations[] = {
    {1, "create the tables",
     "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
     "CREATE TABLE runs("
     " id INTEGER PRIMARY KEY,"
     " created TEXT NOT NULL, updated TEXT NOT NULL,"
     " config_key TEXT NOT NULL,"
     " config TEXT NOT NULL,"
     " model_id TEXT NOT NULL, checkpoint_hash TEXT NOT NULL,"
     " frames INTEGER NOT NULL, height INTEGER NOT NULL, width INTEGER NOT NULL,"
     " steps INTEGER NOT NULL, sampler TEXT NOT NULL, shift REAL NOT NULL,"
     " guidance REAL NOT NULL, target_speedup REAL NOT NULL,"
     " ga_params TEXT NOT NULL, seed INTEGER NOT NULL,"
     " backend TEXT NOT NULL, device TEXT NOT NULL,"
     " status TEXT NOT NULL CHECK (status IN ('running','interrupted','failed','done')),"
     " generation INTEGER NOT NULL DEFAULT 0,"
     " rng_state TEXT NOT NULL,"
     " evaluations INTEGER NOT NULL DEFAULT 0,"
     " device_seconds REAL NOT NULL DEFAULT 0,"
     " best_candidate INTEGER,"
     " measured_dense_s REAL, measured_best_s REAL, measured_speedup REAL);"
     "CREATE INDEX runs_by_key ON runs(config_key);"
     "CREATE TABLE generations("
     " run_id INTEGER NOT NULL REFERENCES runs(id),"
     " generation INTEGER NOT NULL,"
     " rng_state TEXT NOT NULL,"
     " started TEXT NOT NULL,"
     " PRIMARY KEY (run_id, generation));"
     "CREATE TABLE candidates("
     " id INTEGER PRIMARY KEY,"
     " run_id INTEGER NOT NULL REFERENCES runs(id),"
     " generation INTEGER NOT NULL, idx INTEGER NOT NULL,"
     " genome TEXT NOT NULL, origin TEXT NOT NULL,"
     " parent_a INTEGER, parent_b INTEGER,"
     " mse REAL, psnr REAL, ssim REAL, per_prompt TEXT,"
     " predicted_s REAL NOT NULL, predicted_speedup REAL NOT NULL, measured_s REAL,"
     " eval_seconds REAL NOT NULL, reused_from INTEGER,"
     " created TEXT NOT NULL,"
     " UNIQUE (run_id, generation, idx));"
     "CREATE TABLE dense_refs("
     " id INTEGER PRIMARY KEY,"
     " key TEXT NOT NULL UNIQUE,"
     " model_id TEXT NOT NULL, checkpoint_hash TEXT NOT NULL, backend TEXT NOT NULL,"
     " prompt TEXT NOT NULL, noise_seed INTEGER NOT NULL,"
     " channels INTEGER NOT NULL, frames INTEGER NOT NULL,"
     " height INTEGER NOT NULL, width INTEGER NOT NULL,"
     " latent BLOB NOT NULL,"
     " seconds REAL NOT NULL, created TEXT NOT NULL);"
     "CREATE TABLE latency_model("
     " run_id INTEGER PRIMARY KEY REFERENCES runs(id),"
     " device TEXT NOT NULL, branches INTEGER NOT NULL,"
     " points TEXT NOT NULL, a REAL NOT NULL, b REAL NOT NULL, r2 REAL NOT NULL,"
     " dense_s REAL NOT NULL,"
     " created TEXT NOT NULL);"},
    {2, "add run locks, a fitness index and the Pareto view",
     "CREATE TABLE locks("
     " run_id INTEGER PRIMARY KEY REFERENCES runs(id),"
     " pid INTEGER NOT NULL, host TEXT NOT NULL, proc_start TEXT NOT NULL,"
     " acquired TEXT NOT NULL, heartbeat REAL NOT NULL);"
     "CREATE INDEX candidates_by_fitness ON candidates(run_id, mse);"
     "CREATE VIEW pareto AS"
     " SELECT c.* FROM candidates c"
     " WHERE c.mse IS NOT NULL AND c.reused_from IS NULL AND NOT EXISTS ("
     "  SELECT 1 FROM candidates d"
     "  WHERE d.run_id = c.run_id AND d.mse IS NOT NULL AND d.reused_from IS NULL"
     "   AND d.predicted_speedup >= c.predicted_speedup AND d.mse <= c.mse"
     "   AND (d.predicted_speedup > c.predicted_speedup OR d.mse < c.mse));"},
    {3, "add the per-step overhead to the latency model",
     "ALTER TABLE latency_model ADD COLUMN step_s REAL NOT NULL DEFAULT 0;"},
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(sizeof migrations / sizeof migrations[0] == AST_STORE_SCHEMA_VERSION,
               "one migration step per schema version");

/* ---- error reporting and the statement layer ----------------------------------------------- */

static const char *hint(int rc) {
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return " (another process kept the DB busy for more than 10 s; try again, or pass --db "
               "with another path)";
    case SQLITE_READONLY:
        return " (the DB or its folder is read-only: check the permissions, or pass --db with a "
               "writable path)";
    case SQLITE_FULL: return " (the disk is full)";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return " (the file is damaged or is not a search DB: pass --db with another path)";
    case SQLITE_CANTOPEN: return " (check that the folder exists and is writable)";
    case SQLITE_IOERR: return " (an I/O error: check the disk)";
    default: return "";
    }
}

static int db_fail(ast_store *s, int rc, const char *purpose) {
    const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    return ast_fail("search DB '%s': %s failed: %s%s", s->path, purpose, msg, hint(rc));
}

typedef struct {
    ast_store *s;
    sqlite3_stmt *st;
    const char *purpose;
    int rc; /* first bind failure */
} q_t;

/* sqlite3_exec callback of PRAGMA journal_mode: the mode, into a char[16]. */
static int journal_mode_row(void *user, int n, char **vals, char **names) {
    (void)names;
    if (n > 0 && vals[0]) snprintf((char *)user, 16, "%s", vals[0]);
    return 0;
}

static int q_prep(q_t *q, ast_store *s, const char *sql, const char *purpose) {
    q->s = s;
    q->st = NULL;
    q->purpose = purpose;
    q->rc = SQLITE_OK;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &q->st, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(q->st);
        q->st = NULL;
        return db_fail(s, rc, purpose);
    }
    return 0;
}

static void q_check(q_t *q, int rc) {
    if (rc != SQLITE_OK && q->rc == SQLITE_OK) q->rc = rc;
}
static void q_int(q_t *q, int i, int64_t v) { q_check(q, sqlite3_bind_int64(q->st, i, v)); }
static void q_dbl(q_t *q, int i, double v) {
    q_check(q, isnan(v) ? sqlite3_bind_null(q->st, i) : sqlite3_bind_double(q->st, i, v));
}
static void q_id(q_t *q, int i, int64_t v) { /* 0 -> NULL */
    q_check(q, v ? sqlite3_bind_int64(q->st, i, v) : sqlite3_bind_null(q->st, i));
}
static void q_text(q_t *q, int i, const char *v) {
    q_check(q, v ? sqlite3_bind_text(q->st, i, v, -1, SQLITE_TRANSIENT)
                 : sqlite3_bind_null(q->st, i));
}

/* 1: a row, 0: done, -1: error (message set). */
static int q_step(q_t *q) {
    if (q->rc != SQLITE_OK) return db_fail(q->s, q->rc, q->purpose);
    int rc = sqlite3_step(q->st);
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE) return 0;
    return db_fail(q->s, rc, q->purpose);
}

static void q_end(q_t *q) {
    sqlite3_finalize(q->st); /* repeats the step's error, which q_step already reported */
    q->st = NULL;
}

/* Runs a statement that returns no rows (or whose rows are ignored). */
static int q_run(q_t *q) {
    int rc;
    while ((rc = q_step(q)) == 1) {
    }
    q_end(q);
    return rc;
}

static int db_exec(ast_store *s, const char *sql, const char *purpose) {
    char *err = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        ast_error_set("search DB '%s': %s failed: %s%s", s->path, purpose,
                      err ? err : sqlite3_errstr(rc), hint(rc));
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

static double col_dbl(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}
static void col_text(sqlite3_stmt *st, int i, char *out, size_t len) {
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, len, "%s", t ? (const char *)t : "");
}
static char *col_strdup(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? ast_strdup((const char *)t) : NULL;
}

static int tx_begin(ast_store *s, const char *purpose) {
    char what[160];
    snprintf(what, sizeof what, "starting a transaction for %s", purpose);
    return db_exec(s, "BEGIN IMMEDIATE", what);
}
static int tx_commit(ast_store *s) { return db_exec(s, "COMMIT", "committing a transaction"); }
/* Keeps the error that made us roll back. */
static void tx_rollback(ast_store *s) {
    if (sqlite3_get_autocommit(s->db)) return;
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", ast_error_get());
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* failure leaves SQLite to roll back */
    ast_error_set("%s", keep);
}

static double unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- RNG text --------------------------------------------------------------------------------- */
void ast_rng_format(const ast_rng *r, char out[65]) {
    snprintf(out, 65, "%016llx%016llx%016llx%016llx", (unsigned long long)r->s[0],
             (unsigned long long)r->s[1], (unsigned long long)r->s[2],
             (unsigned long long)r->s[3]);
}

int ast_rng_parse(const char *text, ast_rng *r) {
    if (!text || strlen(text) != 64) return ast_fail("bad RNG state '%s' (64 hex digits)", text);
    for (int i = 0; i < 4; i++) {
        char part[17];
        memcpy(part, text + 16 * i, 16);
        part[16] = 0;
        char *end = NULL;
        r->s[i] = strtoull(part, &end, 16);
        if (*end) return ast_fail("bad RNG state '%s' (64 hex digits)", text);
    }
    return 0;
}

/* ---- open, check, migrate ------------------------------------------------------------------ */

static void read_proc_start(long pid, char *out, size_t len) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p) return;
    /* after ')' come fields 3.. ; starttime is field 22 */
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        if (++field == 22) {
            snprintf(out, len, "%s", tok);
            return;
        }
    }
}

static int pragma_int(ast_store *s, const char *sql, const char *purpose, int64_t *out) {
    q_t q;
    if (q_prep(&q, s, sql, purpose) != 0) return -1;
    int rc = q_step(&q);
    if (rc == 1) *out = sqlite3_column_int64(q.st, 0);
    q_end(&q);
    if (rc == 0) return ast_fail("search DB '%s': %s returned nothing", s->path, purpose);
    return rc < 0 ? -1 : 0;
}

static int migrate(ast_store *s, int target) {
    if (tx_begin(s, "migrating the schema") != 0) return -1;
    int64_t v = 0;
    if (pragma_int(s, "PRAGMA user_version", "reading the schema version", &v) != 0) goto fail;
    for (int i = 0; i < N_MIGRATIONS && migrations[i].version <= target; i++) {
        if (migrations[i].version <= v) continue;
        char purpose[160];
        snprintf(purpose, sizeof purpose, "schema migration %d (%s)", migrations[i].version,
                 migrations[i].what);
        if (db_exec(s, migrations[i].sql, purpose) != 0) goto fail;
        char sql[160], date[32];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", migrations[i].version);
        if (db_exec(s, sql, "recording the schema version") != 0) goto fail;
        ast_utc_date(date);
        q_t q;
        if (q_prep(&q, s, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
                   "recording a migration in meta") != 0)
            goto fail;
        char key[48], val[96];
        snprintf(key, sizeof key, "migration.%d", migrations[i].version);
        snprintf(val, sizeof val, "%s astraea %s", date, AST_VERSION_STRING);
        q_text(&q, 1, key);
        q_text(&q, 2, val);
        if (q_run(&q) != 0) goto fail;
        v = migrations[i].version;
    }
    char sql[512];
    snprintf(sql, sizeof sql,
             "PRAGMA application_id = %d;"
             "INSERT OR REPLACE INTO meta(key, value) VALUES ('app', 'astraea-search');"
             "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '%d');",
             AST_STORE_APP_ID, (int)v);
    if (db_exec(s, sql, "marking the file as an astraea search DB") != 0) goto fail;
    if (tx_commit(s) != 0) goto fail;
    s->version = (int)v;
    return 0;
fail:
    tx_rollback(s);
    return -1;
}

static int dir_and_file_writable(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof dir, ".");
    return access(path, W_OK) == 0 && access(dir, W_OK) == 0;
}

/* "file:<path, percent-escaped>?immutable=1" */
static char *immutable_uri(const char *path) {
    size_t n = strlen(path);
    char *u = ast_malloc(3 * n + 32, "a DB file name");
    if (!u) return NULL;
    char *o = u + sprintf(u, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (*p == '%' || *p == '?' || *p == '#' || *p < 0x20) o += sprintf(o, "%%%02X", *p);
        else *o++ = (char)*p;
    }
    strcpy(o, "?immutable=1");
    return u;
}

static int store_open(const char *path, int readonly, int target, ast_store **out) {
    *out = NULL;
    ast_store *s = ast_calloc(1, sizeof *s, "the search DB handle");
    if (!s) return -1;
    s->path = ast_strdup(path);
    s->readonly = readonly;
    s->pid = (long)getpid();
    if (gethostname(s->host, sizeof s->host - 1) != 0) snprintf(s->host, sizeof s->host, "?");
    read_proc_start(s->pid, s->proc_start, sizeof s->proc_start);
    if (!s->path) goto fail;

    if (readonly && access(path, F_OK) != 0) {
        ast_error_set("no search DB at '%s' (run astraea-search first, or pass --db with the DB "
                      "it wrote)",
                      path);
        goto fail;
    }
    if (!readonly && access(path, F_OK) == 0 && access(path, W_OK) != 0) {
        ast_error_set("search DB '%s' is read-only (check its permissions, or pass --db with a "
                      "writable path)",
                      path);
        goto fail;
    }
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    char *uri = NULL;
    if (readonly && !dir_and_file_writable(path)) {
        /* Reading a WAL database needs its -shm file, which cannot be made here: open the file
         * as immutable instead (nobody can be writing a file we may not write either). */
        uri = immutable_uri(path);
        if (!uri) goto fail;
        flags |= SQLITE_OPEN_URI;
    }
    int rc = sqlite3_open_v2(uri ? uri : path, &s->db, flags, NULL);
    free(uri);
    if (rc != SQLITE_OK) {
        db_fail(s, rc, "opening the DB");
        goto fail;
    }
    if (sqlite3_extended_result_codes(s->db, 1) != SQLITE_OK ||
        sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS) != SQLITE_OK) {
        db_fail(s, sqlite3_errcode(s->db), "configuring the connection");
        goto fail;
    }
    if (!readonly && sqlite3_db_readonly(s->db, "main") == 1) {
        ast_error_set("search DB '%s' could only be opened read-only (check the permissions of "
                      "the file and its folder, or pass --db with a writable path)",
                      path);
        goto fail;
    }

    /* Is it SQLite, is it ours, is it too new? */
    int64_t app = 0, version = 0, tables = 0;
    {
        q_t q;
        if (q_prep(&q, s, "PRAGMA application_id", "reading the file header") != 0) {
            if ((sqlite3_errcode(s->db) & 0xff) == SQLITE_NOTADB)
                ast_error_set("'%s' is not an SQLite database, so not an astraea search DB "
                              "(pass --db with another path)",
                              path);
            goto fail;
        }
        rc = sqlite3_step(q.st);
        if (rc != SQLITE_ROW) {
            int code = sqlite3_errcode(s->db) & 0xff;
            if (code == SQLITE_NOTADB)
                ast_error_set("'%s' is not an SQLite database, so not an astraea search DB "
                              "(pass --db with another path)",
                              path);
            else
                db_fail(s, rc, "reading the file header");
            q_end(&q);
            goto fail;
        }
        app = sqlite3_column_int64(q.st, 0);
        q_end(&q);
    }
    if (pragma_int(s, "PRAGMA user_version", "reading the schema version", &version) != 0 ||
        pragma_int(s, "SELECT count(*) FROM sqlite_master", "listing the tables", &tables) != 0)
        goto fail;
    if (app != AST_STORE_APP_ID && (app != 0 || tables > 0)) {
        ast_error_set("'%s' is an SQLite database of another program (application_id 0x%08llx, "
                      "%lld tables), not an astraea search DB; pass --db with another path",
                      path, (unsigned long long)(uint32_t)app, (long long)tables);
        goto fail;
    }
    if (version > AST_STORE_SCHEMA_VERSION) {
        ast_error_set("search DB '%s' was made by a newer astraea (schema %lld > %d); upgrade "
                      "astraea or use another --db",
                      path, (long long)version, AST_STORE_SCHEMA_VERSION);
        goto fail;
    }
    s->version = (int)version;
    if (readonly) {
        if (version < AST_STORE_SCHEMA_VERSION) {
            ast_error_set("search DB '%s' has schema %lld, older than this astraea's %d; run "
                          "'astraea-search --list --db %s' once to upgrade it",
                          path, (long long)version, AST_STORE_SCHEMA_VERSION, path);
            goto fail;
        }
    } else {
        /* WAL: readers never block the writer; each commit is one append to the log. The
         * switch can answer SQLITE_BUSY at once, without the busy handler, while another
         * process is creating or switching the same new file: retry for the busy timeout. */
        char mode[16] = "";
        for (int tries = 0;; tries++) {
            rc = sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", journal_mode_row, mode, NULL);
            if (rc == SQLITE_OK) break;
            if (((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) &&
                tries < BUSY_TIMEOUT_MS / 50) {
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
                continue;
            }
            db_fail(s, rc, "switching to WAL mode");
            goto fail;
        }
        if (strcmp(mode, "wal") != 0) {
            ast_error_set("search DB '%s': cannot switch to WAL mode (journal mode stays '%s'; "
                          "is it on a network file system? pass --db with a local path)",
                          path, mode);
            goto fail;
        }
        if (db_exec(s, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON",
                    "setting durability") != 0)
            goto fail;
        if (version < target && migrate(s, target) != 0) goto fail;
    }
    *out = s;
    return 0;
fail:
    ast_store_close(s);
    return -1;
}

int ast_store_open(const char *path, int readonly, ast_store **out) {
    return store_open(path, readonly, AST_STORE_SCHEMA_VERSION, out);
}

int ast_store_open_version(const char *path, int version, ast_store **out) {
    return store_open(path, 0, version, out);
}

void ast_store_close(ast_store *s) {
    if (!s) return;
    if (s->db) sqlite3_close_v2(s->db); /* statements are always finalized: this closes */
    free(s->path);
    free(s);
}

const char *ast_store_path(const ast_store *s) { return s->path; }
int ast_store_schema_version(const ast_store *s) { return s->version; }

/* ---- runs ---------------------------------------------------------------------------------- */

const char *ast_run_status_name(ast_run_status st) {
    static const char *names[] = {"running", "interrupted", "failed", "done"};
    return (unsigned)st < 4 ? names[st] : "?";
}

static ast_run_status status_from(const char *name) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, ast_run_status_name((ast_run_status)i)) == 0) return (ast_run_status)i;
    return AST_RUN_FAILED;
}

void ast_run_info_free(ast_run_info *r) {
    free(r->config_json);
    free(r->ga_params_json);
    r->config_json = r->ga_params_json = NULL;
}

void ast_runs_free(ast_run_info *r, int n) {
    for (int i = 0; r && i < n; i++) ast_run_info_free(&r[i]);
    free(r);
}

int ast_store_run_find(ast_store *s, const char *config_key, int64_t *id) {
    q_t q;
    if (q_prep(&q, s, "SELECT id FROM runs WHERE config_key = ?1 ORDER BY id DESC LIMIT 1",
               "looking up a run by its parameters") != 0)
        return -1;
    q_text(&q, 1, config_key);
    int rc = q_step(&q);
    if (rc == 1) *id = sqlite3_column_int64(q.st, 0);
    q_end(&q);
    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

/* Inserts the run row and its generation-0 RNG state; the caller holds a transaction. */
static int run_insert(ast_store *s, ast_run_info *r) {
    char date[32], rng[65];
    ast_utc_date(date);
    ast_rng_format(&r->rng, rng);
    q_t q;
    if (q_prep(&q, s,
               "INSERT INTO runs(created, updated, config_key, config, model_id, checkpoint_hash,"
               " frames, height, width, steps, sampler, shift, guidance, target_speedup,"
               " ga_params, seed, backend, device, status, generation, rng_state)"
               " VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
               " ?16, ?17, 'running', 0, ?18)",
               "creating a run") != 0)
        return -1;
    q_text(&q, 1, date);
    q_text(&q, 2, r->config_key);
    q_text(&q, 3, r->config_json);
    q_text(&q, 4, r->model_id);
    q_text(&q, 5, r->checkpoint_hash);
    q_int(&q, 6, r->frames);
    q_int(&q, 7, r->height);
    q_int(&q, 8, r->width);
    q_int(&q, 9, r->steps);
    q_text(&q, 10, r->sampler);
    q_dbl(&q, 11, r->shift);
    q_dbl(&q, 12, r->guidance);
    q_dbl(&q, 13, r->target_speedup);
    q_text(&q, 14, r->ga_params_json);
    q_int(&q, 15, (int64_t)r->seed);
    q_text(&q, 16, r->backend);
    q_text(&q, 17, r->device);
    q_text(&q, 18, rng);
    if (q_run(&q) != 0) return -1;
    r->id = sqlite3_last_insert_rowid(s->db);
    if (q_prep(&q, s,
               "INSERT INTO generations(run_id, generation, rng_state, started)"
               " VALUES (?1, 0, ?2, ?3)",
               "recording the RNG state of generation 0") != 0)
        return -1;
    q_int(&q, 1, r->id);
    q_text(&q, 2, rng);
    q_text(&q, 3, date);
    if (q_run(&q) != 0) return -1;
    snprintf(r->created, sizeof r->created, "%s", date);
    snprintf(r->updated, sizeof r->updated, "%s", date);
    r->status = AST_RUN_RUNNING;
    r->generation = 0;
    r->evaluations = 0;
    r->device_seconds = 0;
    r->best_candidate = 0;
    r->measured_dense_s = r->measured_best_s = r->measured_speedup = NAN;
    return 0;
}

int ast_store_run_create(ast_store *s, ast_run_info *r) {
    if (tx_begin(s, "creating a run") != 0) return -1;
    if (run_insert(s, r) != 0 || tx_commit(s) != 0) {
        tx_rollback(s);
        return -1;
    }
    return 0;
}

int ast_store_run_find_or_create(ast_store *s, ast_run_info *r, int *created) {
    *created = 0;
    if (tx_begin(s, "finding or creating a run") != 0) return -1;
    int64_t id = 0;
    int rc = ast_store_run_find(s, r->config_key, &id);
    if (rc == 0) r->id = id;
    if (rc == 1) {
        rc = run_insert(s, r);
        *created = rc == 0;
    }
    if (rc < 0 || tx_commit(s) != 0) {
        tx_rollback(s);
        return -1;
    }
    return 0;
}

#define RUN_COLUMNS                                                                            \
    "id, created, updated, config_key, config, model_id, checkpoint_hash, frames, height,"    \
    " width, steps, sampler, shift, guidance, target_speedup, ga_params, seed, backend,"      \
    " device, status, generation, rng_state, evaluations, device_seconds, best_candidate,"    \
    " measured_dense_s, measured_best_s, measured_speedup"

static int run_from_row(ast_store *s, sqlite3_stmt *st, ast_run_info *r) {
    memset(r, 0, sizeof *r);
    char status[16], rng[80];
    r->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, r->created, sizeof r->created);
    col_text(st, 2, r->updated, sizeof r->updated);
    col_text(st, 3, r->config_key, sizeof r->config_key);
    r->config_json = col_strdup(st, 4);
    col_text(st, 5, r->model_id, sizeof r->model_id);
    col_text(st, 6, r->checkpoint_hash, sizeof r->checkpoint_hash);
    r->frames = sqlite3_column_int(st, 7);
    r->height = sqlite3_column_int(st, 8);
    r->width = sqlite3_column_int(st, 9);
    r->steps = sqlite3_column_int(st, 10);
    col_text(st, 11, r->sampler, sizeof r->sampler);
    r->shift = sqlite3_column_double(st, 12);
    r->guidance = sqlite3_column_double(st, 13);
    r->target_speedup = sqlite3_column_double(st, 14);
    r->ga_params_json = col_strdup(st, 15);
    r->seed = (uint64_t)sqlite3_column_int64(st, 16);
    col_text(st, 17, r->backend, sizeof r->backend);
    col_text(st, 18, r->device, sizeof r->device);
    col_text(st, 19, status, sizeof status);
    r->status = status_from(status);
    r->generation = sqlite3_column_int(st, 20);
    col_text(st, 21, rng, sizeof rng);
    r->evaluations = sqlite3_column_int64(st, 22);
    r->device_seconds = sqlite3_column_double(st, 23);
    r->best_candidate = sqlite3_column_int64(st, 24);
    r->measured_dense_s = col_dbl(st, 25);
    r->measured_best_s = col_dbl(st, 26);
    r->measured_speedup = col_dbl(st, 27);
    if (!r->config_json || !r->ga_params_json || ast_rng_parse(rng, &r->rng) != 0) {
        ast_run_info_free(r);
        return ast_fail("search DB '%s': run %lld is damaged (config, GA parameters or RNG "
                        "state unreadable)",
                        s->path, (long long)r->id);
    }
    return 0;
}

int ast_store_run_get(ast_store *s, int64_t id, ast_run_info *r) {
    q_t q;
    if (q_prep(&q, s, "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?1", "reading a run") != 0)
        return -1;
    q_int(&q, 1, id);
    int rc = q_step(&q);
    if (rc == 1) rc = run_from_row(s, q.st, r) == 0 ? 1 : -1;
    q_end(&q);
    if (rc == 0)
        return ast_fail("search DB '%s' has no run %lld (see astraea-search --list --db %s)",
                        s->path, (long long)id, s->path);
    return rc < 0 ? -1 : 0;
}

int ast_store_run_latest(ast_store *s, int64_t *id) {
    q_t q;
    if (q_prep(&q, s, "SELECT id FROM runs ORDER BY id DESC LIMIT 1", "finding the latest run") !=
        0)
        return -1;
    int rc = q_step(&q);
    if (rc == 1) *id = sqlite3_column_int64(q.st, 0);
    q_end(&q);
    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

int ast_store_runs_list(ast_store *s, ast_run_info **out, int *n) {
    *out = NULL;
    *n = 0;
    q_t q;
    if (q_prep(&q, s, "SELECT " RUN_COLUMNS " FROM runs ORDER BY id", "listing the runs") != 0)
        return -1;
    int cap = 0, rc;
    ast_run_info *v = NULL;
    while ((rc = q_step(&q)) == 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            ast_run_info *nv = realloc(v, sizeof *v * (size_t)cap);
            if (!nv) {
                rc = ast_fail("out of memory listing the runs");
                break;
            }
            v = nv;
        }
        if (run_from_row(s, q.st, &v[*n]) != 0) {
            rc = -1;
            break;
        }
        (*n)++;
    }
    q_end(&q);
    if (rc < 0) {
        ast_runs_free(v, *n);
        *n = 0;
        return -1;
    }
    *out = v;
    return 0;
}

/* UPDATE runs SET <set> WHERE id = ?1, with one optional double/text parameter as ?2. */
static int run_update(ast_store *s, int64_t run, const char *set, const char *purpose,
                      const char *text, double num) {
    char sql[512], date[32];
    snprintf(sql, sizeof sql, "UPDATE runs SET %s, updated = ?3 WHERE id = ?1", set);
    ast_utc_date(date);
    q_t q;
    if (q_prep(&q, s, sql, purpose) != 0) return -1;
    q_int(&q, 1, run);
    if (text) q_text(&q, 2, text);
    else q_dbl(&q, 2, num);
    q_text(&q, 3, date);
    return q_run(&q);
}

int ast_store_run_set_status(ast_store *s, int64_t run, ast_run_status st) {
    return run_update(s, run, "status = ?2", "setting the run's status", ast_run_status_name(st),
                      0);
}

int ast_store_run_add_cost(ast_store *s, int64_t run, double device_seconds) {
    return run_update(s, run, "device_seconds = device_seconds + ?2",
                      "adding to the run's search cost", NULL, device_seconds);
}

int ast_store_run_set_device(ast_store *s, int64_t run, const char *device) {
    return run_update(s, run, "device = ?2", "recording the run's device", device, 0);
}

int ast_store_run_set_measured(ast_store *s, int64_t run, int64_t best, double dense_s,
                               double best_s) {
    char date[32];
    ast_utc_date(date);
    q_t q;
    if (q_prep(&q, s,
               "UPDATE runs SET best_candidate = ?2, measured_dense_s = ?3, measured_best_s = ?4,"
               " measured_speedup = ?5, updated = ?6 WHERE id = ?1",
               "recording the measured speedup") != 0)
        return -1;
    q_int(&q, 1, run);
    q_id(&q, 2, best);
    q_dbl(&q, 3, dense_s);
    q_dbl(&q, 4, best_s);
    q_dbl(&q, 5, best_s > 0 ? dense_s / best_s : NAN);
    q_text(&q, 6, date);
    return q_run(&q);
}

/* ---- run locks ----------------------------------------------------------------------------- */

/* Inside a transaction: 0 when this process holds run's lock, -1 (message set) otherwise. */
static int lock_held(ast_store *s, int64_t run) {
    q_t q;
    if (q_prep(&q, s, "SELECT pid, host, proc_start FROM locks WHERE run_id = ?1",
               "checking the run's lock") != 0)
        return -1;
    q_int(&q, 1, run);
    int rc = q_step(&q), ours = 0;
    char host[256] = "", start[32] = "";
    long pid = 0;
    if (rc == 1) {
        pid = (long)sqlite3_column_int64(q.st, 0);
        col_text(q.st, 1, host, sizeof host);
        col_text(q.st, 2, start, sizeof start);
        ours = pid == s->pid && strcmp(host, s->host) == 0 && strcmp(start, s->proc_start) == 0;
    }
    q_end(&q);
    if (rc < 0) return -1;
    if (rc == 0)
        return ast_fail("search DB '%s': this process does not hold the lock on run %lld "
                        "(take it with ast_store_lock first)",
                        s->path, (long long)run);
    if (!ours)
        return ast_fail("search DB '%s': run %lld was taken over by pid %ld on %s (someone "
                        "used --break-lock); this process stops",
                        s->path, (long long)run, pid, host);
    return 0;
}

static int heartbeat(ast_store *s, int64_t run) {
    q_t q;
    if (q_prep(&q, s, "UPDATE locks SET heartbeat = ?2 WHERE run_id = ?1",
               "updating the lock's heartbeat") != 0)
        return -1;
    q_int(&q, 1, run);
    q_dbl(&q, 2, unix_now());
    s->last_beat = ast_now_sec();
    return q_run(&q);
}

static int proc_alive(long pid, const char *start) {
    if (pid <= 0) return 0;
    if (kill((pid_t)pid, 0) != 0 && errno != EPERM) return 0;
    char now[32];
    read_proc_start(pid, now, sizeof now);
    return !(start[0] && now[0] && strcmp(start, now) != 0); /* pid reused by another process */
}

int ast_store_lock(ast_store *s, int64_t run, int break_lock) {
    if (tx_begin(s, "locking a run") != 0) return -1;
    q_t q;
    if (q_prep(&q, s,
               "SELECT pid, host, proc_start, acquired, heartbeat FROM locks WHERE run_id = ?1",
               "reading the run's lock") != 0)
        goto fail;
    q_int(&q, 1, run);
    int rc = q_step(&q);
    if (rc == 1) {
        long pid = (long)sqlite3_column_int64(q.st, 0);
        char host[256], start[32], acquired[32];
        col_text(q.st, 1, host, sizeof host);
        col_text(q.st, 2, start, sizeof start);
        col_text(q.st, 3, acquired, sizeof acquired);
        double beat = sqlite3_column_double(q.st, 4);
        q_end(&q);
        int same_host = strcmp(host, s->host) == 0;
        int ours = same_host && pid == s->pid && strcmp(start, s->proc_start) == 0;
        if (!ours && !break_lock) {
            if (same_host && proc_alive(pid, start)) {
                ast_error_set("run %lld in search DB '%s' is being searched by another process "
                              "(pid %ld on this host, since %s); wait for it to finish or stop "
                              "it (Ctrl-C stops it cleanly), then run again",
                              (long long)run, s->path, pid, acquired);
                goto fail;
            }
            double idle = unix_now() - beat;
            if (!same_host && idle < AST_STORE_STALE_LOCK_SECONDS) {
                ast_error_set("run %lld in search DB '%s' is being searched by pid %ld on host "
                              "%s (last sign of life %.0f s ago); if that process is gone, wait "
                              "%.0f s or pass --break-lock",
                              (long long)run, s->path, pid, host, idle,
                              AST_STORE_STALE_LOCK_SECONDS - idle);
                goto fail;
            }
        }
    } else {
        q_end(&q);
        if (rc < 0) goto fail;
    }
    char date[32];
    ast_utc_date(date);
    if (q_prep(&q, s,
               "INSERT OR REPLACE INTO locks(run_id, pid, host, proc_start, acquired, heartbeat)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
               "taking the run's lock") != 0)
        goto fail;
    q_int(&q, 1, run);
    q_int(&q, 2, s->pid);
    q_text(&q, 3, s->host);
    q_text(&q, 4, s->proc_start);
    q_text(&q, 5, date);
    q_dbl(&q, 6, unix_now());
    if (q_run(&q) != 0 || tx_commit(s) != 0) goto fail;
    return 0;
fail:
    tx_rollback(s);
    return -1;
}

int ast_store_touch(ast_store *s, int64_t run) {
    if (s->last_beat > 0 && ast_now_sec() - s->last_beat < TOUCH_MIN_SECONDS) return 0;
    return heartbeat(s, run);
}

int ast_store_unlock(ast_store *s, int64_t run) {
    q_t q;
    if (q_prep(&q, s,
               "DELETE FROM locks WHERE run_id = ?1 AND pid = ?2 AND host = ?3 AND proc_start = ?4",
               "releasing the run's lock") != 0)
        return -1;
    q_int(&q, 1, run);
    q_int(&q, 2, s->pid);
    q_text(&q, 3, s->host);
    q_text(&q, 4, s->proc_start);
    return q_run(&q);
}

/* ---- generations --------------------------------------------------------------------------- */

int ast_store_generation_rng(ast_store *s, int64_t run, int gen, ast_rng *rng) {
    q_t q;
    if (q_prep(&q, s, "SELECT rng_state FROM generations WHERE run_id = ?1 AND generation = ?2",
               "reading a generation's RNG state") != 0)
        return -1;
    q_int(&q, 1, run);
    q_int(&q, 2, gen);
    int rc = q_step(&q);
    char text[80] = "";
    if (rc == 1) col_text(q.st, 0, text, sizeof text);
    q_end(&q);
    if (rc < 0) return -1;
    if (rc == 0) return 1;
    if (ast_rng_parse(text, rng) != 0) {
        ast_error_prefix("search DB '%s': run %lld generation %d", s->path, (long long)run, gen);
        return -1;
    }
    return 0;
}

int ast_store_generation_finish(ast_store *s, int64_t run, int next, const ast_rng *rng) {
    char text[65], date[32];
    ast_rng_format(rng, text);
    ast_utc_date(date);
    if (tx_begin(s, "finishing a generation") != 0) return -1;
    if (lock_held(s, run) != 0) goto fail;
    q_t q;
    if (q_prep(&q, s,
               "INSERT OR REPLACE INTO generations(run_id, generation, rng_state, started)"
               " VALUES (?1, ?2, ?3, ?4)",
               "recording the next generation's RNG state") != 0)
        goto fail;
    q_int(&q, 1, run);
    q_int(&q, 2, next);
    q_text(&q, 3, text);
    q_text(&q, 4, date);
    if (q_run(&q) != 0) goto fail;
    if (q_prep(&q, s,
               "UPDATE runs SET generation = ?2, rng_state = ?3, updated = ?4 WHERE id = ?1",
               "advancing the run's generation") != 0)
        goto fail;
    q_int(&q, 1, run);
    q_int(&q, 2, next);
    q_text(&q, 3, text);
    q_text(&q, 4, date);
    if (q_run(&q) != 0 || heartbeat(s, run) != 0 || tx_commit(s) != 0) goto fail;
    return 0;
fail:
    tx_rollback(s);
    return -1;
}

/* ---- candidates ---------------------------------------------------------------------------- */

void ast_cands_free(ast_cand *c, int n) {
    for (int i = 0; c && i < n; i++) free(c[i].per_prompt_json);
    free(c);
}

int ast_store_cand_insert(ast_store *s, ast_cand *c) {
    char genome[4 * AST_GA_MAX_STEPS + 1], date[32];
    ast_ga_format(c->genome, c->steps, genome, sizeof genome);
    ast_utc_date(date);
    if (tx_begin(s, "recording an evaluation") != 0) return -1;
    if (lock_held(s, c->run_id) != 0) goto fail;
    q_t q;
    if (q_prep(&q, s,
               "INSERT INTO candidates(run_id, generation, idx, genome, origin, parent_a,"
               " parent_b, mse, psnr, ssim, per_prompt, predicted_s, predicted_speedup,"
               " measured_s, eval_seconds, reused_from, created)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
               " ?17)",
               "recording an evaluation") != 0)
        goto fail;
    q_int(&q, 1, c->run_id);
    q_int(&q, 2, c->generation);
    q_int(&q, 3, c->index);
    q_text(&q, 4, genome);
    q_text(&q, 5, c->origin);
    q_id(&q, 6, c->parent_a);
    q_id(&q, 7, c->parent_b);
    q_dbl(&q, 8, c->mse);
    /* +inf PSNR (identical to dense) is stored as the REAL infinity SQLite supports */
    q_dbl(&q, 9, c->psnr);
    q_dbl(&q, 10, c->ssim);
    q_text(&q, 11, c->per_prompt_json);
    q_dbl(&q, 12, c->predicted_s);
    q_dbl(&q, 13, c->predicted_speedup);
    q_dbl(&q, 14, c->measured_s);
    q_dbl(&q, 15, c->eval_seconds);
    q_id(&q, 16, c->reused_from);
    q_text(&q, 17, date);
    if (q_run(&q) != 0) goto fail;
    c->id = sqlite3_last_insert_rowid(s->db);
    if (q_prep(&q, s,
               "UPDATE runs SET evaluations = evaluations + ?2,"
               " device_seconds = device_seconds + ?3, updated = ?4 WHERE id = ?1",
               "adding the evaluation to the run's search cost") != 0)
        goto fail;
    q_int(&q, 1, c->run_id);
    q_int(&q, 2, c->reused_from ? 0 : 1);
    q_dbl(&q, 3, c->eval_seconds);
    q_text(&q, 4, date);
    if (q_run(&q) != 0 || heartbeat(s, c->run_id) != 0 || tx_commit(s) != 0) goto fail;
    return 0;
fail:
    tx_rollback(s);
    return -1;
}

#define CAND_COLUMNS                                                                           \
    "id, run_id, generation, idx, genome, origin, parent_a, parent_b, mse, psnr, ssim,"       \
    " per_prompt, predicted_s, predicted_speedup, measured_s, eval_seconds, reused_from"

static int cand_from_row(ast_store *s, sqlite3_stmt *st, ast_cand *c) {
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    c->run_id = sqlite3_column_int64(st, 1);
    c->generation = sqlite3_column_int(st, 2);
    c->index = sqlite3_column_int(st, 3);
    const char *genome = (const char *)sqlite3_column_text(st, 4);
    int steps = 1;
    for (const char *p = genome; p && *p; p++) steps += *p == ',';
    if (!genome || steps > AST_GA_MAX_STEPS || ast_ga_parse(genome, steps, 0, c->genome) != 0)
        return ast_fail("search DB '%s': candidate %lld has a damaged genome", s->path,
                        (long long)c->id);
    c->steps = steps;
    col_text(st, 5, c->origin, sizeof c->origin);
    c->parent_a = sqlite3_column_int64(st, 6);
    c->parent_b = sqlite3_column_int64(st, 7);
    c->mse = col_dbl(st, 8);
    c->psnr = col_dbl(st, 9);
    c->ssim = col_dbl(st, 10);
    c->per_prompt_json = col_strdup(st, 11);
    c->predicted_s = col_dbl(st, 12);
    c->predicted_speedup = col_dbl(st, 13);
    c->measured_s = col_dbl(st, 14);
    c->eval_seconds = col_dbl(st, 15);
    c->reused_from = sqlite3_column_int64(st, 16);
    return 0;
}

static int cands_query(ast_store *s, const char *sql, int64_t key, const char *purpose,
                       ast_cand **out, int *n) {
    *out = NULL;
    *n = 0;
    q_t q;
    if (q_prep(&q, s, sql, purpose) != 0) return -1;
    q_int(&q, 1, key);
    int cap = 0, rc;
    ast_cand *v = NULL;
    while ((rc = q_step(&q)) == 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            ast_cand *nv = realloc(v, sizeof *v * (size_t)cap);
            if (!nv) {
                rc = ast_fail("out of memory reading candidates");
                break;
            }
            v = nv;
        }
        if (cand_from_row(s, q.st, &v[*n]) != 0) {
            rc = -1;
            break;
        }
        (*n)++;
    }
    q_end(&q);
    if (rc < 0) {
        ast_cands_free(v, *n);
        *n = 0;
        return -1;
    }
    *out = v;
    return 0;
}

int ast_store_cands_load(ast_store *s, int64_t run, ast_cand **out, int *n) {
    return cands_query(s,
                       "SELECT " CAND_COLUMNS " FROM candidates WHERE run_id = ?1"
                       " ORDER BY generation, idx",
                       run, "reading the run's candidates", out, n);
}

int ast_store_cand_get(ast_store *s, int64_t id, ast_cand *c) {
    ast_cand *v = NULL;
    int n = 0;
    if (cands_query(s, "SELECT " CAND_COLUMNS " FROM candidates WHERE id = ?1", id,
                    "reading a candidate", &v, &n) != 0)
        return -1;
    if (n == 0) {
        ast_cands_free(v, n);
        return ast_fail("search DB '%s' has no candidate %lld", s->path, (long long)id);
    }
    *c = v[0];
    free(v); /* c now owns v[0].per_prompt_json */
    return 0;
}

int ast_store_cand_set_measured(ast_store *s, int64_t id, double measured_s) {
    q_t q;
    if (q_prep(&q, s, "UPDATE candidates SET measured_s = ?2 WHERE id = ?1",
               "recording a candidate's measured time") != 0)
        return -1;
    q_int(&q, 1, id);
    q_dbl(&q, 2, measured_s);
    return q_run(&q);
}

int ast_store_pareto(ast_store *s, int64_t run, ast_cand **out, int *n) {
    return cands_query(s,
                       "SELECT " CAND_COLUMNS " FROM pareto WHERE run_id = ?1"
                       " ORDER BY predicted_speedup, mse, id",
                       run, "computing the Pareto front", out, n);
}

/* ---- latency model ------------------------------------------------------------------------- */

int ast_store_latency_get(ast_store *s, int64_t run, ast_latency_model *m) {
    q_t q;
    if (q_prep(&q, s, "SELECT branches, points, a, b, r2, dense_s, step_s FROM latency_model"
               " WHERE run_id = ?1",
               "reading the latency model") != 0)
        return -1;
    q_int(&q, 1, run);
    int rc = q_step(&q);
    if (rc == 1) {
        memset(m, 0, sizeof *m);
        m->branches = sqlite3_column_int(q.st, 0);
        const char *pts = (const char *)sqlite3_column_text(q.st, 1);
        m->a = sqlite3_column_double(q.st, 2);
        m->b = sqlite3_column_double(q.st, 3);
        m->r2 = sqlite3_column_double(q.st, 4);
        m->dense_s = sqlite3_column_double(q.st, 5);
        m->step_s = sqlite3_column_double(q.st, 6);
        if (!pts || ast_latency_points_parse(pts, m) != 0) {
            ast_error_prefix("search DB '%s': run %lld", s->path, (long long)run);
            rc = -1;
        }
    }
    q_end(&q);
    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

int ast_store_latency_put(ast_store *s, int64_t run, const ast_latency_model *m,
                          const char *device) {
    char *pts = ast_latency_points_json(m), date[32];
    if (!pts) return -1;
    ast_utc_date(date);
    q_t q;
    int rc = q_prep(&q, s,
                    "INSERT OR REPLACE INTO latency_model(run_id, device, branches, points, a, b,"
                    " r2, dense_s, created, step_s)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    "storing the latency model");
    if (rc == 0) {
        q_int(&q, 1, run);
        q_text(&q, 2, device);
        q_int(&q, 3, m->branches);
        q_text(&q, 4, pts);
        q_dbl(&q, 5, m->a);
        q_dbl(&q, 6, m->b);
        q_dbl(&q, 7, m->r2);
        q_dbl(&q, 8, m->dense_s);
        q_text(&q, 9, date);
        q_dbl(&q, 10, m->step_s);
        rc = q_run(&q);
    }
    free(pts);
    return rc;
}

/* ---- dense references ---------------------------------------------------------------------- */

int ast_store_dense_get(ast_store *s, const char *key, float *out, int64_t n) {
    q_t q;
    if (q_prep(&q, s, "SELECT latent FROM dense_refs WHERE key = ?1",
               "reading a dense reference") != 0)
        return -1;
    q_text(&q, 1, key);
    int rc = q_step(&q);
    if (rc == 1) {
        const void *blob = sqlite3_column_blob(q.st, 0);
        int bytes = sqlite3_column_bytes(q.st, 0);
        if ((int64_t)bytes != n * (int64_t)sizeof(float) || !blob) {
            rc = ast_fail("search DB '%s': the dense reference '%s' holds %d bytes, expected "
                          "%lld floats (damaged DB?)",
                          s->path, key, bytes, (long long)n);
        } else {
            memcpy(out, blob, (size_t)bytes); /* stored little-endian fp32, as in memory here */
        }
    }
    q_end(&q);
    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

int ast_store_dense_put(ast_store *s, const ast_dense_meta *m, const float *x, double seconds) {
    int64_t n = (int64_t)m->c * m->f * m->h * m->w;
    if (n * (int64_t)sizeof(float) > 1000000000)
        return ast_fail("dense reference '%s' is larger than 1 GB; use a smaller clip for the "
                        "search",
                        m->key);
    char date[32];
    ast_utc_date(date);
    q_t q;
    if (q_prep(&q, s,
               "INSERT OR IGNORE INTO dense_refs(key, model_id, checkpoint_hash, backend, prompt,"
               " noise_seed, channels, frames, height, width, latent, seconds, created)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
               "storing a dense reference") != 0)
        return -1;
    q_text(&q, 1, m->key);
    q_text(&q, 2, m->model_id);
    q_text(&q, 3, m->checkpoint_hash);
    q_text(&q, 4, m->backend);
    q_text(&q, 5, m->prompt);
    q_int(&q, 6, (int64_t)m->noise_seed);
    q_int(&q, 7, m->c);
    q_int(&q, 8, m->f);
    q_int(&q, 9, m->h);
    q_int(&q, 10, m->w);
    q_check(&q, sqlite3_bind_blob(q.st, 11, x, (int)(n * (int64_t)sizeof(float)),
                                  SQLITE_TRANSIENT));
    q_dbl(&q, 12, seconds);
    q_text(&q, 13, date);
    return q_run(&q);
}

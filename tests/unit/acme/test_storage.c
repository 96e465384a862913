/* test_storage.c - the shared on-disk storage: names and paths, modes, atomic writes under
 * SIGKILL, temp-file cleaning, per-name locks (also raced by two processes), and listing.
 *
 * Everything happens in a mkdtemp directory that is removed at the end. Certificates for
 * the listing are made with the openssl command line; their notAfter is read back with
 * `date`, so the check does not reuse the code under test.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "acme_int.h"
#include "check.h"

#define BIG (8u << 20)
#define CRASH_ROUNDS 20
#define RACE_ROUNDS 50
#define CRASH_PATH "challenges/big.json"

static char dir[] = "/tmp/moat-storage-test-XXXXXX";

/* Returns dir/name; the text stays valid for the next three calls. */
static const char *at(const char *name)
{
    static char ring[4][1024];
    static unsigned next;
    char *p = ring[next++ % 4];
    int n = snprintf(p, sizeof(ring[0]), "%s/%s", dir, name);
    return n > 0 && (size_t)n < sizeof(ring[0]) ? p : "/nonexistent";
}

/* Runs a shell command inside dir, quietly. Returns true when it exited with 0. */
static bool run(const char *cmd)
{
    char line[2048];
    int n = snprintf(line, sizeof(line), "cd '%s' && (%s) >/dev/null 2>&1", dir, cmd);
    int rc = n > 0 && (size_t)n < sizeof(line) ? system(line) : -1;
    if (rc != 0) {
        fprintf(stderr, "command failed (%d): %s\n", rc, line);
    }
    return rc == 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = malloc(1 << 16);
    size_t n = buf != NULL ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
    }
    *len = n;
    return buf;
}

static bool put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return false;
    }
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static int mode_of(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int)(sb.st_mode & 07777) : -1;
}

static bool exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

/* Entries of path whose names contain ".tmp." */
static int count_temps(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e = d != NULL ? readdir(d) : NULL; e != NULL; e = readdir(d)) {
        n += strstr(e->d_name, ".tmp.") != NULL;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e = d != NULL ? readdir(d) : NULL; e != NULL; e = readdir(d)) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

static void test_ca_key(void)
{
    char *k = acme_storage_ca_key("https://acme-v02.api.letsencrypt.org/directory");
    CHECK_STR(k, "acme-v02.api.letsencrypt.org-directory");
    free(k);
    k = acme_storage_ca_key("https://127.0.0.1:14000/dir");
    CHECK_STR(k, "127.0.0.1_14000-dir");
    free(k);
    k = acme_storage_ca_key("https://User@Example.COM/ACME/Dir/");
    CHECK_STR(k, "example.com-acme-dir");
    free(k);
    k = acme_storage_ca_key("https://[::1]:14000/dir");
    CHECK_STR(k, "__1_14000-dir");
    free(k);
    k = acme_storage_ca_key("https://ca.example");
    CHECK_STR(k, "ca.example");
    free(k);
    CHECK(acme_storage_ca_key("https://../x") == NULL);
    CHECK(acme_storage_ca_key("https:///") == NULL);
    CHECK(acme_storage_ca_key(NULL) == NULL);

    /* Different CAs, different directories. */
    const char *urls[] = {"https://ca.example/a", "https://ca.example/b",
                          "https://ca.example:8443/a", "https://ca2.example/a"};
    char *keys[4];
    for (int i = 0; i < 4; i++) {
        keys[i] = acme_storage_ca_key(urls[i]);
        CHECK(keys[i] != NULL);
    }
    for (int i = 0; i < 4; i++) {
        for (int j = i + 1; j < 4; j++) {
            CHECK(keys[i] != NULL && keys[j] != NULL && strcmp(keys[i], keys[j]) != 0);
        }
        free(keys[i]);
    }

    /* Too long for a file name: cut, with a hash that keeps two such URLs apart. */
    char url[600];
    memset(url, 'a', sizeof(url));
    memcpy(url, "https://h/", 10);
    url[sizeof(url) - 1] = '\0';
    char *k1 = acme_storage_ca_key(url);
    url[sizeof(url) - 2] = 'b';
    char *k2 = acme_storage_ca_key(url);
    CHECK(k1 != NULL && k2 != NULL && strlen(k1) <= 200 && strcmp(k1, k2) != 0);
    free(k1);
    free(k2);
}

static void test_name_key(void)
{
    char out[300];
    CHECK(acme_storage_name_key("Example.COM", out, sizeof(out)) == 0);
    CHECK_STR(out, "example.com");
    CHECK(acme_storage_name_key("*.X.org", out, sizeof(out)) == 0);
    CHECK_STR(out, "wildcard_.x.org");
    CHECK(acme_storage_name_key("wildcard_.x.org", out, sizeof(out)) == 0); /* idempotent */
    CHECK_STR(out, "wildcard_.x.org");
    CHECK(acme_storage_name_key("example.com.", out, sizeof(out)) == 0);
    CHECK_STR(out, "example.com");
    CHECK(acme_storage_name_key("2001:db8::1", out, sizeof(out)) == 0);
    CHECK_STR(out, "2001:db8::1");

    const char *bad[] = {"",    "a/b",  "..",  "a..b",   ".a",   "*",    "*.",
                         "a*b", "a\nb", "a b", "../etc", "a\\b", "\x7f", "*.*.x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(acme_storage_name_key(bad[i], out, sizeof(out)) == -1);
    }
    CHECK(acme_storage_name_key(NULL, out, sizeof(out)) == -1);
    CHECK(acme_storage_name_key("example.com", out, 11) == -1); /* no room for the NUL */
    CHECK(acme_storage_name_key("example.com", out, 12) == 0);
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    longname[sizeof(longname) - 1] = '\0';
    CHECK(acme_storage_name_key(longname, out, sizeof(out)) == -1);
}

static void test_paths(void)
{
    char out[512];
    CHECK(acme_storage_account_path("ca", "default", "account.key", out, sizeof(out)) == 0);
    CHECK_STR(out, "accounts/ca/default/account.key");
    CHECK(acme_storage_account_path("ca", "../x", "account.key", out, sizeof(out)) == -1);
    CHECK(acme_storage_account_path("ca", "a/b", "account.key", out, sizeof(out)) == -1);
    CHECK(acme_storage_account_path("..", "a", "account.key", out, sizeof(out)) == -1);
    CHECK(acme_storage_account_path("ca", "default", "account.key", out, 20) == -1);

    CHECK(acme_storage_cert_path("ca", "*.X.org", "crt", out, sizeof(out)) == 0);
    CHECK_STR(out, "certificates/ca/wildcard_.x.org/wildcard_.x.org.crt");
    CHECK(acme_storage_cert_path("ca", "a.org", ".key", out, sizeof(out)) == 0);
    CHECK_STR(out, "certificates/ca/a.org/a.org.key");
    CHECK(acme_storage_cert_path("ca", "a.org", "json", out, sizeof(out)) == 0);
    CHECK_STR(out, "certificates/ca/a.org/a.org.json");
    CHECK(acme_storage_cert_path("ca", "a/b", "crt", out, sizeof(out)) == -1);
    CHECK(acme_storage_cert_path("ca", "a.org", "c/t", out, sizeof(out)) == -1);
    CHECK(acme_storage_cert_path("ca", "a.org", "crt", out, 20) == -1);

    CHECK(acme_storage_challenge_path("A.b", out, sizeof(out)) == 0);
    CHECK_STR(out, "challenges/a.b.json");
    CHECK(acme_storage_challenge_path("..", out, sizeof(out)) == -1);
}

static void test_open_and_modes(void)
{
    char err[256] = "";
    struct acme_storage *st = acme_storage_open(at("root/nested"), err, sizeof(err));
    CHECK(st != NULL);
    if (st == NULL) {
        fprintf(stderr, "open: %s\n", err);
        return;
    }
    CHECK(mode_of(at("root")) == 0700);
    CHECK(mode_of(at("root/nested")) == 0700);
    char real[1024];
    CHECK(realpath(at("root/nested"), real) != NULL);
    CHECK_STR(acme_storage_root(st), real);

    CHECK(acme_storage_write(st, "accounts/ca/default/account.key", "KEY", 3, 0600) == 0);
    CHECK(mode_of(at("root/nested/accounts")) == 0700);
    CHECK(mode_of(at("root/nested/accounts/ca/default")) == 0700);
    CHECK(mode_of(at("root/nested/accounts/ca/default/account.key")) == 0600);

    /* The umask must change neither what the caller asked for nor our 0700. */
    mode_t old = umask(0277);
    CHECK(acme_storage_write(st, "accounts/ca2/default/account.json", "{}", 2, 0644) == 0);
    umask(old);
    CHECK(mode_of(at("root/nested/accounts/ca2")) == 0700);
    CHECK(mode_of(at("root/nested/accounts/ca2/default/account.json")) == 0644);
    acme_storage_free(st);

    CHECK(put_file(at("plain"), "x"));
    err[0] = '\0';
    CHECK(acme_storage_open(at("plain/sub"), err, sizeof(err)) == NULL);
    CHECK(strstr(err, "plain/sub") != NULL);
}

static void test_read_write(struct acme_storage *st)
{
    char *data = (char *)"x";
    size_t len = 99;
    CHECK(acme_storage_read(st, "challenges/none.json", &data, &len) == -ENOENT);
    CHECK(data == NULL && len == 0);
    CHECK(acme_storage_read(st, "nodir/none.json", &data, &len) == -ENOENT);

    CHECK(acme_storage_write(st, "challenges/a.json", "first version", 13, 0644) == 0);
    CHECK(acme_storage_write(st, "challenges/a.json", "second", 6, 0644) == 0);
    CHECK(acme_storage_read(st, "challenges/a.json", &data, &len) == 0);
    CHECK(len == 6);
    CHECK_STR(data, "second");
    free(data);
    CHECK(acme_storage_write(st, "challenges/empty", NULL, 0, 0644) == 0);
    CHECK(acme_storage_read(st, "challenges/empty", &data, &len) == 0 && len == 0);
    free(data);
    CHECK(count_temps(at("st/challenges")) == 0);

    const char *bad[] = {"", "/abs", "../x", "a/../b", "a//b", ".hidden", "a/.b", "a/", "a\nb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(acme_storage_write(st, bad[i], "x", 1, 0644) == -EINVAL);
        CHECK(acme_storage_read(st, bad[i], &data, &len) == -EINVAL);
        CHECK(acme_storage_remove(st, bad[i]) == -EINVAL);
    }
    CHECK(acme_storage_write(st, "challenges/m", "x", 1, 01777) == -EINVAL);
    CHECK(acme_storage_read(st, "challenges", &data, &len) == -EISDIR);

    CHECK(acme_storage_remove(st, "challenges/a.json") == 0);
    CHECK(acme_storage_read(st, "challenges/a.json", &data, &len) == -ENOENT);
    CHECK(acme_storage_remove(st, "challenges/a.json") == -ENOENT);
    CHECK(acme_storage_remove(st, "nodir/a.json") == -ENOENT);
}

/* ---- temp files ----------------------------------------------------------------------- */

/* Makes a temp name for base with the given pid, and the tag of this host (or another). */
static void temp_name(struct acme_storage *st, const char *base, long pid, bool foreign,
                      unsigned serial, char *out, size_t cap)
{
    char tmpl[300];
    CHECK(acme_storage_temp_name(st, base, tmpl, sizeof(tmpl)) == 0);
    const char *hex = strrchr(tmpl, '.') + 1; /* tag (16) and random (16) */
    char tag[17];
    memcpy(tag, hex, 16);
    tag[16] = '\0';
    if (foreign) {
        tag[0] = tag[0] == '0' ? '1' : '0';
    }
    int n = snprintf(out, cap, ".%s.tmp.%ld.%s%016x", base, pid, tag, serial);
    CHECK(n > 0 && (size_t)n < cap);
}

static void touch_in(const char *sub, const char *name, time_t mtime)
{
    char path[1024];
    int n = snprintf(path, sizeof(path), "%s/%s", at(sub), name);
    CHECK(n > 0 && (size_t)n < sizeof(path));
    CHECK(put_file(path, "partial"));
    if (mtime != 0) {
        struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
        CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0);
    }
}

static bool exists_in(const char *sub, const char *name)
{
    char path[1024];
    int n = snprintf(path, sizeof(path), "%s/%s", at(sub), name);
    return n > 0 && (size_t)n < sizeof(path) && exists(path);
}

static void test_temp_cleaning(struct acme_storage *st)
{
    CHECK(acme_storage_write(st, "t/f", "v1", 2, 0644) == 0);
    pid_t dead = fork();
    if (dead == 0) {
        _exit(0);
    }
    CHECK(dead > 0 && waitpid(dead, NULL, 0) == dead);

    char live_local[300], dead_local[300], dead_foreign[300], old_foreign[300];
    temp_name(st, "f", (long)getpid(), false, 1, live_local, sizeof(live_local));
    temp_name(st, "f", (long)dead, false, 2, dead_local, sizeof(dead_local));
    temp_name(st, "f", (long)dead, true, 3, dead_foreign, sizeof(dead_foreign));
    temp_name(st, "f", (long)dead, true, 4, old_foreign, sizeof(old_foreign));
    touch_in("st/t", live_local, 0);
    touch_in("st/t", dead_local, 0);
    touch_in("st/t", dead_foreign, 0);
    touch_in("st/t", old_foreign, time(NULL) - 7200);
    touch_in("st/t", ".f.bak", time(NULL) - 7200);

    char *data = NULL;
    size_t len = 0;
    CHECK(acme_storage_read(st, "t/f", &data, &len) == 0);
    CHECK(len == 2 && data != NULL && memcmp(data, "v1", 2) == 0);
    free(data);

    CHECK(acme_storage_write(st, "t/f", "v2", 2, 0644) == 0);
    CHECK(exists_in("st/t", live_local));   /* a live writer of this host */
    CHECK(!exists_in("st/t", dead_local));  /* its writer is gone */
    CHECK(exists_in("st/t", dead_foreign)); /* another host's pid says nothing here */
    CHECK(!exists_in("st/t", old_foreign)); /* older than an hour: whoever wrote it */
    CHECK(exists_in("st/t", ".f.bak"));     /* not a temp file */
    CHECK(count_temps(at("st/t")) == 2);

    acme_storage_set_temp_max_age(st, 0);
    CHECK(acme_storage_write(st, "t/f", "v3", 2, 0644) == 0);
    acme_storage_set_temp_max_age(st, 3600);
    CHECK(count_temps(at("st/t")) == 0);
    CHECK(exists_in("st/t", ".f.bak"));
    CHECK(acme_storage_read(st, "t/f", &data, &len) == 0);
    CHECK(len == 2 && data != NULL && memcmp(data, "v3", 2) == 0);
    free(data);
}

/* ---- atomic writes under SIGKILL ------------------------------------------------------- */

/* A version: its seed in the first 8 bytes, then a stream only that seed produces. */
static void fill(uint8_t *buf, uint64_t seed)
{
    memcpy(buf, &seed, 8);
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL | 1;
    for (size_t i = 8; i + 8 <= BIG; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
}

/* The seed of a complete version, or 0 when data is not one. */
static uint64_t complete_seed(const char *data, size_t len, uint8_t *scratch)
{
    uint64_t seed = 0;
    if (len != BIG) {
        return 0;
    }
    memcpy(&seed, data, 8);
    fill(scratch, seed);
    return memcmp(scratch, data, BIG) == 0 ? seed : 0;
}

static void crash_child(struct acme_storage *st, uint64_t round, uint8_t *buf)
{
    for (uint64_t i = 1;; i++) {
        fill(buf, round << 32 | i);
        if (acme_storage_write(st, CRASH_PATH, buf, BIG, 0644) != 0) {
            _exit(3);
        }
    }
}

static void test_crash(struct acme_storage *st)
{
    uint8_t *buf = malloc(BIG);
    uint8_t *scratch = malloc(BIG);
    CHECK(buf != NULL && scratch != NULL);
    if (buf == NULL || scratch == NULL) {
        free(buf);
        free(scratch);
        return;
    }
    uint64_t prev = 1;
    fill(buf, prev);
    CHECK(acme_storage_write(st, CRASH_PATH, buf, BIG, 0644) == 0);
    unsigned rnd = (unsigned)time(NULL) ^ (unsigned)getpid();
    int temps_seen = 0;
    int bad = 0;
    for (uint64_t round = 1; round <= CRASH_ROUNDS; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            crash_child(st, round, buf);
        }
        CHECK(pid > 0);
        rnd = rnd * 1103515245u + 12345u;
        usleep(5000 + (rnd >> 8) % 150000);
        CHECK(kill(pid, SIGKILL) == 0);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        temps_seen += count_temps(at("st/challenges"));

        char *data = NULL;
        size_t len = 0;
        CHECK(acme_storage_read(st, CRASH_PATH, &data, &len) == 0);
        uint64_t seed = data != NULL ? complete_seed(data, len, scratch) : 0;
        free(data);
        /* the previous round's last version, or one this round's child completed */
        bool ok = seed != 0 && (seed == prev || seed >> 32 == round);
        bad += !ok;
        if (!ok) {
            fprintf(stderr, "round %u: %zu bytes, seed %llx, previous %llx\n", (unsigned)round, len,
                    (unsigned long long)seed, (unsigned long long)prev);
        }
        prev = seed != 0 ? seed : prev;
    }
    CHECK(bad == 0);
    fprintf(stderr, "crash test: %d temp files left behind by %d kills\n", temps_seen,
            CRASH_ROUNDS);

    /* The next write cleans what the killed writers left. */
    fill(buf, 2);
    CHECK(acme_storage_write(st, CRASH_PATH, buf, BIG, 0644) == 0);
    CHECK(count_temps(at("st/challenges")) == 0);
    free(buf);
    free(scratch);
}

/* ---- locks ---------------------------------------------------------------------------- */

static bool lock_owner_is(struct acme_storage *st, const char *rel, const char *owner)
{
    char *data = NULL;
    size_t len = 0;
    bool ok = acme_storage_read(st, rel, &data, &len) == 0 && data != NULL;
    char want[128];
    int n = snprintf(want, sizeof(want), "\"owner\":\"%s\"", owner);
    ok = ok && n > 0 && strstr(data, want) != NULL;
    free(data);
    return ok;
}

static void write_lock(struct acme_storage *st, const char *rel, const char *owner, int64_t updated)
{
    char json[256];
    int n = snprintf(json, sizeof(json), "{\"owner\":\"%s\",\"updated\":%lld}", owner,
                     (long long)updated);
    CHECK(n > 0 && acme_storage_write(st, rel, json, (size_t)n, 0644) == 0);
}

static void backdate(const char *path, time_t when)
{
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0);
}

static void test_locks(struct acme_storage *st)
{
    const char *rel = "locks/example.com.lock";
    CHECK(acme_storage_lock(st, "Example.com", "A", 60) == 0);
    CHECK(lock_owner_is(st, rel, "A"));
    CHECK(mode_of(at("st/locks")) == 0700);
    CHECK(acme_storage_lock(st, "example.com", "B", 60) == -EBUSY);
    CHECK(acme_storage_lock(st, "example.com", "A", 60) == 0); /* same owner: refreshed */
    CHECK(acme_storage_lock_refresh(st, "example.com", "B") == -EPERM);
    CHECK(acme_storage_lock_refresh(st, "example.com", "A") == 0);
    CHECK(acme_storage_unlock(st, "example.com", "B") == -EPERM);
    CHECK(lock_owner_is(st, rel, "A"));
    CHECK(acme_storage_unlock(st, "example.com", "A") == 0);
    CHECK(!exists(at("st/locks/example.com.lock")));
    CHECK(acme_storage_unlock(st, "example.com", "A") == -ENOENT);
    CHECK(acme_storage_lock_refresh(st, "example.com", "A") == -EPERM);
    CHECK(acme_storage_lock(st, "a/b", "A", 60) == -EINVAL);
    CHECK(acme_storage_lock(st, "example.com", "", 60) == -EINVAL);

    CHECK(acme_storage_lock(st, "*.example.com", "A", 60) == 0);
    CHECK(exists(at("st/locks/wildcard_.example.com.lock")));
    CHECK(acme_storage_unlock(st, "*.example.com", "A") == 0);

    /* The holder stops refreshing: after stale_s another owner takes over. */
    CHECK(acme_storage_lock(st, "example.com", "A", 1) == 0);
    CHECK(acme_storage_lock(st, "example.com", "B", 60) == -EBUSY);
    usleep(2200 * 1000);
    CHECK(acme_storage_lock(st, "example.com", "B", 1) == 0);
    CHECK(lock_owner_is(st, rel, "B"));
    CHECK(acme_storage_lock_refresh(st, "example.com", "A") == -EPERM);
    CHECK(acme_storage_unlock(st, "example.com", "A") == -EPERM);
    CHECK(lock_owner_is(st, rel, "B"));

    /* Backdated "updated". */
    write_lock(st, rel, "old", time(NULL) - 100);
    CHECK(acme_storage_lock(st, "example.com", "C", 120) == -EBUSY);
    CHECK(acme_storage_lock(st, "example.com", "C", 60) == 0);
    CHECK(lock_owner_is(st, rel, "C"));

    /* Unreadable: judged by its mtime. */
    CHECK(acme_storage_write(st, rel, "garbage", 7, 0644) == 0);
    CHECK(acme_storage_lock(st, "example.com", "D", 60) == -EBUSY);
    backdate(at("st/locks/example.com.lock"), time(NULL) - 100);
    CHECK(acme_storage_lock(st, "example.com", "D", 60) == 0);
    CHECK(lock_owner_is(st, rel, "D"));

    /* An "updated" from a clock far ahead does not hold the lock forever. */
    write_lock(st, rel, "future", time(NULL) + 1000000);
    CHECK(acme_storage_lock(st, "example.com", "E", 60) == -EBUSY);
    backdate(at("st/locks/example.com.lock"), time(NULL) - 100);
    CHECK(acme_storage_lock(st, "example.com", "E", 60) == 0);
    CHECK(acme_storage_unlock(st, "example.com", "E") == 0);

    CHECK(count_entries(at("st/locks")) == 0); /* no grabbed or temp files left */
}

/* Two processes take over one stale lock at the same moment; exactly one may win. */
static void race_round(struct acme_storage *st, int *wins, int *busy)
{
    const char *rel = "locks/race.example.lock";
    write_lock(st, rel, "old", time(NULL) - 100);
    int gate[2];
    CHECK(pipe(gate) == 0);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            char c;
            close(gate[1]);
            ssize_t n = read(gate[0], &c, 1); /* EOF when the parent opens the gate */
            const char *owner = k == 0 ? "racer-0" : "racer-1";
            int rc = n == 0 ? acme_storage_lock(st, "race.example", owner, 30) : -EIO;
            _exit(rc == 0 ? 0 : rc == -EBUSY ? 1 : 2);
        }
        CHECK(kids[k] > 0);
    }
    close(gate[0]);
    close(gate[1]);
    int codes[2] = {-1, -1};
    for (int k = 0; k < 2; k++) {
        int status = 0;
        CHECK(waitpid(kids[k], &status, 0) == kids[k]);
        codes[k] = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    bool one_winner = (codes[0] == 0 && codes[1] == 1) || (codes[0] == 1 && codes[1] == 0);
    CHECK(one_winner);
    if (one_winner) {
        (*wins)++;
        CHECK(lock_owner_is(st, rel, codes[0] == 0 ? "racer-0" : "racer-1"));
    } else {
        fprintf(stderr, "race: exit codes %d and %d\n", codes[0], codes[1]);
    }
    *busy += (codes[0] == 1) + (codes[1] == 1);
    CHECK(count_entries(at("st/locks")) == 1);
    CHECK(acme_storage_remove(st, rel) == 0);
}

static void test_lock_race(struct acme_storage *st)
{
    int wins = 0;
    int busy = 0;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        race_round(st, &wins, &busy);
    }
    CHECK(wins == RACE_ROUNDS && busy == RACE_ROUNDS);
}

/* ---- listing -------------------------------------------------------------------------- */

static bool make_certs(void)
{
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    char cmd[1024];
    const char *steps[][2] = {
        {"ca1", "-x509 -subj '/CN=Test Root One' -days 365"},
        {"ca2", "-x509 -subj '/C=US/O=No CN Org' -days 365"},
        {"a", "-subj /CN=a.example.com"},
        {"b", "-subj '/CN=*.b.example.com'"},
        {"d", "-subj /CN=d.example.com"},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        const char *out = strstr(steps[i][1], "-x509") != NULL ? "crt" : "csr";
        int n = snprintf(cmd, sizeof(cmd), "openssl req %s %s -keyout %s.key -out %s.%s", ec,
                         steps[i][1], steps[i][0], steps[i][0], out);
        if (n < 0 || (size_t)n >= sizeof(cmd) || !run(cmd)) {
            return false;
        }
    }
    return run("printf 'subjectAltName=DNS:a.example.com,DNS:www.a.example.com\\n' > a.ext") &&
           run("printf 'subjectAltName=DNS:*.b.example.com,DNS:b.example.com\\n' > b.ext") &&
           run("printf 'subjectAltName=DNS:d.example.com\\n' > d.ext") &&
           run("openssl x509 -req -in a.csr -CA ca1.crt -CAkey ca1.key -CAcreateserial "
               "-days 30 -extfile a.ext -out a.crt") &&
           run("openssl x509 -req -in b.csr -CA ca2.crt -CAkey ca2.key -CAcreateserial "
               "-days 10 -extfile b.ext -out b.leaf && cat b.leaf ca2.crt > b.crt") &&
           run("openssl x509 -req -in d.csr -CA ca1.crt -CAkey ca1.key -CAcreateserial "
               "-days 20 -extfile d.ext -out d.crt") &&
           run("head -c 300 a.crt > c.crt") &&
           run("for x in a b d; do date -u -d \"$(openssl x509 -enddate -noout -in $x.crt "
               "| cut -d= -f2)\" +%s > $x.end; done");
}

/* Stores dir/<file> at certificates/<ca>/<name>/<name>.<ext>. */
static void store(struct acme_storage *st, const char *ca, const char *name, const char *ext,
                  const char *file)
{
    char rel[512];
    size_t len = 0;
    char *data = slurp(at(file), &len);
    CHECK(data != NULL);
    CHECK(acme_storage_cert_path(ca, name, ext, rel, sizeof(rel)) == 0);
    int mode = strcmp(ext, "key") == 0 ? 0600 : 0644;
    CHECK(data != NULL && acme_storage_write(st, rel, data, len, mode) == 0);
    free(data);
}

static int64_t end_of(const char *x)
{
    char file[16];
    size_t len = 0;
    snprintf(file, sizeof(file), "%s.end", x);
    char *text = slurp(at(file), &len);
    int64_t v = text != NULL ? strtoll(text, NULL, 10) : -1;
    free(text);
    return v;
}

static void check_entry(const struct acme_stored_cert *c, const char *ca, const char *name,
                        const char *issuer, const char *error)
{
    CHECK_STR(c->ca, ca);
    CHECK_STR(c->name, name);
    if (issuer != NULL) {
        CHECK_STR(c->issuer, issuer);
    } else {
        CHECK(c->issuer == NULL);
    }
    if (error != NULL) {
        CHECK_STR(c->error, error);
    } else {
        CHECK(c->error == NULL);
    }
}

static void check_list(const struct acme_stored_cert *c, size_t n, const char *ca1, const char *ca2,
                       const char *b_error)
{
    CHECK(n == 4);
    if (n != 4) {
        return;
    }
    check_entry(&c[0], ca1, "a.example.com", "Test Root One", NULL);
    CHECK(c[0].n_names == 2);
    if (c[0].n_names == 2) {
        CHECK_STR(c[0].names[0], "a.example.com");
        CHECK_STR(c[0].names[1], "www.a.example.com");
    }
    CHECK(c[0].not_after == end_of("a"));
    char real[512];
    char want[1024];
    CHECK(realpath(at("st"), real) != NULL);
    snprintf(want, sizeof(want), "%s/certificates/%s/a.example.com/a.example.com.crt", real, ca1);
    CHECK_STR(c[0].path, want);

    check_entry(&c[1], ca1, "c.example.com", NULL, "corrupt certificate file");
    CHECK(c[1].n_names == 0 && c[1].names == NULL);

    check_entry(&c[2], ca1, "d.example.com", "Test Root One", "key does not match");
    CHECK(c[2].n_names == 1 && strcmp(c[2].names[0], "d.example.com") == 0);
    CHECK(c[2].not_after == end_of("d"));

    check_entry(&c[3], ca2, "*.b.example.com", "/C=US/O=No CN Org", b_error);
    CHECK(c[3].n_names == 2);
    if (c[3].n_names == 2) {
        CHECK_STR(c[3].names[0], "*.b.example.com");
        CHECK_STR(c[3].names[1], "b.example.com");
    }
    CHECK(c[3].not_after == end_of("b"));
    CHECK(c[3].not_after > c[0].not_after - 25LL * 86400 &&
          c[3].not_after < c[0].not_after - 15LL * 86400);
}

static void test_list(struct acme_storage *st)
{
    struct acme_stored_cert *certs = NULL;
    size_t n = 99;
    CHECK(acme_storage_list(st, &certs, &n) == 0 && n == 0 && certs == NULL);
    if (!make_certs()) {
        CHECK(false);
        return;
    }
    char *ca1 = acme_storage_ca_key("https://127.0.0.1:14000/dir");
    char *ca2 = acme_storage_ca_key("https://acme-v02.api.letsencrypt.org/directory");
    store(st, ca1, "a.example.com", "crt", "a.crt");
    store(st, ca1, "a.example.com", "key", "a.key");
    store(st, ca2, "*.b.example.com", "crt", "b.crt");
    store(st, ca2, "*.b.example.com", "key", "b.key");
    store(st, ca1, "c.example.com", "crt", "c.crt");
    store(st, ca1, "c.example.com", "key", "a.key");
    store(st, ca1, "d.example.com", "crt", "d.crt");
    store(st, ca1, "d.example.com", "key", "a.key");
    store(st, ca1, "e.example.com", "key", "a.key"); /* issuance in progress: no .crt yet */

    /* What a crashed writer leaves: temp files beside the certificate and among names. */
    char sub[512];
    snprintf(sub, sizeof(sub), "st/certificates/%s/a.example.com", ca1);
    touch_in(sub, ".a.example.com.crt.tmp.1.00000000000000000000000000000000", 0);
    snprintf(sub, sizeof(sub), "st/certificates/%s", ca1);
    touch_in(sub, ".x.tmp.1.00000000000000000000000000000000", 0);
    CHECK(mkdir(at("st/certificates/.hidden"), 0700) == 0);

    CHECK(acme_storage_list(st, &certs, &n) == 0);
    check_list(certs, n, ca1, ca2, NULL);
    acme_stored_certs_free(certs, n);

    char rel[512];
    CHECK(acme_storage_cert_path(ca2, "*.b.example.com", "key", rel, sizeof(rel)) == 0);
    CHECK(acme_storage_remove(st, rel) == 0);
    CHECK(acme_storage_list(st, &certs, &n) == 0);
    check_list(certs, n, ca1, ca2, "missing key");
    acme_stored_certs_free(certs, n);
    free(ca1);
    free(ca2);
}

int main(void)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_ca_key();
    test_name_key();
    test_paths();
    test_open_and_modes();

    char err[256] = "";
    struct acme_storage *st = acme_storage_open(at("st"), err, sizeof(err));
    CHECK(st != NULL);
    if (st != NULL) {
        test_read_write(st);
        test_temp_cleaning(st);
        test_crash(st);
        test_locks(st);
        test_lock_race(st);
        test_list(st);
        acme_storage_free(st);
    } else {
        fprintf(stderr, "open: %s\n", err);
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
    return check_report();
}

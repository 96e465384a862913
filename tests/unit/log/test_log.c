/* test_log.c - the log file: open, reopen after a rename (logrotate), close, errors, and
 * whole JSON lines while other threads log through reopens.
 *
 * Everything happens in a mkdtemp directory that is removed at the end. Lines are read
 * back and parsed with cJSON, so a line cut in two or two lines run together fail.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "scratch.h"

#define THREADS 4
#define LINES_PER_THREAD 2000
#define ROTATIONS 40

static char dir[] = "/tmp/moat-test-log-XXXXXX";
static char err[512];

/* The whole of file into a static buffer; "" when it cannot be read. */
static const char *slurp(const char *file)
{
    static char buf[4 << 20];
    size_t n = 0;
    FILE *f = fopen(file, "r");

    if (f != NULL) {
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

/* Checks that every line of file is one JSON object ("{...}\n" that cJSON parses) with
 * an "event" field, and returns how many lines carry event (all lines when NULL). Returns
 * -1 when a line is not whole. */
static int count_events(const char *file, const char *event)
{
    const char *text = slurp(file);
    int n = 0;

    if (text[0] != '\0' && text[strlen(text) - 1] != '\n') {
        fprintf(stderr, "%s: does not end with a newline\n", file);
        return -1;
    }
    for (const char *line = text; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len = (size_t)(nl - line);
        cJSON *obj = NULL;
        if (len >= 2 && line[0] == '{' && line[len - 1] == '}') {
            obj = cJSON_ParseWithLength(line, len);
        }
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(obj, "event");
        if (!cJSON_IsString(ev)) {
            fprintf(stderr, "%s: not a whole JSON line: %.*s\n", file, (int)len, line);
            cJSON_Delete(obj);
            return -1;
        }
        n += event == NULL || strcmp(ev->valuestring, event) == 0;
        cJSON_Delete(obj);
        line = nl + 1;
    }
    return n;
}

/* The logrotate case from the specification: rename, reopen, and each file holds its
 * own line. */
static void test_rotate(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s", at("moat.log"));

    mode_t old_mask = umask(022);
    CHECK(log_open_file(path, err, sizeof(err)) == 0);
    umask(old_mask);
    log_msg(CFG_LOG_INFO, "first", "before the rotation");

    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);
    CHECK(rename(path, at("moat.log.1")) == 0);
    /* Until the reopen, lines still go to the renamed file. */
    log_msg(CFG_LOG_INFO, "first", "still the old file");
    CHECK(log_reopen() == 0);
    log_msg(CFG_LOG_INFO, "second", "after the rotation");

    CHECK(count_events(at("moat.log.1"), NULL) == 2);
    CHECK(count_events(at("moat.log.1"), "first") == 2);
    CHECK(count_events(path, NULL) == 1);
    CHECK(count_events(path, "second") == 1);
    CHECK(strncmp(slurp(path), "{\"ts\":\"", 7) == 0);
    const char *text = slurp(path);
    CHECK(text[strlen(text) - 2] == '}' && text[strlen(text) - 1] == '\n');

    /* The level filter still applies, and escaping keeps one event per line. */
    log_set_level(CFG_LOG_WARN);
    log_msg(CFG_LOG_INFO, "hidden", "below the level");
    log_set_level(CFG_LOG_INFO);
    struct log_line l;
    log_begin(&l, CFG_LOG_WARN, "escaped");
    log_str(&l, "value", "a\"b\\c\nd\r\x01");
    log_int(&l, "n", -7);
    log_end(&l);
    CHECK(count_events(path, NULL) == 2);
    CHECK(count_events(path, "hidden") == 0);
    CHECK(strstr(slurp(path), "\"value\":\"a\\\"b\\\\c\\u000ad\\u000d\\u0001\",\"n\":-7}") != NULL);
}

/* A failed open or reopen leaves lines going where they went. */
static void test_errors(void)
{
    char want[600];

    CHECK(log_open_file(at("nodir/moat.log"), err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "cannot open log file \"%s\": No such file or directory",
             at("nodir/moat.log"));
    CHECK_STR(err, want);
    CHECK(log_open_file("", err, sizeof(err)) == -1);
    CHECK(err[0] != '\0');
    CHECK(log_open_file(NULL, NULL, 0) == -1);
    log_msg(CFG_LOG_INFO, "after_failed_open", "x");
    CHECK(count_events(at("moat.log"), "after_failed_open") == 1);

    /* The path is a directory now: the reopen fails and the old file keeps the lines. */
    CHECK(rename(at("moat.log"), at("moat.log.2")) == 0);
    CHECK(mkdir(at("moat.log"), 0700) == 0);
    CHECK(log_reopen() == -EISDIR);
    log_msg(CFG_LOG_INFO, "after_failed_reopen", "x");
    CHECK(count_events(at("moat.log.2"), "after_failed_reopen") == 1);
    CHECK(rmdir(at("moat.log")) == 0);
    CHECK(log_reopen() == 0);
    log_msg(CFG_LOG_INFO, "reopened", "x");
    CHECK(count_events(at("moat.log"), "reopened") == 1);
    CHECK(count_events(at("moat.log.2"), "reopened") == 0);
}

/* Opening another path replaces the file; closing goes back to stderr. */
static void test_switch_and_close(void)
{
    CHECK(log_open_file(at("other.log"), err, sizeof(err)) == 0);
    log_msg(CFG_LOG_INFO, "other", "x");
    CHECK(count_events(at("other.log"), "other") == 1);
    CHECK(count_events(at("moat.log"), "other") == 0);

    /* Catch stderr in a file to see the lines come back to it. */
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(at("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(saved >= 0 && fd >= 0);
    CHECK(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    close(fd);

    log_close_file();
    log_msg(CFG_LOG_INFO, "to_stderr", "x");
    log_close_file();         /* idempotent */
    CHECK(log_reopen() == 0); /* nothing to reopen on stderr */
    log_msg(CFG_LOG_INFO, "to_stderr", "y");

    fflush(stderr);
    CHECK(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
    close(saved);
    CHECK(count_events(at("stderr.txt"), "to_stderr") == 2);
    CHECK(count_events(at("other.log"), "to_stderr") == 0);
}

static void *on_thread(void *arg)
{
    long id = (long)arg;

    for (int i = 0; i < LINES_PER_THREAD; i++) {
        struct log_line l;
        log_begin(&l, CFG_LOG_INFO, "busy");
        log_int(&l, "thread", id);
        log_int(&l, "i", i);
        log_str(&l, "pad", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        log_end(&l);
    }
    return NULL;
}

/* Threads log while the main thread rotates: every line lands whole in one file. */
static void test_threads(void)
{
    pthread_t threads[THREADS];
    char name[64];

    CHECK(log_open_file(at("busy.log"), err, sizeof(err)) == 0);
    for (long t = 0; t < THREADS; t++) {
        CHECK(pthread_create(&threads[t], NULL, on_thread, (void *)t) == 0);
    }
    for (int r = 0; r < ROTATIONS; r++) {
        snprintf(name, sizeof(name), "busy.log.%d", r);
        CHECK(rename(at("busy.log"), at(name)) == 0);
        CHECK(log_reopen() == 0);
        usleep(500);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
    }
    log_close_file();

    int total = 0;
    bool whole = true;
    for (int r = 0; r <= ROTATIONS; r++) {
        snprintf(name, sizeof(name), r < ROTATIONS ? "busy.log.%d" : "busy.log", r);
        int n = count_events(at(name), "busy");
        whole = whole && n >= 0;
        total += n > 0 ? n : 0;
    }
    CHECK(whole);
    CHECK(total == THREADS * LINES_PER_THREAD);
}

int main(void)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    scratch_dir = dir;
    test_rotate();
    test_errors();
    test_switch_and_close();
    test_threads();
    scratch_remove();
    return check_report();
}

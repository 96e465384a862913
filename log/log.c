/* log.c - JSON-lines logging with escaping; each line leaves in a single write(2), to
 * stderr or to the log file. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_FILE_MODE 0640

static atomic_int min_level = CFG_LOG_INFO;

/* Where log_end writes: STDERR_FILENO, or file_fd while a log file is open. Writers read
 * it without a lock, so a descriptor stored here is never closed: a line is written
 * either before or after a swap, never to a closed or reused descriptor. */
static atomic_int out_fd = STDERR_FILENO;

/* The log file's state, changed only under file_lock. file_fd is taken by the first
 * log_open_file and kept for good; later opens and reopens dup3 the new file onto it,
 * and log_close_file dup3s stderr onto it, which releases the file. */
static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static int file_fd = -1;
static char *file_path; /* NULL: logging to stderr */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum cfg_log_level level)
{
    atomic_store(&min_level, (int)level);
}

int log_enabled(enum cfg_log_level level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

static void do_raw(struct log_line *l, const char *s, size_t n)
{
    if (l->len + n >= sizeof(l->buf) - 2) {
        n = sizeof(l->buf) - 2 - l->len; /* keep room for "}\n" */
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* JSON string escaping; control bytes become \u00XX so a hostile header cannot forge
 * a log line. */
static void do_escaped(struct log_line *l, const char *s, size_t n)
{
    do_raw(l, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            do_raw(l, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            int k = snprintf(esc, sizeof(esc), "\\u%04x", c);
            do_raw(l, esc, (size_t)k);
        } else {
            do_raw(l, (const char *)&s[i], 1);
        }
    }
    do_raw(l, "\"", 1);
}

static void do_key(struct log_line *l, const char *key)
{
    do_raw(l, ",", 1);
    do_escaped(l, key, strlen(key));
    do_raw(l, ":", 1);
}

void log_begin(struct log_line *l, enum cfg_log_level level, const char *event)
{
    l->len = 0;
    l->skip = !log_enabled(level);
    if (l->skip) {
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    do_raw(l, "{\"ts\":\"", 7);
    do_raw(l, ts, strlen(ts));
    do_raw(l, "\",\"level\":\"", 11);
    do_raw(l, level_names[level], strlen(level_names[level]));
    do_raw(l, "\"", 1);
    do_key(l, "event");
    do_escaped(l, event, strlen(event));
}

void log_strn(struct log_line *l, const char *key, const char *val, size_t len)
{
    if (l->skip) {
        return;
    }
    do_key(l, key);
    do_escaped(l, val != NULL ? val : "", val != NULL ? len : 0);
}

void log_str(struct log_line *l, const char *key, const char *val)
{
    log_strn(l, key, val, val != NULL ? strlen(val) : 0);
}

void log_int(struct log_line *l, const char *key, int64_t val)
{
    if (l->skip) {
        return;
    }
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", (long long)val);
    do_key(l, key);
    do_raw(l, num, (size_t)n);
}

void log_end(struct log_line *l)
{
    if (l->skip) {
        return;
    }
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    /* One write per line keeps lines from different threads whole (O_APPEND for a
     * file). */
    ssize_t rc = write(atomic_load_explicit(&out_fd, memory_order_acquire), l->buf, l->len);
    (void)rc;
}

void log_msg(enum cfg_log_level level, const char *event, const char *fmt, ...)
{
    struct log_line l;
    log_begin(&l, level, event);
    if (l.skip) {
        return;
    }
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_str(&l, "msg", msg);
    log_end(&l);
}

static int do_open(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, LOG_FILE_MODE);
}

/* Puts fd (a newly opened file) in the file_fd slot and closes fd. Returns 0 or -errno.
 * Called with file_lock held. */
static int do_swap_in(int fd)
{
    int rc = 0;

    if (file_fd < 0) {
        file_fd = fd;
        return 0;
    }
    /* One step: a concurrent write lands in the old file or the new one. */
    if (dup3(fd, file_fd, O_CLOEXEC) < 0) {
        rc = -errno;
    }
    close(fd);
    return rc;
}

/* "cannot open log file "PATH": REASON" into the caller's buffer. */
static void do_open_error(char *err, size_t errlen, const char *path, int errnum)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "cannot open log file \"%s\": %s", path, strerror(errnum));
    }
}

int log_open_file(const char *path, char *err, size_t errlen)
{
    if (path == NULL || path[0] == '\0') {
        do_open_error(err, errlen, "", ENOENT);
        return -1;
    }
    char *copy = strdup(path);
    if (copy == NULL) {
        do_open_error(err, errlen, path, ENOMEM);
        return -1;
    }
    pthread_mutex_lock(&file_lock);
    int fd = do_open(path);
    int rc = fd < 0 ? -errno : do_swap_in(fd);
    if (rc == 0) {
        free(file_path);
        file_path = copy;
        copy = NULL;
        atomic_store_explicit(&out_fd, file_fd, memory_order_release);
    }
    pthread_mutex_unlock(&file_lock);
    free(copy);
    if (rc != 0) {
        do_open_error(err, errlen, path, -rc);
        return -1;
    }
    return 0;
}

int log_reopen(void)
{
    int rc = 0;

    pthread_mutex_lock(&file_lock);
    if (file_path != NULL) {
        int fd = do_open(file_path);
        rc = fd < 0 ? -errno : do_swap_in(fd);
    }
    pthread_mutex_unlock(&file_lock);
    return rc;
}

void log_close_file(void)
{
    pthread_mutex_lock(&file_lock);
    if (file_path != NULL) {
        atomic_store_explicit(&out_fd, STDERR_FILENO, memory_order_release);
        /* A writer that read file_fd just before the store now writes to stderr; the
         * file itself is released. If stderr is not open the file stays open: better a
         * line too many in it than a write to a reused descriptor. */
        (void)dup3(STDERR_FILENO, file_fd, O_CLOEXEC);
        free(file_path);
        file_path = NULL;
    }
    pthread_mutex_unlock(&file_lock);
}

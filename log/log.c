/* log.c - JSON-lines logging with escaping; each line leaves in a single write(2). */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int min_level = CFG_LOG_INFO;

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
    /* One write per line keeps lines from different threads whole. */
    ssize_t rc = write(STDERR_FILENO, l->buf, l->len);
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

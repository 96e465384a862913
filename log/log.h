/* log.h - structured logs for every module: one JSON object per line on stderr, safe
 * from any thread. */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define LOG_LINE_MAX 4096

/* A line being built on the caller's stack; log_end writes it with one write(2). */
struct log_line {
    char buf[LOG_LINE_MAX];
    size_t len;
    int skip; /* below the configured level: every call is a no-op */
};

void log_set_level(enum cfg_log_level level);
int log_enabled(enum cfg_log_level level);

void log_begin(struct log_line *l, enum cfg_log_level level, const char *event);
void log_str(struct log_line *l, const char *key, const char *val);
void log_strn(struct log_line *l, const char *key, const char *val, size_t len);
void log_int(struct log_line *l, const char *key, int64_t val);
void log_end(struct log_line *l);

/* One line with a formatted "msg" field. */
void log_msg(enum cfg_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

/* log.h - structured logs: one JSON object per line on stderr, safe from any thread. */
#ifndef MOAT_PX_LOG_H
#define MOAT_PX_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define PX_LOG_LINE_MAX 4096

/* A line being built on the caller's stack; px_log_end writes it with one write(2). */
struct px_logline {
    char buf[PX_LOG_LINE_MAX];
    size_t len;
    int skip; /* below the configured level: every call is a no-op */
};

void px_log_set_level(enum cfg_log_level level);
int px_log_enabled(enum cfg_log_level level);

void px_log_begin(struct px_logline *l, enum cfg_log_level level, const char *event);
void px_log_str(struct px_logline *l, const char *key, const char *val);
void px_log_strn(struct px_logline *l, const char *key, const char *val, size_t len);
void px_log_int(struct px_logline *l, const char *key, int64_t val);
void px_log_end(struct px_logline *l);

/* One line with a formatted "msg" field. */
void px_log(enum cfg_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

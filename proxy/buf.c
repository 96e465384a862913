/* buf.c - the growable text buffer the admin pages are written into. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

/* Makes room for n more bytes and a terminating NUL. Returns false (and sets oom) when
 * that is impossible, so the caller drops the append. */
static bool do_reserve(struct px_buf *b, size_t n)
{
    if (b->oom) {
        return false;
    }
    if (n > SIZE_MAX / 4 || b->len > SIZE_MAX / 4) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap) {
        return true;
    }
    size_t cap = b->cap > 0 ? b->cap : 256;
    while (cap < need) {
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void px_buf_append(struct px_buf *b, const char *s, size_t n)
{
    if (!do_reserve(b, n)) {
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void px_buf_printf(struct px_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true; /* an encoding error: the text would be wrong, fail it as a whole */
        return;
    }
    if ((size_t)n < sizeof(small)) {
        px_buf_append(b, small, (size_t)n);
        return;
    }
    /* Longer than the stack copy: format again straight into the buffer. */
    if (!do_reserve(b, (size_t)n)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void px_buf_json_str(struct px_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    px_buf_append(b, "\"", 1);
    const char *run = s; /* bytes copied as they are, flushed before each escape */
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c != '"' && c != '\\' && c >= 0x20 && c != 0x7f) {
            continue;
        }
        px_buf_append(b, run, (size_t)(s - run));
        run = s + 1;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            px_buf_append(b, esc, 2);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            px_buf_append(b, esc, 6);
        }
    }
    px_buf_append(b, run, (size_t)(s - run));
    px_buf_append(b, "\"", 1);
}

void px_buf_free(struct px_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->oom = false;
}

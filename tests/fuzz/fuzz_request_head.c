/* fuzz_request_head.c - libFuzzer driver: arbitrary bytes as a request head through the same
 * path a client's bytes take (line-ending scan, llhttp, capture, rewrite for the upstream). */
#include <llhttp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_target(llhttp_t *p, const char *at, size_t n)
{
    return px_head_on_target(p->data, at, n) == 0 ? 0 : -1;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    return px_head_on_field(p->data, at, n) == 0 ? 0 : -1;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    return px_head_on_value(p->data, at, n) == 0 ? 0 : -1;
}

static int on_headers_complete(llhttp_t *p)
{
    (void)p;
    return HPE_PAUSED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char raw[16384];
    static char out[20000];
    struct px_head h;
    struct px_eol_scan scan;
    memset(&scan, 0, sizeof(scan));
    px_head_reset(&h, raw, sizeof(raw));
    if (px_eol_scan(&scan, (const char *)data, size) < 0) {
        return 0;
    }
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_url = on_target;
    s.on_header_field = on_field;
    s.on_header_value = on_value;
    s.on_headers_complete = on_headers_complete;
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &s);
    parser.data = &h;
    if (llhttp_execute(&parser, (const char *)data, size) != HPE_PAUSED) {
        return 0;
    }
    size_t len = 0;
    size_t count = 0;
    px_head_get(&h, "host", &len, &count);
    struct px_fwd f = {.method = "GET", .client_ip = "192.0.2.1", .trusted_peer = size % 2,
                       .proto = "https", .body = PX_BODY_CHUNKED};
    px_http_request_head(&h, &f, out, sizeof(out));
    struct px_resp r = {.status = 200, .body = PX_BODY_LENGTH, .content_length = 5};
    px_http_response_head(&h, &r, out, sizeof(out));
    return 0;
}

/* fuzz_config.c - libFuzzer driver: arbitrary bytes as a JSON config. */
#include <stdint.h>
#include <stdlib.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[2048];
    struct cfg *cfg = cfg_parse((const char *)data, size, NULL, err, sizeof(err));
    cfg_free(cfg);
    return 0;
}

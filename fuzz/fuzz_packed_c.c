/* libFuzzer target for the C reader + interpreter (checksums off, so mutations reach the structural checks).
 * Every input must be either rejected with an error code or opened and run without a sanitizer report. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slt_packed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t need = 0;
    slt_model *m = 0;
    void *arena;
    float *in, logits[65536 > 0 ? 1 : 1];
    int code;
    uint8_t *file = (uint8_t *)malloc(size ? size : 1); /* exact-size copy: ASan catches any over-read */
    if (!file) return 0;
    memcpy(file, data, size);
    (void)slt_arena_size(file, size, 0, &need);              /* with checksums: must not crash either */
    code = slt_arena_size(file, size, SLT_FLAG_NO_CRC, &need);
    if (code == SLT_OK && need <= (4u << 20)) {
        arena = malloc(need + 8u); /* malloc is at least 8-aligned */
        if (arena && slt_open(file, size, SLT_FLAG_NO_CRC, arena, need, &m) == SLT_OK) {
            uint32_t T = slt_T(m), n = slt_input_size(m), c = slt_n_classes(m), s = slt_spike_count(m);
            if ((uint64_t)T * n <= (1u << 16) && (uint64_t)T * s <= (1u << 20)) {
                float *lg = (float *)malloc(sizeof(float) * c);
                uint8_t *sp = (uint8_t *)malloc((size_t)T * s + 1u);
                size_t i;
                in = (float *)malloc(sizeof(float) * (size_t)T * n + 4u);
                for (i = 0; in && i < (size_t)T * n; i++) in[i] = (float)((i * 7u) % 5u); /* integer "pixels" */
                if (in && lg && sp) slt_run(m, in, lg, sp);
                free(in); free(lg); free(sp);
            }
        }
        free(arena);
    }
    (void)logits;
    free(file);
    return 0;
}

/* Bare-metal link check for Cortex-M: one inference of an embedded packed model, no libc, static arena.
 * Built by `make arm` (model bytes and arena size generated from a .slt file by ../embed.py). */
#include "slt_packed.h"
#include "model_data.h"   /* SLT_MODEL[], SLT_MODEL_LEN, SLT_ARENA_BYTES, SLT_T_IN, SLT_CLASSES */

static uint64_t arena[(SLT_ARENA_BYTES + 7u) / 8u];
static float input[SLT_T_IN];
static float logits[SLT_CLASSES];
volatile int result;

int main(void) {
    slt_model *m;
    size_t need;
    uint32_t i, best = 0;
    if (slt_arena_size(SLT_MODEL, SLT_MODEL_LEN, 0, &need) || need > sizeof(arena)) return result = -1;
    if (slt_open(SLT_MODEL, SLT_MODEL_LEN, 0, arena, sizeof(arena), &m)) return result = -2;
    for (i = 0; i < SLT_T_IN; i++) input[i] = (float)(i % 17u);
    slt_run(m, input, logits, 0);
    for (i = 1; i < SLT_CLASSES; i++)
        if (logits[i] > logits[best]) best = i;
    return result = (int)best;
}

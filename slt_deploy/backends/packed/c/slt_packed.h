/* slt_packed: C99 reader and event-driven interpreter of packed slt-deploy models (docs/packed-format.md, v1).
 *
 * No malloc, no libc in the inner loops. The caller owns all memory:
 *
 *     size_t need;
 *     if (slt_arena_size(file, len, 0, &need) != SLT_OK) ...;   // validates the whole file
 *     slt_model *m;
 *     slt_open(file, len, 0, arena, need, &m);                  // the file buffer must outlive m
 *     slt_run(m, input, logits, spikes_or_NULL);                // one sample, T steps
 *
 * input: float32 [T][C*H*W] in raw units (pixels 0..input_max, or 0/1 spikes); logits: float32 [n_classes].
 * spikes (optional): uint8 [T][slt_spike_count(m)], the LIF outputs concatenated in node order.
 */
#ifndef SLT_PACKED_H
#define SLT_PACKED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SLT_OK = 0,
    SLT_E_ARG = 1,        /* NULL pointer / arena too small / bad call */
    SLT_E_TRUNCATED = 2,  /* file shorter than its header says, or shorter than a header */
    SLT_E_MAGIC = 3,
    SLT_E_VERSION = 4,
    SLT_E_HEADER = 5,     /* header field out of range, flags/reserved not zero, trailing bytes */
    SLT_E_CRC = 6,
    SLT_E_NODE = 7,       /* bad op code, flags, inputs, ordering */
    SLT_E_SHAPE = 8,      /* impossible or oversize shape */
    SLT_E_SECTION = 9,    /* data section outside the data area / misaligned */
    SLT_E_STREAM = 10,    /* mask / index / sign stream inconsistent with the layer */
    SLT_E_VALUE = 11,     /* non-finite or out-of-range number */
    SLT_E_TEXT = 12       /* name/label string not strict UTF-8, or labels ending in '\n' */
};

#define SLT_FLAG_NO_CRC 1u   /* skip both checksums (fuzzing only: exercises the structural checks) */

typedef struct slt_model slt_model;

/* Validates the file and writes the arena bytes slt_open needs. Returns SLT_OK or an error code. */
int slt_arena_size(const uint8_t *file, size_t len, unsigned flags, size_t *arena_bytes);
/* Validates again and builds the model inside arena (8-byte aligned, at least slt_arena_size bytes). */
int slt_open(const uint8_t *file, size_t len, unsigned flags, void *arena, size_t arena_bytes, slt_model **out);
/* Runs one sample for T steps. Returns SLT_OK or SLT_E_ARG. */
int slt_run(slt_model *m, const float *input, float *logits, uint8_t *spikes);
/* Runs B samples: input [T][B][in], logits [B][classes], spikes NULL or [T][B][spike_count]. */
int slt_run_batch(slt_model *m, const float *input, uint32_t batch, float *logits, uint8_t *spikes);

uint32_t slt_T(const slt_model *m);
uint32_t slt_input_size(const slt_model *m);
uint32_t slt_n_classes(const slt_model *m);
uint32_t slt_spike_count(const slt_model *m);
/* synaptic events (nonzero input x kept weight) processed since slt_open: what "event-driven" costs */
uint64_t slt_events(const slt_model *m);
const char *slt_error_string(int code);
/* The node index and a short reason of the last failed slt_arena_size/slt_open call on this thread's
 * context are not kept (no globals); error codes are the contract. */

#ifdef __cplusplus
}
#endif
#endif

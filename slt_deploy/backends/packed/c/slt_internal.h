/* slt_internal.h: what the packed runtime's C files share; not part of the API (slt_packed.h is).
 * The build configuration, the model as it lives in the arena (slt_node, slt_model, built by slt_reader.c), byte and
 * float helpers, the per-row emit kernels the conv and affine kernels both use, and the entry points between files:
 *   slt_reader.c  validates a file and builds the model in the caller's arena (slt_arena_size, slt_open)
 *   slt_conv.c    convolution kernels                 slt_affine.c  affine (fully connected) kernels
 *   slt_lif.c     LIF neuron updates                  slt_run.c     one step node by node (slt_run, slt_run_batch)
 * C99, no malloc, no libc. Build with -ffp-contract=off: the arithmetic order is part of the format. */
#ifndef SLT_INTERNAL_H
#define SLT_INTERNAL_H

#include "slt_packed.h"

/* SIMD builds (x86-64 SSE2, NEON) and scalar builds (Cortex-M) pick different kernels (slt_conv.c, slt_affine.c);
 * the choice changes speed only, never a result bit. */
#ifndef SLT_SIMD   /* -DSLT_SIMD=0/1 overrides (e.g. to count a scalar build's instructions on a SIMD host) */
#if defined(__SSE2__) || defined(__ARM_NEON) || defined(__aarch64__)
#define SLT_SIMD 1
#else
#define SLT_SIMD 0
#endif
#endif
#if SLT_SIMD && defined(__AVX__)
#include <immintrin.h>
#elif SLT_SIMD && defined(__SSE2__)
#include <emmintrin.h>
#elif SLT_SIMD && (defined(__ARM_NEON) || defined(__aarch64__))
#include <arm_neon.h>
#endif

/* SIMD builds: vectors of SLT_VW floats (AVX 8, SSE2 and AArch64 NEON 4; ARMv7 NEON flushes denormals: none). Each
 * is one IEEE operation per lane, the scalar code's own arithmetic (no FMA); VSPIKE(v, t, one) = (float)(v > t) per
 * lane (NaN: 0). */
#if SLT_SIMD && defined(__AVX__)
#define SLT_VW 8u
typedef __m256 slt_vf;
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSET1(w) _mm256_set1_ps(w)
#define VMAC(a, x, w) _mm256_add_ps((a), _mm256_mul_ps((x), (w)))
#define VADD(a, b) _mm256_add_ps((a), (b))
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define VSTORE(p, a) _mm256_storeu_ps((p), (a))
#define VSUB(a, b) _mm256_sub_ps((a), (b))
#define VSPIKE(v, t, one) _mm256_and_ps(_mm256_cmp_ps((v), (t), _CMP_GT_OQ), (one))
#elif SLT_SIMD && defined(__SSE2__)
#define SLT_VW 4u
typedef __m128 slt_vf;
#define VZERO() _mm_setzero_ps()
#define VLOAD(p) _mm_loadu_ps(p)
#define VSET1(w) _mm_set1_ps(w)
#define VMAC(a, x, w) _mm_add_ps((a), _mm_mul_ps((x), (w)))
#define VADD(a, b) _mm_add_ps((a), (b))
#define VMUL(a, b) _mm_mul_ps((a), (b))
#define VSTORE(p, a) _mm_storeu_ps((p), (a))
#define VSUB(a, b) _mm_sub_ps((a), (b))
#define VSPIKE(v, t, one) _mm_and_ps(_mm_cmpgt_ps((v), (t)), (one))
#elif SLT_SIMD && defined(__aarch64__)   /* AArch64 NEON is IEEE (ARMv7 NEON flushes denormals: plain C below) */
#define SLT_VW 4u
typedef float32x4_t slt_vf;
#define VZERO() vdupq_n_f32(0.0f)
#define VLOAD(p) vld1q_f32(p)
#define VSET1(w) vdupq_n_f32(w)
#define VMAC(a, x, w) vaddq_f32((a), vmulq_f32((x), (w)))
#define VADD(a, b) vaddq_f32((a), (b))
#define VMUL(a, b) vmulq_f32((a), (b))
#define VSTORE(p, a) vst1q_f32((p), (a))
#define VSUB(a, b) vsubq_f32((a), (b))
#define VSPIKE(v, t, one) vreinterpretq_f32_u32(vandq_u32(vcgtq_f32((v), (t)), vreinterpretq_u32_f32(one)))
#endif

enum { OP_INPUT, OP_CONV, OP_AFFINE, OP_LIF, OP_FLATTEN, OP_ADD, OP_TOKENS, OP_PATCH, OP_ATTN, OP_TOKSUM,
       OP_OUTPUT, N_OPS };
#define AFF_CHUNK 4u   /* SIMD builds: an affine row's kept weights in chunks of this many (affine_chunks) */
#define F_BINARY 1u
#define F_SUBTRACT 2u

typedef struct {
    uint8_t op, n_in, flags, rank;
    uint16_t in[4];
    uint32_t d[3];
    uint32_t size;                 /* output elements */
    /* synapse */
    uint32_t ci, ih, iw, k, st, pd, rows, cols, kept, enc, bits, nsym, ntok, din;
    const uint8_t *mask, *vals, *params;
    uint32_t *rowtab;              /* rows+1 kept-count prefixes (first kept index of each row) */
    uint16_t *colidx;              /* the column of every kept weight, expanded from the mask at open */
    uint8_t sgncol;                /* binary with cols <= 2^15: colidx holds (column << 1) | sign bit */
    uint8_t reuse;                 /* synaptic node reading only the model input: step t reuses step t-1's output
                                    * when the input did not change (direct encoding: every step) */
    uint8_t defer;                 /* conv whose epilogue runs inside its in-place LIF (fused); a staged conv never
                                    * defers: conv_staged applies its epilogue per row */
    uint8_t fused;                 /* LIF working in place on a conv: applies the conv's epilogue per element */
    uint8_t rate;                  /* conv: nonzero fraction of its inputs in the last computed step, x255 (picks
                                    * each row's kernel for the next step; no effect on any result bit) */
    uint64_t last_ev;              /* synaptic events of the last computed step (counted again on reuse) */
    uint32_t *pm;                  /* binary affine reading spikes, dense enough (pop_pays): per output column its
                                    * +1 weights as input bits [cols][pwords], then its -1 weights [cols][pwords] */
    uint32_t *sb;                  /* [pwords + 1]: one token's spike bits; the nonzero word indices follow at open */
    uint16_t *sw;                  /* [pwords]: indices of the nonzero words of sb (this token) */
    uint32_t pwords;               /* ceil(din / 32) */
#if SLT_SIMD
    /* SIMD builds, single-input conv: its input staged as zero-padded phase planes (conv_staged) */
    float *stage, *acc;            /* planes [ci][st][st][ps]; one output channel's accumulators [lb] (rows of pw) */
    uint32_t *tcol;                /* [cols + 1]: column c's kept weights are terms [tcol[c], tcol[c+1]) */
    uint32_t *toff;                /* per term (in packing-row order within a column): its plane offset in stage */
    float *tw;                     /* per term: its weight as a multiplier (binary: +-1) */
    uint32_t *evw;                 /* [ci][ih][iw]: the synaptic events a nonzero input there makes (kept weights
                                    * reading it at a real output) */
    uint32_t pw, ps, lb, qneg;     /* plane row width, plane stride, ho*pw rounded up to 8, -floor(-pd / st) */
    /* SIMD builds, single-input affine reading spikes: every row's kept weights padded to whole chunks of AFF_CHUNK
     * (affine_chunks) */
    uint32_t *arow;                /* [din + 1]: row i's chunks are [arow[i], arow[i+1]) */
    uint32_t *anz;                 /* [ceil(din / 32)]: bit i: row i has kept weights */
    uint16_t *acol;                /* per chunk slot: its output column (padding: the row's first column) */
    float *aw;                     /* per chunk slot: its weight as an addend for a spike (padding: +0) */
    float *tbase;                  /* a LIF fed by a layer that reads only the model input: its buffer holds T
                                    * steps of spikes, all computed at step 0 when the sample's input is the same
                                    * at every step (lif_const_steps); out points at step t's */
#endif
    /* lif */
    float beta, thr;
    float *v;
    uint32_t spike_off;
    /* patch select / attention */
    const uint8_t *index;
    uint32_t heads;
    float ascale;
    float *out;
} slt_node;

struct slt_model {
    const uint8_t *payload;
    uint32_t n_nodes, T, in_size, n_classes, spike_count;
    uint64_t events;
    int const_in;                  /* this sample's input is the same (==) at every step (slt_run) */
    slt_node *nodes;
};

static inline uint32_t rd32(const uint8_t *p) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__ARM_FEATURE_UNALIGNED) || defined(__x86_64__) || defined(__i386__))
    /* one (possibly unaligned) word load on targets that allow it (Cortex-M3/M4/M7, x86), byte loads elsewhere;
     * the value is the same little-endian word. Float weights are read per
     * event, so this is most of an event's cost on a Cortex-M7 otherwise (4 loads + 3 shifts/ors). */
    uint32_t u;
    __builtin_memcpy(&u, p, 4);
    return u;
#else
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
#endif
}
static inline float as_f32(uint32_t u) {
    union { uint32_t u; float f; } c;
    c.u = u;
    return c.f;
}
static inline float rdf(const uint8_t *p) { return as_f32(rd32(p)); }
static inline uint32_t f32_bits(float f) {
    union { float f; uint32_t u; } c;
    c.f = f;
    return c.u;
}
/* x != 0.0f as an integer test (no FPU compare and flag transfer): false exactly for +0 and -0 */
static inline int nonzero(float x) { return (f32_bits(x) << 1) != 0; }
#if !SLT_SIMD
/* the bits of *p loaded straight into an integer register (scalar event loops test most inputs and skip them:
 * one load instead of an FPU load plus a register transfer) */
static inline uint32_t bits_at(const float *p) {
#if defined(__GNUC__)
    uint32_t u;
    __builtin_memcpy(&u, p, 4);
    return u;
#else
    return f32_bits(*p);
#endif
}
#endif
static inline uint32_t bit_at(const uint8_t *s, uint64_t pos) { return (s[pos >> 3] >> (pos & 7u)) & 1u; }

/* unrolling hints (gcc 8+): the scalar event scans 4x (loop overhead was 4 of the ~7 instructions per input tested;
 * Cortex-M7 QEMU count, full-scale IMP 98 % ticket: 4,079,244 -> 3,998,508 instructions per frame), conv_fixed's
 * per-weight loops fully (its weights then live in registers, not in a stack array walked per input) */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define SLT_UNROLL4 _Pragma("GCC unroll 4")
#define SLT_UNROLL8 _Pragma("GCC unroll 8")
#else
#define SLT_UNROLL4
#define SLT_UNROLL8
#endif
#if defined(__GNUC__)
#define SLT_HOT_INLINE static inline __attribute__((always_inline))
#define SLT_COLD static __attribute__((noinline))   /* kept out of the calling kernel's register allocation */
#else
#define SLT_HOT_INLINE static inline
#define SLT_COLD static
#endif

/* ------------------------------------------------------------------------------------------------------------ */
/* execution helpers */

static inline const float *node_out(const slt_model *m, uint32_t idx, const float *input) {
    return idx == 0 ? input : m->nodes[idx].out;
}

/* value of element e of a node's (summed) input, summed in record order */
static inline float in_val(const slt_model *m, const slt_node *n, const float *input, uint32_t e) {
    float x = node_out(m, n->in[0], input)[e];
    uint32_t k;
    for (k = 1; k < n->n_in; k++) x = x + node_out(m, n->in[k], input)[e];
    return x;
}

/* dst[e] = in_val(e) for e < count, input by input (the same per-element order: ((in0 + in1) + in2) + ...);
 * dst is the node's own buffer (only single-input LIF / flatten nodes work in place) */
static inline void sum_inputs(const slt_model *m, const slt_node *n, const float *input, float *dst, uint32_t count) {
    const float *a = node_out(m, n->in[0], input);
    uint32_t e, k;
    if (n->n_in == 1) {
        for (e = 0; e < count; e++) dst[e] = a[e];
        return;
    }
    {
        const float *b = node_out(m, n->in[1], input);
        for (e = 0; e < count; e++) dst[e] = a[e] + b[e];
    }
    for (k = 2; k < n->n_in; k++) {
        const float *c = node_out(m, n->in[k], input);
        for (e = 0; e < count; e++) dst[e] = dst[e] + c[e];
    }
}

/* kept weight kidx as a multiplier: binary +1/-1 (x * -1 = -x exactly, the event path's sign flip), float its value;
 * kind: see emit_row (2 and 3 read the same float) */
static inline float weight_of(const slt_node *n, int kind, uint32_t kidx) {
    if (kind == 0) return (n->colidx[kidx] & 1u) ? 1.0f : -1.0f;
    if (kind == 1) return bit_at(n->vals, kidx) ? 1.0f : -1.0f;
    return rdf(n->vals + 4u * kidx);
}

/* add x * w for every kept weight kidx in [k0, k1) (one packing row) to out[col * ostride]. The kept weights of a
 * row feed distinct outputs, so their order does not matter; rows are visited in ascending input index.
 * kind (loop-invariant, see syn_kind): 0 binary, sign in colidx; 1 binary, sign bit stream; 2 float; 3 float,
 * x = 1 (spike input). */
/* emit_row (per nonzero input) and conv_span (per conv row) must be inlined into their kind-specialised callers:
 * gcc -O2 for Cortex-M stopped doing it once they grew, and the calls cost 15 % more instructions per frame
 * (QEMU count, full-scale ticket: 3.73 M with calls, 3.24 M inlined; x86 unchanged) */
/* emit_row for kinds 0, 2, 3 given the row's kept weights as pointers: colidx [c, ce), values from v (kinds 2, 3;
 * unused for kind 0). A scan loop computes them once per row, not once per nonzero input. */
SLT_HOT_INLINE void emit_span(int kind, const uint16_t *c, const uint16_t *ce, const uint8_t *v, float x, float *out,
                             uint32_t ostride) {
    if (kind == 0) {
        /* sign bit 1: +x, 0: -x, i.e. -x with its sign bit flipped by the weight's (negation is a sign flip) */
        const uint32_t nb = f32_bits(-x);
        for (; c < ce; c++) {
            float *o = out + (size_t)(*c >> 1) * ostride;
            *o = *o + as_f32(nb ^ ((uint32_t)*c << 31));
        }
    } else if (kind == 2) {
        for (; c < ce; c++, v += 4) {
            float *o = out + (size_t)*c * ostride;
            *o = *o + x * rdf(v);
        }
    } else {   /* float weights, spike input: a nonzero x is exactly 1 and 1 * w = w, so no multiply */
        for (; c < ce; c++, v += 4) {
            float *o = out + (size_t)*c * ostride;
            *o = *o + rdf(v);
        }
    }
}

SLT_HOT_INLINE void emit_row(const slt_node *n, int kind, uint32_t k0, uint32_t k1, float x, float *out,
                            uint32_t ostride) {
    if (kind == 1) {
        float xs[2];
        uint32_t kidx;
        xs[0] = -x;
        xs[1] = x;
        for (kidx = k0; kidx < k1; kidx++) {
            float *o = out + (size_t)n->colidx[kidx] * ostride;
            *o = *o + xs[bit_at(n->vals, kidx)];
        }
    } else {
        emit_span(kind, n->colidx + k0, n->colidx + k1, kind == 0 ? n->vals : n->vals + 4u * k0, x, out, ostride);
    }
}

#if SLT_SIMD
/* lowest set bit of m != 0 (x86: tzcnt, ARMv8: rbit + clz; no library call) */
static inline uint32_t ctz32(uint32_t m) {
#if defined(__GNUC__)
    return (uint32_t)__builtin_ctz(m);
#else
    uint32_t b = 0;
    while (!(m & 1u)) { m >>= 1; b++; }
    return b;
#endif
}

/* bit j of the result: x[j * st] != 0, for j < cnt <= 32 (branch-free: spike inputs are unpredictable) */
static inline uint32_t nz_mask(const float *x, uint32_t st, uint32_t cnt) {
    uint32_t m = 0;
    size_t j;
#if defined(__SSE2__)
    if (st == 1u && cnt == 32u) {   /* 4 lanes per compare; unordered (NaN) != 0 is true, as below */
        const __m128 z = _mm_setzero_ps();
        for (j = 0; j < 32u; j += 4u)
            m |= (uint32_t)_mm_movemask_ps(_mm_cmpneq_ps(_mm_loadu_ps(x + j), z)) << j;
        return m;
    }
#endif
    for (j = 0; j < cnt; j++) m |= (uint32_t)(x[j * st] != 0.0f) << j;   /* = nonzero(), NaN included */
    return m;
}
#endif

/* node idx outputs spikes (exactly 0.0 or 1.0): a LIF, possibly behind single-input flattens */
static inline int spike_source(const slt_model *m, uint32_t idx) {
    while (idx != 0 && m->nodes[idx].op == OP_FLATTEN && m->nodes[idx].n_in == 1) idx = m->nodes[idx].in[0];
    return idx != 0 && m->nodes[idx].op == OP_LIF;
}

/* a synaptic node's weight kind (see emit_row): 0 binary, sign in colidx; 1 binary, sign bit stream; 2 float; 3 float
 * reading spikes only (no multiply) */
static inline int syn_kind(const slt_model *m, const slt_node *n) {
    if (n->sgncol) return 0;
    if (n->flags & F_BINARY) return 1;
    return n->n_in == 1 && spike_source(m, n->in[0]) ? 3 : 2;
}

/* prev: the previous step's input of this sample (NULL at t = 0). A synaptic node reading only the model input
 * computes the same bits from the same input: when every input element equals (==) the previous step's, its buffer
 * still holds the result (nobody writes into it) and only its events are counted again (returns 1). +0 == -0: both
 * are skipped. */
#if SLT_SIMD
/* a[e] == b[e] for every e < n (+0 == -0, NaN != NaN), 64 at a time without a branch per element (vectorized) */
static inline int same_floats(const float *a, const float *b, uint32_t n) {
    uint32_t e, j;
    for (e = 0; e < n; e += 64u) {
        const uint32_t lim = n - e < 64u ? n : e + 64u;
        uint32_t same = 1u;
        for (j = e; j < lim; j++) same &= (uint32_t)(a[j] == b[j]);
        if (!same) return 0;
    }
    return 1;
}
#endif

static inline int reuses_last(slt_model *m, const slt_node *n, const float *input, const float *prev) {
#if !SLT_SIMD
    const uint32_t sz = m->in_size;
    uint32_t e;
#endif
    if (!n->reuse || !prev) return 0;
#if SLT_SIMD   /* known already when the sample's input is the same at every step (slt_run: const_in) */
    if (!m->const_in && !same_floats(input, prev, m->in_size)) return 0;
#else
    /* scalar builds: a branch per element is cheaper than the masks (Cortex-M, QEMU count) */
    for (e = 0; e < sz && input[e] == prev[e]; e++) {}
    if (e < sz) return 0;
#endif
    m->events += n->last_ev;
    return 1;
}

/* the synaptic events of this step: counted, and kept for a reused step */
static inline void count_events(slt_model *m, slt_node *n, uint64_t ev) {
    m->events += ev;
    n->last_ev = ev;
}

/* out[e] = +0 for e < size: four stores per iteration (no memset in the freestanding build) */
static inline void zero_floats(float *out, uint32_t size) {
    const uint32_t s4 = size & ~3u;
    uint32_t e;
    for (e = 0; e < s4; e += 4) { out[e] = 0.0f; out[e + 1] = 0.0f; out[e + 2] = 0.0f; out[e + 3] = 0.0f; }
    for (; e < size; e++) out[e] = 0.0f;
}

/* entry points between the files: one call per node and step. A synaptic node's step: its accumulators, then
 * (unless a fused LIF applies it: n->defer) its epilogue, binary y = acc * scale_c + bias_c, float y = acc + bias_c
 * (two roundings, no FMA). prev: the previous step's input (reuses_last). */
void sltp_conv_step(slt_model *m, slt_node *n, const float *input, const float *prev);
void sltp_affine_step(slt_model *m, slt_node *n, const float *input, const float *prev);
/* one LIF step of node n at step t; spikes: the step's spike record or NULL */
void sltp_lif_step(slt_model *m, slt_node *n, const float *input, uint32_t t, uint8_t *spikes);

#endif

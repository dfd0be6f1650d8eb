/* slt_affine.c: affine (fully connected) kernels of the packed runtime: per token, the kept weights of every nonzero
 * input (event-driven, inputs found 32 at a time), or for binary weights on spikes, when it is cheaper at the last
 * step's input rate, popcounts of the spike bits against each output's +1 and -1 weight bits. */
#include "slt_internal.h"

/* one token row of an affine layer: inputs x[i] (i < din) through packing rows i into out[col]; returns events.
 * The nonzero inputs are found 32 at a time through a branch-free bit mask, in ascending i. */
static uint64_t affine_span(const slt_node *n, int kind, const float *x, uint32_t din, float *out) {
    const uint32_t *rowtab = n->rowtab;
    uint64_t ev = 0;
#if !SLT_SIMD
    uint32_t i;
    for (i = 0; i < din; i++) {   /* scalar builds: one test and branch per input (see the kernel choice) */
        const uint32_t xb = bits_at(x + i);
        uint32_t k0, k1;
        if (kind == 3 ? xb == 0 : !(xb << 1)) continue;   /* kind 3 reads spikes: never -0 */
        k0 = rowtab[i];
        k1 = rowtab[i + 1];
        if (k0 == k1) continue;
        emit_row(n, kind, k0, k1, as_f32(xb), out, 1u);
        ev += k1 - k0;
    }
#else
    uint32_t i0;
    for (i0 = 0; i0 < din; i0 += 32u) {
        uint32_t m = nz_mask(x + i0, 1u, din - i0 < 32u ? din - i0 : 32u);
        while (m) {
            const uint32_t i = i0 + ctz32(m), k0 = rowtab[i], k1 = rowtab[i + 1];
            m &= m - 1u;
            if (k0 == k1) continue;
            emit_row(n, kind, k0, k1, x[i], out, 1u);
            ev += k1 - k0;
        }
    }
#endif
    return ev;
}

#if SLT_SIMD
/* one token row of an affine layer reading spikes, through its chunked rows (affine_chunk_buffers): per spiking input
 * (found 32 at a time, rows without kept weights masked out) whole chunks of AFF_CHUNK adds, no branch per weight (the
 * event kernel's loop over 1-5 weights per row mispredicted about once per spike: a third of the run time of the
 * full-scale IMP ticket). Exact: each output gets its terms in ascending input order as in affine_span (a spike is 1,
 * so the term is the weight, binary +-1 included), and a padding slot adds +0 to a column of the same row after its
 * real term, which changes no accumulator (never -0: it starts at +0). Returns the events. */
static uint64_t affine_chunks(const slt_node *n, const float *x, float *out) {
    const uint32_t din = n->din, *rowtab = n->rowtab, *arow = n->arow, *anz = n->anz;
    const uint16_t *acol = n->acol;
    const float *aw = n->aw;
    uint64_t ev = 0;
    uint32_t i0;
    for (i0 = 0; i0 < din; i0 += 32u) {
        uint32_t m = nz_mask(x + i0, 1u, din - i0 < 32u ? din - i0 : 32u) & anz[i0 / 32u];
        while (m) {
            const uint32_t i = i0 + ctz32(m), qe = arow[i + 1];
            uint32_t q = arow[i];
            m &= m - 1u;
            ev += rowtab[i + 1] - rowtab[i];
            do {
                const uint16_t *c = acol + (size_t)q * AFF_CHUNK;
                const float *w = aw + (size_t)q * AFF_CHUNK;
                uint32_t j;
                SLT_UNROLL4
                for (j = 0; j < AFF_CHUNK; j++) out[c[j]] = out[c[j]] + w[j];
            } while (++q < qe);
        }
    }
    return ev;
}
#endif

/* one token of a binary affine layer reading spikes, through its weight bits (pop_pays): output column c gets
 * (spiking inputs with a +1 weight) - (spiking inputs with a -1 weight), counted 32 inputs per word. That is exactly
 * the event kernel's float sum of +-1 terms in any order (integers below 2^24; no terms or a zero sum: +0), and
 * the events (spiking input x kept weight pairs) are the two counts' sum. Only the words with a spike are read. */
static uint32_t popcount32(uint32_t v) {
#if defined(__GNUC__) && defined(__POPCNT__)
    return (uint32_t)__builtin_popcount(v);
#else
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (v * 0x01010101u) >> 24;
#endif
}

/* The kernel for this step, by the last step's input rate (rate x 255; events / kept weights after the event
 * kernel): events ~ din * AEV_SCAN + rate * (din * AEV_NZ + kept * AEV_ADD), words ~ din * POP_PACK + cols *
 * words * POP_WORD (every word read). Instructions of gcc -O2/-O3, counted; the choice changes no result bit. */
#if SLT_SIMD
#define AEV_SCAN 2u
#define AEV_NZ 10u
#define AEV_ADD 4u
#define POP_PACK 4u
#define POP_WORD 10u
#else
#define AEV_SCAN 5u
#define AEV_NZ 12u
#define AEV_ADD 10u
#define POP_PACK 4u
#define POP_WORD 32u
#endif
/* num / den x 255, at most 255, in 32-bit division (no 64-bit helper on small cores) */
SLT_COLD uint8_t rate255(uint64_t num, uint64_t den) {
    while (den >> 23) { num >>= 1; den >>= 1; }
    if (!den || num >= den) return 255u;
    return (uint8_t)(((uint32_t)num * 255u) / (uint32_t)den);
}

static int pop_wins(const slt_node *n) {
    const uint64_t ev = (uint64_t)n->din * AEV_SCAN * 255u + (uint64_t)n->rate * ((uint64_t)n->din * AEV_NZ +
                                                                                (uint64_t)n->kept * AEV_ADD);
    const uint64_t pop = ((uint64_t)n->din * POP_PACK + (uint64_t)n->cols * n->pwords * POP_WORD) * 255u;
    return pop < ev;
}

SLT_COLD uint64_t affine_pop(slt_node *n, const float *x, float *out) {
    const uint32_t words = n->pwords, din = n->din, cols = n->cols;
    const size_t half = (size_t)cols * words;
    uint32_t *sb = n->sb;
    uint16_t *sw = n->sw;
    uint32_t w, nw = 0, c, nz = 0;
    uint64_t ev = 0;
    for (w = 0; w < words; w++) {
        const uint32_t base = 32u * w, lim = din - base < 32u ? din - base : 32u;
        uint32_t b = 0, i;
        for (i = 0; i < lim; i++) b |= (uint32_t)(x[base + i] != 0.0f) << i;   /* spikes: 0 or 1, never -0 */
        sb[w] = b;
        if (b) {
            sw[nw++] = (uint16_t)w;
            nz += popcount32(b);
        }
    }
    for (c = 0; c < cols; c++) {
        const uint32_t *pp = n->pm + (size_t)c * words, *nn = pp + half;
        uint32_t cp = 0, cn = 0, q;
        for (q = 0; q < nw; q++) {
            const uint32_t k = sw[q], b = sb[k];
            cp += popcount32(b & pp[k]);
            cn += popcount32(b & nn[k]);
        }
        out[c] = (float)((int32_t)cp - (int32_t)cn);
        ev += (uint64_t)cp + cn;
    }
    n->rate = rate255(nz, din);
    return ev;
}

/* the affine node's accumulators for this step into n->out (every token); returns the synaptic events */
static uint64_t affine_rows(slt_model *m, slt_node *n, const float *input, int kind) {
    float *out = n->out;
    const uint32_t o = n->cols;
    const float *x0 = node_out(m, n->in[0], input);
    const int single = n->n_in == 1;
    const uint32_t *rowtab = n->rowtab;
    uint64_t ev = 0;
    zero_floats(out, n->size);
    const uint32_t ntok = n->ntok ? n->ntok : 1u;
    uint32_t t, i;
    for (t = 0; t < ntok; t++) {
        float *ot = out + (size_t)t * o;
        if (single) {
            const float *xt = x0 + (size_t)t * n->din;   /* kind as a constant: one specialised copy each */
            if (n->pm && pop_wins(n)) {
                ev += affine_pop(n, xt, ot);
                continue;
            }
#if SLT_SIMD
            if (n->arow) {
                const uint64_t e1 = affine_chunks(n, xt, ot);
                ev += e1;
                if (n->pm) n->rate = rate255(e1, n->kept);
                continue;
            }
#endif
            {
                const uint64_t e1 = kind == 0 ? affine_span(n, 0, xt, n->din, ot)
                                  : kind == 1 ? affine_span(n, 1, xt, n->din, ot)
                                  : kind == 2 ? affine_span(n, 2, xt, n->din, ot)
                                              : affine_span(n, 3, xt, n->din, ot);
                ev += e1;
                if (n->pm) n->rate = rate255(e1, n->kept);
            }
            continue;
        }
        for (i = 0; i < n->din; i++) {
            const uint32_t idx = t * n->din + i, k0 = rowtab[i], k1 = rowtab[i + 1];
            const float x = in_val(m, n, input, idx);
            if (!nonzero(x) || k0 == k1) continue;
            emit_row(n, kind, k0, k1, x, ot, 1u);
            ev += k1 - k0;
        }
    }
    return ev;
}

void sltp_affine_step(slt_model *m, slt_node *n, const float *input, const float *prev) {
    const int binary = (n->flags & F_BINARY) != 0;
    const uint32_t o = n->cols;
    const uint8_t *bias = n->params + (binary ? 4u * o : 0u);
    uint32_t c, j;
    if (reuses_last(m, n, input, prev)) return;
    count_events(m, n, affine_rows(m, n, input, syn_kind(m, n)));   /* never deferred: only a conv fuses */
    for (c = 0; c < o; c++) {
        const float sc = binary ? rdf(n->params + 4u * c) : 1.0f, bi = rdf(bias + 4u * c);
        for (j = c; j < n->size; j += o) {
            if (binary) { float y = n->out[j] * sc; n->out[j] = y + bi; }
            else n->out[j] = n->out[j] + bi;
        }
    }
}

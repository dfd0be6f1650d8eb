/* slt_conv.c: convolution kernels of the packed runtime. Per packing row (input channel, ky, kx) of kept weights the
 * cheaper of two kernels at the layer's input density: weight-stationary (every input times the row's weights,
 * branch-free) or event-driven (only the nonzero inputs); SIMD builds run a single-input conv through zero-padded
 * phase planes instead (conv_staged). Every output gets its terms in ascending packing row, as the format's order
 * of accumulation says (docs/packed-format.md section 4), whatever the kernel. */
#include "slt_internal.h"

/* Kernel choice per conv packing row with k kept weights, in half-instructions per input the row reads:
 * weight-stationary WS_BASE + k * WS_MAC; events EV_SCAN (finding the nonzero inputs) + rate * (EV_NZ + EV_ADD * k)
 * (per nonzero input: bookkeeping and k scattered adds). SIMD builds (x86-64 SSE2, NEON): the weight-stationary
 * loops run 4 lanes wide and the event kernel finds nonzero inputs through a branch-free bit mask (a mispredicted
 * branch costs more than the work); scalar builds (Cortex-M: instructions are the cost, branches are cheap) test
 * each input with one branch. Counted for gcc -O2/-O3; the choice changes speed only, never a result bit. */
#if SLT_SIMD
#define WS_BASE 0u
#define WS_MAC 1u
#define EV_SCAN 8u
#define EV_NZ 12u
#define EV_ADD 8u
#else
#define WS_BASE 12u
#define WS_MAC 12u
#define EV_SCAN 10u
#define EV_NZ 8u
#define EV_ADD 10u
#endif


/* Weight-stationary kernel of one conv packing row: every kept weight of the row times EVERY input it reads,
 * zeros included, as a branch-free loop. Exact: for a zero input x * w is +-0 and acc + (+-0) = acc (an
 * accumulator starts at +0 and a sum of finite floats is never -0 in round-to-nearest, so no sign changes), and
 * each accumulator still receives its terms in ascending row order. Pays k MACs per input instead of a test,
 * a mispredicted branch and k scattered adds per nonzero input. Returns the nonzero inputs (counted in the
 * first weight's pass). */
static inline uint32_t conv_ws(const slt_node *n, int kind, const float *x, uint32_t st, uint32_t ystep,
                               uint32_t cnt, uint32_t rows, float *orow, uint32_t wo, uint32_t k0, uint32_t k1,
                               uint32_t per) {
    uint32_t i, kidx, nz = 0;
    size_t j;   /* not uint32_t: j * st must not wrap, or the compiler cannot vectorize the strided loads */
    for (kidx = k0; kidx < k1; kidx++) {
        const float w = weight_of(n, kind, kidx);
        /* the input and output buffers are different nodes' (restrict: no run-time alias checks per row) */
        float *restrict oc = orow + (size_t)(kind == 0 ? n->colidx[kidx] >> 1 : n->colidx[kidx]) * per;
        const float *restrict xr = x;
        if (kidx == k0)
            for (i = 0; i < rows; i++, xr += ystep, oc += wo)
                for (j = 0; j < cnt; j++) {
                    const float xv = xr[j * st];
                    nz += (uint32_t)(xv != 0.0f);   /* = nonzero(xv), NaN included; vectorizable */
                    oc[j] = oc[j] + xv * w;
                }
        else
            for (i = 0; i < rows; i++, xr += ystep, oc += wo)
                for (j = 0; j < cnt; j++) oc[j] = oc[j] + xr[j * st] * w;
    }
    return nz;
}

#if !SLT_SIMD
/* The scalar event scan of a packing row: every input of output row i < rows, column j < cnt, tested with one branch
 * (Cortex-M: instructions are the cost, branches are cheap); EMIT (a statement on xb, the input's bits, and o, its
 * output in the row's first output channel at OUT0) for each nonzero one, counted in nz. */
#define EVENT_SCAN(OUT0, EMIT)                                                                                \
    for (i = 0; i < rows; i++, x += ystep, OUT0 += wo) {                                                     \
        const float *xr = x;                                                                                 \
        SLT_UNROLL4                                                                                          \
        for (j = 0; j < cnt; j++, xr += st) {                                                                \
            const uint32_t xb = bits_at(xr);                                                                 \
            if (kind == 3 ? xb != 0 : xb << 1) { /* kind 3 reads spikes: never -0 */                         \
                float *const o = OUT0 + j;                                                                   \
                nz++;                                                                                        \
                EMIT;                                                                                        \
            }                                                                                                \
        }                                                                                                    \
    }

/* The scalar event kernel of KK (1-8, a constant) kept weights of a packing row, float (kinds 2, 3) or binary signs
 * on spike inputs (kind 0): the weights and their output offsets are loaded once per row into registers, so a
 * nonzero input costs KK loads, adds and stores (no index or value loads). Each weight feeds its own output
 * channel: the same terms in the same order as emit_row. */
SLT_HOT_INLINE uint32_t conv_fixed(const slt_node *n, int kind, uint32_t KK, const float *x, uint32_t st,
                                   uint32_t ystep, uint32_t cnt, uint32_t rows, float *orow, uint32_t wo, uint32_t k0,
                                   uint32_t per) {
    float w[8];
    size_t off[8];
    uint32_t i, j, q, nz = 0;
    SLT_UNROLL8
    for (q = 0; q < KK; q++) {
        const uint32_t c = n->colidx[k0 + q];
        /* kind 0 (only with spike inputs): the +-1 the sign flip of x = 1 gives */
        w[q] = kind == 0 ? ((c & 1u) ? 1.0f : -1.0f) : rdf(n->vals + 4u * (k0 + q));
        off[q] = (size_t)(kind == 0 ? c >> 1 : c) * per;
    }
    EVENT_SCAN(orow, SLT_UNROLL8 for (q = 0; q < KK; q++) o[off[q]] = o[off[q]] + (kind != 2 ? w[q] : as_f32(xb) * w[q]))
    return nz;
}
#endif

/* one conv packing row over its valid outputs: for output row i < rows and column j < cnt, input
 * x[i * ystep + j * st] feeds outputs orow[i * wo + j] + col * per through the kept weights [k0, k1). Returns the
 * number of nonzero inputs (events = that times k1 - k0). ws: the weight-stationary kernel (conv_ws), else the
 * event kernel: per nonzero input, found 32 at a time through a branch-free bit mask, k scattered adds. */
#if !SLT_SIMD
/* conv_fixed for a row's weights [k0, k1), at most 8 at a time (each chunk scans the row's inputs again: cheaper
 * than the general loop's ~10 instructions per weight of every nonzero input); returns the nonzero inputs */
SLT_HOT_INLINE uint32_t conv_chunks(const slt_node *n, int kind, const float *x, uint32_t st, uint32_t ystep,
                                    uint32_t cnt, uint32_t rows, float *orow, uint32_t wo, uint32_t k0, uint32_t k1,
                                    uint32_t per) {
    uint32_t k = k0, nz = 0;
    while (k < k1) {
        const uint32_t kk = k1 - k < 8u ? k1 - k : 8u;
        switch (kk) {
        case 1u: nz = conv_fixed(n, kind, 1u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 2u: nz = conv_fixed(n, kind, 2u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 3u: nz = conv_fixed(n, kind, 3u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 4u: nz = conv_fixed(n, kind, 4u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 5u: nz = conv_fixed(n, kind, 5u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 6u: nz = conv_fixed(n, kind, 6u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 7u: nz = conv_fixed(n, kind, 7u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        default: nz = conv_fixed(n, kind, 8u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        }
        k += kk;
    }
    return nz;
}
#endif

SLT_HOT_INLINE uint32_t conv_span(const slt_node *n, int kind, int ws, int spk, const float *x, uint32_t st,
                                  uint32_t ystep, uint32_t cnt, uint32_t rows, float *orow, uint32_t wo,
                                  uint32_t k0, uint32_t k1, uint32_t per) {
    uint32_t i, j, nz = 0;
    (void)spk;   /* scalar builds only */
    if (ws) {
        if (st == 1) return conv_ws(n, kind, x, 1, ystep, cnt, rows, orow, wo, k0, k1, per);  /* constant strides */
        if (st == 2) return conv_ws(n, kind, x, 2, ystep, cnt, rows, orow, wo, k0, k1, per);
        return conv_ws(n, kind, x, st, ystep, cnt, rows, orow, wo, k0, k1, per);
    }
#if !SLT_SIMD
    if (k1 - k0 == 1 && kind != 1) {
        /* a single kept weight (the common case in a sparse ticket): one output channel, no inner loop */
        float *oc = orow + (size_t)(n->colidx[k0] >> (kind == 0 ? 1 : 0)) * per;
        const uint32_t flip = kind == 0 ? (~(uint32_t)n->colidx[k0] & 1u) << 31 : 0u;   /* sign bit 0: -x */
        const float w = kind == 0 ? 1.0f : rdf(n->vals + 4u * k0);
        EVENT_SCAN(oc, *o = *o + (kind == 0 ? as_f32(xb ^ flip) : kind == 3 ? w : as_f32(xb) * w))   /* kind 3: x = 1 */
        return nz;
    }
    if (kind >= 2 || (kind == 0 && spk))   /* float weights, or signs on spikes: in registers, 8 at a time */
        return conv_chunks(n, kind, x, st, ystep, cnt, rows, orow, wo, k0, k1, per);
    {   /* kind 1, or kind 0 on non-spike inputs: the row's kept weights as pointers, once per row */
        const uint16_t *cb = n->colidx + k0, *ce = n->colidx + k1;
        const uint8_t *vb = n->vals;   /* kind 0: the signs are in colidx */
        EVENT_SCAN(orow, if (kind == 1) emit_row(n, kind, k0, k1, as_f32(xb), o, per);
                         else emit_span(kind, cb, ce, vb, as_f32(xb), o, per))
    }
#else
    for (i = 0; i < rows; i++, x += ystep, orow += wo) {
        uint32_t j0;
        for (j0 = 0; j0 < cnt; j0 += 32u) {
            uint32_t m = nz_mask(x + j0 * st, st, cnt - j0 < 32u ? cnt - j0 : 32u);
            while (m) {
                j = j0 + ctz32(m);
                m &= m - 1u;
                nz++;
                emit_row(n, kind, k0, k1, x[j * st], orow + j, per);
            }
        }
    }
#endif
    return nz;
}

#if SLT_SIMD
/* d0[v] = x[2v], d1[v] = x[2v + 1] for v < n (gcc does not vectorize the plain loop) */
SLT_HOT_INLINE void deinterleave2(const float *restrict x, float *restrict d0, float *restrict d1, uint32_t n) {
    uint32_t v = 0;
#if defined(__AVX2__)
    if (n >= 8u) {   /* 8 at a time; the last 8 again, overlapping (the same values): no tail */
        for (;; v += 8u) {
            if (v + 8u > n) v = n - 8u;
            {
                const __m256 a = _mm256_loadu_ps(x + 2u * v), b = _mm256_loadu_ps(x + 2u * v + 8u);
                /* per 128-bit lane: [x0 x2 x8 x10 | x4 x6 x12 x14], then the 64-bit pairs into order */
                const __m256d e = _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
                const __m256d o = _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
                _mm256_storeu_ps(d0 + v, _mm256_castpd_ps(_mm256_permute4x64_pd(e, _MM_SHUFFLE(3, 1, 2, 0))));
                _mm256_storeu_ps(d1 + v, _mm256_castpd_ps(_mm256_permute4x64_pd(o, _MM_SHUFFLE(3, 1, 2, 0))));
            }
            if (v + 8u >= n) return;
        }
    }
#endif
#if defined(__SSE2__)
    for (; v + 4u <= n; v += 4u) {
        const __m128 a = _mm_loadu_ps(x + 2u * v), b = _mm_loadu_ps(x + 2u * v + 4u);
        _mm_storeu_ps(d0 + v, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm_storeu_ps(d1 + v, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
    }
    if (v < n && n >= 4u) {   /* the last 4 again, overlapping (the same values): no scalar tail */
        const __m128 a = _mm_loadu_ps(x + 2u * (n - 4u)), b = _mm_loadu_ps(x + 2u * (n - 4u) + 4u);
        _mm_storeu_ps(d0 + n - 4u, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm_storeu_ps(d1 + n - 4u, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
        return;
    }
#elif defined(__ARM_NEON) || defined(__aarch64__)
    for (; v + 4u <= n; v += 4u) {
        const float32x4x2_t ab = vld2q_f32(x + 2u * v);
        vst1q_f32(d0 + v, ab.val[0]);
        vst1q_f32(d1 + v, ab.val[1]);
    }
#endif
    for (; v < n; v++) { d0[v] = x[2u * v]; d1[v] = x[2u * v + 1u]; }
}


/* input channel xc [ih][iw] into its st x st phase planes pc (stage_buffers): x[st*u + ry][st*v + rx] goes to plane
 * (ry, rx), row u + qneg, column v + qneg, for the rows u < uy that an output reads. One call per channel with the
 * row pointers stepped, not recomputed per row (the per-row version spent ~100 instructions on each 14-28-float row:
 * callgrind, x86-64 AVX2, full-scale IMP ticket). Returns the synaptic events of the channel: the sum of evw over its
 * nonzero inputs (rows past uy have evw = 0), counted here instead of per kept weight row. */
SLT_HOT_INLINE uint64_t stage_channel(const slt_node *n, const float *restrict xc, float *restrict pc,
                                      const uint32_t *restrict evw, uint32_t uy) {
    const uint32_t st = n->st, ih = n->ih, iw = n->iw, pw = n->pw, qneg = n->qneg;
    const uint32_t rows = ih < uy * st ? ih : uy * st;   /* input rows past the last one any output reads: unused */
    const size_t ps = n->ps;
    const uint32_t nv = iw / st < pw - qneg ? iw / st : pw - qneg;   /* full groups of st input columns */
    const uint32_t tail = iw < (pw - qneg) * st ? iw : (pw - qneg) * st;   /* columns [nv * st, tail): a partial group */
    float *p0 = pc + (size_t)qneg * pw + qneg;
    uint32_t iy, ix, v, ry = 0;   /* iy = st * u + ry; prow: plane (ry, 0), row u + qneg */
    float *prow = p0;
    const size_t used = (size_t)rows * iw;
    size_t e;
    uint32_t ev = 0;   /* the channel's events: below 2^32 (stage_buffers) */
    /* = nonzero(), NaN included; one long loop, the test as a mask (a masked load when written as ?:) */
    for (e = 0; e < used; e++) ev += evw[e] & (0u - (uint32_t)(xc[e] != 0.0f));
    for (iy = 0; iy < rows; iy++, xc += iw) {
        if (st == 1) {
            for (v = 0; v < nv; v++) prow[v] = xc[v];
        } else if (st == 2) {   /* deinterleave even/odd columns into the two phase planes */
            deinterleave2(xc, prow, prow + ps, nv);
        } else {
            for (ix = 0; ix < st; ix++)
                for (v = 0; v < nv; v++) prow[(size_t)ix * ps + v] = xc[(size_t)v * st + ix];
        }
        for (ix = nv * st; ix < tail; ix++) prow[(size_t)(ix % st) * ps + ix / st] = xc[ix];
        if (++ry < st) {
            prow += (size_t)st * ps;   /* the next row phase */
        } else {
            ry = 0;
            p0 += pw;                  /* the next plane row */
            prow = p0;
        }
    }
    return ev;
}

/* o[f] = sum over terms t (in order) of x[off[t] + f] * w[t], from +0, for f < lb (a multiple of 8): one output
 * channel over its whole (padded) plane, output-stationary: each accumulator stays in a register across the channel's
 * terms (a load, a multiply and an add per term and lane group; the weight-stationary loop it replaced also loaded and
 * stored the accumulator per term, and needed the accumulators zeroed first). Exact: every output gets the same
 * terms in the same (packing-row) order, each rounded alone, starting from +0; no FMA. */
/* o[j] = a[j] * sc + bi (binary: the scaled accumulator, then the bias: sltp_conv_step's two roundings) or a[j] + bi
 * (float: acc * 1 = acc exactly, so the multiply is skipped), j < n: the conv's epilogue applied as its rows leave the
 * accumulators. Whole vectors, the last one overlapping the one before (the same values again, read from a) instead
 * of a scalar tail; rows of 7-28 floats (a libc memcpy call per row cost ~25 instructions: callgrind, full-scale
 * ticket). binary is a constant at each call site. */
SLT_HOT_INLINE void epilogue_row(float *restrict o, const float *restrict a, uint32_t n, int binary, float sc, float bi) {
    uint32_t j = 0;
#ifdef SLT_VW
    const slt_vf s = VSET1(sc), b = VSET1(bi);
#define EPI(v) (binary ? VADD(VMUL((v), s), b) : VADD((v), b))
    if (n >= SLT_VW) {
        for (; j + SLT_VW <= n; j += SLT_VW) VSTORE(o + j, EPI(VLOAD(a + j)));
        if (j < n) VSTORE(o + n - SLT_VW, EPI(VLOAD(a + n - SLT_VW)));
        return;
    }
#undef EPI
#if defined(__AVX__)
    if (n >= 4u) {   /* 4-7 floats (a 7x7 plane): two overlapping 4-lane operations */
        const __m128 s4 = _mm_set1_ps(sc), b4 = _mm_set1_ps(bi);
#define EPI4(v) (binary ? _mm_add_ps(_mm_mul_ps((v), s4), b4) : _mm_add_ps((v), b4))
        _mm_storeu_ps(o, EPI4(_mm_loadu_ps(a)));
        _mm_storeu_ps(o + n - 4u, EPI4(_mm_loadu_ps(a + n - 4u)));
#undef EPI4
        return;
    }
#endif
#endif
    for (; j < n; j++) {
        if (binary) { const float y = a[j] * sc; o[j] = y + bi; }
        else o[j] = a[j] + bi;
    }
}

#ifdef SLT_VW
/* G (a constant, 1-8) lane groups from f: the accumulators stay in registers across the terms, one weight broadcast
 * serves all G (8 x 8 lanes: 16 AVX registers with the weight and a load) */
SLT_HOT_INLINE void terms_pass(float *restrict o, const float *restrict base, const uint32_t *restrict off,
                               const float *restrict w, uint32_t nt, size_t f, uint32_t G) {
    slt_vf a[8];
    uint32_t g, t;
    SLT_UNROLL8
    for (g = 0; g < G; g++) a[g] = VZERO();
    for (t = 0; t < nt; t++) {
        const float *x = base + off[t] + f;
        const slt_vf wv = VSET1(w[t]);
        SLT_UNROLL8
        for (g = 0; g < G; g++) a[g] = VMAC(a[g], VLOAD(x + g * SLT_VW), wv);
    }
    SLT_UNROLL8
    for (g = 0; g < G; g++) VSTORE(o + f + g * SLT_VW, a[g]);
}
#endif

SLT_HOT_INLINE void column_terms(float *restrict o, const float *restrict base, const uint32_t *restrict off,
                                 const float *restrict w, uint32_t nt, size_t lb) {
    size_t f = 0;
#ifdef SLT_VW
    for (; f + 8u * SLT_VW <= lb; f += 8u * SLT_VW) terms_pass(o, base, off, w, nt, f, 8u);
    switch ((lb - f) / SLT_VW) {   /* the rest in one pass (a pass per lane group cost twice the overhead per term) */
    case 7u: terms_pass(o, base, off, w, nt, f, 7u); break;
    case 6u: terms_pass(o, base, off, w, nt, f, 6u); break;
    case 5u: terms_pass(o, base, off, w, nt, f, 5u); break;
    case 4u: terms_pass(o, base, off, w, nt, f, 4u); break;
    case 3u: terms_pass(o, base, off, w, nt, f, 3u); break;
    case 2u: terms_pass(o, base, off, w, nt, f, 2u); break;
    case 1u: terms_pass(o, base, off, w, nt, f, 1u); break;
    default: break;
    }
#else
    uint32_t t;
    for (; f < lb; f++) {
        float a = 0.0f;
        for (t = 0; t < nt; t++) a = a + base[off[t] + f] * w[t];
        o[f] = a;
    }
#endif
}

/* a single-input conv through its staged planes (stage_buffers): copy the input's used channels into the planes
 * (counting the events), one output-stationary pass per output channel, then the accumulator rows [0, wo) into
 * out with the epilogue (scale, bias) applied. Returns the synaptic events. */
static uint64_t conv_staged(const slt_node *n, const float *x, float *out) {
    const uint32_t st = n->st, k = n->k, pd = n->pd, ih = n->ih, iw = n->iw, ho = n->d[1], wo = n->d[2];
    const uint32_t pw = n->pw, ps = n->ps, kk2 = k * k, uy = ho - 1u + (k - 1u - pd) / st + 1u;
    const size_t len = n->lb, per = (size_t)ho * wo;
    const uint32_t *rowtab = n->rowtab;
    const int binary = (n->flags & F_BINARY) != 0;
    const uint8_t *bias = n->params + (binary ? 4u * n->cols : 0u);
    float *acc = n->acc;
    uint64_t ev = 0;
    uint32_t ci, c, oy;
    for (ci = 0; ci < n->ci; ci++) {
        const uint32_t r = ci * kk2;
        if (rowtab[r] == rowtab[r + kk2]) continue;   /* no kept weight reads this channel: its planes are not read */
        ev += stage_channel(n, x + (size_t)ci * ih * iw, n->stage + (size_t)ci * st * st * ps,
                            n->evw + (size_t)ci * ih * iw, uy);
    }
    for (c = 0; c < n->cols; c++) {   /* each output channel, then its rows [0, wo) into out while they are cached */
        const float bi = rdf(bias + 4u * c);
        float *oc = out + (size_t)c * per;
        column_terms(acc, n->stage, n->toff + n->tcol[c], n->tw + n->tcol[c], n->tcol[c + 1] - n->tcol[c], len);
        if (binary) {
            const float sc = rdf(n->params + 4u * c);
            for (oy = 0; oy < ho; oy++) epilogue_row(oc + (size_t)oy * wo, acc + (size_t)oy * pw, wo, 1, sc, bi);
        } else {
            for (oy = 0; oy < ho; oy++) epilogue_row(oc + (size_t)oy * wo, acc + (size_t)oy * pw, wo, 0, 1.0f, bi);
        }
    }
    return ev;
}
#endif

/* the conv's accumulators for this step into n->out; spk: its single input is spikes. Returns the synaptic events. */
static uint64_t conv_rows(slt_model *m, slt_node *n, const float *input, int kind, int spk) {
    float *out = n->out;
    const float *x0 = node_out(m, n->in[0], input);
    const int single = n->n_in == 1;
    const uint32_t *rowtab = n->rowtab;
    uint64_t ev = 0;
#if SLT_SIMD
    if (n->stage) return conv_staged(n, x0, out);
#endif
    zero_floats(out, n->size);
    /* Row by row: for packing row r = (ci, ky, kx) with kept weights, every output (oy, ox) it feeds reads input
     * (ci, oy*st + ky - pd, ox*st + kx - pd). For one output element the rows come in ascending r, i.e. its
     * input elements in ascending flat index: the order of section 4 (each row adds one term per output). */
    const uint32_t ho = n->d[1], wo = n->d[2], k = n->k, st = n->st, pd = n->pd, ih = n->ih, iw = n->iw;
    const uint32_t per = ho * wo;
    uint32_t ci, ky, kx, r = 0;
    uint64_t nzs = 0, reads = 0;
    for (ci = 0; ci < n->ci; ci++)
        for (ky = 0; ky < k; ky++) {
            /* oy in [oy0, oy1): 0 <= oy*st + ky - pd < ih */
            const uint32_t oy0 = ky >= pd ? 0u : (pd - ky + st - 1u) / st;
            uint32_t oy1 = ih + pd > ky ? (ih + pd - ky - 1u) / st + 1u : 0u;
            if (oy1 > ho) oy1 = ho;
            for (kx = 0; kx < k; kx++, r++) {
                const uint32_t k0 = rowtab[r], k1 = rowtab[r + 1];
                uint32_t ox0, ox1, oy, ox;
                if (k0 == k1) continue;                      /* most rows of a ticket are empty */
                ox0 = kx >= pd ? 0u : (pd - kx + st - 1u) / st;
                ox1 = iw + pd > kx ? (iw + pd - kx - 1u) / st + 1u : 0u;
                if (ox1 > wo) ox1 = wo;
                if (ox0 >= ox1) continue;
                if (oy0 >= oy1) continue;
                if (single) {
                    /* flat input index of (ci, oy0*st + ky - pd, ox0*st + kx - pd); + st per ox, + st*iw per oy */
                    const float *xr = x0 + (ci * ih + (oy0 * st + ky - pd)) * iw + (ox0 * st + kx - pd);
                    float *os = out + oy0 * wo + ox0;
                    const uint32_t cnt = ox1 - ox0, rows = oy1 - oy0, ys = st * iw;
                    /* kind as a constant: one specialised copy each */
                    /* per row, the cheaper kernel at the last step's input density (cost model above) */
                    const uint32_t kk = k1 - k0,
                                   ws = 255u * (WS_BASE + WS_MAC * kk) <=
                                        255u * EV_SCAN + (uint32_t)n->rate * (EV_NZ + EV_ADD * kk);
                    const uint32_t nz =
                        kind == 0 ? conv_span(n, 0, ws, spk, xr, st, ys, cnt, rows, os, wo, k0, k1, per)
                        : kind == 1 ? conv_span(n, 1, ws, spk, xr, st, ys, cnt, rows, os, wo, k0, k1, per)
                        : kind == 2 ? conv_span(n, 2, ws, spk, xr, st, ys, cnt, rows, os, wo, k0, k1, per)
                                    : conv_span(n, 3, ws, spk, xr, st, ys, cnt, rows, os, wo, k0, k1, per);
                    ev += (uint64_t)nz * kk;
                    nzs += nz;
                    reads += (uint64_t)cnt * rows;
                    continue;
                }
                for (oy = oy0; oy < oy1; oy++) {
                    const uint32_t ib = (ci * ih + (oy * st + ky - pd)) * iw + (ox0 * st + kx - pd);
                    float *orow = out + oy * wo;
                    for (ox = ox0; ox < ox1; ox++) {
                        const float x = in_val(m, n, input, ib + (ox - ox0) * st);
                        if (nonzero(x)) { emit_row(n, kind, k0, k1, x, orow + ox, per); ev += k1 - k0; }
                    }
                }
            }
        }
    while (reads >> 23) { reads >>= 1; nzs >>= 1; }   /* 32-bit division: no 64-bit helper on small cores */
    if (reads) n->rate = (uint8_t)(((uint32_t)nzs * 255u) / (uint32_t)reads);
    return ev;
}

void sltp_conv_step(slt_model *m, slt_node *n, const float *input, const float *prev) {
    const int kind = syn_kind(m, n), spk = n->n_in == 1 && spike_source(m, n->in[0]);   /* spk: inputs are 0/1 */
    const int binary = (n->flags & F_BINARY) != 0;
    const uint32_t o = n->cols, per = n->d[1] * n->d[2];
    const uint8_t *bias = n->params + (binary ? 4u * o : 0u);
    uint32_t c, j;
    if (reuses_last(m, n, input, prev)) return;
    count_events(m, n, conv_rows(m, n, input, kind, spk));
    if (n->defer) return;   /* the consumer LIF applies the epilogue (sltp_lif_step) */
#if SLT_SIMD
    if (n->stage) return;   /* conv_staged applied it */
#endif
    for (c = 0; c < o; c++) {
        const float sc = binary ? rdf(n->params + 4u * c) : 1.0f, bi = rdf(bias + 4u * c);
        float *oc = n->out + (size_t)c * per;
        if (binary)
            for (j = 0; j < per; j++) { float y = oc[j] * sc; oc[j] = y + bi; }
        else
            for (j = 0; j < per; j++) oc[j] = oc[j] + bi;
    }
}

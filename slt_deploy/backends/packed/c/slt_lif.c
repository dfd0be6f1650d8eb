/* slt_lif.c: the LIF neuron update of the packed runtime, one layer and one step at a time: the reference's own
 * arithmetic (no FMA), branch-free in SIMD builds, with the spike as a branch in scalar builds. A LIF working in place
 * on a conv's accumulators applies the conv's epilogue (bias, binary scale) on the fly. */
#include "slt_internal.h"

/* LIF over elements [e0, e0 + cnt) with input current I = IN (an expression of cur[e]); one pass per element
 * (out may be cur: element e is read before it is written). The reference's own arithmetic, branch-free:
 * v = beta*v + I (first step: v = I); s = v > thr; zero: v = v*(1-s); subtract: v = v - s*thr */
#if SLT_SIMD
#define LIF_LOOPS(IN)                                                                                         \
    do {                                                                                                      \
        if (last) { /* the sample's last step: its membrane state is never read again (t = 0 restarts it) */  \
            if (t == 0)                                                                                       \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float v = (IN);                                                                     \
                    out[e] = (float)(v > thr);                                                                \
                }                                                                                             \
            else                                                                                              \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float b = beta * vv[e], v = b + (IN);                                               \
                    out[e] = (float)(v > thr);                                                                \
                }                                                                                             \
        } else if (sub) {                                                                                     \
            if (t == 0)                                                                                       \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float v = (IN), sf = (float)(v > thr), d = sf * thr;                                \
                    vv[e] = v - d;                                                                            \
                    out[e] = sf;                                                                              \
                }                                                                                             \
            else                                                                                              \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float b = beta * vv[e], v = b + (IN), sf = (float)(v > thr), d = sf * thr;          \
                    vv[e] = v - d;                                                                            \
                    out[e] = sf;                                                                              \
                }                                                                                             \
        } else {                                                                                              \
            if (t == 0)                                                                                       \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float v = (IN), sf = (float)(v > thr), keep = 1.0f - sf;                            \
                    vv[e] = v * keep;                                                                         \
                    out[e] = sf;                                                                              \
                }                                                                                             \
            else                                                                                              \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float b = beta * vv[e], v = b + (IN), sf = (float)(v > thr), keep = 1.0f - sf;      \
                    vv[e] = v * keep;                                                                         \
                    out[e] = sf;                                                                              \
                }                                                                                             \
        }                                                                                                     \
    } while (0)
#else
/* Scalar builds: the same arithmetic with the spike as a branch (Cortex-M: one instruction less per element than
 * materializing s as a float, the common no-spike path stores v and 0 as they are). Exact: s = 0 leaves
 * v * (1 - 0) = v and v - 0 * thr = v (v <= thr: v is not -0 when thr < 0); s = 1 stores RESET: v * 0 or v - thr. */
#define LIF_RESET_LOOPS(IN, RESET)                                                                            \
    do {                                                                                                      \
        if (t == 0)                                                                                           \
            for (e = e0; e < e1; e++) {                                                                       \
                const float v = (IN);                                                                         \
                vv[e] = v;                                                                                    \
                out[e] = 0.0f;                                                                                \
                if (v > thr) { vv[e] = (RESET); out[e] = 1.0f; }                                              \
            }                                                                                                 \
        else                                                                                                  \
            for (e = e0; e < e1; e++) {                                                                       \
                const float b = beta * vv[e], v = b + (IN);                                                   \
                vv[e] = v;                                                                                    \
                out[e] = 0.0f;                                                                                \
                if (v > thr) { vv[e] = (RESET); out[e] = 1.0f; }                                              \
            }                                                                                                 \
    } while (0)
#define LIF_LOOPS(IN)                                                                                         \
    do {                                                                                                      \
        if (last) {                                                                                           \
            if (t == 0)                                                                                       \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float v = (IN);                                                                     \
                    out[e] = 0.0f;                                                                            \
                    if (v > thr) out[e] = 1.0f;                                                               \
                }                                                                                             \
            else                                                                                              \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float b = beta * vv[e], v = b + (IN);                                               \
                    out[e] = 0.0f;                                                                            \
                    if (v > thr) out[e] = 1.0f;                                                               \
                }                                                                                             \
        } else if (sub) {                                                                                     \
            LIF_RESET_LOOPS(IN, v - thr);                                                                     \
        } else {                                                                                              \
            LIF_RESET_LOOPS(IN, v * 0.0f);                                                                    \
        }                                                                                                     \
    } while (0)
#endif

#if SLT_SIMD
/* A LIF whose input current is the same at every step of the sample (tbase; m->const_in): all T steps at step 0,
 * SLT_VW neurons at a time with their membranes in a register, so the current is read once and the membrane state is
 * never stored; step t's spikes go to tbase + t * size. The same arithmetic as LIF_LOOPS, step by step, so the same
 * bits: s = v > thr; zero: v = v * (1 - s); subtract: v = v - s * thr; then v = beta * v + I (two roundings). */
#define LIF_CONST_STEPS(VRESET, VRESET2, RESET)                                                               \
    do {                                                                                                      \
        for (e = 0; e + 2u * SLT_VW <= size; e += 2u * SLT_VW) {   /* two vectors: half the loop overhead */  \
            const slt_vf i = VLOAD(cur + e), i2 = VLOAD(cur + e + SLT_VW);                                    \
            slt_vf v = i, s, v2 = i2, s2;                                                                     \
            float *o = out + e;                                                                               \
            for (t = 0; t + 1u < T; t++, o += size) {                                                         \
                s = VSPIKE(v, tv, one);                                                                       \
                s2 = VSPIKE(v2, tv, one);                                                                     \
                VSTORE(o, s);                                                                                 \
                VSTORE(o + SLT_VW, s2);                                                                       \
                v = VADD(VMUL(bv, (VRESET)), i);                                                              \
                v2 = VADD(VMUL(bv, (VRESET2)), i2);                                                           \
            }                                                                                                 \
            VSTORE(o, VSPIKE(v, tv, one));                                                                    \
            VSTORE(o + SLT_VW, VSPIKE(v2, tv, one));   /* T >= 2: the last membrane is not kept */            \
        }                                                                                                     \
        for (; e < size; e++) {   /* the neurons past the last pair of vectors */                             \
            const float i = cur[e];                                                                           \
            float v = i, s;                                                                                   \
            float *o = out + e;                                                                               \
            for (t = 0; t + 1u < T; t++, o += size) {                                                         \
                s = (float)(v > thr);                                                                         \
                *o = s;                                                                                       \
                v = (RESET);                                                                                  \
                v = beta * v + i;                                                                             \
            }                                                                                                 \
            *o = (float)(v > thr);                                                                            \
        }                                                                                                     \
    } while (0)
static void lif_const_steps(const slt_model *m, const slt_node *n, const float *restrict cur, int sub) {
    const float beta = n->beta, thr = n->thr;
    const uint32_t size = n->size, T = m->T;
    const slt_vf tv = VSET1(thr), bv = VSET1(beta), one = VSET1(1.0f);
    float *restrict out = n->tbase;
    uint32_t e, t;
    if (sub) LIF_CONST_STEPS(VSUB(v, VMUL(s, tv)), VSUB(v2, VMUL(s2, tv)), v - s * thr);
    else LIF_CONST_STEPS(VMUL(v, VSUB(one, s)), VMUL(v2, VSUB(one, s2)), v * (1.0f - s));
}
#endif

void sltp_lif_step(slt_model *m, slt_node *n, const float *input, uint32_t t, uint8_t *spikes) {
    const float beta = n->beta, thr = n->thr;
    const uint32_t size = n->size;
    const int sub = (n->flags & F_SUBTRACT) != 0, last = t + 1u == m->T;
    float *restrict vv = n->v;   /* the membrane state never aliases an activation buffer */
    float *out = n->out;
    const float *cur = node_out(m, n->in[0], input);
    uint32_t e, e0, e1;
#if SLT_SIMD
    if (n->tbase) {
        if (m->const_in) {   /* the input current is the same at every step: all steps at t = 0 */
            if (t == 0) lif_const_steps(m, n, cur, sub);
            n->out = n->tbase + (size_t)t * size;
            if (spikes)
                for (e = 0; e < size; e++) spikes[n->spike_off + e] = (uint8_t)(n->out[e] != 0.0f);
            return;
        }
        n->out = out = n->tbase;   /* otherwise step by step in the first slot */
    }
#endif
    if (n->fused) {
        /* in place on a conv's accumulators [O][H][W] (deferred epilogue): binary I = acc * scale_c + bias_c,
         * float I = acc + bias_c, the same roundings sltp_conv_step would have stored (float: acc * 1 = acc exactly) */
        const slt_node *syn = &m->nodes[n->in[0]];
        const uint32_t o = syn->cols, per = syn->d[1] * syn->d[2];
        const int binary = (syn->flags & F_BINARY) != 0;
        const uint8_t *bias = syn->params + (binary ? 4u * o : 0u);
        uint32_t c;
        for (c = 0, e0 = 0; c < o; c++, e0 = e1) {
            const float sc = binary ? rdf(syn->params + 4u * c) : 1.0f, bi = rdf(bias + 4u * c);
            e1 = e0 + per;
            if (binary) LIF_LOOPS(cur[e] * sc + bi);
            else LIF_LOOPS(cur[e] + bi);   /* float: acc * 1 = acc exactly, so the multiply is skipped */
        }
    } else {
        if (n->n_in > 1) {  /* summed input current, computed into the output buffer first */
            sum_inputs(m, n, input, out, size);
            cur = out;
        }
        e0 = 0;
        e1 = size;
        LIF_LOOPS(cur[e]);
    }
    if (spikes)
        for (e = 0; e < size; e++) spikes[n->spike_off + e] = (uint8_t)(out[e] != 0.0f);
}

/* slt_run.c: runs a packed model, one step node by node in record order (slt_run, slt_run_batch): synaptic layers
 * (slt_conv.c, slt_affine.c), LIF layers (slt_lif.c), and here flatten, add, the transformer's token nodes and the
 * output sum. */
#include "slt_internal.h"

static void run_step(slt_model *m, const float *input, const float *prev, uint32_t t, float *logits,
                     uint8_t *spikes) {
    uint32_t i, e;
    for (i = 1; i < m->n_nodes; i++) {
        slt_node *n = &m->nodes[i];
        switch (n->op) {
        case OP_CONV:
            sltp_conv_step(m, n, input, prev);
            break;
        case OP_AFFINE:
            sltp_affine_step(m, n, input, prev);
            break;
        case OP_LIF:
            sltp_lif_step(m, n, input, t, spikes);
            break;
        case OP_FLATTEN: case OP_ADD:
            if (n->n_in == 1 && n->out == node_out(m, n->in[0], input)) break;   /* in place: nothing to copy */
            sum_inputs(m, n, input, n->out, n->size);
            break;
        case OP_TOKENS: {
            const float *x = node_out(m, n->in[0], input);
            uint32_t d, p, D = n->d[1], P = n->d[0];
            if (n->n_in > 1) {
                for (p = 0; p < P; p++)
                    for (d = 0; d < D; d++) n->out[p * D + d] = in_val(m, n, input, d * P + p);
            } else {
                for (p = 0; p < P; p++)
                    for (d = 0; d < D; d++) n->out[p * D + d] = x[d * P + p];
            }
            break;
        }
        case OP_PATCH: {
            uint32_t r, d, D = n->d[1];
            const float *x = node_out(m, n->in[0], input);
            for (r = 0; r < n->d[0]; r++) {
                uint32_t src = rd32(n->index + 4u * r);
                if (n->n_in == 1)
                    for (d = 0; d < D; d++) n->out[r * D + d] = x[src * D + d];
                else
                    for (d = 0; d < D; d++) n->out[r * D + d] = in_val(m, n, input, src * D + d);
            }
            break;
        }
        case OP_ATTN: {
            const float *q = m->nodes[n->in[0]].out, *k = m->nodes[n->in[1]].out, *v = m->nodes[n->in[2]].out;
            uint32_t N = n->d[0], D = n->d[1], dh = D / n->heads, h, a, b, d;
            for (e = 0; e < n->size; e++) n->out[e] = 0.0f;
            for (h = 0; h < n->heads; h++)
                for (a = 0; a < N; a++) {
                    /* a query row without spikes in this head: every S[a, b] is 0 (exact integers) */
                    for (d = 0; d < dh && !nonzero(q[a * D + h * dh + d]); d++) {}
                    if (d == dh) continue;
                    for (b = 0; b < N; b++) {
                        float sc = 0.0f;  /* q_a . k_b over this head: spikes, an exact integer */
                        for (d = 0; d < dh; d++) sc = sc + q[a * D + h * dh + d] * k[b * D + h * dh + d];
                        if (sc == 0.0f) continue;
                        for (d = 0; d < dh; d++) n->out[a * D + h * dh + d] += sc * v[b * D + h * dh + d];
                    }
                }
            for (e = 0; e < n->size; e++) n->out[e] = n->out[e] * n->ascale;
            break;
        }
        case OP_TOKSUM: {
            uint32_t N = m->nodes[n->in[0]].d[0], D = n->d[0], p, d;
            for (d = 0; d < D; d++) n->out[d] = 0.0f;
            if (n->n_in == 1) {
                const float *x = node_out(m, n->in[0], input);
                for (p = 0; p < N; p++)
                    for (d = 0; d < D; d++) n->out[d] = n->out[d] + x[p * D + d];
            } else {
                for (p = 0; p < N; p++)
                    for (d = 0; d < D; d++) n->out[d] = n->out[d] + in_val(m, n, input, p * D + d);
            }
            break;
        }
        case OP_OUTPUT:
            for (e = 0; e < n->size; e++) logits[e] = logits[e] + in_val(m, n, input, e);
            break;
        default:
            break;
        }
    }
}

#if SLT_SIMD
/* the sample's input is the same (==, as reuses_last compares) at every step; step t at x + t * stride (SIMD builds:
 * their all-steps LIFs use it, see lif_const_steps, and reuses_last need not compare again) */
static int same_every_step(const slt_model *m, const float *x, size_t stride) {
    uint32_t t;
    for (t = 1; t < m->T; t++)
        if (!same_floats(x + (size_t)t * stride, x, m->in_size)) return 0;
    return 1;
}
#endif

int slt_run(slt_model *m, const float *input, float *logits, uint8_t *spikes) {
    uint32_t t, e;
    if (!m || !input || !logits) return SLT_E_ARG;
    for (e = 0; e < m->n_classes; e++) logits[e] = 0.0f;
#if SLT_SIMD
    m->const_in = same_every_step(m, input, m->in_size);
#endif
    for (t = 0; t < m->T; t++)
        run_step(m, input + (size_t)t * m->in_size, t ? input + (size_t)(t - 1u) * m->in_size : 0, t, logits,
                 spikes ? spikes + (size_t)t * m->spike_count : 0);
    return SLT_OK;
}

int slt_run_batch(slt_model *m, const float *input, uint32_t batch, float *logits, uint8_t *spikes) {
    uint32_t b, t, e;
    if (!m || !input || !logits) return SLT_E_ARG;
    for (b = 0; b < batch; b++) {
        float *lg = logits + (size_t)b * m->n_classes;
        for (e = 0; e < m->n_classes; e++) lg[e] = 0.0f;
#if SLT_SIMD
        m->const_in = same_every_step(m, input + (size_t)b * m->in_size, (size_t)batch * m->in_size);
#endif
        for (t = 0; t < m->T; t++)
            run_step(m, input + ((size_t)t * batch + b) * m->in_size,
                     t ? input + ((size_t)(t - 1u) * batch + b) * m->in_size : 0, t, lg,
                     spikes ? spikes + ((size_t)t * batch + b) * m->spike_count : 0);
    }
    return SLT_OK;
}

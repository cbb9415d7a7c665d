/* GPT's one-token step (generation with a KV cache) in one C call: CPU, float32, one
   sequence.

   Read chalklm/models/gpt.py and layers.py first: they are the reference, and this file
   computes exactly their forward pass for one new token, in the same order:

     x = token_embedding[token] + positions[pos]       (no positions with RoPE)
     for each block:   x = x + proj(attention(query, keys, values))   of ln_1(x)
                       x = x + mlp.proj(activation(mlp.fc(ln_2(x))))
     logits = output_weights @ ln_f(x)

   with the Llama-family switches of the config: each norm LayerNorm or RMSNorm; RoPE
   turning each head's query and key (after qk-norm, an RMSNorm per head, if on); fewer
   key/value heads than query heads (grouped-query attention: query head h reads
   key/value head h / (n_head / n_kv_head)); the MLP gated (SwiGLU: silu(gate) * fc).

   Why it exists. A one-token step reads every weight once and does two flops per weight
   read: its speed is the speed of reading the weights from memory. PyTorch gets there
   only with a few hundred operator calls per token, each costing microseconds of
   dispatch, and its matrix-vector product reads at about half the memory's speed. Here
   every product is a loop of dot products over rows laid out one after another, split
   between threads, and the whole step is one call (benchmarks/generation.py measures
   the gain against the PyTorch step and against transformers).

   step(pointers, sizes, eps): `pointers` (uint64) and `sizes` (int64) are arrays built
   by fused_step.py; their layouts are the P_* and S_* names below. Every weight matrix
   here is (outputs, inputs), row-major: the copies of fused_step.weights. A bias pointer
   may be 0 (bias=False). The keys and values are the KV cache's tensors, (n_layer, 1,
   n_kv_head, max_len, head_size): the new token's key and value go to column `pos`.
   With RoPE, `positions` is the rotary table (block_size, head_size): cos then sin of each
   pair's angle (chalklm/scratch/rope.py).

   With S_BF16 set (a bfloat16 model) the weight matrices and the token embedding are
   bfloat16: half the bytes to read, so about twice the tokens a second. Each number is
   widened to float32 as it is read (a bfloat16 is a float32's top 16 bits), and all the
   arithmetic stays float32. Everything else (norms, biases, positions, the cache) is
   float32 in either case. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PAUSE() _mm_pause()
#else
#define PAUSE() ((void)0)
#endif

/* pointers[] */
enum { P_TOKEN_EMBEDDING, P_POSITIONS, P_LN_F_SCALE, P_LN_F_BIAS, P_OUTPUT, P_KEYS, P_VALUES,
       P_LOGITS, P_LAYERS };
/* pointers[P_LAYERS + L_COUNT * layer + ...]; a scale or bias pointer may be 0 (none) */
enum { L_LN_1_SCALE, L_LN_1_BIAS, L_QKV, L_QKV_BIAS, L_ATTN_PROJ, L_ATTN_PROJ_BIAS,
       L_LN_2_SCALE, L_LN_2_BIAS, L_FC, L_FC_BIAS, L_MLP_PROJ, L_MLP_PROJ_BIAS,
       L_GATE, L_GATE_BIAS, L_Q_NORM, L_K_NORM, L_COUNT };
/* sizes[] */
enum { S_N_LAYER, S_N_HEAD, S_N_EMBD, S_N_HIDDEN, S_VOCAB, S_MAX_LEN, S_POS, S_TOKEN,
       S_ACTIVATION, S_THREADS, S_N_KV_HEAD, S_RMSNORM, S_GATED, S_ROPE, S_QK_NORM,
       S_BF16, S_COUNT };
enum { GELU_TANH, GELU_EXACT, RELU }; /* chalklm.config.ACTIVATIONS, in that order */

#define MAX_THREADS 64
#define IDLE_SPIN_US 200 /* how long an idle worker waits for the next step before sleeping */

typedef struct {
    const float *const *p;  /* the pointers, as floats */
    const int64_t *s;       /* the sizes */
    float eps;
    float *x;               /* the residual stream (n_embd), shared */
    float *qkv;             /* query, key and value of the new token (n_embd + 2 kv) */
    float *heads;           /* attention's output, heads side by side (n_embd) */
    float *hidden;          /* the MLP's wide middle (n_hidden) */
    float *gate;            /* SwiGLU's gate (n_hidden) */
    float *normed;          /* each thread's own layer-norm output (n_embd each) */
    float *scores;          /* each thread's own attention scores (max_len each) */
} Step;

/* ---- the threads: one step runs on `threads` threads, the caller's and workers ------- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int workers;               /* started so far */
    unsigned generation;       /* bumped (under lock) to start a step */
    const Step *step;          /* the current step (only its threads may read it) */
    int threads;               /* how many threads it runs on */
    atomic_int finished;       /* workers done with the current step */
    atomic_int arrived;        /* threads at the barrier */
    atomic_int sense;          /* flips each time every thread has reached the barrier */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};
static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;
/* the step count each worker was started at: it takes part only in the steps after it */
static unsigned started_at[MAX_THREADS];

static double microseconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1e6 + now.tv_nsec / 1e3;
}

static void relax(long *spins)
{
    if (++*spins < 20000)
        PAUSE();
    else
        sched_yield(); /* more threads than free cores: let the others run */
}

/* Every thread waits here until all `n` have arrived. */
static void barrier(int n, int *local_sense)
{
    *local_sense = !*local_sense;
    if (atomic_fetch_add(&pool.arrived, 1) == n - 1) {
        atomic_store(&pool.arrived, 0);
        atomic_store(&pool.sense, *local_sense);
    } else {
        long spins = 0;
        while (atomic_load(&pool.sense) != *local_sense)
            relax(&spins);
    }
}

/* Thread t of n takes rows [*lo, *hi) of `rows`. */
static void share(int64_t rows, int t, int n, int64_t *lo, int64_t *hi)
{
    *lo = rows * t / n;
    *hi = rows * (t + 1) / n;
}

/* ---- the arithmetic ---------------------------------------------------------------- */

/* The dot products, compiled for the x86-64 levels (v4: AVX-512; v3: AVX2 and FMA; and
   the SSE2 every x86-64 has), the highest this CPU runs picked when the module loads. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

VECTOR_CLONES
static float dot(const float *restrict a, const float *restrict b, int64_t n)
{
    float partial[16] = {0}; /* 16 running sums: the compiler makes them one vector */
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            partial[j] += a[i + j] * b[i + j];
    for (int half = 8; half > 0; half /= 2) /* add the 16 sums pairwise: vector adds too */
        for (int j = 0; j < half; j++)
            partial[j] += partial[j + half];
    float sum = partial[0];
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

/* A bfloat16 (the top 16 bits of a float32) widened back to float32. */
static inline float widen(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* dot() with `a` in bfloat16. 32 running sums: the widening costs two operations a
   vector, so twice as many sums in flight keep the adds from waiting on each other. */
VECTOR_CLONES
static float dot_bf16(const uint16_t *restrict a, const float *restrict b, int64_t n)
{
    float partial[32] = {0};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 32; j++)
            partial[j] += widen(a[i + j]) * b[i + j];
    for (int half = 16; half > 0; half /= 2)
        for (int j = 0; j < half; j++)
            partial[j] += partial[j + half];
    float sum = partial[0];
    for (; i < n; i++)
        sum += widen(a[i]) * b[i];
    return sum;
}

/* Row r of the matrix w (rows of n_in numbers, float32 or bfloat16) dotted with x. */
static inline float row_dot(const void *w, int bf16, int64_t r, const float *x, int64_t n_in)
{
    if (bf16)
        return dot_bf16((const uint16_t *)w + r * n_in, x, n_in);
    return dot((const float *)w + r * n_in, x, n_in);
}

/* out[r] = W[r] . x + bias[r] for this thread's rows r of W (rows, n_in). */
static void linear(const void *w, int bf16, const float *bias, const float *x, int64_t rows,
                   int64_t n_in, float *out, int t, int n)
{
    int64_t lo, hi;
    share(rows, t, n, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        out[r] = row_dot(w, bf16, r, x, n_in) + (bias ? bias[r] : 0.0f);
}

/* The residual connection: x[r] += W[r] . input + bias[r], this thread's rows r of W. */
static void add_linear(float *x, const void *w, int bf16, const float *bias,
                       const float *input, int64_t rows, int64_t n_in, int t, int n)
{
    int64_t lo, hi;
    share(rows, t, n, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        x[r] += row_dot(w, bf16, r, input, n_in) + (bias ? bias[r] : 0.0f);
}

/* (x - mean) / sqrt(var + eps) * scale + bias, the variance biased (LayerNorm). */
static void layer_norm(const float *x, const float *scale, const float *bias, int64_t n,
                       float eps, float *out)
{
    float mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++)
        mean += x[i];
    mean /= n;
    for (int64_t i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    float inv = 1.0f / sqrtf(var / n + eps);
    for (int64_t i = 0; i < n; i++)
        out[i] = (x[i] - mean) * inv * scale[i] + (bias ? bias[i] : 0.0f);
}

/* x / sqrt(mean(x^2) + eps) * scale (RMSNorm), in place when out == x. */
static void rms_norm(const float *x, const float *scale, int64_t n, float eps, float *out)
{
    float mean_square = 0;
    for (int64_t i = 0; i < n; i++)
        mean_square += x[i] * x[i];
    float inv = 1.0f / sqrtf(mean_square / n + eps);
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * inv * scale[i];
}

/* The block's norm, as the config says: RMSNorm or LayerNorm. */
static void norm(const Step *st, const float *scale, const float *bias, float *out)
{
    int64_t C = st->s[S_N_EMBD];
    if (st->s[S_RMSNORM])
        rms_norm(st->x, scale, C, st->eps, out);
    else
        layer_norm(st->x, scale, bias, C, st->eps, out);
}

/* RoPE: turn each pair (v[i], v[i + hs/2]) by its angle; row: cos then sin (hs numbers). */
static void rotate(float *v, const float *row, int64_t hs)
{
    int64_t half = hs / 2;
    for (int64_t i = 0; i < half; i++) {
        float x1 = v[i], x2 = v[i + half], c = row[i], s = row[half + i];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x1 * s + x2 * c;
    }
}

/* One head's query or key before the scores: qk-norm, then RoPE (each when switched on). */
static void prepare(const Step *st, float *v, const float *norm_scale, int64_t hs)
{
    if (st->s[S_QK_NORM])
        rms_norm(v, norm_scale, hs, st->eps, v);
    if (st->s[S_ROPE])
        rotate(v, st->p[P_POSITIONS] + st->s[S_POS] * hs, hs);
}

static float activate(float a, int64_t kind)
{
    if (kind == GELU_TANH) { /* GPT-2's GELU: 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))) */
        float u = 0.7978845608f * (a + 0.044715f * a * a * a);
        /* 0.5 a (1 + tanh u) = a / (1 + e^-2u): one exp, cheaper than tanhf; where e^-2u
           overflows to infinity the result is 0, as it should be */
        return a / (1.0f + expf(-2.0f * u));
    }
    if (kind == GELU_EXACT) /* a * Phi(a), Phi the normal distribution's CDF */
        return 0.5f * a * (1.0f + erff(a * 0.70710678f));
    return a > 0 ? a : 0;
}

/* One head: softmax(q . k_t / sqrt(hs)) over the filled columns t <= pos, then the
   values weighted by those chances. keys, values: this head's (max_len, hs). */
static void attend(const float *q, const float *keys, const float *values, int64_t pos,
                   int64_t hs, float *scores, float *out)
{
    float scale = 1.0f / sqrtf((float)hs), top = -INFINITY, total = 0;
    for (int64_t t = 0; t <= pos; t++) {
        scores[t] = dot(q, keys + t * hs, hs) * scale;
        top = scores[t] > top ? scores[t] : top;
    }
    for (int64_t t = 0; t <= pos; t++) {
        scores[t] = expf(scores[t] - top); /* minus the largest: exp cannot overflow */
        total += scores[t];
    }
    memset(out, 0, hs * sizeof(float));
    for (int64_t t = 0; t <= pos; t++) {
        float chance = scores[t] / total;
        for (int64_t d = 0; d < hs; d++)
            out[d] += chance * values[t * hs + d];
    }
}

/* ---- the step, as thread t of n runs it --------------------------------------------- */

static void block_attention(const Step *st, const float *const *w, int64_t layer, int t,
                            int n, int *sense)
{
    const int64_t *s = st->s;
    int64_t C = s[S_N_EMBD], H = s[S_N_HEAD], hs = C / H, T = s[S_MAX_LEN], pos = s[S_POS];
    int64_t KV = s[S_N_KV_HEAD], group = H / KV, lo, hi;
    float *normed = st->normed + t * C;
    norm(st, w[L_LN_1_SCALE], w[L_LN_1_BIAS], normed);
    linear(w[L_QKV], s[S_BF16], w[L_QKV_BIAS], normed, C + 2 * KV * hs, C, st->qkv, t, n);
    barrier(n, sense);
    share(KV, t, n, &lo, &hi); /* the new key and value of each key/value head, cached */
    for (int64_t g = lo; g < hi; g++) {
        float *key = st->qkv + C + g * hs, *value = st->qkv + C + (KV + g) * hs;
        prepare(st, key, w[L_K_NORM], hs);
        int64_t column = ((layer * KV + g) * T + pos) * hs;
        memcpy((float *)st->p[P_KEYS] + column, key, hs * sizeof(float));
        memcpy((float *)st->p[P_VALUES] + column, value, hs * sizeof(float));
    }
    barrier(n, sense);
    share(H, t, n, &lo, &hi);
    for (int64_t h = lo; h < hi; h++) {
        int64_t g = h / group;
        float *query = st->qkv + h * hs;
        prepare(st, query, w[L_Q_NORM], hs);
        attend(query, st->p[P_KEYS] + ((layer * KV + g) * T) * hs,
               st->p[P_VALUES] + ((layer * KV + g) * T) * hs, pos, hs, st->scores + t * T,
               st->heads + h * hs);
    }
    barrier(n, sense);
    add_linear(st->x, w[L_ATTN_PROJ], s[S_BF16], w[L_ATTN_PROJ_BIAS], st->heads, C, C, t, n);
    barrier(n, sense);
}

static void block_mlp(const Step *st, const float *const *w, int t, int n, int *sense)
{
    const int64_t *s = st->s;
    int64_t C = s[S_N_EMBD], hidden = s[S_N_HIDDEN], lo, hi;
    float *normed = st->normed + t * C;
    norm(st, w[L_LN_2_SCALE], w[L_LN_2_BIAS], normed);
    linear(w[L_FC], s[S_BF16], w[L_FC_BIAS], normed, hidden, C, st->hidden, t, n);
    share(hidden, t, n, &lo, &hi); /* the rows this thread wrote: no barrier needed */
    if (s[S_GATED]) { /* SwiGLU: silu(gate) * fc, silu(a) = a / (1 + e^-a) */
        linear(w[L_GATE], s[S_BF16], w[L_GATE_BIAS], normed, hidden, C, st->gate, t, n);
        for (int64_t r = lo; r < hi; r++)
            st->hidden[r] *= st->gate[r] / (1.0f + expf(-st->gate[r]));
    } else {
        for (int64_t r = lo; r < hi; r++)
            st->hidden[r] = activate(st->hidden[r], s[S_ACTIVATION]);
    }
    barrier(n, sense);
    add_linear(st->x, w[L_MLP_PROJ], s[S_BF16], w[L_MLP_PROJ_BIAS], st->hidden, C, hidden, t,
               n);
    barrier(n, sense);
}

static void run(const Step *st, int t)
{
    const int64_t *s = st->s;
    const float *const *p = st->p;
    int64_t C = s[S_N_EMBD];
    int n = (int)s[S_THREADS], sense = atomic_load(&pool.sense);
    if (t == 0)
        for (int64_t c = 0; c < C; c++) {
            int64_t at = s[S_TOKEN] * C + c;
            float token = s[S_BF16] ? widen(((const uint16_t *)p[P_TOKEN_EMBEDDING])[at])
                                    : p[P_TOKEN_EMBEDDING][at];
            st->x[c] = token + (s[S_ROPE] ? 0.0f : p[P_POSITIONS][s[S_POS] * C + c]);
        }
    barrier(n, &sense);
    for (int64_t layer = 0; layer < s[S_N_LAYER]; layer++) {
        const float *const *w = p + P_LAYERS + L_COUNT * layer;
        block_attention(st, w, layer, t, n, &sense);
        block_mlp(st, w, t, n, &sense);
    }
    float *normed = st->normed + t * C;
    norm(st, p[P_LN_F_SCALE], p[P_LN_F_BIAS], normed);
    linear(p[P_OUTPUT], s[S_BF16], NULL, normed, s[S_VOCAB], C, (float *)p[P_LOGITS], t, n);
}

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    unsigned seen = started_at[t];
    for (;;) {
        /* Spin a little first: during generation the next step comes within tens of
           microseconds. Then sleep: a spinning thread would slow everything else down. */
        double until = microseconds() + IDLE_SPIN_US;
        while (__atomic_load_n(&pool.generation, __ATOMIC_ACQUIRE) == seen &&
               microseconds() < until)
            PAUSE();
        pthread_mutex_lock(&pool.lock);
        while (pool.generation == seen)
            pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        const Step *st = pool.step;
        int taking_part = t < pool.threads; /* else st may be a step already over */
        pthread_mutex_unlock(&pool.lock);
        if (taking_part) {
            run(st, t);
            atomic_fetch_add(&pool.finished, 1);
        }
    }
    return NULL;
}

/* In a forked child only the forking thread exists: the parent's workers, its step in
   progress (its memory may be gone) and every count they kept are forgotten. The step
   count stays, and new workers start at it, so none replays a step of the parent's. */
static void forget_workers(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_mutex_init(&busy, NULL);
    pool.workers = 0;
    pool.step = NULL;
    pool.threads = 0;
    atomic_store(&pool.finished, 0);
    atomic_store(&pool.arrived, 0);
    atomic_store(&pool.sense, 0);
}

static int start_workers(int n)
{
    static int registered = 0;
    if (!registered && pthread_atfork(NULL, NULL, forget_workers) == 0)
        registered = 1;
    for (; pool.workers < n - 1; pool.workers++) {
        pthread_t id;
        started_at[pool.workers + 1] = pool.generation; /* under pool.lock */
        if (pthread_create(&id, NULL, worker, (void *)(intptr_t)(pool.workers + 1)) != 0)
            return -1;
        pthread_detach(id);
    }
    return 0;
}

static void run_on_threads(Step *st, int n)
{
    atomic_store(&pool.finished, 0);
    pthread_mutex_lock(&pool.lock);
    pool.step = st;
    pool.threads = n;
    __atomic_add_fetch(&pool.generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run(st, 0);
    long spins = 0;
    while (atomic_load(&pool.finished) < n - 1)
        relax(&spins);
}

/* ---- Python ----------------------------------------------------------------------- */

static PyObject *step(PyObject *self, PyObject *args)
{
    Py_buffer pointers, sizes;
    float eps;
    if (!PyArg_ParseTuple(args, "y*y*f", &pointers, &sizes, &eps))
        return NULL;
    PyObject *result = NULL;
    const int64_t *s = sizes.buf;
    if (sizes.len != S_COUNT * 8 || s[S_N_LAYER] < 1 ||
        pointers.len != (P_LAYERS + L_COUNT * s[S_N_LAYER]) * 8) {
        PyErr_SetString(PyExc_ValueError, "pointers or sizes do not have fused_step's layout");
        goto done;
    }
    if (s[S_TOKEN] < 0 || s[S_TOKEN] >= s[S_VOCAB] || s[S_POS] < 0 || s[S_POS] >= s[S_MAX_LEN]) {
        PyErr_Format(PyExc_ValueError, "token %lld or position %lld out of range",
                     (long long)s[S_TOKEN], (long long)s[S_POS]);
        goto done;
    }
    int64_t sz[S_COUNT]; /* a copy: run() reads the thread count clamped */
    memcpy(sz, s, sizeof sz);
    int n = (int)(sz[S_THREADS] < 1 ? 1 : sz[S_THREADS] > MAX_THREADS ? MAX_THREADS : sz[S_THREADS]);
    int64_t C = sz[S_N_EMBD], T = sz[S_MAX_LEN], hidden = sz[S_N_HIDDEN];
    if (sz[S_N_HEAD] < 1 || C % sz[S_N_HEAD] || sz[S_N_KV_HEAD] < 1 ||
        sz[S_N_HEAD] % sz[S_N_KV_HEAD] || (sz[S_ROPE] && (C / sz[S_N_HEAD]) % 2)) {
        PyErr_SetString(PyExc_ValueError, "heads that do not divide the width evenly");
        goto done;
    }
    /* x (C), qkv (at most 3 C), heads (C), hidden, gate, then each thread's (C + T) */
    float *scratch = malloc(sizeof(float) * (5 * C + 2 * hidden + n * (C + T)));
    if (!scratch) {
        PyErr_NoMemory();
        goto done;
    }
    Step st = {(const float *const *)pointers.buf, sz, eps, scratch, scratch + C,
               scratch + 4 * C, scratch + 5 * C, scratch + 5 * C + hidden,
               scratch + 5 * C + 2 * hidden, scratch + 5 * C + 2 * hidden + n * C};
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&busy); /* one step at a time: the workers serve one */
    pthread_mutex_lock(&pool.lock);
    int started = start_workers(n);
    pthread_mutex_unlock(&pool.lock);
    if (started != 0)
        n = 1;
    sz[S_THREADS] = n;
    if (n == 1)
        run(&st, 0);
    else
        run_on_threads(&st, n);
    pthread_mutex_unlock(&busy);
    Py_END_ALLOW_THREADS
    free(scratch);
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&pointers);
    PyBuffer_Release(&sizes);
    return result;
}

static PyMethodDef methods[] = {
    {"step", step, METH_VARARGS,
     "step(pointers, sizes, eps): one token through the GPT; logits written in place."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_decode",
                                    "GPT's one-token step in C (see _decode.c).", -1, methods};

PyMODINIT_FUNC PyInit__decode(void)
{
    return PyModule_Create(&module);
}

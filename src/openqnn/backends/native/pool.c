/* openqnn htp: a small thread pool for the native kernels.
 *
 * openqnn_parallel(fn, arg, n) runs fn(arg, i) for i in [0, n) on the calling thread and up to
 * threads - 1 workers, and returns when all have run. Tasks take disjoint parts of an output (rows of
 * a GEMM, output rows of a depthwise convolution) with the same code as a single thread, so the bits
 * never depend on the thread count: only which thread computes a part does.
 *
 * Workers start on the first parallel call after openqnn_pool_set_threads(n > 1) and wait on a
 * condition variable between calls, after spinning briefly (back-to-back layers of a model then do
 * not pay a wake-up each). A fork()ed child starts with no workers and makes its own on first use.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_THREADS 64
#define SPINS 20000 /* pause loops a thread spins before it sleeps (tens of microseconds) */

typedef void (*task_fn)(void* arg, long i);

/* multiply-adds below which a kernel stays on the calling thread: waking a worker costs about as much
 * as a million of them on one core (tests lower it to reach the threaded paths with small shapes) */
double openqnn_parallel_macs = 1.0e6;

typedef struct {
    task_fn fn;
    void* arg;
    long n;
    atomic_long next; /* the next task to take */
} job_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t submit = PTHREAD_MUTEX_INITIALIZER; /* one parallel call at a time */
static int wanted = 1;                                      /* threads a call uses, the caller included */
static int started = 0;                                     /* workers running */
static atomic_long generation = 0;                          /* bumped per job: wakes the workers */
static _Atomic(job_t*) current = 0;                         /* the job being run, or none */
/* workers that may be looking at `current`: a worker counts itself in before it reads `current`, and
 * the caller clears `current` and then waits for the count to reach zero, so no worker ever touches a
 * job (on the caller's stack) after its call has returned */
static atomic_int inflight = 0;

static void run_tasks(job_t* j) {
    for (;;) {
        long i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n) return;
        j->fn(j->arg, i);
    }
}

static void* worker(void* arg) {
    long id = (long)(intptr_t)arg;
    long seen = atomic_load(&generation);
    for (;;) {
        long g = seen;
        for (int s = 0; s < SPINS && (g = atomic_load(&generation)) == seen; ++s) CPU_RELAX();
        if (g == seen) {
            pthread_mutex_lock(&lock);
            while ((g = atomic_load(&generation)) == seen) pthread_cond_wait(&wake, &lock);
            pthread_mutex_unlock(&lock);
        }
        seen = g;
        if (id >= wanted - 1) continue; /* fewer threads wanted now */
        atomic_fetch_add(&inflight, 1);
        job_t* j = atomic_load(&current);
        if (j) run_tasks(j);
        if (atomic_fetch_sub(&inflight, 1) == 1) {
            pthread_mutex_lock(&lock);
            pthread_cond_signal(&idle);
            pthread_mutex_unlock(&lock);
        }
    }
    return 0;
}

static void after_fork_child(void) {
    /* the workers did not survive the fork: the child starts its own on first use */
    pthread_mutex_init(&lock, 0);
    pthread_mutex_init(&submit, 0);
    pthread_cond_init(&wake, 0);
    pthread_cond_init(&idle, 0);
    started = 0;
    atomic_store(&inflight, 0);
    atomic_store(&current, (job_t*)0);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void register_fork(void) { pthread_atfork(0, 0, after_fork_child); }

void openqnn_pool_set_threads(int n) { wanted = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n; }

int openqnn_pool_threads(void) { return wanted; }

/* fn(arg, i) for i in [0, n); returns when every task has run */
void openqnn_parallel(task_fn fn, void* arg, long n) {
    int threads = wanted;
    if (n <= 1 || threads <= 1) {
        for (long i = 0; i < n; ++i) fn(arg, i);
        return;
    }
    pthread_once(&once, register_fork);
    pthread_mutex_lock(&submit);
    while (started < threads - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&t, &attr, worker, (void*)(intptr_t)started);
        pthread_attr_destroy(&attr);
        if (err) break;
        ++started;
    }
    job_t job;
    job.fn = fn;
    job.arg = arg;
    job.n = n;
    atomic_init(&job.next, 0);
    atomic_store(&current, &job);
    pthread_mutex_lock(&lock);
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    run_tasks(&job);
    atomic_store(&current, (job_t*)0);
    for (int s = 0; s < SPINS && atomic_load(&inflight) > 0; ++s) CPU_RELAX();
    if (atomic_load(&inflight) > 0) {
        pthread_mutex_lock(&lock);
        while (atomic_load(&inflight) > 0) pthread_cond_wait(&idle, &lock);
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_unlock(&submit);
}

// step_probe.c: where one llama-server decode step's time goes, measured from inside the server.
//
// Preloaded into llama-server (LD_PRELOAD), it wraps the llama.cpp calls the server makes around
// each decode step and times them on the server's main thread:
//
//   llama_process                            graph build + kernel launch (decode is asynchronous)
//     ggml_backend_sched_graph_compute_async the kernel launches alone (called inside the above)
//   llama_synchronize                        waiting for the GPU to finish the step
//   llama_get_sampled_token_ith              reading each sampled token (one call per busy slot)
//   the rest, up to the next llama_process   the server's own work: tokens to text, responses,
//                                            handing over to its queue thread, the next batch
//
// Every STEP_PROBE_WINDOW_S seconds (default 2) it appends one line per batch size (the number of
// tokens sampled after the step) to $STEP_PROBE_OUT.<pid>: steps, mean period and each part in
// ms, graph nodes and splits. With STEP_PROBE_HZ > 0 it also samples the main thread's stack that
// many times a second (wall clock, so waiting shows too) and appends the raw frames, as
// "phase module+offset ...", to $STEP_PROBE_OUT.<pid>.stacks for step_probe.py to symbolize.
//
//   gcc -O2 -shared -fPIC -o step_probe.so step_probe.c -ldl -lrt -I<llama.cpp>/include -I<llama.cpp>/ggml/include
//
// No llama.cpp source is changed; the server runs its own code, with these calls timed.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ggml-backend.h"
#include "llama.h"

#define MAX_ROWS   1025
#define MAX_DEPTH  40
#define MAX_SAMPLE 40000

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// ---- step timing -----------------------------------------------------------------------------

enum { P_PERIOD, P_BUILD, P_LAUNCH, P_SYNC, P_SAMPLED, P_SERVER, P_NODES, P_SPLITS, P_UBATCH, P_N };

static double win[MAX_ROWS][P_N];
static long   win_steps[MAX_ROWS];
static double win_t0;
static FILE * out;
static int    main_tid;

// the step being measured: it closes when the next llama_process starts
static int    cur_open;
static double cur_start, cur_launch, cur_build_end, cur_sync, cur_sampled;
static int    cur_rows, cur_nodes, cur_splits, cur_ubatch;
static unsigned char seen[MAX_ROWS];

static volatile sig_atomic_t phase;  // 0 server, 1 llama_process, 2 launch, 3 sync, 4 sampled (5 idle)
static volatile sig_atomic_t dumping;

static int32_t (*real_process)(struct llama_context *, enum llama_process_type, struct llama_batch_ext *);
static void (*real_sync)(struct llama_context *);
static llama_token (*real_sampled)(struct llama_context *, int32_t);
static enum ggml_status (*real_compute)(ggml_backend_sched_t, struct ggml_cgraph *);
static int (*real_n_nodes)(struct ggml_cgraph *);
static int (*real_n_splits)(ggml_backend_sched_t);

static int on_main(void) {
    static __thread int tid;
    if (tid == 0) {
        tid = (int) syscall(SYS_gettid);
    }
    return tid == main_tid;
}

static void dump_stacks(void);

static void dump_window(double t) {
    if (!out) {
        return;
    }
    for (int r = 0; r < MAX_ROWS; ++r) {
        const long n = win_steps[r];
        if (n == 0) {
            continue;
        }
        const double * s = win[r];
        fprintf(out,
                "t=%.1f rows=%d steps=%ld period_ms=%.3f build_ms=%.3f launch_ms=%.3f sync_ms=%.3f "
                "sampled_ms=%.3f server_ms=%.3f nodes=%.0f splits=%.1f ubatches=%.2f\n",
                (t - win_t0) / 1e3, r, n, s[P_PERIOD] / n, s[P_BUILD] / n, s[P_LAUNCH] / n,
                s[P_SYNC] / n, s[P_SAMPLED] / n, s[P_SERVER] / n, s[P_NODES] / n, s[P_SPLITS] / n,
                s[P_UBATCH] / n);
        win_steps[r] = 0;
        memset(win[r], 0, sizeof(win[r]));
    }
    fprintf(out, "--\n");
    fflush(out);
    dump_stacks();
}

static void close_step(double t) {
    if (!cur_open) {
        return;
    }
    cur_open = 0;
    const double period = t - cur_start;
    if (period > 200.0) {  // idle in between: not a step of a busy server
        return;
    }
    const int r = cur_rows < MAX_ROWS ? cur_rows : MAX_ROWS - 1;
    double * s = win[r];
    const double in_process = cur_build_end - cur_start;
    s[P_PERIOD]  += period;
    s[P_BUILD]   += in_process - cur_launch;
    s[P_LAUNCH]  += cur_launch;
    s[P_SYNC]    += cur_sync;
    s[P_SAMPLED] += cur_sampled;
    s[P_SERVER]  += period - in_process - cur_sync - cur_sampled;
    s[P_NODES]   += cur_nodes;
    s[P_SPLITS]  += cur_splits;
    s[P_UBATCH]  += cur_ubatch;
    win_steps[r]++;
}

int32_t llama_process(struct llama_context * ctx, enum llama_process_type type, struct llama_batch_ext * batch) {
    if (!on_main()) {
        return real_process(ctx, type, batch);
    }
    const double t0 = now_ms();
    close_step(t0);
    if (win_t0 == 0) {
        win_t0 = t0;
    }
    static double last_dump;
    static double window_ms = -1;
    if (window_ms < 0) {
        const char * w = getenv("STEP_PROBE_WINDOW_S");
        window_ms = 1e3 * (w ? atof(w) : 2.0);
        last_dump = t0;
    }
    if (t0 - last_dump >= window_ms) {
        last_dump = t0;
        dump_window(t0);
    }
    cur_open = 1;
    cur_start = t0;
    cur_launch = cur_sync = cur_sampled = 0;
    cur_rows = cur_nodes = cur_splits = cur_ubatch = 0;
    memset(seen, 0, sizeof(seen));
    phase = 1;
    const int32_t ret = real_process(ctx, type, batch);
    phase = 0;
    cur_build_end = now_ms();
    return ret;
}

enum ggml_status ggml_backend_sched_graph_compute_async(ggml_backend_sched_t sched, struct ggml_cgraph * graph) {
    if (!on_main() || !cur_open) {
        return real_compute(sched, graph);
    }
    const double t0 = now_ms();
    const sig_atomic_t before = phase;
    phase = 2;
    const enum ggml_status st = real_compute(sched, graph);
    phase = before;
    cur_launch += now_ms() - t0;
    cur_nodes  += real_n_nodes ? real_n_nodes(graph) : 0;
    cur_splits += real_n_splits ? real_n_splits(sched) : 0;
    cur_ubatch += 1;
    return st;
}

void llama_synchronize(struct llama_context * ctx) {
    if (!on_main() || !cur_open) {
        real_sync(ctx);
        return;
    }
    const double t0 = now_ms();
    phase = 3;
    real_sync(ctx);
    phase = 0;
    cur_sync += now_ms() - t0;
}

llama_token llama_get_sampled_token_ith(struct llama_context * ctx, int32_t i) {
    if (!on_main() || !cur_open) {
        return real_sampled(ctx, i);
    }
    const double t0 = now_ms();
    phase = 4;
    const llama_token tok = real_sampled(ctx, i);
    phase = 0;
    cur_sampled += now_ms() - t0;
    if (i >= 0 && i < MAX_ROWS && !seen[i]) {  // busy slots: distinct rows read after the step
        seen[i] = 1;
        cur_rows += 1;
    }
    return tok;
}

// ---- stack sampling --------------------------------------------------------------------------

static void *  stacks[MAX_SAMPLE][MAX_DEPTH];
static uint8_t depth[MAX_SAMPLE];
static uint8_t phases[MAX_SAMPLE];
static volatile int n_samples;
static int n_written;
static FILE * stack_out;

static void on_sample(int sig) {
    (void) sig;
    if (dumping || n_samples >= MAX_SAMPLE) {
        return;
    }
    const int i = n_samples;
    depth[i] = (uint8_t) backtrace(stacks[i], MAX_DEPTH);
    int ph = phase;
    if (ph == 0 && (!cur_open || now_ms() - cur_start > 200.0)) {
        ph = 5;  // idle, or starting up: not between two steps
    }
    phases[i] = (uint8_t) ph;
    n_samples = i + 1;
}

static void dump_stacks(void) {
    if (!stack_out) {
        return;
    }
    dumping = 1;
    const int n = n_samples;
    for (int i = n_written; i < n; ++i) {
        fprintf(stack_out, "%d", phases[i]);
        // frame 0 is on_sample, frame 1 the signal trampoline
        for (int d = 2; d < depth[i]; ++d) {
            Dl_info info;
            void * pc = (char *) stacks[i][d] - (d > 2 ? 1 : 0);  // return address -> the call
            if (dladdr(pc, &info) && info.dli_fname) {
                fprintf(stack_out, " %s+0x%lx", info.dli_fname,
                        (unsigned long) ((char *) pc - (char *) info.dli_fbase));
            } else {
                fprintf(stack_out, " ?+0x%lx", (unsigned long) pc);
            }
        }
        fputc('\n', stack_out);
    }
    n_written = n;
    fflush(stack_out);
    dumping = 0;
}

static void start_sampling(double hz, const char * path) {
    stack_out = fopen(path, "w");
    if (!stack_out) {
        return;
    }
    void * warm[4];
    backtrace(warm, 4);  // loads the unwinder before any signal arrives
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sample;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPROF, &sa, NULL);
    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev._sigev_un._tid = main_tid;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) {
        fprintf(stderr, "step_probe: timer_create failed\n");
        return;
    }
    const long ns = (long) (1e9 / hz);
    struct itimerspec its = {{ns / 1000000000L, ns % 1000000000L}, {ns / 1000000000L, ns % 1000000000L}};
    timer_settime(timer, 0, &its, NULL);
}

// ---- set-up ----------------------------------------------------------------------------------

__attribute__((constructor)) static void step_probe_init(void) {
    main_tid = (int) syscall(SYS_gettid);
    real_process  = dlsym(RTLD_NEXT, "llama_process");
    real_sync     = dlsym(RTLD_NEXT, "llama_synchronize");
    real_sampled  = dlsym(RTLD_NEXT, "llama_get_sampled_token_ith");
    real_compute  = dlsym(RTLD_NEXT, "ggml_backend_sched_graph_compute_async");
    real_n_nodes  = dlsym(RTLD_DEFAULT, "ggml_graph_n_nodes");
    real_n_splits = dlsym(RTLD_DEFAULT, "ggml_backend_sched_get_n_splits");
    const char * path = getenv("STEP_PROBE_OUT");
    if (!path) {
        return;
    }
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s.%d", path, (int) getpid());
    out = fopen(buf, "w");
    const char * hz = getenv("STEP_PROBE_HZ");
    if (hz && atof(hz) > 0) {
        snprintf(buf, sizeof(buf), "%s.%d.stacks", path, (int) getpid());
        start_sampling(atof(hz), buf);
    }
}

__attribute__((destructor)) static void step_probe_fini(void) {
    if (out) {
        dump_window(now_ms());
        fclose(out);
        out = NULL;
    }
}

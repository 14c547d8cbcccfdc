/* thread_adapt.h: the CPU backend's choice of its thread count by measurement
 * (src/cpu/backend_cpu.c), a state machine fed with each batch's time so that
 * the tests can drive it with made-up timings. */
#ifndef ST_THREAD_ADAPT_H
#define ST_THREAD_ADAPT_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int tmax;          /* --threads, capped by the affinity mask            */
    int adapt;         /* 0: always tmax (SETTRAIN_ADAPT_THREADS=0)          */
    int cur;           /* threads of the coming batch                        */
    int probe;         /* 0: running `left` batches on cur; 1 / 2: timing    */
                       /* one thread / tmax threads                          */
    int left, period, choice, slow;
    double t1_ref;     /* one-thread batch seconds, last probe               */
    double probe_t[2];
    int probe_n[2];
    double win_t;      /* seconds of the tmax batches since the last check    */
    int win_n;
} st_thread_adapt;

/* Start by timing one thread (adapt and tmax > 1), else run tmax always. */
void st_thread_adapt_init(st_thread_adapt *a, int tmax, int adapt);
/* After a batch (full: of the configured size) that took dt seconds: the
 * thread count of the next batch. */
int st_thread_adapt_next(st_thread_adapt *a, int full, double dt);

#ifdef __cplusplus
}
#endif

#endif

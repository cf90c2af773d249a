/* Does this machine's second core keep up with its first, right now?
 *
 *     cc -O2 scripts/two_cores.c -o /tmp/two_cores -lm -lpthread
 *     /tmp/two_cores [WINDOWS]
 *
 * Independent of Slope: a loop of exponentials over 160,000 doubles (about
 * the work of one thread's half of lse's gradient at n = 320,000), timed
 * alone on the main thread and then at once on the main thread and a
 * helper thread, each on its own half of an array. Each window (about 0.4 s)
 * prints the median time of the loop alone and of each thread when both run,
 * and the ratio of the slower of the two to the loop alone. On a machine
 * whose two cores are its own the ratio stays near 1.00 in every window.
 * On the 2-vCPU virtual machine of the GradBench measurements
 * (docs/performance.md, thirty-first session) the helper ran 1.2-1.6x
 * slower than the main thread in 8-19% of the windows, in runs of several
 * windows: the same signature as Slope's pool worker in the lse sessions
 * whose two-thread time was about 18 ms instead of 15.
 *
 * The helper waits for each round on a barrier (it sleeps between rounds,
 * as a pool worker does between segments). Output: one line per window,
 *
 *     window  alone (ms)  both (ms)  ratio  main (ms)  helper (ms)
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { N = 160000, ROUNDS = 200 };

static double *x;
static volatile double sink;
static pthread_barrier_t round_start, round_end;
static double helper_ms;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

/* The timed work: exponentials of one half of `x`, summed. */
static double exps(int half) {
    double s = 0;
    for (int i = 0; i < N; i++) s += exp(x[half * N + i] - 1.0);
    return s;
}

static void *helper(void *unused) {
    (void)unused;
    for (;;) {
        pthread_barrier_wait(&round_start);
        double t = now_ms();
        sink += exps(1);
        helper_ms = now_ms() - t;
        pthread_barrier_wait(&round_end);
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double d = *(const double *)a - *(const double *)b;
    return (d > 0) - (d < 0);
}

static double median(double *v) {
    qsort(v, ROUNDS, sizeof *v, by_value);
    return v[ROUNDS / 2];
}

int main(int argc, char **argv) {
    int windows = argc > 1 ? atoi(argv[1]) : 60;
    x = malloc(2 * N * sizeof *x);
    for (int i = 0; i < 2 * N; i++) x[i] = (i % 1000) * 1e-3;
    pthread_barrier_init(&round_start, NULL, 2);
    pthread_barrier_init(&round_end, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, helper, NULL);
    printf("window  alone (ms)  both (ms)  ratio  main (ms)  helper (ms)\n");
    for (int w = 0; w < windows; w++) {
        double alone[ROUNDS], both[ROUNDS], main_ms[ROUNDS], help_ms[ROUNDS];
        for (int k = 0; k < ROUNDS; k++) {
            double s = now_ms();
            sink += exps(0);
            alone[k] = now_ms() - s;
            pthread_barrier_wait(&round_start);
            s = now_ms();
            sink += exps(0);
            main_ms[k] = now_ms() - s;
            pthread_barrier_wait(&round_end);
            help_ms[k] = helper_ms;
            both[k] = main_ms[k] > help_ms[k] ? main_ms[k] : help_ms[k];
        }
        double a = median(alone), b = median(both);
        printf("%6d  %10.3f  %9.3f  %5.2f  %9.3f  %11.3f\n", w, a, b, b / a, median(main_ms), median(help_ms));
        fflush(stdout);
    }
    return 0;
}

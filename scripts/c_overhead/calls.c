/* A no-op entry called N times from C: through an ahead-of-time library
 * (built with -DAOT against noop.h) or through libslope_c (slope_call).
 * scripts/c_overhead/run.sh builds and runs both. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef AOT
#include "noop.h"
#else
#include "slope.h"
#endif
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200000;
    slope_error *err = NULL;
#ifdef AOT
    noop_context *ctx = noop_context_new(1, &err);
#else
    slope_program *p = slope_compile_file("noop.slope", 1, &err);
#endif
    double x = 1.5; slope_arg a = {SLOPE_F64, 0, NULL, &x};
    slope_value *v;
    double best = 1e9;
    for (int round = 0; round < 5; round++) {
        double t0 = now();
        for (int i = 0; i < n; i++) {
#ifdef AOT
            noop_noop(ctx, &a, &v, &err);
#else
            slope_call(p, "noop", &a, 1, &v, &err);
#endif
            slope_value_free(v);
        }
        double t = (now() - t0) / n * 1e6;
        if (t < best) best = t;
    }
    printf("%s %.3f us/call (best of 5 rounds of %d)\n", argc > 2 ? argv[2] : "", best, n);
    return 0;
}

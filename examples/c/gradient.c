/* Calls a Slope gradient from C: compiles rosenbrock.slope, evaluates the
 * function and its gradient at a point, takes a few gradient steps, and shows
 * how an error reads. Build and run (docs/c.md):
 *
 *   cargo build --release -p slope-c
 *   cc examples/c/gradient.c -Ic/include -Ltarget/release -lslope_c -o gradient
 *   LD_LIBRARY_PATH=target/release ./gradient examples/c/rosenbrock.slope
 */
#include <stdio.h>
#include <stdlib.h>

#include "slope.h"

static int fail(slope_error *e) {
    fprintf(stderr, "%s\n", slope_error_diagnostic(e));
    slope_error_free(e);
    return 1;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "examples/c/rosenbrock.slope";
    slope_error *err = NULL;
    slope_program *p = slope_compile_file(path, 0, &err);
    if (!p) return fail(err);

    double x[4] = {-1.2, 1.0, 0.5, 2.0};
    int64_t n = 4;
    slope_arg arg = {SLOPE_F64, 1, &n, x};

    slope_value *v = NULL, *g = NULL;
    if (slope_call(p, "value", &arg, 1, &v, &err)) return fail(err);
    if (slope_call(p, "gradient", &arg, 1, &g, &err)) return fail(err);
    const double *grad = slope_value_data(g);
    printf("value %.17g\n", *(const double *)slope_value_data(v));
    printf("gradient");
    for (size_t i = 0; i < slope_value_count(g); i++) printf(" %.17g", grad[i]);
    printf("\n");
    slope_value_free(v);
    slope_value_free(g);

    /* A few steps of gradient descent. */
    for (int step = 0; step < 1000; step++) {
        if (slope_call(p, "gradient", &arg, 1, &g, &err)) return fail(err);
        grad = slope_value_data(g);
        for (int i = 0; i < 4; i++) x[i] -= 1e-3 * grad[i];
        slope_value_free(g);
    }
    if (slope_call(p, "value", &arg, 1, &v, &err)) return fail(err);
    printf("after 1000 steps %.17g\n", *(const double *)slope_value_data(v));
    slope_value_free(v);

    /* A wrong argument: an i64 array for an f64 parameter. */
    int64_t wrong[4] = {1, 2, 3, 4};
    slope_arg bad = {SLOPE_I64, 1, &n, wrong};
    if (slope_call(p, "gradient", &bad, 1, &g, &err)) {
        printf("error %s: %s\n", slope_error_code(err), slope_error_message(err));
        slope_error_free(err);
    }
    slope_program_free(p);
    return 0;
}

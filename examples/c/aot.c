/* Calls a Slope gradient compiled ahead of time: rosenbrock.slope built by
 * `slope build` into librosenbrock.so (or .a) with the header rosenbrock.h,
 * one C function per entry. Evaluates the function and its gradient, takes
 * gradient steps, and shows how errors read. Build and run (docs/c.md):
 *
 *   cargo build --release
 *   target/release/slope build examples/c/rosenbrock.slope -o /tmp/librosenbrock.so
 *   cc examples/c/aot.c -I/tmp -L/tmp -lrosenbrock -Wl,-rpath,/tmp -o aot
 *   ./aot
 */
#include <stdio.h>

#include "rosenbrock.h"

static int fail(slope_error *e) {
    fprintf(stderr, "%s\n", slope_error_diagnostic(e));
    slope_error_free(e);
    return 1;
}

int main(void) {
    slope_error *err = NULL;
    rosenbrock_context *ctx = rosenbrock_context_new(0, &err);
    if (!ctx) return fail(err);

    double x[4] = {-1.2, 1.0, 0.5, 2.0};
    int64_t n = 4;
    slope_arg arg = {SLOPE_F64, 1, &n, x};

    slope_value *v = NULL, *g = NULL;
    if (rosenbrock_value(ctx, &arg, &v, &err)) return fail(err);
    if (rosenbrock_gradient(ctx, &arg, &g, &err)) return fail(err);
    const double *grad = slope_value_data(g);
    printf("value %.17g\n", *(const double *)slope_value_data(v));
    printf("gradient");
    for (size_t i = 0; i < slope_value_count(g); i++) printf(" %.17g", grad[i]);
    printf("\n");
    slope_value_free(v);
    slope_value_free(g);

    /* Gradient descent. */
    for (int step = 0; step < 1000; step++) {
        if (rosenbrock_gradient(ctx, &arg, &g, &err)) return fail(err);
        grad = slope_value_data(g);
        for (int i = 0; i < 4; i++) x[i] -= 1e-3 * grad[i];
        slope_value_free(g);
    }
    /* The same entry by name, as a dynamic caller would call it. */
    if (rosenbrock_call(ctx, "value", &arg, 1, &v, &err)) return fail(err);
    printf("after 1000 steps %.17g\n", *(const double *)slope_value_data(v));
    slope_value_free(v);

    /* A wrong argument: an i64 array for an f64 parameter. */
    int64_t wrong[4] = {1, 2, 3, 4};
    slope_arg bad = {SLOPE_I64, 1, &n, wrong};
    if (rosenbrock_gradient(ctx, &bad, &g, &err)) {
        printf("error %s: %s\n", slope_error_code(err), slope_error_message(err));
        slope_error_free(err);
    }
    /* An entry the library does not have. */
    if (rosenbrock_call(ctx, "hessian", &arg, 1, &g, &err)) {
        printf("error %s: %s\n", slope_error_code(err), slope_error_message(err));
        slope_error_free(err);
    }
    rosenbrock_context_free(ctx);
    return 0;
}

/* Slope from C: compile a Slope program and call its entry points.
 *
 * Link with -lslope_c (target/release/libslope_c.so or libslope_c.a, built
 * by `cargo build --release -p slope-c`). docs/c.md has a complete example.
 *
 * Ownership: every object a function returns through a pointer is the
 * caller's and is freed with its `_free` function; pointers into a value
 * (its shape, data, items) live as long as the value. No function keeps a
 * pointer the caller passed in beyond the call.
 *
 * Threads: a program may be called from several threads at once; each call
 * runs on its own context. Parallel loops inside a call use Slope's thread
 * pool (results are bit-identical for every thread count).
 *
 * Errors: a function that can fail returns NULL or a non-zero status and,
 * when `error` is not NULL, stores a `slope_error` with the diagnostic's
 * stable code (docs/errors.md), its message and the rendered diagnostic
 * (file, line and column) — what the `slope` command prints.
 */
#ifndef SLOPE_H
#define SLOPE_H

#include <stddef.h>
#include <stdint.h>

#include "slope_values.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slope_program slope_program;

/* Compiles the program in the file `path` (imports are read relative to it)
 * to native code. `threads`: threads for parallel loops, 0 for the default
 * (SLOPE_THREADS, else every core). NULL on failure. */
slope_program *slope_compile_file(const char *path, int threads, slope_error **error);

/* Compiles source text named `name` (for diagnostics and relative imports). */
slope_program *slope_compile_source(const char *name, const char *source, int threads, slope_error **error);

/* Compiler options for slope_compile_*_with: what `slope --checkpoint`,
 * `slope --save` and `slope --reassociate` choose on the command line. A
 * zeroed struct is the default. */
typedef struct slope_options {
    int threads;      /* as for slope_compile_file: 0 for the default */
    int checkpoint;   /* non-zero: reverse mode through loops keeps √n checkpoints */
    const char *save; /* what reverse mode saves from map bodies: "nothing",
                         "host-calls" (NULL: the default), "slow-ops", "everything" */
    int reassociate;  /* non-zero: native code may reassociate float sums and
                         products in loops (faster; the last bits may differ
                         from the interpreter's, never with the thread count) */
} slope_options;

/* slope_compile_file and slope_compile_source with options (NULL: the
 * defaults). An unknown `save` is error E0305. */
slope_program *slope_compile_file_with(const char *path, const slope_options *options, slope_error **error);
slope_program *slope_compile_source_with(const char *name, const char *source, const slope_options *options,
                                         slope_error **error);

/* Frees a program; no call of it may be running. */
void slope_program_free(slope_program *program);

/* The number of entry points and the name of the i-th (NULL out of range);
 * the name lives as long as the program. */
size_t slope_entry_count(const slope_program *program);
const char *slope_entry_name(const slope_program *program, size_t i);

/* Parallel loops use `threads` threads (1 to 65535) from the next call on. */
int slope_set_threads(slope_program *program, int threads, slope_error **error);

/* Calls `entry` on `nargs` argument leaves (exactly as many as its
 * parameters take, else E0302 before any leaf is read). On success returns 0 and stores
 * the result in `*result`; on failure returns non-zero (and `*result` is
 * NULL). Arguments are checked against the entry's declared types first:
 * a wrong dtype, rank or fixed length is error E0302. */
int slope_call(const slope_program *program, const char *entry, const slope_arg *args, size_t nargs,
               slope_value **result, slope_error **error);

#ifdef __cplusplus
}
#endif

#endif

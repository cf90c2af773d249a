/* Slope values and errors in C: argument leaves, results and errors.
 *
 * Shared by the two ways to call Slope from C: `slope.h` (libslope_c, which
 * compiles a program at run time) includes it, and every header `slope build`
 * writes for an ahead-of-time library contains it.
 *
 * Ownership: a `slope_value` or `slope_error` a function returns is the
 * caller's, freed with its `_free` function; pointers into a value (its
 * shape, data, items) live as long as the value.
 */
#ifndef SLOPE_VALUES_H
#define SLOPE_VALUES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slope_value slope_value;
typedef struct slope_error slope_error;

/* Element types. `SLOPE_BOOL` elements are one byte each, 0 or 1 (any
 * non-zero byte reads as true). */
typedef enum slope_dtype { SLOPE_F64 = 0, SLOPE_F32 = 1, SLOPE_I64 = 2, SLOPE_BOOL = 3 } slope_dtype;

/* One argument leaf: a scalar (`rank` 0; `data` points at one element) or
 * a row-major array of `rank` dimensions `shape[0..rank)` (any alignment;
 * each dimension and the element count at most 2^40). A parameter that
 * is a tuple takes one leaf per item, in order; a record one leaf per field,
 * in the order of the field names (Slope sorts a record's fields by name);
 * nested likewise. Arrays of tuples or records cannot be passed from C yet. */
typedef struct slope_arg {
    int32_t dtype; /* a slope_dtype */
    int64_t rank;
    const int64_t *shape;
    const void *data;
} slope_arg;

/* A result: a scalar (rank 0), an array, or a tuple or record (rank -1,
 * with `count` items; a record's items have field names). An array of
 * records comes back as a record of arrays. */
int64_t slope_value_rank(const slope_value *value);
/* A slope_dtype; -1 for tuples and records. */
int32_t slope_value_dtype(const slope_value *value);
/* `rank` sizes; NULL for scalars, tuples and records. */
const int64_t *slope_value_shape(const slope_value *value);
/* Row-major elements (a scalar's one element); NULL for tuples and records. */
const void *slope_value_data(const slope_value *value);
/* The number of elements of a scalar or array; items of a tuple or record. */
size_t slope_value_count(const slope_value *value);
const slope_value *slope_value_item(const slope_value *value, size_t i);
/* The field name of a record's i-th item; NULL for tuples. */
const char *slope_value_field(const slope_value *value, size_t i);
void slope_value_free(slope_value *value);

const char *slope_error_code(const slope_error *error);
const char *slope_error_message(const slope_error *error);
const char *slope_error_diagnostic(const slope_error *error);
void slope_error_free(slope_error *error);

#ifdef __cplusplus
}
#endif

#endif

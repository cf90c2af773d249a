//! Slope from C without the compiler: values and errors as C sees them
//! ([`values`], shared with the JIT-backed `libslope_c`), and the runtime of
//! the ahead-of-time libraries `slope build` makes ([`aot`]).
//!
//! Built as `libslope_capi.a`: every ahead-of-time library links it, and
//! with it `slope_runtime` (arena, host math, thread pool), so a library
//! needs neither the compiler nor Cranelift at run time.

pub mod aot;
pub mod values;
